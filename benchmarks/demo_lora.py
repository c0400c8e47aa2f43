"""Claim: the demo's RL stage 1 with LoRA (recipes/demo/rl1_lora.yaml) gains >= 8 points of
sampled pass@1 over the cold start on 2 seeds, beside the full fine-tune (recipes/demo/rl1.yaml).

    make demo-lora        # = PYTHONPATH=src python benchmarks/demo_lora.py [--seeds 0 1] [--demo runs/demo]

From an existing cold start ``<demo>/stage1`` (``make demo``, or
``make stage1 RECIPE=recipes/demo/stage1.yaml`` after ``r1-recipe data --output runs/demo/data``),
each (recipe, seed) trains in its own process into ``<demo>/<recipe>_s<seed>`` and is evaluated
with recipes/demo/evaluate.yaml (200 held-out problems, pass@1 over 4 samples at T=0.7, with its
standard error over problems); the cold start is evaluated the same way. A trained model or an
evaluation already in place is not redone, so an interrupted benchmark resumes. Writes
``benchmarks/demo_lora.json`` and prints the README's table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demo_runs import EVAL, ROOT, run_module  # benchmarks/ is the script's folder

RECIPES = {"LoRA r=16": "rl1_lora", "full fine-tune": "rl1"}




def evaluate(model: Path) -> dict:
    summary = model / "eval_arithmetic.json"
    if not summary.exists():
        run_module(["r1_recipe.evaluate", "--config", str(EVAL), "--model_name_or_path", str(model),
              "--output_dir", str(model)], model / "eval.log")
    return json.loads(summary.read_text())


def train(recipe: str, seed: int, demo: Path) -> tuple[Path, float | None]:
    out = demo / f"{recipe}_s{seed}"
    if (out / "model.safetensors").exists():  # trained already (an interrupted benchmark resumes)
        results = out / "results.json"
        return out, json.loads(results.read_text()).get("train_seconds") if results.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    seconds = run_module(["r1_recipe.grpo", "--config", f"recipes/demo/{recipe}.yaml", "--seed", str(seed),
                    "--model_name_or_path", str(demo / "stage1"), "--dataset_mixture",
                    json.dumps([{"path": str(demo / "data/rl_prompts.jsonl")}]), "--output_dir", str(out)],
                   out / "train.log")
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="runs/demo", help="folder holding stage1/ and data/rl_prompts.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES.values()), choices=list(RECIPES.values()))
    parser.add_argument("--out", default="benchmarks/demo_lora.json")
    args = parser.parse_args()
    demo = (ROOT / args.demo).resolve()
    if not (demo / "stage1" / "config.json").exists():
        sys.exit(f"{demo / 'stage1'}: no cold-start model; run `make demo` (or its stage1) first")
    base = evaluate(demo / "stage1")
    rows = []
    for name, recipe in RECIPES.items():
        if recipe not in args.recipes:
            continue
        for seed in args.seeds:
            out, seconds = train(recipe, seed, demo)
            result = evaluate(out)
            trained = json.loads((out / "results.json").read_text())
            steps = trained["global_step"]
            rows.append({"run": name, "recipe": f"recipes/demo/{recipe}.yaml", "seed": seed, "steps": steps,
                         "stopped_by_time_budget": trained.get("stopped_by_time_budget"),
                         "train_seconds": seconds or trained.get("train_seconds"), "pass@1": result["pass@1"],
                         "pass@1_stderr": result["pass@1_stderr"], "greedy": result.get("greedy_accuracy"),
                         "gain_points": 100 * (result["pass@1"] - base["pass@1"])})
    Path(args.out).write_text(json.dumps({"cold_start": {k: base[k] for k in ("pass@1", "pass@1_stderr")},
                                          "runs": rows}, indent=2) + "\n")
    print(f"| run | seed | steps | pass@1 (k=4, T=0.7) | gain over cold start |\n|---|---|---|---|---|\n"
          f"| cold start | - | - | {100 * base['pass@1']:.1f} ± {100 * base['pass@1_stderr']:.1f} | - |")
    for r in rows:
        print(f"| {r['run']} | {r['seed']} | {r['steps']} | {100 * r['pass@1']:.1f} ± {100 * r['pass@1_stderr']:.1f} "
              f"| {r['gain_points']:+.1f} |")


if __name__ == "__main__":
    main()
