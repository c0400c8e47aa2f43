"""Dynamic sampling in the GRPO stage (r1_recipe.dynamic_sampling): only groups whose rewards differ
are trained on, whole, through gradient accumulation, with every loss type, on one process and on
two; the TRL internals it and the reward-health hook rely on are still there."""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from trl import GRPOTrainer
from trl.trainer.grpo_trainer import RepeatSampler

from r1_recipe.cli import _config_for_processes
from r1_recipe.configs import ConfigError, GRPOStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.dynamic_sampling import ROW_KEYS, assemble, informative_groups
from r1_recipe.grpo import build_trainer
from r1_recipe.rewards import REWARDS
from r1_recipe.rewards.base import named, texts

ROOT = Path(__file__).resolve().parents[1]
G = 4
NAN = float("nan")


def flat_on_odd():
    """Test-only: 1.0 for every sample of a prompt whose first number is odd (a zero-spread group),
    a length-dependent spread otherwise."""

    def fn(completions, prompts=None, **kwargs):
        return [1.0 if _odd(p) else float(len(t) % 5) for t, p in zip(texts(completions), prompts)]

    return named(fn, "flat_on_odd")


def _odd(prompt) -> bool:
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return int(text.split()[1]) % 2 == 1  # "Compute 37 + 22."


@pytest.fixture
def flat_reward(monkeypatch):
    monkeypatch.setitem(REWARDS, "flat_on_odd", flat_on_odd)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "rl_prompts.jsonl"
    write_jsonl(arithmetic.generate(64, seed=1), path)
    return path


def _recipe(tmp_path, model_dir, prompts, **over) -> list[str]:
    data = {
        "model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "rl"),
        "dataset_mixture": [{"path": str(prompts)}], "reward_funcs": ["flat_on_odd"],
        "num_generations": G, "per_device_train_batch_size": 8, "steps_per_generation": 2,
        "gradient_accumulation_steps": 2, "max_completion_length": 8, "learning_rate": 1e-3,
        "max_steps": 2, "logging_steps": 1, "save_steps": 100, "report_to": "none", "seed": 0,
        "dataloader_num_workers": 0, "dynamic_sampling": True, "max_generation_batches": 4, **over,
    }
    path = tmp_path / "recipe.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return ["--config", str(path)]


def _record_steps(trainer) -> tuple[list, list]:
    """Wrap the trainer: every scored batch it trains on, and every micro-batch its loss sees."""
    scored, micro = [], []
    generate, loss = trainer._generate_and_score_completions, trainer.compute_loss

    def gen(inputs):
        out = generate(inputs)
        scored.append(({k: v for k, v in out.items()}, [x["prompt"] for x in inputs]))
        return out

    def compute_loss(model, inputs, *args, **kwargs):
        micro.append({k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
        return loss(model, inputs, *args, **kwargs)

    trainer._generate_and_score_completions, trainer.compute_loss = gen, compute_loss
    return scored, micro


def _groups(batch: dict) -> Counter:
    """How many rows each prompt (its unpadded ids) has in a scored batch or micro-batch."""
    keys = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"])]
    return Counter(keys)


# --- the pieces --------------------------------------------------------------------------------


def test_informative_groups_follow_the_spread_of_the_weighted_reward():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0],       # spread only in reward 2
                            [0.0, 1.0], [1.0, 0.0],       # each spreads, weighted sums equal
                            [NAN, NAN], [1.0, 0.0],       # one scored row: no spread
                            [NAN, 1.0], [NAN, 1.0]])      # None rows skipped: no spread
    weights = torch.tensor([1.0, 1.0])
    assert informative_groups(rewards, weights, 2).tolist() == [True, False, False, False]
    assert informative_groups(rewards, torch.tensor([1.0, 0.0]), 2).tolist() == [False, True, False, False]
    # TRL's normalize_then_sum normalizes each reward in its group first: any spreading reward counts
    assert informative_groups(rewards, weights, 2, "normalize_then_sum").tolist() == [True, True, False, False]


def test_assemble_pads_prompts_left_and_completions_right():
    a = {"prompt_ids": torch.tensor([[5, 6], [5, 6]]), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
         "completion_ids": torch.tensor([[7], [8]]), "completion_mask": torch.ones(2, 1, dtype=torch.long),
         "advantages": torch.tensor([1.0, -1.0]), "old_per_token_logps": torch.tensor([[-0.5], [-0.6]]),
         "num_items_in_batch": torch.tensor(2)}
    b = {"prompt_ids": torch.tensor([[1, 2, 3]]), "prompt_mask": torch.ones(1, 3, dtype=torch.long),
         "completion_ids": torch.tensor([[4, 4, 4]]), "completion_mask": torch.ones(1, 3, dtype=torch.long),
         "advantages": torch.tensor([0.5]), "old_per_token_logps": torch.tensor([[-1.0, -1.0, -1.0]]),
         "num_items_in_batch": torch.tensor(3)}
    out = assemble([(a, slice(0, 2)), (b, slice(0, 1))], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 5, 6], [0, 5, 6], [1, 2, 3]]
    assert out["prompt_mask"].tolist() == [[0, 1, 1], [0, 1, 1], [1, 1, 1]]
    assert out["completion_ids"].tolist() == [[7, 0, 0], [8, 0, 0], [4, 4, 4]]
    assert out["completion_mask"].sum().item() == 5
    assert out["advantages"].tolist() == [1.0, -1.0, 0.5]
    assert out["old_per_token_logps"][0].tolist() == [-0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="multimodal"):
        assemble([({**a, "pixel_values": torch.zeros(2, 3)}, slice(0, 2))], pad_token_id=0)


# --- one process -------------------------------------------------------------------------------


def test_only_informative_whole_groups_are_trained_on_through_gradient_accumulation(
        tmp_path, tiny_model_dir, prompts_file, flat_reward):
    config = parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file))
    trainer = build_trainer(config)
    scored, micro = _record_steps(trainer)
    trainer.train()
    assert len(scored) == 2 and len(micro) == 4  # 2 steps × 2 accumulation micro-batches, one generation each
    for step, (batch, _) in enumerate(scored):
        assert set(batch) <= {*ROW_KEYS, "num_items_in_batch"}
        assert batch["prompt_ids"].shape[0] == 16  # the batch TRL expects: 4 groups of 4
        assert batch["num_items_in_batch"].item() == batch["completion_mask"].sum().item()
        # one optimizer step = its 2 micro-batches = the scored batch: whole groups, none of them flat
        seen = _groups(micro[2 * step]) + _groups(micro[2 * step + 1])
        assert seen == _groups(batch) and all(n % G == 0 for n in seen.values()), seen
        advantages = batch["advantages"].view(-1, G)
        assert (advantages.abs().sum(dim=1) > 0).all(), "a zero-spread group was trained on"
    logged = [e for e in trainer.state.log_history if "dynamic_sampling/dropped_share" in e]
    assert len(logged) == 2
    # about half the prompts have an odd first number: their groups are dropped and refilled
    assert all(0 < e["dynamic_sampling/dropped_share"] < 1 for e in logged)
    assert all(e["dynamic_sampling/generation_batches"] >= 2 for e in logged)
    assert all(e["dynamic_sampling/informative_share"] == 1.0 for e in logged)


def test_without_it_flat_groups_are_trained_on(tmp_path, tiny_model_dir, prompts_file, flat_reward):
    config = parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file, dynamic_sampling=False))
    trainer = build_trainer(config)
    scored, _ = _record_steps(trainer)
    trainer.train()
    flat = [g for batch, prompts in scored for g in range(len(prompts) // G) if _odd(prompts[g * G])]
    assert flat, "the control must sample zero-spread groups for the test above to mean anything"
    assert not any("dynamic_sampling/dropped_share" in e for e in trainer.state.log_history)


def test_capped_generation_batches_train_on_what_they_have_and_say_so(tmp_path, tiny_model_dir, prompts_file,
                                                                      flat_reward, caplog):
    config = parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file, max_generation_batches=1,
                                                   max_steps=1))
    trainer = build_trainer(config)
    scored, _ = _record_steps(trainer)
    with caplog.at_level(logging.WARNING, logger="r1_recipe.dynamic_sampling"):
        trainer.train()
    batch, prompts = scored[0]
    flat = sum(_odd(prompts[g * G]) for g in range(len(prompts) // G))
    logged = next(e for e in trainer.state.log_history if "dynamic_sampling/informative_share" in e)
    assert logged["dynamic_sampling/generation_batches"] == 1
    assert logged["dynamic_sampling/informative_share"] == pytest.approx(1 - flat / 4)
    assert batch["prompt_ids"].shape[0] == 16  # padded with the zero-spread groups (advantage 0)
    if flat:
        assert "informative after 1 generation batches" in caplog.text


def always_spread():
    """Test-only: a small shaping reward that differs between any two completions (like language consistency)."""

    def fn(completions, **kwargs):
        return [len(t) / 100 + i * 1e-3 for i, t in enumerate(texts(completions))]

    return named(fn, "always_spread")


def test_dynamic_sampling_rewards_pick_which_spread_counts(tmp_path, tiny_model_dir, prompts_file, flat_reward,
                                                           monkeypatch):
    monkeypatch.setitem(REWARDS, "always_spread", always_spread)
    dropped = {}
    for rewards in (None, ["flat_on_odd"]):
        over = {"reward_funcs": ["flat_on_odd", "always_spread"], "reward_weights": [1.0, 0.1], "max_steps": 1,
                "dynamic_sampling_rewards": rewards}
        trainer = build_trainer(parse_config(GRPOStageConfig, _recipe(tmp_path / str(rewards), tiny_model_dir,
                                                                      prompts_file, **over)))
        trainer.train()
        dropped[str(rewards)] = next(e["dynamic_sampling/dropped_share"] for e in trainer.state.log_history
                                     if "dynamic_sampling/dropped_share" in e)
    assert dropped["None"] == 0.0  # by the weighted total every group spreads, a little
    assert dropped["['flat_on_odd']"] > 0  # by the verifier alone, the odd prompts' groups do not
    with pytest.raises(ConfigError, match=r"dynamic_sampling_rewards \['acuracy'\] are not among reward_funcs"):
        parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file,
                                              dynamic_sampling_rewards=["acuracy"]))


def test_every_trl_loss_type_trains_on_the_assembled_batch(tmp_path, tiny_model_dir, prompts_file, flat_reward):
    from trl import GRPOConfig

    loss_types = inspect.signature(GRPOConfig).parameters["loss_type"].default, "grpo", "bnpo", "dr_grpo", "dapo", \
        "cispo", "sapo", "luspo", "vespo"
    for loss_type in dict.fromkeys(loss_types):
        over = {"importance_sampling_level": "sequence"} if loss_type == "luspo" else {}
        config = parse_config(GRPOStageConfig, _recipe(tmp_path / loss_type, tiny_model_dir, prompts_file,
                                                       loss_type=loss_type, max_steps=1, **over))
        trainer = build_trainer(config)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train()
        loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
        assert math.isfinite(loss), loss_type
        changed = sum(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
        assert changed > len(before) // 2, f"{loss_type}: only {changed} tensors changed"


# --- two processes -----------------------------------------------------------------------------


def test_two_processes_keep_whole_informative_groups_each(tmp_path, tiny_model_dir, prompts_file):
    from _one_step_ranks import launch_two_ranks

    _recipe(tmp_path, tiny_model_dir, prompts_file, per_device_train_batch_size=4)  # 8 completions per process
    record = launch_two_ranks("grpo", tmp_path / "recipe.yaml", tmp_path / "out.pt")
    for rank, steps in enumerate(record["ranks"]):
        assert len(steps) == 2, rank
        for step in steps:
            # each optimizer step: this rank's micro-batches hold whole groups, each with a spread of rewards
            assert step["micro_groups"] == step["scored_groups"] and all(n % G == 0 for n in step["micro_groups"])
            assert all(n % G == 0 for n in step["scored_groups"]) and sum(step["scored_groups"]) == 8
            assert step["flat_groups"] == 0
    logged = record["logged"]
    assert all(e["dynamic_sampling/generation_batches"] >= 1 for e in logged) and len(logged) == 2


# --- config and TRL ----------------------------------------------------------------------------


def test_groups_split_across_processes_are_refused(tmp_path, flat_reward):
    # 6 completions per process: TRL accepts it (12 per batch over 2 processes), but a group of 4 would straddle them
    with pytest.raises(ConfigError, match=r"each process gets 6 completions .* split across processes"):
        _config_for_processes("grpo", _recipe(tmp_path, "m", "p.jsonl", per_device_train_batch_size=6,
                                              gradient_accumulation_steps=1, steps_per_generation=1), 2)
    _config_for_processes("grpo", _recipe(tmp_path, "m", "p.jsonl", per_device_train_batch_size=8,
                                          gradient_accumulation_steps=1, steps_per_generation=1), 2)


def test_trl_internals_it_relies_on():
    """Pins what r1_recipe.dynamic_sampling and r1_recipe.grpo's health check take from TRL 1.16."""
    for name in ("_generate_and_score_completions", "_calculate_rewards", "_get_dataloader", "_log_metric"):
        assert callable(getattr(GRPOTrainer, name, None)), name
    params = inspect.signature(GRPOTrainer._calculate_rewards).parameters
    assert list(params) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert {"data_source", "mini_repeat_count", "batch_size", "repeat_count", "shuffle", "seed"} <= set(
        inspect.signature(RepeatSampler).parameters)
    assert {"dataset", "description", "batch_size", "sampler_fn", "is_training"} <= set(
        inspect.signature(GRPOTrainer._get_dataloader).parameters)
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for line in ('"num_items_in_batch": num_items_in_batch', "rewards_per_func = self._calculate_rewards(",
                 "self.accelerator.process_index * len(prompts)", 'self._metrics[mode]["frac_reward_zero_std"]'):
        assert line in source, line
    assert "self._buffered_inputs = " in inspect.getsource(GRPOTrainer._prepare_inputs)
    init = inspect.getsource(GRPOTrainer.__init__)
    for attribute in ("self.reward_func_names", "self.reward_weights", "self.eos_token_ids", "self._pending_metrics",
                      "self._metrics", "self._tokenizer", "self.multi_objective_aggregation", "self.shuffle_dataset"):
        assert attribute + " = " in init, attribute


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("recipes/*/rl1/*.yaml"),
                                                                                *ROOT.glob("recipes/*/zero/config_*.yaml"),
                                                                                ROOT / "recipes/demo/rl1.yaml"]))
def test_the_recipes_keys_as_their_comments_show_them_start(recipe):
    """Each real GRPO recipe's comment offers dynamic sampling and a reward_health stop: uncommented, they pass its checks."""
    shown = [line[2:] for line in (ROOT / recipe).read_text().splitlines()
             if re.match(r"# (dynamic_sampling|max_generation_batches|dynamic_sampling_rewards|reward_health):", line)]
    keys = yaml.safe_load("\n".join(shown))
    assert {"dynamic_sampling", "dynamic_sampling_rewards", "reward_health"} <= set(keys), recipe
    argv = [x for key, value in keys.items() for x in (f"--{key}", json.dumps(value))]
    config = _config_for_processes("grpo", ["--config", str(ROOT / recipe), *argv], 8)
    assert config.dynamic_sampling and config.reward_health == {"stop_if": {"unparsed_reference": 0.2}}
    assert set(config.dynamic_sampling_rewards) <= set(config.reward_funcs)
