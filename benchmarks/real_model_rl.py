"""Claim (measured, not assumed): what R1-Zero-style GRPO does to a real pretrained model on a
laptop's 2 CPU cores: SmolLM2-135M-Instruct on two-digit arithmetic, sampled pass@1 on 200
held-out problems before and after ~25 minutes of training, with standard errors and s/step.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/real_model_rl.py [--out runs/smollm2]

Steps, each a fresh process: (1) write ``<out>/data/rl_prompts.jsonl``, the generated training
slice with recipes/SmolLM2-135M/evaluate.yaml's instruction appended as the evaluator appends it;
(2) evaluate the released model (``<out>/base``); (3) GRPO with recipes/SmolLM2-135M/zero.yaml
into ``<out>/zero``; (4) evaluate that. A step whose output exists is not redone. The 1-minute
load average is sampled every 30 s during training (the box may be shared) and reported beside
s/step. Writes ``<out>/real_model_rl.json`` and prints the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from r1_recipe.assets import asset_dir  # noqa: E402
from r1_recipe.data import arithmetic  # noqa: E402
from r1_recipe.data.loading import write_jsonl  # noqa: E402

EVAL = ROOT / "recipes/SmolLM2-135M/evaluate.yaml"
ZERO = ROOT / "recipes/SmolLM2-135M/zero.yaml"


def _run(argv: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        code = subprocess.call([sys.executable, "-m", *argv], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if code:
        sys.exit(f"{' '.join(argv)} failed (exit {code}); see {log}")


def evaluate(model: Path, out: Path) -> dict:
    summary = out / "eval_arithmetic.json"
    if not summary.exists():
        _run(["r1_recipe.evaluate", "--config", str(EVAL), "--model_name_or_path", str(model),
              "--output_dir", str(out)], out / "eval.log")
    return json.loads(summary.read_text())


def write_prompts(path: Path, n: int) -> None:
    instruction = yaml.safe_load(EVAL.read_text())["instruction"]
    write_jsonl(arithmetic.prompts_with_instruction(n, instruction, seed=0), path)


def train(model: Path, out: Path, prompts: Path, extra: list[str]) -> list[float]:
    """GRPO into ``out``; the load averages sampled while it ran."""
    loads, done = [], threading.Event()

    def sample():
        while not done.wait(30):
            loads.append(os.getloadavg()[0])

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        _run(["r1_recipe.grpo", "--config", str(ZERO), "--model_name_or_path", str(model), "--output_dir", str(out),
              "--dataset_mixture", json.dumps([{"path": str(prompts)}]), *extra], out / "train.log")
    finally:
        done.set()
    (out / "load_average.json").write_text(json.dumps(loads) + "\n")
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the smollm2-135m-instruct asset)")
    parser.add_argument("--out", default="runs/smollm2")
    parser.add_argument("--train_args", nargs=argparse.REMAINDER, default=[],
                        help="extra GRPO overrides, e.g. --train_args --max_train_seconds 300")
    args = parser.parse_args()
    model = Path(args.model) if args.model else asset_dir("smollm2-135m-instruct")
    if model is None or not (model / "config.json").exists():
        sys.exit("SmolLM2-135M-Instruct is not in the asset cache: run `make assets` (or pass --model FOLDER)")
    out = (ROOT / args.out).resolve()
    prompts = out / "data/rl_prompts.jsonl"
    if not prompts.exists():
        write_prompts(prompts, 4000)
    before = evaluate(model, out / "base")
    zero = out / "zero"
    if not (zero / "model.safetensors").exists():
        train(model, zero, prompts, args.train_args)
    after = evaluate(zero, zero)
    trained = json.loads((zero / "results.json").read_text())
    steps, seconds = trained["global_step"], trained.get("train_seconds")
    loads = json.loads((zero / "load_average.json").read_text()) if (zero / "load_average.json").exists() else []
    result = {"model": str(model), "steps": steps, "train_seconds": seconds,
              "stopped_by_time_budget": trained.get("stopped_by_time_budget"),
              "seconds_per_step": seconds / steps if seconds and steps else None,
              "load_average_1min": {"min": min(loads), "mean": sum(loads) / len(loads), "max": max(loads)} if loads else None,
              "before": {k: before[k] for k in ("pass@1", "pass@1_stderr", "answered", "truncated_share")},
              "after": {k: after[k] for k in ("pass@1", "pass@1_stderr", "answered", "truncated_share")},
              "gain_points": 100 * (after["pass@1"] - before["pass@1"])}
    (out / "real_model_rl.json").write_text(json.dumps(result, indent=2) + "\n")
    load = result["load_average_1min"]
    print("| model | pass@1 (k=4, T=0.7, 200 held-out) | answered | steps | s/step | load (1-min avg) |\n|---|---|---|---|---|---|")
    print(f"| SmolLM2-135M-Instruct | {100 * before['pass@1']:.1f} ± {100 * before['pass@1_stderr']:.1f} "
          f"| {100 * before['answered']:.0f}% | - | - | - |")
    sps = f"{result['seconds_per_step']:.0f}" if result["seconds_per_step"] else "?"
    load_text = f"{load['mean']:.1f} ({load['min']:.1f}-{load['max']:.1f})" if load else "?"
    print(f"| + GRPO (recipes/SmolLM2-135M/zero.yaml) | {100 * after['pass@1']:.1f} ± {100 * after['pass@1_stderr']:.1f} "
          f"| {100 * after['answered']:.0f}% | {steps} | {sps} | {load_text} |")


if __name__ == "__main__":
    main()
