"""The README stays true: its generated tables are current and every command it shows runs
(dry-run for cluster and GPU commands, recipes parsed for real)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from r1_recipe.cli import STAGES, TOOLS
from r1_recipe.report import replace_block
from r1_recipe.rewards import rewards_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_readme_leads_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.DOTALL).group(1)
    assert "make demo" in first_block and "make test" in first_block


def test_rewards_table_is_generated_from_the_registry():
    assert replace_block(README, "rewards-table", rewards_table(markdown=True)) == README, "run `make readme`"


def _fake_slurm(tmp_path, nodes: int) -> dict:
    """The environment `sbatch --nodes=N` gives a job: a node list and an `scontrol` that expands it."""
    hosts = [f"node{i:02d}" for i in range(1, nodes + 1)]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\nprintf "%s\\n" ' + " ".join(hosts) + "\n")
    (bin_dir / "scontrol").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_NNODES": str(nodes),
            "SLURM_JOB_NODELIST": f"node[01-{nodes:02d}]", "SLURM_JOB_ID": "1"}


@pytest.mark.parametrize("command", _commands())
def test_every_readme_command_is_real(command, tmp_path):
    argv = shlex.split(command)
    # RECIPE=path, --recipe path, or a pipeline.slurm step KIND:path[:N[:ACCEL]]
    recipes = [re.search(r"(recipes/[^:=\s]+\.yaml)", a).group(1) for a in argv if "recipes/" in a]
    for recipe in recipes:
        assert (ROOT / recipe).exists(), f"README names a missing recipe: {recipe}"
    if argv[0] == "make":
        if argv[1] in ("demo", "test", "install", "install-vllm", "test-vllm"):
            return  # the demo and CI run these for real
        result = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        stage = re.search(r"-m r1_recipe\.(\w+)", result.stdout)
        assert stage, result.stdout
        if recipes and stage.group(1) == "pipeline":
            from r1_recipe.pipeline import load_pipeline

            assert load_pipeline(ROOT / recipes[0]).steps
        elif recipes:  # the stage's own parser accepts the recipe
            from r1_recipe.cli import main

            assert main(["print-config", recipes[0], "output_dir", "--stage", stage.group(1)]) == 0
    elif argv[0] == "r1-recipe":
        assert argv[1] in STAGES or argv[1] in TOOLS
        if argv[1] == "check-launch":  # cheap and offline: run it for real
            from r1_recipe.cli import main

            assert main(argv[1:]) == 0
    elif argv[0] in ("sbatch", "bash"):
        script = next(a for a in argv if a.startswith("slurm/"))
        args = argv[argv.index(script) + 1 :]
        nodes = next((int(a.split("=")[1]) for a in argv if a.startswith("--nodes=")), 1)
        result = subprocess.run(["bash", script, *args, *([] if "--dry-run" in args else ["--dry-run"])],
                                cwd=ROOT, capture_output=True, text=True, env=_fake_slurm(tmp_path, nodes))
        assert result.returncode == 0, result.stderr
        assert "r1_recipe" in result.stdout or "slurm/train.slurm" in result.stdout  # the command it would run
    elif argv[0].endswith("pip"):
        assert "vllm" in command and "deepspeed" in command
        setup = (ROOT / "setup.py").read_text()
        assert '"vllm":' in setup and '"deepspeed":' in setup
    elif argv[:3] == ["sudo", "apt-get", "install"]:  # a system package: the one CI installs, the one the code uses
        assert argv[3:] == ["bubblewrap"], command
        assert "apt-get install -y -qq bubblewrap" in (ROOT / ".ci" / "run").read_text()
        assert '"bwrap"' in (ROOT / "src" / "r1_recipe" / "rewards" / "sandbox.py").read_text()
    else:
        pytest.fail(f"README command not covered by this test: {command}")
