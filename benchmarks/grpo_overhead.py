"""Claim: our GRPO stage costs <= 1.05x TRL's own GRPOTrainer per step (target), same work.

    PYTHONPATH=src python benchmarks/grpo_overhead.py [--model runs/demo/stage1] [--steps 12] [--rounds 2]

Baseline: TRL's ``GRPOTrainer`` constructed directly with the same model weights, prompts,
reward functions and GRPO settings (a plain ``GRPOConfig`` holding the same values). Ours:
``r1_recipe.grpo.build_trainer`` — the aha metrics on every generation batch, the JSONL log
callback and the recipe plumbing. Both train from the same checkpoint and seed, so they sample
the same completions at the start; runs alternate (ours, TRL, ours, TRL, ...) so that a busy
machine slows both alike, and the per-step time is the median over steps after the first
(which holds one-off set-up). Without ``--model`` a tiny model is built in a temporary folder
(random init: completions run to max_completion_length, a worst case for generation time).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from r1_recipe.configs import GRPOStageConfig  # noqa: E402
from r1_recipe.data import arithmetic  # noqa: E402
from r1_recipe.data.loading import write_jsonl  # noqa: E402
from r1_recipe.grpo import build_dataset, build_reward_funcs, build_trainer  # noqa: E402
from r1_recipe.stage import load_model, load_tokenizer  # noqa: E402


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def make_config(model: str, data: Path, out: Path, steps: int) -> GRPOStageConfig:
    return GRPOStageConfig(
        model_name_or_path=model,
        output_dir=str(out),
        dataset_mixture=[{"path": str(data)}],
        reward_funcs=["accuracy", "format", "language_consistency"],
        reward_weights=[1.0, 0.1, 0.1],
        num_generations=8,
        per_device_train_batch_size=64,
        max_completion_length=64,
        learning_rate=5e-5,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
    )


def trl_trainer(config: GRPOStageConfig) -> GRPOTrainer:
    """TRL's trainer on the same weights, prompts, rewards and GRPO settings."""
    names = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init and f.name in names}
    values.pop("generation_batch_size")  # derived by post-init from steps_per_generation; TRL rejects both
    args = GRPOConfig(**{**values, "output_dir": config.output_dir + "-trl"})
    return GRPOTrainer(
        model=load_model(config),
        reward_funcs=build_reward_funcs(config),
        args=args,
        train_dataset=build_dataset(config),
        processing_class=load_tokenizer(config),
    )


def timed(trainer) -> list[float]:
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer.times[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: build a tiny random-init model)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2, help="alternating (ours, TRL) pairs")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            from r1_recipe.tiny import build_tiny_model

            model = str(build_tiny_model(tmp / "tiny"))
        data = tmp / "prompts.jsonl"
        write_jsonl(arithmetic.generate(2000, seed=1), data)
        ours, theirs = [], []
        for r in range(a.rounds):
            ours += timed(build_trainer(make_config(model, data, tmp / f"ours{r}", a.steps)))
            theirs += timed(trl_trainer(make_config(model, data, tmp / f"trl{r}", a.steps)))
    m_ours, m_trl = statistics.median(ours), statistics.median(theirs)
    print(f"steps timed: {len(ours)} ours, {len(theirs)} TRL (64 completions/step, 8 per prompt)")
    print(f"TRL GRPOTrainer : {m_trl:.3f} s/step (median; mean {statistics.mean(theirs):.3f})")
    print(f"r1_recipe.grpo  : {m_ours:.3f} s/step (median; mean {statistics.mean(ours):.3f})")
    print(f"ratio ours/TRL  : {m_ours / m_trl:.3f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
