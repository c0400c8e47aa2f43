"""Reward-model stage: generated preference pairs are clean and held out; a tiny reward model
trained for a few steps ranks held-out chosen above rejected, through TRL's evaluation and
through the `reward_model` reward that RL stage 2 calls; `score` reports each reward model."""

from __future__ import annotations

import json

import pytest
import yaml

from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data import preferences as prefs
from r1_recipe.data.loading import write_jsonl
from r1_recipe.reward_model import GeneralScoreConfig, RewardModelStageConfig, score_general, train
from r1_recipe.rewards import get_reward_funcs


def test_held_out_prompts_never_reach_training_pairs_or_rl_prompts():
    test_prompts = {p.text for p in prefs.split_prompts("test")}
    assert 8 <= len(test_prompts) <= 16 and {p.kind for p in prefs.split_prompts("test")} == {"repeat", "upper", "greet"}
    for aspect in prefs.ASPECTS:
        train_rows = list(prefs.preference_pairs(500, aspect, split="train"))
        assert not {r["prompt"][0]["content"] for r in train_rows} & test_prompts
    assert not {r["problem"] for r in prefs.rl_prompts("train")} & test_prompts
    assert not {r["problem"] for r in prefs.sft_rows(500)} & test_prompts


def test_pairs_say_what_each_reward_model_judges():
    for row in prefs.preference_pairs(200, "helpful", split="test"):
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert "<think>" not in chosen + rejected  # helpfulness: the final answer only
        assert chosen != rejected and row["rejected_style"] == "lazy"
    for row in prefs.preference_pairs(200, "harmless", split="test"):
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen.startswith("<think>") and rejected.startswith("<think>\nugh")  # the whole response
        assert not any(w in chosen.lower() for w in prefs.RUDE_WORDS)
    shares = {s: 0 for s in prefs.STYLES}
    for row in prefs.sft_rows(2000):
        text = prefs.full_response(prefs.GeneralPrompt("greet", name="Ada"), row["style"])
        assert prefs.style_of_general(text) == row["style"]
        shares[row["style"]] += 1
    assert 0.45 < shares["good"] / 2000 < 0.55


def test_config_rejects_two_held_out_sets(tmp_path):
    with pytest.raises(ConfigError, match="eval_mixture .* or eval_fraction"):
        RewardModelStageConfig(model_name_or_path="m", output_dir=str(tmp_path), eval_fraction=0.1,
                               eval_mixture=[{"path": "x.jsonl"}])


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory, tiny_model_dir):
    """A helpfulness reward model: 30 steps of the tiny random-init model on generated pairs."""
    tmp = tmp_path_factory.mktemp("rm")
    write_jsonl(prefs.preference_pairs(960, "helpful", split="train"), tmp / "train.jsonl")
    write_jsonl(prefs.preference_pairs(200, "helpful", split="test"), tmp / "test.jsonl")
    recipe = {
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp / "rm"), "aspect": "helpful",
        "dataset_mixture": [{"path": str(tmp / "train.jsonl")}], "eval_mixture": [{"path": str(tmp / "test.jsonl")}],
        "max_steps": 30, "per_device_train_batch_size": 32, "per_device_eval_batch_size": 100,
        "learning_rate": 1e-3, "warmup_steps": 3, "max_length": 64, "logging_steps": 10,
        "save_strategy": "no", "report_to": "none", "seed": 0, "dataloader_num_workers": 0,
    }
    (tmp / "rm.yaml").write_text(yaml.safe_dump(recipe))
    results = train(parse_config(RewardModelStageConfig, ["--config", str(tmp / "rm.yaml")]))
    return tmp, results


def test_few_steps_on_separable_pairs_rank_held_out_chosen_first(trained_rm):
    tmp, results = trained_rm
    assert results["eval_pairs"] == 200 and results["stage"] == "reward_model"
    assert results["eval_accuracy_before"] < 0.75  # a random head does not already rank them
    assert results["eval_accuracy"] >= 0.9
    assert json.loads((tmp / "rm" / "results.json").read_text())["eval_accuracy"] == results["eval_accuracy"]
    # The same ranking through the reward RL stage 2 calls (its own tokenisation and batching).
    (helpful,) = get_reward_funcs(["reward_model:helpful"], **{"reward_model:helpful": {"model": str(tmp / "rm")}})
    rows = list(prefs.preference_pairs(100, "helpful", split="test", seed=1))
    kw = {"prompts": [r["prompt"] for r in rows], "reward_type": ["general"] * len(rows)}
    chosen = helpful(completions=[r["chosen"] for r in rows], **kw)
    rejected = helpful(completions=[r["rejected"] for r in rows], **kw)
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(rows) >= 0.9


def test_score_reports_each_reward_model_and_the_style_shares(trained_rm, tiny_model_dir, tmp_path):
    tmp, _ = trained_rm
    write_jsonl(prefs.rl_prompts("test"), tmp_path / "general_test.jsonl")
    config = GeneralScoreConfig(
        model_name_or_path=str(tiny_model_dir), prompts=str(tmp_path / "general_test.jsonl"), num_problems=3,
        reward_funcs=["reward_model:helpful", "reward_model:twice"], num_samples=2, max_new_tokens=8,
        reward_kwargs={"reward_model:helpful": {"model": str(tmp / "rm")},
                       "reward_model:twice": {"model": str(tmp / "rm"), "on": "full"}},
        backend="transformers", output_dir=str(tmp_path / "out"))
    summary = score_general(config)
    assert summary["num_problems"] == 3 and summary["num_samples"] == 2
    assert summary["total"]["mean"] == pytest.approx(
        summary["reward_model:helpful"]["mean"] + summary["reward_model:twice"]["mean"], abs=1e-3)
    samples = (tmp_path / "out" / "eval_general_rm_samples.jsonl").read_text().splitlines()
    assert len(samples) == 6 and "reward_model:twice" in json.loads(samples[0])
