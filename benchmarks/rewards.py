"""Claim: the `accuracy` reward is >= 5x faster than naive serial math-verify on GRPO batches,
with identical verdicts, and every hostile completion returns within its time limit.

    PYTHONPATH=src python benchmarks/rewards.py [--prompts 8] [--samples 64] [--batches 3]

Baseline (what open-r1 and TRL's examples do): for every completion, math-verify `parse` the
reference, `parse` the answer and `verify`, serially in the calling process. Both sides use
the same answer extraction and the same parse rules, so their verdicts must match exactly;
ours adds the verdict cache, one parse per distinct reference/answer and the worker pool.
Batches are realistic GRPO groups: 64 samples per prompt whose answers repeat (most samples
agree on a few answers, some write the right answer in another form, a few are unique).

Answer types (``--mix``): ``math`` (default) is our estimate of a MATH/GSM8K-like mix, not a
measured one: mostly integers, some fractions, surds and their sums, polynomials, multiples of
pi, intervals, ordered pairs and sets (all in the exact fast path's grammar), and 10% answers
outside it (degrees ``30^\circ``, lettered choices ``\text{(C)}``, rational functions) that
math-verify must decide in the workers.
``uniform`` is the earliest benchmark: the four first fast-path kinds equally often.
The time to start the worker pool (~1-2 s, once per run) is printed and not counted.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.extract import extract_answer
from r1_recipe.rewards.verify import get_verifier, verify_pair, warm_up


MIXES = {  # answer kind -> weight
    "math": {"int": 0.40, "frac": 0.13, "sqrt": 0.07, "expr": 0.07, "pi": 0.06, "interval": 0.04,
             "pair": 0.04, "surd_sum": 0.05, "set": 0.04,  # the fast path's grammar
             "degrees": 0.04, "choice": 0.03, "rational": 0.03},  # math-verify in the workers
    "uniform": {"int": 1, "frac": 1, "sqrt": 1, "expr": 1},
}


def make_problem(rng: random.Random, mix: str = "math") -> tuple[str, list[str], list[str]]:
    """(reference, equivalent correct forms, plausible wrong answers)."""
    if mix == "uniform":  # the same random stream as the earlier benchmark
        kind = rng.choice(["int", "frac", "sqrt", "expr"])
    else:
        kind = rng.choices(list(MIXES[mix]), weights=list(MIXES[mix].values()))[0]
    if kind == "pi":
        a, b = rng.choice([(1, 2), (3, 4), (2, 3), (5, 6), (1, 6), (7, 4)])
        return f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}", f"{a}\\pi/{b}"], [
            f"\\frac{{{b}\\pi}}{{{a}}}", f"{a}\\pi", f"\\frac{{{a + 1}\\pi}}{{{b}}}"]
    if kind == "degrees":
        a = rng.choice([15, 30, 45, 60, 75, 120, 135, 150])
        return f"{a}^\\circ", [f"{a}^\\circ", f"{a}^{{\\circ}}", str(a)], [
            f"{180 - a}^\\circ", f"{a + 15}^\\circ", str(a // 3)]
    if kind == "choice":
        a, b = rng.sample("ABCDE", 2)
        return f"\\text{{({a})}}", [f"\\text{{({a})}}", f"({a})", a], [f"\\text{{({b})}}", b, f"({b})"]
    if kind == "rational":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"\\frac{{x+{a}}}{{x-{b}}}", [f"\\frac{{x+{a}}}{{x-{b}}}", f"\\frac{{{a}+x}}{{x-{b}}}"], [
            f"\\frac{{x-{a}}}{{x+{b}}}", f"\\frac{{x+{b}}}{{x-{a}}}", f"x+{a}"]
    if kind == "surd_sum":
        a, b = rng.randint(1, 9), rng.choice([2, 3, 5, 7])
        return f"{a}+\\sqrt{{{b}}}", [f"{a}+\\sqrt{{{b}}}", f"\\sqrt{{{b}}}+{a}"], [
            f"{a}-\\sqrt{{{b}}}", f"{a + 1}+\\sqrt{{{b}}}", str(a)]
    if kind == "set":
        a, b = rng.randint(-9, 0), rng.randint(1, 9)
        return f"\\{{{a}, {b}\\}}", [f"\\{{{a}, {b}\\}}", f"\\{{{b}, {a}\\}}"], [
            f"\\{{{a}\\}}", f"\\{{{a}, {b + 1}\\}}", str(b)]
    if kind == "interval":
        a = rng.randint(-9, 9)
        return f"(-\\infty, {a}]", [f"(-\\infty, {a}]", f"(-\\infty,{a}]"], [
            f"(-\\infty, {a})", f"[{a}, \\infty)", str(a)]
    if kind == "pair":
        a, b = rng.randint(-9, 9), rng.randint(1, 9)
        return f"({a}, {b})", [f"({a}, {b})", f"({a},{b})"], [f"({b}, {a})", f"({a}, {-b})", str(a)]
    if kind == "int":
        n = rng.randint(-500, 5000)
        return str(n), [str(n), f"{n}.0"], [str(n + d) for d in (1, -1, 10, 2 * n or 7)]
    if kind == "frac":
        a, b = rng.randint(1, 30), rng.randint(31, 60)
        wrong = [f"\\frac{{{b}}}{{{a}}}", f"\\frac{{{a + 1}}}{{{b}}}", f"{a}/{b + 1}"]
        return f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"], wrong
    if kind == "sqrt":
        a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 7])
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"], [
            f"{a + 1}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}", str(a * b)]
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    return f"{a}x+{b}", [f"{a}x+{b}", f"{b}+{a}x"], [f"{a}x-{b}", f"{a + 1}x+{b}", f"{a}x"]


def make_batch(rng: random.Random, prompts: int, samples: int,
               mix: str = "math") -> tuple[list[str], list[str], list[str]]:
    completions, solutions, prompt_ids = [], [], []
    for p in range(prompts):
        ref, right, wrong = make_problem(rng, mix)
        for _ in range(samples):
            u = rng.random()
            if u < 0.45:
                ans = right[0]
            elif u < 0.55:
                ans = rng.choice(right)
            elif u < 0.92:
                ans = rng.choice(wrong)
            else:
                ans = str(rng.randint(-10**6, 10**6))  # a one-off wrong answer
            reasoning = f"Let me work it out step by step. {rng.randint(0, 99)} ... wait, check."
            completions.append(f"<think>\n{reasoning}\n</think>\nThe answer is $\\boxed{{{ans}}}$.")
            solutions.append(ref)
            prompt_ids.append(f"problem {len(prompt_ids) // samples}")
    return completions, solutions, prompt_ids


HOSTILE = {
    "power tower": "<think>x</think> \\boxed{9^{9^{9^{9}}}}",
    "1 MB of text": "<think>" + "lorem ipsum " * 87_382 + "</think> \\boxed{" + "1" * 1000 + "}",
    "10 000 nested braces": "<think>x</think> \\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "unclosed braces": "<think>x</think> \\boxed{" * 10_000,
    "invalid surrogates": "<think>\ud800</think> \\boxed{\udfff\ud800 2}",
    "frac without arguments": "<think>x</think> \\boxed{\\frac}",
    "deep parentheses": "<think>x</think> \\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
    "huge factorial": "<think>x</think> \\boxed{100000000!}",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--mix", choices=sorted(MIXES), default="math")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    batches = [make_batch(rng, args.prompts, args.samples, args.mix) for _ in range(args.batches)]
    n = sum(len(b[0]) for b in batches)
    distinct = sum(len(set(zip(map(extract_answer, c), s))) for c, s, _ in batches)
    print(f"{args.batches} batches x {args.prompts} prompts x {args.samples} samples = {n} "
          f"completions, {distinct} distinct (answer, reference) pairs; {os.cpu_count()} CPUs; "
          f"mix {args.mix!r}, seed {args.seed}")

    warm_up()  # first-call import costs, paid by the workers at pool start too: same footing
    t = time.perf_counter()
    baseline = [verify_pair(extract_answer(c), s, seconds=5, use_cache=False)
                for comps, sols, _ in batches for c, s in zip(comps, sols)]
    t_base = time.perf_counter() - t

    (accuracy,) = get_reward_funcs(["accuracy"], accuracy={"workers": args.workers,
                                                           "timeout": args.timeout})
    t = time.perf_counter()
    get_verifier(args.workers, args.timeout).start()  # once per run, not counted below
    t_start = time.perf_counter() - t
    t = time.perf_counter()
    ours = [v for comps, sols, pids in batches
            for v in accuracy(prompts=pids, completions=comps, solution=sols)]
    t_ours = time.perf_counter() - t

    assert ours == baseline, "verdicts differ from the serial baseline"
    verifier = get_verifier(args.workers, args.timeout)
    print(f"baseline (serial parse+verify per completion): {t_base:7.2f} s  {n / t_base:8.0f} /s")
    print(f"accuracy reward ({args.workers} workers, cache):       {t_ours:7.2f} s  "
          f"{n / t_ours:8.0f} /s")
    print(f"  of {len(verifier.cache)} distinct pairs, {verifier.fast_decided} settled by the exact "
          f"fast path, {len(verifier.cache) - verifier.fast_decided} by math-verify in the workers; "
          f"pool start-up {t_start:.2f} s, once per run, not counted above")
    print(f"identical verdicts on {n} completions (mean reward {sum(ours) / n:.3f}); "
          f"speed-up {t_base / t_ours:.1f}x (target >= 5x)")

    print(f"\nadversarial completions (limit {args.timeout:.1f} s each, retried once on a timeout, "
          "fresh cache per item):")
    worst = 0.0
    for name, text in HOSTILE.items():
        get_verifier(args.workers, args.timeout).cache.clear()
        t = time.perf_counter()
        (score,) = accuracy(completions=[text], solution=["5"])
        dt = time.perf_counter() - t
        worst = max(worst, dt)
        print(f"  {name:24s} score {score}  {dt:6.2f} s")
        assert score == 0.0 and dt < 2 * args.timeout + 2.0, name  # two tries + worker respawns
    print(f"worst-case latency {worst:.2f} s (limit {args.timeout:.1f} s, twice on a timeout)")


if __name__ == "__main__":
    main()
