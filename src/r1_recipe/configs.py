"""One config dataclass per stage, each subclassing TRL's, with the options every stage shares
defined once in :class:`RecipeArgs`.

Configs are read from a recipe YAML plus command-line overrides with TRL's parser::

    python -m r1_recipe.sft --config recipes/demo/stage1.yaml --learning_rate 1e-4

Unlike TRL's and open-r1's parsers, an unknown key is an error that names the file, the key and
the closest valid keys: a misspelled ``learnig_rate`` would otherwise train with the default.
On a machine without CUDA the configs switch themselves to CPU (``use_cpu``, no bf16, no
gradient checkpointing); TRL's defaults ask for bf16 and fail there.

Every value is checked before the config is built (:mod:`r1_recipe.config_checks`): a wrong
type, an out-of-range number or a pair of keys TRL would reject deep inside gets one line naming
the file and the key. TRL's argparse parser is only used for ``--help``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from transformers import AutoConfig
from trl import SFTConfig, TrlParser

from r1_recipe.command_line import canonical_option, from_command_line, split_command_line
from r1_recipe.config_checks import ConfigError, build_config
from r1_recipe.data.templates import TEMPLATES
from r1_recipe.reward_health import check_health_limits

logger = logging.getLogger(__name__)

C = TypeVar("C")


@dataclass
class PromptArgs:
    """How problems become prompts and responses: shared by training and evaluation."""

    template: str = field(default="r1", metadata={"help": "Prompt/response template: r1 or r1_zero."})
    system_prompt: str | None = field(default=None, metadata={"help": "System prompt for the r1 template."})
    chat_template: str | None = field(
        default=None, metadata={"help": "Chat template for the tokenizer: a .jinja file path or the template text."}
    )
    problem_column: str = field(default="problem", metadata={"help": "Column holding the question."})
    answer_column: str = field(default="solution", metadata={"help": "Column holding the reference final answer."})

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ConfigError(f"template: {self.template!r} is not one of {', '.join(TEMPLATES)}")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


@dataclass
class LoraArgs:
    """LoRA / QLoRA through peft, shared by every stage that trains weights (see r1_recipe.lora)."""

    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter (TRL's peft_config) instead of every weight."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = lora_alpha / lora_r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Linear layer names to adapt (e.g. [q_proj, v_proj]); None: every linear layer of the "
                          "attention and MLP blocks."},
    )
    lora_modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained in full beside the adapter (a reward model's score head always is)."}
    )
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: load the base in 4-bit NF4 (CUDA, `qlora` extra)."})
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "Merge the adapter into the weights and write an ordinary model folder; false keeps the "
                          "adapter folder (the next stage loads base + adapter)."},
    )

    def __post_init__(self):
        if self.use_peft:
            if self.lora_r < 1:
                raise ConfigError(f"lora_r must be >= 1, got {self.lora_r}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.load_in_4bit:
            if not self.use_peft:
                raise ConfigError("load_in_4bit (QLoRA) trains an adapter on frozen 4-bit weights: set use_peft: true")
            if not torch.cuda.is_available():
                raise ConfigError("load_in_4bit: QLoRA needs a CUDA GPU (bitsandbytes' 4-bit kernels); on this "
                                  "machine set load_in_4bit: false (plain LoRA)")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


@dataclass
class RecipeArgs(LoraArgs, PromptArgs):
    """Options shared by every training stage: model, data, templates, lineage and tracking."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local folder of the model this stage starts from."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub revision of the model."})
    dtype: str = field(
        default="auto", metadata={"help": "Weights dtype: auto, bfloat16, float16 or float32 (float32 on CPU)."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa or flash_attention_2; None lets transformers choose."}
    )
    cpu_bf16: bool = field(default=False, metadata={
        "help": "On a machine without CUDA, compute under bf16 autocast (fp32 weights) instead of fp32: 1.3-2.4x faster "
                "for SmolLM2-135M on CPUs with AVX512-BF16 (by box), slower for the tiny demo model. Ignored on a GPU."})
    dataset_mixture: list[dict] | None = field(
        default=None,
        metadata={"help": "Training sources: list of {path, name, split, weight, columns, source} (see data/loading.py)."},
    )
    mixture_size: int | None = field(
        default=None, metadata={"help": "Rows in the mixed dataset; None = all rows of all sources."}
    )
    reasoning_column: str = field(default="reasoning", metadata={"help": "Column holding the reasoning trace (SFT)."})
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when there is one."}
    )
    wandb_project: str | None = field(default=None, metadata={"help": "W&B project (sets WANDB_PROJECT)."})
    wandb_group: str | None = field(default=None, metadata={"help": "W&B run group, e.g. one pipeline's name."})

    def __post_init__(self):
        if not torch.cuda.is_available():
            # activation checkpointing only slows a CPU run down; gradient_checkpointing is its old name
            flags = ("bf16", "fp16", "gradient_checkpointing", "activation_checkpointing")
            adjusted = [k for k in flags if getattr(self, k, None) and not (k == "bf16" and self.cpu_bf16)]
            for k in flags:
                setattr(self, k, False)
            self.bf16 = self.cpu_bf16  # autocast on CPU; the weights stay float32 (weights_dtype)
            self.use_cpu = True
            if adjusted or self.cpu_bf16:
                logger.info("no CUDA device: training on CPU %s%s", "under bf16 autocast (cpu_bf16)" if self.cpu_bf16
                            else "in float32", f" (turned off {', '.join(adjusted)})" if adjusted else "")
        super().__post_init__()
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required: a Hub id or a local model folder")
        if self.output_dir is None:
            raise ConfigError("output_dir is required: the folder this stage writes its checkpoint to")

    def keeps_master_weights(self) -> bool:
        """Whether the launcher keeps fp32 weights for the optimizer whatever the model's dtype: ZeRO
        holds an fp32 master copy and FSDP2 upcasts the sharded parameters; plain DDP and a single
        process update the weights in their own dtype."""
        launched = any(os.environ.get(k, "").lower() in ("1", "true", "yes")
                       for k in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"))
        return launched or bool(getattr(self, "deepspeed", None)) or bool(getattr(self, "fsdp", None))

    def weights_dtype(self, *, cuda: bool | None = None) -> str:
        """The dtype the trained model loads in (``cuda``: this machine has a GPU, by default).

        float32 on CPU. On a GPU the recipe's ``dtype``, except where the optimizer would update
        16-bit weights in place (plain DDP or one process, full fine-tuning): there the weights load
        in float32 and ``bf16: true`` computes in bf16. An AdamW step at GRPO's lr 1e-6 moves a weight
        of ~1e-2 by ~1e-4 of itself, far below bf16's spacing (~4e-3): on bf16 weights it rounds
        away. LoRA's adapter weights are float32 already (peft upcasts them); the frozen base keeps
        the recipe's dtype.
        """
        cuda = torch.cuda.is_available() if cuda is None else cuda
        if not cuda:
            return "float32"
        if self.dtype == "float32" or self.use_peft or self.keeps_master_weights():
            return self.dtype
        logger.info("dtype %s without an fp32 master copy (DDP or one process): loading the weights in float32 "
                    "so small optimizer steps are not rounded away%s", self.dtype,
                    "" if getattr(self, "bf16", False) or getattr(self, "fp16", False) else
                    "; set bf16: true to compute in bf16")
        return "float32"

    def model_kwargs(self, *, trained: bool = True) -> dict:
        """Keyword arguments for ``from_pretrained``: of the trained model, or of a frozen one beside it
        (a teacher: the recipe's dtype on a GPU)."""
        dtype = self.weights_dtype() if trained else self.dtype if torch.cuda.is_available() else "float32"
        kwargs = {"revision": self.model_revision, "dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs


@dataclass
class SFTStageConfig(RecipeArgs, SFTConfig):
    """Cold-start SFT (stage 1) and SFT stage 2 on the rejection-sampled mix."""

    reasoning_alpha: float | None = field(
        default=None,
        metadata={
            "help": "Weighted loss L = α·L_reasoning + (1−α)·L_general by the `source` column, each L the "
            "token mean of its kind over the optimizer step (see r1_recipe.sft). None = unweighted."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})

    def __post_init__(self):
        super().__post_init__()
        if self.reasoning_alpha is not None:
            if not 0.0 <= self.reasoning_alpha <= 1.0:
                raise ConfigError(f"reasoning_alpha must be in [0, 1], got {self.reasoning_alpha}")
            if self.packing:
                raise ConfigError("reasoning_alpha needs per-example losses: set packing: false")
            if self.padding_free:
                raise ConfigError("reasoning_alpha needs per-example losses (padding-free flattens the batch "
                                  "into one row): set padding_free: false")


# --- the model's context length ----------------------------------------------------------------

_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_SCALED_ROPE = ("yarn", "linear", "dynamic")  # their factor multiplies the trained positions


def model_context_length(model: str, revision: str = "main") -> int | None:
    """Positions the model can attend over, from its config only (no weights): the config's
    ``max_position_embeddings``, times the factor of a YaRN/linear/dynamic RoPE scaling as vLLM
    counts it. None when the config cannot be read (the model load reports that) or says nothing.
    """
    try:
        config = AutoConfig.from_pretrained(model, revision=revision)
    except Exception as e:  # noqa: BLE001 - unreadable here: loading the model itself reports why, in its words
        logger.debug("no config to read the context length of %s from: %s", model, e)
        return None
    config = config.get_text_config()
    positions = next((getattr(config, k) for k in _POSITION_KEYS if isinstance(getattr(config, k, None), int)), None)
    if positions is None:
        return None
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = rope.get("rope_type") or rope.get("type")
    if kind in _SCALED_ROPE and rope.get("factor"):
        positions = max(positions, int((rope.get("original_max_position_embeddings") or positions) * rope["factor"]))
    return positions


def context_length_error(key: str, value: int, limit: int, model: str, note: str = "") -> ConfigError:
    return ConfigError(
        f"{key}: {value}{note} is beyond the {limit} positions of {model} (max_position_embeddings in its "
        f"config.json): the model was never trained past position {limit}. Set {key} to at most "
        f"{limit}, or extend the context in a local copy of the model: save it to a folder, raise "
        "max_position_embeddings in that folder's config.json (DeepSeek's R1-Distill-Qwen-1.5B, trained from "
        "Qwen2.5-Math-1.5B's 4096 positions, sets 131072), and point model_name_or_path at the folder."
    )


def check_context_length(config, keys: Sequence[str]) -> None:
    """Refuse ``config.<key>`` (token budgets) beyond the positions of ``config.model_name_or_path``.

    Reads the model's config only, so it runs before the weights load. A key still at TRL's
    default (``max_length`` 1024 for a 512-position model) is lowered to the model's limit with a
    warning instead: the recipe did not ask for it.
    """
    limit = model_context_length(config.model_name_or_path, getattr(config, "model_revision", "main"))
    if limit is None:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for key in keys:
        value = getattr(config, key, None)
        if value is None or value <= limit:
            continue
        if value == defaults.get(key):
            logger.warning("%s: the default %d is beyond the %d positions of %s; using %d", key, value, limit,
                           config.model_name_or_path, limit)
            setattr(config, key, limit)
            continue
        raise context_length_error(key, value, limit, config.model_name_or_path)


def check_generation_budget(model: str, key: str, budgets: Sequence[tuple[int, str]]) -> None:
    """Refuse generation budgets (``[(new tokens, where it comes from)]``, set by ``key``) beyond
    ``model``'s positions, before the model loads.

    Unlike :func:`check_context_length` nothing is lowered: an evaluation's budget is part of
    its protocol (R1: 32,768 new tokens), and a silently shorter one reports other numbers.
    """
    limit = model_context_length(model)
    for value, note in budgets:
        if limit is not None and value is not None and value > limit:
            raise context_length_error(key, value, limit, model, f" ({note})" if note else "")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def check_keys(cls: type, keys: Sequence[str], *, where: str) -> None:
    """Raise :class:`ConfigError` for keys that are not fields of ``cls``, with close matches."""
    valid = _field_names(cls)
    for key in keys:
        if key in valid or key == "env":
            continue
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"{where}: unknown key {key!r} for {cls.__name__}.{hint}")


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: the same YAML, ~10x faster to parse


def read_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:  # a folder, a binary file, no permission
        raise ConfigError(f"{path}: cannot read the recipe: {getattr(e, 'strerror', None) or e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of option: value")
    return data


def parse_config(cls: type[C], argv: Sequence[str] | None = None) -> C:
    """Build a stage config from ``--config recipe.yaml`` and ``--key value`` overrides.

    The command line wins over the recipe; list and dict options take JSON or YAML there. A
    recipe's ``env: {NAME: value}`` sets environment variables, as TRL's parser does.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        TrlParser([cls]).parse_args(["--help"])  # prints every option and exits
    recipe, overrides = split_command_line(args)
    overrides = [canonical_option(cls, key, tokens) for key, tokens in overrides]
    values, origins = {}, {}
    if recipe is not None:
        data = read_recipe(recipe)
        check_keys(cls, list(data), where=recipe)
        env = data.pop("env", None) or {}
        if not isinstance(env, dict):
            raise ConfigError(f"{recipe}: env: expected a mapping {{NAME: value}}, got {env!r}")
        os.environ.update({str(k): str(v) for k, v in env.items()})
        values.update(data)
        origins.update(dict.fromkeys(data, recipe))
    check_keys(cls, [key for key, _ in overrides], where="command line")
    for key, tokens in overrides:
        values[key] = from_command_line(cls, key, tokens)
        origins[key] = "command line"
    return build_config(cls, values, origins)


def save_resolved(config, output_dir: str | Path) -> Path:
    """Write the config as the stage actually ran it (defaults included) next to its checkpoint."""
    path = Path(output_dir) / "resolved_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {f.name for f in dataclasses.fields(config) if f.init}
    data = {k: v for k, v in config.to_dict().items() if k in fields and not k.startswith("_")}
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


import math  # noqa: E402 - the GRPO stage's imports, kept beside it

from trl import GRPOConfig  # noqa: E402

SELF_CORRECTION_PHRASES = [
    "wait", "let me check", "let me re-check", "let me recheck", "re-check", "recheck",
    "double-check", "re-evaluate", "reevaluate", "let me verify", "on second thought",
    "i made a mistake", "retry",
]


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


@dataclass
class GRPOStageConfig(RecipeArgs, GRPOConfig):
    """RL stage 1, RL stage 2 and R1-Zero: GRPO with rewards from the registry, by name."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "Reward names from r1_recipe.rewards.REWARDS (see `r1-recipe rewards`)."},
    )
    reward_kwargs: dict | None = field(
        default=None,
        metadata={"help": "Options per reward: {reward name: {option: value}}; `accuracy` reads answer_column by default."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the prompt set (debugging)."})
    eos_token: str | None = field(
        default=None,
        metadata={"help": "Token ending a completion (as SFT's eos_token); None: the chat template's end of turn "
                          "for chat prompts, else the tokenizer's EOS."},
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={"help": "Stop after this many seconds of training (a checkpoint is saved), even before max_steps."},
    )
    aha_phrases: list[str] = field(
        default_factory=lambda: list(SELF_CORRECTION_PHRASES),
        metadata={"help": "Self-correction phrases (case-insensitive, whole words) counted in the reasoning."},
    )
    aha_language: str = field(
        default="en", metadata={"help": "Target language of the reasoning for the language-consistency metric."}
    )
    aha_log_file: str | None = field(
        default="aha_metrics.jsonl",
        metadata={"help": "File in output_dir receiving one JSON line per logging step (None: off)."},
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "DAPO's dynamic sampling: drop groups whose rewards do not differ and sample further "
                          "prompts until the batch holds only informative groups (r1_recipe.dynamic_sampling)."},
    )
    max_generation_batches: int = field(
        default=4,
        metadata={"help": "With dynamic_sampling: most generation batches per step, the first included; then it "
                          "trains on the informative groups it has (and logs that)."},
    )
    dynamic_sampling_rewards: list[str] | None = field(
        default=None,
        metadata={"help": "With dynamic_sampling: the rewards whose spread makes a group informative (DAPO: the "
                          "verifier's, e.g. [accuracy, code]); None: the weighted sum the advantages come from."},
    )
    reward_health: dict | None = field(
        default=None,
        metadata={"help": "Reward-health checks (r1_recipe.reward_health), e.g. {stop_if: {unparsed_reference: 0.2}}: "
                          "stop when a share passes its limit; {warn_if: {...}} overrides the warning limits."},
    )

    def __post_init__(self):
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} values for {len(self.reward_funcs)} reward_funcs "
                f"{self.reward_funcs}: give one weight per reward, in the same order"
            )
        self.check_group_sizes()
        super().__post_init__()
        self.check_dynamic_sampling()
        check_health_limits(self.reward_health)

    def check_group_sizes(self, num_processes: int | None = None) -> None:
        """Every prompt's group of ``num_generations`` completions must fit in one generation batch.

        TRL only says that a number is not divisible; this names the keys and the values that work.
        """
        g = self.num_generations
        if g is None or g < 2:
            raise ConfigError(f"num_generations must be >= 2 (GRPO compares completions within a group), got {g}")
        # the launcher's WORLD_SIZE at run time; `r1-recipe check-launch` passes the planned count before launch
        procs = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
        per_step = self.per_device_train_batch_size * procs
        if self.generation_batch_size is not None:
            total, how = self.generation_batch_size, f"generation_batch_size {self.generation_batch_size}"
        else:
            steps = self.steps_per_generation or self.gradient_accumulation_steps
            total = per_step * steps
            how = (f"per_device_train_batch_size {self.per_device_train_batch_size} × {procs} process(es) × "
                   f"{'steps_per_generation' if self.steps_per_generation else 'gradient_accumulation_steps'} {steps}")
        if total % g:
            fits = [d for d in _divisors(total) if d <= 64]
            raise ConfigError(
                f"the generation batch holds {total} completions ({how}), which is not a multiple of "
                f"num_generations {g}: every prompt's group of {g} completions must fit in one batch. Change "
                f"num_generations to one of {fits}, or per_device_train_batch_size to a multiple of {g} "
                f"(e.g. {g * max(1, round(self.per_device_train_batch_size / g))}), "
                f"or set generation_batch_size to a multiple of {math.lcm(per_step, g)} (a multiple of both {g} and the "
                f"global batch {per_step})."
            )
        if self.generation_batch_size is not None and self.generation_batch_size % per_step:
            raise ConfigError(
                f"generation_batch_size {self.generation_batch_size} is not a multiple of the global batch "
                f"{per_step} (per_device_train_batch_size {self.per_device_train_batch_size} × {procs} process(es)): "
                f"use a multiple of {math.lcm(per_step, g)}."
            )

    def check_dynamic_sampling(self) -> None:
        """Dynamic sampling keeps whole groups on the process that sampled them, so each process's
        share of a generation batch must hold whole groups."""
        if not self.dynamic_sampling:
            return
        unknown = [n for n in self.dynamic_sampling_rewards or () if n not in self.reward_funcs]
        if unknown:
            raise ConfigError(f"dynamic_sampling_rewards {unknown} are not among reward_funcs {self.reward_funcs}: "
                              "name rewards the recipe uses")
        if self.max_generation_batches < 1:
            raise ConfigError(f"max_generation_batches must be >= 1 (the first generation batch counts), "
                              f"got {self.max_generation_batches}")
        local = self.per_device_train_batch_size * self.steps_per_generation  # what each process's loader yields
        if local % self.num_generations:
            raise ConfigError(
                f"dynamic_sampling: each process gets {local} completions of a generation batch "
                f"(per_device_train_batch_size {self.per_device_train_batch_size} × steps_per_generation "
                f"{self.steps_per_generation}), not a multiple of num_generations {self.num_generations}, so a group "
                f"would be split across processes; make that product a multiple of {self.num_generations}"
            )
