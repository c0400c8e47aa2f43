"""Claim: the `code` reward's isolation (bubblewrap's namespaces where bwrap works, seccomp,
Landlock, rlimits, a fresh process per test) costs at most 2x one plain ``subprocess.run`` per
test without any.

    PYTHONPATH=src python benchmarks/sandbox.py [--problems 40] [--rounds 3] [--workers 2] [--isolation auto]

Programs: HumanEval's canonical solutions with their tests (the copy `make assets` fetched;
without it, a generated stand-in of the same size: a 15-line function, a 10-assert check).
Each test is one program run; both sides run the same programs with the same 2 worker threads
in the same process, interleaved round by round so machine load hits both alike:

- ``code reward``: ``get_reward_funcs(["code"])`` on completions holding the solution, with the
  test in ``verification_info`` (what GRPO calls), i.e. extraction + sandboxed runs;
- ``bare subprocess``: ``subprocess.run([python, "-c", program], capture_output=True,
  timeout=10)`` per test, no isolation (what a naive harness does).

- ``bare, python -I -S``: the same with the sandbox's interpreter flags (no site-packages, no
  ``site``), to show what the confinement itself costs beyond the cheaper interpreter start.

Both must pass every canonical solution. Prints tests/second for each and the ratio
(sandbox time / bare time: how many times slower the isolation is); exit status 1 when it is
above 2. ``--parent-mb 2000`` runs both from a process holding 2 GB, as a trainer does;
``--isolation process`` measures the fallback without namespaces. It prints the isolation used and
the 1-minute load average, since a loaded machine moves the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from r1_recipe.assets import asset_dir
from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.sandbox import ISOLATIONS, bubblewrap_works


def humaneval_jobs(n: int) -> list[tuple[str, str]]:
    """(solution, test) per problem: the real HumanEval when cached, else a stand-in."""
    folder = asset_dir("humaneval")
    if folder is not None and (folder / "HumanEval.jsonl.gz").exists():
        with gzip.open(folder / "HumanEval.jsonl.gz", "rt") as f:
            rows = [json.loads(line) for line in f][:n]
        return [(r["prompt"] + r["canonical_solution"], f"{r['test']}\n\ncheck({r['entry_point']})\n")
                for r in rows]
    jobs = []
    for i in range(n):
        body = "\n".join(f"    # step {j}\n    total += x * {j}" for j in range(6))
        doc = '    """Stand-in for a HumanEval function."""'
        solution = f"def f{i}(x):\n{doc}\n    total = 0\n{body}\n    return total\n"
        asserts = "\n".join(f"    assert candidate({j}) == {15 * j}" for j in range(10))
        jobs.append((solution, f"def check(candidate):\n{asserts}\n\ncheck(f{i})\n"))
    return jobs


def run_reward(jobs: list[tuple[str, str]], workers: int, isolation: str = "auto") -> float:
    (code,) = get_reward_funcs(["code"], code={"workers": workers, "cpu_s": 5, "wall_s": 10.0, "isolation": isolation})
    completions = [f"<think>\nok\n</think>\n```python\n{solution}```" for solution, _ in jobs]
    start = time.perf_counter()
    scores = code(completions=completions, verification_info=[{"tests": [test]} for _, test in jobs])
    seconds = time.perf_counter() - start
    if scores != [1.0] * len(jobs):
        raise SystemExit(f"the code reward failed canonical solutions: {scores}")
    return seconds


def run_bare(jobs: list[tuple[str, str]], workers: int, flags: tuple[str, ...] = ()) -> float:
    def one(job: tuple[str, str]) -> bool:
        solution, test = job
        r = subprocess.run([sys.executable, *flags, "-c", f"{solution}\n\n{test}\n"], capture_output=True,
                           timeout=10)
        return r.returncode == 0

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = list(pool.map(one, jobs))
    seconds = time.perf_counter() - start
    if not all(ok):
        raise SystemExit("a bare subprocess failed a canonical solution")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parent-mb", type=int, default=0,
                        help="Hold this much resident memory in the calling process first, as a trainer "
                             "holding a model does (spawning cost may grow with the parent's size).")
    parser.add_argument("--isolation", default="auto", choices=ISOLATIONS,
                        help="The sandbox's isolation (auto: bubblewrap where it works).")
    args = parser.parse_args()
    ballast = bytearray(args.parent_mb * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: resident, not just reserved
    jobs = humaneval_jobs(args.problems)
    run_reward(jobs[:2], args.workers, args.isolation), run_bare(jobs[:2], args.workers)  # warm caches, not counted
    sandbox = bare = bare_isolated_flags = 0.0
    for _ in range(args.rounds):  # interleaved: load changes hit both sides
        sandbox += run_reward(jobs, args.workers, args.isolation)
        bare += run_bare(jobs, args.workers)
        bare_isolated_flags += run_bare(jobs, args.workers, ("-I", "-S"))
    tests = len(jobs) * args.rounds
    ratio = sandbox / bare
    print(f"programs: {len(jobs)} HumanEval-sized, {args.rounds} rounds, {args.workers} workers, "
          f"parent holding {len(ballast) >> 20} MB")
    namespaces = args.isolation != "process" and bubblewrap_works()
    print(f"isolation: {'bubblewrap namespaces + ' if namespaces else ''}seccomp, landlock, rlimits; "
          f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"code reward (sandboxed): {tests / sandbox:7.1f} tests/s")
    print(f"bare subprocess.run:     {tests / bare:7.1f} tests/s")
    print(f"bare, python -I -S:      {tests / bare_isolated_flags:7.1f} tests/s  (the sandbox's interpreter flags)")
    print(f"isolation cost: {ratio:.2f}x a bare subprocess (claim: <= 2x); "
          f"{sandbox / bare_isolated_flags:.2f}x one started with the same flags")
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
