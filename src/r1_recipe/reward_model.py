"""Reward models for RL stage 2: train one from preference pairs, and score a policy with them.

    make reward-model RECIPE=recipes/demo/reward_model_helpful.yaml
    python -m r1_recipe.reward_model --config recipes/Qwen2.5-7B/reward_model/helpful.yaml
    python -m r1_recipe.reward_model score --config recipes/demo/score_general.yaml \\
        --model_name_or_path runs/demo/rl2 --output_dir runs/demo/rl2

Training is a thin wrapper over TRL's ``RewardTrainer`` (Bradley–Terry loss
−log σ(r_chosen − r_rejected)). Features and the recipe keys that turn them on:

- preference pairs from a Hub id or local files: ``dataset_mixture`` (``prompt``/``chosen``/
  ``rejected`` columns, conversational or plain text; ``columns:`` renames others);
- held-out pairwise accuracy (share of pairs with r_chosen > r_rejected, ties count as wrong),
  before and after training, in ``results.json``: ``eval_mixture`` (or ``eval_fraction`` of
  the training pairs);
- which reward model this is (``aspect: helpful | harmless``), recorded in ``results.json``:
  helpfulness pairs should hold the final answer only and harmlessness pairs the whole
  response, because RL stage 2 scores them so (``reward_model`` reward, ``on: answer | full``);
- TRL's margin column and ``center_rewards_coefficient``; auto-resume (``resume: true``);
- LoRA through TRL's ``peft_config`` (``use_peft: true``): the score head is trained in full
  (``modules_to_save``) and merged into the saved model (see :mod:`r1_recipe.lora`).

The model starts from any causal LM or sequence-classification checkpoint
(``model_name_or_path``); a one-output score head is added when it has none. At scale, a public
reward model (e.g. ``Skywork/Skywork-Reward-V2-Llama-3.1-8B``) can replace a trained one: the
``reward_model`` reward takes a Hub id as well as a folder.

``score`` (the second entry point) samples a policy on held-out general prompts and reports the
mean score of each reward model, the demo's measure of RL stage 2. On a GPU the policy samples
first, with vLLM's memory share sized to leave room for the reward models (their weight files plus
a margin, :func:`vllm_memory_share`); the sampler is then shut down and only then are the reward
models loaded: loaded first, they took memory vLLM's default share (0.9) assumes is free.

Where this departs from the paper: DeepSeek-R1 does not describe its reward models' data or
training; here they are ordinary Bradley–Terry reward models, as in InstructGPT.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, set_seed
from trl import RewardConfig, RewardTrainer

from r1_recipe.configs import ConfigError, PromptArgs, RecipeArgs, check_generation_budget, parse_config
from r1_recipe.data.loading import load_mixture, load_source, require_columns
from r1_recipe.data.templates import prompt_for
from r1_recipe.lora import load_pretrained, peft_config_for
from r1_recipe.stage import (
    check_before_training,
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_tokenizer,
    load_train_data,
    setup_logging,
)

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("prompt", "chosen", "rejected", "margin")


@dataclass
class RewardModelStageConfig(RecipeArgs, RewardConfig):
    """Reward-model training (helpfulness or harmlessness) for RL stage 2."""

    aspect: str | None = field(
        default=None, metadata={"help": "What this reward model judges (e.g. helpful, harmless); recorded in results."}
    )
    eval_mixture: list[dict] | None = field(
        default=None, metadata={"help": "Held-out preference pairs: sources like dataset_mixture's."}
    )
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Without eval_mixture: hold out this share of the training pairs."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training pairs (debugging)."})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_mixture and self.eval_fraction:
            raise ConfigError("set either eval_mixture (held-out pairs) or eval_fraction (a split of the training "
                              "pairs), not both")


def _pairs(ds: Dataset, where: str) -> Dataset:
    require_columns(ds, ["chosen", "rejected"], where=where)
    return ds.select_columns([c for c in PAIR_COLUMNS if c in ds.column_names])


def build_datasets(config: RewardModelStageConfig) -> tuple[Dataset, Dataset | None]:
    """Training pairs and held-out pairs (None when the recipe holds none out)."""
    train = _pairs(load_train_data(config), f"dataset_mixture of {config.output_dir}")
    held_out = None
    if config.eval_mixture:
        held_out = _pairs(load_mixture(config.eval_mixture, seed=config.seed, where="eval_mixture"), "eval_mixture")
    elif config.eval_fraction:
        split = train.train_test_split(test_size=config.eval_fraction, seed=config.seed)
        train, held_out = split["train"], split["test"]
    if config.max_train_samples:
        train = train.select(range(min(config.max_train_samples, len(train))))
    return train, held_out


def load_reward_model(config: RecipeArgs, tokenizer):
    """A one-output sequence classifier from ``model_name_or_path`` (a new head for a causal LM)."""
    set_seed(config.seed)  # the new score head is random: same seed, same head
    model = load_pretrained(AutoModelForSequenceClassification, config, num_labels=1)
    if model.config.num_labels != 1:
        raise ConfigError(f"{config.model_name_or_path} has {model.config.num_labels} labels; a reward model has one")
    model.config.pad_token_id = tokenizer.pad_token_id  # the classifier reads the last non-pad token
    return model


def _accuracy(metrics: dict) -> dict:
    keys = {"eval_accuracy": "accuracy", "eval_margin": "margin", "eval_loss": "loss"}
    return {ours: round(metrics[k], 4) for k, ours in keys.items() if k in metrics}


def train(config: RewardModelStageConfig) -> dict:
    """Train the reward model; return the results written to ``results.json``."""
    started = time.time()
    configure_tracking(config)
    tokenizer = load_tokenizer(config)
    train_pairs, held_out = build_datasets(config)
    logger.info("reward model (%s) on %d pairs from %s", config.aspect or "unnamed", len(train_pairs),
                config.model_name_or_path)
    model = load_reward_model(config, tokenizer)
    trainer = RewardTrainer(model=model, args=config, train_dataset=train_pairs, eval_dataset=held_out,
                            processing_class=tokenizer, peft_config=peft_config_for(config, model, task_type="SEQ_CLS"))
    check_before_training(trainer, config)
    resume = checkpoint_to_resume(config)
    before = _accuracy(trainer.evaluate()) if held_out is not None and resume is None else {}
    trainer.train(resume_from_checkpoint=resume)
    after = _accuracy(trainer.evaluate()) if held_out is not None else {}
    if after:
        logger.info("held-out pairwise accuracy %.3f (before training %s) on %d pairs", after["accuracy"],
                    before.get("accuracy"), len(held_out))
    extra = {"aspect": config.aspect, "train_pairs": len(train_pairs), "resumed_from": resume,
             "eval_pairs": len(held_out) if held_out is not None else 0,
             "eval_accuracy": after.get("accuracy"), "eval_margin": after.get("margin"),
             "eval_accuracy_before": before.get("accuracy")}
    return finish(trainer, config, "reward_model", started, extra)


# --- scoring a policy with reward models ----------------------------------------------------------


@dataclass
class GeneralScoreConfig(PromptArgs):
    """Sample a policy on general prompts; mean score of each reward model (RL stage 2's measure)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "The policy: model folder or Hub id."})
    prompts: str | None = field(default=None, metadata={"help": "Held-out general prompts: file, folder or Hub id."})
    num_problems: int | None = field(default=None, metadata={"help": "First N prompts (None: all)."})
    reward_funcs: list[str] = field(default_factory=list, metadata={
        "help": "Reward names, e.g. [reward_model:helpful, reward_model:harmless] (see `r1-recipe rewards`)."})
    reward_kwargs: dict | None = field(default=None, metadata={"help": "Options per reward, as in the GRPO recipe."})
    num_samples: int = field(default=4, metadata={"help": "Samples per prompt."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    max_new_tokens: int = field(default=64, metadata={"help": "Generation budget per sample."})
    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto, transformers or vllm."})
    batch_size: int = field(default=256, metadata={"help": "Sequences per generate call (transformers)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for eval_general_rm.json and the samples."})

    def __post_init__(self):
        super().__post_init__()
        missing = [k for k in ("model_name_or_path", "prompts", "output_dir") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"score: {', '.join(missing)} required")
        if not self.reward_funcs:
            raise ConfigError("score: reward_funcs is empty; name the reward models, e.g. [reward_model:helpful]")


GIB = 1024**3


def weights_bytes(model: str) -> int:
    """Bytes of a local model folder's weight files (0 for a Hub id: unknown before download)."""
    folder = Path(model)
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))


def vllm_memory_share(reward_model_bytes: int, gpu_bytes: int, default: float = 0.9, margin_bytes: int = 2 * GIB) -> float:
    """vLLM's ``gpu_memory_utilization`` that leaves the reward models (with 20% for activations
    and a fixed margin for CUDA's own use) room on the same GPU, at most ``default``.

    >>> round(vllm_memory_share(15 * GIB, 80 * GIB), 3)  # a 7B reward model in bf16 next to the policy
    0.75
    >>> vllm_memory_share(0, 80 * GIB)
    0.9
    """
    if reward_model_bytes <= 0 or gpu_bytes <= 0:
        return default
    share = 1.0 - (1.2 * reward_model_bytes + margin_bytes) / gpu_bytes
    if share < 0.2:
        raise ConfigError(f"the reward models ({reward_model_bytes / GIB:.1f} GB of weights) leave vLLM less than 20% "
                          f"of the GPU's {gpu_bytes / GIB:.0f} GB: score with backend transformers or smaller models")
    return min(default, share)


def _reward_model_paths(config: GeneralScoreConfig) -> list[str]:
    from r1_recipe.rewards import base_name

    options = config.reward_kwargs or {}
    return [str(options.get(name, {}).get("model")) for name in config.reward_funcs
            if base_name(name) == "reward_model" and options.get(name, {}).get("model")]


def _check_reward_names(config: GeneralScoreConfig) -> None:
    """Unknown reward names fail before minutes of sampling, not after."""
    from r1_recipe.rewards import REWARDS, base_name

    unknown = [n for n in config.reward_funcs if base_name(n) not in REWARDS]
    if unknown:
        raise ConfigError(f"reward_funcs: unknown {unknown}; see `r1-recipe rewards` for the names")


def score_general(config: GeneralScoreConfig) -> dict:
    """Mean reward per reward function over prompts (each prompt's mean over its samples), with
    standard errors across prompts; the share of each demo response style when recognised."""
    from r1_recipe.data.preferences import style_of_general
    from r1_recipe.evaluate import mean_stderr
    from r1_recipe.rewards import get_reward_funcs
    from r1_recipe.sampling import SamplingParams, make_sampler, release

    _check_reward_names(config)
    rows = load_source({"path": config.prompts}, where="prompts").to_list()[: config.num_problems]
    prompts = [prompt_for(r[config.problem_column], template=config.template, system_prompt=config.system_prompt)
               for r in rows]
    check_generation_budget(config.model_name_or_path, "max_new_tokens", [(config.max_new_tokens, "")])
    gpu = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
    # no GPU: the sampler's CPU default (vLLM's CPU build reads the share as one of RAM)
    share = vllm_memory_share(sum(weights_bytes(m) for m in _reward_model_paths(config)), gpu) if gpu else None
    sampler = make_sampler(config.backend, config.model_name_or_path, batch_size=config.batch_size,
                           seed=config.seed, gpu_memory_utilization=share)
    params = SamplingParams(n=config.num_samples, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=config.seed)
    groups = sampler.generate(prompts, params, progress=True)
    release(sampler)  # the policy's memory goes back before the reward models load
    try:
        funcs = get_reward_funcs(list(config.reward_funcs), **(config.reward_kwargs or {}))
    except ValueError as e:
        raise ConfigError(f"reward_funcs / reward_kwargs: {e}") from e
    flat_prompts = [p for p, g in zip(prompts, groups) for _ in g]
    flat = [c for g in groups for c in g]
    k = len(groups[0]) if groups else 0
    summary: dict = {"model": config.model_name_or_path, "prompts": config.prompts, "num_problems": len(rows),
                     "num_samples": k, "temperature": config.temperature}
    scores = {}
    for fn in funcs:
        values = fn(completions=flat, prompts=flat_prompts, reward_type=["general"] * len(flat))
        scores[fn.__name__] = values
        per_prompt = [sum(values[i * k:(i + 1) * k]) / k for i in range(len(rows))]
        mean, se = mean_stderr(per_prompt)
        summary[fn.__name__] = {"mean": round(mean, 4), "stderr": round(se, 4)}
    totals = [sum(scores[n][i] for n in scores) for i in range(len(flat))]
    mean, se = mean_stderr([sum(totals[i * k:(i + 1) * k]) / k for i in range(len(rows))])
    summary["total"] = {"mean": round(mean, 4), "stderr": round(se, 4)}
    styles = Counter(style_of_general(c) for c in flat)
    if len(styles) > 1 or None not in styles:
        summary["style_share"] = {s: round(styles[s] / len(flat), 4) for s in ("good", "lazy", "rude", None)}
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_general_rm.json").write_text(json.dumps(summary, indent=2))
    with open(out / "eval_general_rm_samples.jsonl", "w") as f:
        for i, c in enumerate(flat):
            f.write(json.dumps({"prompt": rows[i // k][config.problem_column], "completion": c,
                                **{n: scores[n][i] for n in scores}}) + "\n")
    logger.info("general prompts: %s", json.dumps({n: summary[n] for n in [*scores, "total"]}))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    import sys

    setup_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "score":
        return score_general(parse_config(GeneralScoreConfig, args[1:]))
    return train(parse_config(RewardModelStageConfig, args))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["reward_model", *sys.argv[1:]]))
