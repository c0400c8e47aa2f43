"""Programs that end before the tests run (or make a failing test look like a clean exit) score 0
in every test kind decided by the program ending: assert tests and function-call tests in the
``code`` reward, HumanEval's ``check(candidate)`` through the evaluator, LiveCodeBench's
functional tests; a correct program still scores 1. (Issue 17, "hostile programs score 0".)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1_recipe.eval_suites.code_tests import run_tests
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.sandbox import LocalSandbox

pytestmark = pytest.mark.skipif(not all(LocalSandbox.protections().values()), reason="needs seccomp and Landlock")

FIXTURES = Path(__file__).parent / "fixtures" / "hub"

# Each goes before a wrong solution: exit status 0 with the tests never run, or failed.
EARLY = {
    "os._exit(0)": "import os\nos._exit(0)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "SIGTERM handler exits 0": "import os, signal\nsignal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
                               "os.kill(os.getpid(), signal.SIGTERM)\n",
    "excepthook exits 0": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "atexit exits 0": "import atexit, os\natexit.register(os._exit, 0)\n",
    "closed stdout then exit": "import os, sys\nsys.stdout.close()\nos.close(1)\nos._exit(0)\n",
    # a guessed proof on every descriptor it may hold, and a forged result line, then out
    "forged proof": "import os\nfor fd in range(1, 64):\n    try:\n        os.write(fd, b'0' * 32 + b'\\n')\n"
                    "    except OSError:\n        pass\n"
                    "print('\\x1e<r1-recipe result>\\x1e5')\nos._exit(0)\n",
}


def answer(code: str) -> str:
    return f"<think>\nplan\n</think>\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def code():
    (fn,) = get_reward_funcs(["code"], code={"cpu_s": 2, "wall_s": 3.0, "memory_mb": 256, "workers": 2})
    return fn


ASSERTS = {"tests": ["assert square(2) == 4", "assert square(-3) == 9"]}
CALLS = {"test_cases": [{"type": "function_call", "fn_name": "square", "input": "[2]", "output": "[4]"},
                        {"type": "function_call", "fn_name": "square", "input": [-3], "output": [9]}]}
WRONG = "def square(x):\n    return 0\n"
RIGHT = "def square(x):\n    return x * x\n"


@pytest.mark.parametrize("info", [ASSERTS, CALLS], ids=["asserts", "function calls"])
def test_the_reward_gives_early_exits_zero_and_a_correct_program_one(code, info):
    completions = [answer(attack + WRONG) for attack in EARLY.values()]
    completions += [answer(RIGHT), answer(RIGHT + "import sys\n")]
    got = code(completions=completions, verification_info=[info] * len(completions))
    assert dict(zip([*EARLY, "right", "right too"], got)) == {**dict.fromkeys(EARLY, 0.0), "right": 1.0,
                                                              "right too": 1.0}


def test_a_program_that_exits_after_its_own_code_but_before_the_asserts_scores_zero(code):
    """The exit sits after the definitions, in a `__main__` block the asserts follow."""
    late = RIGHT.replace("x * x", "x + 1") + "if __name__ == '__main__':\n    import sys\n    sys.exit(0)\n"
    assert code(completions=[answer(late)], verification_info=[ASSERTS]) == [0.0]


def test_sandbox_reports_a_program_that_ran_to_its_end():
    box = LocalSandbox(cpu_s=2, wall_s=3.0)
    ended = box.run("print('hi')")
    assert (ended.returncode, ended.stdout, ended.completed) == (0, "hi\n", True)
    for attack in EARLY.values():
        r = box.run(attack + "assert False, 'a failed test'\n")
        assert not r.completed, attack
    assert not box.run("raise ValueError").completed


# --- HumanEval through the evaluator ----------------------------------------------------------

HE_ROW = {"task_id": "Tiny/0", "prompt": 'def square(x: int) -> int:\n    """x squared."""\n',
          "canonical_solution": "    return x * x\n",
          "test": "\n\ndef check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n",
          "entry_point": "square"}


class Scripted:
    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, params, progress=False):
        return [[a] * params.n for a in self.answers]


def test_humaneval_gives_early_exits_zero_through_the_evaluator(tmp_path):
    import gzip

    path = tmp_path / "HumanEval.jsonl.gz"
    rows = [{**HE_ROW, "task_id": f"Tiny/{i}", "prompt": HE_ROW["prompt"] + f"    # {name}\n"}
            for i, name in enumerate([*EARLY, "right"])]
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    answers = [answer(attack + WRONG) for attack in EARLY.values()] + [HE_ROW["canonical_solution"]]
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=f"humaneval={path}", num_samples=1, greedy=False,
                     verify_workers=2, verify_timeout=3.0)
    s = evaluate(cfg, sampler=Scripted(answers))
    assert s["problems"] == len(rows) and s["pass@1"] == pytest.approx(1 / len(rows))


# --- LiveCodeBench functional ------------------------------------------------------------------

LCB_REF = json.dumps({"kind": "functional", "id": "lc-1", "fn_name": "addTwo"})
LCB_TESTS = json.dumps([{"input": "2\n3", "output": "5"}, {"input": "10\n-4", "output": "6"}])
RESULT_MARK = "\x1e<r1-recipe result>\x1e"  # where the functional harness printed its result on stdout
FORGED = {  # the right value for the tests' input, printed by the program itself (then out)
    "forged result, exit": "import sys, os\n_a = [int(x) for x in sys.stdin.read().split()]\n"
                           f"print('\\n' + {RESULT_MARK!r} + str(sum(_a)), flush=True)\nos._exit(0)\n",
    "forged result, harness silenced": "import sys, io, os\n_a = [int(x) for x in sys.stdin.read().split()]\n"
                                       f"os.write(1, ('\\n' + {RESULT_MARK!r} + str(sum(_a)) + '\\n').encode())\n"
                                       "sys.stdout = io.StringIO()\n",
}
LCB_RIGHT = "class Solution:\n    def addTwo(self, a: int, b: int) -> int:\n        return a + b\n"


def test_livecodebench_functional_gives_early_exits_and_forged_results_zero():
    forged = FORGED
    wrong = LCB_RIGHT.replace("a + b", "a - b")
    programs = [attack + wrong for attack in [*EARLY.values(), *forged.values()]] + [LCB_RIGHT]
    got = run_tests(programs, [LCB_REF] * len(programs), [LCB_TESTS] * len(programs), workers=2, progress=False)
    assert dict(zip([*EARLY, *forged, "right"], got)) == {**dict.fromkeys([*EARLY, *forged], False), "right": True}


class ByTitle:
    """Answers each prompt with ``answers[key]`` for the first key the prompt contains."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, prompts, params, progress=False):
        return [[next(v for k, v in self.answers.items() if k in (p[-1]["content"] if isinstance(p, list) else p))]
                * params.n for p in prompts]


def test_livecodebench_fixture_problem_with_an_early_exit_scores_zero_through_evaluate(monkeypatch):
    """The real-schema fixture's functional problems: a right answer stays 1, the same answer
    after an early exit (or with a forged result line) is 0."""
    monkeypatch.setenv("R1_RECIPE_HUB_MIRROR", str(FIXTURES))
    right = {"return a + b": answer(LCB_RIGHT),
             "Print the largest": answer("input()\nprint(max(map(int, input().split())))"),
             "return it reversed": answer("class Solution:\n    def reverse(self, nums):\n        return nums[::-1]")}
    cfg = EvalConfig(model_name_or_path="scripted", benchmark="livecodebench", num_samples=1, greedy=False,
                     verify_workers=2)
    assert evaluate(cfg, sampler=ByTitle(right))["pass@1"] == 1.0
    exits = {"sys.exit(0)": EARLY["sys.exit(0)"], "forged proof": EARLY["forged proof"],
             "forged result, exit": FORGED["forged result, exit"]}
    for name, attack in exits.items():
        hacked = {**right, "return a + b": answer(attack + LCB_RIGHT.replace("a + b", "a - b"))}
        assert evaluate(cfg, sampler=ByTitle(hacked))["pass@1"] == pytest.approx(2 / 3), name


def test_a_stdio_program_ends_as_at_a_normal_exit():
    """The child ends with the proof and ``os._exit``: output buffered in a replaced
    ``sys.stdout`` and ``atexit`` handlers still come out, as at a normal interpreter exit."""
    box = LocalSandbox(cpu_s=2, wall_s=3.0)
    fast_io = ("import atexit, io, sys\natexit.register(lambda: print('bye'))\n"
               "sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, 'w', closefd=False), 1 << 16))\n"
               "print(5)\n")
    r = box.run(fast_io)
    assert (r.stdout, r.returncode, r.completed) == ("5\nbye\n", 0, True)
    late = box.run("import atexit, os\natexit.register(os._exit, 0)\n")  # an exit in a handler: no proof
    assert (late.returncode, late.completed) == (0, False)


def test_a_function_call_returning_an_always_equal_object_scores_zero(code):
    """The function-call harness compares plain values only: an object whose ``__eq__`` says yes
    to anything (or a subclass of the expected type doing so) is no answer."""
    always = ("class _Yes:\n    def __eq__(self, other):\n        return True\n"
              "class _Int(int):\n    def __eq__(self, other):\n        return True\n")
    got = code(completions=[answer(always + "def square(x):\n    return _Yes()"),
                            answer(always + "def square(x):\n    return _Int(0)"),
                            answer(RIGHT)], verification_info=[CALLS] * 3)
    assert got == [0.0, 0.0, 1.0]


# A wrong function that wins by reaching into the harness's globals (issue 28 / issue 32): the
# harness runs as `__main__`, so the candidate can rebind what it checks with, or read the
# expected value it compares against.
HARNESS_ATTACKS = {
    "rebinds the harness's exit": "import sys\nsys.modules['__main__']._exit = lambda *a: None\n" + WRONG,
    "returns the expected value": "import sys\ndef square(x):\n    return sys.modules['__main__']._want\n",
    "parses main.py for the expected value": (
        "import re\ndef square(x):\n    src = open('main.py').read()\n"
        "    m = re.search(r\"_want = _read\\('(.*?)'\\)\", src)\n    return eval(m.group(1))[0] if m else 0\n"),
}


def test_a_function_call_that_reaches_into_the_harness_scores_zero(code):
    got = code(completions=[answer(a) for a in HARNESS_ATTACKS.values()] + [answer(RIGHT)],
               verification_info=[CALLS] * (len(HARNESS_ATTACKS) + 1))
    assert dict(zip([*HARNESS_ATTACKS, "right"], got)) == {**dict.fromkeys(HARNESS_ATTACKS, 0.0), "right": 1.0}


def test_the_same_attacks_score_zero_through_the_evaluators_functional_tests():
    """The evaluator's functional harness never had the expected value in the box: the same
    attacks, on LiveCodeBench's shape, fail there too."""
    attacks = {"rebinds globals": "import sys\nsys.modules['__main__']._exit = lambda *a: None\n",
               "returns a harness global": "import sys\n"}
    wrong = "class Solution:\n    def addTwo(self, a, b):\n        return getattr(__import__('sys').modules['__main__'], '_want', 0)\n"
    programs = [a + wrong for a in attacks.values()] + [LCB_RIGHT]
    got = run_tests(programs, [LCB_REF] * len(programs), [LCB_TESTS] * len(programs), workers=2, progress=False)
    assert got == [False, False, True]


# A wrong program that finds the harness's `prove` (frames or the gc heap) and calls it: the pass
# proof lived in the interpreter that ran the program (issue 32). Each then leaves, as a program
# that got its proof would.
INTROSPECTION = {
    "walks the frames to prove": (
        "import sys\nWRONG\n_f = sys._getframe()\nwhile _f is not None:\n"
        "    for _v in list(_f.f_locals.values()) + list(_f.f_globals.values()):\n"
        "        if callable(_v) and getattr(_v, '__name__', '') == 'prove':\n            _v()\n"
        "    _f = _f.f_back\n"),
    "scans gc for prove": (
        "import gc\nWRONG\nfor _o in gc.get_objects():\n"
        "    if callable(_o) and getattr(_o, '__name__', '') == 'prove':\n        _o()\n"),
    "reads the key from the prover's closure": (
        "import gc, os\nWRONG\nfor _o in gc.get_objects():\n"
        "    if getattr(_o, '__name__', '') == 'prove' and _o.__closure__:\n"
        "        _cells = [c.cell_contents for c in _o.__closure__]\n"
        "        _key = next(c for c in _cells if type(c) is bytes)\n"
        "        _fd = next(c for c in _cells if type(c) is int)\n"
        "        os.write(_fd, _key + b'%010d' % 0)\n        os._exit(0)\n"),
}


def test_a_program_that_calls_the_prover_itself_scores_zero(code):
    completions = [answer(a.replace("WRONG", WRONG)) for a in INTROSPECTION.values()] + [answer(RIGHT)]
    for info in (ASSERTS, CALLS):
        got = code(completions=completions, verification_info=[info] * len(completions))
        assert dict(zip([*INTROSPECTION, "right"], got)) == {**dict.fromkeys(INTROSPECTION, 0.0), "right": 1.0}, info


def test_humaneval_gives_a_program_that_calls_the_prover_zero_through_the_evaluator(tmp_path):
    import gzip

    path = tmp_path / "HumanEval.jsonl.gz"
    names = [*INTROSPECTION, "right"]
    rows = [{**HE_ROW, "task_id": f"Tiny/{i}", "prompt": HE_ROW["prompt"] + f"    # {name}\n"}
            for i, name in enumerate(names)]
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    answers = [answer(a.replace("WRONG", WRONG)) for a in INTROSPECTION.values()] + [HE_ROW["canonical_solution"]]
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=f"humaneval={path}", num_samples=1, greedy=False,
                     verify_workers=2, verify_timeout=3.0)
    s = evaluate(cfg, sampler=Scripted(answers))
    assert s["problems"] == len(rows) and s["pass@1"] == pytest.approx(1 / len(rows))


VALUE_TEXTS = ["1", "-1", "+2.5", "'a'", "b'x'", "None", "True", "...", "(1,)", "[1, [2, (3,)]]", "{1: 2, 'a': [3]}",
               "{1, 2}", "set()", "1+2j", "-1-2j", "2j", " 3", "1e400", "-(1)", "{**a}", "x", "f()", "a.b", "1+2",
               "'a'+'b'", "[x for x in y]", "set([1])", "{[1]: 2}", "-'a'", "__import__('os')", "lambda: 1", "(1,2",
               "(1).__class__", "[1][0]", "not 1", "1 if 1 else 2", "{1: f()}", "(-(1+2j))", "1+-2j", "(1+2j)+3j", "-1+2j", "+True", "-None", "1-(2j)"]


@pytest.mark.parametrize("text", VALUE_TEXTS)
def test_values_cross_the_judge_boundary_by_literal_evals_rules(text):
    """The judge reads the program's return values with its own reader (``ast`` costs ~6 ms a
    run to import): the same value or the same error class as ``ast.literal_eval``, so nothing but
    plain data ever reaches the tests."""
    import ast

    from r1_recipe.rewards.sandbox_child import plain_value

    def outcome(read):
        try:
            return "value", read(text)
        except Exception as e:  # noqa: BLE001 - the error class is what is compared
            return "error", type(e).__name__

    assert outcome(plain_value) == outcome(ast.literal_eval)
