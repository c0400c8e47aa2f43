"""Where a tiny demo step spends its time, and the demo's old settings vs the new, in one process.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/tiny_steps.py [--run_dir runs/demo] [--sft_steps 40]
        [--grpo_steps 8]

Needs ``runs/demo/{base,data,stage1,student_base,rejection,rl2}`` (``make demo``, or copy them
from a finished run). GRPO and evaluation run with the old settings and the new, one after the
other in this process (new first, so leftover warm-up costs fall on the new side):

- **SFT** (``recipes/demo/stage1.yaml`` on ``base``; ``recipes/demo/distill.yaml`` on
  ``student_base``): ms per step split into data (fetch + collate), forward (loss), backward,
  optimizer and the rest (Trainer bookkeeping, logging); one checkpoint's cost; steps/s; and the
  recipe's training time, ``max_steps`` × s/step. The settings are unchanged (old = new): a step
  is ~98% forward and backward, padding is already to the longest row of the batch (~10% pad
  tokens), and fewer steps or smaller batches failed the demo's held-out goals (see the comments
  in the two recipes).
- **GRPO** (``recipes/demo/rl1.yaml`` on ``stage1``): ms per step split into generation, rewards,
  log-probs, backward and the rest, after a discarded warm-up run (the first run of a process
  pays its first generate). Old: a completion without an answer went to the math-verify
  processes, so the first batch holding one started them (:func:`old_verifier`); new: decided in
  the parent (:meth:`r1_recipe.rewards.verify.MathVerifier._fast`). The workers' CPU is counted
  once they are closed (``RUSAGE_CHILDREN``).
- **Evaluation** (``recipes/demo/evaluate.yaml``, 200 held-out problems, greedy + 4 samples):
  problems/s on ``base``, whose answers are missing (truncated), with the old and the new verifier;
  then on ``stage1`` with generate batches of 256 (the default) and 1024, for information.

Each number is wall time and this process's CPU time (with one BLAS thread the CPU time is what
the step costs; wall time grows with whatever else the machine runs). Ratios are old / new.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook  # noqa: E402

from r1_recipe import evaluate as evaluation  # noqa: E402
from r1_recipe.configs import GRPOStageConfig, SFTStageConfig, parse_config  # noqa: E402
from r1_recipe.distill import DistillStageConfig  # noqa: E402
from r1_recipe.grpo import build_trainer  # noqa: E402
from r1_recipe.rewards import verify  # noqa: E402
from r1_recipe.rewards.exact import fast_verdict  # noqa: E402
from r1_recipe.sft import WeightedSFTTrainer, build_dataset  # noqa: E402
from r1_recipe.stage import load_model, load_tokenizer, use_end_of_turn_as_eos  # noqa: E402

logger = logging.getLogger("tiny_steps")


class Clock:
    """Wall and CPU seconds per named phase (nested phases are not subtracted from their parent)."""

    def __init__(self):
        self.wall = collections.defaultdict(float)
        self.cpu = collections.defaultdict(float)

    @contextlib.contextmanager
    def phase(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c

    def wrap(self, obj, method: str, name: str | None = None) -> None:
        """Time every call of ``obj.method`` (an instance attribute shadows the class's)."""
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            with self.phase(name or method):
                return inner(*args, **kwargs)

        setattr(obj, method, timed)


@contextlib.contextmanager
def optimizer_phase(clock: Clock):
    """Time every ``optimizer.step`` (global torch hooks, removed afterwards)."""
    started = {}

    def pre(*_):
        started["t"] = (time.perf_counter(), time.process_time())

    def post(*_):
        w, c = started.pop("t")
        clock.wall["optimizer"] += time.perf_counter() - w
        clock.cpu["optimizer"] += time.process_time() - c

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _fast_before_issue_18(self, pair):
    """``MathVerifier._fast`` as it was: a missing answer always went to math-verify."""
    if pair[0] is None or len(pair[0]) > verify.MAX_ANSWER_CHARS:
        return None
    verdict = fast_verdict(pair[0], pair[1])
    self.fast_decided += verdict is not None
    return None if verdict is None else float(verdict)


def fresh_verifiers() -> None:
    """Close the shared math-verify pools, so the next run starts from none (as a new process)."""
    for v in verify._VERIFIERS.values():
        v.close()
    verify._VERIFIERS.clear()


@contextlib.contextmanager
def old_verifier(old: bool):
    fresh_verifiers()
    saved = verify.MathVerifier._fast
    if old:
        verify.MathVerifier._fast = _fast_before_issue_18
    try:
        yield
    finally:
        verify.MathVerifier._fast = saved
        fresh_verifiers()


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the math-verify workers, once closed)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def report(title: str, clock: Clock, steps: int, total: str, phases: list[str]) -> dict:
    wall, cpu = clock.wall[total], clock.cpu[total]
    print(f"  {title}: {steps} steps, {wall / steps * 1e3:.0f} ms/step wall, {cpu / steps * 1e3:.0f} ms/step CPU")
    rest_w, rest_c = wall, cpu
    for name in phases:
        rest_w -= clock.wall[name]
        rest_c -= clock.cpu[name]
        wall_ms, cpu_ms = clock.wall[name] / steps * 1e3, clock.cpu[name] / steps * 1e3
        print(f"    {name:<12} {wall_ms:7.1f} ms wall {cpu_ms:7.1f} ms CPU")
    print(f"    {'rest':<12} {rest_w / steps * 1e3:7.1f} ms wall {rest_c / steps * 1e3:7.1f} ms CPU")
    return {"wall": wall / steps, "cpu": cpu / steps}


def sft(title: str, config, steps: int) -> None:
    """Time ``steps`` steps of an SFT-type stage and project its training time (``max_steps``)."""
    print(title)
    new_steps = config.max_steps
    config.max_steps, config.save_steps = steps, steps + 1  # the timed run; saving is timed below
    tokenizer = load_tokenizer(config)
    dataset = build_dataset(config)
    model = load_model(config)
    use_end_of_turn_as_eos(tokenizer, model, dataset)
    trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    clock = Clock()
    clock.wrap(trainer, "get_batch_samples", "data")
    clock.wrap(trainer, "compute_loss", "forward")
    clock.wrap(trainer.accelerator, "backward", "backward")
    with optimizer_phase(clock), clock.phase("train"):
        trainer.train()
    per_step = report("per step", clock, steps, "train", ["data", "forward", "backward", "optimizer"])
    model_share = (clock.cpu["forward"] + clock.cpu["backward"]) / clock.cpu["train"]
    print(f"    forward + backward: {model_share:.0%} of a step's CPU")
    with clock.phase("save"):
        trainer._save_checkpoint(trainer.model, trial=None)
    print(f"    one checkpoint: {clock.wall['save']:.2f} s wall, {clock.cpu['save']:.2f} s CPU")
    print(f"  {1 / per_step['cpu']:.2f} steps/s CPU; steps/s ratio old/new 1.00x (the same settings)")
    print(f"  the recipe's {new_steps} steps: {new_steps * per_step['cpu']:.0f} s CPU, "
          f"{new_steps * per_step['wall']:.0f} s wall at this machine's load")


def cold_start_config(run_dir: Path, out: Path) -> SFTStageConfig:
    return parse_config(SFTStageConfig, [
        "--config", "recipes/demo/stage1.yaml", "--model_name_or_path", str(run_dir / "base"),
        "--dataset_mixture", f"[{{path: {run_dir / 'data' / 'cold_start.jsonl'}}}]", "--output_dir", str(out / "sft"),
        "--resume", "false"])


def distill_config(run_dir: Path, out: Path) -> DistillStageConfig:
    return parse_config(DistillStageConfig, [
        "--config", "recipes/demo/distill.yaml", "--model_name_or_path", str(run_dir / "student_base"),
        "--teacher_model_name_or_path", str(run_dir / "rl2"),
        "--dataset_mixture", f"[{{path: {run_dir / 'rejection'}}}]", "--output_dir", str(out / "distill"),
        "--resume", "false"])


def grpo(run_dir: Path, steps: int, out: Path) -> None:
    print("GRPO (recipes/demo/rl1.yaml)")
    results = {}
    for label in ("warm-up", "new", "old"):  # the first run pays one-off costs (first generate, lazy imports)
        children = children_cpu()
        with old_verifier(label == "old"):
            config = parse_config(GRPOStageConfig, [
                "--config", "recipes/demo/rl1.yaml", "--model_name_or_path", str(run_dir / "stage1"),
                "--dataset_mixture", f"[{{path: {run_dir / 'data' / 'rl_prompts.jsonl'}}}]",
                "--output_dir", str(out / f"grpo_{label}"), "--resume", "false", "--max_steps", str(steps),
                "--save_steps", str(steps + 1), "--max_train_seconds", "null", "--aha_log_file", "null"])
            trainer = build_trainer(config)
            clock = Clock()
            clock.wrap(trainer, "_generate", "generate")
            clock.wrap(trainer, "_calculate_rewards", "rewards")
            clock.wrap(trainer, "_get_per_token_logps_and_entropies", "logprobs")
            clock.wrap(trainer.accelerator, "backward", "backward")
            with optimizer_phase(clock), clock.phase("train"):
                trainer.train()
            if label == "warm-up":
                continue
            results[label] = report(label, clock, steps, "train",
                                    ["generate", "rewards", "logprobs", "backward", "optimizer"])
        workers = children_cpu() - children  # the pool is closed (and reaped) on leaving old_verifier
        results[label]["cpu_all"] = results[label]["cpu"] + workers / steps
        print(f"    math-verify worker processes: {workers:.2f} s CPU in all")
    for kind in ("wall", "cpu", "cpu_all"):
        old, new = results["old"][kind], results["new"][kind]
        what = {"wall": "wall", "cpu": "CPU of this process", "cpu_all": "CPU with the worker processes"}[kind]
        print(f"  steps/s ratio new/old ({what}, first {steps} steps): {old / new:.2f}x")


def evaluation_speed(run_dir: Path, out: Path) -> None:
    print("Evaluation (recipes/demo/evaluate.yaml on base: 200 problems, greedy + 4 samples)")
    speed = {}
    for label in ("new", "old"):
        w, c = time.perf_counter(), time.process_time() + children_cpu()
        with old_verifier(label == "old"):
            config = parse_config(evaluation.EvalConfig, [
                "--config", "recipes/demo/evaluate.yaml", "--model_name_or_path", str(run_dir / "base"),
                "--output_dir", str(out / f"eval_{label}")])
            evaluation.evaluate_all(config)
        w, c = time.perf_counter() - w, time.process_time() + children_cpu() - c
        n = config.num_problems
        speed[label] = (n / w, n / c)
        print(f"  {label}: {n / w:.1f} problems/s wall, {n / c:.1f} problems/s CPU (worker processes included)")
    print(f"  problems/s ratio new/old: wall {speed['new'][0] / speed['old'][0]:.2f}x, "
          f"CPU {speed['new'][1] / speed['old'][1]:.2f}x (evaluation scores a missing answer without the verifier)")
    print("Evaluation on stage1 by generate batch size (information: evaluate.yaml keeps the default 256)")
    for batch_size in (256, 1024):
        config = parse_config(evaluation.EvalConfig, [
            "--config", "recipes/demo/evaluate.yaml", "--model_name_or_path", str(run_dir / "stage1"),
            "--output_dir", str(out / f"eval_bs{batch_size}"), "--batch_size", str(batch_size)])
        w, c = time.perf_counter(), time.process_time()
        evaluation.evaluate_all(config)
        w, c = time.perf_counter() - w, time.process_time() - c
        print(f"  batch_size {batch_size}: {config.num_problems / w:.1f} problems/s wall, "
              f"{config.num_problems / c:.1f} problems/s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default="runs/demo")
    parser.add_argument("--sft_steps", type=int, default=40)
    parser.add_argument("--grpo_steps", type=int, default=8, help="a multiple of steps_per_generation (4)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sft", "distill", "grpo", "eval"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if "sft" not in args.skip:
            sft("SFT: the cold start (recipes/demo/stage1.yaml)", cold_start_config(run_dir, Path(tmp)),
                args.sft_steps)
        if "distill" not in args.skip:
            sft("SFT: sequence-level distillation (recipes/demo/distill.yaml)", distill_config(run_dir, Path(tmp)),
                args.sft_steps)
        if "grpo" not in args.skip:
            grpo(run_dir, args.grpo_steps, Path(tmp))
        if "eval" not in args.skip:
            evaluation_speed(run_dir, Path(tmp))


if __name__ == "__main__":
    main()
