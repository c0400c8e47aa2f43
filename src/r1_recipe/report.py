"""Tables and plots of what each stage of a run folder achieved, for the demo and the pipeline.

    r1-recipe report runs/demo --output report

Reads every ``<stage>/eval_*.json`` the evaluator wrote under the run folder (one table row per
stage, in pipeline order), the GRPO stages' ``aha_metrics.jsonl`` (reward, accuracy, completion
length, self-correction over steps), rejection sampling's ``stats.json`` and distillation's
teacher/student pair, and writes ``<output>/index.md`` with PNG plots beside it. The wall time of
each step and of the whole run comes from the run's own ``timing.json`` (written by the pipeline).
"""

from __future__ import annotations

import json
from pathlib import Path

STAGE_ORDER = ["base", "pretrained", "zero", "stage1", "rl1", "rejection", "stage2", "reward_model", "rl2", "student", "distill"]


def collect(run_dir: str | Path) -> list[dict]:
    """One row per (stage folder, benchmark) with the evaluator's summary."""
    run_dir = Path(run_dir)
    rows = []
    for path in sorted(run_dir.glob("*/eval_*.json")):
        if path.name.endswith("_samples.json"):
            continue
        summary = json.loads(path.read_text())
        if "benchmark" not in summary:  # e.g. eval_general_rm.json: see reward_model_rows
            continue
        rows.append({"stage": path.parent.name, **{k: v for k, v in summary.items() if k != "config"}})
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["stage"], len(order)), r["stage"], r["benchmark"]))


def _sampled(r: dict) -> str:
    return f"{r['pass@1']:.3f} ± {r['pass@1_stderr']:.3f}" if "pass@1" in r else "—"


def _setting(r: dict) -> tuple:
    return r.get("problems"), r.get("samples_per_problem"), r.get("temperature")


def markdown_table(rows: list[dict]) -> str:
    """Held-out accuracy per stage as a Markdown table: one row per stage, a greedy and a sampled
    pass@1 column per benchmark (arithmetic, then the code task, ...), in the order first seen.
    The header holds each benchmark's problems, k and T, and a protocol other than R1's; a cell
    whose run differs says its own; a column no stage has a number for is left out.

    >>> print(markdown_table([{"stage": "stage1", "benchmark": "arithmetic", "problems": 200,
    ...     "greedy_accuracy": 0.9, "pass@1": 0.75, "pass@1_stderr": 0.02, "samples_per_problem": 4,
    ...     "temperature": 0.7}, {"stage": "stage1", "benchmark": "demo_code", "problems": 200,
    ...     "greedy_accuracy": 0.8, "pass@1": 0.6, "pass@1_stderr": 0.03, "samples_per_problem": 4,
    ...     "temperature": 0.7}, {"stage": "rl1", "benchmark": "arithmetic", "problems": 100,
    ...     "greedy_accuracy": 0.95, "pass@1": 0.9, "pass@1_stderr": 0.02, "samples_per_problem": 4,
    ...     "temperature": 0.7}]))
    | stage | arithmetic greedy | arithmetic pass@1 (200 problems, k=4, T=0.7) | demo_code greedy | demo_code pass@1 (200 problems, k=4, T=0.7) |
    |---|---|---|---|---|
    | stage1 | 0.900 | 0.750 ± 0.020 | 0.800 | 0.600 ± 0.030 |
    | rl1 | 0.950 | 0.900 ± 0.020 (100 problems, k=4, T=0.7) | — | — |
    """
    benchmarks: dict[str, tuple] = {}
    stages: dict[str, dict[str, dict]] = {}
    for r in rows:
        benchmarks.setdefault(r["benchmark"], _setting(r))
        stages.setdefault(r["stage"], {})[r["benchmark"]] = r
    # a column no stage has (greedy: false; a greedy-only protocol) is left out
    greedy = {b: any("greedy_accuracy" in r for r in rows if r["benchmark"] == b) for b in benchmarks}
    sampled = {b: any("pass@1" in r for r in rows if r["benchmark"] == b) for b in benchmarks}
    head = ["stage"]
    for name, (n, k, t) in benchmarks.items():
        protocol = next(r.get("protocol", "r1") for r in rows if r["benchmark"] == name)
        if greedy[name]:
            notes = ([] if sampled[name] else [f"{n} problems"]) + ([] if protocol == "r1" else [f"{protocol} protocol"])
            head.append(f"{name} greedy" + (f" ({', '.join(notes)})" if notes else ""))
        if sampled[name]:
            head.append(f"{name} pass@1 ({n} problems, k={k}, T={t})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage, by_bench in stages.items():
        cells = [stage]
        for name, setting in benchmarks.items():
            r = by_bench.get(name)
            if greedy[name]:  # with its standard error where it is the benchmark's only number
                alone = not sampled[name] and r and r.get("greedy_accuracy_stderr") is not None
                cells.append("—" if not r or "greedy_accuracy" not in r else f"{r['greedy_accuracy']:.3f}"
                             + (f" ± {r['greedy_accuracy_stderr']:.3f}" if alone else ""))
            if sampled[name]:
                own = "" if r is None or _setting(r) == setting else " ({} problems, k={}, T={})".format(*_setting(r))
                cells.append(_sampled(r) + own if r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    """
    >>> _clock(59.4), _clock(754.0), _clock(3725)
    ('59 s', '12 min 34 s', '1 h 02 min')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def timing_table(run_dir: str | Path) -> str:
    """Wall time per step (and per evaluation node) and of the whole run, from ``<run_dir>/timing.json``.

    A step's time is the sum of its finished attempts (a resumed step: each piece); "started" is
    when its last attempt began, counted from the start of that pipeline invocation. The whole run
    is the sum of the invocations that finished; "steps, one after another" is the sum of the
    steps' times — what the run would take with ``max_parallel: 1``, give or take. "" without a record.
    """
    path = Path(run_dir) / "timing.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    invocations = data.get("invocations") or []
    lines = ["| step | kind | started (min:s) | wall time | status |", "|---|---|---|---|---|"]
    total_steps = 0.0
    rows = []
    for node, entry in data.get("nodes", {}).items():
        attempts = entry.get("attempts") or []
        if not attempts:
            continue
        wall = sum(a["finished"] - a["started"] for a in attempts if a.get("finished"))
        total_steps += wall
        last = attempts[-1]
        began = max((i["started"] for i in invocations if i["started"] <= last["started"]), default=last["started"])
        offset = last["started"] - began
        status = last.get("status", "?") if last.get("finished") else "interrupted"
        pieces = f" ({len(attempts)} attempts)" if len(attempts) > 1 else ""
        rows.append((last["started"], f"| {node} | {entry.get('kind', '')} | {int(offset) // 60}:{int(offset) % 60:02d} | "
                                      f"{_clock(wall)}{pieces} | {status} |"))
    lines += [row for _, row in sorted(rows)]
    whole = sum(i["finished"] - i["started"] for i in invocations if i.get("finished"))
    width = max((i.get("max_parallel") or 1 for i in invocations), default=1)
    lines.append(f"| **whole run** | max_parallel {width} | | **{_clock(whole)}** | "
                 f"{len([i for i in invocations if i.get('finished')])} invocation(s) |")
    lines.append(f"| steps, one after another | | | {_clock(total_steps)} | |")
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> str:
    table = markdown_table(collect(run_dir))
    Path(run_dir, "report.md").write_text(f"# {Path(run_dir).name}: held-out accuracy per stage\n\n{table}\n")
    return table


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    >>> replace_block("a\\n<!-- t:start -->\\nold\\n<!-- t:end -->\\nb", "t", "new")
    'a\\n<!-- t:start -->\\nnew\\n<!-- t:end -->\\nb'
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} … {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(readme: str | Path = "README.md", run_dir: str | Path | None = None, block: str = "demo") -> None:
    """Regenerate the README's generated blocks: the rewards table, and the ``<block>-table`` and
    ``<block>-timing`` tables from a run (``demo``: `make demo`'s, ``real``: `make demo-real`'s)."""
    from r1_recipe.rewards import rewards_table

    path = Path(readme)
    text = replace_block(path.read_text(), "rewards-table", rewards_table(markdown=True))
    if run_dir is not None and collect(run_dir):
        tables = [markdown_table(collect(run_dir)), reward_model_rows(run_dir)]
        text = replace_block(text, f"{block}-table", "\n\n".join(t for t in tables if t))
    timing = timing_table(run_dir) if run_dir is not None else ""
    if timing and f"<!-- {block}-timing:start -->" in text:
        text = replace_block(text, f"{block}-timing", timing)
    path.write_text(text)


def _curves(folder: Path) -> list[dict]:
    path = folder / "aha_metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plot_accuracy(rows: list[dict], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "pass@1" in r]
    if not rows:
        return None
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    names = list(dict.fromkeys(r["benchmark"] for r in rows))  # one bar per benchmark and stage
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for j, name in enumerate(names):
        mine = [r for r in rows if r["benchmark"] == name]
        x = [stages.index(r["stage"]) + (j - (len(names) - 1) / 2) * width for r in mine]
        ax.bar(x, [r["pass@1"] for r in mine], width, yerr=[r.get("pass@1_stderr", 0) for r in mine], capsize=3,
               label=f"{name} pass@1 (k={mine[0].get('samples_per_problem')}, T={mine[0].get('temperature')})")
        ax.plot(x, [r.get("greedy_accuracy", float("nan")) for r in mine], "o", color="black",
                label="greedy" if j == 0 else None)
    ax.set_xticks(list(range(len(stages))), stages)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rl(folder: Path, out: Path) -> Path | None:
    """Reward, accuracy reward, completion length and self-correction rate over GRPO steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(folder)
    if not curves:
        return None
    panels = [("reward", "reward (weighted sum)"), ("rewards/accuracy/mean", "accuracy reward"),
              ("completions/mean_length", "completion length (tokens)"), ("aha/self_correction", "self-correction share")]
    # collapse watch, where logged: the policy's entropy and distinct answers per group of samples
    panels += [p for p in [("entropy", "policy entropy"), ("aha/distinct_answers", "distinct answers / samples")]
               if any(p[0] in c for c in curves)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 2.6))
    steps = [c["step"] for c in curves]
    for ax, (key, title) in zip(axes, panels):
        ax.plot(steps, [c.get(key, float("nan")) for c in curves], marker=".")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle(f"{folder.name}: GRPO", fontsize=10)
    fig.tight_layout()
    path = out / f"{folder.name}_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reward_model_rows(run_dir: str | Path) -> str:
    """Mean reward-model score on held-out general prompts per stage (RL stage 2's measure)."""
    lines = ["| stage | reward-model total (mean ± se) | good / lazy / rude answers |", "|---|---|---|"]
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    paths = sorted(Path(run_dir).glob("*/eval_general_rm.json"), key=lambda p: order.get(p.parent.name, 99))
    for path in paths:
        d = json.loads(path.read_text())
        share = d.get("style_share", {})
        lines.append(f"| {path.parent.name} | {d['total']['mean']:.2f} ± {d['total']['stderr']:.2f} | "
                     f"{share.get('good', 0):.2f} / {share.get('lazy', 0):.2f} / {share.get('rude', 0):.2f} |")
    return "\n".join(lines) if paths else ""


def write_full_report(run_dir: str | Path, output: str | Path) -> Path:
    """index.md + PNGs: the whole R1 story of one run on one page."""
    run_dir, out = Path(run_dir), Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(run_dir)
    lines = [f"# {run_dir.name}: the R1 pipeline, stage by stage", "", "## Held-out accuracy after each stage", "",
             markdown_table(rows), ""]
    if plot_accuracy(rows, out):
        lines += ["![accuracy per stage](accuracy.png)", ""]
    rm_table = reward_model_rows(run_dir)
    if rm_table:
        lines += ["## Reward-model score on held-out general prompts", "", rm_table, ""]
    timing = timing_table(run_dir)
    if timing:
        lines += ["## Wall time of each step and of the run", "", timing, ""]
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if plot_rl(folder, out):
            last = _curves(folder)[-1]
            lines += [f"## {folder.name}: GRPO curves", "",
                      f"Last logged step {last['step']}: reward {last.get('reward', float('nan')):.3f}, "
                      f"completion length {last.get('completions/mean_length', float('nan')):.1f}, "
                      f"self-correction share {last.get('aha/self_correction', float('nan')):.3f}.", "",
                      f"![{folder.name} curves]({folder.name}_curves.png)", ""]
        stats = folder / "stats.json"
        if stats.exists():
            data = json.loads(stats.read_text())
            lines += [f"## {folder.name}: rejection sampling", "", "```json", json.dumps(data, indent=1)[:3000], "```", ""]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return out / "index.md"
