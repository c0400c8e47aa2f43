"""SFT stage: the cold start (pipeline stage 1) and SFT stage 2 on the rejection-sampled mix.

    make stage1 RECIPE=recipes/demo/stage1.yaml
    python -m r1_recipe.sft --config recipes/Qwen2.5-1.5B/stage1/cold_start.yaml

A thin wrapper over TRL's ``SFTTrainer``. Features and the recipe keys that turn them on:

- loss on the assistant turn only: always (rows become prompt/completion pairs);
- sequence packing: ``packing: true`` (TRL's);
- weighted loss L = α·L_reasoning + (1−α)·L_general over the ``source`` column:
  ``reasoning_alpha: α`` (per-example weights 2α and 2(1−α), so α = 0.5 is the plain mean);
- auto-resume from the last ``checkpoint-N`` in ``output_dir``: ``resume: true`` (default);
- the R1 or R1-Zero template: ``template: r1 | r1_zero``;
- the chat template's end of turn as the saved EOS (chat rows): always, or TRL's ``eos_token``.

Writes the model, tokenizer, ``resolved_config.yaml`` and ``results.json`` to ``output_dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset
from trl import SFTTrainer

from r1_recipe.configs import SFTStageConfig, parse_config
from r1_recipe.data.loading import to_sft
from r1_recipe.data.templates import hidden_tags_problem
from r1_recipe.stage import (
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_model,
    load_tokenizer,
    load_train_data,
    setup_logging,
    use_end_of_turn_as_eos,
)

logger = logging.getLogger(__name__)


def source_weights(sources: Sequence[str], alpha: float) -> list[float]:
    """Per-example weights 2α (reasoning) and 2(1−α) (general): α = 0.5 gives all ones.

    >>> source_weights(["reasoning", "general"], 0.75)
    [1.5, 0.5]
    """
    return [2 * alpha if s != "general" else 2 * (1 - alpha) for s in sources]


def build_dataset(config: SFTStageConfig) -> Dataset:
    ds = load_train_data(config)
    if config.max_train_samples:
        ds = ds.select(range(min(config.max_train_samples, len(ds))))
    ds = to_sft(
        ds,
        template=config.template,
        system_prompt=config.system_prompt,
        problem_column=config.problem_column,
        reasoning_column=config.reasoning_column,
        answer_column=config.answer_column,
        where=f"dataset_mixture of {config.output_dir}",
    )
    if config.reasoning_alpha is not None:
        sources = ds["source"] if "source" in ds.column_names else ["reasoning"] * len(ds)
        ds = ds.add_column("loss_weight", source_weights(sources, config.reasoning_alpha))
    return ds.remove_columns([c for c in ("source",) if c in ds.column_names])


@dataclass
class _WithLossWeights:
    """Collator wrapper: TRL's collator pads the tokens, this one carries ``loss_weight``."""

    inner: Callable

    def __call__(self, examples: list[dict]) -> dict:
        weights = torch.tensor([float(e["loss_weight"]) for e in examples])
        batch = self.inner([{k: v for k, v in e.items() if k != "loss_weight"} for e in examples])
        batch["loss_weight"] = weights
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose token losses are scaled by a per-example ``loss_weight`` column.

    Without the column it is TRL's trainer unchanged. With it, the loss is
    Σ_b w_b Σ_t nll_bt / N_tokens — TRL's token-mean loss with each sequence's tokens weighted.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "loss_weight" in (self.train_dataset.column_names or []):
            self.data_collator = _WithLossWeights(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "loss_weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "loss_weight"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("loss_weight", None)
        if weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        per_token = -outputs.log_probs * weights.to(outputs.log_probs.dtype)[:, None]
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


def train(config: SFTStageConfig) -> dict:
    """Run the stage; return the results written to ``results.json``."""
    started = time.time()
    configure_tracking(config)
    tokenizer = load_tokenizer(config)
    if problem := hidden_tags_problem(tokenizer, config.model_name_or_path):  # RL after SFT would fail
        logger.warning(problem)
    dataset = build_dataset(config)
    logger.info("SFT on %d rows from %s", len(dataset), config.model_name_or_path)
    model = load_model(config)
    use_end_of_turn_as_eos(tokenizer, model, dataset, eos_token=config.eos_token)  # stop at the end of the answer
    trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    resume = checkpoint_to_resume(config)
    trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, config, "sft", started, {"train_rows": len(dataset), "resumed_from": resume})


def main(argv: Sequence[str] | None = None) -> dict:
    setup_logging()
    return train(parse_config(SFTStageConfig, argv))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["sft", *sys.argv[1:]]))
