"""GRPO stage: RL stage 1 (from the cold start), RL stage 2 and R1-Zero (from a base model).

    make rl1 RECIPE=recipes/demo/rl1.yaml
    make zero RECIPE=recipes/demo/zero.yaml
    python -m r1_recipe.grpo --config recipes/Qwen2.5-1.5B/rl1/config_node.yaml

A thin wrapper over TRL's ``GRPOTrainer``. Features and the recipe keys that turn them on:

- rewards looked up by name in :data:`r1_recipe.rewards.REWARDS`: ``reward_funcs: [accuracy,
  format]``, ``reward_weights: [1.0, 0.2]``, options per reward ``reward_kwargs: {accuracy:
  {timeout: 5}}`` (``accuracy`` reads ``answer_column`` unless told otherwise); TRL logs each
  as ``rewards/<name>/mean``;
- R1 chat prompts or the plain R1-Zero prompt: ``template: r1 | r1_zero``;
- every GRPO knob of TRL from the YAML: group size ``num_generations``, ``loss_type``, KL
  ``beta``, ``scale_rewards`` (``none`` = the design's A = R − mean), clip-higher
  ``epsilon_high``, ``mask_truncated_completions``, ``temperature``, ``num_iterations``;
- generation by vLLM: ``use_vllm: true`` with ``vllm_mode: colocate`` (one node) or ``server``
  (``trl vllm-serve`` on its own GPUs/node); transformers ``generate`` otherwise (CPU);
- a start-up check that the generation batch holds whole groups, naming the keys to change;
- generation stops at the chat template's end of turn (chat prompts), which becomes the saved
  EOS as after SFT (see :mod:`r1_recipe.stage`); ``eos_token`` overrides it;
- "aha" signals, logged to the trainer's reporters as ``aha/*`` and written one JSON line per
  logging step to ``output_dir/aha_metrics.jsonl``: completion length, the share of completions
  whose reasoning self-corrects (``aha_phrases``), the language consistency of the reasoning
  (``aha_language``);
- DAPO's dynamic sampling: ``dynamic_sampling: true`` drops groups whose rewards do not differ and
  samples further prompts until the batch holds only informative groups, at most
  ``max_generation_batches`` generation batches per step (:mod:`r1_recipe.dynamic_sampling`);
  logged as ``dynamic_sampling/*``;
- reward health every step, ``health/*``: unparsed references, no final answer, paid for format
  while wrong, truncated, verifier timeouts; ``reward_health: {stop_if: {unparsed_reference: 0.2}}``
  stops the run on a share (:mod:`r1_recipe.reward_health`; by default it only warns);
- auto-resume from the last ``checkpoint-N`` in ``output_dir``: ``resume: true`` (default);
- LoRA / QLoRA through TRL's ``peft_config``: ``use_peft: true`` (see :mod:`r1_recipe.lora`); with
  ``beta > 0`` TRL's reference log-probs come from the base with the adapter disabled (no second
  model in memory), and vLLM is sent merged weights.

Writes the model, tokenizer, ``resolved_config.yaml`` and ``results.json`` to ``output_dir``.

Where this departs from the paper: no critic-free *group of 64* on CPU (the demo uses 8), and
the KL term is TRL's k3 estimator on the sampled tokens (``beta``; 0 in the demo, as in
DAPO/Dr. GRPO), not the paper's per-step reference resets.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from r1_recipe.configs import ConfigError, GRPOStageConfig, parse_config
from r1_recipe.data.end_of_turn import stop_token_ids
from r1_recipe.data.loading import check_reward_types, to_prompts
from r1_recipe.data.templates import hidden_tags_problem
from r1_recipe.dynamic_sampling import PREFIX as DS_PREFIX
from r1_recipe.dynamic_sampling import DynamicSamplingGRPOTrainer
from r1_recipe.reward_health import HEALTH, HealthLimits, health_stats, row_ids
from r1_recipe.reward_health import PREFIX as HEALTH_PREFIX
from r1_recipe.reward_health import shares as health_shares
from r1_recipe.rewards.base import PREFILL_COLUMN, final_answer, mark_prefilled, texts
from r1_recipe.rewards.extract import split_reasoning
from r1_recipe.rewards.language import language_share
from r1_recipe.lora import peft_config_for
from r1_recipe.model_folders import trl_reference_through_load_folder
from r1_recipe.stage import (
    check_before_training,
    check_reward_columns,
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_model,
    load_tokenizer,
    load_train_data,
    reward_funcs_for,
    setup_logging,
    use_end_of_turn_as_eos,
)

logger = logging.getLogger(__name__)

AHA_PREFIX = "aha/"


# --- aha metrics -------------------------------------------------------------------------------


def phrase_pattern(phrases: Sequence[str]) -> re.Pattern | None:
    """One case-insensitive regex matching any phrase as whole words (None: no phrases).

    >>> bool(phrase_pattern(["wait", "let me check"]).search("Hmm, WAIT. 4+4=8"))
    True
    >>> bool(phrase_pattern(["wait"]).search("the waiter"))
    False
    """
    phrases = [p.strip() for p in phrases if p.strip()]
    if not phrases:
        return None
    alternatives = sorted((r"\s+".join(map(re.escape, p.split())) for p in phrases), key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def aha_metrics(
    completions: Sequence[Any],
    *,
    prompts: Sequence[Any] | None = None,
    lengths: Sequence[int] | None = None,
    phrases: Sequence[str] | re.Pattern | None = None,
    language: str = "en",
    prefilled: Sequence[Any] | None = None,
) -> dict[str, float]:
    """The aha-moment signals of one batch of completions.

    - ``completion_length``: mean tokens (``lengths``) or characters per completion;
    - ``self_correction``: share of completions whose reasoning (the whole text when there is
      no ``</think>``) contains a self-correction phrase;
    - ``language_consistency``: mean share of reasoning words in ``language``'s script (0 for
      completions with no closed reasoning block, as the reward scores them);
    - ``distinct_answers`` (with ``prompts``): per group of samples of one prompt (consecutive equal
      prompts), distinct final answers / samples, averaged over groups (no answer counts as one
      answer): it falls towards 1/G when the policy collapses onto one answer per problem.

    >>> m = aha_metrics(["<think>5+5=11, wait: 10</think> \\\\boxed{10}", "<think>5+5=10</think> \\\\boxed{10}"],
    ...                 lengths=[12, 8], phrases=["wait"])
    >>> m["completion_length"], m["self_correction"], m["language_consistency"]
    (10.0, 0.5, 1.0)
    >>> aha_metrics(["\\\\boxed{1}", "\\\\boxed{1}", "\\\\boxed{2}", "x"], prompts=["p", "p", "q", "q"])["distinct_answers"]
    0.75
    """
    pattern = phrases if isinstance(phrases, re.Pattern) or phrases is None else phrase_pattern(phrases)
    bodies = texts(completions, prompts, prefilled)  # prefilled: the template opened <think>
    n = max(1, len(bodies))
    corrected, consistency = 0, 0.0
    for text in bodies:
        reasoning, _ = split_reasoning(text)
        if pattern is not None and pattern.search(reasoning if reasoning is not None else text):
            corrected += 1
        consistency += language_share(reasoning, language)
    sizes = list(lengths) if lengths is not None else [len(t) for t in bodies]
    metrics = {
        "completion_length": sum(sizes) / max(1, len(sizes)),
        "self_correction": corrected / n,
        "language_consistency": consistency / n,
    }
    if prompts is not None and len(prompts) == len(completions) and completions:
        groups: list[list] = []
        for i, completion in enumerate(completions):
            if not groups or prompts[i] != prompts[i - 1]:
                groups.append([])
            groups[-1].append(final_answer(completion, prompts[i], prefilled[i] if prefilled else None))
        metrics["distinct_answers"] = sum(len(set(g)) / len(g) for g in groups) / len(groups)
    return metrics


class AhaLogFile(TrainerCallback):
    """Appends one JSON line per logging step (step, aha/*, rewards, length) to a file.

    On resume the lines after the checkpoint's step are dropped first, so a resumed run's file
    reads as one run.
    """

    KEEP = ("reward", "reward_std", "completions/mean_length", "kl", "entropy", "learning_rate", "loss")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in rows if r.get("step", 0) <= state.global_step]
        if len(kept) != len(rows):
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or not any(k.startswith(AHA_PREFIX) for k in logs):
            return
        row = {"step": state.global_step}
        row.update({k: v for k, v in logs.items()
                    if k.startswith(AHA_PREFIX) or (k.startswith("rewards/") and k.endswith("/mean")) or k in self.KEEP})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class TimeBudget(TrainerCallback):
    """Stops training (saving a checkpoint) once ``seconds`` of this run's training have passed.

    A demo promised to finish "within 5 minutes" must not run 15 on a busy machine; the steps
    it did run are reported in ``results.json``.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None and time.time() - self.started >= self.seconds:
            logger.warning("max_train_seconds %.0f reached at step %d: stopping", self.seconds, state.global_step)
            control.should_training_stop = True
            control.should_save = True


LOGGED = ("rewards/", AHA_PREFIX, HEALTH_PREFIX, DS_PREFIX, "frac_reward_zero_std")


def over_training(log_history: Sequence[dict]) -> dict:
    """Means over the run's logged steps of the zero-spread share (TRL's ``frac_reward_zero_std``),
    the dynamic-sampling numbers and the reward-health shares (for ``results.json``)."""
    keys = sorted({k for e in log_history for k in e if k.startswith(LOGGED[2:])})
    out = {}
    for key in keys:
        values = [e[key] for e in log_history if key in e]
        out[key] = sum(values) / len(values)
    return {"mean_over_training": out} if out else {}


def read_aha_log(path: str | Path) -> list[dict]:
    """The rows of an ``aha_metrics.jsonl`` file (for plots and reports)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --- the trainer -------------------------------------------------------------------------------


class AhaGRPOTrainer(DynamicSamplingGRPOTrainer):
    """TRL's ``GRPOTrainer`` that also reports the aha signals and the reward health of each
    generation batch, with dynamic sampling (:mod:`r1_recipe.dynamic_sampling`) when asked.

    The aha signals are computed where TRL scores the completions and go through TRL's own
    ``log_metric`` hook, so they are averaged across processes and logging steps like ``kl`` or
    ``entropy``. The health shares (:mod:`r1_recipe.reward_health`) are summed over processes as
    counts, logged as ``health/*`` and checked against ``reward_health`` limits on every process
    alike, so a stop stops every rank.
    """

    def __init__(self, *args, aha_phrases: Sequence[str] = (), aha_language: str = "en",
                 reward_health: dict | None = None, **kwargs):
        # beta > 0: the reference is the starting policy (base + adapter), with real weights on every rank
        with trl_reference_through_load_folder(getattr(kwargs.get("args"), "model_name_or_path", None)):
            super().__init__(*args, **kwargs)
        self._aha_pattern = phrase_pattern(aha_phrases)
        self._aha_language = aha_language
        self._health = HealthLimits(reward_health)

    def _check_health(self, inputs, prompts, completions, completion_ids_list, rewards) -> None:
        n = len(inputs)
        local = rewards[self.accelerator.process_index * n:(self.accelerator.process_index + 1) * n]
        ends = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        timeouts = sum(sum(v) for k, v in self._pending_metrics.items() if k.endswith("/timeouts"))
        counts, flagged = health_stats(self.reward_funcs, local.T.tolist(), inputs, completions, prompts=prompts,
                                       truncated=[not ids or ids[-1] not in ends for ids in completion_ids_list],
                                       timeouts=timeouts)
        totals = self.accelerator.gather(torch.tensor([c for name in HEALTH for c in counts[name]],
                                                      dtype=torch.float64, device=local.device))
        totals = totals.view(-1, len(HEALTH), 2).sum(dim=0).tolist()
        found = health_shares({name: tuple(totals[k]) for k, name in enumerate(HEALTH)})
        mode = "train" if self.model.training else "eval"
        for name, share in found.items():
            self._metrics[mode][HEALTH_PREFIX + name].append(share)
        self._health.check(found, step=self.state.global_step,
                           examples={name: row_ids(inputs, flagged[name]) for name in HEALTH})

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._check_health(inputs, prompts, completions, completion_ids_list, rewards)
        metrics = aha_metrics(
            completions,
            prompts=prompts,
            lengths=[len(ids) for ids in completion_ids_list],
            phrases=self._aha_pattern,
            language=self._aha_language,
            prefilled=[x.get(PREFILL_COLUMN) for x in inputs],
        )
        for name, value in metrics.items():
            self._log_metric(AHA_PREFIX + name, value)
        return rewards


# --- the stage ---------------------------------------------------------------------------------


def build_reward_funcs(config: GRPOStageConfig) -> list:
    """The recipe's rewards (see :func:`r1_recipe.stage.reward_funcs_for`)."""
    return reward_funcs_for(config)


def build_dataset(config: GRPOStageConfig) -> Dataset:
    """The prompts, every dataset column kept: TRL hands each to the rewards, which is how
    ``accuracy`` reads a row's ``solution``, ``code`` its ``verification_info`` and every reward
    its ``reward_type`` (one batch mixes math, code and general rows; each reward returns None
    on the rows it does not score, which TRL's nan-aware sums and group statistics skip)."""
    ds = load_train_data(config, {config.problem_column: "problem_column"})
    check_reward_types(ds, f"dataset_mixture of {config.output_dir}")
    if config.max_train_samples:
        ds = ds.select(range(min(config.max_train_samples, len(ds))))
    return to_prompts(
        ds,
        template=config.template,
        system_prompt=config.system_prompt,
        problem_column=config.problem_column,
        where=f"dataset_mixture of {config.output_dir}",
    )


def build_trainer(config: GRPOStageConfig) -> AhaGRPOTrainer:
    """Everything up to ``train()``: tokenizer, prompts, rewards, model, callbacks."""
    configure_tracking(config)
    tokenizer = load_tokenizer(config)
    if problem := hidden_tags_problem(tokenizer, config.model_name_or_path):
        raise ConfigError(problem)
    # A template that opens <think> itself: the rewards must know, or every format check reads 0.
    dataset = mark_prefilled(build_dataset(config), tokenizer, **(config.chat_template_kwargs or {}))
    reward_funcs = build_reward_funcs(config)
    check_reward_columns(reward_funcs, dataset, f"dataset_mixture of {config.output_dir}")
    model = load_model(config)
    use_end_of_turn_as_eos(tokenizer, model, dataset, eos_token=config.eos_token)
    if config.use_vllm:  # vLLM reads the EOS from the model folder on disk, not from the model object
        kwargs = dict(config.generation_kwargs or {})
        stops = stop_token_ids(tokenizer, model.generation_config)
        kwargs["stop_token_ids"] = list(dict.fromkeys([*kwargs.get("stop_token_ids", []), *stops]))
        config.generation_kwargs = kwargs
    trainer = AhaGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        aha_phrases=config.aha_phrases,
        aha_language=config.aha_language,
        dynamic_sampling=config.dynamic_sampling,
        max_generation_batches=config.max_generation_batches,
        dynamic_sampling_rewards=config.dynamic_sampling_rewards,
        reward_health=config.reward_health,
        peft_config=peft_config_for(config, model),  # β > 0: TRL's reference is the base, adapter disabled
    )
    check_before_training(trainer, config)
    if config.max_train_seconds:
        trainer.add_callback(TimeBudget(config.max_train_seconds))
    if config.aha_log_file:
        trainer.add_callback(AhaLogFile(Path(config.output_dir) / config.aha_log_file))
    return trainer


def train(config: GRPOStageConfig) -> dict:
    """Run the stage; return the results written to ``results.json``."""
    started = time.time()
    trainer = build_trainer(config)
    logger.info(
        "GRPO on %d prompts from %s: rewards %s, %d completions per prompt",
        len(trainer.train_dataset), config.model_name_or_path, config.reward_funcs, config.num_generations,
    )
    resume = checkpoint_to_resume(config)
    train_started = time.time()
    trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.time() - train_started
    history = [e for e in trainer.state.log_history if any(k.startswith("rewards/") for k in e)]
    last = history[-1] if history else {}
    first = history[0] if history else {}
    steps_run = trainer.state.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0)
    stopped_early = trainer.state.global_step < trainer.state.max_steps
    extra = {
        "train_rows": len(trainer.train_dataset),
        "resumed_from": resume,
        "reward_funcs": list(config.reward_funcs),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / steps_run, 3) if steps_run else None,
        "stopped_by_time_budget": stopped_early,
        "first_logged": {k: v for k, v in first.items() if k.startswith(LOGGED)},
        "last_logged": {k: v for k, v in last.items() if k.startswith(LOGGED)},
        **over_training(trainer.state.log_history),
    }
    return finish(trainer, config, "grpo", started, extra)


def main(argv: Sequence[str] | None = None) -> dict:
    setup_logging()
    return train(parse_config(GRPOStageConfig, argv))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["grpo", *sys.argv[1:]]))
