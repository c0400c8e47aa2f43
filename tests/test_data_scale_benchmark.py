"""benchmarks/data_scale.py stays runnable: on small sizes every section runs, each baseline
gives the same result as ours (the script asserts it), and the ratios are printed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~30-60 s on the shared 2-core machine (a subprocess importing datasets, a verify pool)
def test_data_scale_benchmark_agrees_with_its_baselines():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "data_scale.py"), "--sizes", "1200", "--traces", "32",
         "--trace-baseline-cap", "16", "--workers", "1", "--no-memory"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for section in ("decontaminate", "rejection post-processing", "mixture + conversion", "evaluation scoring"):
        assert re.search(rf"^{re.escape(section)}: at least [\d.]+x faster", out.stdout, re.M), out.stdout
    assert "accuracy reward" in out.stdout
