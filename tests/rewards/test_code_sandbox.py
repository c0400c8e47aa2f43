"""The code reward and its local sandbox: scores, and hostile programs contained at 0.0."""

import glob
import json
import os
import tempfile
import time

import pytest

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.sandbox import LocalSandbox

pytestmark = pytest.mark.skipif(
    not all(LocalSandbox.protections().values()), reason="needs seccomp and Landlock"
)

STDIO = {"test_cases": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]}
ASSERTS = {"tests": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(1, 1) == 3"]}


def answer(code: str) -> str:
    return f"<think>\nplan\n</think>\nHere it is:\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def code():
    (fn,) = get_reward_funcs(["code"], code={"cpu_s": 2, "wall_s": 3.0, "memory_mb": 256})
    return fn


def test_scores_are_fractions_of_tests_passed(code):
    completions = [
        answer("a, b = map(int, input().split())\nprint(a + b)"),
        answer("a, b = map(int, input().split())\nprint(a * b)"),  # passes none
        answer("def add(a, b):\n    return a + b"),
        "<think>```python\nprint(5)\n```</think> I cannot solve it.",  # code only in reasoning
        answer("print(1)"),
    ]
    got = code(completions=completions,
               verification_info=[STDIO, STDIO, ASSERTS, STDIO, {"language": "python"}])
    assert got == [1.0, 0.0, pytest.approx(2 / 3), 0.0, None]


HOSTILE = {
    "infinite loop": "while True:\n    pass",
    "sleep": "import time\ntime.sleep(60)",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "threads": "import threading\nthreading.Thread(target=lambda: None).start()",
    "write outside": "open('/var/tmp/r1_sandbox_escape', 'w').write('x')",  # /tmp is its own tmpfs in bwrap
    "write repo": f"open({os.getcwd()!r} + '/r1_sandbox_escape', 'w').write('x')",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
    "10 GB": "x = bytearray(10 * 1024 ** 3)",
    "print forever": "while True:\n    print('x' * 10000)",
    "signal init": "import os\nos.kill(1, 0)",
    "subprocess": "import subprocess\nsubprocess.run(['true'])",
    "read secrets": "print(open('/etc/shadow').read())",
}


BOUNDED_FORKS = (
    "import os, time\nn = 0\nfor _ in range(50):\n    try:\n        pid = os.fork()\n"
    "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(20)\n"
    "        os._exit(0)\n    n += 1\nprint(n)"
)


@pytest.fixture(scope="module")
def forks_blocked() -> bool:
    """Probe with a bounded (<= 50 processes) fork loop before any unbounded bomb runs."""
    result = LocalSandbox(cpu_s=2, wall_s=3.0).run(BOUNDED_FORKS)
    return result.returncode == 0 and result.stdout.strip() == "0"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_programs_are_contained(code, forks_blocked, name):
    if name == "fork bomb" and not forks_blocked:
        pytest.fail("fork is not blocked in the sandbox; the unbounded bomb was not run")
    # Each program would print "5" after its attack, so 0.0 means the attack failed/was stopped.
    program = HOSTILE[name] + "\nprint(5)"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "r1-sandbox-*")))
    start = time.monotonic()
    got = code(completions=[answer(program)], verification_info=[{"tests": [], "test_cases": [
        {"input": "", "output": "5"}]}])
    assert got == [0.0]
    assert time.monotonic() - start < 3.0 + 2.0  # wall limit + slack
    assert not os.path.exists("/var/tmp/r1_sandbox_escape") and not os.path.exists("/tmp/r1_sandbox_escape")
    assert not os.path.exists(os.path.join(os.getcwd(), "r1_sandbox_escape"))
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "r1-sandbox-*"))) == before


def test_bounded_fork_attempt_creates_no_process(forks_blocked):
    # Bounded (50 forks at most) even if containment failed; it must report 0 forks.
    assert forks_blocked


def test_sandbox_keeps_its_own_directory():
    box = LocalSandbox(cpu_s=2, wall_s=3.0)
    r = box.run("import os\nopen('f.txt', 'w').write('hi')\nprint(open('f.txt').read(), "
                "os.getcwd().startswith(os.environ['HOME']))", "")
    assert (r.returncode, r.stdout.split()) == (0, ["hi", "True"])


def test_one_means_every_test_passed_even_past_max_tests():
    """A program right on tests 1-32 and wrong on 33-40 of a 40-test row is not 1.0 (issue 28):
    every test runs by default, and with max_tests=N the unrun ones count as failed."""
    cases = [{"input": f"{i}\n", "output": f"{2 * i}\n"} for i in range(40)]
    wrong_late = answer("n = int(input())\nprint(2 * n if n < 32 else 0)")
    right = answer("print(2 * int(input()))")
    (every,) = get_reward_funcs(["code"], code={"cpu_s": 2, "wall_s": 3.0, "memory_mb": 256})
    (capped,) = get_reward_funcs(["code"], code={"cpu_s": 2, "wall_s": 3.0, "memory_mb": 256, "max_tests": 32})
    info = [{"test_cases": cases}] * 2
    assert every(completions=[wrong_late, right], verification_info=info) == [pytest.approx(32 / 40), 1.0]
    assert capped(completions=[wrong_late, right], verification_info=info) == [pytest.approx(32 / 40)] * 2


def test_stdout_is_judged_by_the_evaluators_rule(code):
    """One comparison rule for the reward and the evaluator: numbers equal as decimals, lines
    stripped (the evaluator took ``4.0`` for ``4``, the reward did not)."""
    from r1_recipe.eval_suites.code_tests import run_tests

    cases = [{"input": "", "output": "4\nyes\n"}]
    programs = ["print(4.0)\nprint(' yes')", "print('4.00')\nprint('yes')", "print(5)\nprint('yes')",
                "print(4)\nprint('YES')"]
    rewarded = code(completions=[answer(p) for p in programs], verification_info=[{"test_cases": cases}] * 4)
    ref = json.dumps({"kind": "stdio", "id": "four", "prelude": False})
    evaluated = run_tests(programs, [ref] * 4, [json.dumps(cases)] * 4, workers=2, progress=False)
    assert rewarded == [1.0, 1.0, 0.0, 0.0]
    assert evaluated == [r == 1.0 for r in rewarded]
