"""Tables of what each stage of a run folder achieved, for the demo and the pipeline.

    r1-recipe report runs/demo

Reads every ``<stage>/eval_*.json`` the evaluator wrote under the run folder and prints (and
saves as ``report.md``) one row per stage, in pipeline order.
"""

from __future__ import annotations

import json
from pathlib import Path

STAGE_ORDER = ["base", "stage1", "rl1", "rejection", "stage2", "rl2", "distill", "zero"]


def collect(run_dir: str | Path) -> list[dict]:
    """One row per (stage folder, benchmark) with the evaluator's summary."""
    run_dir = Path(run_dir)
    rows = []
    for path in sorted(run_dir.glob("*/eval_*.json")):
        if path.name.endswith("_samples.json"):
            continue
        summary = json.loads(path.read_text())
        rows.append({"stage": path.parent.name, **{k: v for k, v in summary.items() if k != "config"}})
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["stage"], len(order)), r["stage"], r["benchmark"]))


def markdown_table(rows: list[dict]) -> str:
    """Held-out accuracy per stage as a Markdown table.

    >>> print(markdown_table([{"stage": "stage1", "benchmark": "arithmetic", "problems": 200,
    ...     "greedy_accuracy": 0.9, "pass@1": 0.75, "pass@1_stderr": 0.02, "samples_per_problem": 4,
    ...     "temperature": 0.7}]))
    | stage | benchmark | problems | greedy | pass@1 (k, T) |
    |---|---|---|---|---|
    | stage1 | arithmetic | 200 | 0.900 | 0.750 ± 0.020 (4, 0.7) |
    """
    lines = ["| stage | benchmark | problems | greedy | pass@1 (k, T) |", "|---|---|---|---|---|"]
    for r in rows:
        greedy = f"{r['greedy_accuracy']:.3f}" if "greedy_accuracy" in r else "—"
        sampled = (
            f"{r['pass@1']:.3f} ± {r['pass@1_stderr']:.3f} ({r['samples_per_problem']}, {r['temperature']})"
            if "pass@1" in r
            else "—"
        )
        lines.append(f"| {r['stage']} | {r['benchmark']} | {r['problems']} | {greedy} | {sampled} |")
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


def update_readme(readme: str | Path = "README.md", run_dir: str | Path | None = None) -> None:
    """Regenerate the README's generated blocks: the rewards table, and the demo table from a run."""
    from r1_recipe.rewards import rewards_table

    path = Path(readme)
    text = replace_block(path.read_text(), "rewards-table", rewards_table(markdown=True))
    if run_dir is not None and collect(run_dir):
        text = replace_block(text, "demo-table", markdown_table(collect(run_dir)))
    path.write_text(text)
