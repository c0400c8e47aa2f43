"""An exact fast path for math-verify on common final answers: numbers (integers, decimals,
fractions, surds, multiples of pi and sums of these), one-variable integer polynomials, and
intervals, tuples and sets of numbers.

Most GRPO answers are such numbers, and math-verify spends milliseconds on each (LaTeX
normalisation, the ANTLR parser, and for an unequal surd sympy's ``simplify``: up to 140 ms;
an interval, tuple or set costs 10-110 ms). On this small grammar the verdict is decidable
with exact rational arithmetic:

- numbers are sums of ``c * sqrt(s) * pi**p`` (``s`` square-free, ``p`` 0 or 1): these bases
  are linearly independent over the rationals, so equal terms <-> equal values -> True;
- values that differ by clearly more than math-verify's tolerance -> False: 1e-9 for exact
  values (its ``evalf(chop=True)`` zeroes differences below ~1e-15), 2e-6 when a decimal is
  involved (it rounds a lone float to 6 places; a decimal inside a sum is not in the grammar);
- polynomials (``3x^2-x+4``): equal coefficients in the same variable -> True, else False
  (also against any number: a non-constant polynomial never equals one);
- ``(a, b)``, ``[a, b)``, ``(-\\infty, a]``, ``(a, b, c)``: classified the way latex2sympy
  does it (two endpoints with ``a < b`` are an interval; ``(2, 1)`` and ``[2, 1]`` are
  tuples), then compared the way math-verify does it (intervals by bracket kinds and
  endpoints, tuples element by element in order, an open interval against a pair element by
  element, a number or polynomial against either: never equal);
- ``\\{a, b\\}`` of exact numbers: equal as sets (a number ``n`` is the set ``{n}``);
- anything else, any text outside the grammar -> ``None``: ask math-verify.

These rules are tested, not proven: tests/rewards/test_exact.py compares them with
math-verify itself on thousands of generated pairs, and where math-verify surprised us
(``1x`` is not ``x``; ``s``, ``m``, ``c`` ... are units to its normaliser; ``(3, 1]`` is an
empty interval; ``[a, a]`` is the number ``a``; ``[-\\infty, 3]`` is opened silently) the
grammar defers. Outside the grammar (whitespace inside numbers, commas in numbers,
percentages, units, several variables, unions, leading zeros, huge numbers, endpoints closer
than the tolerance, a set against an interval) it always defers.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import NamedTuple

__all__ = ["Interval", "Items", "Num", "NumSet", "Poly", "exact_value", "fast_verdict",
           "number_set", "polynomial", "sequence"]

MAX_CHARS = 48  # longer numbers are not "common" ones: let math-verify decide
MAX_SEQ_CHARS = 160  # an interval, tuple or set of up to a few such numbers
MAX_TERMS = 4
_INT = r"(?:0|[1-9]\d{0,11})"  # <= 12 digits: exact even in sympy's 15-digit Floats
_NUM = rf"(?:{_INT}|(?:0|[1-9]\d{{0,5}})\.\d{{1,6}})"  # decimals: <= 12 digits, <= 6 places
_RAD = r"(?:0|[1-9]\d{0,5})"  # radicands < 10**6: square-free part by trial division to 1000
_ATOM = re.compile(  # one unsigned term
    rf"(?P<num>{_NUM})"
    rf"|(?P<sp>{_INT})/(?P<sq>{_INT})"
    rf"|(?P<k>{_INT})?\\sqrt\{{(?P<m>{_RAD})\}}"
    rf"|(?P<pk>{_INT})?\\pi(?:/(?P<pq>{_INT}))?"
)
_FRAC = re.compile(rf"\\[dt]?frac\{{(.+)\}}\{{({_INT})\}}")  # \frac{a sum}{an integer}
_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")

Basis = tuple[int, bool]  # (square-free radicand, times pi): sqrt(radicand) * pi**pi


class Num(NamedTuple):
    """An exact value, a sum of ``coef * sqrt(radicand) * pi**pi``, and whether a decimal was
    written. Square roots of distinct square-free integers and their multiples of pi are
    linearly independent over the rationals, so two values are equal iff their terms are."""

    terms: tuple[tuple[int, bool, Fraction], ...]  # sorted (radicand, pi, coef); () is zero
    decimal: bool

    def as_decimal(self) -> Decimal:  # call inside a 50-digit context
        return sum((Decimal(c.numerator) / Decimal(c.denominator) * Decimal(s).sqrt()
                    * (_PI if p else 1) for s, p, c in self.terms), Decimal(0))


def _square_free(m: int) -> tuple[int, int]:
    """m = out**2 * rest with rest square-free (m < 10**6: trial division to 1000)."""
    out, rest, p = 1, m, 2
    while p * p <= rest:
        while rest % (p * p) == 0:
            rest //= p * p
            out *= p
        p += 1 if p == 2 else 2
    return out, rest


def _split_terms(text: str) -> list[str] | None:
    """``a+b-c`` -> ``["a", "+b", "-c"]`` at brace depth 0; ``None`` for empty terms."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return None
        if ch in "+-" and depth == 0 and i > start:
            parts.append(text[start:i])
            start = i
    parts.append(text[start:])
    if depth or parts[0].startswith("+") or any(p in ("", "+", "-") for p in parts):
        return None
    return parts


def _sum(text: str, depth: int = 0) -> dict[Basis, Fraction] | None:
    parts = _split_terms(text)
    if parts is None or len(parts) > MAX_TERMS or ("." in text and (len(parts) > 1 or depth)):
        return None  # decimals only alone: math-verify rounds a lone Float, not one in a sum
    total: dict[Basis, Fraction] = {}
    for part in parts:
        sign = -1 if part[0] == "-" else 1
        value = _term(part[1:] if part[0] in "+-" else part, depth)  # one sign at most: see _split_terms
        if value is None:
            return None
        for basis, c in value.items():
            total[basis] = total.get(basis, Fraction(0)) + sign * c
    return total


def _term(text: str, depth: int) -> dict[Basis, Fraction] | None:
    if depth == 0 and (m := _FRAC.fullmatch(text)):
        numerator, den = _sum(m.group(1), depth + 1), int(m.group(2))
        if numerator is None or den == 0:
            return None  # a zero denominator is zoo: leave it to math-verify
        return {basis: c / den for basis, c in numerator.items()}
    if (m := _ATOM.fullmatch(text)) is None:
        return None
    g = m.groupdict()
    if g["num"] is not None:
        return {(1, False): Fraction(g["num"])}
    if g["sp"] is not None:
        den = int(g["sq"])
        return None if den == 0 else {(1, False): Fraction(int(g["sp"]), den)}
    if g["m"] is not None:
        out, radicand = _square_free(int(g["m"])) if int(g["m"]) else (0, 1)
        return {(radicand, False): Fraction(int(g["k"] or 1) * out)}
    den = int(g["pq"] or 1)
    return None if den == 0 else {(1, True): Fraction(int(g["pk"] or 1), den)}


def exact_value(text: str) -> Num | None:
    """The exact value of a number in the grammar; ``None`` outside it.

    >>> exact_value("\\\\dfrac{6}{8}")
    Num(terms=((1, False, Fraction(3, 4)),), decimal=False)
    >>> exact_value("-2\\\\sqrt{12}").terms, exact_value("\\\\frac{3\\\\pi}{6}").terms
    (((3, False, Fraction(-4, 1)),), ((1, True, Fraction(1, 2)),))
    >>> exact_value("\\\\frac{1+\\\\sqrt{5}}{2}") == exact_value("\\\\frac{1}{2}+\\\\frac{\\\\sqrt{5}}{2}")
    True
    >>> exact_value("1,000") is None, exact_value("0.5+\\\\sqrt{2}") is None
    (True, True)
    """
    if len(text) > MAX_CHARS or (terms := _sum(text)) is None:
        return None
    return Num(tuple(sorted((s, p, c) for (s, p), c in terms.items() if c)), "." in text)


# Letters math-verify reads as plain symbols: not e or i, nor unit letters (c d g h l m o s t),
# which its unit normalisation strips ("2s+1" vs "1+2s" is 0.0 there).
_VARS = "abknpqruvwxyz"
_TERM = re.compile(rf"([+-])?(0|[1-9]\d{{0,5}})?(?:([{_VARS}])(?:\^(?:([2-9])|\{{([1-9]\d?)\}}))?)?")


class Poly(NamedTuple):
    var: str
    coefs: dict[int, int]  # power -> nonzero coefficient


def polynomial(text: str) -> Poly | None:
    """``Poly(variable, {power: coefficient})`` of a univariate integer polynomial of degree >= 1
    written plainly (``3x^2-x+4``, ``8+2y``); ``None`` for anything else.

    >>> polynomial("3x^2-x+4")
    Poly(var='x', coefs={2: 3, 1: -1, 0: 4})
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
    return Poly(var, coefs)


class Items(NamedTuple):
    """An ordered tuple of numbers, ``(1, 2, 3)`` or ``(2, 1)``."""

    items: tuple[Num, ...]


class Interval(NamedTuple):
    lo: Num | None  # None: -infinity
    hi: Num | None  # None: +infinity
    left_open: bool
    right_open: bool


class NumSet(NamedTuple):
    """A finite set of exact numbers, ``\\{-7, 1\\}`` (no decimals: sympy may merge 0.5 and 1/2)."""

    values: frozenset


_SEQ = re.compile(r"([(\[]) ?(.+?) ?([)\]])")
_SET = re.compile(r"\\\{ ?(.+?) ?\\\}")
_ITEM = re.compile(r" ?, ?")


def _gap(a: Num, b: Num) -> tuple[Decimal, Decimal]:
    """``(b - a, tolerance)``: the difference in 50 digits and math-verify's tolerance for it."""
    with localcontext() as ctx:
        ctx.prec = 50
        gap = b.as_decimal() - a.as_decimal()
    return gap, Decimal("2e-6") if (a.decimal or b.decimal) else Decimal("1e-9")


def sequence(text: str) -> Interval | Items | None:
    """The interval or tuple latex2sympy makes of a bracketed list of numbers; ``None`` when
    the text is anything else or the classification is not certain.

    >>> sequence("(-\\\\infty, 3]")
    Interval(lo=None, hi=Num(terms=((1, False, Fraction(3, 1)),), decimal=False), left_open=True, right_open=False)
    >>> len(sequence("(2, 1)").items), sequence("(3, 1]"), sequence("[1, 1]")
    (2, None, None)
    """
    if len(text) > MAX_SEQ_CHARS or (m := _SEQ.fullmatch(text)) is None:
        return None
    opening, body, closing = m.groups()
    items = _ITEM.split(body)
    if len(items) > 2:  # (a, b, c): a tuple; [a, b, c] and mixed brackets: not settled
        values = tuple(map(exact_value, items))
        return Items(values) if opening + closing == "()" and None not in values else None
    if len(items) != 2:
        return None
    left_open, right_open = opening == "(", closing == ")"
    # an infinite end must be open: sympy silently opens [-oo, 3], which we leave to it
    lo = None if items[0] == "-\\infty" else exact_value(items[0])
    hi = None if items[1] == "\\infty" else exact_value(items[1])
    if (lo is None and (items[0] != "-\\infty" or not left_open)) or (
            hi is None and (items[1] != "\\infty" or not right_open)):
        return None
    if lo is None or hi is None:
        return Interval(lo, hi, left_open, right_open)
    gap, tolerance = _gap(lo, hi)
    if abs(gap) <= tolerance:
        return None  # [a, a] is the number a, (a, a) a tuple: leave near-ties to math-verify
    if gap > 0:
        return Interval(lo, hi, left_open, right_open)
    # latex2sympy: an empty interval with like brackets is a tuple; (3, 1] stays an empty set
    return Items((lo, hi)) if left_open == right_open else None


def number_set(text: str) -> NumSet | None:
    """The set of exact values in ``\\{a, b, ...\\}``; ``None`` for anything else.

    >>> number_set("\\\\{3, \\\\frac{6}{2}, -1\\\\}") == number_set("\\\\{-1,3\\\\}")
    True
    """
    if len(text) > MAX_SEQ_CHARS or (m := _SET.fullmatch(text)) is None:
        return None
    values = [exact_value(item) for item in _ITEM.split(m.group(1))]
    if any(v is None or v.decimal for v in values):
        return None
    return NumSet(frozenset(v.terms for v in values))


def _number_verdict(a: Num, b: Num) -> bool | None:
    if a.terms == b.terms:
        return True
    gap, tolerance = _gap(a, b)
    return False if abs(gap) > tolerance else None


def _endpoint_verdict(a: Num | None, b: Num | None) -> bool | None:
    if a is None or b is None:  # an infinity
        return a is b
    return _number_verdict(a, b)


def _all(verdicts) -> bool | None:
    """math-verify's ``all(...)`` over parts: one certain False settles it; True needs all."""
    verdicts = list(verdicts)
    if False in verdicts:
        return False
    return True if all(v is True for v in verdicts) else None


def _sequence_verdict(a: Interval | Items, b: Interval | Items) -> bool | None:
    if isinstance(a, Interval) and isinstance(b, Interval):
        if (a.left_open, a.right_open) != (b.left_open, b.right_open):
            return False
        return _all([_endpoint_verdict(a.lo, b.lo), _endpoint_verdict(a.hi, b.hi)])
    if isinstance(b, Interval):
        a, b = b, a
    if isinstance(a, Interval):  # against a tuple: math-verify pairs an open interval's ends
        if a.left_open and a.right_open and len(b.items) == 2:
            return _all([_endpoint_verdict(a.lo, b.items[0]), _endpoint_verdict(a.hi, b.items[1])])
        return False
    if len(a.items) != len(b.items):
        return False
    return _all(_number_verdict(x, y) for x, y in zip(a.items, b.items))


def fast_verdict(answer: str, reference: str) -> bool | None:
    """math-verify's verdict for (answer, reference) when both are in the grammar and the
    verdict is certain; ``None`` otherwise (then math-verify must decide).

    >>> fast_verdict("\\\\frac{1}{2}", "0.5"), fast_verdict("3\\\\sqrt{2}", "\\\\sqrt{18}")
    (True, True)
    >>> fast_verdict("4", "3\\\\sqrt{2}"), fast_verdict("0.3333333", "\\\\frac{1}{3}")
    (False, None)
    >>> fast_verdict("1+8x", "8x+1"), fast_verdict("8x", "8x+1"), fast_verdict("9", "8x+1")
    (True, False, False)
    >>> fast_verdict("2\\\\pi/3", "\\\\frac{2\\\\pi}{3}"), fast_verdict("(1,2)", "[1, 2)")
    (True, False)
    """
    a, r = _parse(answer.strip()), _parse(reference.strip())
    if a is None or r is None:
        return None
    if isinstance(a, Num) and isinstance(r, Num):
        return _number_verdict(a, r)
    if isinstance(a, (Interval, Items)) and isinstance(r, (Interval, Items)):
        return _sequence_verdict(a, r)
    if isinstance(a, NumSet) or isinstance(r, NumSet):  # a number n is the set {n} to it
        a, r = (NumSet(frozenset([x.terms])) if isinstance(x, Num) and not x.decimal else x
                for x in (a, r))
        return a == r if isinstance(a, NumSet) and isinstance(r, NumSet) else None
    return a == r  # polynomials: same variable and coefficients; across kinds never equal


def _parse(text: str) -> Num | Poly | Interval | Items | NumSet | None:
    return exact_value(text) or polynomial(text) or sequence(text) or number_set(text)
