"""benchmarks/tiny_steps.py measures the old settings against the new: its "old" math-verify path
must be the old behaviour (a missing answer goes to math-verify) and be undone afterwards."""

import importlib.util
from pathlib import Path

from r1_recipe.rewards import verify

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("tiny_steps", ROOT / "benchmarks" / "tiny_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_old_verifier_sends_a_missing_answer_to_math_verify_and_is_undone_afterwards():
    bench = _benchmark()
    pairs = [(None, "153"), ("153", "153"), ("12", "153")]
    with bench.old_verifier(True):
        old = verify.MathVerifier(workers=0)
        assert old.verify_many(pairs) == [0.0, 1.0, 0.0]
        assert old.fast_decided == 2  # the missing answer went to math-verify
    new = verify.MathVerifier(workers=0)
    assert new.verify_many(pairs) == [0.0, 1.0, 0.0]
    assert new.fast_decided == 3
    assert verify._VERIFIERS == {}  # no pool left running from the benchmark's runs
