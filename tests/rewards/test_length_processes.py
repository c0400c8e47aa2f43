"""The Kimi length reward on two gloo processes: TRL spreads a prompt's group over processes and
calls the reward on each share; the scores must equal the one-process scores of the whole batch."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1_recipe.rewards import get_reward_funcs

ROOT = Path(__file__).resolve().parents[2]

# 3 prompts x 4 samples; rank 0 gets samples 0-5, rank 1 gets 6-11 (TRL's contiguous split), so
# prompt B's group is cut in two.
PROMPTS = ["A: 2+2?"] * 4 + ["B: 3+3?"] * 4 + ["C: 1+1?"] * 4
SOLUTIONS = ["4"] * 4 + ["6"] * 4 + ["2"] * 4
ANSWERS = ["4", "4", "5", "4", "6", "7", "6", "6", "2", "3", "2", "2"]
LENGTHS = [10, 20, 30, 40, 12, 50, 90, 30, 5, 6, 7, 8]
COMPLETIONS = [f"<think>r</think> \\boxed{{{a}}}" for a in ANSWERS]

RANK = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from r1_recipe.rewards import get_reward_funcs

    rank, port, data, out = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    lo, hi = (0, 6) if rank == 0 else (6, 12)
    (fn,) = get_reward_funcs(["length"], length={"workers": 0})
    got = fn(prompts=data["prompts"][lo:hi], completions=data["completions"][lo:hi],
             completion_ids=[[0] * n for n in data["lengths"][lo:hi]], solution=data["solutions"][lo:hi],
             trainer_state=None)  # called by a trainer, as TRL calls it
    alone = fn(prompts=data["prompts"][lo:hi], completions=data["completions"][lo:hi],  # rejection sampling
               completion_ids=[[0] * n for n in data["lengths"][lo:hi]], solution=data["solutions"][lo:hi])
    got = {"trainer": got, "alone": alone}
    open(out, "w").write(json.dumps(got))
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process(lo=0, hi=12):
    (fn,) = get_reward_funcs(["length"], length={"workers": 0})
    return fn(prompts=PROMPTS[lo:hi], completions=COMPLETIONS[lo:hi],
              completion_ids=[[0] * n for n in LENGTHS[lo:hi]], solution=SOLUTIONS[lo:hi])


def test_two_processes_score_the_split_group_as_one_process_does(tmp_path):
    data = json.dumps({"prompts": PROMPTS, "completions": COMPLETIONS, "lengths": LENGTHS, "solutions": SOLUTIONS})
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(r), port, data, str(tmp_path / f"rank{r}.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    whole = _one_process()
    assert ranks[0]["trainer"] + ranks[1]["trainer"] == whole
    # Outside a trainer (no trainer_state) each process scores its own rows: no collective call
    # that a process with a different number of batches would leave hanging.
    assert ranks[0]["alone"] == _one_process(0, 6) and ranks[1]["alone"] == _one_process(6, 12)
    # B's group: lengths 12, 50, 90, 30 (min 12, max 90 over all four), the 50 one wrong.
    assert whole[4:8] == pytest.approx([0.5, 0.0, -0.5, 0.5 - (30 - 12) / 78])
    assert _one_process(0, 6)[4:6] != whole[4:6]


ZSCORE_RANK = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from r1_recipe.rewards.model import zscore

    rank, port, scores, out = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    mine = scores[:3] if rank == 0 else scores[3:]
    open(out, "w").write(json.dumps({"trainer": zscore(mine, gather=True), "alone": zscore(mine)}))
    dist.destroy_process_group()
""")


def test_reward_model_normalize_z_scores_over_every_process(tmp_path):
    # normalize: true z-scored each process's rows on their own: a group split over two processes
    # had its completions scaled by two different stds
    from r1_recipe.rewards.model import zscore

    scores = [0.1, 0.2, 0.3, 2.0, 4.0, 9.0]
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", ZSCORE_RANK, str(r), port, json.dumps(scores),
                               str(tmp_path / f"z{r}.json")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f"z{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["trainer"] + ranks[1]["trainer"] == pytest.approx(zscore(scores))
    assert ranks[0]["alone"] == pytest.approx(zscore(scores[:3]))  # outside a trainer: its own rows
