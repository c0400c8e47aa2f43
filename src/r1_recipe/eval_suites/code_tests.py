"""Scoring code benchmark samples: each sample's tests, run in the sandbox by parallel workers.

A code benchmark row's ``answer`` is a JSON *reference* saying how its program is checked; the
tests themselves (which can be megabytes for LiveCodeBench) are in the row's ``tests`` column,
so the samples file does not repeat them once per sample:

    kind        program run per test                     passes when
    humaneval   prompt + completion; test + check(...)   check(...) ran to its end in the sandbox's
                in the sandbox's judge, apart              judge (one run, no tests column)
    stdio       the completion, the test input on stdin  its stdout matches the expected output
    functional  LiveCodeBench prelude + completion, then  the returned value (JSON, carried by the
                a call of ``fn_name`` (a ``class Solution``  proof) equals the expected one
                method when the code defines one) with the
                test input's JSON lines as arguments

A sample is correct when every test passes. All tests of all samples go to one pool of worker
threads, each test a fresh sandboxed process with the problem's time and memory limits (the
reference's ``time_limit_s``/``memory_mb``, else the caller's ``timeout``); once a test of a
sample fails, its remaining tests are skipped. Output comparison (``compare``): ``lines`` is
LiveCodeBench's, and the ``code`` reward's too, so training and evaluation judge stdout alike
(:func:`r1_recipe.rewards.code.same_lines`: strip the whole output and each line; lines equal as
text or as the same decimal numbers); ``tokens`` compares whitespace-separated tokens (Codeforces'
default checker, for that benchmark only).

"It ran to its end" is the sandbox's judge's proof (:class:`r1_recipe.rewards.sandbox.Judge`), not
exit status 0: HumanEval's test and ``check(entry_point)`` run in a process apart from the
program, after the prompt (its helpers, trusted), calling the program's entry point through a
stand-in that carries plain values; a program that leaves early, calls the proof itself or
returns an always-equal object fails (see :mod:`r1_recipe.rewards.code`). A stdio test needs exit
status 0 and the expected output, not the proof (``os._exit(0)`` after a flushed answer is a
contest idiom). A functional test's returned value travels with the proof and is compared here,
so a result line the program prints itself counts for nothing, and the expected value is never in
the sandbox.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from tqdm.auto import tqdm

from r1_recipe.rewards.code import SANDBOX_PROVIDERS, same_lines
from r1_recipe.rewards.sandbox import Judge, RunResult
from r1_recipe.rewards.sandbox_child import RESULT_NAME

logger = logging.getLogger(__name__)

KINDS = ("humaneval", "stdio", "functional")

# What LiveCodeBench puts before every program (its testing_util's import prelude): the
# standard modules a contest solution uses without importing them, and a deep recursion limit.
PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                   "statistics", "itertools", "functools", "operator", "io", "sys", "json")
PRELUDE = "".join(
    [f"from {m} import *\n" for m in (*PRELUDE_MODULES, "builtins", "typing")]
    + [f"import {m}\n" for m in PRELUDE_MODULES] + ["sys.setrecursionlimit(50000)\n"])


@dataclass(frozen=True)
class Test:
    sample: int
    program: str
    stdin: str
    expected: str | None  # None: exit 0 passes
    check: str  # judge, lines, tokens, functional
    limits: tuple[int, float, int, int]  # cpu s, wall s, memory MB, output KB
    judge: Judge | None = None  # tests run apart from the program (HumanEval's check)


def same_tokens(got: str, expected: str) -> bool:
    """Codeforces' default check: the same whitespace-separated tokens.

    >>> same_tokens("1 2\\n3\\n", "1\\n2 3"), same_tokens("1 2", "1 2 3")
    (True, False)
    """
    return got.split() == expected.split()


def functional_program(code: str, fn_name: str) -> str:
    """The program one functional test runs: the test's arguments read and ``json.dumps`` bound
    first, then the solution in its own module (so its ``if __name__ == "__main__":`` block stays
    out, as in LiveCodeBench), then one call; the returned value's JSON goes to the sandbox's
    proof (``__r1_result__``), not to stdout, where the program could forge it."""
    return (
        "import json as _json, sys as _sys\n"
        "_args = [_json.loads(line) for line in _sys.stdin.read().split('\\n') if line.strip()]\n"
        "_dumps, _getattr, _type, _list, _tuple = _json.dumps, getattr, type, list, tuple\n"
        f"_code = {PRELUDE + code!r}\n"
        "_module = {'__name__': 'solution'}\n"
        "exec(compile(_code, 'solution.py', 'exec'), _module)\n"
        f"_fn = _getattr(_module['Solution'](), {fn_name!r}) if 'class Solution' in _code else _module[{fn_name!r}]\n"
        "_out = _fn(*_args)\n"
        "_out = _list(_out) if _type(_out) is _tuple else _out\n"
        f"{RESULT_NAME} = _dumps(_out)\n"
    )


def _same_value(result: RunResult, expected: str) -> bool:
    if not result.completed or result.result is None:
        return False  # it never returned (or exited early)
    try:
        return json.loads(result.result) == json.loads(expected)
    except (ValueError, RecursionError):
        return False


def limits_for(reference: dict, timeout: float, expected_outputs: Sequence[str] = ()) -> tuple[int, float, int, int]:
    """(cpu s, wall s, memory MB, output KB) of one problem's tests: its own time and memory
    limits, a wall limit of twice the time + 1 s (interpreter start, a loaded machine), and
    room for twice its longest expected output (at least 1 MB)."""
    seconds = float(reference.get("time_limit_s") or timeout)
    longest = max((len(o) for o in expected_outputs), default=0)
    return (max(1, math.ceil(seconds)), 2 * seconds + 1.0, int(reference.get("memory_mb") or 512),
            max(1024, 2 * longest // 1024 + 64))


def humaneval_program(code: str, reference: str) -> str:
    """The program HumanEval runs: prompt + completion, its tests, ``check(entry_point)``.

    A completion that defines the entry point itself goes after the prompt on a new line (the
    prompt's imports and helpers stay, the new definition replaces the stub); anything else
    continues the prompt, as HumanEval's body-only completions do.

    >>> ref = json.dumps({"prompt": "def f(x):\\n", "test": "def check(c):\\n    assert c(1) == 2\\n",
    ...                   "entry_point": "f"})
    >>> print(humaneval_program("    return x + 1", ref))
    def f(x):
        return x + 1
    <BLANKLINE>
    def check(c):
        assert c(1) == 2
    <BLANKLINE>
    <BLANKLINE>
    check(f)
    <BLANKLINE>
    """
    ref = json.loads(reference)
    prompt, entry = ref["prompt"], ref["entry_point"]
    defines = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    body = f"{prompt}\n{code}" if defines else f"{prompt}{code}"
    return f"{body}\n\n{ref['test']}\n\ncheck({entry})\n"


def humaneval_judge(reference: str) -> Judge:
    """HumanEval's tests, run by the sandbox's judge apart from the program: the prompt (its
    imports and helpers, trusted) first, the entry point taken from the program, then the test
    and ``check(entry_point)``; the program never holds the expected values."""
    ref = json.loads(reference)
    return Judge(ref["prompt"], (ref["entry_point"],), f"{ref['test']}\n\ncheck({ref['entry_point']})\n")


def tests_of(sample: int, code: str, reference: str, tests: str | None, timeout: float) -> list[Test]:
    """The sandbox runs that decide one sample."""
    ref = json.loads(reference)
    kind = ref.get("kind", "humaneval")
    if kind not in KINDS:
        raise ValueError(f"code reference of kind {kind!r}; known: {KINDS}")
    if kind == "humaneval":
        program = humaneval_program(code, reference).rsplit(f"\n\n{ref['test']}", 1)[0]  # no tests in the program
        return [Test(sample, program, "", None, "judge", limits_for(ref, timeout), humaneval_judge(reference))]
    cases = json.loads(tests) if tests else []
    if not cases:
        raise ValueError(f"code problem {ref.get('id')!r} has no tests")
    limits = limits_for(ref, timeout, [c["output"] for c in cases])
    if kind == "functional":
        program = functional_program(code, ref["fn_name"])
        return [Test(sample, program, c["input"], c["output"], "functional", limits) for c in cases]
    program = PRELUDE + code if ref.get("prelude", True) else code
    check = ref.get("compare", "lines")
    return [Test(sample, program, c["input"], c["output"], check, limits) for c in cases]


def passed(test: Test, result: RunResult) -> bool:
    if result.timed_out or result.returncode != 0:
        return False
    if test.check == "judge":
        return result.completed  # the judge's proof that check(...) ran to its end
    if test.check == "functional":
        return _same_value(result, test.expected)
    return (same_tokens if test.check == "tokens" else same_lines)(result.stdout, test.expected)


def run_tests(programs: Sequence[str | None], references: Sequence[str], tests: Sequence[str | None] | None = None,
              *, workers: int | None = None, timeout: float = 5.0, provider: str = "local",
              progress: bool = True, sandbox_options: dict | None = None) -> list[bool]:
    """True where the sample's program passes all its problem's tests (see the module
    docstring); None (no code) is False. The progress bar shows on a terminal only, and never
    with ``progress=False``. ``sandbox_options`` go to the provider (local: ``isolation``)."""
    tests = tests if tests is not None else [None] * len(programs)
    runs: list[Test] = []
    for i, (code, reference, cases) in enumerate(zip(programs, references, tests)):
        if code is not None:
            runs.extend(tests_of(i, code, reference, cases, timeout))
    failed = [code is None for code in programs]
    lock = threading.Lock()

    @cache
    def box(limits: tuple[int, float, int, int]):
        cpu_s, wall_s, memory_mb, output_kb = limits
        return SANDBOX_PROVIDERS[provider](cpu_s=cpu_s, wall_s=wall_s, memory_mb=memory_mb, output_kb=output_kb,
                                           **(sandbox_options or {}))

    for limits in {t.limits for t in runs}:  # build each box (and its checks) once, before the threads
        box(limits)
    bar = tqdm(total=len(runs), desc="code tests", unit="test", disable=None if progress else True)

    def run(test: Test) -> None:
        try:
            if failed[test.sample]:
                return  # an earlier test of this sample failed: it is wrong already
            try:
                judged = {"judge": test.judge} if test.judge else {}
                ok = passed(test, box(test.limits).run(test.program, test.stdin, **judged))
            except Exception as e:  # noqa: BLE001 - one broken run scores wrong, the rest go on
                logger.warning("code sandbox failed: %r", e)
                ok = False
            if not ok:
                failed[test.sample] = True
        finally:
            with lock:
                bar.update(1)

    workers = workers or min(8, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(run, runs))
    finally:
        bar.close()
    return [not f for f in failed]
