"""A real pretrained model through the real code paths: SmolLM2-135M-Instruct (Llama architecture,
ChatML, EOS <|im_end|>) from the `make assets` cache, with its own tokenizer and chat template.

- ``r1-recipe evaluate`` on a few HumanEval problems (code sandbox) and the arithmetic set,
  generations ending at ``<|im_end|>`` rather than running to the token limit;
- cold-start SFT and GRPO, 2 optimizer steps each, parameters changed.

Each test loads the 134.5 M-parameter model on CPU: all are ``slow`` (``make test-slow``), and
skip when the model has not been fetched. Measured on the shared 2-core box at load 9-12 (Dec
2026): SFT 231 s, GRPO 583 s, evaluate 1,495 s (generation dominates; an idle box is far faster).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer

from r1_recipe import cli
from r1_recipe.configs import GRPOStageConfig, SFTStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.data.templates import prompt_for
from r1_recipe.evaluate import EvalConfig
from r1_recipe.rewards import REWARDS, get_reward_funcs
from r1_recipe.rewards.base import named, texts

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smollm2(require_asset):
    return require_asset("smollm2-135m-instruct")


def _changed(before_dir, after_dir) -> tuple[int, int]:
    before, after = load_file(before_dir / "model.safetensors"), load_file(after_dir / "model.safetensors")
    assert before.keys() == after.keys()
    return sum(not torch.equal(before[k], after[k]) for k in before), len(before)


def _recipe(tmp_path, **data) -> list[str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"report_to": "none", "seed": 0, "dataloader_num_workers": 0,
                                    "save_strategy": "no", **data}))
    return ["--config", str(path)]


def test_evaluate_cli_on_humaneval_and_arithmetic(smollm2, tmp_path, capsys):
    out, max_new = tmp_path / "eval", 80
    code = cli.main(["evaluate", "--model_name_or_path", str(smollm2), "--benchmark", "humaneval,arithmetic",
                     "--num_problems", "2", "--num_samples", "1", "--max_new_tokens", str(max_new),
                     "--backend", "transformers", "--output_dir", str(out), "--verify_workers", "2"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| humaneval | 2 | 1 |" in table and "| arithmetic | 2 | 1 |" in table
    tok = AutoTokenizer.from_pretrained(smollm2)
    for name in ("humaneval", "arithmetic"):
        summary = json.loads((out / f"eval_{name}.json").read_text())
        assert summary["problems"] == 2 and 0.0 <= summary["pass@1"] <= 1.0 and "pass@1_stderr" in summary
        rows = [json.loads(line) for line in (out / f"eval_{name}_samples.jsonl").read_text().splitlines()]
        assert len(rows) == 2 * 2  # greedy + 1 sample per problem
        assert all(isinstance(r["correct"], bool) for r in rows)
        # The ChatML turn ends at <|im_end|>: a completion that stopped there is shorter than the
        # budget and never goes on into a next turn.
        lengths = [len(tok(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows]
        assert not any("<|im_start|>" in r["completion"] or "\nuser\n" in r["completion"] for r in rows)
        if name == "arithmetic":
            assert sum(n < max_new - 4 for n in lengths) >= len(rows) // 2, lengths
    humaneval = [json.loads(line) for line in (out / "eval_humaneval_samples.jsonl").read_text().splitlines()]
    assert humaneval[0]["prompt"][-1]["content"].startswith("Complete the following Python function.")
    assert any(r["answer"] is not None and "return" in r["answer"] for r in humaneval), "no code extracted"


def test_cold_start_sft_two_steps_with_its_chatml_template(smollm2, tmp_path):
    from r1_recipe.sft import build_dataset, main

    data = tmp_path / "cold_start.jsonl"
    write_jsonl(arithmetic.generate(8, seed=0), data)
    argv = _recipe(tmp_path, model_name_or_path=str(smollm2), output_dir=str(tmp_path / "sft"),
                   dataset_mixture=[{"path": str(data)}], template="r1", per_device_train_batch_size=2,
                   max_steps=2, learning_rate=1e-4, max_length=192, logging_steps=1)
    config = parse_config(SFTStageConfig, argv)
    row = build_dataset(config)[0]
    tok = AutoTokenizer.from_pretrained(smollm2)
    text = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert "<|im_start|>assistant\n<think>\n" in text and text.rstrip().endswith("<|im_end|>")
    results = main(argv)
    assert results["global_step"] == 2
    changed, total = _changed(smollm2, tmp_path / "sft")
    assert changed > total // 2, f"only {changed}/{total} tensors changed"
    saved = AutoTokenizer.from_pretrained(tmp_path / "sft")
    assert saved.eos_token == "<|im_end|>" and saved.chat_template == tok.chat_template
    assert "<think>" in saved.decode(saved("a<think>b</think>c")["input_ids"], skip_special_tokens=True)


def _length_spread():
    """Test-only: a reward that differs between samples, so GRPO's advantages are not all zero."""

    def fn(completions, **kwargs):
        return [float(len(t) % 7) for t in texts(completions)]

    return named(fn, "length_spread")


def test_grpo_two_steps_changes_parameters(smollm2, tmp_path, monkeypatch):
    from r1_recipe.grpo import train

    monkeypatch.setitem(REWARDS, "length_spread", _length_spread)
    prompts = tmp_path / "rl_prompts.jsonl"
    write_jsonl(arithmetic.generate(8, seed=1), prompts)
    argv = _recipe(tmp_path, model_name_or_path=str(smollm2), output_dir=str(tmp_path / "rl"),
                   dataset_mixture=[{"path": str(prompts)}], template="r1",
                   reward_funcs=["accuracy", "format", "length_spread"], reward_weights=[1.0, 0.5, 1.0],
                   num_generations=4, per_device_train_batch_size=4, max_completion_length=24,
                   temperature=1.0, learning_rate=1e-5, max_steps=2, logging_steps=1)
    results = train(parse_config(GRPOStageConfig, argv))
    assert results["global_step"] == 2
    changed, total = _changed(smollm2, tmp_path / "rl")
    assert changed > total // 2, f"only {changed}/{total} tensors changed"


def test_smollm2_grpo_recipe_trains_on_the_prompts_its_evaluation_asks(smollm2, tmp_path):
    """recipes/SmolLM2-135M/: the GRPO prompts (written by benchmarks/real_model_rl.py) render to
    exactly the text the evaluation recipe renders for a problem (one worked example, then the
    question), neither the example nor any training prompt is a held-out problem, and the reward
    pays a \\boxed{} sum but not a bare number."""
    from r1_recipe.grpo import build_dataset

    spec = importlib.util.spec_from_file_location("real_model_rl", ROOT / "benchmarks/real_model_rl.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    prompts = tmp_path / "rl_prompts.jsonl"
    script.write_prompts(prompts, 50)
    argv = ["--config", str(ROOT / "recipes/SmolLM2-135M/zero.yaml"), "--model_name_or_path", str(smollm2),
            "--output_dir", str(tmp_path / "zero"), "--dataset_mixture", json.dumps([{"path": str(prompts)}])]
    config = parse_config(GRPOStageConfig, argv)
    train = build_dataset(config)
    evaluation = parse_config(EvalConfig, ["--config", str(ROOT / "recipes/SmolLM2-135M/evaluate.yaml"),
                                           "--model_name_or_path", str(smollm2)])
    assert config.chat_template == evaluation.chat_template
    tok = AutoTokenizer.from_pretrained(smollm2)
    tok.chat_template = (ROOT / config.chat_template).read_text()
    row = train[0]
    problem = row["problem"].split("\n\n")[0]  # "Compute a + b."
    asked = prompt_for(f"{problem}\n\n{evaluation.instruction}", template=evaluation.template,
                       system_prompt=evaluation.system_prompt)  # as evaluate() builds it
    rendered = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(asked, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("Write the result as \\boxed{result}.<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.startswith("<|im_start|>user\nCompute 21 + 34.") and rendered.count("\\boxed{55}") == 1
    held_out = {p.text for p in arithmetic.all_problems() if p.held_out}
    assert not held_out & {p.split("\n\n")[0] for p in train["problem"]} and "Compute 21 + 34." not in held_out
    (accuracy,) = get_reward_funcs(config.reward_funcs)
    answer = row["solution"]
    rewards = accuracy([f"{problem[8:-1]} = \\boxed{{{answer}}}", f"{problem[8:-1]} = {answer}.", "\\boxed{-1}"],
                       solution=[answer] * 3, prompts=[row["prompt"]] * 3)
    assert rewards == [1.0, 0.0, 0.0]


def test_smollm2_pipeline_recipe_hands_off_each_stage(smollm2, tmp_path, monkeypatch):
    """recipes/SmolLM2-135M/pipeline.yaml (`make demo-real`) as shipped, shrunk to a few steps and rows
    (the sizes only): every step runs through the pipeline runner, and each hand-off holds. The cold
    start trains ChatML turns that end at <|im_end|> and fit max_length; its folder keeps the base's
    template and EOS; RL's prompts are the evaluation's prompts and its completion budget is the
    evaluation's; each evaluated step has a held-out pass@1."""
    from r1_recipe import grpo, sft
    from r1_recipe.pipeline import load_pipeline, main, read_lineage

    monkeypatch.setenv("R1_RECIPE_ASSETS", str(smollm2.parent))
    source = ROOT / "recipes/SmolLM2-135M/pipeline.yaml"
    spec = yaml.safe_load(source.read_text())
    sizes = {"stage1": {"max_steps": 3, "per_device_train_batch_size": 4, "logging_steps": 1},
             "rl1": {"max_steps": 2, "per_device_train_batch_size": 8, "max_completion_length": 16,
                     "logging_steps": 1}}
    shipped = {}
    for step in spec["steps"]:
        if step["name"] == "data":
            args = step["args"]
            for flag, n in (("--cold-start", "48"), ("--rl-prompts", "16")):
                args[args.index(flag) + 1] = n
        if step.get("recipe"):
            recipe = yaml.safe_load((ROOT / step["recipe"]).read_text())
            shipped[step["name"]] = dict(recipe)
            recipe.update(sizes["rl1" if step["stage"] == "grpo" else "stage1"])
            step["recipe"] = str(tmp_path / f"{step['name']}.yaml")
            Path(step["recipe"]).write_text(yaml.safe_dump(recipe))
    cot_recipe, general_recipe = spec["evaluation"]  # the trained task, then word problems (the card's protocol)
    evaluation = yaml.safe_load((ROOT / cot_recipe).read_text())
    shipped_eval = dict(evaluation)
    evaluation.update(num_problems=4, num_samples=2, max_new_tokens=16)
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(evaluation))
    general = yaml.safe_load((ROOT / general_recipe).read_text())
    assert (general["benchmark"], general["protocol"]) == ("word_problems", "lighteval")
    (tmp_path / "general.yaml").write_text(yaml.safe_dump({**general, "num_problems": 3, "max_new_tokens": 16}))
    spec.update(run_dir=str(tmp_path / "runs"), evaluation=[str(tmp_path / "evaluate.yaml"),
                                                           str(tmp_path / "general.yaml")])
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    assert main(["--config", str(tmp_path / "pipeline.yaml")]) == 0  # as `make demo-real` runs it
    pipeline = load_pipeline(tmp_path / "pipeline.yaml")
    for step in pipeline.steps:
        assert read_lineage(pipeline.folder(step))["status"] == "done", step.name
        if step.evaluate:
            summary = json.loads((pipeline.folder(step) / "eval_arithmetic.json").read_text())
            assert 0.0 <= summary["pass@1"] <= 1.0 and summary["config"]["num_problems"] == 4, step.name
            words = json.loads((pipeline.folder(step) / "eval_word_problems.json").read_text())
            assert words["protocol"] == "lighteval" and words["problems"] == 3 and "pass@1" not in words, step.name
    base, stage1 = pipeline.folder("base"), pipeline.folder("stage1")
    assert json.loads((base / "source.json").read_text())["source"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    tok, tuned = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(stage1)
    assert tuned.eos_token == tok.eos_token == "<|im_end|>" and tuned.chat_template == tok.chat_template
    for rl in ("rl1", "rl1_seed1"):
        assert read_lineage(pipeline.folder(rl))["model"] == str(stage1)
        assert AutoTokenizer.from_pretrained(pipeline.folder(rl)).eos_token == "<|im_end|>"

    # the cold start, with the shipped recipe's max_length: every turn ends at EOS and none is cut
    argv = ["--config", str(ROOT / "recipes/SmolLM2-135M/stage1.yaml"), "--model_name_or_path", str(base),
            "--dataset_mixture", json.dumps([{"path": str(pipeline.folder("data") / "cold_start.jsonl")}])]
    config = parse_config(SFTStageConfig, argv)
    assert config.max_length == shipped["stage1"]["max_length"]
    for row in sft.build_dataset(config):
        text = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        assert "<|im_start|>assistant\n<think>\n" in text and text.rstrip().endswith("<|im_end|>")
        assert len(tok(text)["input_ids"]) <= config.max_length, text
    # RL asks what the evaluation asks, with the evaluation's token budget
    argv = ["--config", str(ROOT / "recipes/SmolLM2-135M/rl1.yaml"), "--model_name_or_path", str(stage1),
            "--dataset_mixture", json.dumps([{"path": str(pipeline.folder("data") / "rl_prompts.jsonl")}])]
    config = parse_config(GRPOStageConfig, argv)
    assert config.max_completion_length == shipped_eval["max_new_tokens"]
    held_out = {p.text for p in arithmetic.all_problems() if p.held_out}
    for row in grpo.build_dataset(config):
        problem, instruction = row["problem"].split("\n\n")
        assert instruction == shipped_eval["instruction"] and problem not in held_out
        asked = prompt_for(row["problem"], template=shipped_eval["template"],
                           system_prompt=shipped_eval["system_prompt"])
        assert tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True) == \
            tok.apply_chat_template(asked, tokenize=False, add_generation_prompt=True)
    sample = json.loads((stage1 / "eval_arithmetic_samples.jsonl").open().readline())
    assert sample["prompt"][-1]["content"].endswith("\n\n" + shipped_eval["instruction"]), sample
