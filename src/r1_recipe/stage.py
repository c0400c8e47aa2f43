"""What every training stage does around its TRL trainer, written once: load the model and
tokenizer the recipe names, load its data, find the checkpoint to resume from, and write the
stage's output folder (weights, tokenizer, ``resolved_config.yaml``, ``results.json``).

The output folder is the hand-off: the next stage names it as its ``model_name_or_path``.
With ``use_peft`` the stage trains a LoRA adapter through TRL's ``peft_config`` and, by default,
writes the merged model; ``merge_adapter: false`` writes the adapter folder (see
:mod:`r1_recipe.lora`).

End of turn: a stage that trains a chat format (conversational rows) makes the chat template's
end-of-turn token the EOS of the tokenizer, of the model config and of the generation config it
saves (:func:`use_end_of_turn_as_eos`), so that everything sampling the model later (GRPO,
rejection sampling, evaluation, vLLM) stops at the end of the answer. A Qwen2.5 base model ends
documents with ``<|endoftext|>`` while ChatML ends turns with ``<|im_end|>``: without this, the
fine-tuned model's saved EOS is a token it was never trained to emit after an answer. As TRL's
``eos_token`` does, the new id goes first in ``generation_config.eos_token_id`` and the old ones
stay (any of them halts generation). ``eos_token`` (TRL's SFT/reward option) overrides the
derived token; plain-text stages (R1-Zero, pretraining) keep the model's EOS.

Token budgets: every stage's ``max_length`` / ``max_completion_length`` is checked against the
model's positions from its config alone, before any weights load
(:func:`r1_recipe.configs.check_context_length`).

Under FSDP the final save is always one full state dict (``checkpoint-N`` folders keep the
launcher config's type): with ``SHARDED_STATE_DICT`` ``Trainer.save_model`` writes no model at all,
and the next stage would find nothing. Files every rank could write (tokenizer, resolved config,
results) come from the main process only; the weights' save is collective under ZeRO-3/FSDP, so
every rank calls it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from trl.data_utils import is_conversational

from r1_recipe.configs import ConfigError, RecipeArgs, check_context_length, save_resolved
from r1_recipe.data.end_of_turn import end_of_turn_token
from r1_recipe.data.loading import load_mixture, require_columns
from r1_recipe.lora import check_can_merge, lineage, load_pretrained
from r1_recipe.lora import save_model as save_stage_model

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
TOKEN_BUDGET_KEYS = ("max_length", "max_completion_length")  # SFT, distill, reward model, pretrain; GRPO


def setup_logging(level: int = logging.INFO) -> None:
    """Plain one-line logs for the command-line entry points (library code only logs)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level, datefmt="%H:%M:%S")


def load_tokenizer(config: RecipeArgs) -> PreTrainedTokenizerBase:
    """The model's tokenizer with the recipe's chat template and a pad token.

    Every stage loads it first, so this is also where the stage's token budgets are checked
    against the model's positions (its config only: a refused budget costs no weight loading).
    """
    check_context_length(config, [k for k in TOKEN_BUDGET_KEYS if hasattr(config, k)])
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path, revision=config.model_revision)
    except OSError as e:  # transformers' message is long and names neither the recipe key nor the fix
        raise ConfigError(
            f"model_name_or_path: cannot load {config.model_name_or_path!r}: not a local model folder, and not "
            f"reachable on the Hugging Face Hub ({str(e).splitlines()[0]}). Check the path, or the previous stage's "
            "output_dir."
        ) from e
    if config.chat_template:
        template = Path(config.chat_template)
        tokenizer.chat_template = template.read_text() if template.suffix == ".jinja" else config.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def use_end_of_turn_as_eos(tokenizer, model, dataset: Dataset, *, eos_token: str | None = None) -> str | None:
    """Make the chat template's end-of-turn token the EOS when ``dataset`` is conversational.

    Sets ``tokenizer.eos_token``, the model config's ``eos_token_id`` and puts the id first in
    ``model.generation_config.eos_token_id`` (keeping the others), as TRL's ``eos_token`` does;
    ``eos_token`` given (the recipe's) wins over the derived one and applies to any dataset.
    Returns the EOS now in force, or None when nothing changed.
    """
    if eos_token is None:
        if len(dataset) == 0 or not is_conversational(dataset[0]):
            return None
        eos_token = end_of_turn_token(tokenizer)
        if eos_token is None:
            logger.warning("the chat template ends an assistant turn with no special token: the model keeps EOS "
                           "%r; set eos_token in the recipe if the template has an end-of-turn token",
                           tokenizer.eos_token)
            return None
    elif eos_token not in tokenizer.get_vocab():
        raise ConfigError(f"eos_token: {eos_token!r} is not a token of the tokenizer; use the end-of-turn token the "
                          "chat template writes (e.g. <|im_end|> for ChatML, <|eot_id|> for Llama-3)")
    if eos_token != tokenizer.eos_token:
        logger.info("end of turn %r becomes the EOS (was %r)", eos_token, tokenizer.eos_token)
    tokenizer.eos_token = eos_token
    eos_id = tokenizer.eos_token_id
    model.config.get_text_config().eos_token_id = eos_id
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        old = generation.eos_token_id
        old = [] if old is None else [old] if isinstance(old, int) else list(old)
        ids = [eos_id, *(i for i in old if i != eos_id)]
        generation.eos_token_id = ids[0] if len(ids) == 1 else ids
    return eos_token


def load_model(config: RecipeArgs):
    """The causal LM the stage starts from: a model folder, or base + a previous stage's adapter."""
    return load_pretrained(AutoModelForCausalLM, config)


def load_train_data(config: RecipeArgs, text_columns: dict[str, str] | None = None) -> Dataset:
    """The ``dataset_mixture``; ``text_columns`` (column -> recipe key) are checked to hold text in
    every source, so a wrong type names its file."""
    if not config.dataset_mixture:
        raise ConfigError("dataset_mixture is required: a list of {path: ..., weight: ...} sources")
    return load_mixture(config.dataset_mixture, size=config.mixture_size, seed=config.seed,
                        text_columns=text_columns)


def checkpoint_to_resume(config: RecipeArgs) -> str | None:
    """The newest *complete* ``checkpoint-N`` in ``output_dir`` when resuming is on (the default).

    transformers writes ``trainer_state.json`` last; a run killed while saving leaves a newer
    folder without it (or with it torn), which transformers' own ``get_last_checkpoint`` would
    pick and then fail to load. Such folders are skipped, with a warning.
    """
    if not config.resume or not os.path.isdir(config.output_dir):
        return None
    found = [(int(m.group(1)), m.group(0)) for name in os.listdir(config.output_dir)
             if (m := re.fullmatch(r"checkpoint-(\d+)", name))
             and os.path.isdir(os.path.join(config.output_dir, name))]
    for _, name in sorted(found, reverse=True):
        path = os.path.join(config.output_dir, name)
        try:
            json.loads(Path(path, "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("skipping %s: incomplete (the run stopped while saving it)", path)
            continue
        logger.info("resuming from %s", path)
        return path
    return None


def reward_funcs_for(config) -> list:
    """The recipe's ``reward_funcs`` with their ``reward_kwargs`` (GRPO and rejection sampling).

    Rewards that read a reference answer (``solution_column``) default to the recipe's
    ``answer_column``, aliases (``accuracy:strict``) included.
    """
    import inspect

    from r1_recipe.rewards import REWARDS, base_name, get_reward_funcs

    options = {name: dict(opts or {}) for name, opts in (config.reward_kwargs or {}).items()}
    for name in config.reward_funcs:
        factory = REWARDS.get(base_name(name))
        if factory is not None and "solution_column" in inspect.signature(factory).parameters:
            options.setdefault(name, {}).setdefault("solution_column", config.answer_column)
    try:
        return get_reward_funcs(list(config.reward_funcs), **options)
    except ValueError as e:
        raise ConfigError(f"reward_funcs / reward_kwargs: {e}") from e


def check_reward_columns(reward_funcs, ds: Dataset, where: str) -> None:
    """Refuse, before any model loads, data that lacks a column a reward reads (the reward would
    otherwise stop training at its first batch, deep inside the trainer)."""
    for fn in reward_funcs:
        options = getattr(fn, "columns", {})  # column -> the reward option naming it (rewards.base.reads)
        require_columns(ds, list(options), where=f"{where}: reward {fn.__name__!r} (its option "
                                                 f"{', '.join(sorted(set(options.values())))} in reward_kwargs)")


def configure_tracking(config: RecipeArgs) -> None:
    if config.wandb_project:
        os.environ.setdefault("WANDB_PROJECT", config.wandb_project)
    if config.wandb_group:
        os.environ.setdefault("WANDB_RUN_GROUP", config.wandb_group)


def parameter_count(model) -> int:
    """Parameters of ``model``, including those ZeRO-3 has partitioned away (``ds_numel``: a
    partitioned parameter's own ``numel()`` is 0 on every rank)."""
    return sum(getattr(p, "ds_numel", 0) or p.numel() for p in model.parameters())


def check_before_training(trainer, config: RecipeArgs) -> None:
    """Refusals that need the trainer (its distributed setup) but must come before any step."""
    check_can_merge(trainer, config)


def full_state_dict_for_final_save(trainer) -> None:
    """Make FSDP's next ``save_model`` write one full state dict (accelerate's plugin keeps the type)."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return
    plugin = trainer.accelerator.state.fsdp_plugin
    if "FULL_STATE_DICT" in str(plugin.state_dict_type):
        return
    logger.info("FSDP: saving the stage's model as a full state dict (was %s)", plugin.state_dict_type)
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # rebuilt for the full type
    plugin.set_state_dict_type("FULL_STATE_DICT")


def finish(trainer, config: RecipeArgs, stage: str, started: float, extra: dict | None = None) -> dict:
    """Save weights + tokenizer + resolved config + results.json; return the results."""
    adapters = lineage(config, trainer.accelerator.unwrap_model(trainer.model))  # before a merge unloads it
    full_state_dict_for_final_save(trainer)
    save_stage_model(trainer, config)  # merged LoRA, or trainer.save_model on every rank (ZeRO-3 / FSDP gather)
    trainer.save_state()  # trainer_state.json: the log history the report plots (world process zero only)
    main = trainer.accelerator.is_main_process
    if main:
        trainer.processing_class.save_pretrained(config.output_dir)
        save_resolved(config, config.output_dir)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    results = {
        "stage": stage,
        "model_name_or_path": config.model_name_or_path,
        "output_dir": str(config.output_dir),
        "global_step": trainer.state.global_step,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "wall_seconds": round(time.time() - started, 1),
        # this process's peak (the main process's GPU): what a launcher config costs, for benchmarks/gpu_check.sh
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        **adapters,
        **(extra or {}),
    }
    if main:
        Path(config.output_dir, RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results
