"""The pipeline's steps as a graph: cycles, a scheduler that runs ready nodes side by side, the
wall-time record of a run, and the ``afterok`` waits of ``slurm/pipeline.slurm``.

Nothing here knows what a stage is: ``pipeline.py`` turns steps into nodes and their wait edges
(``{name: {names it waits for}}``) and hands each node's work over as a function. That keeps the
graph logic testable on its own and free of an import cycle.

    python -m r1_recipe.pipeline_graph KIND:ARG ...   # for slurm/pipeline.slurm: the steps each one waits for

Timing (``<run_dir>/timing.json``): every invocation of the pipeline (start, end, max_parallel, cpus)
and every attempt of every node (start, end, status, threads). A node's wall time is the sum of its
finished attempts; the run's wall time is the sum of its invocations, so a resumed run is not charged the
hours it sat killed (the minutes lost to the kill itself are not counted either: the killed
invocation has no end). ``r1_recipe.report`` turns it into the README's timing table.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

from r1_recipe.config_checks import ConfigError  # not configs: slurm/pipeline.slurm runs this without torch/TRL

TIMING = "timing.json"


def find_cycle(waits: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    ['a', 'b', 'c', 'a']
    >>> find_cycle({"a": set(), "b": {"a"}}) is None
    True
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(waits.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in waits:
        if node not in state and (found := visit(node)):
            return found
    return None


def critical_first(order: list[str], waits: Mapping[str, Iterable[str]]) -> list[str]:
    """``order`` re-sorted so that nodes with the longest chain of nodes waiting behind them come first
    (ties keep ``order``): with more ready nodes than slots, the critical path starts before the
    evaluations and side branches that nothing, or little, waits for.

    >>> critical_first(["a:eval", "b", "a", "c"], {"a:eval": {"a"}, "c": {"b"}, "b": {"a"}, "a": set()})
    ['a', 'b', 'a:eval', 'c']
    """
    after: dict[str, set[str]] = {n: set() for n in order}
    for node, deps in waits.items():
        for dep in deps:
            after.setdefault(dep, set()).add(node)
    depth: dict[str, int] = {}

    def chain(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((chain(n) for n in after.get(node, ())), default=0)
        return depth[node]

    return sorted(order, key=lambda n: (-chain(n), order.index(n)))


def schedule(order: list[str], waits: Mapping[str, set[str]], work: Callable[[str], None], max_parallel: int,
             done: set[str], threads: Mapping[str, int] | None = None,
             cpus: int | None = None) -> dict[str, BaseException]:
    """Run ``work(node)`` for every node of ``order`` not in ``done``, each as soon as the nodes it
    waits for are done and it fits; return the nodes that failed with their errors.

    The rule: ready nodes start strictly in ``order`` (the priority, see ``critical_first``). A node
    fits when fewer than ``max_parallel`` nodes run and the running nodes' ``threads`` (default 1
    each) plus its own are at most ``cpus`` (default: no limit); a node that asks for more than
    ``cpus`` fits only when nothing runs, and then runs alone. The first ready node that does not fit
    reserves the machine: nothing of lower priority starts before it, so a 2-thread node cannot
    starve while 1-thread nodes keep becoming ready beside it — it starts once enough running nodes
    have finished. (No backfill: the scheduler does not know how long a node takes, so letting a
    smaller node jump the queue could delay the critical path by the whole of that node.)

    A node that raises stops new starts; the nodes already running finish (their work is not thrown
    away), and the nodes that failed are returned with their errors. Each ``work`` runs in a thread
    that waits on the node's own process, so the nodes really run side by side.
    """
    threads = threads or {}
    done, pending, failed = set(done), [n for n in order if n not in done], {}
    running: dict[Future, str] = {}

    def fits(node: str) -> bool:
        if not running:
            return True
        used = sum(threads.get(n, 1) for n in running.values())
        return len(running) < max_parallel and (cpus is None or used + threads.get(node, 1) <= cpus)

    with ThreadPoolExecutor(max_workers=max(1, max_parallel)) as pool:
        while pending or running:
            if not failed:
                for node in [n for n in pending if waits.get(n, set()) <= done]:
                    if not fits(node):
                        break  # the highest-priority ready node waits, and so does everything after it
                    pending.remove(node)
                    running[pool.submit(work, node)] = node
            if not running:
                break  # a failure (or nodes whose inputs never come): nothing more can start
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                node = running.pop(future)
                if future.exception() is not None:
                    failed[node] = future.exception()
                else:
                    done.add(node)
    return failed


def usable_cpus() -> int:
    """The cores this process may use (its CPU affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(env: Mapping[str, str], cpus: int) -> int:
    """A node's thread budget when its step names none: ``OMP_NUM_THREADS`` of the environment the
    steps get; unset (or not a number), a step's BLAS takes every core, so ``cpus``.

    >>> [default_threads(env, 8) for env in ({"OMP_NUM_THREADS": "1"}, {}, {"OMP_NUM_THREADS": "x"})]
    [1, 8, 8]
    """
    try:
        return max(1, int(env.get("OMP_NUM_THREADS") or cpus))
    except ValueError:
        return cpus


def default_max_parallel(cpus: int, launcher: str = "python") -> int:
    """The cap on nodes side by side when the recipe gives none: ``cpus`` (each node takes at least
    one thread, so the thread budget is what limits). Under ``launcher: accelerate`` every step
    launches on all the visible GPUs, so steps run one at a time."""
    return 1 if launcher == "accelerate" else max(1, cpus)


def write_json(path: Path, data) -> None:
    """Write through a temporary file: a SIGKILL mid-write leaves the old file, never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class Timing:
    """``<run_dir>/timing.json``, updated from the scheduler's threads under one lock."""

    def __init__(self, run_dir: Path, max_parallel: int, cpus: int | None = None):
        self.path = Path(run_dir) / TIMING
        self.lock = threading.Lock()
        self.data = read_timing(run_dir) or {"invocations": [], "nodes": {}}
        self.data["invocations"].append({"started": time.time(), "finished": None, "max_parallel": max_parallel,
                                         "cpus": cpus})
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.data)

    def start(self, node: str, kind: str, threads: int | None = None) -> None:
        with self.lock:
            entry = self.data["nodes"].setdefault(node, {"kind": kind, "attempts": []})
            entry["attempts"].append({"started": time.time(), "finished": None, "status": "running",
                                      "threads": threads})
            self._save()

    def end(self, node: str, status: str) -> None:
        with self.lock:
            attempt = self.data["nodes"][node]["attempts"][-1]
            attempt.update(finished=time.time(), status=status)
            self._save()

    def close(self) -> None:
        with self.lock:
            self.data["invocations"][-1]["finished"] = time.time()
            self._save()


def read_timing(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / TIMING
    return json.loads(path.read_text()) if path.exists() else None


# --- slurm/pipeline.slurm: the waits of separately submitted steps --------------------------------


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _read_yaml(path: str) -> dict:
    try:
        data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the recipe: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of option: value")
    return data


def slurm_waits(steps: list[str]) -> list[list[int]]:
    """For each ``KIND:ARG[:...]`` step of ``slurm/pipeline.slurm``, the (1-based) earlier steps it
    waits for: those whose recipe's ``output_dir`` holds a path it reads (``model_name_or_path``, a
    data path, a reward model; an ``evaluate:MODEL`` step's model). A sequence-level distillation
    recipe does not wait for its teacher (it trains on the traces alone). A path that a *later* step
    writes is an error: Slurm can only wait for a job already submitted."""
    outputs: list[str | None] = []
    reads: list[list[str]] = []
    for spec in steps:
        kind, arg = (spec.split(":") + [""])[:2]
        if kind == "evaluate" and not arg.endswith(".yaml"):
            outputs.append(None)
            reads.append([arg])
            continue
        recipe = _read_yaml(arg)
        if recipe.get("distill_mode", "sequence") != "logit":
            recipe.pop("teacher_model_name_or_path", None)
        out = recipe.pop("output_dir", None)
        outputs.append(None if kind == "evaluate" else out)  # later steps never wait for an evaluation
        reads.append(list(_strings(recipe)))
    waits = []
    for i, paths in enumerate(reads):
        mine = []
        for j, out in enumerate(outputs):
            if j == i or not out or not any(_inside(p, out) for p in paths):
                continue
            if j > i:
                raise ConfigError(f"step {i + 1} ({steps[i]}) reads {out}, which step {j + 1} ({steps[j]}) writes "
                                  "later: list that step first")
            mine.append(j + 1)
        waits.append(mine)
    return waits


def main(argv: list[str] | None = None) -> int:
    import sys

    steps = sys.argv[1:] if argv is None else argv
    try:
        for waits in slurm_waits(steps):  # one line per step, "-" for none (bash drops trailing empty lines)
            print(" ".join(map(str, waits)) or "-")
    except (ConfigError, OSError) as e:
        print(f"pipeline_graph: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
