"""Code reward: run the completion's last code block against the row's tests in a sandbox.

Tests come in the row's ``verification_info`` column, a dict (a struct column, as in
``open-r1/verifiable-coding-problems-python``) or its JSON string (PrimeIntellect's original),
in one of two shapes:

- ``{"language": "python", "test_cases": [{"type": "stdin_stdout", "input": …, "output": …}, …]}``:
  the program reads ``input`` on stdin and passes when its stdout equals ``output`` up to
  trailing whitespace; a test case of ``"type": "function_call"`` names ``fn_name`` instead, and
  its ``input`` is the list of positional arguments and ``output`` the expected return value
  (each a JSON or Python literal, or its string, as the dataset's string columns hold them);
  the function is looked up as a top-level name or as a method of a class the program defines
  (LeetCode's ``class Solution``), ``typing``'s names are in scope, and a one-element list
  ``output`` also matches its element (APPS/TACO wrap return values so); tuples compare as lists;
- ``{"tests": ["assert f(2) == 4", …]}``: each appended to the program; passes when the program
  ran to its last line (below).

The score is the fraction of tests passed (at most ``max_tests`` run); a row without tests gets
None, a completion without a code block after ``</think>`` gets 0.0. A function-call test whose
``input`` or ``output`` is no literal cannot be run: it is left out of the row's tests (and the
row gets None if no test is left) rather than fail every sample the same. Only Python runs
locally; rows for other languages get None unless a provider runs them. Per-row routing: code
rows are the ``reward_type`` ``code`` (and ``reasoning``/untagged) rows; math and general rows get
None (see :data:`r1_recipe.rewards.base.REWARD_TYPES`). Every program goes through the
sandbox's one call, ``Sandbox.run(program, stdin)``: a function-call test is a program too.
Identical (program, test) jobs of one call run once (the samples of a GRPO group often repeat a
program), so a program's verdict is its first run's.

What a pass is (issue 17, "hostile programs score 0"): exit status 0 is not enough, because a
program can end early with it (``os._exit(0)``, ``sys.exit(0)``, ``raise SystemExit``, a signal
handler, an ``atexit`` or ``sys.excepthook`` that exits 0 after a failed assert), which a GRPO
policy finds. An assert or function-call test passes only with the sandbox's proof
(``RunResult.completed``): the sandbox's child gets a per-run random key from the parent on a
pipe (never in a file, an argument or the environment), and writes it to a descriptor the
program does not write to after the program's last line ran without raising; the parent
requires exactly that key (see :mod:`r1_recipe.rewards.sandbox_child`). A stdin/stdout test
passes on exit status 0 and the right output, the proof not required: its output is the
positive evidence, and ``os._exit(0)`` after a flushed answer is a contest idiom for a fast end.
The function-call harness reads the test's values and binds the builtins it checks with before
the candidate runs, and compares plain values only (an always-equal object fails).

Limits, honestly: the key lives in the sandboxed interpreter while the program runs, so a
program that introspects the interpreter (walks frames with ``sys._getframe``, scans ``gc``
objects, reads memory with ``ctypes``, or skips lines with a ``sys.settrace`` hook) can forge the
proof or skip the asserts; and it can read ``main.py``, the asserts included, and answer from
them. The asserts run in the candidate's namespace, so ``assert f(2) == 4`` is fooled by an ``f``
returning an always-equal object (function-call tests are not). Nothing of that reaches outside
the sandbox; it is a reward hack a policy must find by writing such code on purpose.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1_recipe.rewards.base import CODE, RewardFunc, applies, column, named, reads, route, row_texts
from r1_recipe.rewards.extract import last_code_block
from r1_recipe.rewards.sandbox import LocalSandbox, Sandbox

logger = logging.getLogger(__name__)

# Add a remote service here (name -> factory taking the sandbox options) to make it selectable.
SANDBOX_PROVIDERS: dict[str, Callable[..., Sandbox]] = {"local": LocalSandbox}

FUNCTION_CALL = "function_call"


def _same_output(got: str, expected: str) -> bool:
    """Equal up to trailing whitespace on each line and trailing blank lines."""
    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.strip().splitlines()]

    return norm(got) == norm(expected)


def literal(value: Any) -> tuple[bool, Any]:
    """(True, the value) of a test's ``input``/``output``: a string is read as JSON, else as a Python
    literal; any other value is itself. (False, None) when a string is neither.

    >>> literal("[[1, 2], 3]"), literal("(1, 'a')"), literal([4]), literal("nope(")
    ((True, [[1, 2], 3]), (True, (1, 'a')), (True, [4]), (False, None))
    """
    if not isinstance(value, str):
        return True, value
    try:
        return True, json.loads(value)
    except ValueError:
        pass
    try:
        return True, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


# The sandbox program of one function-call test. The test's input and expected value are read,
# and every builtin the check needs is bound, before the candidate runs (under its own __name__,
# so a `__main__` block stays idle); a pass is the program's end (the sandbox's proof), a mismatch
# exits 1. Only plain values compare: an object of the program's own type (one whose `__eq__`
# says yes to anything) never equals the expected value.
_CALL_HARNESS = '''
import ast as _ast, json as _json, sys as _sys
def _read(s):
    try:
        return _json.loads(s)
    except ValueError:
        return _ast.literal_eval(s.strip())
_args = _read(%(args)r)
_args = _args if isinstance(_args, (list, tuple)) else [_args]
_want = _read(%(want)r)
_exit, _type, _len, _tuple = _sys.exit, type, len, tuple
_callable, _getattr, _isinstance = callable, getattr, isinstance
_PLAIN = (int, float, str, bool, type(None), bytes, complex, set, frozenset)
_OTHER = object()
def _key(k):
    if _type(k) is tuple:
        return _tuple(_key(v) for v in k)
    return k if _type(k) in _PLAIN else _OTHER
def _plain(x):
    if _type(x) in (list, tuple):
        return [_plain(v) for v in x]
    if _type(x) is dict:
        return {_key(k): _plain(v) for k, v in x.items()}
    return x if _type(x) in _PLAIN else _OTHER
_want = _plain(_want)
_ns = {"__name__": "solution"}
exec("from typing import *", _ns)
exec(compile(%(code)r, "solution.py", "exec"), _ns)
_name = %(fn_name)r
_fn = _ns.get(_name)
if not _callable(_fn) or _isinstance(_fn, _type):
    _owners = [v for v in _ns.values() if _isinstance(v, _type) and _callable(_getattr(v, _name, None))]
    _fn = _getattr(_owners[-1](), _name) if _owners else None
if _fn is None:
    _exit(3)
_got = _plain(_fn(*_args))
if not (_got == _want or (_type(_want) is list and _len(_want) == 1 and _got == _want[0])):
    _exit(1)
'''


def _call_program(code: str, test: dict) -> str | None:
    """The sandbox program of one function-call test, or None when its input/output is no literal."""
    args, want = test.get("input"), test.get("output")
    ok_args, _ = literal(args)
    ok_want, _ = literal(want)
    if not (ok_args and ok_want) or not test.get("fn_name"):
        return None
    as_text = (lambda v: v if isinstance(v, str) else json.dumps(v))
    return _CALL_HARNESS % {"code": code, "fn_name": str(test["fn_name"]), "args": as_text(args),
                            "want": as_text(want)}


def runnable_tests(info: dict) -> list[dict | str]:
    """The row's tests that can run: its test cases (function calls with literal input and output),
    else its assert lines."""
    if info.get("test_cases"):
        return [t for t in info["test_cases"] if t.get("type") != FUNCTION_CALL or _call_program("", t) is not None]
    return list(info.get("tests") or [])


def _jobs(code: str, info: dict) -> list[tuple[str, str, str | None]]:
    """(program, stdin, expected stdout or None for 'exit 0 passes') per runnable test."""
    jobs: list[tuple[str, str, str | None]] = []
    for t in runnable_tests(info):
        if isinstance(t, str):
            jobs.append((f"{code}\n\n{t}\n", "", None))
        elif t.get("type") == FUNCTION_CALL:
            jobs.append((_call_program(code, t), "", None))
        else:
            stdin, stdout = t.get("input"), t.get("output")
            jobs.append((code, "" if stdin is None else str(stdin), "" if stdout is None else str(stdout)))
    return jobs


def verification(value: Any, where: str = "verification_info") -> dict:
    """A row's ``verification_info`` as a dict ({} when absent); a string is read as JSON."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"code: {where} is not JSON ({e}); expected a dict like "
                             '{"language": "python", "test_cases": [{"input": ..., "output": ...}]}') from e
    if not isinstance(value, dict):
        raise ValueError(f"code: {where} is a {type(value).__name__}, expected a dict with test_cases or tests")
    return value


def code(
    provider: str = "local", verification_column: str = "verification_info", cpu_s: int = 5,
    wall_s: float = 10.0, memory_mb: int = 512, max_tests: int = 32, workers: int = 2,
    strict: bool = True,
) -> RewardFunc:
    """Fraction of the row's tests (stdin/stdout, function calls or asserts) passed by the last
    fenced code block after </think>, run in a sandbox (local: seccomp, Landlock, rlimits, no
    network, temp dir); None without tests and on math and general rows."""
    if provider not in SANDBOX_PROVIDERS:
        raise ValueError(f"code: unknown provider {provider!r}; known: {sorted(SANDBOX_PROVIDERS)}")
    box = SANDBOX_PROVIDERS[provider](cpu_s=cpu_s, wall_s=wall_s, memory_mb=memory_mb,
                                      strict=strict)

    def passed(job: tuple[str, str, str | None]) -> bool:
        program, stdin, expected = job
        try:
            r = box.run(program, stdin)
        except Exception as e:  # noqa: BLE001 - a sandbox failure must not stop training
            logger.warning("code sandbox failed: %r", e)
            return False
        if r.timed_out or r.returncode != 0:
            return False
        if expected is None:  # asserts or a function call: only the harness's proof that it ran to its end
            return r.completed
        return _same_output(r.stdout, expected)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        infos = column(kwargs, verification_column, n)
        ok = applies(n, kwargs.get("reward_type"), domain=CODE)
        rows: list[list[tuple[str, str, str | None]] | None] = []
        for i, text in enumerate(row_texts(completions, kwargs)):
            info = verification(infos[i], f"{verification_column} of row {i}") if ok[i] else {}
            lang = str(info.get("language") or "python").lower()
            if not ok[i] or lang != "python" and provider == "local" or not runnable_tests(info):
                rows.append(None)
                continue
            block = last_code_block(text)
            rows.append(_jobs(block, info)[:max_tests] if block is not None else [])  # []: no code block
        flat = [job for jobs in rows if jobs for job in jobs]
        distinct = list(dict.fromkeys(flat))  # a GRPO group repeats programs: one run each
        with ThreadPoolExecutor(max(1, workers)) as pool:
            verdict = dict(zip(distinct, pool.map(passed, distinct)))
        results = iter([verdict[job] for job in flat])
        out: list[float | None] = []
        for jobs in rows:
            if jobs is None:
                out.append(None)
            elif not jobs:
                out.append(0.0)
            else:
                out.append(sum(next(results) for _ in jobs) / len(jobs))
        return out

    return route(reads(named(fn, "code"), **{verification_column: "verification_column"}), domain=CODE)
