"""The whole R1 pipeline from one recipe: stages as a graph of output folders, with lineage and resume.

    make pipeline RECIPE=recipes/demo/pipeline.yaml
    r1-recipe pipeline --config recipes/demo/pipeline.yaml          # run (skips finished steps)
    r1-recipe pipeline --config recipes/demo/pipeline.yaml --status # done / running / pending
    r1-recipe pipeline --config recipes/demo/pipeline.yaml --max-parallel 1   # one step at a time
    r1-recipe pipeline --config recipes/demo/pipeline.yaml --cpus 8           # a bigger machine's thread budget

A pipeline recipe names a run folder and its steps. Each step is a stage (``sft``, ``grpo``,
``rejection_sampling``, ``reward_model``, ``distill``) with its own stage recipe, or a tool
(``tiny``, ``data``). Its folder is ``<run_dir>/<name>``, and ``from: <step>`` makes that step's
folder its ``model_name_or_path`` — no hand-copied paths. ``set:`` overrides recipe keys; in
strings of ``set:``, ``args`` and ``score:``, ``{<step>}`` is replaced by that step's folder and
``{run_dir}`` by the run folder. ``evaluate: true`` runs the pipeline's evaluation recipe (or each of a list) on the
step's output; ``score: {recipe, set}`` also scores it with reward models on held-out prompts.

The steps form a graph. A step waits only for the steps it names: ``from:`` and every ``{step}``
in its ``set:`` and ``args``. One exception: a ``distill`` step in ``distill_mode: sequence`` (its
recipe, ``set:`` or ``args``) trains on the teacher's traces alone, so its
``teacher_model_name_or_path: "{rl2}"`` is no wait edge — the teacher's step is still recorded
(``teacher_step`` in its lineage) and the folder still substituted. A step's evaluation and scoring
form their own node (``<step>:eval``, log ``<folder>/eval.log``) that waits for the step and for
the steps its ``score:`` names; the next stage waits for the training only, so evaluation runs
beside it. Two steps writing the same folder, a cycle, or a ``{name}``/``from:`` that is no
step are load-time errors naming the steps.

Thread budget. A step may say ``threads: N`` (its training or tool) and ``eval_threads: N`` (its
evaluation node); a node that says nothing gets the ``OMP_NUM_THREADS`` of the pipeline's ``env:``
(or of the caller's environment; unset, its BLAS takes every core, so it counts as ``cpus``). The
node's process gets ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` = N, which torch takes as its
intra-op thread count (capped at the machine's cores). The machine is ``cpus`` threads (pipeline
key; ``--cpus`` overrides; default: the usable cores). Ready nodes start in priority order — the
longest chain of steps behind them first — and a node starts only when the running nodes' threads
plus its own are at most ``cpus`` and fewer than ``max_parallel`` nodes run (pipeline key;
``--max-parallel`` overrides; default: ``cpus``, and 1 under ``launcher: accelerate``, where each
step takes every visible GPU — set it higher only where that is not so). A node that asks for more
than ``cpus`` runs alone. The highest-priority ready node that does not fit reserves the machine:
nothing behind it starts until it has, so a 2-thread step is never starved by 1-thread steps that
keep becoming ready (the rule is ``pipeline_graph.schedule``'s). In the demo, stage 1 (``threads:
2``, the critical path) starts alone; the reward models then run beside RL 1, rejection sampling and
stage 2. Under ``launcher: accelerate`` ``threads`` is each rank's ``OMP_NUM_THREADS`` and the node
is counted once. ``slurm/pipeline.slurm`` submits stage recipes, not this file: there ``threads``
maps to nothing — a job's cores are its ``--cpus-per-task`` (``slurm/common.sh``). More threads pay
only on cores nothing else uses: on a 2-core box other jobs kept busy (load ~5), 100 steps of the
demo's stage 1 took 127-395 s on 2 threads against 42-71 s on 1 (OpenMP's spinning threads wait for
a descheduled one; ``OMP_WAIT_POLICY=PASSIVE`` in ``env:`` gave 41-86 s there).

Each node runs in its own process (``python -m r1_recipe.<stage>`` or, with ``launcher:
accelerate``, ``accelerate launch --num_processes N`` for the training stages, N = ``num_processes``
or else the visible GPU count; rejection sampling spreads over the GPUs itself and always runs as
one plain process), its log in ``<folder>/stage.log``, started through
:mod:`r1_recipe.step_process`: it dies with the pipeline (killing the pipeline alone used to leave
it running, and the rerun started a second writer) and holds its folder's writer lock, so a folder
has one live writer at a time. A finished step writes
``lineage.json`` (what it started from: model, data, recipe hash, git commit; results; status)
and a model card; re-running the pipeline skips finished nodes and resumes interrupted ones from
their last checkpoints. Each node's start and end go to ``<run_dir>/timing.json`` (see
``pipeline_graph``). A failing node stops new starts; the nodes already running finish, then the
pipeline stops naming the failed step and its log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from r1_recipe.command_line import ArgParser
from r1_recipe.configs import ConfigError, read_recipe
from r1_recipe.pipeline_graph import (
    Timing,
    critical_first,
    default_max_parallel,
    default_threads,
    schedule,
    usable_cpus,
    write_json,
)
from r1_recipe.pipeline_recipe import (  # noqa: F401  (Pipeline, Step, load_pipeline: this module's API too)
    EVAL,
    LAUNCHED_STAGES,
    Pipeline,
    PipelineError,
    Step,
    _substitute,
    check_steps,
    load_pipeline,
    resolved_recipe,
)
from r1_recipe.step_process import guarded, lock_holder

logger = logging.getLogger(__name__)
LINEAGE = "lineage.json"
EVAL_STATE = "eval_status.json"  # the evaluation node's own done / running record


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def step_command(pipeline: Pipeline, step: Step, recipe_file: Path | None) -> list[str]:
    if step.tool:
        out_flag = ["--output", str(pipeline.folder(step))]
        return [sys.executable, "-m", "r1_recipe.cli", step.tool, *out_flag, *_substitute(step.args, pipeline)]
    if pipeline.launcher == "accelerate" and step.stage in LAUNCHED_STAGES:
        # accelerate refuses a config file without a process count ("You need to manually pass in
        # `--num_processes`"), and none of accelerate_configs/ holds one: the count is the machine's
        launch = [sys.executable, "-m", "accelerate.commands.launch"]
        if pipeline.accelerate_config:
            launch += ["--config_file", pipeline.accelerate_config]
        launch += ["--num_processes", str(pipeline.num_processes or gpu_count()), "-m", f"r1_recipe.{step.stage}"]
    else:
        launch = [sys.executable, "-m", f"r1_recipe.{step.stage}"]
    return [*launch, "--config", str(recipe_file), *_substitute(step.args, pipeline)]


def gpu_count() -> int:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES`` honoured); 1 without CUDA."""
    import torch

    return max(1, torch.cuda.device_count())


def read_lineage(folder: Path) -> dict | None:
    path = folder / LINEAGE
    return json.loads(path.read_text()) if path.exists() else None


def _run(cmd: list[str], log: Path, env: dict, node: str, kind: str) -> None:
    """The node's command as the one writer of its folder (the log's), dying with this process
    (:mod:`r1_recipe.step_process`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run(guarded(log.parent, cmd), stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        reason = _error_line(log)
        raise PipelineError(f"step {node!r} ({kind}) failed with exit code {code}"
                            f"{': ' + reason if reason else ''}; its log: {log}")


def _refuse_a_second_writer(folder: Path, node: str) -> None:
    """Before any record is written: a live process still writing this folder (a pipeline started
    twice, or one from before this guard) must finish or be stopped first."""
    if (holder := lock_holder(folder)) is not None:
        raise PipelineError(
            f"step {node!r}: {folder} is being written by pid {holder.get('pid')} on host {holder.get('host')} "
            f"(command: {' '.join(holder.get('command') or [])[:160]}); wait for it or stop it, then rerun")


def _error_line(log: Path) -> str | None:
    """The one-line error a stage printed (``r1-recipe <stage>: error: ...``), if it printed one."""
    lines = log.read_text(errors="replace").splitlines()[-200:]
    found = [line for line in lines if line.startswith("r1-recipe ") and ": error: " in line]
    return found[-1].split(": error: ", 1)[1] if found else None


def run_step(pipeline: Pipeline, step: Step, env: dict) -> dict:
    """The step's training (or tool) in its own process; ``lineage.json`` says done when it is."""
    folder = pipeline.folder(step)
    folder.mkdir(parents=True, exist_ok=True)
    _refuse_a_second_writer(folder, step.name)
    recipe_file, recipe = None, None
    if step.stage:
        recipe = resolved_recipe(pipeline, step)
        recipe_file = folder / "pipeline_recipe.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False))
    lineage = {
        "pipeline": pipeline.name, "step": step.name, "kind": step.kind, "status": "running",
        "recipe": step.recipe,
        "recipe_sha256": hashlib.sha256(Path(step.recipe).read_bytes()).hexdigest() if step.recipe else None,
        "from_step": step.parent, "teacher_step": pipeline.teacher_step.get(step.name),
        "waits_for": sorted(pipeline.waits.get(step.name, ())), "model": (recipe or {}).get("model_name_or_path"),
        "teacher": (recipe or {}).get("teacher_model_name_or_path"),
        "data": (recipe or {}).get("dataset_mixture"), "git_commit": _git_commit(), "started": time.time(), "pid": os.getpid(),
    }
    write_json(folder / LINEAGE, lineage)
    log = folder / "stage.log"
    logger.info("step %s (%s) -> %s  [log: %s]", step.name, step.kind, folder, log)
    _run(step_command(pipeline, step, recipe_file), log, env, step.name, step.kind)
    results_path = folder / "results.json"
    lineage.update(status="done", finished=time.time(),
                   results=json.loads(results_path.read_text()) if results_path.exists() else None,
                   evaluation=headline(folder))
    write_json(folder / LINEAGE, lineage)
    if step.stage:
        write_model_card(folder, lineage)
    return lineage


def eval_commands(pipeline: Pipeline, step: Step) -> list[tuple[list[str], str]]:
    """The evaluation node's processes: each evaluation recipe, then the ``score:`` block."""
    folder, commands = pipeline.folder(step), []
    for recipe in pipeline.evaluation if step.evaluate else []:
        commands.append(([sys.executable, "-m", "r1_recipe.evaluate", "--config", recipe,
                          "--model_name_or_path", str(folder), "--output_dir", str(folder)], "evaluate"))
    if step.score:
        score_recipe = read_recipe(step.score["recipe"])
        score_recipe.update(_substitute(step.score.get("set") or {}, pipeline))
        score_file = folder / "score_recipe.yaml"
        score_file.write_text(yaml.safe_dump(score_recipe, sort_keys=False))
        commands.append(([sys.executable, "-m", "r1_recipe.reward_model", "score", "--config", str(score_file),
                          "--model_name_or_path", str(folder), "--output_dir", str(folder)], "score"))
    return commands


def run_evaluation(pipeline: Pipeline, step: Step, env: dict) -> dict:
    """The step's evaluation node: the evaluation recipe and the ``score:`` block on its folder,
    logged to ``<folder>/eval.log``; afterwards the lineage and model card carry the headline."""
    folder, node = pipeline.folder(step), step.name + EVAL
    _refuse_a_second_writer(folder, node)
    state = {"node": node, "status": "running", "started": time.time(), "pid": os.getpid()}
    write_json(folder / EVAL_STATE, state)
    log = folder / "eval.log"
    logger.info("step %s: evaluation beside the next stages  [log: %s]", step.name, log)
    for cmd, kind in eval_commands(pipeline, step):
        _run(cmd, log, env, node, kind)
    lineage = read_lineage(folder) or {}
    lineage["evaluation"] = headline(folder)
    write_json(folder / LINEAGE, lineage)
    if step.stage:
        write_model_card(folder, lineage)
    write_json(folder / EVAL_STATE, {**state, "status": "done", "finished": time.time()})
    return lineage


def headline(folder: Path) -> dict | None:
    """The step's headline metric: held-out pass@1 (and greedy) when it was evaluated; the first
    benchmark by name that has a pass@1 (``eval_general_rm.json``, the reward-model scores, has
    none, and sorts first)."""
    for path in sorted(p for p in folder.glob("eval_*.json") if not p.stem.endswith("_samples")):
        summary = json.loads(path.read_text())
        if isinstance(summary, dict) and summary.get("pass@1") is not None:
            return {k: summary.get(k) for k in ("benchmark", "pass@1", "pass@1_stderr", "greedy_accuracy", "style_share")}
    return None


def headline_text(ev: dict) -> str:
    """``pass@1 0.580 ± 0.029, greedy 0.950`` from :func:`headline`'s dict; greedy (``greedy: false``)
    and the standard error may be absent."""
    if ev.get("pass@1") is None:
        return ""
    parts = [f"pass@1 {ev['pass@1']:.3f}" + (f" ± {ev['pass@1_stderr']:.3f}" if ev.get("pass@1_stderr") is not None else "")]
    if ev.get("greedy_accuracy") is not None:
        parts.append(f"greedy {ev['greedy_accuracy']:.3f}")
    return ", ".join(parts)


def write_model_card(folder: Path, lineage: dict) -> None:
    """README.md for ``push_to_hub``: what this model is, where it came from, what it scored."""
    ev = lineage.get("evaluation") or {}
    results = {k: v for k, v in (lineage.get("results") or {}).items() if not isinstance(v, (dict, list))}
    lines = [
        "---", "library_name: transformers", "tags: [r1-recipe, deepseek-r1, reasoning]", "---", "",
        f"# {lineage['pipeline']} / {lineage['step']}", "",
        f"Stage **{lineage['kind']}** of the r1-recipe pipeline `{lineage['pipeline']}` (DeepSeek-R1 recipe).", "",
        "## Lineage", "",
        f"- started from: `{lineage.get('model')}`" + (f" (step `{lineage['from_step']}`)" if lineage.get("from_step") else ""),
        *([f"- teacher: `{lineage['teacher']}`" + (f" (step `{lineage['teacher_step']}`)" if lineage.get("teacher_step") else "")]
          if lineage.get("teacher") else []),
        f"- data: `{json.dumps(lineage.get('data'))}`",
        f"- recipe: `{lineage.get('recipe')}` (sha256 {str(lineage.get('recipe_sha256'))[:12]})",
        f"- code: r1-recipe at git commit `{lineage.get('git_commit')}`", "",
        "## Results", "",
    ]
    if ev.get("pass@1") is not None:
        lines.append(f"- held-out {ev.get('benchmark')}: {headline_text(ev)}")
    lines += [f"- {k}: {v}" for k, v in results.items()]
    (folder / "README.md").write_text("\n".join(lines) + "\n")


def _state(record: dict | None) -> str:
    if record is None:
        return "pending"
    if record.get("status") == "done":
        return "done"
    try:  # a running node whose pipeline process is gone was interrupted
        os.kill(int(record.get("pid", -1)), 0)
        return "running"
    except (OSError, ValueError):
        return "interrupted"


def step_status(pipeline: Pipeline, step: Step) -> str:
    return _state(read_lineage(pipeline.folder(step)))


def node_status(pipeline: Pipeline, node: str) -> str:
    """done / running / interrupted / pending of a step (``name``) or its evaluation (``name:eval``)."""
    if not node.endswith(EVAL):
        return step_status(pipeline, pipeline.step(node))
    folder = pipeline.folder(node[: -len(EVAL)])
    path = folder / EVAL_STATE
    if path.exists():
        return _state(json.loads(path.read_text()))
    lineage = read_lineage(folder) or {}  # a run folder from before evaluation had its own node
    return "done" if lineage.get("status") == "done" and lineage.get("evaluation") else "pending"


def status_table(pipeline: Pipeline) -> str:
    rows = ["| step | kind | status | from | headline |", "|---|---|---|---|---|"]
    for node in pipeline.nodes():
        name = node.removesuffix(EVAL)
        step = pipeline.step(name)
        lineage = read_lineage(pipeline.folder(step)) or {}
        ev = lineage.get("evaluation") or {}
        head = headline_text(ev)
        if node.endswith(EVAL):
            rows.append(f"| {node} | evaluate | {node_status(pipeline, node)} | {name} | {head} |")
        else:
            rows.append(f"| {node} | {step.kind} | {node_status(pipeline, node)} | {step.parent or ''} | "
                        f"{'' if pipeline.has_eval(step) else head} |")
    return "\n".join(rows)


def cpus(pipeline: Pipeline, override: int | None = None) -> int:
    """``--cpus``, else the recipe's ``cpus``, else the usable cores: the threads nodes share."""
    return override or pipeline.cpus or usable_cpus()


def max_parallel(pipeline: Pipeline, override: int | None = None, cpu_budget: int | None = None) -> int:
    """``--max-parallel``, else the recipe's ``max_parallel``, else ``cpus`` (see the module doc)."""
    if override is not None:
        return override
    if pipeline.max_parallel is not None:
        if pipeline.max_parallel > 1 and pipeline.launcher == "accelerate":
            logger.warning("max_parallel %d under launcher: accelerate: each step launches on every visible GPU, "
                           "so steps side by side share them", pipeline.max_parallel)
        return pipeline.max_parallel
    return default_max_parallel(cpu_budget or cpus(pipeline), pipeline.launcher)


def node_threads(pipeline: Pipeline, node: str, env: dict, cpu_budget: int) -> int:
    """The threads a node takes: its ``threads`` / ``eval_threads``, else the steps' ``OMP_NUM_THREADS``."""
    return pipeline.threads(node) or default_threads(env, cpu_budget)


def node_env(pipeline: Pipeline, node: str, env: dict, cpu_budget: int) -> dict:
    """The node's process environment: ``env`` with its thread count as OMP/MKL_NUM_THREADS (left
    unset, as the caller had it, when neither the step nor the environment names one)."""
    if pipeline.threads(node) is None and not env.get("OMP_NUM_THREADS"):
        return env
    threads = str(node_threads(pipeline, node, env, cpu_budget))
    return {**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def run(pipeline: Pipeline, *, only: Sequence[str] | None = None, parallel: int | None = None,
        cpu_budget: int | None = None) -> list[dict]:
    """Run every node not yet done, each once the nodes it waits for are and its threads fit; return
    the lineage of each step (or evaluation) run now. ``only``: these steps (and their evaluations,
    or ``name:eval``); ``parallel`` / ``cpu_budget``: ``--max-parallel`` / ``--cpus``."""
    env = {**os.environ, **{k: str(v) for k, v in pipeline.env.items()}}
    env.setdefault("WANDB_RUN_GROUP", pipeline.name)
    nodes = pipeline.nodes()
    if only:
        unknown = [n for n in only if n not in nodes]
        if unknown:
            raise PipelineError(f"--only {' '.join(unknown)}: no such step (steps: {', '.join(nodes)})")
        nodes = [n for n in nodes if n in only or n.removesuffix(EVAL) in only]
    done = {n for n in pipeline.nodes() if node_status(pipeline, n) == "done"}
    for node in nodes:
        missing = sorted(pipeline.waits.get(node, set()) - done - set(nodes))
        if missing:
            raise PipelineError(f"step {node!r} waits for {', '.join(missing)}, which is not done: run it first "
                                "(or leave out --only)")
    for node in sorted(done & set(nodes), key=nodes.index):
        logger.info("step %s: done, skipped", node)
    if not set(nodes) - done:
        return []  # nothing to run: no invocation in timing.json either
    budget = cpus(pipeline, cpu_budget)
    width = max_parallel(pipeline, parallel, budget)
    threads = {n: node_threads(pipeline, n, env, budget) for n in nodes}
    for node in [n for n in nodes if threads[n] > budget and n not in done]:
        logger.info("step %s: %d threads, more than the %d cpus: it runs alone", node, threads[node], budget)
    timing = Timing(pipeline.run_dir, width, budget)
    results: dict[str, dict] = {}

    def work(node: str) -> None:
        step = pipeline.step(node.removesuffix(EVAL))
        timing.start(node, "evaluate" if node.endswith(EVAL) else step.kind, threads[node])
        try:
            results[node] = (run_evaluation if node.endswith(EVAL) else run_step)(
                pipeline, step, node_env(pipeline, node, env, budget))
        except BaseException:
            timing.end(node, "failed")
            raise
        timing.end(node, "done")

    logger.info("pipeline %s: %d step(s) to run, up to %d at once within %d cpus", pipeline.name,
                len(set(nodes) - done), width, budget)
    failed = schedule(critical_first(nodes, pipeline.waits), pipeline.waits, work, width, done, threads, budget)
    timing.close()
    if failed:
        errors = [str(e) if isinstance(e, PipelineError) else f"step {n!r}: {type(e).__name__}: {e}"
                  for n, e in failed.items()]
        raise PipelineError("; ".join(errors))
    return [results[n] for n in nodes if n in results]


def main(argv: Sequence[str] | None = None) -> int:
    from r1_recipe.stage import setup_logging

    p = ArgParser(prog="r1-recipe pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="pipeline recipe (recipes/<model>/pipeline.yaml)")
    p.add_argument("--status", action="store_true", help="print each step's state and headline metric, run nothing")
    p.add_argument("--only", nargs="+", help="run only these steps (their inputs must be done)")
    p.add_argument("--max-parallel", type=int, help="most steps at once (default: the recipe's max_parallel, else "
                   "--cpus; 1 under launcher: accelerate)")
    p.add_argument("--cpus", type=int, help="threads the steps side by side may use together (default: the "
                   "recipe's cpus, else the usable cores); a step's share is its threads: (else OMP_NUM_THREADS)")
    a = p.parse_args(argv)
    for flag, value in (("--max-parallel", a.max_parallel), ("--cpus", a.cpus)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    setup_logging()
    pipeline = load_pipeline(a.config)
    if not a.status:
        check_steps(pipeline)
        try:
            run(pipeline, only=a.only, parallel=a.max_parallel, cpu_budget=a.cpus)
        except PipelineError as e:
            print(f"r1-recipe pipeline: {e}", file=sys.stderr)
            return 1
    print(status_table(pipeline))
    return 0


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["pipeline", *sys.argv[1:]]))
