"""Shared fixtures: the tiny local model and generated data, built once per test session.

Nothing here touches the network: HF_HUB_OFFLINE is set so an accidental Hub id fails fast.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from r1_recipe.assets import asset_dir  # noqa: E402
from r1_recipe.data import arithmetic  # noqa: E402
from r1_recipe.data.loading import write_jsonl  # noqa: E402
from r1_recipe.tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-init tiny Qwen2 + tokenizer saved as a normal HF folder (seed 0)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory, tiny_model_dir) -> str:
    """An untrained one-output classifier on the tiny model (seed 0): routing needs scores, not good ones."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("rm") / "rm"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    """Generated cold-start traces (careful style), general rows and held-out problems."""
    out = tmp_path_factory.mktemp("data")
    write_jsonl(arithmetic.generate(2000, seed=0), out / "cold_start.jsonl")
    write_jsonl(arithmetic.generate_general(200, seed=0), out / "general.jsonl")
    write_jsonl(arithmetic.generate(200, split="test", seed=0), out / "test.jsonl")
    return out


@pytest.fixture(scope="session")
def require_asset():
    """``require_asset("qwen3-tokenizer")`` -> the asset's folder, or skip when `make assets` has not run."""

    def get(name: str):
        path = asset_dir(name)
        if path is None:
            pytest.skip(f"real asset {name!r} not fetched: run `make assets`")
        return path

    return get


@pytest.fixture(scope="session")
def standin(tmp_path_factory, require_asset):
    """``standin("Qwen/Qwen2.5-1.5B")`` -> the stand-in's folder (built once per session), or skip
    when its tokenizer asset is absent."""
    from r1_recipe.standins import STANDINS, build_standin

    built = {}

    def get(model_id: str):
        if model_id not in built:
            require_asset(STANDINS[model_id].asset)
            built[model_id] = build_standin(model_id, tmp_path_factory.mktemp("standin") / model_id)
        return built[model_id]

    return get


@pytest.fixture
def fake_sbatch(tmp_path):
    """A fake ``sbatch`` on its own bin folder: it logs its arguments and answers job ids 101, 102, …
    (``--parsable`` style, ``<id>;cluster``). Returns (bin folder, log file)."""
    log = tmp_path / "sbatch.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n'
                                    f'echo "$(( $(wc -l < {log}) + 100 ));cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    return bin_dir, log
