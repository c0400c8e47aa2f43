"""The whole R1 pipeline from one recipe: stages chained by output folder, with lineage and resume.

    make pipeline RECIPE=recipes/demo/pipeline.yaml
    r1-recipe pipeline --config recipes/demo/pipeline.yaml          # run (skips finished stages)
    r1-recipe pipeline --config recipes/demo/pipeline.yaml --status # done / running / pending

A pipeline recipe names a run folder and an ordered list of steps. Each step is a stage (``sft``,
``grpo``, ``rejection_sampling``, ``reward_model``, ``distill``) with its own stage recipe, or a
tool (``tiny``, ``data``). Its folder is ``<run_dir>/<name>``, and ``from: <step>`` makes the
previous step's folder its ``model_name_or_path`` — no hand-copied paths. ``set:`` overrides
recipe keys; in strings, ``{<step>}`` is replaced by that step's folder and ``{run_dir}`` by the
run folder. ``evaluate: true`` runs the pipeline's evaluation recipe on the step's output;
``score: {recipe, set}`` also scores it with reward models on held-out general prompts.

Each step runs in its own process (``python -m r1_recipe.<stage>`` or, with ``launcher:
accelerate``, ``accelerate launch --num_processes N`` for the training stages, N = ``num_processes``
or else the visible GPU count; rejection sampling spreads over the GPUs itself and always runs as
one plain process), its log in ``<folder>/stage.log``. A finished step writes
``lineage.json`` (what it started from: model, data, recipe hash, git commit; results; status)
and a model card; re-running the pipeline skips finished steps and resumes an interrupted one
from its last checkpoint. A failing step stops the pipeline, naming the step and its log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from r1_recipe.config_checks import (
    ArgParser, build_config, check_values, config_class, from_command_line, split_command_line,
)
from r1_recipe.configs import ConfigError, read_recipe

logger = logging.getLogger(__name__)

STAGE_MODULES = {"sft", "pretrain", "grpo", "rejection_sampling", "reward_model", "distill"}
TOOLS = {"tiny", "data"}
STEP_KEYS = {"name", "stage", "tool", "recipe", "from", "set", "args", "evaluate", "score"}
PIPELINE_KEYS = {"name", "run_dir", "evaluation", "launcher", "accelerate_config", "num_processes", "steps", "env"}
# Stages that `launcher: accelerate` starts with `accelerate launch` (one process per GPU); rejection
# sampling starts its own sampler processes (one per GPU or tensor-parallel group) and refuses a launcher.
LAUNCHED_STAGES = {"sft", "pretrain", "grpo", "reward_model", "distill"}
LINEAGE = "lineage.json"


class PipelineError(RuntimeError):
    """A step failed; the message names it and its log."""


@dataclass
class Step:
    name: str
    stage: str | None = None
    tool: str | None = None
    recipe: str | None = None
    parent: str | None = None
    set: dict = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    evaluate: bool = False
    score: dict | None = None  # {recipe, set}: reward-model score on held-out general prompts

    @property
    def kind(self) -> str:
        return self.stage or self.tool or "?"


@dataclass
class Pipeline:
    name: str
    run_dir: Path
    steps: list[Step]
    evaluation: str | None = None
    launcher: str = "python"
    accelerate_config: str | None = None
    num_processes: int | None = None  # accelerate launch --num_processes (None: the visible GPU count)
    env: dict = field(default_factory=dict)
    source: Path | None = None

    def folder(self, step: str | Step) -> Path:
        return self.run_dir / (step if isinstance(step, str) else step.name)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check a pipeline recipe; every error names the file and the step."""
    path = Path(path)
    data = read_recipe(path)
    unknown = set(data) - PIPELINE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; valid: {sorted(PIPELINE_KEYS)}")
    if not data.get("steps") or not isinstance(data["steps"], list):
        raise ConfigError(f"{path}: 'steps' is required: a list of {{name, stage|tool, recipe, from, set}}")
    for key, kind in (("name", str), ("run_dir", str), ("evaluation", str), ("env", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{path}: {key}: expected {'a string' if kind is str else 'a mapping'}, got {data[key]!r}")
    steps, names = [], set()
    for i, raw in enumerate(data["steps"]):
        where = f"{path}: steps[{i}]"
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{where}: each step is a mapping with a 'name'")
        bad = set(raw) - STEP_KEYS
        if bad:
            raise ConfigError(f"{where} ({raw['name']}): unknown key(s) {sorted(bad)}; valid: {sorted(STEP_KEYS)}")
        _check_step_types(raw, where)
        step = Step(name=raw["name"], stage=raw.get("stage"), tool=raw.get("tool"), recipe=raw.get("recipe"),
                    parent=raw.get("from"), set=raw.get("set") or {}, args=[str(a) for a in raw.get("args") or []],
                    evaluate=bool(raw.get("evaluate", False)),
                    score={"recipe": raw["score"]} if isinstance(raw.get("score"), str) else raw.get("score"))
        if step.name in names:
            raise ConfigError(f"{where}: step name {step.name!r} is used twice")
        if (step.stage is None) == (step.tool is None):
            raise ConfigError(f"{where} ({step.name}): give exactly one of 'stage' {sorted(STAGE_MODULES)} or 'tool' {sorted(TOOLS)}")
        if step.stage and step.stage not in STAGE_MODULES:
            raise ConfigError(f"{where} ({step.name}): unknown stage {step.stage!r}; choose from {sorted(STAGE_MODULES)}")
        if step.tool and step.tool not in TOOLS:
            raise ConfigError(f"{where} ({step.name}): unknown tool {step.tool!r}; choose from {sorted(TOOLS)}")
        if step.stage and not step.recipe:
            raise ConfigError(f"{where} ({step.name}): a stage step needs 'recipe'")
        if step.recipe and not Path(step.recipe).exists():
            raise ConfigError(f"{where} ({step.name}): recipe {step.recipe} does not exist")
        if step.score and not Path(step.score.get("recipe", "")).exists():
            raise ConfigError(f"{where} ({step.name}): score needs an existing 'recipe' (and optional 'set'), got {step.score}")
        if step.parent and step.parent not in names:
            raise ConfigError(f"{where} ({step.name}): 'from: {step.parent}' must name an earlier step ({sorted(names)})")
        names.add(step.name)
        steps.append(step)
    launcher = data.get("launcher", "python")
    if launcher not in ("python", "accelerate"):
        raise ConfigError(f"{path}: launcher must be python or accelerate, got {launcher!r}")
    num_processes = data.get("num_processes")
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ConfigError(f"{path}: num_processes must be a whole number >= 1 (or left out: the GPU count), "
                          f"got {num_processes!r}")
    return Pipeline(name=data.get("name", path.stem), run_dir=Path(data.get("run_dir", f"runs/{path.stem}")),
                    steps=steps, evaluation=data.get("evaluation"), launcher=launcher,
                    accelerate_config=data.get("accelerate_config"), num_processes=num_processes,
                    env=data.get("env") or {}, source=path)


STEP_TYPES = {"name": (str,), "stage": (str,), "tool": (str,), "recipe": (str,), "from": (str,), "set": (dict,),
              "args": (list,), "evaluate": (bool,), "score": (str, dict)}


def _check_step_types(raw: dict, where: str) -> None:
    for key, kinds in STEP_TYPES.items():
        if raw.get(key) is not None and not isinstance(raw[key], kinds):
            names = " or ".join({str: "a string", dict: "a mapping", list: "a list", bool: "true or false"}[k] for k in kinds)
            raise ConfigError(f"{where} ({raw['name']}): {key}: expected {names}, got {raw[key]!r}")


def check_steps(pipeline: Pipeline) -> None:
    """Every stage step's recipe, as the step will run it (``set:``, ``from:`` and ``args`` applied),
    through its stage's config checks before the first step starts: a typo in the last step fails
    now, not after the others have trained. Errors name the pipeline file and the step.

    Under ``launcher: accelerate`` the process count is only known at launch, so there the values
    are checked one by one and the checks that depend on it (GRPO's group sizes) wait for the step.
    """
    for step in pipeline.steps:
        if not step.stage:
            continue
        at = f"{pipeline.source}: step {step.name}"
        recipe = resolved_recipe(pipeline, step)
        recipe.pop("env", None)
        origins = {k: f"{at} ({'set' if k in step.set else step.recipe})" for k in recipe}
        cls = config_class(step.stage)
        _, overrides = split_command_line(step.args)
        for key, tokens in overrides:
            origins[key] = f"{at} (args)"
            recipe[key] = from_command_line(cls, key, tokens) if key in _fields(cls) else tokens
        if pipeline.launcher == "accelerate":
            check_values(cls, recipe, origins)
        else:
            build_config(cls, recipe, origins)
        if step.score:
            score = read_recipe(step.score["recipe"])
            score.update(_substitute(step.score.get("set") or {}, pipeline))
            score.update(model_name_or_path=str(pipeline.folder(step)), output_dir=str(pipeline.folder(step)))
            build_config(config_class("score"), score, dict.fromkeys(score, f"{at} (score {step.score['recipe']})"))
    if pipeline.evaluation and any(s.evaluate for s in pipeline.steps):
        evaluation = read_recipe(pipeline.evaluation)
        evaluation.update(model_name_or_path=str(pipeline.run_dir), output_dir=str(pipeline.run_dir))
        build_config(config_class("evaluate"), evaluation,
                     dict.fromkeys(evaluation, f"{pipeline.source}: evaluation ({pipeline.evaluation})"))


def _fields(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls) if f.init}


def _substitute(value, pipeline: Pipeline):
    """Replace ``{step}`` and ``{run_dir}`` in strings, recursively."""
    if isinstance(value, str):
        def repl(m):
            key = m.group(1)
            if key == "run_dir":
                return str(pipeline.run_dir)
            if any(s.name == key for s in pipeline.steps):
                return str(pipeline.folder(key))
            return m.group(0)

        return re.sub(r"\{([A-Za-z0-9_\-]+)\}", repl, value)
    if isinstance(value, list):
        return [_substitute(v, pipeline) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, pipeline) for k, v in value.items()}
    return value


def resolved_recipe(pipeline: Pipeline, step: Step) -> dict:
    """The stage recipe with the pipeline's hand-offs applied: input = parent folder, output = own folder."""
    recipe = read_recipe(step.recipe)
    recipe.update(_substitute(step.set, pipeline))
    if step.parent:
        recipe["model_name_or_path"] = str(pipeline.folder(step.parent))
    recipe["output_dir"] = str(pipeline.folder(step))
    return recipe  # the W&B run group comes from WANDB_RUN_GROUP, set for every step by run()


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
        return [sys.executable, "-m", "r1_recipe.cli", step.tool, *out_flag, *step.args]
    if pipeline.launcher == "accelerate" and step.stage in LAUNCHED_STAGES:
        # accelerate refuses a config file without a process count ("You need to manually pass in
        # `--num_processes`"), and none of accelerate_configs/ holds one: the count is the machine's
        launch = [sys.executable, "-m", "accelerate.commands.launch"]
        if pipeline.accelerate_config:
            launch += ["--config_file", pipeline.accelerate_config]
        launch += ["--num_processes", str(pipeline.num_processes or gpu_count()), "-m", f"r1_recipe.{step.stage}"]
    else:
        launch = [sys.executable, "-m", f"r1_recipe.{step.stage}"]
    return [*launch, "--config", str(recipe_file), *step.args]


def gpu_count() -> int:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES`` honoured); 1 without CUDA."""
    import torch

    return max(1, torch.cuda.device_count())


def read_lineage(folder: Path) -> dict | None:
    path = folder / LINEAGE
    return json.loads(path.read_text()) if path.exists() else None


def _run(cmd: list[str], log: Path, env: dict, step: Step) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        reason = _error_line(log)
        raise PipelineError(f"step {step.name!r} ({step.kind}) failed with exit code {code}"
                            f"{': ' + reason if reason else ''}; its log: {log}")


def _error_line(log: Path) -> str | None:
    """The one-line error a stage printed (``r1-recipe <stage>: error: ...``), if it printed one."""
    lines = log.read_text(errors="replace").splitlines()[-200:]
    found = [line for line in lines if line.startswith("r1-recipe ") and ": error: " in line]
    return found[-1].split(": error: ", 1)[1] if found else None


def run_step(pipeline: Pipeline, step: Step, env: dict) -> dict:
    folder = pipeline.folder(step)
    folder.mkdir(parents=True, exist_ok=True)
    recipe_file, recipe = None, None
    if step.stage:
        recipe = resolved_recipe(pipeline, step)
        recipe_file = folder / "pipeline_recipe.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False))
    lineage = {
        "pipeline": pipeline.name, "step": step.name, "kind": step.kind, "status": "running",
        "recipe": step.recipe,
        "recipe_sha256": hashlib.sha256(Path(step.recipe).read_bytes()).hexdigest() if step.recipe else None,
        "from_step": step.parent, "model": (recipe or {}).get("model_name_or_path"),
        "data": (recipe or {}).get("dataset_mixture"), "git_commit": _git_commit(), "started": time.time(), "pid": os.getpid(),
    }
    (folder / LINEAGE).write_text(json.dumps(lineage, indent=2))
    log = folder / "stage.log"
    logger.info("step %s (%s) -> %s  [log: %s]", step.name, step.kind, folder, log)
    _run(step_command(pipeline, step, recipe_file), log, env, step)
    if step.evaluate and pipeline.evaluation:
        cmd = [sys.executable, "-m", "r1_recipe.evaluate", "--config", pipeline.evaluation,
               "--model_name_or_path", str(folder), "--output_dir", str(folder)]
        _run(cmd, log, env, step)
    if step.score:
        score_recipe = read_recipe(step.score["recipe"])
        score_recipe.update(_substitute(step.score.get("set") or {}, pipeline))
        score_file = folder / "score_recipe.yaml"
        score_file.write_text(yaml.safe_dump(score_recipe, sort_keys=False))
        cmd = [sys.executable, "-m", "r1_recipe.reward_model", "score", "--config", str(score_file),
               "--model_name_or_path", str(folder), "--output_dir", str(folder)]
        _run(cmd, log, env, step)
    results_path = folder / "results.json"
    lineage.update(status="done", finished=time.time(),
                   results=json.loads(results_path.read_text()) if results_path.exists() else None,
                   evaluation=headline(folder))
    (folder / LINEAGE).write_text(json.dumps(lineage, indent=2))
    if step.stage:
        write_model_card(folder, lineage)
    return lineage


def headline(folder: Path) -> dict | None:
    """The step's headline metric: held-out pass@1 (and greedy) when it was evaluated."""
    evals = sorted(p for p in folder.glob("eval_*.json") if not p.stem.endswith("_samples"))
    if not evals:
        return None
    summary = json.loads(evals[0].read_text())
    return {k: summary.get(k) for k in ("benchmark", "pass@1", "pass@1_stderr", "greedy_accuracy", "style_share")}


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
        f"- data: `{json.dumps(lineage.get('data'))}`",
        f"- recipe: `{lineage.get('recipe')}` (sha256 {str(lineage.get('recipe_sha256'))[:12]})",
        f"- code: r1-recipe at git commit `{lineage.get('git_commit')}`", "",
        "## Results", "",
    ]
    if ev:
        lines.append(f"- held-out {ev.get('benchmark')}: pass@1 {ev.get('pass@1'):.3f} ± {ev.get('pass@1_stderr'):.3f}, "
                     f"greedy {ev.get('greedy_accuracy'):.3f}")
    lines += [f"- {k}: {v}" for k, v in results.items()]
    (folder / "README.md").write_text("\n".join(lines) + "\n")


def step_status(pipeline: Pipeline, step: Step) -> str:
    lineage = read_lineage(pipeline.folder(step))
    if lineage is None:
        return "pending"
    if lineage["status"] == "done":
        return "done"
    try:  # a running step whose process is gone was interrupted
        os.kill(int(lineage.get("pid", -1)), 0)
        return "running"
    except (OSError, ValueError):
        return "interrupted"


def status_table(pipeline: Pipeline) -> str:
    rows = ["| step | kind | status | from | headline |", "|---|---|---|---|---|"]
    for step in pipeline.steps:
        state = step_status(pipeline, step)
        lineage = read_lineage(pipeline.folder(step)) or {}
        ev = lineage.get("evaluation") or {}
        head = f"pass@1 {ev['pass@1']:.3f}, greedy {ev['greedy_accuracy']:.3f}" if ev.get("pass@1") is not None else ""
        rows.append(f"| {step.name} | {step.kind} | {state} | {step.parent or ''} | {head} |")
    return "\n".join(rows)


def run(pipeline: Pipeline, *, only: Sequence[str] | None = None) -> list[dict]:
    """Run every step not yet done, in order; return the lineage of each step run now."""
    env = {**os.environ, **{k: str(v) for k, v in pipeline.env.items()}}
    env.setdefault("WANDB_RUN_GROUP", pipeline.name)
    done_now = []
    for step in pipeline.steps:
        if only and step.name not in only:
            continue
        if step_status(pipeline, step) == "done":
            logger.info("step %s: done, skipped", step.name)
            continue
        done_now.append(run_step(pipeline, step, env))
    return done_now


def main(argv: Sequence[str] | None = None) -> int:
    from r1_recipe.stage import setup_logging

    p = ArgParser(prog="r1-recipe pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="pipeline recipe (recipes/<model>/pipeline.yaml)")
    p.add_argument("--status", action="store_true", help="print each step's state and headline metric, run nothing")
    p.add_argument("--only", nargs="+", help="run only these steps (their inputs must be done)")
    a = p.parse_args(argv)
    setup_logging()
    pipeline = load_pipeline(a.config)
    if not a.status:
        check_steps(pipeline)
        try:
            run(pipeline, only=a.only)
        except PipelineError as e:
            print(f"r1-recipe pipeline: {e}", file=sys.stderr)
            return 1
    print(status_table(pipeline))
    return 0


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["pipeline", *sys.argv[1:]]))
