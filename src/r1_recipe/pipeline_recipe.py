"""A pipeline recipe read and checked: its steps, their folders, and the graph of who waits for whom.

``r1_recipe.pipeline`` runs what this module reads; its docstring describes the recipe for users.
Every error here names the pipeline file and the step, and comes before anything runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from r1_recipe.command_line import canonical_option, from_command_line, split_command_line
from r1_recipe.config_checks import build_config, check_values, config_class
from r1_recipe.configs import ConfigError, read_recipe
from r1_recipe.pipeline_graph import find_cycle

STAGE_MODULES = {"sft", "pretrain", "grpo", "rejection_sampling", "reward_model", "distill"}
TOOLS = {"tiny", "model", "data"}
STEP_KEYS = {"name", "stage", "tool", "recipe", "from", "set", "args", "evaluate", "score", "threads", "eval_threads"}
PIPELINE_KEYS = {"name", "run_dir", "evaluation", "launcher", "accelerate_config", "num_processes", "steps", "env",
                 "max_parallel", "cpus"}
# Stages that `launcher: accelerate` starts with `accelerate launch` (one process per GPU); rejection
# sampling starts its own sampler processes (one per GPU or tensor-parallel group) and refuses a launcher.
LAUNCHED_STAGES = {"sft", "pretrain", "grpo", "reward_model", "distill"}
EVAL = ":eval"  # the evaluation node of step X is "X:eval"
# ``{step}`` / ``{run_dir}``; ``{{`` and ``}}`` are literal braces (as in str.format: ``\\boxed{{result}}``)
REF = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9_.\-]+)\}")


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
    threads: int | None = None  # the step's BLAS threads (None: the pipeline's OMP_NUM_THREADS)
    eval_threads: int | None = None  # its evaluation node's

    @property
    def kind(self) -> str:
        return self.stage or self.tool or "?"


@dataclass
class Pipeline:
    name: str
    run_dir: Path
    steps: list[Step]
    evaluation: list[str] = field(default_factory=list)  # evaluation recipes, each run on every evaluated step
    launcher: str = "python"
    accelerate_config: str | None = None
    num_processes: int | None = None  # accelerate launch --num_processes (None: the visible GPU count)
    env: dict = field(default_factory=dict)
    source: Path | None = None
    max_parallel: int | None = None  # None: default_max_parallel(cpus, launcher)
    cpus: int | None = None  # the thread budget of nodes side by side (None: the usable cores)
    waits: dict[str, set[str]] = field(default_factory=dict)  # node -> the nodes it waits for
    teacher_step: dict[str, str] = field(default_factory=dict)  # distill step -> its teacher's step

    def folder(self, step: str | Step) -> Path:
        """Where the step writes: ``<run_dir>/<name>``, or the ``--output_dir`` / ``--output`` of its args."""
        if isinstance(step, str):
            if self.step(step) is None:
                return self.run_dir / step
            step = self.step(step)
        out = _arg(step.args, "--output" if step.tool else "--output_dir")
        return Path(_substitute(out, self)) if out else self.run_dir / step.name

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def has_eval(self, step: Step) -> bool:
        """Whether the step has an evaluation node: ``evaluate: true`` (with an evaluation recipe) or ``score:``."""
        return bool((step.evaluate and self.evaluation) or step.score)

    def threads(self, node: str) -> int | None:
        """The threads a node (``name`` or ``name:eval``) asked for: its step's ``threads`` /
        ``eval_threads``; None when it names none (then the pipeline's default applies)."""
        step = self.step(node.removesuffix(EVAL))
        return step.eval_threads if node.endswith(EVAL) else step.threads

    def nodes(self) -> list[str]:
        """Every node in recipe order: each step, then its evaluation node where it has one."""
        return [n for s in self.steps for n in ([s.name, s.name + EVAL] if self.has_eval(s) else [s.name])]


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check a pipeline recipe; every error names the file and the step."""
    path = Path(path)
    data = read_recipe(path)
    unknown = set(data) - PIPELINE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; valid: {sorted(PIPELINE_KEYS)}")
    if not data.get("steps") or not isinstance(data["steps"], list):
        raise ConfigError(f"{path}: 'steps' is required: a list of {{name, stage|tool, recipe, from, set}}")
    for key, kind in (("name", str), ("run_dir", str), ("env", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{path}: {key}: expected {'a string' if kind is str else 'a mapping'}, got {data[key]!r}")
    evaluation = data.get("evaluation") or []
    evaluation = [evaluation] if isinstance(evaluation, str) else evaluation
    if not isinstance(evaluation, list) or not all(isinstance(e, str) for e in evaluation):
        raise ConfigError(f"{path}: evaluation: expected an evaluation recipe's path or a list of them, "
                          f"got {data['evaluation']!r}")
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
                    score={"recipe": raw["score"]} if isinstance(raw.get("score"), str) else raw.get("score"),
                    threads=raw.get("threads"), eval_threads=raw.get("eval_threads"))
        if step.name in names:
            raise ConfigError(f"{where}: step name {step.name!r} is used twice")
        if ":" in step.name or not step.name.strip():
            raise ConfigError(f"{where}: step name {step.name!r}: use letters, digits, '_', '-', '.' "
                              f"(':' names a step's evaluation node, {step.name.split(':')[0]}{EVAL})")
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
        names.add(step.name)
        steps.append(step)
    launcher = data.get("launcher", "python")
    if launcher not in ("python", "accelerate"):
        raise ConfigError(f"{path}: launcher must be python or accelerate, got {launcher!r}")
    num_processes = data.get("num_processes")
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ConfigError(f"{path}: num_processes must be a whole number >= 1 (or left out: the GPU count), "
                          f"got {num_processes!r}")
    max_parallel, cpus = data.get("max_parallel"), data.get("cpus")
    if max_parallel is not None and not _whole(max_parallel):
        raise ConfigError(f"{path}: max_parallel must be a whole number >= 1 (or left out: as many as the cpus "
                          f"allow), got {max_parallel!r}")
    if cpus is not None and not _whole(cpus):
        raise ConfigError(f"{path}: cpus must be a whole number >= 1 (or left out: the usable cores), got {cpus!r}")
    pipeline = Pipeline(name=data.get("name", path.stem), run_dir=Path(data.get("run_dir", f"runs/{path.stem}")),
                        steps=steps, evaluation=evaluation, launcher=launcher,
                        accelerate_config=data.get("accelerate_config"), num_processes=num_processes,
                        env=data.get("env") or {}, source=path, max_parallel=max_parallel, cpus=cpus)
    build_graph(pipeline)
    return pipeline


def _refs(value) -> set[str]:
    """The ``{name}`` references in a value's strings (``{run_dir}`` is the run folder, no step)."""
    if isinstance(value, str):
        return set(REF.findall(value)) - {"run_dir", ""}
    if isinstance(value, list):
        return set().union(*map(_refs, value)) if value else set()
    if isinstance(value, dict):
        return set().union(*map(_refs, value.values())) if value else set()
    return set()


def _arg(args: list[str], flag: str) -> str | None:
    """The last value given to ``flag`` in a step's args (``--flag value`` or ``--flag=value``)."""
    found = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            found = args[i + 1]
        elif a.startswith(flag + "="):
            found = a.split("=", 1)[1]
    return found


def _distill_mode(step: Step) -> str:
    mode = _arg(step.args, "--distill_mode") or step.set.get("distill_mode") or read_recipe(step.recipe).get("distill_mode")
    if mode is None:  # the stage's own default, read from its config class
        mode = next(f.default for f in dataclasses.fields(config_class("distill")) if f.name == "distill_mode")
    return str(mode)


def build_graph(pipeline: Pipeline) -> None:
    """Fill ``pipeline.waits`` (and ``teacher_step``) from the steps' references; every error names
    the file and the steps: an unknown step, two steps writing one folder, a cycle."""
    names = {s.name for s in pipeline.steps}
    at = pipeline.source
    for step in pipeline.steps:
        teacher_value = step.set.get("teacher_model_name_or_path", _arg(step.args, "--teacher_model_name_or_path"))
        teacher = _refs(teacher_value)
        train = _refs({k: v for k, v in step.set.items() if k != "teacher_model_name_or_path"})
        train |= _refs([a for a in step.args if a != teacher_value]) | ({step.parent} if step.parent else set())
        score = _refs((step.score or {}).get("set") or {})
        for ref in sorted(train | teacher | score):
            if ref not in names:
                what = "from" if ref == step.parent else f"{{{ref}}}"
                raise ConfigError(f"{at}: step {step.name}: '{what}' names no step (steps: {sorted(names)}); "
                                  f"use a step's name, or {{run_dir}}")
        if teacher:
            pipeline.teacher_step[step.name] = sorted(teacher)[0]
            if not (step.stage == "distill" and _distill_mode(step) == "sequence"):
                train |= teacher  # logit distillation (or any other stage) loads the teacher's weights
        pipeline.waits[step.name] = train
        if pipeline.has_eval(step):
            pipeline.waits[step.name + EVAL] = {step.name} | score
    cycle = find_cycle(pipeline.waits)
    if cycle:
        raise ConfigError(f"{at}: steps {' -> '.join(cycle)} wait for each other in a cycle (from: / {{step}} "
                          "references): one of them must not need the other")
    seen: dict[str, str] = {}
    for step in pipeline.steps:
        folder = os.path.normpath(os.path.abspath(pipeline.folder(step)))
        for other_folder, other in seen.items():
            if folder == other_folder or folder.startswith(other_folder + os.sep) or other_folder.startswith(folder + os.sep):
                raise ConfigError(f"{at}: steps {other} and {step.name} would both write {pipeline.folder(step)} "
                                  f"(their folders {other_folder} and {folder}): give each step its own folder")
        seen[folder] = step.name


STEP_TYPES = {"name": (str,), "stage": (str,), "tool": (str,), "recipe": (str,), "from": (str,), "set": (dict,),
              "args": (list,), "evaluate": (bool,), "score": (str, dict)}


def _whole(value) -> bool:
    """A whole number >= 1 (YAML's ``true`` is no thread count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_step_types(raw: dict, where: str) -> None:
    for key, kinds in STEP_TYPES.items():
        if raw.get(key) is not None and not isinstance(raw[key], kinds):
            names = " or ".join({str: "a string", dict: "a mapping", list: "a list", bool: "true or false"}[k] for k in kinds)
            raise ConfigError(f"{where} ({raw['name']}): {key}: expected {names}, got {raw[key]!r}")
    for key in ("threads", "eval_threads"):
        if raw.get(key) is not None and not _whole(raw[key]):
            raise ConfigError(f"{where} ({raw['name']}): {key}: expected a whole number of threads >= 1 (or left "
                              f"out: the pipeline's OMP_NUM_THREADS), got {raw[key]!r}")


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
        _, overrides = split_command_line(_substitute(step.args, pipeline))
        for key, tokens in (canonical_option(cls, key, tokens) for key, tokens in overrides):
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
    for recipe_path in pipeline.evaluation if any(s.evaluate for s in pipeline.steps) else []:
        evaluation = read_recipe(recipe_path)
        evaluation.update(model_name_or_path=str(pipeline.run_dir), output_dir=str(pipeline.run_dir))
        build_config(config_class("evaluate"), evaluation,
                     dict.fromkeys(evaluation, f"{pipeline.source}: evaluation ({recipe_path})"))


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _substitute(value, pipeline: Pipeline):
    """Replace ``{step}`` and ``{run_dir}`` in strings, recursively."""
    if isinstance(value, str):
        def repl(m):
            key = m.group(1)
            if key is None:  # an escaped brace
                return m.group(0)[0]
            if key == "run_dir":
                return str(pipeline.run_dir)
            if any(s.name == key for s in pipeline.steps):
                return str(pipeline.folder(key))
            return m.group(0)

        return REF.sub(repl, value)
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


