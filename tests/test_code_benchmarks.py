"""LiveCodeBench and Codeforces: Hub-shaped fixtures load through the Hub-mirror path and score
through the evaluator (a passing and a failing program of each kind), per-problem limits bind,
and hostile answers score 0 within a hard wall bound without stalling the evaluation."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from r1_recipe import eval_suites
from r1_recipe.eval_suites import livecodebench
from r1_recipe.eval_suites.code_tests import run_tests
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.rewards.sandbox import LocalSandbox

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
pytestmark = pytest.mark.skipif(not all(LocalSandbox.protections().values()), reason="needs seccomp and Landlock")


@pytest.fixture(autouse=True)
def mirror(monkeypatch):
    monkeypatch.setenv("R1_RECIPE_HUB_MIRROR", str(FIXTURES))


class ByTitle:
    """Answers each prompt with ``answers[key]`` for the first key the prompt contains."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, prompts, params, progress=False):
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            key = next(k for k in self.answers if k in text)
            out.append([self.answers[key]] * params.n)
        return out


def fenced(code: str) -> str:
    return f"<think>\nplan\n</think>\n```python\n{code}\n```"


def score(benchmark: str, answers: dict[str, str], k: int = 1, options: dict | None = None, **kw) -> dict:
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=benchmark, num_samples=k, greedy=False,
                     verify_workers=2, benchmark_options={benchmark.partition("=")[0]: options} if options else None,
                     **kw)
    return evaluate(cfg, sampler=ByTitle(answers))


# --- LiveCodeBench --------------------------------------------------------------------------

LCB_RIGHT = {
    "return a + b": fenced("class Solution:\n    def addTwo(self, a: int, b: int) -> int:\n        return a + b"),
    "Print the largest": fenced("input()\nprint(max(map(int, input().split())))"),
    "return it reversed": fenced("class Solution:\n    def reverse(self, nums):\n        return tuple(reversed(nums))"),
}
LCB_WRONG = {
    "return a + b": fenced("class Solution:\n    def addTwo(self, a: int, b: int) -> int:\n        return a - b"),
    "Print the largest": fenced("input()\nprint(min(map(int, input().split())))"),
    "return it reversed": fenced("class Solution:\n    def reverse(self, nums):\n        return nums"),
}


def test_private_tests_decode_as_the_card_says_and_no_pickled_code_runs(tmp_path):
    tests = [{"input": "1\n2", "output": "3", "testtype": "functional"}]
    blob = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()
    assert livecodebench.decode_tests(blob) == tests

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Exploit()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        livecodebench.decode_tests(evil)
    assert not (tmp_path / "pwned").exists()


def test_release_files_are_cumulative_increments():
    assert livecodebench.RELEASES["release_v1"] == ["test.jsonl"]
    assert livecodebench.RELEASES["release_v5"] == ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl",
                                                    "test5.jsonl"]
    assert livecodebench.RELEASES["v6"] == ["test6.jsonl"]


def test_release_and_date_window_choose_the_problems():
    ids = lambda opts: sorted(json.loads(a)["id"] for a in eval_suites.load_benchmark(  # noqa: E731
        "livecodebench", options=opts)[2]["answer"])
    assert ids(None) == ["abc-1", "lc-1", "lc-2"]  # release_v5, 2024-08-01..2025-01-31
    assert ids({"release": "release_v6", "end_date": "2025-12-31"}) == ["abc-1", "abc-2", "lc-1", "lc-2"]
    assert ids({"release": "release_v1", "start_date": "2023-01-01"}) == ["cf-1"]
    assert ids({"release": "v3", "start_date": "2024-06-02", "end_date": "2024-06-02"}) == ["lc-0"]  # inclusive
    with pytest.raises(eval_suites.DataError, match="unknown key.*'relase'"):
        eval_suites.load_benchmark("livecodebench", options={"relase": "release_v6"})
    with pytest.raises(eval_suites.DataError, match="no problem of release_v5 is dated"):
        eval_suites.load_benchmark("livecodebench", options={"start_date": "2030-01-01", "end_date": "2030-02-01"})
    with pytest.raises(eval_suites.DataError, match="release 'release_v9'"):
        eval_suites.load_benchmark("livecodebench", options={"release": "release_v9"})


def test_livecodebench_prompts_follow_its_template():
    _, _, ds = eval_suites.load_benchmark("livecodebench")
    by_id = {json.loads(a)["id"]: p for a, p in zip(ds["answer"], ds["problem"])}
    functional, stdin = by_id["lc-1"], by_id["abc-1"]
    assert functional.index("### Question:\nGiven integers a and b") < functional.index("### Format: You will use the "
                                                                                        "following starter code")
    assert "```python\nclass Solution:\n    def addTwo" in functional
    assert "Read the inputs from stdin" in stdin and "# YOUR CODE HERE" in stdin
    assert stdin.rstrip().endswith("### Answer: (use the provided format with backticks)")


def test_livecodebench_functional_and_stdin_pass_and_fail_through_evaluate():
    good = score("livecodebench", LCB_RIGHT, k=2)
    assert (good["problems"], good["pass@1"], good["pass@1_stderr"]) == (3, 1.0, 0.0)
    assert score("livecodebench", LCB_WRONG)["pass@1"] == 0.0
    mixed = score("livecodebench", {**LCB_RIGHT, "Print the largest": LCB_WRONG["Print the largest"]})
    assert mixed["pass@1"] == pytest.approx(2 / 3)
    assert mixed["pass@1_stderr"] == pytest.approx((1 / 3) ** 0.5 / 3 ** 0.5)  # std of [1, 1, 0] / √3


def test_a_program_failing_only_a_private_test_fails():
    """The public test (2 3 -> 5) passes; a private one (10 -4 -> 6) does not."""
    cheat = {**LCB_RIGHT, "return a + b": fenced(
        "class Solution:\n    def addTwo(self, a, b):\n        return 5 if (a, b) == (2, 3) else 0")}
    assert score("livecodebench", cheat)["pass@1"] == pytest.approx(2 / 3)


def test_local_copy_of_the_hub_folder_loads_the_same(tmp_path):
    copy = tmp_path / "lcb"
    copy.mkdir()
    for f in (FIXTURES / "livecodebench" / "code_generation_lite").glob("test*.jsonl"):
        (copy / f.name).write_text(f.read_text())
    _, _, mirrored = eval_suites.load_benchmark("livecodebench")
    _, _, local = eval_suites.load_benchmark(f"livecodebench={copy}")
    assert local["answer"] == mirrored["answer"] and local["tests"] == mirrored["tests"]


# --- Codeforces -----------------------------------------------------------------------------

CF_RIGHT = {
    "print their sum": fenced("input()\nprint(sum(map(int, input().split())))"),
    "print YES for each even": fenced(
        "for _ in range(int(input())):\n    print('YES' if int(input()) % 2 == 0 else 'NO')"),
}


def test_codeforces_keeps_stdio_problems_and_scores_them():
    _, _, ds = eval_suites.load_benchmark("codeforces")
    assert [json.loads(a)["id"] for a in ds["answer"]] == ["2000/A", "2000/B"]  # no checker, no interactive
    assert "## Constraints\nTime limit per test: 1 seconds\nMemory limit per test: 256 megabytes" in ds["problem"][0]
    assert "```input\n3\n1 2 3\n\n```\n```output\n6\n\n```" in ds["problem"][0]
    assert "## Note\nIn the first example" in ds["problem"][0]
    assert score("codeforces", CF_RIGHT, k=2)["pass@1"] == 1.0
    wrong = {**CF_RIGHT, "print their sum": fenced("input()\nprint(sum(map(int, input().split())) + 1)")}
    assert score("codeforces", wrong)["pass@1"] == 0.5
    with_checkers = eval_suites.load_benchmark("codeforces", options={"with_checkers": True})[2]
    assert len(with_checkers) == 3


def test_codeforces_leaves_out_problems_whose_official_tests_are_truncated():
    # The card: official_tests_complete false means the official tests were cut; judging on them
    # passes programs the full test set fails.
    from datasets import Dataset

    from r1_recipe.eval_suites import codeforces

    tests = [{"input": "1\n", "output": "1\n"}]
    rows = [{"id": f"1/{x}", "official_tests": tests, "official_tests_complete": complete, "interaction_format": None,
             "input_mode": "stdio", "generated_checker": None} for x, complete in zip("ABC", (True, False, None))]
    kept = codeforces.select(Dataset.from_list(rows), dict(codeforces.OPTIONS))
    assert kept["id"] == ["1/A", "1/C"]  # None: the field is not known, the tests are all there is


def test_codeforces_output_is_compared_by_tokens():
    spaced = {**CF_RIGHT, "print YES for each even": fenced(
        "n = int(input())\nprint(' '.join('YES' if int(input()) % 2 == 0 else 'NO' for _ in range(n)))")}
    assert score("codeforces", spaced)["pass@1"] == 1.0


def test_codeforces_memory_limit_is_the_problems():
    """2000/B allows 64 MB: 200 MB of list fails there and passes within A's 256 MB."""
    hog = "big = bytearray(200 * 1024 * 1024)\n"
    both = {"print their sum": fenced(hog + "input()\nprint(sum(map(int, input().split())))"),
            "print YES for each even": fenced(hog + CF_RIGHT["print YES for each even"].split("```python\n")[1]
                                              .rsplit("\n```", 1)[0])}
    assert score("codeforces", both)["pass@1"] == 0.5


def test_codeforces_time_limit_scales_with_the_option():
    """About 1.2 s of CPU: over A's 1 s limit, within it at time_scale 2."""
    slow = {**CF_RIGHT, "print their sum": fenced(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.2:\n    pass\n"
        "input()\nprint(sum(map(int, input().split())))")}
    assert score("codeforces", slow, num_problems=1)["pass@1"] == 0.0
    assert score("codeforces", slow, num_problems=1, options={"time_scale": 2.0})["pass@1"] == 1.0


# --- hostile answers ------------------------------------------------------------------------

SUM_PAIR = "a, b = map(int, input().split())\nprint(a + b)"  # right for every test of LCB's cf-1
HOSTILE = {  # each would print the right answer if its attack got through
    "fork bomb": "import os\nwhile True:\n    os.fork()\n",
    "infinite loop": "while True:\n    pass\n",
    "huge output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "read outside": "open('/etc/hostname').read()\n",
    "socket": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
    "sleep": "import time\ntime.sleep(60)\n",
}
BOUNDED_FORKS = ("import os, time\nn = 0\nfor _ in range(20):\n    try:\n        pid = os.fork()\n"
                 "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n"
                 "    n += 1\nprint(n)")


def test_hostile_answers_score_zero_within_the_limits():
    """Load-sensitive (a hard wall bound): 6 hostile programs x 3 tests, 1 s limits (3 s wall),
    2 workers; early stop after each program's first failed test. Bound: 30 s."""
    probe = LocalSandbox(cpu_s=2, wall_s=3.0).run(BOUNDED_FORKS)
    assert probe.stdout.strip() == "0", "fork is not blocked: the unbounded bomb is not run"
    answers = [fenced(attack + SUM_PAIR) for attack in HOSTILE.values()]
    ref = json.dumps({"kind": "stdio", "id": "cf-1", "time_limit_s": 1.0, "memory_mb": 256})
    tests = json.dumps([{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"},
                        {"input": "0 0\n", "output": "0\n"}])
    codes = [eval_suites.extract(a, "code") for a in answers]
    assert run_tests([SUM_PAIR], [ref], [tests], workers=1) == [True]  # the harmless part alone passes
    start = time.monotonic()
    verdicts = run_tests(codes, [ref] * len(codes), [tests] * len(codes), workers=2, progress=False)
    assert time.monotonic() - start < 30
    assert dict(zip(HOSTILE, verdicts)) == dict.fromkeys(HOSTILE, False)


def test_hostile_answers_through_evaluate_never_stall_it():
    """Every LiveCodeBench problem answered by an endless loop: pass@1 0 and done within a
    bound (load-sensitive: 3 problems x 1 failing test each at 1 s / 3 s wall; bound 30 s)."""
    loop = fenced("while True:\n    pass")
    start = time.monotonic()
    s = score("livecodebench", dict.fromkeys(LCB_RIGHT, loop), options={"time_limit_s": 1.0})
    assert s["pass@1"] == 0.0 and time.monotonic() - start < 30


def test_options_come_from_the_command_line_and_unknown_benchmarks_are_named():
    from r1_recipe.configs import ConfigError, parse_config

    cfg = parse_config(EvalConfig, ["--model_name_or_path", "m", "--benchmark", "livecodebench",
                                    "--benchmark_options", "{livecodebench: {release: v3, start_date: '2024-06-01'}}"])
    assert cfg.benchmark_options == {"livecodebench": {"release": "v3", "start_date": "2024-06-01"}}
    from r1_recipe.evaluate import load

    assert [json.loads(a)["id"] for a in load(cfg)[2]["answer"]] == ["lc-0"]
    with pytest.raises(ConfigError, match=r"\['livecodebnch'\] are not benchmarks.*livecodebench"):
        EvalConfig(model_name_or_path="m", benchmark_options={"livecodebnch": {}})


# A speed target: under `slow` (make test-slow), since timings on a shared 2-core box are noise;
# benchmarks/sandbox.py prints the same ratio.
@pytest.mark.slow
def test_isolation_costs_at_most_twice_a_bare_subprocess_even_from_a_big_parent():
    """benchmarks/sandbox.py from a process holding 1.5 GB, as a trainer does (load-sensitive:
    both sides run interleaved in one process, so load hits them alike; the bound is the
    claim's 2x, measured 0.8x here). The sandbox that forked for its preexec_fn measured 2.7x."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "sandbox.py"), "--problems", "12",
                             "--rounds", "1", "--parent-mb", "1500"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert result.returncode == 0, result.stdout + result.stderr


def test_progress_bar_only_on_a_terminal_and_never_when_turned_off(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    ref = json.dumps({"kind": "stdio", "id": "x", "time_limit_s": 2.0})
    tests = json.dumps([{"input": "1 2\n", "output": "3\n"}])
    for stream, progress, shown in ((Terminal(), True, True), (io.StringIO(), True, False), (Terminal(), False, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert run_tests([SUM_PAIR], [ref], [tests], workers=1, progress=progress) == [True]
        assert ("code tests" in stream.getvalue()) is shown, (type(stream).__name__, progress)


def test_the_sandbox_works_from_a_process_holding_over_1024_descriptors():
    """select() refuses descriptors past FD_SETSIZE; a trainer can hold that many files."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard descriptor limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        result = LocalSandbox(cpu_s=2, wall_s=5.0).run("print(input())", "hi\n")
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (result.returncode, result.stdout) == (0, "hi\n")
