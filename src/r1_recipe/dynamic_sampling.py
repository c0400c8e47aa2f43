"""DAPO's dynamic sampling over TRL's ``GRPOTrainer``: train only on groups whose rewards differ.

    dynamic_sampling: true        # in a GRPO recipe
    max_generation_batches: 4     # generation batches one optimizer step may sample, the first included
    dynamic_sampling_rewards: [accuracy, code]   # optional: only these rewards' spread counts (DAPO's rule)

A group whose completions all earn the same reward has zero advantage: it costs a generation and
a backward pass and teaches nothing (only the KL term moves). With ``dynamic_sampling`` the
trainer scores a generation batch as TRL does, keeps the groups whose reward spread is not zero,
and scores further batches of prompts (a stream of its own, seeded apart from TRL's) until every
process holds as many informative groups as one generation batch has groups, or until
``max_generation_batches`` batches were sampled. Short of groups then, it trains on what it has:
the informative groups, padded with zero-spread ones (advantage 0, so they add no policy
gradient, only their KL term and tokens, as in plain TRL) to the batch size TRL expects, and logs
a warning. By default a group is informative when the weighted reward its advantages come from
spreads; ``dynamic_sampling_rewards`` narrows that to some rewards (DAPO keeps a group when its
*accuracy* differs: small shaping rewards such as format or language consistency almost always
differ a little, so by the total no group is ever dropped). Logged each step: ``dynamic_sampling/dropped_share`` (zero-spread share of the groups
sampled), ``dynamic_sampling/generation_batches`` and ``dynamic_sampling/informative_share`` (of
the groups trained on). TRL's own ``reward``, ``frac_reward_zero_std`` and ``completions/*`` then
describe every sampled batch, dropped groups included.

It works on the *scored* batch, after generation, so it is independent of the generation backend
(vLLM colocate or server, transformers ``generate``) and of ``loss_type``: the advantages TRL
computed for a kept group are kept as they are, and ``num_items_in_batch`` (the token count the
``dapo``/``cispo``/``vespo`` losses divide by) is recounted for the assembled batch. Groups never
leave the process that sampled them: the local generation batch (``per_device_train_batch_size ×
steps_per_generation``) must hold whole groups (checked by the config), so each process keeps whole
groups of its own and every process samples the same number of batches (TRL's collectives).

Where it departs from DAPO/verl: surplus informative groups of the last batch are dropped, not
carried over (they would be off-policy by the next step); the old and reference log-probs of
dropped groups are computed by TRL before the choice (we do not fork its scoring); the refill
stream is not restored on resume (it restarts, seeded by the step). Multimodal batches are refused.

TRL internals relied on (TRL 1.16; ``tests/test_dynamic_sampling.py::test_trl_internals_it_relies_on``
fails if they change): ``GRPOTrainer._generate_and_score_completions(inputs)`` returns the local
scored batch as a dict of tensors (keys in :data:`ROW_KEYS`, plus ``num_items_in_batch``) whose
rows are the inputs' rows in order; ``_calculate_rewards`` returns the rewards of every process's
rows (gathered, process-major); ``reward_weights``, ``reward_func_names``, ``num_generations``,
``multi_objective_aggregation``, ``_metrics``, ``_tokenizer``, ``_get_dataloader`` and
:class:`trl.trainer.grpo_trainer.RepeatSampler` (the reward-health hook in :mod:`r1_recipe.grpo`
also reads ``eos_token_ids`` and ``_pending_metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import count
from typing import Any

import torch
from torch.utils.data import IterableDataset
from trl import GRPOTrainer
from trl.trainer.grpo_trainer import RepeatSampler
from trl.trainer.utils import nanstd

logger = logging.getLogger(__name__)

PREFIX = "dynamic_sampling/"

# Per-row tensors of TRL's scored batch and how each is padded: (side, value); None = not padded.
# PAD_ID: the tokenizer's pad id (filled in at run time).
PAD_ID = "pad id"
ROW_KEYS: dict[str, tuple[str, float | str] | None] = {
    "prompt_ids": ("left", PAD_ID),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", PAD_ID),
    "completion_mask": ("right", 0),
    "advantages": None,
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 0.0),
    "tool_mask": ("right", 1),
}


def informative_groups(rewards_per_func: torch.Tensor, weights: torch.Tensor, group_size: int,
                       aggregation: str = "sum_then_normalize") -> torch.Tensor:
    """One bool per group of ``group_size`` consecutive rows: do its rewards differ?

    As TRL computes advantages: with ``sum_then_normalize`` the weighted sum of the rewards (None/NaN
    skipped; a row no reward scored is NaN) must spread; with ``normalize_then_sum`` any one weighted
    reward must. "No spread" is TRL's own ``frac_reward_zero_std`` test (std close to 0), and a group
    with fewer than two scored rows has none.

    >>> r = torch.tensor([[1.0, 0.1], [1.0, 0.1], [0.0, 0.1], [1.0, 0.1], [float("nan"), 0.0], [float("nan"), 0.0]])
    >>> informative_groups(r, torch.tensor([1.0, 1.0]), 2).tolist()
    [False, True, False]
    """
    if aggregation == "normalize_then_sum":
        grouped = rewards_per_func[:, weights != 0].view(-1, group_size, int((weights != 0).sum()))
        std = nanstd(grouped, dim=1)
        return (~torch.isnan(std) & ~torch.isclose(std, torch.zeros_like(std))).any(dim=1)
    total = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    total[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    std = nanstd(total.view(-1, group_size), dim=1)
    return ~torch.isnan(std) & ~torch.isclose(std, torch.zeros_like(std))


def _pad_cat(tensors: list[torch.Tensor], side: str, value: float) -> torch.Tensor:
    width = max(t.size(1) for t in tensors)
    padded = []
    for t in tensors:
        extra = width - t.size(1)
        if extra:
            fill = t.new_full((t.size(0), extra), value)
            t = torch.cat([fill, t] if side == "left" else [t, fill], dim=1)
        padded.append(t)
    return torch.cat(padded)


def assemble(parts: list[tuple[dict[str, Any], slice]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One scored batch from row ranges of several: each tensor padded to the widest (prompts on the
    left, completions on the right, as TRL pads them) and concatenated; ``num_items_in_batch`` is
    left to the caller (it is a count over every process)."""
    keys = [k for k in parts[0][0] if k != "num_items_in_batch"]
    unknown = [k for k in keys if k not in ROW_KEYS]
    if unknown:
        raise ValueError(f"dynamic_sampling cannot assemble scored batches with {unknown} (multimodal inputs): "
                         "set dynamic_sampling: false for this model")
    out = {}
    for key in keys:
        if parts[0][0][key] is None:
            out[key] = None
            continue
        pieces = [batch[key][rows] for batch, rows in parts]
        how = ROW_KEYS[key]
        if how is None or pieces[0].dim() < 2:
            out[key] = torch.cat(pieces)
        else:
            side, value = how
            out[key] = _pad_cat(pieces, side, pad_token_id if value == PAD_ID else value)
    return out


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with DAPO's dynamic sampling (off unless ``dynamic_sampling=True``)."""

    def __init__(self, *args, dynamic_sampling: bool = False, max_generation_batches: int = 4,
                 dynamic_sampling_rewards: Sequence[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.max_generation_batches = max_generation_batches
        names = list(self.reward_func_names)
        unknown = [n for n in dynamic_sampling_rewards or () if n not in names]
        if unknown:
            raise ValueError(f"dynamic_sampling_rewards {unknown} are not among the reward_funcs {names}")
        self._spread_columns = [names.index(n) for n in dynamic_sampling_rewards] if dynamic_sampling_rewards else None
        if dynamic_sampling and isinstance(self.train_dataset, IterableDataset):
            raise ValueError("dynamic_sampling needs an indexable dataset (it samples further prompts by index); "
                             "the train dataset is an IterableDataset: set dynamic_sampling: false or load it whole")
        self._last_rewards_per_func: torch.Tensor | None = None
        self._refill: Any = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func  # every process's rows, process-major
        return rewards_per_func

    def _local_informative(self, n_local: int) -> torch.Tensor:
        g = self.num_generations
        rows = slice(self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local)
        local, weights = self._last_rewards_per_func[rows], self.reward_weights.to(self._last_rewards_per_func.device)
        if self._spread_columns is not None:  # only these rewards decide (DAPO: the verifier's)
            local, weights = local[:, self._spread_columns], weights[self._spread_columns]
        return informative_groups(local, weights, g, self.multi_objective_aggregation)

    def _refill_batches(self):
        """Generation batches of further prompts, as TRL's dataloader shards them, each batch new."""
        for epoch in count():
            seed = self.args.seed + 1 + epoch + 1000 * self.state.global_step  # apart from TRL's stream, and on resume
            sampler = RepeatSampler(self.train_dataset, mini_repeat_count=self.num_generations,
                                    batch_size=self.args.generation_batch_size // self.num_generations,
                                    repeat_count=1, shuffle=self.shuffle_dataset, seed=seed)
            yield from self._get_dataloader(self.train_dataset, "Dynamic sampling",
                                            batch_size=self._train_batch_size * self.args.steps_per_generation,
                                            sampler_fn=lambda _: sampler, is_training=True)

    def _generate_and_score_completions(self, inputs):
        if not self.dynamic_sampling or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        g, device = self.num_generations, self.accelerator.device
        n_local = len(inputs)
        if n_local % g:
            raise ValueError(f"dynamic_sampling: this process's generation batch has {n_local} rows, not a multiple "
                             f"of num_generations {g}; make per_device_train_batch_size × steps_per_generation one")
        wanted = n_local // g
        kept: list[tuple[dict, slice]] = []
        spare: list[tuple[dict, slice]] = []
        sampled = dropped = batches = 0
        while True:
            scored = super()._generate_and_score_completions(inputs)
            batches += 1
            informative = self._local_informative(n_local).tolist()
            for i, ok in enumerate(informative):
                (kept if ok else spare).append((scored, slice(i * g, (i + 1) * g)))
            sampled += len(informative)
            dropped += informative.count(False)
            missing = torch.tensor([max(0, wanted - len(kept))], device=device)
            if self.accelerator.gather(missing).max().item() == 0 or batches >= self.max_generation_batches:
                break
            if self._refill is None:
                self._refill = self._refill_batches()
            inputs = next(self._refill)
        chosen = kept[:wanted] + spare[: max(0, wanted - len(kept))]
        batch = assemble(chosen, self._tokenizer.pad_token_id)
        loss_mask = batch["completion_mask"] if batch.get("tool_mask") is None else batch["completion_mask"] * batch["tool_mask"]
        batch["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        counts = self.accelerator.gather(torch.tensor([sampled, dropped, min(len(kept), wanted)], device=device))
        counts = counts.view(-1, 3).sum(dim=0).tolist()
        informative_share = counts[2] / (wanted * self.accelerator.num_processes)
        metrics = self._metrics["train"]
        metrics[PREFIX + "dropped_share"].append(counts[1] / counts[0])
        metrics[PREFIX + "generation_batches"].append(float(batches))
        metrics[PREFIX + "informative_share"].append(informative_share)
        if informative_share < 1:
            logger.warning("dynamic sampling: %d of %d groups informative after %d generation batches "
                           "(max_generation_batches); training on them and %d zero-spread groups",
                           counts[2], wanted * self.accelerator.num_processes, batches,
                           wanted * self.accelerator.num_processes - counts[2])
        return batch
