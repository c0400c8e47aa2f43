"""The pipeline: a graph of stages chained by folder (lineage), status, steps side by side, and
resume after a SIGKILL that lands while two steps run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from r1_recipe import pipeline as pipeline_module
from r1_recipe.configs import ConfigError
from r1_recipe.pipeline import load_pipeline, main, run, status_table
from r1_recipe.pipeline_graph import default_max_parallel, read_timing, schedule
from r1_recipe.report import timing_table, update_readme

ROOT = Path(__file__).resolve().parents[1]


def _pipeline(tmp_path, sft_steps: int = 3, save_steps: int = 500, twin: bool = False) -> str:
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
        ] + ([{"name": "twin", "stage": "sft", "recipe": str(sft), "from": "base",
               "set": {"dataset_mixture": [{"path": "{data}/cold_start.jsonl"}], "seed": 1}}] if twin else []),
        "max_parallel": 2}))
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


def test_kill_while_two_steps_run_then_the_same_command_finishes_with_nothing_lost_or_redone(tmp_path):
    # two SFT steps from the same base run side by side (max_parallel 2); 80 steps, a checkpoint
    # every 5: the kill lands long before either ends (a run killed after its last checkpoint
    # resumes into transformers' one step past max_steps, which is not this test)
    recipe = _pipeline(tmp_path, sft_steps=80, save_steps=5, twin=True)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "r1_recipe.pipeline", "--config", recipe],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not all(list((run_dir / s).glob("checkpoint-*/trainer_state.json"))
                                              for s in ("cold", "twin")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and both stage processes, mid-stage
    proc.wait()
    saved = {s: max(int(p.parent.name.split("-")[1]) for p in (run_dir / s).glob("checkpoint-*/trainer_state.json"))
             for s in ("cold", "twin")}  # both stages saved a checkpoint: both were running at the kill
    table = status_table(load_pipeline(recipe))
    assert "| cold | sft | interrupted |" in table and "| twin | sft | interrupted |" in table
    assert "| again | sft | pending |" in table
    finished = {s: json.loads((run_dir / s / "lineage.json").read_text())["started"] for s in ("base", "data")}
    outputs = [run_dir / "base" / "model.safetensors", run_dir / "data" / "cold_start.jsonl"]
    mtimes = [p.stat().st_mtime_ns for p in outputs]

    assert main(["--config", recipe]) == 0
    assert {s: json.loads((run_dir / s / "lineage.json").read_text())["started"] for s in finished} == finished
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes  # not redone
    for step, step_saved in saved.items():
        results = json.loads((run_dir / step / "results.json").read_text())
        resumed = int(results["resumed_from"].rsplit("checkpoint-", 1)[1])
        assert results["global_step"] == 80 and resumed >= step_saved >= 5, (step, results["resumed_from"])
    assert json.loads((run_dir / "again" / "results.json").read_text())["global_step"] == 2
    timing = read_timing(run_dir)
    assert len(timing["invocations"]) == 2 and [a["status"] for a in timing["nodes"]["cold"]["attempts"]] == [
        "running", "done"]  # the killed attempt never ended; the resumed one did
    assert [a["status"] for a in timing["nodes"]["base"]["attempts"]] == ["done"]


# --- the graph, with cheap fake steps (real processes that sleep and log when they ran) -----------


def _fake_commands(monkeypatch, tmp_path, seconds: float = 1.5, fail: str | None = None) -> Path:
    """Every step and evaluation runs ``python -c`` that appends "<node> start|end <time>" to a log
    (and writes the thread settings it was started with to ``threads_<node>.json``)."""
    log = tmp_path / "events.log"

    def command(node: str) -> list[str]:
        seen = tmp_path / f"threads_{node}.json"
        code = (f"import json, os, sys, time; json.dump({{k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}}, "
                f"open({str(seen)!r}, 'w')); f = open({str(log)!r}, 'a'); f.write('{node} start %r\\n' % time.time()); f.flush(); "
                f"time.sleep({seconds}); f.write('{node} end %r\\n' % time.time()); f.close(); "
                f"sys.exit({1 if node == fail else 0})")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(pipeline_module, "step_command", lambda pipeline, step, recipe_file: command(step.name))
    monkeypatch.setattr(pipeline_module, "eval_commands",
                        lambda pipeline, step: [(command(step.name + ":eval"), "evaluate")])
    return log


def _events(log: Path) -> dict[str, tuple[float, float]]:
    times: dict[str, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        node, what, t = line.split()
        times.setdefault(node, {})[what] = float(t)
    return {node: (t["start"], t.get("end", float("inf"))) for node, t in times.items()}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _graph_pipeline(tmp_path, steps: list[dict], **extra) -> Path:
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "run_dir": str(tmp_path / "run"), "evaluation": "unused.yaml",
                                    "steps": steps, **extra}))
    return path


def test_independent_steps_run_side_by_side_and_a_dependent_waits_for_both(tmp_path, monkeypatch):
    log = _fake_commands(monkeypatch, tmp_path)
    path = _graph_pipeline(tmp_path, max_parallel=2, steps=[
        {"name": "a", "tool": "tiny", "evaluate": True},
        {"name": "b", "tool": "data"},
        {"name": "c", "tool": "tiny", "from": "a", "args": ["--note", "{b}/x.jsonl"]},  # waits for a and b
    ])
    pipeline = load_pipeline(path)
    assert pipeline.waits == {"a": set(), "a:eval": {"a"}, "b": set(), "c": {"a", "b"}}
    run(pipeline)
    t = _events(log)
    assert _overlap(t["a"], t["b"])  # independent: side by side
    assert t["c"][0] >= max(t["a"][1], t["b"][1])  # dependent: after both
    assert t["a:eval"][0] >= t["a"][1] and _overlap(t["a:eval"], t["c"])  # evaluation beside the next step
    assert not any(_overlap(t[x], t[y]) and _overlap(t[x], t[z]) and _overlap(t[y], t[z])
                   for x, y, z in [("a", "b", "c"), ("a:eval", "b", "c")])  # never three at once
    # the timing record and the report's table come from the run itself
    timing = read_timing(tmp_path / "run")
    for node, (start, end) in t.items():
        (attempt,) = timing["nodes"][node]["attempts"]
        assert attempt["status"] == "done" and attempt["started"] <= start and attempt["finished"] >= end
    table = timing_table(tmp_path / "run")
    whole = timing["invocations"][0]["finished"] - timing["invocations"][0]["started"]
    assert {row.split(" | ")[0].strip("| ") for row in table.splitlines()[2:6]} == {"a", "b", "c", "a:eval"}
    assert f"**{round(whole)} s**" in table and "max_parallel 2" in table
    readme = tmp_path / "README.md"  # make demo's README update fills the timing block from the run
    readme.write_text("<!-- rewards-table:start -->\n<!-- rewards-table:end -->\n"
                      "<!-- demo-timing:start -->\nold\n<!-- demo-timing:end -->\n")
    update_readme(readme, tmp_path / "run")
    assert table in readme.read_text() and "old" not in readme.read_text()
    # a second run starts nothing: every node is done
    log.unlink()
    assert run(pipeline) == [] and not log.exists()


def test_one_at_a_time_with_max_parallel_1(tmp_path, monkeypatch):
    log = _fake_commands(monkeypatch, tmp_path, seconds=0.5)
    path = _graph_pipeline(tmp_path, max_parallel=4, steps=[{"name": "a", "tool": "tiny"}, {"name": "b", "tool": "data"}])
    assert main(["--config", str(path), "--max-parallel", "1"]) == 0  # the flag wins over the recipe
    t = _events(log)
    assert not _overlap(t["a"], t["b"])


def test_a_failing_step_is_named_with_its_log_and_the_step_beside_it_finishes(tmp_path, monkeypatch, capsys):
    log = _fake_commands(monkeypatch, tmp_path, seconds=1.0, fail="a")
    path = _graph_pipeline(tmp_path, max_parallel=2, steps=[
        {"name": "a", "tool": "tiny"}, {"name": "b", "tool": "data"}, {"name": "c", "tool": "tiny", "from": "a"}])
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "'a'" in err and str(tmp_path / "run" / "a" / "stage.log") in err
    t = _events(log)
    assert "c" not in t and t["b"][1] < float("inf")  # nothing new started; the running step finished
    assert json.loads((tmp_path / "run" / "b" / "lineage.json").read_text())["status"] == "done"
    assert "| c | tiny | pending |" in status_table(load_pipeline(path))


def _load_error(tmp_path, steps: list[dict]) -> str:
    with pytest.raises(ConfigError) as error:
        load_pipeline(_graph_pipeline(tmp_path, steps))
    return str(error.value)


def test_load_time_errors_name_the_steps(tmp_path):
    cycle = _load_error(tmp_path, [{"name": "a", "tool": "tiny", "from": "c"}, {"name": "b", "tool": "tiny", "from": "a"},
                                   {"name": "c", "tool": "tiny", "args": ["--seed", "1", "--note", "{b}"]}])
    assert "a -> c -> b -> a" in cycle and "cycle" in cycle
    same = _load_error(tmp_path, [{"name": "a", "tool": "tiny", "args": ["--output", "{run_dir}/shared"]},
                                  {"name": "b", "tool": "data", "args": ["--output", "{run_dir}/shared"]}])
    assert "steps a and b would both write" in same and "shared" in same
    nested = _load_error(tmp_path, [{"name": "a", "tool": "tiny"}, {"name": "a/inner", "tool": "data"}])
    assert "steps a and a/inner would both write" in nested
    unknown = _load_error(tmp_path, [{"name": "a", "tool": "tiny"}, {"name": "b", "tool": "data", "args": ["{rl9}"]}])
    assert "step b: '{rl9}' names no step" in unknown and "['a', 'b']" in unknown


def test_sequence_distillation_does_not_wait_for_its_teacher_but_records_it(tmp_path, monkeypatch):
    steps = [{"name": "teacher", "tool": "tiny"}, {"name": "traces", "tool": "data"},
             {"name": "student", "stage": "distill", "recipe": str(ROOT / "recipes/demo/distill.yaml"),
              "set": {"teacher_model_name_or_path": "{teacher}", "dataset_mixture": [{"path": "{traces}"}]}}]
    pipeline = load_pipeline(_graph_pipeline(tmp_path, steps))  # the recipe says distill_mode: sequence
    assert pipeline.waits["student"] == {"traces"} and pipeline.teacher_step == {"student": "teacher"}
    _fake_commands(monkeypatch, tmp_path, seconds=0.1)
    run(pipeline, only=["traces", "student"])  # the teacher need not exist yet
    lineage = json.loads((tmp_path / "run" / "student" / "lineage.json").read_text())
    assert lineage["teacher_step"] == "teacher" and lineage["teacher"] == str(tmp_path / "run" / "teacher")
    assert "teacher" not in lineage["waits_for"] and "(step `teacher`)" in (tmp_path / "run" / "student" / "README.md").read_text()
    steps[2]["set"]["distill_mode"] = "logit"  # logit KD loads the teacher's weights: it waits
    assert load_pipeline(_graph_pipeline(tmp_path, steps)).waits["student"] == {"traces", "teacher"}
    steps[2]["set"].pop("distill_mode")
    steps[2]["args"] = ["--distill_mode", "logit"]
    assert load_pipeline(_graph_pipeline(tmp_path, steps)).waits["student"] == {"traces", "teacher"}


def test_default_max_parallel_is_the_cpus_and_the_cpus_are_the_usable_cores(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert default_max_parallel(cores) == cores  # the thread budget, not a count, limits
    assert default_max_parallel(cores, launcher="accelerate") == 1  # steps would share the GPUs
    pipeline = load_pipeline(_graph_pipeline(tmp_path, [{"name": "a", "tool": "tiny"}]))
    assert pipeline_module.cpus(pipeline) == cores and pipeline_module.max_parallel(pipeline) == cores
    assert pipeline_module.cpus(pipeline, 3) == 3 and pipeline_module.max_parallel(pipeline, cpu_budget=3) == 3
    env = {"OMP_NUM_THREADS": "1"}  # a step naming no threads takes the pipeline's OMP_NUM_THREADS ...
    assert pipeline_module.node_threads(pipeline, "a", env, 8) == 1
    assert pipeline_module.node_threads(pipeline, "a", {}, 8) == 8  # ... and, unset, every core
    assert pipeline_module.node_env(pipeline, "a", {"X": "1"}, 8) == {"X": "1"}  # left as the caller had it


# --- the thread budget: a step's threads, the machine's cpus --------------------------------------


def _threads_seen(tmp_path, node: str) -> dict:
    return json.loads((tmp_path / f"threads_{node}.json").read_text())


def test_a_two_thread_step_runs_alone_on_two_cpus_and_each_process_gets_its_thread_count(tmp_path, monkeypatch):
    log = _fake_commands(monkeypatch, tmp_path, seconds=1.0)
    path = _graph_pipeline(tmp_path, cpus=2, max_parallel=4, env={"OMP_NUM_THREADS": "1"}, steps=[
        {"name": "wide", "tool": "tiny", "threads": 2, "evaluate": True, "eval_threads": 3},  # 3 > cpus: alone
        {"name": "b", "tool": "data"},
        {"name": "c", "tool": "data"},
    ])
    run(load_pipeline(path))
    t = _events(log)
    assert not any(_overlap(t["wide"], t[n]) for n in ("b", "c", "wide:eval"))
    assert not any(_overlap(t["wide:eval"], t[n]) for n in ("b", "c"))
    assert _overlap(t["b"], t["c"])  # two one-thread steps fill the two cpus side by side
    assert _threads_seen(tmp_path, "wide") == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert _threads_seen(tmp_path, "b") == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the pipeline's env
    assert _threads_seen(tmp_path, "wide:eval") == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    timing = read_timing(tmp_path / "run")
    assert timing["invocations"][0]["cpus"] == 2 and timing["nodes"]["wide"]["attempts"][0]["threads"] == 2


def test_cpus_from_the_command_line_wins_over_the_recipe(tmp_path, monkeypatch):
    log = _fake_commands(monkeypatch, tmp_path, seconds=0.5)
    path = _graph_pipeline(tmp_path, cpus=4, max_parallel=4, env={"OMP_NUM_THREADS": "1"},
                           steps=[{"name": "a", "tool": "tiny"}, {"name": "b", "tool": "data"}])
    assert main(["--config", str(path), "--cpus", "1"]) == 0
    t = _events(log)
    assert not _overlap(t["a"], t["b"])


def test_the_critical_two_thread_step_starts_first_and_the_side_branches_run_beside_what_follows(tmp_path, monkeypatch):
    # the demo's shape: the reward models and the cold start all wait for base only; the cold start
    # (2 threads) heads the longest chain, so it starts alone and the reward models run beside RL 1
    log = _fake_commands(monkeypatch, tmp_path, seconds=1.0)
    path = _graph_pipeline(tmp_path, cpus=2, max_parallel=2, env={"OMP_NUM_THREADS": "1"}, steps=[
        {"name": "base", "tool": "tiny"},
        {"name": "rm_a", "tool": "tiny", "from": "base"},
        {"name": "rm_b", "tool": "tiny", "from": "base"},
        {"name": "stage1", "tool": "tiny", "from": "base", "threads": 2},
        {"name": "rl1", "tool": "tiny", "from": "stage1"},
        {"name": "mid", "tool": "tiny", "from": "rl1"},
        {"name": "rl2", "tool": "tiny", "from": "mid", "args": ["--note", "{rm_a}", "{rm_b}"]},
    ])
    run(load_pipeline(path))
    t = _events(log)
    assert not any(_overlap(t["stage1"], t[n]) for n in t if n != "stage1")
    assert t["stage1"][0] < min(t["rm_a"][0], t["rm_b"][0])
    assert _overlap(t["rm_a"], t["rl1"])


def test_a_two_thread_node_is_not_starved_by_one_thread_nodes_that_keep_coming():
    # "big" is the highest-priority ready node while "a" runs; each "s" would fit beside "a" (or
    # beside another "s"), and without the reservation they would keep the second cpu busy until
    # the last of them, leaving "big" waiting behind all of them
    times: dict[str, tuple[float, float]] = {}

    def work(node: str) -> None:
        start = time.monotonic()
        time.sleep(0.3)
        times[node] = (start, time.monotonic())

    order = ["a", "big", "s1", "s2", "s3", "s4"]
    failed = schedule(order, {}, work, max_parallel=4, done=set(), threads={"big": 2}, cpus=2)
    assert not failed and set(times) == set(order)
    assert times["big"][0] >= times["a"][1]  # it waited only for what was running when it became ready
    assert all(times[s][0] >= times["big"][1] for s in ("s1", "s2", "s3", "s4"))  # nothing jumped it
    assert _overlap(times["s1"], times["s2"]) and _overlap(times["s3"], times["s4"])  # 1 + 1 <= 2 after it
    assert not _overlap(times["a"], times["s1"])  # s1 fit beside a, but big was ahead of it


def test_torch_takes_the_steps_thread_count(tmp_path, monkeypatch):
    seen = tmp_path / "torch_threads.txt"
    code = f"import torch; open({str(seen)!r}, 'w').write(str(torch.get_num_threads()))"
    monkeypatch.setattr(pipeline_module, "step_command", lambda pipeline, step, recipe_file: [sys.executable, "-c", code])
    run(load_pipeline(_graph_pipeline(tmp_path, cpus=1, env={"OMP_NUM_THREADS": "1"},
                                      steps=[{"name": "a", "tool": "tiny", "threads": 2}])))
    # more than the cpus: it runs alone, with the threads it asked for (torch caps them at the cores)
    assert seen.read_text() == str(min(2, os.cpu_count()))


def test_bad_thread_counts_are_load_errors_naming_the_step(tmp_path):
    for bad in (0, True, "2"):
        error = _load_error(tmp_path, [{"name": "a", "tool": "tiny", "threads": bad}])
        assert "steps[0] (a): threads: expected a whole number of threads >= 1" in error
    error = _load_error(tmp_path, [{"name": "a", "tool": "tiny", "eval_threads": -1}])
    assert "(a): eval_threads" in error
    with pytest.raises(ConfigError, match="cpus must be a whole number >= 1"):
        load_pipeline(_graph_pipeline(tmp_path, [{"name": "a", "tool": "tiny"}], cpus=0))


def test_the_demo_runs_its_evaluations_beside_the_next_stage_and_distills_without_rl2():
    demo = load_pipeline(ROOT / "recipes/demo/pipeline.yaml")
    assert "stage1" in demo.waits["rl1"] and "stage1:eval" not in demo.waits["rl1"]
    assert demo.waits["rm_helpful"] == {"base", "data"}  # side by side with the cold start
    assert "rl2" not in demo.waits["distill"] and demo.teacher_step["distill"] == "rl2"
    assert demo.max_parallel == 2 and demo.step("stage1").threads == 2  # the critical path takes both cores
    # one rejection step samples arithmetic and code (each row typed for its keep rule); stage 2
    # and the distillation read its one folder, RL 2 keeps the code task under its own reward
    steps = {s.name: s for s in demo.steps}
    assert [s.name for s in demo.steps if s.stage == "rejection_sampling"] == ["rejection"]
    assert demo.waits["rejection"] == {"rl1", "data"} and demo.waits["stage2"] == {"rl1", "rejection", "data"}
    typed = {Path(src["path"]).name: src["reward_type"] for src in steps["rejection"].set["dataset_mixture"]}
    assert typed == {"rl_prompts.jsonl": "math", "code_prompts.jsonl": "code"}
    recipe = yaml.safe_load((ROOT / steps["rejection"].recipe).read_text())
    assert {"accuracy", "code", "format"} <= set(recipe["reward_funcs"])
    assert recipe["reward_thresholds"] == {"accuracy": 1.0, "code": 1.0, "format": 1.0}
    assert [src["path"] for src in steps["stage2"].set["dataset_mixture"]] == ["{rejection}", "{data}/general_sft.jsonl"]
    assert all("columns" not in src for src in steps["stage2"].set["dataset_mixture"])  # one rewards schema
    assert steps["distill"].set["dataset_mixture"] == [{"path": "{rejection}", "data_files": "data/train-0*.parquet"}]
    rl2_code = [src for src in steps["rl2"].set["dataset_mixture"] if src["path"].endswith("code_prompts.jsonl")]
    assert [src["reward_type"] for src in rl2_code] == ["code"]
    assert "code" in yaml.safe_load((ROOT / steps["rl2"].recipe).read_text())["reward_funcs"]
    for path in ("recipes/Qwen2.5-1.5B/pipeline.yaml", "recipes/Qwen2.5-7B/pipeline.yaml"):
        real = load_pipeline(ROOT / path)
        assert real.launcher == "accelerate" and pipeline_module.max_parallel(real) == 1  # steps never share GPUs


def test_pipeline_slurm_waits_for_the_steps_a_recipe_reads_not_the_line_before(tmp_path, fake_sbatch):
    fake, sbatch_log = fake_sbatch
    q = "recipes/Qwen2.5-1.5B"
    steps = [f"stage1:{q}/stage1/cold_start.yaml",           # 101: reads the Hub base only
             f"zero:{q}/zero/config_simplerl.yaml",           # 102: the R1-Zero branch, beside it
             f"rl1:{q}/rl1/config_node.yaml",                 # 103: reads stage1
             "evaluate:runs/Qwen2.5-1.5B/stage1",             # 104: reads stage1; nothing waits for it
             f"generate:{q}/rejection/config_node.yaml:4",    # 105: reads rl1
             f"stage2:{q}/stage2/config_node.yaml"]           # 106: reads rl1 and the rejection folder
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "R1_VENV": sys.prefix,
           "PYTHONPATH": str(ROOT / "src")}
    for key in [k for k in env if k.startswith("SLURM_")]:
        env.pop(key)
    result = subprocess.run(["bash", "slurm/pipeline.slurm", "--no-check", "--after", "99", *steps],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    deps = [line.split()[1] for line in sbatch_log.read_text().splitlines()]
    assert deps == ["--dependency=afterok:99", "--dependency=afterok:99", "--dependency=afterok:101",
                    "--dependency=afterok:101", "--dependency=afterok:103", "--dependency=afterok:103:105"]
    dry = subprocess.run(["bash", "slurm/pipeline.slurm", "--no-check", "--dry-run", *steps[2:3], *steps[4:]],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "JOB3=$(sbatch --parsable --dependency=afterok:$JOB1:$JOB2 " in dry.stdout
    backwards = subprocess.run(["bash", "slurm/pipeline.slurm", "--no-check", "--dry-run", steps[2], steps[0]],
                               cwd=ROOT, env=env, capture_output=True, text=True)
    assert backwards.returncode == 2 and "which step 2" in backwards.stderr and "list that step first" in backwards.stderr


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


def test_the_model_card_headline_skips_the_reward_model_scores_and_a_missing_greedy(tmp_path):
    # eval_general_rm.json (reward-model scores, no accuracy) sorts before eval_math_500.json: the
    # card took it, formatted None and failed the evaluation node after all its work, every rerun
    from r1_recipe.pipeline import headline, write_model_card

    (tmp_path / "eval_general_rm.json").write_text(json.dumps({"model": "m", "mean_score": 0.4, "pairs": 8}))
    (tmp_path / "eval_math_500.json").write_text(json.dumps(
        {"benchmark": "math_500", "pass@1": 0.625, "pass@1_stderr": 0.02}))  # greedy: false
    (tmp_path / "eval_math_500_samples.json").write_text("[]")
    ev = headline(tmp_path)
    assert ev["benchmark"] == "math_500" and ev["pass@1"] == 0.625 and ev["greedy_accuracy"] is None
    lineage = {"pipeline": "p", "step": "rl1", "kind": "grpo", "evaluation": ev, "results": {"global_step": 3}}
    write_model_card(tmp_path, lineage)
    card = (tmp_path / "README.md").read_text()
    assert "- held-out math_500: pass@1 0.625 ± 0.020\n" in card and "greedy" not in card
    (tmp_path / "eval_math_500.json").unlink()
    assert headline(tmp_path) is None  # only reward-model scores: no headline, no crash
    write_model_card(tmp_path, {**lineage, "evaluation": None})


# --- faults: a step dies with its pipeline; one writer per stage folder --------------------------


def _pids_running(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (zombies excluded)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def _gone_within(marker: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not _pids_running(marker):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow  # two real SFT runs of the tiny model (~1-2 min on 2 cores)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_a_step_dies_with_its_killed_pipeline_and_the_rerun_resumes_as_the_one_writer(tmp_path):
    # kill -9 of the pipeline process alone (an OOM kill) left the stage training; the rerun then
    # marked it interrupted and started a second writer into the same folder
    recipe = _pipeline(tmp_path, sft_steps=120, save_steps=5)
    run_dir = tmp_path / "run"
    stage = str(run_dir / "cold" / "pipeline_recipe.yaml")  # on the stage process's command line
    proc = subprocess.Popen([sys.executable, "-m", "r1_recipe.pipeline", "--config", recipe],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((run_dir / "cold").glob("checkpoint-*/trainer_state.json")):
            time.sleep(0.1)
        assert _pids_running(stage), "the stage was not running"
        os.kill(proc.pid, signal.SIGKILL)  # the pipeline alone, not its process group
        proc.wait()
        assert _gone_within(stage, 30), "the stage outlived its pipeline"
        time.sleep(1)
        assert not (run_dir / "cold" / "results.json").exists()  # it was stopped, not left to finish alone
    finally:
        for pid in _pids_running(stage):
            os.kill(pid, signal.SIGKILL)
    saved = max(int(p.parent.name.split("-")[1]) for p in (run_dir / "cold").glob("checkpoint-*/trainer_state.json"))
    assert "| cold | sft | interrupted |" in status_table(load_pipeline(recipe))
    assert main(["--config", recipe]) == 0
    results = json.loads((run_dir / "cold" / "results.json").read_text())
    resumed = int(results["resumed_from"].rsplit("checkpoint-", 1)[1])
    assert results["global_step"] == 120 and resumed >= saved >= 5  # nothing lost: resumed where it stopped
    assert (run_dir / "cold" / ".writer.lock").read_text() == ""  # released by its one writer
    assert not _pids_running(stage)


def test_a_stage_folder_refuses_a_second_live_writer_and_takes_over_a_stale_lock(tmp_path, caplog, capsys):
    from r1_recipe import step_process

    folder = tmp_path / "rl1"
    marker = f"sleep-as-writer-{tmp_path.name}"
    first = subprocess.Popen([sys.executable, "-m", "r1_recipe.step_process", "--folder", str(folder), "--",
                              sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"],
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        deadline = time.time() + 30
        while time.time() < deadline and "child" not in (step_process.lock_holder(folder) or {}):
            time.sleep(0.1)
        holder = step_process.lock_holder(folder)
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        # a second writer (a rerun of the pipeline, or the guard itself) is refused, naming the holder
        assert step_process.main(["--folder", str(folder), "--", "true"]) == 3
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid {first.pid} on host {socket.gethostname()}" in err
        with pytest.raises(pipeline_module.PipelineError, match=f"being written by pid {first.pid}"):
            pipeline_module._refuse_a_second_writer(folder, "rl1")
        first.send_signal(signal.SIGKILL)  # the writer dies without releasing: a stale lock
        first.wait()
        assert _gone_within(marker, 10), "the guard's command outlived it"
        assert step_process.lock_holder(folder) is None
        with caplog.at_level("WARNING"):
            assert step_process.main(["--folder", str(folder), "--", sys.executable, "-c", "pass"]) == 0
        assert f"taking over the writer lock of pid {first.pid}" in caplog.text
        assert (folder / ".writer.lock").read_text() == ""
    finally:
        first.kill()
        for pid in _pids_running(marker):
            os.kill(pid, signal.SIGKILL)


def test_model_tool_links_a_released_model_and_the_pipeline_evaluates_it_as_its_base(tmp_path, tiny_model_dir,
                                                                                      monkeypatch, capsys):
    """`tool: model` makes a released model (a local folder, the copy `make assets` cached for a Hub id,
    else a Hub snapshot) the pipeline's first folder; the next step trains from it."""
    from r1_recipe import assets
    from r1_recipe.cli import main as cli_main

    out = tmp_path / "base"
    assert cli_main(["model", "--source", str(tiny_model_dir), "--output", str(out)]) == 0
    assert (out / "config.json").resolve() == (Path(tiny_model_dir) / "config.json").resolve()
    assert json.loads((out / "source.json").read_text())["from"] == "local folder"
    # a Hub id `make assets` cached resolves to that copy, never to the network
    monkeypatch.setitem(assets.HUB_ASSETS, "org/tiny", "smollm2-135m-instruct")
    monkeypatch.setattr(assets, "asset_dir", lambda name: Path(tiny_model_dir))
    assert cli_main(["model", "--source", "org/tiny", "--output", str(tmp_path / "hub")]) == 0
    assert json.loads((tmp_path / "hub" / "source.json").read_text())["from"] == "`make assets` cache"
    # not a folder, not a Hub id: one line naming the option
    assert cli_main(["model", "--source", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]) == 2
    assert "--source" in capsys.readouterr().err


def test_doubled_braces_in_step_values_are_literal_braces(tmp_path):
    """`\\boxed{{result}}` in a step's args reaches the tool as `\\boxed{result}`; `{run_dir}` is still the run folder."""
    from r1_recipe.pipeline_recipe import _substitute

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "b", "run_dir": str(tmp_path / "run"), "steps": [
        {"name": "data", "tool": "data", "args": ["--instruction", "Write \\boxed{{result}} in {run_dir}."]}]}))
    pipeline = load_pipeline(path)
    assert _substitute(pipeline.steps[0].args, pipeline)[1] == f"Write \\boxed{{result}} in {tmp_path / 'run'}."


def test_status_shows_a_sampled_only_evaluation_without_a_greedy_score(tmp_path):
    """`make demo-real` evaluates with greedy: false: the lineage's headline has pass@1 and no greedy
    accuracy, and the status table printed at the end of a run crashed on it (after 35 minutes)."""
    recipe = _pipeline(tmp_path)
    folder = tmp_path / "run" / "cold"
    folder.mkdir(parents=True)
    (folder / "lineage.json").write_text(json.dumps({"status": "done", "evaluation": {
        "benchmark": "arithmetic", "pass@1": 0.58, "pass@1_stderr": 0.029, "greedy_accuracy": None}}))
    table = status_table(load_pipeline(recipe))
    assert "| cold | sft | done | base | pass@1 0.580 ± 0.029 |" in table, table
    (folder / "lineage.json").write_text(json.dumps({"status": "done", "evaluation": {
        "benchmark": "arithmetic", "pass@1": 0.58, "greedy_accuracy": 0.9}}))
    assert "| cold | sft | done | base | pass@1 0.580, greedy 0.900 |" in status_table(load_pipeline(recipe))


def test_each_evaluation_recipe_of_a_list_runs_on_every_evaluated_step_and_a_bad_one_names_its_file(tmp_path):
    """`evaluation: [a.yaml, b.yaml]`: the trained task and a second benchmark (recipes/SmolLM2-135M: word
    problems under the model card's protocol) on each evaluated step, in the order given; each recipe is
    checked with the steps, before any step runs."""
    cot, general = tmp_path / "cot.yaml", tmp_path / "general.yaml"
    cot.write_text(yaml.safe_dump({"benchmark": "arithmetic", "num_problems": 20}))
    general.write_text(yaml.safe_dump({"benchmark": "word_problems", "protocol": "lighteval"}))
    path = tmp_path / "p.yaml"
    steps = [{"name": "a", "tool": "tiny", "evaluate": True}, {"name": "b", "tool": "tiny", "from": "a"}]
    path.write_text(yaml.safe_dump({"name": "p", "run_dir": str(tmp_path / "run"), "steps": steps,
                                    "evaluation": [str(cot), str(general)]}))
    pipeline = load_pipeline(path)
    assert pipeline.nodes() == ["a", "a:eval", "b"]
    commands = pipeline_module.eval_commands(pipeline, pipeline.step("a"))
    assert [(cmd[cmd.index("--config") + 1], kind) for cmd, kind in commands] == [(str(cot), "evaluate"),
                                                                                 (str(general), "evaluate")]
    assert pipeline_module.eval_commands(pipeline, pipeline.step("b")) == []
    # one path alone is a list of one, as before
    path.write_text(yaml.safe_dump({"name": "p", "run_dir": str(tmp_path / "run"), "steps": steps,
                                    "evaluation": str(cot)}))
    assert load_pipeline(path).evaluation == [str(cot)]
    general.write_text(yaml.safe_dump({"benchmark": "word_problems", "protocol": "helm"}))
    path.write_text(yaml.safe_dump({"name": "p", "run_dir": str(tmp_path / "run"), "steps": steps,
                                    "evaluation": [str(cot), str(general)]}))
    with pytest.raises(ConfigError, match=f"evaluation \\({general}\\).*protocol"):  # before any step runs
        pipeline_module.check_steps(load_pipeline(path))
    path.write_text(yaml.safe_dump({"name": "p", "steps": steps, "evaluation": {"recipe": str(cot)}}))
    with pytest.raises(ConfigError, match="p.yaml: evaluation: expected an evaluation recipe's path or a list"):
        load_pipeline(path)
