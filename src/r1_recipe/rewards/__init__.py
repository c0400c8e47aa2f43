"""Reward functions for GRPO, looked up by name: ``reward_funcs: [accuracy, format]`` in a recipe.

Every reward is built by a factory in :data:`REWARDS` and has TRL's signature
``fn(completions, **columns) -> list[float | None]``; its ``__name__`` is its registry name so
TRL logs ``rewards/<name>/mean``. ``None`` means "does not apply to this row": rule-based
rewards skip rows whose ``reward_type`` is ``general``, the reward model skips ``reasoning``,
``math`` and ``code`` rows (RL stage 2), and the math-answer rewards (accuracy, length, cosine)
skip ``code`` rows while ``code`` skips ``math`` rows (RL stage 1 on math and code), so one batch
can mix every kind; see :data:`r1_recipe.rewards.base.REWARD_TYPES`. Each reward also records
which rows it scores (:func:`r1_recipe.rewards.base.route`) for rejection sampling's per-row keep
rule. TRL turns None into NaN and sums the rewards with ``nansum``; group means and standard
deviations are NaN-aware, so a group's advantages come from the rewards that scored it, and
``rewards/<name>/mean`` averages only the rows the reward scored. This registry is the one list of names: the CLI
(``r1-recipe rewards``) and the README table come from :func:`rewards_table`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from r1_recipe.rewards import code as _code
from r1_recipe.rewards import format as _format
from r1_recipe.rewards import gym as _gym
from r1_recipe.rewards import language as _language
from r1_recipe.rewards import length as _length
from r1_recipe.rewards import math_answer as _math
from r1_recipe.rewards import model as _model
from r1_recipe.rewards.base import RewardFunc, named
from r1_recipe.rewards.extract import extract_answer, split_reasoning

REWARDS: dict[str, Callable[..., RewardFunc]] = {
    "accuracy": _math.accuracy,
    "format": _format.format,
    "format_errors": _format.format_errors,
    "tag_count": _format.tag_count,
    "reasoning_steps": _format.reasoning_steps,
    "language_consistency": _language.language_consistency,
    "length": _length.length,
    "cosine": _length.cosine,
    "repetition": _length.repetition,
    "soft_overlong": _length.soft_overlong,
    "reasoning_gym": _gym.reasoning_gym,
    "code": _code.code,
    "reward_model": _model.reward_model,
}

__all__ = ["REWARDS", "base_name", "get_reward_funcs", "rewards_table", "extract_answer", "split_reasoning"]


def _unknown(kind: str, name: str, valid: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")


def get_reward_funcs(names: list[str], **options: dict[str, Any]) -> list[RewardFunc]:
    """Build the named rewards, in order; ``options`` maps a reward name to its factory's
    keyword arguments (a recipe's ``reward_kwargs``), e.g. ``cosine={"max_len": 2000}``.

    Unknown reward names, options for a reward not in ``names``, and unknown option keys all
    raise ValueError naming the valid choices: a typo must not silently train on defaults.

    ``name:alias`` builds registry reward ``name`` once more under its own name and options, e.g.
    two reward models (RL stage 2: ``reward_model:helpful`` on the answer, ``reward_model:harmless``
    on the whole response); TRL then logs ``rewards/reward_model:helpful/mean`` separately.

    >>> [f.__name__ for f in get_reward_funcs(["format", "tag_count"])]
    ['format', 'tag_count']
    >>> [f.__name__ for f in get_reward_funcs(["format", "format:zero"], **{"format:zero": {"template": "r1_zero"}})]
    ['format', 'format:zero']
    >>> get_reward_funcs(["acuracy"])
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'acuracy'. Did you mean 'accuracy'? Valid: accuracy, ...
    """
    valid = list(REWARDS)
    if len(set(names)) != len(names):
        raise ValueError(f"reward names {names} repeat a name: give each instance its own alias, "
                         "e.g. reward_model:helpful and reward_model:harmless")
    for name in names:
        if base_name(name) not in REWARDS:
            raise _unknown("reward", base_name(name), valid)
    for name in options:
        if name not in names:
            raise ValueError(f"options given for reward {name!r}, which is not in the reward "
                             f"list {names}; add it there or remove its options")
    funcs = []
    for name in names:
        kwargs = dict(options.get(name) or {})
        factory = REWARDS[base_name(name)]
        params = list(inspect.signature(factory).parameters)
        for key in kwargs:
            if not isinstance(key, str):  # YAML 1.1 reads an unquoted `on:` key as True
                raise ValueError(f"option {key!r} of reward {name!r} is not a name: YAML reads unquoted on/off/yes/no "
                                 'keys as booleans; quote the key, e.g. "on": answer')
            if key not in params:
                raise _unknown(f"option of reward {name!r}", key, params)
        fn = factory(**kwargs)
        funcs.append(named(fn, name) if name != base_name(name) else fn)
    return funcs


def base_name(name: str) -> str:
    """The registry name of ``name:alias`` (``name`` itself without an alias).

    >>> base_name("reward_model:helpful"), base_name("accuracy")
    ('reward_model', 'accuracy')
    """
    return name.split(":", 1)[0]


def _help(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _options(factory: Callable[..., Any]) -> str:
    return ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(factory).parameters.values())


def rewards_table(markdown: bool = False) -> str:
    """Every registry name with its one-line help (from the factory's docstring) and options.

    >>> print(rewards_table().splitlines()[0])  # doctest: +ELLIPSIS
    accuracy ...Final answer (last \\boxed{} or <answer> after </think>) equals the reference...
    """
    if markdown:
        rows = ["| reward | what it scores | options |", "|---|---|---|"]
        for n, f in REWARDS.items():
            text = _help(f).replace("<", "&lt;").replace(">", "&gt;")  # tags are not HTML
            cells = [f"`{n}`", text, _options(f) or "-"]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows)
    width = max(map(len, REWARDS)) + 2
    lines = []
    for n, f in REWARDS.items():
        lines.append(f"{n:<{width}}{_help(f)}")
        if _options(f):
            lines.append(f"{'':<{width}}options: {_options(f)}")
    return "\n".join(lines)
