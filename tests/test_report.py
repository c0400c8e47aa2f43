"""The run report: one table row per evaluated stage in pipeline order, RM scores, plots."""

from __future__ import annotations

import json
import subprocess
import sys

from r1_recipe.report import collect, update_readme, write_full_report


def _eval(folder, pass1, greedy, benchmark="arithmetic"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"eval_{benchmark}.json").write_text(json.dumps({
        "benchmark": benchmark, "problems": 200, "greedy_accuracy": greedy, "pass@1": pass1,
        "pass@1_stderr": 0.02, "samples_per_problem": 4, "temperature": 0.7}))


def test_report_orders_stages_and_draws_the_plots(tmp_path):
    run = tmp_path / "run"
    _eval(run / "rl1", 0.91, 0.95)
    _eval(run / "stage1", 0.78, 0.96)
    (run / "rl1" / "eval_general_rm.json").write_text(json.dumps(
        {"total": {"mean": 4.3, "stderr": 0.4}, "style_share": {"good": 0.87, "lazy": 0.02, "rude": 0.01}}))
    (run / "rl1" / "aha_metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "reward": 0.9 + s / 100, "rewards/accuracy/mean": 0.8, "completions/mean_length": 40,
         "aha/self_correction": 0.0}) + "\n" for s in (4, 8)))
    assert [r["stage"] for r in collect(run)] == ["stage1", "rl1"]  # pipeline order, not alphabetical
    index = write_full_report(run, tmp_path / "report").read_text()
    assert "| rl1 | 0.950 | 0.910 ± 0.020 |" in index
    assert "| rl1 | 4.30 ± 0.40 | 0.87 / 0.02 / 0.01 |" in index
    for png in ("accuracy.png", "rl1_curves.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- rewards-table:start -->\n<!-- rewards-table:end -->\n"
                      "<!-- demo-table:start -->\nold\n<!-- demo-table:end -->\n")
    update_readme(readme, run)
    text = readme.read_text()
    assert "old" not in text and "| stage1 | 0.960 | 0.780 ± 0.020 |" in text and "| `accuracy` |" in text


def test_report_puts_the_code_task_in_a_column_beside_arithmetic(tmp_path):
    run = tmp_path / "run"
    _eval(run / "stage1", 0.78, 0.96)
    _eval(run / "stage1", 0.55, 0.70, benchmark="demo_code")
    _eval(run / "rl1", 0.91, 0.95)
    _eval(run / "rl1", 0.80, 0.90, benchmark="demo_code")
    lines = write_full_report(run, tmp_path / "report").read_text().splitlines()
    head = next(line for line in lines if line.startswith("| stage | arithmetic greedy"))
    assert head.split(" | ")[3:5] == ["demo_code greedy", "demo_code pass@1 (200 problems, k=4, T=0.7) |"]
    assert "| stage1 | 0.960 | 0.780 ± 0.020 | 0.700 | 0.550 ± 0.020 |" in lines
    assert "| rl1 | 0.950 | 0.910 ± 0.020 | 0.900 | 0.800 ± 0.020 |" in lines


def test_report_leaves_out_columns_no_stage_has_and_names_a_greedy_only_protocol(tmp_path):
    """make demo-real: sampled-only arithmetic (greedy: false) beside word problems under lighteval's
    greedy-only protocol, whose one number carries its standard error."""
    run = tmp_path / "run"
    for stage, pass1, words in (("base", 0.001, 0.07), ("stage1", 0.58, 0.14)):
        (run / stage).mkdir(parents=True)
        (run / stage / "eval_arithmetic.json").write_text(json.dumps({
            "benchmark": "arithmetic", "protocol": "r1", "problems": 200, "pass@1": pass1, "pass@1_stderr": 0.029,
            "samples_per_problem": 4, "temperature": 0.7}))
        (run / stage / "eval_word_problems.json").write_text(json.dumps({
            "benchmark": "word_problems", "protocol": "lighteval", "problems": 100, "greedy_accuracy": words,
            "greedy_accuracy_stderr": 0.026}))
    lines = write_full_report(run, tmp_path / "report").read_text().splitlines()
    assert ("| stage | arithmetic pass@1 (200 problems, k=4, T=0.7) | word_problems greedy (100 problems, "
            "lighteval protocol) |") in lines
    assert "| base | 0.001 ± 0.029 | 0.070 ± 0.026 |" in lines and "| stage1 | 0.580 ± 0.029 | 0.140 ± 0.026 |" in lines


def test_report_command_does_not_import_the_training_stack(tmp_path):
    """`r1-recipe report` (the demo's last step) reads JSON and draws PNGs: importing TRL and
    datasets only to catch their error classes cost it ~10 of its ~14 s on a 2-core box."""
    run = tmp_path / "run"
    _eval(run / "stage1", 0.78, 0.96)
    code = ("import sys; from r1_recipe.cli import main; rc = main(['report', sys.argv[1]]); "
            "print(rc, sorted(m for m in ('trl', 'datasets', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True).stdout
    assert "| stage1 | 0.960 | 0.780 ± 0.020 |" in out
    assert out.strip().splitlines()[-1] == "0 []"
