"""Code prompts in RL: the ``open-r1/verifiable-coding-problems-python`` fixture loads in its card's
schema and its rows score through their ``verification_info``; one batch mixes math and code rows,
each routed to its reward by ``reward_type`` (TRL's advantages and per-reward means see only the
rows a reward scores); rejection sampling keeps code traces whose program passes every test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from r1_recipe.configs import GRPOStageConfig, parse_config
from r1_recipe.data import code_tasks
from r1_recipe.data.loading import DataError, check_reward_types, load_mixture, load_source, write_jsonl
from r1_recipe.data.templates import format_response
from r1_recipe.rejection_sampling import RejectionSamplingConfig, run
from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.sandbox import LocalSandbox

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "tests" / "fixtures" / "hub"
CODE_ID = "open-r1/verifiable-coding-problems-python"
CODE_SOURCE = {"path": CODE_ID, "split": "train", "reward_type": "code", "columns": {"problem": "problem_statement"}}
BOTH = [{"path": "MATH_FILE", "reward_type": "math", "weight": 3}, {**CODE_SOURCE, "weight": 5}]  # every row once
SANDBOX = pytest.mark.skipif(not all(LocalSandbox.protections().values()), reason="needs seccomp and Landlock")
MATH = [("What is 12 + 30?", "42"), ("What is 7 + 8?", "15"), ("What is 25 + 17?", "42")]


@pytest.fixture(autouse=True)
def mirror(monkeypatch):
    monkeypatch.setenv("R1_RECIPE_HUB_MIRROR", str(HUB))


@pytest.fixture(scope="module")
def code_reward():
    (fn,) = get_reward_funcs(["code"], code={"cpu_s": 2, "wall_s": 5.0, "memory_mb": 256})
    return fn


@pytest.fixture
def math_file(tmp_path):
    write_jsonl([{"problem": p, "solution": s} for p, s in MATH], tmp_path / "math.jsonl")
    return tmp_path / "math.jsonl"


def answer(program: str, reasoning: str = "plan the program") -> list[dict]:
    return [{"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n```python\n{program}\n```"}]


def boxed(value: str) -> list[dict]:
    return [{"role": "assistant", "content": f"<think>\nadd the two numbers\n</think>\n\\boxed{{{value}}}"}]


def fixture_rows() -> list[dict]:
    return load_source(dict(CODE_SOURCE)).to_list()


def test_fixture_reads_in_the_cards_schema():
    ds = load_dataset(str(HUB / CODE_ID), split="train")
    assert ds.column_names == ["source", "task_type", "in_source_id", "problem_statement", "gold_standard_solution",
                               "problem_id", "metadata", "verification_info"]
    tests = ds.features["verification_info"]["test_cases"].feature
    assert set(tests) == {"fn_name", "input", "output", "type"}  # a struct column, not a JSON string
    kinds = [{t["type"] for t in r["verification_info"]["test_cases"]} for r in ds]
    assert kinds.count({"stdin_stdout"}) == 3 and kinds.count({"function_call"}) == 2
    assert len(ds) == 5


@SANDBOX
def test_gold_programs_pass_and_broken_ones_score_their_share(code_reward):
    rows = fixture_rows()
    infos = [r["verification_info"] for r in rows]
    gold = [answer(re.search(r"```python\n(.*?)```", r["gold_standard_solution"], re.S).group(1)) for r in rows]
    assert code_reward(completions=gold, verification_info=infos, reward_type=["code"] * 5) == [1.0] * 5

    add, _, _, sum_list, vowels = infos
    crafted = [
        (answer("a, b = map(int, input().split())\nprint(a + b if b > 0 else a - b)"), add, 0.5),  # 5, then 14 != 6
        (answer("a, b = map(int, input().split()\nprint(a + b)"), add, 0.0),  # syntax error
        (answer("def sum_list(xs):\n    return len(xs)"), sum_list, 0.5),  # len([1, 2, 3]) = 3 != 6; len([]) = 0
        (answer("def total(xs):\n    return sum(xs)"), sum_list, 0.0),  # the function it calls is missing
        (answer("def sum_list(xs):\n    return sum(xs)\nif __name__ == '__main__':\n    print(input())"), sum_list,
         1.0),  # its __main__ block stays idle (no stdin to read)
        (answer("class Solution:\n    def count_vowels(self, s: List[str]) -> int:\n        return 3"), vowels, 0.5),
        ([{"role": "assistant", "content": "<think>\n```python\nprint(5)\n```\n</think>\nno idea"}], add, 0.0),
    ]
    got = code_reward(completions=[c for c, _, _ in crafted], verification_info=[i for _, i, _ in crafted])
    assert got == [want for _, _, want in crafted]


@SANDBOX
def test_one_batch_routes_math_code_and_general_rows_to_their_rewards(code_reward, tiny_rm):
    accuracy, fmt, model = get_reward_funcs(["accuracy", "format", "reward_model"],
                                            accuracy={"workers": 1}, reward_model={"model": tiny_rm})
    add = fixture_rows()[0]
    completions = [boxed("42"), boxed("41"),
                   answer("a, b = map(int, input().split())\nprint(a + b)"),
                   answer("a, b = map(int, input().split())\nprint(a + b if b > 0 else a - b)"),
                   [{"role": "assistant", "content": "<think>\ngreet\n</think>\nHello Ada!"}]]
    kw = {"prompts": [[{"role": "user", "content": p}] for p in ["What is 12 + 30?"] * 2 + [add["problem"]] * 2
                      + ["Greet Ada."]],
          "reward_type": ["math", "math", "code", "code", "general"],
          "solution": ["42", "42", "5", "5", None],  # a code row's stray `solution` is not an answer to check
          "verification_info": [None, None, add["verification_info"], add["verification_info"], None]}
    assert accuracy(completions=completions, **kw) == [1.0, 0.0, None, None, None]
    assert code_reward(completions=completions, **kw) == [None, None, 1.0, 0.5, None]
    assert fmt(completions=completions, **kw) == [1.0, 1.0, 1.0, 1.0, None]
    scores = model(completions=completions, **kw)
    assert scores[:4] == [None] * 4 and isinstance(scores[4], float)


def test_an_unknown_reward_type_is_refused_naming_the_source(math_file):
    with pytest.raises(DataError, match=r"reward_type 'maths' of source .*math.jsonl"):
        load_mixture([{"path": str(math_file), "reward_type": "maths"}])
    write_jsonl([{"problem": "1 + 1?", "solution": "2", "reward_type": "maths"}], math_file.parent / "typed.jsonl")
    typed = load_mixture([str(math_file.parent / "typed.jsonl")])  # a column of the data, no source key
    with pytest.raises(DataError, match=r"rl1: reward_type values \['maths'\]"):
        check_reward_types(typed, "rl1")
    (acc,) = get_reward_funcs(["accuracy"])
    with pytest.raises(ValueError, match="valid: reasoning, math, code, general"):
        acc(completions=[boxed("42")], solution=["42"], reward_type=["Math problem"])


def test_a_math_and_code_mixture_keeps_every_column_the_rewards_read(math_file):
    ds = load_mixture([{"path": str(math_file), "reward_type": "math"}, CODE_SOURCE], size=8, seed=0)
    kinds = {t: [r for r in ds if r["reward_type"] == t] for t in ("math", "code")}
    assert len(kinds["math"]) == len(kinds["code"]) == 4
    assert all(r["verification_info"] is None and r["solution"] for r in kinds["math"])
    assert all(r["solution"] is None and r["verification_info"]["test_cases"] for r in kinds["code"])
    assert all(r["problem"].startswith("Solve the following coding problem") for r in kinds["code"])


# --- through TRL's GRPO scoring ----------------------------------------------------------------


def both(math_file: Path) -> list[dict]:
    return [{**BOTH[0], "path": str(math_file)}, BOTH[1]]


def _grpo_config(tmp_path, model_dir, math_file, **over) -> GRPOStageConfig:
    data = {"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "rl1"),
            "dataset_mixture": both(math_file), "mixture_size": 8,
            "reward_funcs": ["accuracy", "code"], "reward_weights": [1.0, 2.0],
            "reward_kwargs": {"accuracy": {"workers": 1}, "code": {"cpu_s": 2, "wall_s": 5.0, "memory_mb": 256}},
            "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 8, "max_steps": 1,
            "scale_rewards": "group", "report_to": "none", "seed": 0, "dataloader_num_workers": 0, **over}
    (tmp_path / "rl1.yaml").write_text(yaml.safe_dump(data))
    return parse_config(GRPOStageConfig, ["--config", str(tmp_path / "rl1.yaml")])


@SANDBOX
def test_advantages_of_a_mixed_batch_are_each_groups_own(tmp_path, tiny_model_dir, math_file, monkeypatch):
    """Two groups of 4 through TRL's own _generate_and_score_completions (generation replaced by
    crafted completions). R = 1.0·accuracy + 2.0·code, None where a reward does not apply.

    math group, accuracy [1, 0, 1, 1], code None: R = [1, 0, 1, 1], mean 0.75, sample std
    sqrt((3·0.25² + 0.75²)/3) = 0.5, A = (R − 0.75)/(0.5 + 1e-4).
    code group, code [1, 0.5, 0, 1] (both tests, one of two, syntax error, both), accuracy None:
    R = [2, 1, 0, 2], mean 1.25, std sqrt((0.75² + 0.25² + 1.25² + 0.75²)/3) = sqrt(2.75/3),
    A = (R − 1.25)/(std + 1e-4). Logged means: accuracy 3/4 over the math rows only (not 3/8),
    code 2.5/4 over the code rows only.
    """
    from r1_recipe.grpo import build_trainer

    trainer = build_trainer(_grpo_config(tmp_path, tiny_model_dir, math_file))
    rows = trainer.train_dataset.to_list()
    math_row = next(r for r in rows if r["reward_type"] == "math" and r["solution"] == "42")
    code_row = next(r for r in rows if r["reward_type"] == "code" and "sum" in r["problem"])
    inputs = [math_row] * 4 + [code_row] * 4
    texts = [boxed(v)[0]["content"] for v in ("42", "41", "42", "42")] + [
        answer(p)[0]["content"] for p in ("a, b = map(int, input().split())\nprint(a + b)",
                                          "a, b = map(int, input().split())\nprint(a + b if b > 0 else a - b)",
                                          "print(", "print(sum(map(int, input().split())))")]
    tok = trainer.processing_class
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]

    def generate(prompts):
        return ([[1, 2, 3]] * len(prompts), ids, None, [[{"role": "assistant", "content": t}] for t in texts],
                None, {}, None, None)

    monkeypatch.setattr(trainer, "_generate", generate)
    trainer.model.train()
    out = trainer._generate_and_score_completions(inputs)
    math_std, code_std = 0.5, math.sqrt(2.75 / 3)
    want = [(r - 0.75) / (math_std + 1e-4) for r in (1, 0, 1, 1)] + [
        (r - 1.25) / (code_std + 1e-4) for r in (2, 1, 0, 2)]
    assert out["advantages"].tolist() == pytest.approx(want, rel=1e-5)
    logged = trainer._metrics["train"]
    assert logged["rewards/accuracy/mean"][-1] == pytest.approx(0.75)
    assert logged["rewards/code/mean"][-1] == pytest.approx(0.625)


# --- rejection sampling ------------------------------------------------------------------------


def _fails_second_test(info: dict) -> str:
    """A program that passes the row's first test only (it answers that test's expected output)."""
    first = info["test_cases"][0]
    if first["type"] == "function_call":
        return f"def {first['fn_name']}(*args):\n    return {json.loads(first['output'])[0]!r}"
    return f"print({first['output'].strip()!r})"


class MixedSampler:
    """The model's samples for each prompt: math: right, wrong; code: the gold program (with a
    code draft in its reasoning), one that passes one of two tests, a syntax error."""

    def __init__(self, code_rows: list[dict]):
        self.code = {r["problem"]: r for r in code_rows}

    def generate(self, prompts, params, *, progress=False):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            if text in self.code:
                row = self.code[text]
                gold = re.search(r"```python\n(.*?)```", row["gold_standard_solution"], re.S).group(1)
                draft = f"draft first:\n```python\n{gold}```\nthen test it on the examples"
                out.append([answer(gold, draft)[0]["content"], answer(_fails_second_test(row["verification_info"]))[0][
                    "content"], answer("def solve(:\n    pass")[0]["content"]])
            else:
                a, b = map(int, re.search(r"(\d+) \+ (\d+)", text).groups())
                out.append([boxed(str(a + b))[0]["content"], boxed(str(a + b + 1))[0]["content"]])
        return out


@SANDBOX
def test_rejection_keeps_code_traces_whose_program_passes_every_test(tmp_path, math_file):
    config = RejectionSamplingConfig(
        model_name_or_path="unused", output_dir=str(tmp_path / "out"), num_samples=3, max_per_prompt=2,
        dataset_mixture=both(math_file),
        reward_funcs=["accuracy", "code", "format"], reward_thresholds={"accuracy": 1.0, "code": 1.0, "format": 1.0},
        reward_kwargs={"accuracy": {"workers": 1}, "code": {"cpu_s": 2, "wall_s": 5.0, "memory_mb": 256}},
        general_mixture=None)
    code_rows = fixture_rows()
    stats = run(config, sampler=MixedSampler(code_rows))
    assert stats["prompts"] == 8
    # math: the wrong answer; code: the one-of-two program and the syntax error; the code draft in
    # the gold sample's reasoning is not `code_in_reasoning` on a code row
    assert stats["dropped"]["reward:accuracy"] == 3 and stats["dropped"]["reward:code"] == 2 * 5
    assert stats["dropped"]["code_in_reasoning"] == 0 and stats["kept_reasoning"] == 3 + 5
    kept = load_dataset(config.output_dir, split="train").to_list()
    by_problem = {r["problem"]: r for r in kept}
    for row in code_rows:
        sample = by_problem[row["problem"]]
        assert sample["sample_index"] == 0 and sample["rewards"]["code"] == 1.0
        assert sample["rewards"]["accuracy"] is None  # not a math row: no answer to check
    assert all(by_problem[p]["sample_index"] == 0 and by_problem[p]["rewards"]["code"] is None for p, _ in MATH)


@SANDBOX
def test_code_rows_without_a_code_threshold_are_not_kept_unverified(tmp_path, math_file):
    config = RejectionSamplingConfig(
        model_name_or_path="unused", output_dir=str(tmp_path / "out"), num_samples=3,
        dataset_mixture=both(math_file),
        reward_funcs=["accuracy", "code", "format"], reward_thresholds={"accuracy": 1.0, "format": 1.0},
        reward_kwargs={"accuracy": {"workers": 1}}, general_mixture=None)
    stats = run(config, sampler=MixedSampler(fixture_rows()))
    assert stats["dropped"]["reward:unverified"] == 3 * 5 and stats["kept_reasoning"] == 3


@SANDBOX
@pytest.mark.parametrize("kind", ["reasoning", None])
def test_a_code_threshold_binds_only_the_rows_the_code_reward_scores(tmp_path, math_file, kind):
    # Rows typed `reasoning` (or untyped) go to both domains' rewards; with a code threshold set,
    # every math row was dropped as reward:code (no verification_info to run) and every code row
    # as reward:accuracy. Each threshold binds the rows holding the columns its reward reads.
    typed = {} if kind is None else {"reward_type": kind}
    mixture = [{"path": str(math_file), "weight": 3, **typed},
               {**{k: v for k, v in CODE_SOURCE.items() if k != "reward_type"}, "weight": 5, **typed}]
    config = RejectionSamplingConfig(
        model_name_or_path="unused", output_dir=str(tmp_path / "out"), num_samples=3, max_per_prompt=2,
        dataset_mixture=mixture,
        reward_funcs=["accuracy", "code", "format"], reward_thresholds={"accuracy": 1.0, "code": 1.0, "format": 1.0},
        reward_kwargs={"accuracy": {"workers": 1}, "code": {"cpu_s": 2, "wall_s": 5.0, "memory_mb": 256}},
        general_mixture=None)
    stats = run(config, sampler=MixedSampler(fixture_rows()))
    assert stats["prompts"] == 8
    assert stats["dropped"]["reward:accuracy"] == 3 and stats["dropped"]["reward:code"] == 2 * 5
    assert stats["dropped"].get("reward:unverified", 0) == 0 and stats["passed_keep_rule"] == 3 + 5
    # the gold program passes the keep rule; on a row not typed `code` its drafted code in the
    # reasoning is a readability problem, as on any reasoning row
    assert stats["dropped"]["code_in_reasoning"] == 5 and stats["kept_reasoning"] == 3
    kept = load_dataset(config.output_dir, split="train").to_list()
    assert sorted(r["problem"] for r in kept) == sorted(p for p, _ in MATH)
    assert all(r["sample_index"] == 0 and r["rewards"]["code"] is None for r in kept)  # the right sum


def test_a_code_source_without_tests_is_named_in_a_warning(math_file, caplog):
    ds = load_source({"path": str(math_file), "reward_type": "code"})
    assert ds["reward_type"] == ["code"] * 3
    assert "tagged reward_type: code but has no verification_info column" in caplog.text


class DemoSampler:
    """The demo's samples (recipes/demo/rejection.yaml's shape): an arithmetic prompt gets its right
    and a wrong boxed answer; a code prompt its careful program, its sloppy one (no brackets) and
    a syntax error."""

    def __init__(self, code_problems: list):
        self.code = {p.text: p for p in code_problems}

    def generate(self, prompts, params, *, progress=False):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            if text in self.code:
                samples = [code_tasks.trace(self.code[text], style) for style in code_tasks.STYLES]
                out.append([format_response(r, code_tasks.answer_block(e), boxed=False) for r, e in samples]
                           + [format_response("first x", "```python\ndef f(x) return x\n```", boxed=False)])
            else:
                a, b = map(int, re.search(r"(\d+) \+ (\d+)", text).groups())
                out.append([format_response(f"add {a} and {b}", str(a + b)),
                            format_response(f"add {a} and {b}", str(a + b + 1))])
        return out


@SANDBOX
def test_the_demos_one_rejection_step_keeps_passing_code_and_correct_arithmetic(tmp_path):
    """The demo's rejection recipe, arithmetic and code prompts in one run and one output folder:
    kept are exactly the right sums and the programs passing all three asserts; x+4*3 (sloppy,
    where brackets matter) fails, x*4%3 (sloppy, where they do not) passes."""
    recipe = yaml.safe_load((ROOT / "recipes/demo/rejection.yaml").read_text())
    write_jsonl([{"problem": f"Compute {a} + {b}.", "solution": str(a + b)} for a, b in [(37, 22), (15, 8)]],
                tmp_path / "rl_prompts.jsonl")
    bracket, plain = code_tasks.Problem("+", 4, "*", 3), code_tasks.Problem("*", 4, "%", 3)
    write_jsonl([{"problem": p.text, "verification_info": p.verification_info, "source": "reasoning", "task": "code"}
                 for p in (bracket, plain)], tmp_path / "code_prompts.jsonl")
    mixture = [{"path": str(tmp_path / Path(s["path"]).name), "reward_type": s["reward_type"]}
               for s in recipe["dataset_mixture"]]
    assert [s["reward_type"] for s in mixture] == ["math", "code"]
    config = RejectionSamplingConfig(**{
        **recipe, "model_name_or_path": "unused", "output_dir": str(tmp_path / "rejection"),
        "dataset_mixture": mixture, "mixture_size": None, "general_mixture": None, "num_samples": 3,
        "reward_kwargs": {"accuracy": {"workers": 1}, "code": {"cpu_s": 2, "wall_s": 5.0, "memory_mb": 256}}})
    stats = run(config, sampler=DemoSampler([bracket, plain]))
    kept = load_dataset(config.output_dir, split="train").to_list()
    got = sorted((r["problem"], r["sample_index"]) for r in kept)
    assert got == sorted([("Compute 37 + 22.", 0), ("Compute 15 + 8.", 0),
                          (bracket.text, 0), (plain.text, 0), (plain.text, 1)])
    assert stats["dropped"]["reward:accuracy"] == 2 and stats["dropped"]["reward:code"] == 1 + 2
    assert stats["dropped"].get("reward:unverified", 0) == 0
    for row in kept:  # one `rewards` schema for both kinds: stage 2 reads the folder without renames
        code_row = row["problem"].startswith("Write")
        assert set(row["rewards"]) == {"accuracy", "code", "format", "language_consistency"}
        assert (row["rewards"]["code"], row["rewards"]["accuracy"]) == ((1.0, None) if code_row else (None, 1.0))
        assert row["rewards"]["format"] == 1.0
