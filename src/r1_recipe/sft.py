"""SFT stage: the cold start (pipeline stage 1) and SFT stage 2 on the rejection-sampled mix.

    make stage1 RECIPE=recipes/demo/stage1.yaml
    python -m r1_recipe.sft --config recipes/Qwen2.5-1.5B/stage1/cold_start.yaml

A thin wrapper over TRL's ``SFTTrainer``. Features and the recipe keys that turn them on:

- loss on the assistant turn only: always (rows become prompt/completion pairs);
- sequence packing: ``packing: true`` (TRL's);
- weighted loss L = α·L_reasoning + (1−α)·L_general over the ``source`` column:
  ``reasoning_alpha: α`` (see "The weighted loss" below);
- auto-resume from the last ``checkpoint-N`` in ``output_dir``: ``resume: true`` (default);
- the R1 or R1-Zero template: ``template: r1 | r1_zero``;
- the chat template's end of turn as the saved EOS (chat rows): always, or TRL's ``eos_token``;
- LoRA / QLoRA through TRL's ``peft_config``: ``use_peft: true`` (see :mod:`r1_recipe.lora`).

Writes the model, tokenizer, ``resolved_config.yaml`` and ``results.json`` to ``output_dir``.

The weighted loss. Each part is the token mean of its own kind over the whole optimizer step —
every gradient-accumulation micro-batch and, with ``average_tokens_across_devices`` (TRL's and
transformers' default), every process — then the parts are mixed:

    L = α · Σ_reasoning nll / N_reasoning + (1 − α) · Σ_general nll / N_general

where N counts the completion tokens of that kind in the step. This is what transformers does
for the plain loss with ``num_items_in_batch`` (the token count of the step, gathered across
processes), done once per kind: ``get_batch_samples`` counts both kinds over the step's
micro-batches (one all-gather), each micro-batch's loss is its share of L, and the Trainer adds
the shares without dividing by the accumulation steps. So α = 1 is SFT on the reasoning rows
alone and α = 0 on the general rows alone, whatever the lengths of either. Choices:

- ``source`` must be ``reasoning`` or ``general`` on every row; anything else (a typo, or None
  from a mixture entry without the column) is a :class:`DataError` naming the row, its value
  and the fix (``source: ...`` on that ``dataset_mixture`` entry).
- No ``source`` column, or one kind only: there is nothing to mix, so the stage trains plain
  SFT (TRL's token-mean loss) and logs a warning that ``reasoning_alpha`` has no effect — not
  α·L, which would only rescale the learning rate.
- A step that holds no token of one kind: that part is 0 (the mean of nothing, as TRL's loss
  clamps 0/0 to 0); α stays the absolute weight of each part rather than being renormalised.
- With ``average_tokens_across_devices: false`` the counts are per process and DDP averages
  the per-process mixes. Evaluation batches use their own counts.
- ``packing`` and ``padding_free`` are refused (configs.py): a packed row holds both kinds.
- The loss comes from TRL's fused LM head (no full logits); its entropy and token accuracy
  are logged as TRL logs them. A MoE router loss is not added.
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
from r1_recipe.data.loading import DataError, to_sft
from r1_recipe.data.templates import hidden_tags_problem
from r1_recipe.lora import peft_config_for
from r1_recipe.stage import (
    check_before_training,
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


KINDS = ("reasoning", "general")  # loss_kind 0 and 1
STEP_TOKENS = "step_tokens_by_kind"  # per-kind token counts of the optimizer step, put on every batch


def source_kinds(ds: Dataset, *, where: str) -> list[int] | None:
    """Each row's kind (0 reasoning, 1 general) from ``source``; None when there is nothing to mix."""
    if "source" not in ds.column_names:
        logger.warning("%s: no `source` column, so every row is one kind and reasoning_alpha has no effect: "
                       "training plain SFT. Tag rows with `source: reasoning` / `source: general` on each "
                       "dataset_mixture entry to mix them.", where)
        return None
    sources = ds["source"]
    for index, value in enumerate(sources):
        if value not in KINDS:
            problem = ds[index].get("problem")
            shown = f" (problem {str(problem)[:60]!r})" if problem else ""
            raise DataError(
                f"{where}: row {index}{shown} has source {value!r}; reasoning_alpha needs every row's `source` "
                "to be 'reasoning' or 'general'. Fix the data, or set `source: reasoning` or `source: general` "
                "on its dataset_mixture entry.")
    kinds = [KINDS.index(value) for value in sources]
    if len(set(kinds)) < 2:
        logger.warning("%s: every row has source %r, so reasoning_alpha has no effect: training plain SFT.",
                       where, sources[0] if sources else None)
        return None
    return kinds


def build_dataset(config: SFTStageConfig) -> Dataset:
    ds = load_train_data(config, {config.problem_column: "problem_column", config.reasoning_column: "reasoning_column",
                                  config.answer_column: "answer_column"})
    if config.max_train_samples:
        ds = ds.select(range(min(config.max_train_samples, len(ds))))
    where = f"dataset_mixture of {config.output_dir}"
    kinds = source_kinds(ds, where=where) if config.reasoning_alpha is not None else None
    ds = to_sft(
        ds,
        template=config.template,
        system_prompt=config.system_prompt,
        problem_column=config.problem_column,
        reasoning_column=config.reasoning_column,
        answer_column=config.answer_column,
        where=where,
    )
    ds = ds.remove_columns([c for c in ("source",) if c in ds.column_names])
    return ds if kinds is None else ds.add_column("loss_kind", kinds)


@dataclass
class _WithLossKinds:
    """Collator wrapper: TRL's collator pads the tokens, this one carries ``loss_kind``."""

    inner: Callable

    def __call__(self, examples: list[dict]) -> dict:
        kinds = torch.tensor([int(e["loss_kind"]) for e in examples])
        batch = self.inner([{k: v for k, v in e.items() if k != "loss_kind"} for e in examples])
        batch["loss_kind"] = kinds
        return batch


def mix_by_kind(row_nll: torch.Tensor, kinds: torch.Tensor, step_tokens: torch.Tensor, alpha: float) -> torch.Tensor:
    """This micro-batch's share of α·L_reasoning + (1−α)·L_general, each L a token mean over the step.

    ``row_nll`` [B] sums each row's token losses; ``step_tokens`` [2] counts each kind's tokens in
    the whole step. Summed over the step's micro-batches the shares give the mix.

    >>> mix_by_kind(torch.tensor([6.0, 1.0]), torch.tensor([0, 1]), torch.tensor([3, 1]), 0.75).item()
    1.75
    """
    coef = torch.tensor([alpha, 1.0 - alpha], device=row_nll.device, dtype=row_nll.dtype)
    coef = coef / step_tokens.to(row_nll.device, row_nll.dtype).clamp(min=1)
    return (row_nll * coef[kinds.to(row_nll.device)]).sum()


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with the loss α·L_reasoning + (1−α)·L_general over a ``loss_kind`` column.

    Without the column (or without ``reasoning_alpha``) it is TRL's trainer unchanged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reasoning_alpha = getattr(self.args, "reasoning_alpha", None)
        self.mixes_kinds = self.reasoning_alpha is not None and "loss_kind" in (self.train_dataset.column_names or [])
        if self.mixes_kinds:
            self.data_collator = _WithLossKinds(self.data_collator)
            self.loss_is_scaled_for_ga = True  # each micro-batch's loss is already its share of the step's

    @property
    def counts_step_tokens(self) -> bool:
        """Whether ``get_batch_samples`` puts the step's per-kind token counts on every batch."""
        return self.mixes_kinds

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "loss_kind" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "loss_kind"]

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.counts_step_tokens and batch_samples:
            counts = self.step_tokens_by_kind(batch_samples, device)
            for batch in batch_samples:
                batch[STEP_TOKENS] = counts
        return batch_samples, num_items_in_batch

    def step_tokens_by_kind(self, batch_samples: list[dict], device) -> torch.Tensor:
        """Completion tokens of each kind in these micro-batches, summed over processes when the
        Trainer averages tokens across devices (rows without ``loss_kind`` count as kind 0)."""
        counts = torch.zeros(len(KINDS), dtype=torch.long, device=device)
        for batch in batch_samples:
            per_row = (batch["labels"][:, 1:] != -100).sum(dim=1).to(device)
            kinds = batch.get("loss_kind")
            kinds = torch.zeros_like(per_row) if kinds is None else kinds.to(device)
            counts.scatter_add_(0, kinds, per_row)
        if self.gathers_step_tokens:
            counts = self.accelerator.gather(counts).view(-1, len(KINDS)).sum(dim=0)
        return counts

    @property
    def gathers_step_tokens(self) -> bool:
        return bool(self.args.average_tokens_across_devices) and self.accelerator.num_processes > 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kinds = inputs.pop("loss_kind", None)
        step_tokens = inputs.pop(STEP_TOKENS, None)
        if kinds is None or not self.mixes_kinds:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        row_nll = -outputs.log_probs.sum(dim=1)  # zero on ignored positions
        if step_tokens is None:  # evaluation: this batch on its own
            counts = torch.zeros(len(KINDS), dtype=torch.long, device=row_nll.device)
            step_tokens = counts.scatter_add_(0, kinds.to(row_nll.device), outputs.label_mask.sum(dim=1))
        elif self.gathers_step_tokens:  # the counts span every process and DDP averages the gradients
            row_nll = row_nll * self.accelerator.num_processes
        loss = mix_by_kind(row_nll, kinds, step_tokens, self.reasoning_alpha)
        self._log_token_metrics(outputs)
        return (loss, outputs) if return_outputs else loss

    def _log_token_metrics(self, outputs) -> None:
        """Entropy and token accuracy, as TRL's ``compute_loss`` logs them."""
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.label_mask.sum()).sum()
        if outputs.entropy is not None and valid > 0:
            self._metrics[mode]["entropy"].append((gather(outputs.entropy.detach().sum()).sum() / valid).item())
        if outputs.is_top1 is not None and valid > 0:
            self._metrics[mode]["mean_token_accuracy"].append((gather(outputs.is_top1.sum()).sum() / valid).item())


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
    trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=peft_config_for(config, model))
    check_before_training(trainer, config)
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
