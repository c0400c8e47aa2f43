"""Code reward: run the completion's last code block against the row's tests in a sandbox.

Tests come in the row's ``verification_info`` column, a dict (a struct column, as in
``open-r1/verifiable-coding-problems-python``) or its JSON string (PrimeIntellect's original),
in one of two shapes:

- ``{"language": "python", "test_cases": [{"type": "stdin_stdout", "input": …, "output": …}, …]}``:
  the program reads ``input`` on stdin and passes when its stdout matches ``output`` by
  :func:`same_lines`, the one stdout rule the evaluator uses too (lines stripped, numbers equal as
  decimals: ``4.0`` for ``4``); a test case of ``"type": "function_call"`` names ``fn_name``
  instead, and its ``input`` is the list of positional arguments and ``output`` the expected
  return value (each a JSON or Python literal, or its string, as the dataset's string columns
  hold them); the function is looked up as a top-level name or as a method of a class the program
  defines (LeetCode's ``class Solution``), ``typing``'s names are in scope; its returned value
  leaves the sandbox and is compared outside (:func:`same_return`: tuples as lists, a
  one-element list ``output`` also matches its element, as APPS/TACO wrap return values);
- ``{"tests": ["assert f(2) == 4", …]}``: each appended to the program; passes when the program
  ran to its last line (below).

The score is the fraction of the row's tests passed, so 1.0 means every test passed (rejection
sampling keeps ``code == 1.0`` as "passes every test"): all run by default; ``max_tests=N`` runs
the first N and counts the others as failed. A row without tests gets
None, a completion without a code block after ``</think>`` gets 0.0. A function-call test whose
``input`` or ``output`` is no literal cannot be run: it is left out of the row's tests (and the
row gets None if no test is left) rather than fail every sample the same. Only Python runs
locally; rows for other languages get None unless a provider runs them. Per-row routing: code
rows are the ``reward_type`` ``code`` (and ``reasoning``/untagged) rows; math and general rows get
None (see :data:`r1_recipe.rewards.base.REWARD_TYPES`). Every program goes through the
sandbox's one call, ``Sandbox.run(program, stdin)``: a function-call test is a program too.
Identical (program, test) jobs of one call run once (the samples of a GRPO group often repeat a
program), so a program's verdict is its first run's.

What a pass is (issues 17 and 32): exit status 0 is not enough, because a program can end early
with it (``os._exit(0)``, ``sys.exit(0)``, ``raise SystemExit``, a signal handler, an ``atexit`` or
``sys.excepthook`` that exits 0 after a failed assert), which a GRPO policy finds; and nothing
inside the program's interpreter can be trusted, since a program can walk its frames
(``sys._getframe``), the ``gc`` heap or its memory. So every verdict is made where the program
cannot reach:

- an assert test runs in the sandbox's *judge* (:class:`r1_recipe.rewards.sandbox.Judge`), a
  process apart from the program's: the program runs alone, then answers calls; the assert calls
  the program's functions through stand-ins that carry plain values (``repr`` read back with
  ``ast.literal_eval``: an always-equal object is no answer); the judge alone holds the tests, the
  per-run key and the proof descriptor, and proves that the assert ran to its end
  (``RunResult.completed``; see :mod:`r1_recipe.rewards.sandbox_child`);
- a function-call test returns its value with the sandbox's proof, and the value is compared
  here (:func:`same_return`); the expected value never enters the sandbox, so rebinding the
  harness's globals (``sys.modules['__main__']._exit``), reading ``_want`` or ``main.py``, or
  calling the proof itself gives nothing but the value the program computed;
- a stdin/stdout test passes on exit status 0 and the right output (:func:`same_lines`), the
  proof not required: its output is the positive evidence, and ``os._exit(0)`` after a flushed
  answer is a contest idiom for a fast end.

Limits, honestly: the judge's stand-ins pass plain values only, so a test that hands the program
a callable or an object, or checks that it mutated an argument in place, fails; a test that
expects an exception sees ``RemoteError`` instead of its type. The program still reads its own
inputs (a test's arguments), and a stdin/stdout program its input.
"""

from __future__ import annotations

import ast
import builtins
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Any

from r1_recipe.rewards.base import CODE, RewardFunc, applies, column, named, reads, route, row_texts
from r1_recipe.rewards.extract import last_code_block
from r1_recipe.rewards.sandbox import Judge, LocalSandbox, Sandbox
from r1_recipe.rewards.sandbox_child import RESULT_NAME

logger = logging.getLogger(__name__)

# Add a remote service here (name -> factory taking the sandbox options) to make it selectable.
SANDBOX_PROVIDERS: dict[str, Callable[..., Sandbox]] = {"local": LocalSandbox}

FUNCTION_CALL = "function_call"


def same_lines(got: str, expected: str) -> bool:
    """The one stdout rule of the reward and the evaluator (LiveCodeBench's): the whole output and
    each line stripped, the same number of lines, each equal as text or as the same decimal
    numbers (``4.0`` for ``4``, ``1e0`` for ``1``).

    >>> same_lines("3 \\n0.50\\n\\n", "3\\n0.5"), same_lines("3\\n", "3\\n4"), same_lines("1e0", "1")
    (True, False, True)
    """
    got_lines = [line.strip() for line in got.strip().split("\n")]
    want_lines = [line.strip() for line in expected.strip().split("\n")]
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines):
        if g == w:
            continue
        try:
            if [Decimal(x) for x in g.split()] != [Decimal(x) for x in w.split()]:
                return False
        except InvalidOperation:
            return False
    return True


def _as_lists(value: Any) -> Any:
    """Tuples as lists, all the way down (a returned tuple matches a JSON list)."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def same_return(result: str | None, expected: Any) -> bool:
    """Whether the value a function-call harness returned (its ``repr``, carried by the sandbox's
    proof) equals ``expected``, compared here, outside the program's interpreter; a one-element
    list ``expected`` also matches its element (APPS/TACO wrap return values so).

    >>> same_return("(1, 2)", [1, 2]), same_return("5", [5]), same_return("Ellipsis", 5), same_return(None, 5)
    (True, True, False, False)
    """
    if result is None:
        return False
    try:
        got = _as_lists(ast.literal_eval(result))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    want = _as_lists(expected)
    return got == want or (type(want) is list and len(want) == 1 and got == want[0])


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


# The sandbox program of one function-call test: the test's arguments read and every builtin the
# harness needs bound before the candidate runs (under its own __name__, so a `__main__` block stays
# idle), then one call; the returned value's repr goes out with the sandbox's proof, and the parent
# compares it with the expected value, which never enters the box (`same_return`). Only plain values
# are sent: anything else (an object whose `__eq__` says yes to anything) goes as `...`, equal to
# no expected value. Nothing in here decides the verdict, so a program that rebinds the harness's
# globals or finds the proof can only send a value of its choosing, which it has to compute.
_CALL_HARNESS = '''
import ast as _ast, json as _json, sys as _sys
def _read(s):
    try:
        return _json.loads(s)
    except ValueError:
        return _ast.literal_eval(s.strip())
_args = _read(%(args)r)
_args = _args if isinstance(_args, (list, tuple)) else [_args]
_exit, _type, _tuple, _repr = _sys.exit, type, tuple, repr
_callable, _getattr, _isinstance = callable, getattr, isinstance
_PLAIN = (int, float, str, bool, type(None), bytes, complex, set, frozenset)
def _key(k):
    if _type(k) is tuple:
        return _tuple(_key(v) for v in k)
    return k if _type(k) in _PLAIN else ...
def _plain(x):
    if _type(x) in (list, tuple):
        return [_plain(v) for v in x]
    if _type(x) is dict:
        return {_key(k): _plain(v) for k, v in x.items()}
    return x if _type(x) in _PLAIN else ...
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
%(result)s = _repr(_plain(_fn(*_args)))
'''


def asserts_judge(test: str) -> Judge:
    """The sandbox's judge for an assert test: the test runs apart from the program, each name it
    reads that is no builtin and that it does not assign itself taken from the program (a
    function as a stand-in calling it, a module imported again, plain data copied).

    >>> asserts_judge("x = f(2)\\nassert abs(x) == g(4), math.pi").names
    ('f', 'g', 'math')
    """
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError):
        return Judge("", (), test)  # fails in the judge, as it would in the program
    loads, stores = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads.append if isinstance(node.ctx, ast.Load) else stores.add)(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, ast.arg):
            stores.add(node.arg)
    names = sorted({n for n in loads if n not in stores and not hasattr(builtins, n)})
    return Judge("", tuple(names), test)


def _call_program(code: str, test: dict) -> str | None:
    """The sandbox program of one function-call test, or None when its input/output is no literal."""
    args, want = test.get("input"), test.get("output")
    ok_args, _ = literal(args)
    ok_want, _ = literal(want)
    if not (ok_args and ok_want) or not test.get("fn_name"):
        return None
    as_text = (lambda v: v if isinstance(v, str) else json.dumps(v))
    return _CALL_HARNESS % {"code": code, "fn_name": str(test["fn_name"]), "args": as_text(args),
                            "result": RESULT_NAME}


def runnable_tests(info: dict) -> list[dict | str]:
    """The row's tests that can run: its test cases (function calls with literal input and output),
    else its assert lines."""
    if info.get("test_cases"):
        return [t for t in info["test_cases"] if t.get("type") != FUNCTION_CALL or _call_program("", t) is not None]
    return list(info.get("tests") or [])


# How a job passes: ``stdout`` (exit 0 and ``same_lines`` with the expected text), ``judge`` (the
# assert ran to its end in the sandbox's judge, a process apart from the program, calling the
# program's functions: asserts), ``return`` (the proof's returned value equals the expected one:
# function calls).
Job = tuple[str, str, str, str]  # program, stdin, check, expected (text)


def _jobs(code: str, info: dict) -> list[Job]:
    """(program, stdin, check, expected) per runnable test."""
    jobs: list[Job] = []
    for t in runnable_tests(info):
        if isinstance(t, str):
            jobs.append((code, "", "judge", t))
        elif t.get("type") == FUNCTION_CALL:
            want = t.get("output")
            jobs.append((_call_program(code, t), "", "return", want if isinstance(want, str) else json.dumps(want)))
        else:
            stdin, stdout = t.get("input"), t.get("output")
            jobs.append((code, "" if stdin is None else str(stdin), "stdout", "" if stdout is None else str(stdout)))
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
    wall_s: float = 10.0, memory_mb: int = 512, max_tests: int | None = None, workers: int = 2,
    strict: bool = True, isolation: str = "auto",
) -> RewardFunc:
    """Fraction of the row's tests (stdin/stdout, function calls or asserts) passed by the last
    fenced code block after </think>, run in a sandbox (local: bubblewrap namespaces where they
    work, seccomp, Landlock, rlimits); None without tests and on math and general rows. 1.0 means
    every test of the row passed: max_tests=N runs the first N and counts the rest as failed."""
    if provider not in SANDBOX_PROVIDERS:
        raise ValueError(f"code: unknown provider {provider!r}; known: {sorted(SANDBOX_PROVIDERS)}")
    options = {"isolation": isolation} if provider == "local" else {}
    box = SANDBOX_PROVIDERS[provider](cpu_s=cpu_s, wall_s=wall_s, memory_mb=memory_mb, strict=strict, **options)

    def passed(job: Job) -> bool:
        program, stdin, check, expected = job
        try:
            r = box.run(program, stdin, **({"judge": asserts_judge(expected)} if check == "judge" else {}))
        except Exception as e:  # noqa: BLE001 - a sandbox failure must not stop training
            logger.warning("code sandbox failed: %r", e)
            return False
        if r.timed_out or r.returncode != 0:
            return False
        if check == "judge":  # asserts: only the judge's proof that they ran to their end
            return r.completed
        if check == "return":  # compared here: the expected value never enters the sandbox
            return r.completed and same_return(r.result, literal(expected)[1])
        return same_lines(r.stdout, expected)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        infos = column(kwargs, verification_column, n)
        ok = applies(n, kwargs.get("reward_type"), domain=CODE)
        rows: list[tuple[list[Job], int] | None] = []  # (the jobs that run, the row's number of tests)
        for i, text in enumerate(row_texts(completions, kwargs)):
            info = verification(infos[i], f"{verification_column} of row {i}") if ok[i] else {}
            lang = str(info.get("language") or "python").lower()
            if not ok[i] or lang != "python" and provider == "local" or not runnable_tests(info):
                rows.append(None)
                continue
            block = last_code_block(text)
            if block is None:
                rows.append(([], 1))  # no code block: 0.0
                continue
            jobs = _jobs(block, info)
            rows.append((jobs[:max_tests] if max_tests is not None else jobs, len(jobs)))
        flat = [job for row in rows if row for job in row[0]]
        distinct = list(dict.fromkeys(flat))  # a GRPO group repeats programs: one run each
        with ThreadPoolExecutor(max(1, workers)) as pool:
            verdict = dict(zip(distinct, pool.map(passed, distinct)))
        results = iter([verdict[job] for job in flat])
        out: list[float | None] = []
        for row in rows:
            if row is None:
                out.append(None)
            else:  # the tests past max_tests, unrun, count as failed
                jobs, total = row
                out.append(sum(next(results) for _ in jobs) / total)
        return out

    return route(reads(named(fn, "code"), **{verification_column: "verification_column"}), domain=CODE)
