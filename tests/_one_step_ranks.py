"""One optimizer step of the SFT or logit-distillation trainer, run by tests under ``accelerate launch``.

    accelerate launch ... tests/_one_step_ranks.py sft|distill|bf16_step|grpo RECIPE OUT.pt

Every rank trains one step; rank 0 saves the logged loss and the gradient the optimizer is about
to apply (after DDP has averaged it across ranks) to ``OUT.pt``, so a test can compare them with
the one-process numbers. ``grpo`` (dynamic sampling, tests/test_dynamic_sampling.py) trains the
recipe's steps and saves, per rank and optimizer step, how many rows each prompt has in the scored
batch and in the micro-batches the loss saw, and how many of its groups had no reward spread.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from r1_recipe.configs import GRPOStageConfig, SFTStageConfig, parse_config
from r1_recipe.distill import DistillStageConfig, LogitDistillationTrainer
from r1_recipe.sft import WeightedSFTTrainer, build_dataset
from r1_recipe.stage import load_model, load_tokenizer


ROOT = Path(__file__).resolve().parents[1]


def launch_two_ranks(stage: str, recipe: Path, out: Path) -> dict:
    """Run this file on two gloo ranks (accelerate's DDP launcher on CPU); rank 0's step record."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") and not k.startswith("SLURM_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join(sys.path)})
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(ROOT / "accelerate_configs" / "ddp.yaml"), "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--main_process_port", str(port), __file__, stage, str(recipe), str(out)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    record = torch.load(out)
    assert record["world_size"] == 2 and record["backend"] == "gloo", record
    return record


class _StepGrads(TrainerCallback):
    def __init__(self, model):
        self.model, self.grad = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grad is None:
            self.grad = torch.cat([p.grad.flatten().clone() for p in self.model.parameters()])


def bf16_recipe_step(recipe: str, out: str) -> int:
    """One SFT step of a full fine-tune, the policy loaded in the dtype a GPU run of this recipe under
    this launcher loads (``weights_dtype(cuda=True)``); the trainer saves to ``output_dir``."""
    config = parse_config(SFTStageConfig, ["--config", recipe])
    dtype = config.weights_dtype(cuda=True)
    model = AutoModelForCausalLM.from_pretrained(config.model_name_or_path, dtype=getattr(torch, dtype))
    trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=build_dataset(config),
                                 processing_class=load_tokenizer(config))
    trainer.train()
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        torch.save({"dtype": dtype, "world_size": trainer.accelerator.num_processes,
                    "backend": str(trainer.accelerator.state.backend)}, out)
    return 0


def grpo_ranks(recipe: str, out: str) -> int:
    from accelerate.utils import gather_object
    from test_dynamic_sampling import G, _groups, _record_steps, flat_on_odd

    from r1_recipe.grpo import build_trainer
    from r1_recipe.rewards import REWARDS

    REWARDS["flat_on_odd"] = flat_on_odd
    trainer = build_trainer(parse_config(GRPOStageConfig, ["--config", recipe]))
    scored, micro = _record_steps(trainer)
    trainer.train()
    per_step = trainer.args.steps_per_generation
    steps = []
    for i, (batch, _) in enumerate(scored):
        seen = sum((_groups(m) for m in micro[i * per_step:(i + 1) * per_step]), start=Counter())
        steps.append({"scored_groups": sorted(_groups(batch).values()), "micro_groups": sorted(seen.values()),
                      "flat_groups": int((batch["advantages"].view(-1, G).abs().sum(dim=1) == 0).sum())})
    ranks = gather_object([steps])
    if trainer.accelerator.is_main_process:
        logged = [e for e in trainer.state.log_history if "dynamic_sampling/generation_batches" in e]
        torch.save({"ranks": ranks, "logged": logged, "world_size": trainer.accelerator.num_processes,
                    "backend": str(trainer.accelerator.state.backend)}, out)
    return 0


def main() -> int:
    stage, recipe, out = sys.argv[1:4]
    if stage == "bf16_step":
        return bf16_recipe_step(recipe, out)
    if stage == "grpo":
        return grpo_ranks(recipe, out)
    config = parse_config(DistillStageConfig if stage == "distill" else SFTStageConfig, ["--config", recipe])
    tokenizer = load_tokenizer(config)
    common = dict(model=load_model(config), args=config, train_dataset=build_dataset(config), processing_class=tokenizer)
    if stage == "distill":
        teacher = AutoModelForCausalLM.from_pretrained(config.teacher_model_name_or_path)
        trainer = LogitDistillationTrainer(**common, teacher=teacher, kd_beta=config.kd_beta,
                                           kd_temperature=config.kd_temperature, vocab_size=len(tokenizer))
    else:
        trainer = WeightedSFTTrainer(**common)
    grads = _StepGrads(trainer.model)
    trainer.add_callback(grads)
    trainer.train()
    if trainer.accelerator.is_main_process:
        torch.save({"loss": trainer.state.log_history[0]["loss"], "grad": grads.grad,
                    "world_size": trainer.accelerator.num_processes, "backend": str(trainer.accelerator.state.backend)},
                   out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
