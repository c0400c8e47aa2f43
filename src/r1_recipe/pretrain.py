"""A tiny "pretraining" step for the demo's R1-Zero run: plain language modelling on text that
is *not* in the R1 output format.

    r1-recipe data --output runs/demo/data          # writes pretrain.jsonl among the demo data
    python -m r1_recipe.pretrain --config recipes/demo/pretrain.yaml

Why it exists: R1-Zero is RL straight from a *pretrained* base model, which can already write
text and has seen tags like ``<think>`` or ``<answer>`` here and there on the web; RL then
makes the format a habit. The demo's tiny model is random-init, and RL from random weights
cannot discover a format it never samples. So the demo pretrains it briefly (about 3.5 minutes
on 2 cores) on generated documents — dialogues and worked sums in several plain-text layouts,
in which the reasoning tags turn up only incidentally: most think blocks end in a plain "The
answer is X." or in an answer tag followed by chatter, and only ``exact_share`` of the
documents happen to match the R1-Zero format. The base model thus samples the format rarely
(its format reward starts near 0) but not never, which is the situation R1-Zero starts from.

Departs from real pretraining in the obvious ways: one small synthetic domain, minutes not
months; nothing here is used outside the demo and the tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from datasets import Dataset
from trl import SFTTrainer

from r1_recipe.configs import ConfigError, SFTStageConfig, parse_config
from r1_recipe.data.loading import require_columns
from r1_recipe.stage import (
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_model,
    load_tokenizer,
    load_train_data,
    setup_logging,
)

logger = logging.getLogger(__name__)

def build_dataset(config: SFTStageConfig) -> Dataset:
    ds = load_train_data(config)
    require_columns(ds, ["text"], where=f"dataset_mixture of {config.output_dir} (pretraining reads plain text)")
    if config.max_train_samples:
        ds = ds.select(range(min(config.max_train_samples, len(ds))))
    return ds.select_columns(["text"])


def train(config: SFTStageConfig) -> dict:
    """Language modelling on the ``text`` column; returns the results written to ``results.json``."""
    started = time.time()
    configure_tracking(config)
    if config.completion_only_loss:
        raise ConfigError("pretraining learns every token: set completion_only_loss: false")
    tokenizer = load_tokenizer(config)
    dataset = build_dataset(config)
    logger.info("pretraining on %d documents from %s", len(dataset), config.model_name_or_path)
    trainer = SFTTrainer(model=load_model(config), args=config, train_dataset=dataset, processing_class=tokenizer)
    resume = checkpoint_to_resume(config)
    trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, config, "pretrain", started, {"train_rows": len(dataset), "resumed_from": resume})


def main(argv: Sequence[str] | None = None) -> dict:
    setup_logging()
    return train(parse_config(SFTStageConfig, argv))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["pretrain", *sys.argv[1:]]))
