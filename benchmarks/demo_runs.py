"""What the demo benchmarks share: run one r1_recipe module in its own process on the repository's sources,
one BLAS thread unless the caller's environment says otherwise, its output to a log; exit naming the log when
it fails. Imported by ``demo_lora.py`` and ``dynamic_sampling.py`` (run from the repository root)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "recipes/demo/evaluate.yaml"


def run_module(argv: list[str], log: Path) -> float:
    """``python -m argv...`` with its output in ``log``; returns its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.time()
    with log.open("w") as f:
        code = subprocess.call([sys.executable, "-m", *argv], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if code:
        sys.exit(f"{' '.join(argv)} failed (exit {code}); see {log}")
    return time.time() - start
