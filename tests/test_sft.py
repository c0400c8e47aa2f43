"""The SFT stage on the tiny model: it learns, resumes without loss, and mixes its two kinds of rows by α."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, TrainerCallback

from r1_recipe.configs import ConfigError, SFTStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import DataError
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.sft import WeightedSFTTrainer, build_dataset, main
from r1_recipe.stage import load_model, load_tokenizer


def _recipe(tmp_path, model, data, **overrides) -> str:
    recipe = {
        "model_name_or_path": str(model),
        "output_dir": str(tmp_path / "out"),
        "dataset_mixture": [{"path": str(data / "cold_start.jsonl")}],
        "per_device_train_batch_size": 32,
        "learning_rate": 3e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 20,
        "max_length": 128,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 0,
        **overrides,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_sft_loss_falls_and_held_out_accuracy_rises_above_chance(tmp_path, tiny_model_dir, demo_data_dir):
    results = main(["--config", _recipe(tmp_path, tiny_model_dir, demo_data_dir, max_steps=300)])
    assert results["global_step"] == 300
    assert results["last_logged_loss"] < 0.3 * results["first_logged_loss"]
    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text())["global_step"] == 300
    assert yaml.safe_load((out / "resolved_config.yaml").read_text())["learning_rate"] == 3e-3
    eval_config = EvalConfig(model_name_or_path=str(out), num_problems=60, num_samples=1, greedy=True,
                             max_new_tokens=48, temperature=0.7, top_p=1.0)
    before = evaluate(EvalConfig(**{**eval_config.__dict__, "model_name_or_path": str(tiny_model_dir)}))
    after = evaluate(eval_config)
    # two-digit ± has ~2,000 possible answers: chance is ~0; the random base scores 0.
    # (The demo's 800 steps reach ~0.96; 300 steps sit on the steep part of the curve.)
    assert before["greedy_accuracy"] == 0.0
    assert after["greedy_accuracy"] >= 0.1


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir, demo_data_dir):
    common = dict(save_strategy="steps", save_steps=4, max_train_samples=256, logging_steps=1)
    first = main(["--config", _recipe(tmp_path, tiny_model_dir, demo_data_dir, max_steps=4, **common)])
    assert first["global_step"] == 4 and first["resumed_from"] is None
    second = main(["--config", _recipe(tmp_path, tiny_model_dir, demo_data_dir, max_steps=6, **common)])
    assert second["resumed_from"].endswith("checkpoint-4")
    assert second["global_step"] == 6
    state = json.loads((tmp_path / "out" / "checkpoint-6" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]  # nothing lost or redone


class _StepGrads(TrainerCallback):
    """The gradient of the first optimizer step, read before the optimizer moves the weights."""

    def __init__(self, model):
        self.model, self.grad = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grad is None:
            self.grad = torch.cat([p.grad.flatten().clone() for p in self.model.parameters()])


def _mixed_rows():
    """Two long reasoning traces and two short general answers: the kinds' token counts differ a lot."""
    reasoning = [{**r, "source": "reasoning"} for r in arithmetic.generate(2, seed=0)]
    general = [{**r, "reasoning": "", "solution": r["solution"].split()[0]}
               for r in arithmetic.generate_general(2, seed=0)]
    return reasoning, general


def _one_step(tmp_path, model_dir, rows, name, **overrides):
    """Train one optimizer step over all ``rows``; return the trainer, its logged loss and its gradient."""
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / name), "report_to": "none",
              "dataset_mixture": [{"path": str(data)}], "max_steps": 1, "logging_steps": 1, "save_strategy": "no",
              "learning_rate": 1e-3, "max_grad_norm": 0.0, "seed": 0, **overrides}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    config = parse_config(SFTStageConfig, ["--config", str(path)])
    trainer = WeightedSFTTrainer(model=load_model(config), args=config, train_dataset=build_dataset(config),
                                 processing_class=load_tokenizer(config))
    grads = _StepGrads(trainer.model)
    trainer.add_callback(grads)
    trainer.train()
    return trainer, trainer.state.log_history[0]["loss"], grads.grad


def _reference(model_dir, trainer, kind_of, alpha):
    """α·(token mean over reasoning rows) + (1−α)·(token mean over general rows), from a plain forward
    of each prepared row on a fresh copy of the model; returns the loss, its gradient and the counts."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    sums, counts = {"reasoning": 0.0, "general": 0.0}, {"reasoning": 0, "general": 0}
    for row in trainer.train_dataset:
        ids, labels = torch.tensor(row["input_ids"]), torch.tensor(row["labels"])
        logp = torch.log_softmax(model(input_ids=ids[None]).logits[0, :-1], dim=-1)
        keep = labels[1:] != -100
        nll = -logp[keep].gather(1, labels[1:][keep][:, None]).squeeze(1)
        kind = kind_of[row["prompt"][-1]["content"]]
        sums[kind] = sums[kind] + nll.sum()
        counts[kind] += int(keep.sum())
    loss = alpha * sums["reasoning"] / counts["reasoning"] + (1 - alpha) * sums["general"] / counts["general"]
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()]), counts


@pytest.mark.parametrize("alpha, accumulation, batch", [(0.75, 2, 2), (0.75, 1, 4), (0.25, 4, 1)])
def test_weighted_loss_is_alpha_mix_of_per_kind_token_means_over_the_step(tmp_path, tiny_model_dir, alpha,
                                                                          accumulation, batch):
    reasoning, general = _mixed_rows()
    kind_of = {r["problem"]: "reasoning" for r in reasoning} | {r["problem"]: "general" for r in general}
    trainer, logged, grad = _one_step(tmp_path, tiny_model_dir, reasoning + general, "mix", reasoning_alpha=alpha,
                                      gradient_accumulation_steps=accumulation, per_device_train_batch_size=batch)
    loss, ref_grad, counts = _reference(tiny_model_dir, trainer, kind_of, alpha)
    assert counts["reasoning"] > 3 * counts["general"]  # a token-count-dependent mix would be far off
    assert logged == pytest.approx(loss, rel=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("alpha, kept", [(1.0, "reasoning"), (0.0, "general")])
@pytest.mark.parametrize("accumulation, batch", [(2, 2), (1, 4)])
def test_alpha_one_or_zero_equals_plain_sft_on_that_kind_alone(tmp_path, tiny_model_dir, alpha, kept,
                                                               accumulation, batch):
    reasoning, general = _mixed_rows()
    rows = {"reasoning": reasoning, "general": general}[kept]
    _, mixed_loss, mixed_grad = _one_step(tmp_path, tiny_model_dir, reasoning + general, "mix",
                                          reasoning_alpha=alpha, gradient_accumulation_steps=accumulation,
                                          per_device_train_batch_size=batch)
    _, plain_loss, plain_grad = _one_step(tmp_path, tiny_model_dir, rows, "plain",  # TRL's own SFT loss
                                          gradient_accumulation_steps=1, per_device_train_batch_size=len(rows))
    assert mixed_loss == pytest.approx(plain_loss, rel=1e-4)
    torch.testing.assert_close(mixed_grad, plain_grad, rtol=1e-3, atol=1e-6)


def _sft_config(tmp_path, model_dir, rows, **overrides) -> SFTStageConfig:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "o"),
                                    "dataset_mixture": [{"path": str(data)}], "report_to": "none", **overrides}))
    return parse_config(SFTStageConfig, ["--config", str(path)])


@pytest.mark.parametrize("value", ["reasonning", None])
def test_an_unknown_source_is_an_error_naming_the_row_and_value(tmp_path, tiny_model_dir, value):
    reasoning, general = _mixed_rows()
    bad = {**general[0], "source": value, "problem": "Spell cat backwards."}
    config = _sft_config(tmp_path, tiny_model_dir, [*reasoning, bad], reasoning_alpha=0.5)
    expected = (rf"row \d+ \(problem 'Spell cat backwards\.'\) has source {re.escape(repr(value))}"
                ".*'reasoning' or 'general'")
    with pytest.raises(DataError, match=expected):
        build_dataset(config)


def test_without_a_source_column_alpha_trains_plain_sft_and_says_so(tmp_path, tiny_model_dir, caplog):
    reasoning, _ = _mixed_rows()
    untagged = [{k: v for k, v in r.items() if k != "source"} for r in reasoning]
    _, weighted_loss, weighted_grad = _one_step(tmp_path, tiny_model_dir, untagged, "untagged", reasoning_alpha=0.75,
                                                gradient_accumulation_steps=2, per_device_train_batch_size=1)
    assert "no `source` column" in caplog.text and "reasoning_alpha" in caplog.text
    _, plain_loss, plain_grad = _one_step(tmp_path, tiny_model_dir, untagged, "plain",
                                          gradient_accumulation_steps=2, per_device_train_batch_size=1)
    assert weighted_loss == pytest.approx(plain_loss, rel=1e-5)  # not 0.75x or 1.5x
    torch.testing.assert_close(weighted_grad, plain_grad)


def test_padding_free_is_refused_with_reasoning_alpha(tmp_path, tiny_model_dir):
    reasoning, general = _mixed_rows()
    with pytest.raises(ConfigError, match="padding_free: false"):
        _sft_config(tmp_path, tiny_model_dir, reasoning + general, reasoning_alpha=0.5, padding_free=True)


def test_resume_skips_a_checkpoint_torn_by_a_kill_while_saving(tmp_path):
    """transformers writes trainer_state.json last: a newer folder without it (or with it cut
    short) is a save that was killed, and resuming from it would fail."""
    from types import SimpleNamespace

    from r1_recipe.stage import checkpoint_to_resume

    for step, state in ((5, '{"global_step": 5}'), (10, None), (15, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    config = SimpleNamespace(resume=True, output_dir=str(tmp_path))
    assert checkpoint_to_resume(config) == str(tmp_path / "checkpoint-5")
    assert checkpoint_to_resume(SimpleNamespace(resume=False, output_dir=str(tmp_path))) is None
