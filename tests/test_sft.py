"""The SFT stage on the tiny model: it learns, resumes without loss, and weights sources."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from datasets import Dataset

from r1_recipe.configs import SFTStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.sft import WeightedSFTTrainer, build_dataset, main


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


def _weighted_trainer(tmp_path, tiny_model_dir, alpha):
    rows = [{**r, "source": "reasoning"} for r in arithmetic.generate(8, seed=0)]
    rows += [{**r} for r in arithmetic.generate_general(8, seed=0)]
    data = tmp_path / "mix.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / f"alpha{alpha}.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "o"),
                                    "dataset_mixture": [{"path": str(data)}], "reasoning_alpha": alpha,
                                    "report_to": "none", "shuffle_dataset": False}))
    config = parse_config(SFTStageConfig, ["--config", str(path)])
    from r1_recipe.stage import load_model, load_tokenizer

    ds = build_dataset(config)
    trainer = WeightedSFTTrainer(model=load_model(config), args=config, train_dataset=ds,
                                 processing_class=load_tokenizer(config))
    return trainer, ds


def _loss_and_grad(trainer, examples):
    trainer.model.zero_grad()
    batch = trainer.data_collator([dict(e) for e in examples])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    return loss.item(), grad


@pytest.mark.parametrize("alpha, silent", [(1.0, "general"), (0.0, "reasoning")])
def test_reasoning_alpha_silences_the_other_source(tmp_path, tiny_model_dir, alpha, silent):
    trainer, ds = _weighted_trainer(tmp_path, tiny_model_dir, alpha)
    prepared = trainer.train_dataset
    weights = prepared["loss_weight"]
    silent_rows = [prepared[i] for i, w in enumerate(weights) if w == 0.0]
    loud_rows = [prepared[i] for i, w in enumerate(weights) if w == 2.0]
    assert len(silent_rows) == 8 and len(loud_rows) == 8
    loss, grad = _loss_and_grad(trainer, silent_rows)
    assert loss == 0.0 and torch.count_nonzero(grad) == 0
    loss, grad = _loss_and_grad(trainer, loud_rows)
    assert loss > 0 and torch.count_nonzero(grad) > 0


def test_alpha_one_half_equals_the_plain_mean_loss(tmp_path, tiny_model_dir):
    trainer, _ = _weighted_trainer(tmp_path, tiny_model_dir, 0.5)
    rows = [trainer.train_dataset[i] for i in range(16)]
    weighted, _ = _loss_and_grad(trainer, rows)
    plain_batch = trainer.data_collator.inner([{k: v for k, v in r.items() if k != "loss_weight"} for r in rows])
    plain = WeightedSFTTrainer.compute_loss(trainer, trainer.model, plain_batch).item()
    assert weighted == pytest.approx(plain, rel=1e-5)


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
