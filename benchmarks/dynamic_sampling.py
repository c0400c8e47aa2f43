"""Claim: the demo's RL stage 1 with dynamic sampling (``dynamic_sampling: true``) against without,
same seed, same number of optimizer steps: held-out pass@1, the share of zero-spread groups over
training, generation batches per step, wall time, and the gain per optimizer step and per minute.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/dynamic_sampling.py [--seeds 0 1] [--demo runs/demo]

From an existing cold start ``<demo>/stage1`` (``make demo``, or ``make stage1
RECIPE=recipes/demo/stage1.yaml`` after ``r1-recipe data --output runs/demo/data``), each (arm, seed)
trains recipes/demo/rl1.yaml in its own process into ``<demo>/rl1_ds_<arm>_s<seed>`` with the
recipe's time budget lifted (``max_train_seconds 86400``: both arms run all ``max_steps``), then is
evaluated with recipes/demo/evaluate.yaml (200 held-out arithmetic problems, pass@1 over 4
samples at T=0.7, with its standard error); the cold start is evaluated the same way. A trained
model or an evaluation already in place is not redone, so an interrupted benchmark resumes.
Writes ``benchmarks/dynamic_sampling.json`` and prints the table and the wall-time ratio
(dynamic / plain): time it on a quiet machine, one run at a time (``--parallel 1``, the default).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from demo_runs import EVAL, ROOT, run_module  # benchmarks/ is the script's folder

# DAPO's rule: a group is informative when its verifier rewards differ (the demo's small format and
# language rewards nearly always differ a little, so by the weighted total no group is ever dropped)
ARMS = {"plain": ["--dynamic_sampling", "false"],
        "dynamic": ["--dynamic_sampling", "true", "--dynamic_sampling_rewards", "[accuracy, code]"]}




def evaluate(model: Path) -> dict:
    summary = model / "eval_arithmetic.json"
    if not summary.exists():
        run_module(["r1_recipe.evaluate", "--config", str(EVAL), "--benchmark", "arithmetic",
              "--model_name_or_path", str(model), "--output_dir", str(model)], model / "eval.log")
    return json.loads(summary.read_text())


def train(arm: str, seed: int, demo: Path) -> Path:
    out = demo / f"rl1_ds_{arm}_s{seed}"
    if (out / "model.safetensors").exists():  # trained already (an interrupted benchmark resumes)
        return out
    out.mkdir(parents=True, exist_ok=True)
    mixture = [{"path": str(demo / "data/rl_prompts.jsonl"), "weight": 4},
               {"path": str(demo / "data/code_prompts.jsonl"), "weight": 1}]
    run_module(["r1_recipe.grpo", "--config", "recipes/demo/rl1.yaml", "--seed", str(seed), *ARMS[arm],
          "--max_train_seconds", "86400", "--model_name_or_path", str(demo / "stage1"),
          "--dataset_mixture", json.dumps(mixture), "--output_dir", str(out)], out / "train.log")
    return out


def row(arm: str, seed: int, demo: Path, base: dict) -> dict:
    out = train(arm, seed, demo)
    result = evaluate(out)
    trained = json.loads((out / "results.json").read_text())
    over = trained.get("mean_over_training", {})
    gain = 100 * (result["pass@1"] - base["pass@1"])
    steps, seconds = trained["global_step"], trained["train_seconds"]
    return {"arm": arm, "seed": seed, "steps": steps, "train_seconds": seconds,
            "pass@1": result["pass@1"], "pass@1_stderr": result["pass@1_stderr"], "gain_points": gain,
            "gain_per_step": gain / steps, "gain_per_minute": gain / (seconds / 60),
            "zero_spread_share": over.get("dynamic_sampling/dropped_share", over.get("frac_reward_zero_std")),
            "generation_batches_per_step": over.get("dynamic_sampling/generation_batches", 1.0),
            "health": {k: v for k, v in over.items() if k.startswith("health/")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="runs/demo", help="folder holding stage1/ and data/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (wall times then mean little)")
    parser.add_argument("--out", default="benchmarks/dynamic_sampling.json")
    args = parser.parse_args()
    demo = (ROOT / args.demo).resolve()
    if not (demo / "stage1" / "config.json").exists():
        sys.exit(f"{demo / 'stage1'}: no cold-start model; run `make demo` (or its stage1) first")
    base = evaluate(demo / "stage1")
    jobs = [(arm, seed) for seed in args.seeds for arm in ARMS]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: row(*job, demo, base), jobs))
    plain = [r for r in rows if r["arm"] == "plain"]
    dynamic = [r for r in rows if r["arm"] == "dynamic"]
    ratio = sum(r["train_seconds"] for r in dynamic) / sum(r["train_seconds"] for r in plain)
    Path(args.out).write_text(json.dumps({"cold_start": {k: base[k] for k in ("pass@1", "pass@1_stderr")},
                                          "parallel": args.parallel, "wall_time_ratio": ratio, "runs": rows},
                                         indent=2) + "\n")
    # zero-spread share: plain = TRL's frac_reward_zero_std (by the weighted total it trains on);
    # dynamic = dropped_share (by accuracy/code, the groups it dropped)
    print(f"| run | seed | steps | pass@1 (k=4, T=0.7) | gain | gain/step | gain/min | zero-spread share "
          f"| generation batches per generation |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| cold start | - | - | {100 * base['pass@1']:.1f} ± {100 * base['pass@1_stderr']:.1f} | - | - | - | - | - |")
    for r in rows:
        print(f"| {r['arm']} | {r['seed']} | {r['steps']} | {100 * r['pass@1']:.1f} ± {100 * r['pass@1_stderr']:.1f} "
              f"| {r['gain_points']:+.1f} | {r['gain_per_step']:+.3f} | {r['gain_per_minute']:+.2f} "
              f"| {r['zero_spread_share']:.2f} | {r['generation_batches_per_step']:.2f} |")
    print(f"wall-time ratio dynamic / plain (training only, {args.parallel} run(s) at a time): {ratio:.2f}x")


if __name__ == "__main__":
    main()
