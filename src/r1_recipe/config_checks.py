"""Checks of recipe values, run on every stage config before any model or data is loaded.

Every value a recipe or the command line sets is checked against its dataclass field, so a
mistake gets one line naming the file (or ``command line``) and the key, instead of argparse's
usage dump or a traceback from deep inside torch or TRL:

- **types**, from the field's annotation (TRL's and transformers' included): ``int``, ``float``,
  ``bool``, ``str``, lists and dicts of those, unions, ``Literal`` and enums (whose values are the
  choices), plus ``choices`` in the field metadata. Strings that spell a number are accepted for
  number fields (YAML reads ``1e-4`` as a string; TRL's parser converts it the same way);
  nothing else is converted.
- **ranges**, from the field's name and type (:data:`RANGES`): counts, sizes, steps and lengths
  are ≥ 1, probabilities and shares lie in their intervals, temperatures are > 0, β, learning
  rates, weight decay and the like are ≥ 0. A field's own default always passes (TRL's
  ``max_steps: -1`` means "use num_train_epochs").
- **sources** of ``*_mixture`` lists: mappings with a ``path`` and known keys, weights ≥ 0.
- **combinations** that TRL or the samplers would only reject deep inside, naming both keys
  (:func:`check_combinations`).

Command-line values are read by :mod:`r1_recipe.command_line` and then checked here like recipe
values.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
import types
import typing
from collections.abc import Mapping

from r1_recipe.data.errors import ConfigError  # noqa: F401 - re-exported: the modules that check recipes import it from here


class _Mismatch(Exception):
    """A value does not fit a type; ``args[0]`` says what was expected."""


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "on"), ("false", "no", "0", "off")

# (field-name pattern, lowest, lowest allowed?, highest, highest allowed?): first match wins
RANGES: list[tuple[str, float | None, bool, float | None, bool]] = [
    (r"temperature$", 0, False, None, False),                        # logits are divided by it
    (r"^(top_p|vllm_gpu_memory_utilization|gpu_memory_utilization)$", 0, False, 1, True),
    (r"(_fraction|_split)$", 0, True, 1, False),                      # a share held out or mixed in
    (r"(^min_p|_threshold|_consistency|^max_repetition|^reasoning_alpha|^kd_beta)$", 0, True, 1, True),
    (r"(batch_size|_steps|_length|_len|_tokens|_size|_samples|_per_prompt|_chars|_iterations|_generation)$",
     1, True, None, False),
    (r"^(num_(?!train_epochs).*|ngram|verify_workers|max_train_samples)$", 1, True, None, False),
    (r"(_epochs|_seconds|_timeout|^repetition_penalty)$", 0, False, None, False),
    (r"(^beta$|^epsilon|^delta$|learning_rate|weight_decay|max_grad_norm|_coefficient$|num_workers$|^seed$|"
     r"^shard_index$|^top_k$|_alpha$|^save_total_limit$)", 0, True, None, False),
]
STEP_COUNTS = ("logging_steps", "save_steps", "eval_steps", "warmup_steps")  # floats: < 1 is a share of the run


@functools.cache
def field_types(cls: type) -> dict[str, object]:
    """Every field's annotation, resolved (TRL's and transformers' included)."""
    return typing.get_type_hints(cls)


def init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def union_members(tp) -> tuple:
    """The members of a union (``X | None`` included), or ``(tp,)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def is_enum(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def expected(tp) -> str:
    """How an error message names what a type wants."""
    members = [m for m in union_members(tp) if m is not type(None)]
    if any(is_enum(m) for m in members):  # `SchedulerType | str`: the enum's values are the choices
        tp = next(m for m in members if is_enum(m))
        return "one of " + ", ".join(str(e.value) for e in tp)
    if len(members) > 1:
        return " or ".join(expected(m) for m in members)
    tp = members[0] if members else tp
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin is list or tp is list:
        args = typing.get_args(tp)
        return f"a list ({expected(args[0])} each)" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping {key: value}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(tp, value):
    """``value`` as type ``tp`` (a number spelled as a string becomes a number), or raise ``_Mismatch``."""
    if tp is typing.Any or tp is object:
        return value
    members = union_members(tp)
    if len(members) > 1:
        if value is None and type(None) in members:
            return None
        enums = [m for m in members if is_enum(m)]
        if enums and isinstance(value, str):  # `IntervalStrategy | str`: transformers only accepts the enum's values
            return coerce(enums[0], value)
        # exact kinds first, so `int | str` keeps 5 an int and "5" a string
        ordered = sorted((m for m in members if m is not type(None)), key=lambda m: not _fits_exactly(m, value))
        for member in ordered:
            try:
                return coerce(member, value)
            except _Mismatch:
                continue
        raise _Mismatch(expected(tp))
    origin = typing.get_origin(tp)
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch("null")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch(expected(tp))
    if is_enum(tp):
        choices = [e.value for e in tp]
        if isinstance(value, tp) or value in choices:
            return value
        raise _Mismatch(expected(tp))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
            return value.lower() in TRUE_WORDS
        raise _Mismatch(expected(tp))
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if number is not None and number.is_integer():
            return int(number)
        raise _Mismatch(expected(tp))
    if tp is float:
        number = _number(value)
        if number is None:
            raise _Mismatch(expected(tp))
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(expected(tp))
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (typing.Any,)
        if not isinstance(value, list):
            raise _Mismatch(expected(tp))
        out = []
        for i, v in enumerate(value):
            try:
                out.append(coerce(item, v))
            except _Mismatch as e:
                raise _Mismatch(f"{expected(tp)}; item {i} ({show(v)}) is not {e.args[0]}") from None
        return out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch(expected(tp))
        args = typing.get_args(tp)
        if args:
            for k, v in value.items():
                try:
                    coerce(args[1], v)
                except _Mismatch as e:
                    raise _Mismatch(f"{expected(tp)}; {k!r} is {show(v)}, not {e.args[0]}") from None
        return value
    return value  # other classes (accelerate's ParallelismConfig, ...): their own checks apply


def _fits_exactly(tp, value) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp in (int, str, bool):
        return type(value) is tp
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and isinstance(value, origin)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def value_range(cls: type, name: str) -> tuple[float | None, bool, float | None, bool] | None:
    """The interval a numeric field's values must lie in, from its name (see :data:`RANGES`)."""
    kinds = {m for m in union_members(field_types(cls).get(name)) if m in (int, float)}
    if not kinds:
        return None
    declared = getattr(cls, "VALUE_RANGES", {}).get(name)
    if declared is not None:  # the config's own interval (e.g. evaluate's num_samples 0: greedy only)
        return declared
    if name in STEP_COUNTS:
        return (0, name == "warmup_steps", None, False)
    for pattern, lo, lo_ok, hi, hi_ok in RANGES:
        if re.search(pattern, name):
            return (lo, lo_ok, hi, hi_ok)
    return None


def describe_range(bounds) -> str:
    lo, lo_ok, hi, hi_ok = bounds
    if hi is None:
        return f"{'≥' if lo_ok else '>'} {lo:g}"
    return f"in {'[' if lo_ok else '('}{lo:g}, {hi:g}{']' if hi_ok else ')'}"


def in_range(value: float, bounds) -> bool:
    lo, lo_ok, hi, hi_ok = bounds
    if lo is not None and (value < lo or (value == lo and not lo_ok)):
        return False
    return hi is None or value < hi or (value == hi and hi_ok)


def check_value(cls: type, name: str, value, where: str):
    """``value`` for field ``name`` of ``cls``, type-checked and range-checked; ``where`` prefixes errors."""
    field = init_fields(cls)[name]
    tp = field_types(cls).get(name, typing.Any)
    try:
        value = coerce(tp, value)
    except _Mismatch as e:
        hint = (" (YAML reads an unquoted no/yes as false/true: write \"no\")"
                if isinstance(value, bool) and "one of" in e.args[0] else "")
        raise ConfigError(f"{where}: {name}: expected {e.args[0]}, got {show(value)}{hint}") from None
    choices = field.metadata.get("choices")
    if choices is not None and value is not None and value not in list(choices):
        raise ConfigError(f"{where}: {name}: {show(value)} is not one of {', '.join(map(str, choices))}")
    bounds = value_range(cls, name)
    default = field.default if field.default is not dataclasses.MISSING else None
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if bounds and isinstance(v, (int, float)) and not isinstance(v, bool) and v != default and not in_range(v, bounds):
            extra = f" (or {default:g}, its default)" if isinstance(default, (int, float)) and not isinstance(default, bool) \
                and not in_range(default, bounds) else ""
            raise ConfigError(f"{where}: {name}: must be {describe_range(bounds)}{extra}, got {v:g}")
    if name.endswith("_mixture") and value is not None:
        check_sources(value, f"{where}: {name}")
    return value


def check_sources(sources, where: str) -> None:
    """A ``dataset_mixture``-like list: each source a path or a mapping with a ``path`` and known keys."""
    from r1_recipe.data.loading import SOURCE_KEYS  # here: `datasets` takes seconds to import, the CLI's --help not

    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{where}: expected a non-empty list of sources like {{path: data.jsonl, weight: 1}}")
    for i, spec in enumerate(sources):
        at = f"{where}[{i}]"
        if isinstance(spec, str):
            continue
        if not isinstance(spec, dict):
            raise ConfigError(f"{at}: expected a mapping like {{path: data.jsonl}} or a path, got {show(spec)}")
        unknown = sorted(set(spec) - SOURCE_KEYS)
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}; valid keys: {sorted(SOURCE_KEYS)}")
        if not isinstance(spec.get("path"), str) or not spec["path"]:
            raise ConfigError(f"{at}: 'path' is required: a Hub id, a .jsonl/.parquet file or a folder")
        for key in ("name", "split", "data_dir", "source", "reward_type"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise ConfigError(f"{at}: {key}: expected a string, got {show(spec[key])}")
        if "weight" in spec:
            weight = _number(spec["weight"])
            if weight is None or weight < 0 or math.isinf(weight):
                raise ConfigError(f"{at}: weight: expected a number ≥ 0, got {show(spec['weight'])}")
        columns = spec.get("columns")
        if columns is not None and not (isinstance(columns, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in columns.items())):
            raise ConfigError(f"{at}: columns: expected a mapping {{wanted: existing}} of column names, got {show(columns)}")


# --- building the config -------------------------------------------------------------------------


# stage name -> its config class, "module:Class" (imported on demand: stage modules load TRL)
STAGE_CONFIGS = {"sft": "r1_recipe.configs:SFTStageConfig", "pretrain": "r1_recipe.configs:SFTStageConfig",
                 "grpo": "r1_recipe.configs:GRPOStageConfig", "evaluate": "r1_recipe.evaluate:EvalConfig",
                 "decontaminate": "r1_recipe.decontaminate:DecontaminateConfig",
                 "rejection_sampling": "r1_recipe.rejection_sampling:RejectionSamplingConfig",
                 "distill": "r1_recipe.distill:DistillStageConfig",
                 "reward_model": "r1_recipe.reward_model:RewardModelStageConfig",
                 "score": "r1_recipe.reward_model:GeneralScoreConfig"}


def config_class(stage: str) -> type:
    import importlib

    module, name = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def check_values(cls: type, values: Mapping, origins: Mapping[str, str]) -> dict:
    """Every value type- and range-checked (no config built): unknown keys are errors too."""
    import difflib

    valid = init_fields(cls)
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{origins.get(key, 'recipe')}: unknown key {key!r} for {cls.__name__}.{hint}")
    return {k: check_value(cls, k, v, origins.get(k, "recipe")) for k, v in values.items()}


def build_config(cls: type, values: Mapping, origins: Mapping[str, str]):
    """``cls(**values)`` after checking every value; ``origins[key]`` says where each was set
    (a recipe path or ``command line``). Errors of the config's own ``__post_init__`` (ours, TRL's
    and transformers') come back as one :class:`ConfigError` naming where the values came from."""
    checked = check_values(cls, values, origins)
    sources = ", ".join(dict.fromkeys(origins.values())) or "command line"
    required = [f.name for f in init_fields(cls).values() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in checked]
    if required:
        raise ConfigError(f"{sources}: {', '.join(required)} required (set {' and '.join(required)} "
                          "in the recipe or as --key value)")
    try:
        config = cls(**checked)
    except ConfigError as e:
        raise ConfigError(str(e) if any(o in str(e) for o in origins.values()) else f"{sources}: {e}") from None
    except (ValueError, TypeError, NotImplementedError) as e:  # TRL's and transformers' checks
        message = " ".join(str(e).split())
        raise ConfigError(f"{sources}: {message}") from None
    check_combinations(config, checked, origins)
    return config


def _at(origins: Mapping[str, str], *keys: str) -> str:
    return ", ".join(dict.fromkeys(origins[k] for k in keys if k in origins)) or "defaults"


def check_combinations(config, values: Mapping, origins: Mapping[str, str]) -> None:
    """Pairs of values each fine alone that the trainer or sampler would reject deep inside."""
    max_len = getattr(config, "max_model_len", None)
    if max_len is not None and isinstance(getattr(config, "max_new_tokens", None), int) and config.max_new_tokens >= max_len:
        raise ConfigError(
            f"{_at(origins, 'max_new_tokens', 'max_model_len')}: max_new_tokens {config.max_new_tokens} leaves no room "
            f"for the prompt in max_model_len {max_len}: raise max_model_len or lower max_new_tokens")
    if getattr(config, "pass_at_k", None) and getattr(config, "num_samples", None):
        too_big = [k for k in config.pass_at_k if k > config.num_samples]
        if too_big:
            raise ConfigError(f"{_at(origins, 'pass_at_k', 'num_samples')}: pass_at_k {too_big} exceeds num_samples "
                              f"{config.num_samples}: pass@k needs at least k samples per problem")
    eval_strategy = str(getattr(getattr(config, "eval_strategy", None), "value", getattr(config, "eval_strategy", "no")))
    if "eval_strategy" in values and eval_strategy != "no":
        if not hasattr(config, "eval_mixture"):
            raise ConfigError(f"{_at(origins, 'eval_strategy')}: eval_strategy {eval_strategy!r}, but this stage "
                              "trains without an eval set: set eval_strategy: no")
        if not config.eval_mixture and not getattr(config, "eval_fraction", 0):
            raise ConfigError(f"{_at(origins, 'eval_strategy', 'eval_mixture', 'eval_fraction')}: eval_strategy "
                              f"{eval_strategy!r} needs held-out pairs: set eval_mixture or eval_fraction")
    if getattr(config, "reward_funcs", None) is not None:
        check_reward_names(config, origins)
    if isinstance(getattr(config, "lr_scheduler_kwargs", None), dict) and config.lr_scheduler_kwargs:
        check_scheduler_kwargs(config, origins)


def check_scheduler_kwargs(config, origins: Mapping[str, str]) -> None:
    """``lr_scheduler_kwargs`` are arguments of the ``lr_scheduler_type``'s schedule function
    (transformers would only fail on the first training step)."""
    import inspect

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
    from transformers.trainer_utils import SchedulerType

    function = TYPE_TO_SCHEDULER_FUNCTION.get(SchedulerType(config.lr_scheduler_type))
    if function is None:
        return
    params = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    given = {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"}
    unknown = [k for k in config.lr_scheduler_kwargs if k not in params or k in given]
    if unknown:
        valid = [p for p in params if p not in given]
        raise ConfigError(
            f"{_at(origins, 'lr_scheduler_kwargs', 'lr_scheduler_type')}: lr_scheduler_kwargs {unknown} are not "
            f"options of lr_scheduler_type {SchedulerType(config.lr_scheduler_type).value!r} "
            f"(its options: {', '.join(valid) or 'none'})")


def check_reward_names(config, origins: Mapping[str, str]) -> None:
    """``reward_funcs`` are registry names, and ``reward_kwargs`` only configure listed rewards."""
    from r1_recipe.rewards import REWARDS, base_name

    unknown = [n for n in config.reward_funcs if base_name(n) not in REWARDS]
    if unknown:
        raise ConfigError(f"{_at(origins, 'reward_funcs')}: reward_funcs: unknown reward(s) {unknown}; "
                          f"valid: {', '.join(REWARDS)} (see `r1-recipe rewards`)")
    extra = [n for n in (getattr(config, "reward_kwargs", None) or {}) if n not in config.reward_funcs]
    if extra:
        raise ConfigError(f"{_at(origins, 'reward_kwargs', 'reward_funcs')}: reward_kwargs configures {extra}, which "
                          f"are not in reward_funcs {config.reward_funcs}: add them there or drop their options")
    bad = {n: o for n, o in (getattr(config, "reward_kwargs", None) or {}).items() if not isinstance(o, dict | None)}
    if bad:
        raise ConfigError(f"{_at(origins, 'reward_kwargs')}: reward_kwargs: each reward's options are a mapping "
                          f"{{option: value}}, got {show(bad)}")
