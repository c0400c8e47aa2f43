"""Claim: LoRA trains a small share of the weights and needs less training memory than full
fine-tuning, for one SFT step and one GRPO step on a >= 100 M-parameter model.

    PYTHONPATH=src python benchmarks/lora_memory.py [--model FOLDER] [--out benchmarks/lora_memory.json]

The model defaults to the asset cache's SmolLM2-135M-Instruct (real weights, the Llama
architecture, 135 M parameters; `make assets`). Each of the four runs (SFT / GRPO x full / LoRA)
is a fresh process that runs the stage itself (``r1_recipe.sft.train`` / ``r1_recipe.grpo.train``,
one optimizer step, same data, batch and lengths), so its peak memory is its own. On CPU: the
peak RSS during ``trainer.train()`` (``VmHWM``, reset just before it) and its increase over the
RSS before it (the loaded model, libraries): the gradients, AdamW states and activations, plus
the final save; the whole process's peak (``ru_maxrss``, model loading included) is kept too.
With CUDA: ``torch.cuda.max_memory_allocated``. The parameter counts are the trainer's
``requires_grad`` parameters. With a random-ish policy GRPO's rewards may all tie (zero
advantages): the backward and the optimizer step run all the same. LoRA: r=16 on every attention/MLP linear layer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0}


def _recipe(stage: str, model: str, data: Path, out: Path, lora: bool) -> dict:
    common = {"model_name_or_path": model, "output_dir": str(out), "max_steps": 1, "logging_steps": 1,
              "save_strategy": "no", "report_to": "none", "seed": 0, "learning_rate": 1e-4,
              "dataloader_num_workers": 0, **(LORA if lora else {})}
    if stage == "sft":
        return {**common, "dataset_mixture": [{"path": str(data / "sft.jsonl")}], "per_device_train_batch_size": 4,
                "max_length": 256}
    return {**common, "dataset_mixture": [{"path": str(data / "rl.jsonl")}], "reward_funcs": ["accuracy", "format"],
            "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 64}


def _status_mib(field: str) -> float:
    line = next(li for li in Path("/proc/self/status").read_text().splitlines() if li.startswith(field + ":"))
    return round(int(line.split()[1]) / 1024, 1)


def child(stage: str, recipe_path: str) -> dict:
    """One stage run in this process; its trainable parameters and peak memory."""
    import torch
    import yaml

    from r1_recipe import grpo, sft
    from r1_recipe.configs import GRPOStageConfig, SFTStageConfig, parse_config

    seen = {}
    module, cls, trainer_cls = (sft, SFTStageConfig, sft.WeightedSFTTrainer) if stage == "sft" else (
        grpo, GRPOStageConfig, grpo.AhaGRPOTrainer)
    original = trainer_cls.train

    def train(self, *a, **kw):
        seen["trainable"] = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        seen["total"] = sum(p.numel() for p in self.model.parameters())
        seen["rss_before_train_mib"] = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak from here on is training's
        out = original(self, *a, **kw)
        seen["peak_train_rss_mib"] = _status_mib("VmHWM")
        seen["train_rss_increase_mib"] = round(seen["peak_train_rss_mib"] - seen["rss_before_train_mib"], 1)
        return out

    trainer_cls.train = train
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    module.train(parse_config(cls, ["--config", recipe_path]))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    out = {**seen, "peak_process_rss_mib": round(peak_kib / 1024, 1), "recipe": yaml.safe_load(Path(recipe_path).read_text())}
    if torch.cuda.is_available():
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    from r1_recipe.assets import asset_dir
    from r1_recipe.data import arithmetic
    from r1_recipe.data.loading import write_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the smollm2-135m-instruct asset)")
    parser.add_argument("--out", default="benchmarks/lora_memory.json")
    args = parser.parse_args()
    model = args.model or asset_dir("smollm2-135m-instruct")
    if model is None:
        sys.exit("no model: run `make assets` (smollm2-135m-instruct) or pass --model FOLDER")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_jsonl(arithmetic.generate(64, seed=0), tmp / "sft.jsonl")
        write_jsonl(arithmetic.generate(16, seed=1), tmp / "rl.jsonl")
        for stage in ("sft", "grpo"):
            for lora in (False, True):
                import yaml

                path = tmp / f"{stage}_{'lora' if lora else 'full'}.yaml"
                path.write_text(yaml.safe_dump(_recipe(stage, str(model), tmp, tmp / path.stem, lora)))
                result = tmp / f"{path.stem}.json"
                code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import lora_memory as m; "
                        f"json.dump(m.child({stage!r}, {str(path)!r}), open({str(result)!r}, 'w'))")
                subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
                row = json.loads(result.read_text())
                rows.append({"stage": stage, "mode": "lora" if lora else "full", **{k: v for k, v in row.items()
                                                                                    if k != "recipe"}})
                print(json.dumps(rows[-1]), flush=True)
    report = {"model": str(model), "lora": LORA, "runs": rows, "ratios": {}}
    keys = ["peak_cuda_mib"] if "peak_cuda_mib" in rows[0] else ["peak_train_rss_mib", "train_rss_increase_mib"]
    for stage in ("sft", "grpo"):
        full, lora = (next(r for r in rows if r["stage"] == stage and r["mode"] == m) for m in ("full", "lora"))
        report["ratios"][stage] = {"trainable_params_lora_over_full": round(lora["trainable"] / full["trainable"], 4),
                                   **{f"{k}_lora_over_full": round(lora[k] / full[k], 3) for k in keys}}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["ratios"], indent=2))


if __name__ == "__main__":
    main()
