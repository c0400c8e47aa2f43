"""The exact fast path must never change a verdict: crafted cases, then generated pairs checked
against math-verify itself (verify_pair, the serial rule the benchmark's baseline runs)."""

import random
from fractions import Fraction

import pytest

from r1_recipe.rewards.exact import fast_verdict
from r1_recipe.rewards.verify import MathVerifier, verify_pair

# (answer, reference, fast verdict: True / False / None = defer to math-verify)
CASES = [
    ("4", "4", True), ("5", "4", False), ("-3", "3", False), ("0", "-0", True),
    ("5.0", "5", True), ("0.5", "\\frac{1}{2}", True), ("\\dfrac{6}{8}", "0.75", True),
    ("1/2", "\\tfrac{1}{2}", True), ("-\\frac{1}{2}", "-0.5", True), ("\\frac{1}{3}", "0.333333", None),
    ("1.0000001", "1", None),  # inside math-verify's 6-place rounding: it decides
    ("\\sqrt{18}", "3\\sqrt{2}", True), ("4\\sqrt{2}", "3\\sqrt{2}", False), ("6", "3\\sqrt{2}", False),
    ("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}", True), ("1.414214", "\\sqrt{2}", None),
    ("1+8x", "8x+1", True), ("8x", "8x+1", False), ("8x-1", "8x+1", False), ("9", "8x+1", False),
    ("2y+1", "2x+1", False), ("x^2-1", "-1+x^{2}", True),
    # multiples of pi, sums of surds
    ("\\pi", "\\pi", True), ("2\\pi/3", "\\frac{2\\pi}{3}", True), ("1\\pi", "\\pi", True),
    ("\\frac{3\\pi}{2}", "\\frac{2\\pi}{3}", False), ("3", "\\frac{2\\pi}{3}", False),
    ("\\pi", "3.14159", False), ("\\pi", "3.141593", None),  # 6-place rounding: math-verify
    ("\\sqrt{3}+1", "1+\\sqrt{3}", True), ("\\frac{1+\\sqrt{5}}{2}", "\\frac{1}{2}+\\frac{\\sqrt{5}}{2}", True),
    ("1-\\sqrt{3}", "1+\\sqrt{3}", False), ("2.732051", "1+\\sqrt{3}", None), ("2.73", "1+\\sqrt{3}", False),
    ("0.5+\\sqrt{2}", "\\frac{1}{2}+\\sqrt{2}", None),  # a Float inside a sum: math-verify
    ("\\sqrt{8}-\\sqrt{2}", "\\sqrt{2}", True), ("\\pi-\\pi", "0", True), ("1+1+1+1", "4", True),
    # intervals and tuples, classified as latex2sympy does
    ("(-\\infty, 3]", "(-\\infty,3]", True), ("(-\\infty, 3)", "(-\\infty, 3]", False),
    ("3", "(-\\infty, 3]", False), ("(1, 2)", "(1,2)", True), ("(2, 1)", "(1, 2)", False),
    ("[2, 1]", "(2,1)", True), ("(1, 2]", "(1, 2)", False), ("(0.5, 2)", "(\\frac{1}{2}, 2)", True),
    ("(3, 2, 1)", "(1,2,3)", False), ("(1, 2, 3)", "(1,2,3)", True), ("(1, 2)", "(1, 2, 3)", False),
    ("[-\\infty, 3]", "(-\\infty, 3]", None),  # sympy opens an infinite end itself
    ("(3, 1]", "(3, 1]", None), ("[1, 1]", "1", None),  # an empty interval; the number 1
    # sets of exact numbers
    ("\\{1,2\\}", "\\{2,1\\}", True), ("\\{2, 2, 1\\}", "\\{1,2\\}", True), ("\\{1\\}", "1", True),
    ("\\{1, 3\\}", "\\{1,2\\}", False), ("1", "\\{1,2\\}", False), ("\\{1.0, 2\\}", "\\{1,2\\}", None),
    ("\\{1, 2\\}", "(1, 2)", None),  # math-verify pairs a set with an open interval
    # outside the grammar: always math-verify
    ("1,000", "1000", None), ("007", "7", None), ("50\\%", "50", None), ("5 cm", "5", None),
    ("1 000", "1000", None), ("\\frac{3}{0}", "3", None), ("\\text{yes}", "\\text{yes}", None),
    ("1 + \\sqrt{3}", "1+\\sqrt{3}", None), ("(1,2)\\cup(3,4)", "(1,2)\\cup(3,4)", None),
    ("2s+1", "1+2s", None),  # s is a unit to math-verify's normaliser
    ("1x", "x", None), ("x-x", "0", None), ("1" * 60, "1" * 60, None), ("9^{9^{9}}", "5", None),
]


@pytest.mark.parametrize("answer,reference,expected", CASES)
def test_table_and_agreement(answer, reference, expected):
    assert fast_verdict(answer, reference) is expected
    if expected is not None:
        assert verify_pair(answer, reference) == (1.0 if expected else 0.0)


def _forms(rng: random.Random, c: Fraction, s: int = 1) -> list[str]:
    """Ways to write c*sqrt(s): exact, approximate, and outside the grammar."""
    sign, a = ("-" if c < 0 else ""), abs(c)
    p, q = a.numerator, a.denominator
    v = float(c) * s ** 0.5
    out = [f"{v:.6f}", f"{v:.3f}", f"{v:.9f}", f"{v:,.2f}"]
    if s > 1:
        out += [f"{sign}\\frac{{{p}\\sqrt{{{s}}}}}{{{q}}}", f"{sign}\\dfrac{{\\sqrt{{{p * p * s}}}}}{{{q}}}"]
        if q == 1:
            out += [f"{sign}{p}\\sqrt{{{s}}}", f"{sign}\\sqrt{{{p * p * s}}}", f"{sign}{p} \\sqrt{{{s}}}"]
        return out
    k = rng.randint(2, 5)
    out += [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}\\dfrac{{{k * p}}}{{{k * q}}}", f"{sign}{p}/{q}",
            f"\\frac{{{sign}{p}}}{{{q}}}", f"{sign}\\frac{{{p}}}{{{q}.0}}"]
    if q == 1:
        out += [f"{sign}{p}", f"{sign}{p}.0", f"{sign}{p:,}", f"{sign}0{p}", f"{sign}{p}\\%",
                f"{sign}{p}\\text{{ cm}}", f"{sign}{p}.000001", f"x={sign}{p}"]
    return out


def _poly(rng: random.Random, var: str, coefs: dict[int, int]) -> str:
    terms = list(coefs.items())
    rng.shuffle(terms)
    text = ""
    for k, c in terms:
        body = str(abs(c)) if k == 0 else (
            f"{'' if abs(c) == 1 else abs(c)}{var}{'' if k == 1 else rng.choice([f'^{k}', f'^{{{k}}}'])}")
        text += ("-" if c < 0 else "+" if text else "") + body
    return text or "0"


def _sum_forms(a: int, k: int, b: int, q: int, pi: bool = False) -> list[str]:
    """Ways to write (a + k*sqrt(b)) / q, or (a + k*pi) / q: exact, approximate, outside."""
    v = (a + k * (3.141592653589793 if pi else b ** 0.5)) / q
    unit = "\\pi" if pi else f"\\sqrt{{{b}}}"
    plus, kk = ("+" if k > 0 else "-"), ("" if abs(k) == 1 else str(abs(k)))
    out = [f"{v:.6f}", f"{v:.3f}", f"{a} {plus} {kk}{unit}"]
    if q == 1:
        lead = f"{'-' if k < 0 else ''}{kk}{unit}"
        return out + [f"{a}{plus}{kk}{unit}", f"{lead}+{a}" if a >= 0 else f"{lead}{a}",
                      f"{a}.0{plus}{kk}{unit}"]
    return out + [f"\\frac{{{a}{plus}{kk}{unit}}}{{{q}}}",
                  f"\\frac{{{a}}}{{{q}}}{plus}\\frac{{{kk}{unit}}}{{{q}}}",
                  f"\\dfrac{{{2 * a}{plus}{2 * abs(k)}{unit}}}{{{2 * q}}}"]


def _number(rng: random.Random) -> str:
    c = Fraction(rng.randint(-12, 12), rng.choice([1, 1, 2, 3, 6]))
    if rng.random() < 0.3:
        return rng.choice(_sum_forms(c.numerator, rng.choice([1, -2, 3]), rng.choice([2, 3, 8]),
                                     c.denominator, pi=rng.random() < 0.5))
    return rng.choice(_forms(rng, c, rng.choice([1, 1, 2, 3])))


def _bracketed(rng: random.Random, items: list[str], brackets: str) -> str:
    return brackets[0] + rng.choice([", ", ",", " , "]).join(items) + brackets[1]


def _sequence_pair(rng: random.Random) -> tuple[str, str]:
    """Intervals, tuples and sets of numbers, and their near misses."""
    items = [_number(rng) for _ in range(rng.choice([1, 2, 2, 2, 3]))]
    if len(items) == 2 and rng.random() < 0.3:
        items[rng.randrange(2)] = rng.choice(["-\\infty", "\\infty", "+\\infty"])
    if len(items) == 2 and rng.random() < 0.1:
        items[1] = items[0]
    shape = rng.choice(["()", "[]", "(]", "[)", "{}"])
    shape = "\\{\\}" if shape == "{}" else shape
    ref = _bracketed(rng, items, (shape[:2], shape[2:]) if len(shape) == 4 else shape)
    other = rng.choice(["()", "[]", "(]", "[)", "\\{\\}"])
    changed = list(items)
    changed[rng.randrange(len(changed))] = _number(rng)
    ans = rng.choice([
        ref, ref.replace(", ", ","), _bracketed(rng, items[::-1], shape if len(shape) == 2 else ("\\{", "\\}")),
        _bracketed(rng, items, (other[:2], other[2:]) if len(other) == 4 else other),
        _bracketed(rng, changed, shape if len(shape) == 2 else ("\\{", "\\}")), items[0], "2x+1",
    ])
    return ans, ref


def _pairs(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.2:  # polynomials, including unit letters and other variables
            var = rng.choice("xyznkabuvst")
            coefs = {k: rng.randint(-9, 9) or 1 for k in range(rng.randint(1, 3) + 1)}
            ref = _poly(rng, var, coefs)
            changed = dict(coefs)
            changed[0] = changed.get(0, 0) + rng.choice([0, 0, 1, -2])
            ans = rng.choice([_poly(rng, var, changed), _poly(rng, rng.choice("xyz"), coefs),
                              str(rng.randint(-9, 9)), f"{var}+{var}", f"1{var}"])
        elif kind < 0.35:  # sums of a rational and a surd or pi multiple
            a, k, b, q = rng.randint(-9, 9), rng.choice([1, -1, 2, -3]), rng.choice([2, 3, 12]), rng.choice([1, 2, 3])
            pi = rng.random() < 0.3
            ref = rng.choice(_sum_forms(a, k, b, q, pi))
            ans = rng.choice(_sum_forms(a + rng.choice([0, 0, 1]), rng.choice([k, -k]), b, q, pi)
                             + [str(a), _number(rng)])
        elif kind < 0.6:
            ans, ref = _sequence_pair(rng)
        else:
            c = Fraction(rng.choice([rng.randint(-30, 30), rng.randint(-10**6, 10**6)]),
                         rng.choice([1, 1, 2, 3, 7, 8, 10, 1000]))
            s = rng.choice([1, 1, 1, 2, 3, 5, 6])
            ref = rng.choice(_forms(rng, c, s))
            near = c + rng.choice([Fraction(0), Fraction(1), Fraction(-1, 2), Fraction(1, 10**6),
                                   Fraction(3, 10**6), Fraction(1, 10**9), Fraction(1, 10**13)])
            ans = rng.choice(_forms(rng, near, rng.choice([s, s, 1])))
        out.append((ans, ref) if rng.random() < 0.8 else (ref, ans))
    return out


@pytest.mark.parametrize("seed,n", [(0, 500), pytest.param(1, 6000, marks=pytest.mark.slow)])
def test_fast_path_agrees_with_math_verify(seed, n):
    """Every pair the fast path decides gets math-verify's own verdict (and it decides many)."""
    decided, wrong = 0, []
    for answer, reference in dict.fromkeys(_pairs(random.Random(seed), n)):
        fast = fast_verdict(answer, reference)
        if fast is None:
            continue
        decided += 1
        truth = verify_pair(answer, reference)
        if truth != (1.0 if fast else 0.0):
            wrong.append((answer, reference, fast, truth))
    assert not wrong
    assert decided > n // 4


def test_verifier_uses_fast_path_without_workers():
    v = MathVerifier(workers=1, timeout=5.0)
    try:
        assert v.verify_many([("3\\sqrt{2}", "\\sqrt{18}"), ("7", "8"), ("1+2x", "2x+1")]) == [1.0, 0.0, 1.0]
        assert v.fast_decided == 3 and v._workers == []  # the pool never started
    finally:
        v.close()
