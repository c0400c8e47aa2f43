"""The Python half of ``benchmarks/gpu_check.sh`` (the GPU path, end to end, on one lent GPU node).

    python benchmarks/gpu_check.py needs                # which required modules this Python lacks, by name
    python benchmarks/gpu_check.py prepare WORK         # model, reward model, data, recipes (no network)
    python benchmarks/gpu_check.py verify WORK/RUN      # in a fresh process: the folder loads, weights trained
    python benchmarks/gpu_check.py table WORK           # steps/s and peak GPU memory per configuration

The policy is a random-init model with Qwen2.5-0.5B's architecture (24 layers, hidden 896, 14
attention heads, 2 key/value heads, 151,936-row tied embeddings: the published config.json's
values, written here because the Hub is out of reach) and the tiny local tokenizer of
:mod:`r1_recipe.tiny` (its ids are a subset of the embedding rows). The RL-stage-2 reward model
is a one-output classifier of a 2-layer model of the same width. Random weights generate
noise; the check is that every launcher config trains, saves and reloads, not what is learnt.

"Trains" means the saved weights moved as far as the learning rate says they should: an AdamW
step moves each weight by about ``learning_rate``, so over the run's steps a weight moves by
about ``learning_rate * steps`` and its saved value differs from the base's wherever that is at
least half the saved dtype's spacing there (:func:`update_check`). 16-bit weights updated without
an fp32 master copy (plain DDP on bf16 weights) round most steps away: a few tensors still change,
so "some tensor changed" passes, but the share of moved weights falls far below the expected one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

try:
    import torch
    import yaml
except ImportError:  # `needs` then names every missing package; the other commands need both
    torch = yaml = None

QWEN25_05B = dict(  # Qwen/Qwen2.5-0.5B config.json
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, hidden_act="silu", sliding_window=None, use_sliding_window=False,
)
CONFIGS = ("ddp", "zero2", "zero3", "fsdp")
# module -> what provides it; the machine's own Python must have these (or get them from carried wheels)
NEEDS = {"torch": "torch", "transformers": "transformers", "accelerate": "accelerate", "peft": "peft",
         "trl": "trl", "datasets": "datasets", "yaml": "pyyaml", "math_verify": "math-verify",
         "safetensors": "safetensors"}
NEEDS_FOR = {"zero2": {"deepspeed": "deepspeed"}, "zero3": {"deepspeed": "deepspeed"}}
MOVED_SHARE_FLOOR = 0.5  # of the expected share; bf16 without a master copy measures ~0.3-0.4 (lr 1e-5, 1e-6)


def missing_modules(configs: list[str]) -> list[str]:
    """The packages this Python lacks for the given launcher configs, by name."""
    import importlib.util

    needs = dict(NEEDS)
    for config in configs:
        needs.update(NEEDS_FOR.get(config, {}))
    return [package for module, package in needs.items() if importlib.util.find_spec(module) is None]


def needs(configs: list[str]) -> None:
    missing = missing_modules(configs)
    if missing:
        sys.exit(f"gpu_check: {sys.executable} lacks {', '.join(missing)}: install them, or put their wheels in "
                 "WHEELS=folder (installed with pip --no-index --find-links)")


def prepare(work: Path) -> None:
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForSequenceClassification

    from r1_recipe.data import arithmetic
    from r1_recipe.data.loading import write_jsonl
    from r1_recipe.tiny import build_tokenizer

    work.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    base, rm = work / "base", work / "rm"
    torch.manual_seed(0)
    config = Qwen2Config(**QWEN25_05B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    rm_config = Qwen2Config(**{**QWEN25_05B, "num_hidden_layers": 2}, num_labels=1,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    Qwen2ForSequenceClassification(rm_config).to(torch.bfloat16).save_pretrained(rm)
    tokenizer.save_pretrained(rm)
    write_jsonl(arithmetic.generate(400, seed=0), work / "cold_start.jsonl")
    write_jsonl(arithmetic.generate(200, seed=1), work / "prompts.jsonl")
    common = {"model_name_or_path": str(base), "report_to": "none", "logging_steps": 1, "save_strategy": "no",
              "seed": 0, "dataloader_num_workers": 0, "bf16": True, "resume": False}
    sft = {**common, "dataset_mixture": [{"path": str(work / "cold_start.jsonl")}], "max_steps": 4,
           "per_device_train_batch_size": 4, "max_length": 256, "learning_rate": 1e-4}
    grpo = {**common, "dataset_mixture": [{"path": str(work / "prompts.jsonl")}], "max_steps": 2,
            "num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 32,
            "learning_rate": 1e-5, "reward_funcs": ["format", "reward_model"], "use_vllm": False,
            "reward_kwargs": {"reward_model": {"model": str(rm), "on": "full"}}}
    (work / "sft.yaml").write_text(yaml.safe_dump(sft))
    (work / "grpo.yaml").write_text(yaml.safe_dump(grpo))
    print(json.dumps({"base": str(base), "reward_model": str(rm), "parameters": sum(
        p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())}))


def verify(run: Path) -> None:
    """Load the stage's folder as the next stage would; the weights must differ from the base's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results = json.loads((run / "results.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(run)
    AutoTokenizer.from_pretrained(run)
    base = AutoModelForCausalLM.from_pretrained(results["model_name_or_path"])
    n, n_base = (sum(p.numel() for p in m.parameters()) for m in (model, base))
    if n != n_base:
        sys.exit(f"{run}: {n} parameters, the base has {n_base}")
    changed = sum(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    if not changed:
        sys.exit(f"{run}: the saved weights equal the base's: nothing trained, or the save wrote the base")
    config = yaml.safe_load((run / "resolved_config.yaml").read_text()) if (run / "resolved_config.yaml").exists() else {}
    lr, steps = config.get("learning_rate"), results["global_step"]
    moved, expected = update_check(_weights(run), _weights(Path(results["model_name_or_path"])), lr, steps) \
        if lr and steps else (None, None)
    if moved is not None and expected and moved < MOVED_SHARE_FLOOR * expected:
        sys.exit(f"{run}: only {moved:.1%} of the block weights moved, where {steps} AdamW steps at learning rate "
                 f"{lr:g} move {expected:.1%} of them in the saved dtype: updates were rounded away (16-bit "
                 "weights trained without an fp32 master copy?)")
    extra = f", {moved:.1%} of block weights moved, {expected:.1%} expected" if moved is not None else ""
    print(f"{run}: loads ({n} parameters, {changed} tensors changed{extra}, step {steps})")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def spacing(w: torch.Tensor) -> torch.Tensor:
    """The gap between ``w`` and the next representable value of its dtype (float32 result).

    >>> spacing(torch.tensor([1.0, 0.02], dtype=torch.bfloat16)).tolist()
    [0.0078125, 0.0001220703125]
    """
    finfo = torch.finfo(w.dtype)
    exponent = torch.floor(torch.log2(w.float().abs().clamp_min(finfo.tiny)))
    return finfo.eps * torch.pow(2.0, exponent)


def update_check(saved: dict, base: dict, lr: float, steps: int) -> tuple[float, float]:
    """(share of the decoder blocks' weight-matrix elements whose saved value differs from the base's,
    share expected to: AdamW moves each by ~``lr`` a step, visible where ``lr * steps`` reaches half
    the saved dtype's spacing at that weight)."""
    moved = expected = total = 0.0
    for name, after in saved.items():
        before = base.get(name)
        if before is None or after.dim() != 2 or ".layers." not in f".{name}" or after.shape != before.shape:
            continue
        before_as_saved = before.to(after.dtype)
        moved += (after != before_as_saved).sum().item()
        expected += (lr * steps / spacing(before_as_saved)).clamp(max=1.0).sum().item()
        total += after.numel()
    return (moved / total, expected / total) if total else (None, None)


def _steps_per_second(run: Path, results: dict) -> float | None:
    state = run / "trainer_state.json"
    if state.exists():
        for entry in reversed(json.loads(state.read_text()).get("log_history", [])):
            if "train_steps_per_second" in entry:
                return entry["train_steps_per_second"]
    seconds = results.get("train_seconds") or results.get("wall_seconds")
    return results["global_step"] / seconds if seconds else None


def _reward_model_std(run: Path) -> float | None:
    state = run / "trainer_state.json"
    if not state.exists():
        return None
    stds = [e["rewards/reward_model/std"] for e in json.loads(state.read_text()).get("log_history", [])
            if "rewards/reward_model/std" in e]
    return max(stds) if stds else None


def table(work: Path) -> None:
    rows = ["| stage | config | status | steps | steps/s | peak GPU GiB | reward model std |",
            "|---|---|---|---|---|---|---|"]
    for stage in ("sft", "grpo"):
        for config in CONFIGS:
            run = work / f"{stage}-{config}"
            status = (run / "STATUS").read_text().strip() if (run / "STATUS").exists() else "not run"
            if not (run / "results.json").exists():
                rows.append(f"| {stage} | {config} | {status} | | | | |")
                continue
            r = json.loads((run / "results.json").read_text())
            sps = _steps_per_second(run, r)
            std = _reward_model_std(run) if stage == "grpo" else None
            rows.append(f"| {stage} | {config} | {status} | {r['global_step']} | "
                        f"{'' if sps is None else f'{sps:.2f}'} | {r.get('peak_gpu_memory_gib') or ''} | "
                        f"{'' if std is None else f'{std:.4f}'} |")
    print("\n".join(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["needs", "prepare", "verify", "table"])
    p.add_argument("path", nargs="?", help="WORK or WORK/RUN; for needs: the launcher configs, e.g. 'ddp zero3'")
    a = p.parse_args()
    if a.command == "needs":
        return needs((a.path or " ".join(CONFIGS)).split())
    {"prepare": prepare, "verify": verify, "table": table}[a.command](Path(a.path))


if __name__ == "__main__":
    main()
