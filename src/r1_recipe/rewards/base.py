"""What every reward shares: reading TRL's arguments, routing rows, grouping samples.

TRL calls a reward as ``f(prompts=, completions=, completion_ids=, <dataset columns>,
trainer_state=, log_extra=, log_metric=)``. These helpers turn that into plain lists so each
reward stays a short pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from r1_recipe.rewards.extract import THINK_OPEN, completion_text

RewardFunc = Callable[..., list[float | None]]

GENERAL, REASONING = "general", "reasoning"


def texts(completions: Sequence[Any], prompts: Sequence[Any] | None = None) -> list[str]:
    """Completion texts; re-opens ``<think>`` when the prompt already ended with it.

    R1-style templates often prefill ``<think>\\n`` in the prompt, so the completion starts
    inside the reasoning; restoring the tag lets every reward read one format.

    >>> texts(["a</think>b"], prompts=["Q: 1+1? <think>\\n"])
    ['<think>\\na</think>b']
    >>> texts([[{"role": "assistant", "content": "hi"}]])
    ['hi']
    """
    out = [completion_text(c) for c in completions]
    if prompts is not None:
        for i, p in enumerate(prompts):
            if prompt_text(p).rstrip().endswith(THINK_OPEN) and not out[i].lstrip().startswith(
                THINK_OPEN
            ):
                out[i] = THINK_OPEN + "\n" + out[i]
    return out


def prompt_text(prompt: Any) -> str:
    """A prompt as one string (chat prompts: the last message's content)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content") or "")
    return ""


def group_keys(n: int, prompts: Sequence[Any] | None) -> list[str]:
    """One key per sample; samples of the same prompt share it (GRPO's group).

    Keying on the prompt itself, not on batch position, stays right whatever order TRL or a
    caller puts the samples in.
    """
    if prompts is None:
        return ["" for _ in range(n)]
    return [p if isinstance(p, str) else repr(p) for p in prompts]


def applies(n: int, reward_type: Sequence[Any] | None, *, model_based: bool = False) -> list[bool]:
    """Routing: rule rewards skip ``general`` rows; model rewards skip ``reasoning`` rows.

    >>> applies(3, ["reasoning", "general", None])
    [True, False, True]
    >>> applies(2, ["reasoning", "general"], model_based=True)
    [False, True]
    >>> applies(2, None)
    [True, True]
    """
    if reward_type is None:
        return [True] * n
    skip = REASONING if model_based else GENERAL
    return [str(t).lower() != skip if t is not None else True for t in reward_type]


def column(kwargs: dict[str, Any], name: str, n: int, *, required: bool = True) -> list[Any]:
    """A dataset column from TRL's keyword arguments, with an error that says what to fix."""
    values = kwargs.get(name)
    if values is None:
        if required:
            cols = sorted(k for k in kwargs if k not in _TRL_ARGS)
            raise KeyError(
                f"reward needs the dataset column {name!r}; the batch has columns {cols}. "
                f"Add the column or set the reward's column option."
            )
        return [None] * n
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return list(values)


def named(fn: RewardFunc, name: str, doc: str | None = None) -> RewardFunc:
    """Give a closure the registry name, so TRL logs ``rewards/<name>/mean``."""
    fn.__name__ = fn.__qualname__ = name
    if doc:
        fn.__doc__ = doc
    return fn


_TRL_ARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
