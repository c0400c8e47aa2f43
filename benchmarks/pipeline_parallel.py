"""Claim: running the pipeline as a graph (max_parallel 2) beats one step at a time on 2 cores.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pipeline_parallel.py [--steps 60] [--keep DIR]

The same small pipeline twice in this one run, each in a fresh run folder: serial
(``--max-parallel 1``) and graph-parallel (``--max-parallel 2``). Its graph has the demo's
shape in small: the tiny base model and the data side by side, a cold-start SFT with its
evaluation, a second SFT from the base beside it (the demo's reward models), and a stage-2 SFT from
the cold start that runs beside the cold start's evaluation. Stage recipes are the demo's, shrunk
with ``set:`` (``--steps`` SFT steps, batch 16; 50 held-out problems x 2 samples). Every step
keeps one BLAS thread (``OMP_NUM_THREADS=1``, as in the demo), so two side by side fit 2 cores.
Wall times come from each run's own ``timing.json``. On a box other jobs keep busy, two steps side
by side each run at half speed and the measured ratio says little, so the script also replays the
serial run's step times through the scheduler with two slots: the idle-box figure (replayed with one
slot it gives back the serial wall time).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml  # noqa: E402

from r1_recipe.pipeline import check_steps, load_pipeline, run  # noqa: E402
from r1_recipe.pipeline_graph import critical_first, read_timing  # noqa: E402
from r1_recipe.report import timing_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_pipeline(folder: Path, run_dir: Path, steps: int) -> Path:
    evaluation = yaml.safe_load((ROOT / "recipes/demo/evaluate.yaml").read_text())
    evaluation.update(num_problems=50, num_samples=2)
    (folder / "evaluate.yaml").write_text(yaml.safe_dump(evaluation))
    sft = str(ROOT / "recipes/demo/stage1.yaml")
    shrink = {"max_steps": steps, "per_device_train_batch_size": 16, "warmup_steps": 5, "logging_steps": 10,
              "save_steps": 1000, "dataset_mixture": [{"path": "{data}/cold_start.jsonl"}]}
    path = folder / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": run_dir.name, "run_dir": str(run_dir), "evaluation": str(folder / "evaluate.yaml"),
        "env": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
        "steps": [
            {"name": "base", "tool": "tiny"},
            {"name": "data", "tool": "data", "args": ["--cold-start", "1000", "--rl-prompts", "10", "--general", "10",
                                                      "--test", "50", "--pretrain", "0", "--pairs", "0"]},
            {"name": "stage1", "stage": "sft", "recipe": sft, "from": "base", "set": shrink, "evaluate": True},
            {"name": "side", "stage": "sft", "recipe": sft, "from": "base", "set": {**shrink, "seed": 1}},
            {"name": "stage2", "stage": "sft", "recipe": sft, "from": "stage1",
             "set": {**shrink, "max_steps": steps // 2}, "evaluate": True},
        ]}))
    return path


def wall(run_dir: Path) -> float:
    (invocation,) = read_timing(run_dir)["invocations"]
    return invocation["finished"] - invocation["started"]


def replay(run_dir: Path, waits: dict[str, set[str]], width: int) -> float:
    """The wall time the scheduler would take with ``width`` slots if every node took as long as it did
    in ``run_dir`` (the serial run): what graph-parallel gives on an otherwise idle box, where two
    one-thread steps side by side do not slow each other down."""
    cost = {n: e["attempts"][-1]["finished"] - e["attempts"][-1]["started"] for n, e in read_timing(run_dir)["nodes"].items()}
    order, clock, finished, running = critical_first(list(cost), waits), 0.0, {}, {}
    while len(finished) < len(cost):
        for node in order:
            if node not in finished and node not in running and len(running) < width and \
                    all(finished.get(d, float("inf")) <= clock for d in waits.get(node, ())):
                running[node] = clock + cost[node]
        clock = min(running.values())
        finished.update({n: t for n, t in running.items() if t <= clock})
        running = {n: t for n, t in running.items() if t > clock}
    return clock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60, help="SFT steps of the cold start and the side branch")
    p.add_argument("--keep", help="keep the run folders here (default: a temporary folder, removed)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="pipeline_parallel_"))
    folder.mkdir(parents=True, exist_ok=True)
    times = {}
    try:
        for width in (1, 2):
            run_dir = folder / f"max_parallel_{width}"
            shutil.rmtree(run_dir, ignore_errors=True)
            pipeline = load_pipeline(write_pipeline(folder, run_dir, a.steps))
            check_steps(pipeline)
            run(pipeline, parallel=width)
            times[width] = wall(run_dir)
            if width == 1:
                idle = replay(run_dir, pipeline.waits, 2)
            print(f"\nmax_parallel {width}:\n{timing_table(run_dir)}\n", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"serial (max_parallel 1):         {times[1]:7.1f} s")
    print(f"graph-parallel (max_parallel 2): {times[2]:7.1f} s")
    print(f"ratio serial / parallel:         {times[1] / times[2]:7.2f}x  ({os.cpu_count()} cores)")
    print(f"on an idle box (the serial run's step times replayed through the graph, 2 at once): "
          f"{idle:.1f} s, {times[1] / idle:.2f}x")


if __name__ == "__main__":
    main()
