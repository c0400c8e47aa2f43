"""An exact fast path for math-verify on common final answers: numbers, fractions, surds and
one-variable integer polynomials.

Most GRPO answers are integers, decimals, fractions or ``k\\sqrt{m}`` surds, and math-verify
spends milliseconds on each (LaTeX normalisation, the ANTLR parser, and for an unequal surd
sympy's ``simplify``: up to 140 ms). On this small grammar the verdict is decidable with exact
rational arithmetic:

- both sides parse to the same exact value (``c * sqrt(s)``, ``s`` square-free) -> True;
- the values differ by clearly more than math-verify's tolerance -> False: 1e-9 for exact
  values (its ``evalf(chop=True)`` zeroes differences below ~1e-15), 2e-6 when a decimal is
  involved (it rounds floats to 6 places);
- polynomials (``3x^2-x+4``): equal coefficients in the same variable -> True, else False
  (also against any number: a non-constant polynomial never equals one);
- anything else, any text outside the grammar -> ``None``: ask math-verify.

These rules are tested, not proven: tests/rewards/test_exact.py compares them with
math-verify itself on thousands of generated pairs, and where math-verify surprised us
(``1x`` is not ``x``; ``s``, ``m``, ``c`` … are units to its normaliser) the grammar defers.
Outside the grammar (whitespace inside, commas, percentages, units, several variables, sets,
intervals, leading zeros, huge numbers) it always defers.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

__all__ = ["exact_value", "fast_verdict"]

MAX_CHARS = 48  # longer answers are not "common" ones: let math-verify decide
_INT = r"(?:0|[1-9]\d{0,11})"  # <= 12 digits: exact even in sympy's 15-digit Floats
_NUM = rf"(?:{_INT}|(?:0|[1-9]\d{{0,5}})\.\d{{1,6}})"  # decimals: <= 12 digits, <= 6 places
_RAD = r"(?:0|[1-9]\d{0,5})"  # radicands < 10**6: square-free part by trial division to 1000
_SURD = rf"(?P<k>{_INT})?\\sqrt\{{(?P<m>{_RAD})\}}"
_FRAC_CMD = r"\\[dt]?frac"
_GRAMMAR = re.compile(
    rf"(?P<neg>-)?(?:"
    rf"(?P<num>{_NUM})"
    rf"|(?P<sp>{_INT})/(?P<sq>{_INT})"
    rf"|{_FRAC_CMD}\{{(?:(?P<fp>{_INT})|(?P<fk>{_INT})?\\sqrt\{{(?P<fm>{_RAD})\}})\}}"
    rf"\{{(?P<fq>{_INT})\}}"
    rf"|{_SURD}"
    rf")"
)


def _square_free(m: int) -> tuple[int, int]:
    """m = out**2 * rest with rest square-free (m < 10**6: trial division to 1000)."""
    out, rest, p = 1, m, 2
    while p * p <= rest:
        while rest % (p * p) == 0:
            rest //= p * p
            out *= p
        p += 1 if p == 2 else 2
    return out, rest


def exact_value(text: str) -> tuple[Fraction, int, bool] | None:
    """``(c, s, decimal)`` with value ``c * sqrt(s)`` (``s`` square-free, 1 for rationals) and
    whether a decimal point was written; ``None`` outside the grammar.

    >>> exact_value("\\\\dfrac{6}{8}")
    (Fraction(3, 4), 1, False)
    >>> exact_value("-2\\\\sqrt{12}")
    (Fraction(-4, 1), 3, False)
    >>> exact_value("1,000") is None
    True
    """
    if len(text) > MAX_CHARS:
        return None
    m = _GRAMMAR.fullmatch(text)
    if m is None:
        return None
    g = m.groupdict()
    radicand = 1
    if g["num"] is not None:
        coef = Fraction(g["num"])
    elif g["sp"] is not None:
        if int(g["sq"]) == 0:
            return None  # zoo: leave it to math-verify
        coef = Fraction(int(g["sp"]), int(g["sq"]))
    elif g["fq"] is not None:
        den = int(g["fq"])
        if den == 0:
            return None
        if g["fp"] is not None:
            coef = Fraction(int(g["fp"]), den)
        else:
            coef, radicand = Fraction(int(g["fk"] or 1)) / den, int(g["fm"])
    else:
        coef, radicand = Fraction(int(g["k"] or 1)), int(g["m"])
    if radicand != 1:
        out, radicand = _square_free(radicand)
        coef *= out
    if g["neg"]:
        coef = -coef
    if coef == 0 or radicand == 0:
        coef, radicand = Fraction(0), 1
    return coef, radicand, "." in text


# Letters math-verify reads as plain symbols: not e or i, nor unit letters (c d g h l m o s t),
# which its unit normalisation strips ("2s+1" vs "1+2s" is 0.0 there).
_VARS = "abknpqruvwxyz"
_TERM = re.compile(rf"([+-])?(0|[1-9]\d{{0,5}})?(?:([{_VARS}])(?:\^(?:([2-9])|\{{([1-9]\d?)\}}))?)?")


def polynomial(text: str) -> tuple[str, dict[int, int]] | None:
    """``(variable, {power: coefficient})`` of a univariate integer polynomial of degree >= 1
    written plainly (``3x^2-x+4``, ``8+2y``); ``None`` for anything else.

    >>> polynomial("3x^2-x+4")
    ('x', {2: 3, 1: -1, 0: 4})
    >>> polynomial("2x+3y") is None, polynomial("5") is None
    (True, True)
    """
    if len(text) > MAX_CHARS or not text:
        return None
    var, coefs, pos = None, {}, 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos or (pos > 0 and not m.group(1)):
            return None
        sign, digits, letter, p1, p2 = m.groups()
        if (digits is None and letter is None) or (letter and digits in ("0", "1")):
            return None  # math-verify reads "1x" as something other than x
        if letter is not None:
            if var not in (None, letter):
                return None
            var = letter
        power = 0 if letter is None else int(p1 or p2 or 1)
        value = (-1 if sign == "-" else 1) * int(digits or 1)
        coefs[power] = coefs.get(power, 0) + value
        pos = m.end()
    coefs = {k: v for k, v in coefs.items() if v}
    if var is None or not any(k > 0 for k in coefs):
        return None  # a constant in disguise (x-x): let math-verify decide
    return var, coefs


def _as_decimal(c: Fraction, s: int) -> Decimal:
    return Decimal(c.numerator) / Decimal(c.denominator) * Decimal(s).sqrt()


def fast_verdict(answer: str, reference: str) -> bool | None:
    """math-verify's verdict for (answer, reference) when both are in the grammar and the
    verdict is certain; ``None`` otherwise (then math-verify must decide).

    >>> fast_verdict("\\\\frac{1}{2}", "0.5"), fast_verdict("3\\\\sqrt{2}", "\\\\sqrt{18}")
    (True, True)
    >>> fast_verdict("4", "3\\\\sqrt{2}"), fast_verdict("0.3333333", "\\\\frac{1}{3}")
    (False, None)
    >>> fast_verdict("1+8x", "8x+1"), fast_verdict("8x", "8x+1"), fast_verdict("9", "8x+1")
    (True, False, False)
    """
    answer, reference = answer.strip(), reference.strip()
    a, r = exact_value(answer), exact_value(reference)
    if a is None or r is None:
        pa = polynomial(answer) if a is None else None
        pr = polynomial(reference) if r is None else None
        if (pa is None and a is None) or (pr is None and r is None):
            return None
        return pa == pr  # equal polynomials, or a polynomial against a number: never equal
    if a[:2] == r[:2]:
        return True
    with localcontext() as ctx:
        ctx.prec = 50
        gap = abs(_as_decimal(*a[:2]) - _as_decimal(*r[:2]))
    tolerance = Decimal("2e-6") if (a[2] or r[2]) else Decimal("1e-9")
    return False if gap > tolerance else None
