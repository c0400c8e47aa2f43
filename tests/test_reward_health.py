"""Reward health (r1_recipe.reward_health): the shares on crafted completions; a GRPO run on golds
that do not parse stops when its recipe asks and only warns by default; rejection sampling and
evaluation report the shares in their statistics."""

from __future__ import annotations

import json
import logging

import pytest
from test_dynamic_sampling import _recipe
from test_evaluate import FAST, ScriptedSampler
from test_rejection_sampling import CraftedSampler, _config

from r1_recipe.cli import main as cli_main
from r1_recipe.configs import ConfigError, GRPOStageConfig, parse_config
from r1_recipe.data.loading import write_jsonl
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.grpo import train
from r1_recipe.rejection_sampling import run
from r1_recipe.reward_health import RewardHealthError, health_stats, shares
from r1_recipe.rewards import get_reward_funcs


def test_health_shares_on_crafted_completions():
    funcs = get_reward_funcs(["accuracy", "format"])
    rows = [{"solution": "4"}, {"solution": "4"}, {"solution": "@@@", "id": 17}, {"solution": "4"}]
    completions = ["<think>a</think> \\boxed{4}", "<think>a</think> \\boxed{5}", "<think>a</think> \\boxed{4}",
                   "<think>a"]
    counts, flagged = health_stats(funcs, [[1.0, 0.0, None, 0.0], [1.0, 1.0, 1.0, 0.0]], rows, completions,
                                   truncated=[False, False, False, True], timeouts=1)
    assert shares(counts) == {"unparsed_reference": 0.25, "no_answer": 0.25, "format_while_wrong": 1 / 3,
                              "truncated": 0.25, "verifier_timeouts": 0.25}
    assert flagged["unparsed_reference"] == [2] and flagged["format_while_wrong"] == [1]


def _gold_recipe(tmp_path, model_dir, **over) -> list[str]:
    rows = [{"problem": f"Compute {a} + 1.", "solution": "@@@", "id": f"bad-{a}"} for a in range(16)]
    write_jsonl(rows, tmp_path / "bad_golds.jsonl")
    return _recipe(tmp_path, model_dir, tmp_path / "bad_golds.jsonl", reward_funcs=["accuracy", "format"],
                   dynamic_sampling=False, max_steps=1, **over)


def test_unparseable_golds_stop_a_run_that_asks_for_it(tmp_path, tiny_model_dir, capsys):
    argv = _gold_recipe(tmp_path, tiny_model_dir, reward_health={"stop_if": {"unparsed_reference": 0.2}})
    with pytest.raises(RewardHealthError):
        train(parse_config(GRPOStageConfig, argv))
    capsys.readouterr()
    assert cli_main(["grpo", *argv]) == 2  # as a user runs it: one line, no traceback
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "r1-recipe grpo: error:" in line]  # among progress bars
    assert len(lines) == 1 and "Traceback" not in err
    line = lines[0]
    assert "r1-recipe grpo: error: GRPO: reward health unparsed_reference = 1.00 > stop_if limit 0.2 at step 0" in line
    assert "id=bad-" in line
    assert not (tmp_path / "rl" / "model.safetensors").exists()


def test_by_default_unparseable_golds_only_warn(tmp_path, tiny_model_dir, caplog):
    config = parse_config(GRPOStageConfig, _gold_recipe(tmp_path, tiny_model_dir))
    with caplog.at_level(logging.WARNING, logger="r1_recipe.reward_health"):
        results = train(config)
    assert results["global_step"] == 1
    assert results["mean_over_training"]["health/unparsed_reference"] == 1.0
    assert "reward health unparsed_reference = 1.00" in caplog.text
    assert json.loads((tmp_path / "rl" / "results.json").read_text())["last_logged"]["health/unparsed_reference"] == 1


@pytest.mark.parametrize("settings, hint", [
    ({"stop_if": {"unparsed": 0.2}}, "unknown share; valid: unparsed_reference"),
    ({"stop_if": {"truncated": 2}}, "must be a share in [0, 1]"),
    ({"stop": {"truncated": 0.5}}, "takes {stop_if:"),
])
def test_bad_health_limits_say_what_to_change(tmp_path, settings, hint):
    with pytest.raises(ConfigError, match=hint.replace("[", r"\[").replace("{", r"\{")):
        parse_config(GRPOStageConfig, _recipe(tmp_path, "m", "p.jsonl", reward_health=settings))




def test_rejection_sampling_reports_unparsed_golds_and_missing_answers(tmp_path):
    config = _config(tmp_path, general_mixture=None)
    rows = [json.loads(line) for line in open(config.dataset_mixture[0]["path"])]
    write_jsonl([{**r, "solution": "@@@"} for r in rows], config.dataset_mixture[0]["path"])
    stats = run(config, sampler=CraftedSampler())
    health = stats["reward_health"]
    assert health["unparsed_reference"] == 1.0  # every gold; accuracy returned None on all
    assert health["no_answer"] == 0.0  # every crafted completion ends in a \boxed{} answer
    assert health["truncated"] == 0.0 and "format_while_wrong" not in health  # nothing verified: nothing wrong


def test_rejection_sampling_reports_format_paid_while_wrong(tmp_path):
    stats = run(_config(tmp_path, general_mixture=None), sampler=CraftedSampler())
    health = stats["reward_health"]
    assert health["unparsed_reference"] == 0.0
    # the wrong answer in good form, of the 11 samples of each prompt
    assert health["format_while_wrong"] == pytest.approx(1 / 11)


def test_evaluation_reports_unparsed_references(tmp_path):
    path = tmp_path / "math500.jsonl"
    write_jsonl([{"problem": "Half of one?", "answer": "\\frac{1}{2}"}, {"problem": "Broken?", "answer": "@@@"}], path)
    box = "<think>\nhm\n</think>\n\\boxed{{{}}}".format
    sampler = ScriptedSampler({"Half": [box("1/2"), "<think>cut"], "Broken": [box("3"), box("3")]})
    s = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"math_500={path}", num_samples=2,
                            greedy=False, **FAST), sampler=sampler)
    assert s["reward_health"]["unparsed_reference"] == 0.5
    assert s["reward_health"]["no_answer"] == 0.25
