"""benchmarks/rewards.py stays runnable: on a small batch its serial baseline and the accuracy
reward give identical verdicts (the script asserts it) and every hostile completion scores 0.0
inside its limit (twice the limit for a pair that times out: it is retried once)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rewards_benchmark_agrees_with_its_baseline_and_bounds_hostile_inputs():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rewards.py"), "--prompts", "4", "--samples", "16",
         "--batches", "1", "--workers", "2", "--timeout", "3", "--seed", "5"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "identical verdicts on 64 completions" in out.stdout
    worst = float(re.search(r"worst-case latency ([\d.]+) s", out.stdout).group(1))
    assert worst < 2 * 3.0 + 2.0
    assert out.stdout.count("score 0.0") == 8  # every hostile item
