"""The pipeline: stages chained by folder (lineage), status, and resume after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from r1_recipe.configs import ConfigError
from r1_recipe.pipeline import load_pipeline, main, status_table

ROOT = Path(__file__).resolve().parents[1]


def _pipeline(tmp_path, sft_steps: int = 3, save_steps: int = 500) -> str:
    sft = tmp_path / "sft.yaml"
    sft.write_text(yaml.safe_dump({
        "model_name_or_path": "overridden/by-pipeline", "output_dir": "overridden",
        "dataset_mixture": [{"path": "overridden.jsonl"}], "max_steps": sft_steps, "per_device_train_batch_size": 8,
        "learning_rate": 1e-3, "logging_steps": 1, "save_steps": save_steps, "max_length": 96, "report_to": "none"}))
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "name": "mini", "run_dir": str(tmp_path / "run"),
        "steps": [
            {"name": "base", "tool": "tiny", "args": ["--hidden-size", "32", "--layers", "1", "--intermediate-size", "64"]},
            {"name": "data", "tool": "data", "args": ["--cold-start", "64", "--rl-prompts", "8", "--general", "8", "--test", "8", "--pretrain", "0", "--pairs", "0"]},
            {"name": "cold", "stage": "sft", "recipe": str(sft), "from": "base",
             "set": {"dataset_mixture": [{"path": "{data}/cold_start.jsonl"}]}},
            {"name": "again", "stage": "sft", "recipe": str(sft), "from": "cold",
             "set": {"dataset_mixture": [{"path": "{data}/cold_start.jsonl"}], "max_steps": 2}},
        ]}))
    return str(path)


def test_each_stage_reads_the_folder_the_previous_one_wrote(tmp_path, capsys):
    recipe = _pipeline(tmp_path)
    assert main(["--config", recipe]) == 0
    run = tmp_path / "run"
    cold = json.loads((run / "cold" / "lineage.json").read_text())
    again = json.loads((run / "again" / "lineage.json").read_text())
    assert cold["model"] == str(run / "base") and cold["status"] == "done"
    assert cold["data"] == [{"path": str(run / "data" / "cold_start.jsonl")}]
    assert again["model"] == str(run / "cold") and again["from_step"] == "cold"
    assert again["results"]["global_step"] == 2 and len(cold["recipe_sha256"]) == 64
    assert json.loads((run / "again" / "results.json").read_text())["model_name_or_path"] == str(run / "cold")
    card = (run / "again" / "README.md").read_text()
    assert "Lineage" in card and str(run / "cold") in card
    table = status_table(load_pipeline(recipe))
    assert table.count("| done |") == 4
    # a second run skips every finished step
    started = {s: json.loads((run / s / "lineage.json").read_text())["started"] for s in ("base", "cold")}
    assert main(["--config", recipe]) == 0
    assert {s: json.loads((run / s / "lineage.json").read_text())["started"] for s in started} == started


def test_killed_pipeline_resumes_without_redoing_finished_stages(tmp_path):
    # 200 steps, a checkpoint every 5: the kill lands long before the end (a run killed after its
    # last checkpoint resumes into transformers' one step past max_steps, which is not this test)
    recipe = _pipeline(tmp_path, sft_steps=200, save_steps=5)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "r1_recipe.pipeline", "--config", recipe],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((run / "cold").glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its stage process, mid-stage
    proc.wait()
    assert list((run / "cold").glob("checkpoint-*")), "the stage never saved a checkpoint before the deadline"
    assert "interrupted" in status_table(load_pipeline(recipe))
    base_started = json.loads((run / "base" / "lineage.json").read_text())["started"]

    assert main(["--config", recipe]) == 0
    assert json.loads((run / "base" / "lineage.json").read_text())["started"] == base_started  # not redone
    cold = json.loads((run / "cold" / "results.json").read_text())
    assert cold["global_step"] == 200 and "checkpoint-" in cold["resumed_from"]


def test_bad_pipeline_recipes_name_the_step(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"steps": [{"name": "a", "stage": "sft", "recipe": "nope.yaml"}]}))
    with pytest.raises(ConfigError, match=r"steps\[0\] \(a\): recipe nope.yaml does not exist"):
        load_pipeline(path)
    path.write_text(yaml.safe_dump({"steps": [{"name": "a", "tool": "tiny", "from": "later"}]}))
    with pytest.raises(ConfigError, match=r"step a: .from. names no step"):
        load_pipeline(path)


def test_failing_stage_stops_with_its_name_and_log(tmp_path, capsys, tiny_model_dir):
    bad = tmp_path / "bad_sft.yaml"
    bad.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_model_dir), "output_dir": "y",
                                   "dataset_mixture": [{"path": "missing.jsonl"}]}))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "f", "run_dir": str(tmp_path / "run"),
                                    "steps": [{"name": "broken", "stage": "sft", "recipe": str(bad)}]}))
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "'broken'" in err and str(tmp_path / "run" / "broken" / "stage.log") in err
    assert "missing.jsonl" in (tmp_path / "run" / "broken" / "stage.log").read_text()


@pytest.mark.slow
def test_aha_demo_learns_to_retry_after_a_failed_check(tmp_path, monkeypatch):
    """recipes/demo/pipeline_aha.yaml as the README runs it (about 8 minutes): GRPO rewarded for
    the answer alone turns "retry after a failed check" from a coin flip into the habit."""
    recipe = yaml.safe_load((ROOT / "recipes/demo/pipeline_aha.yaml").read_text())
    recipe["run_dir"] = str(tmp_path / "aha")
    path = tmp_path / "pipeline_aha.yaml"
    path.write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(ROOT)  # the recipe names its stage recipes relative to the repository
    assert main(["--config", str(path)]) == 0
    cold, rl = (json.loads((tmp_path / "aha" / s / "eval_arithmetic.json").read_text()) for s in ("stage1", "rl1"))
    assert 0.35 < cold["retry_after_failed_check"] < 0.65
    assert rl["retry_after_failed_check"] > 0.85
    assert rl["pass@1"] - cold["pass@1"] > 0.08
    aha = [json.loads(line) for line in (tmp_path / "aha" / "rl1" / "aha_metrics.jsonl").read_text().splitlines()]
    assert aha[-1]["aha/self_correction"] > aha[0]["aha/self_correction"] + 0.08
    assert aha[-1]["aha/completion_length"] > aha[0]["aha/completion_length"]
