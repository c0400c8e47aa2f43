"""Length and degeneration rewards: Kimi-1.5 length, cosine scaling, DAPO overlong, repetition.

Lengths are token counts when TRL passes ``completion_ids`` (it always does), else characters.

On several processes TRL spreads one prompt's group over them and calls the rewards on each
process's share, so ``length`` (which normalises within the group) gathers every process's
lengths, correctness and group keys first (``torch.distributed``) and returns its own share of
the scores computed on whole groups. It gathers only when a trainer calls it (TRL passes
``trainer_state``, and every process calls the rewards on every batch) and a process group of
more than one process is up; rejection sampling and evaluation score whole groups per process.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Any

import torch.distributed as dist

from r1_recipe.rewards.base import MATH, RewardFunc, applies, group_keys, named, reads, route, row_texts, texts
from r1_recipe.rewards.language import words as language_words
from r1_recipe.rewards.math_answer import correctness


def _lengths(completions: list[Any], kwargs: dict[str, Any]) -> list[int]:
    ids = kwargs.get("completion_ids")
    if ids is not None:
        return [len(x) for x in ids]
    return [len(t) for t in texts(completions)]


def kimi_length(lengths: list[int], correct: list[float | None], keys: list[str]) -> list[float | None]:
    """Kimi-1.5's length reward, with min/max taken within each prompt's group.

    lambda = 0.5 - (len - min) / (max - min); correct samples get lambda, wrong ones
    min(0, lambda); a group whose lengths are all equal gets 0.0. open-r1 takes min/max over
    the whole batch, so one prompt's long answers shifted another prompt's rewards.

    >>> kimi_length([10, 20, 30, 100, 100], [1.0, 1.0, 0.0, 1.0, 0.0], ["a", "a", "a", "b", "b"])
    [0.5, 0.0, -0.5, 0.0, 0.0]
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if correct[i] is not None:
            groups[k].append(i)
    out: list[float | None] = [None] * len(lengths)
    for idx in groups.values():
        lo, hi = min(lengths[i] for i in idx), max(lengths[i] for i in idx)
        for i in idx:
            lam = 0.0 if hi == lo else 0.5 - (lengths[i] - lo) / (hi - lo)
            out[i] = lam if correct[i] == 1.0 else min(0.0, lam)
    return out


def kimi_length_across_processes(lengths: list[int], correct: list[float | None],
                                 keys: list[str], gather: bool = True) -> list[float | None]:
    """:func:`kimi_length` on the groups of all processes together; this process's share back.

    Without ``gather``, on one process or without a process group: :func:`kimi_length`. Keys
    travel as short digests: a prompt can be long and only equality matters.
    """
    if not gather or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return kimi_length(lengths, correct, keys)
    digests = [hashlib.blake2b(k.encode(), digest_size=16).hexdigest() for k in keys]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (lengths, correct, digests))
    start = sum(len(p[0]) for p in parts[: dist.get_rank()])
    scores = kimi_length([x for p in parts for x in p[0]], [x for p in parts for x in p[1]],
                         [x for p in parts for x in p[2]])
    return scores[start : start + len(lengths)]


def length(
    solution_column: str = "solution", timeout: float = 5.0, workers: int | None = None
) -> RewardFunc:
    """Kimi-1.5 length reward within each prompt's group: shorter correct answers earn up to
    +0.5, longer wrong ones down to -0.5; None where accuracy is None. On several processes
    the group's samples are gathered from all of them first."""

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        correct = correctness(completions, kwargs, solution_column=solution_column,
                              timeout=timeout, workers=workers, name=fn.__name__)
        keys = group_keys(len(completions), kwargs.get("prompts"))
        return kimi_length_across_processes(_lengths(completions, kwargs), correct, keys,
                                            gather="trainer_state" in kwargs)

    return route(reads(named(fn, "length"), **{solution_column: "solution_column"}), domain=MATH)  # from correctness


def cosine_scaled(
    length_: int, correct: bool, *, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5, max_value_correct: float = 1.0, max_len: int = 1000,
) -> float:
    """Cosine-scaled length reward (Demystifying Long CoT): correct answers score from
    max_value_correct (empty) down to min_value_correct (at max_len); wrong ones from
    min_value_wrong (empty) up to max_value_wrong, so a long try is less bad than a short
    guess. Lengths past max_len count as max_len.

    >>> cosine_scaled(0, True), cosine_scaled(1000, True), cosine_scaled(0, False)
    (1.0, 0.5, -1.0)
    >>> cosine_scaled(5000, False) == cosine_scaled(1000, False) == -0.5
    True
    """
    progress = min(length_, max_len) / max_len
    lo, hi = (min_value_correct, max_value_correct) if correct else (max_value_wrong, min_value_wrong)
    return lo + 0.5 * (hi - lo) * (1.0 + math.cos(progress * math.pi))


def cosine(
    solution_column: str = "solution", timeout: float = 5.0, workers: int | None = None,
    min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5, max_value_correct: float = 1.0, max_len: int = 1000,
) -> RewardFunc:
    """Cosine-scaled length reward: correct -> shorter is better (1.0 .. 0.5), wrong -> longer
    is less bad (-1.0 .. -0.5); length clamped at max_len."""
    if max_len <= 0:
        raise ValueError(f"cosine: max_len must be > 0, got {max_len}")
    values = dict(min_value_wrong=min_value_wrong, max_value_wrong=max_value_wrong,
                  min_value_correct=min_value_correct, max_value_correct=max_value_correct,
                  max_len=max_len)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        correct = correctness(completions, kwargs, solution_column=solution_column,
                              timeout=timeout, workers=workers, name=fn.__name__)
        return [
            None if c is None else cosine_scaled(n, c == 1.0, **values)
            for n, c in zip(_lengths(completions, kwargs), correct)
        ]

    return route(reads(named(fn, "cosine"), **{solution_column: "solution_column"}), domain=MATH)


def soft_overlong(max_completion_len: int = 1024, soft_punish_cache: int = 256) -> RewardFunc:
    """DAPO's soft overlong punishment on token counts: 0 up to max_completion_len -
    soft_punish_cache, then linear down to -1 at max_completion_len, -1 beyond. Set
    max_completion_len to the trainer's max_completion_length.

    >>> f = soft_overlong(100, 20)
    >>> f(["a"] * 4, completion_ids=[[0] * 80, [0] * 90, [0] * 100, [0] * 120])
    [0.0, -0.5, -1.0, -1.0]
    """
    if not 0 < soft_punish_cache <= max_completion_len:
        raise ValueError(
            f"soft_overlong: need 0 < soft_punish_cache ({soft_punish_cache}) <= "
            f"max_completion_len ({max_completion_len})"
        )
    start = max_completion_len - soft_punish_cache

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        if kwargs.get("completion_ids") is None:
            raise KeyError("soft_overlong needs completion_ids (token counts); TRL passes them")
        ok = applies(len(completions), kwargs.get("reward_type"))
        return [
            (max(-1.0, min(0.0, (start - n) / soft_punish_cache)) + 0.0) if ok[i] else None
            for i, n in enumerate(_lengths(completions, kwargs))
        ]

    return named(fn, "soft_overlong")


def repetition_penalty(text: str, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """max_penalty x (share of repeated word n-grams); 0.0 for text shorter than one n-gram.
    Words as :func:`r1_recipe.rewards.language.words` reads them: a Han, kana or Thai letter
    is one word, so a loop in an unspaced script is caught too.

    >>> repetition_penalty("a b c d e f")
    0.0
    >>> repetition_penalty("a b a b a b")
    -0.5
    >>> repetition_penalty("所以答案是四" * 5) < -0.7
    True
    """
    words = language_words(text.lower())
    if len(words) < ngram_size:
        return 0.0
    ngrams = list(zip(*(words[i:] for i in range(ngram_size))))
    return (1.0 - len(set(ngrams)) / len(ngrams)) * max_penalty + 0.0


def repetition(ngram_size: int = 3, max_penalty: float = -1.0) -> RewardFunc:
    """N-gram repetition penalty in [max_penalty, 0]: max_penalty x share of repeated word
    n-grams, against the degenerate loops RL can fall into."""
    if max_penalty > 0 or ngram_size < 1:
        raise ValueError(f"repetition: need max_penalty <= 0 (got {max_penalty}) and "
                         f"ngram_size >= 1 (got {ngram_size})")

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        ok = applies(len(completions), kwargs.get("reward_type"))
        return [
            repetition_penalty(t, ngram_size, max_penalty) if ok[i] else None
            for i, t in enumerate(row_texts(completions, kwargs))
        ]

    return named(fn, "repetition")
