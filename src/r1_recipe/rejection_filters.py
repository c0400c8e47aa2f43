"""What rejection sampling keeps: the keep rule, the readability filters of the R1 paper,
exact and near-duplicate removal, and the choice of at most k samples per prompt.

Every function here is pure and deterministic (no Python ``hash``, which changes per process),
so a restarted run makes exactly the choices the interrupted one made.

Each dropped sample gets one *reason*, the first that applies, in this order:

1. ``reward:<name>``: a reward below its threshold (the keep rule; ``None`` counts as failing:
   an unverifiable sample is not kept);
2. readability, on the reasoning (the whole text when there is no ``<think>`` block):
   ``mixed_language``, ``long_paragraph``, ``code_in_reasoning``, ``repetition``;
3. ``exact_duplicate``, ``near_duplicate`` (within the prompt's samples), ``over_k``.

The paper names the readability problems but gives no thresholds; ours are defaults to tune
on the stats JSON of a first run.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from r1_recipe.rewards.extract import extract_answer, split_reasoning
from r1_recipe.rewards.language import language_share
from r1_recipe.rewards.length import repetition_penalty

READABILITY_REASONS = ("mixed_language", "long_paragraph", "code_in_reasoning", "repetition")
SELECTION_REASONS = ("exact_duplicate", "near_duplicate", "over_k")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def reward_failure(rewards: Mapping[str, float | None], thresholds: Mapping[str, float]) -> str | None:
    """The keep rule: ``reward:<name>`` for the first reward below its threshold, else None.

    >>> reward_failure({"accuracy": 1.0, "format": 1.0}, {"accuracy": 1.0, "format": 1.0}) is None
    True
    >>> reward_failure({"accuracy": 0.0, "format": 1.0}, {"accuracy": 1.0, "format": 1.0})
    'reward:accuracy'
    >>> reward_failure({"accuracy": None}, {"accuracy": 1.0})
    'reward:accuracy'
    """
    for name, tau in thresholds.items():
        value = rewards.get(name)
        if value is None or value != value or value < tau:  # None and NaN fail
            return f"reward:{name}"
    return None


def longest_paragraph(text: str) -> int:
    """Characters in the longest blank-line-separated paragraph (characters, not words:
    scripts like Chinese have no spaces).

    >>> longest_paragraph("ab\\n\\nabcd\\n  \\nabc")
    4
    """
    return max((len(p.strip()) for p in _PARAGRAPH.split(text)), default=0)


def repetition_share(text: str, ngram_size: int = 4) -> float:
    """Share of repeated word n-grams (0: none repeats; → 1: one loop), as the repetition reward.

    >>> repetition_share("a b c d e f g")
    0.0
    >>> repetition_share("go on " * 20) > 0.9
    True
    """
    return -repetition_penalty(text, ngram_size, -1.0) + 0.0


@dataclass(frozen=True)
class Readability:
    """The readability filters; a ``None`` threshold (or ``code_blocks=False``) turns one off."""

    language: str = "en"
    min_language_consistency: float | None = 0.95
    max_paragraph_chars: int | None = 3000
    code_blocks: bool = True
    max_repetition: float | None = 0.3
    repetition_ngram: int = 4

    def problem(self, text: str) -> str | None:
        """The first readability reason to drop ``text``, or None when it reads well.

        >>> r = Readability()
        >>> r.problem("<think>\\nunits 8+9=17 write 7 carry 1\\n</think>\\n\\\\boxed{97}") is None
        True
        >>> r.problem("<think>add 的 ones 然后 tens</think> 4")
        'mixed_language'
        >>> r.problem("<think>" + "x" * 3001 + "</think> 4")
        'long_paragraph'
        >>> r.problem("<think>try\\n```python\\nprint(2+2)\\n```\\n</think> 4")
        'code_in_reasoning'
        >>> r.problem("<think>" + "wait let me check " * 30 + "</think> 4")
        'repetition'
        """
        reasoning, _ = split_reasoning(text)
        body = reasoning if reasoning is not None else text
        if self.min_language_consistency is not None and (
            language_share(body, self.language) < self.min_language_consistency
        ):
            return "mixed_language"
        if self.max_paragraph_chars is not None and longest_paragraph(body) > self.max_paragraph_chars:
            return "long_paragraph"
        if self.code_blocks and "```" in body:
            return "code_in_reasoning"
        if self.max_repetition is not None and repetition_share(body, self.repetition_ngram) > self.max_repetition:
            return "repetition"
        return None


def normalize(text: str) -> str:
    """Whitespace-insensitive key for exact duplicates (and for duplicate prompts).

    >>> normalize("  Compute 1 +\\n 2. ") == normalize("Compute 1 + 2.")
    True
    """
    return " ".join(text.split())


def prompt_id(problem: str) -> str:
    """A stable id from the problem text (whitespace-insensitive), the same in every job.

    >>> prompt_id("Compute 1 + 2.") == prompt_id(" Compute 1 +  2.")
    True
    """
    return hashlib.sha1(normalize(problem).encode()).hexdigest()[:16]


def shingles(text: str, n: int = 3) -> frozenset[int]:
    """Stable hashes (crc32) of the word n-grams of a text's reasoning; the whole text when short.

    >>> len(shingles("a b c d")), shingles("a b") == shingles(" a  b ")
    (2, True)
    """
    reasoning, _ = split_reasoning(text)
    words = (reasoning if reasoning is not None else text).split()
    if len(words) < n:
        return frozenset({zlib.crc32(" ".join(words).encode())})
    return frozenset(zlib.crc32(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """|a ∩ b| / |a ∪ b|.

    >>> jaccard(frozenset({1, 2}), frozenset({2, 3}))
    0.3333333333333333
    """
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def answer_key(text: str) -> str:
    """The final answer, spacing removed: samples with the same key reached the same answer.

    >>> answer_key("<think>x</think>\\n\\\\boxed{ 9 7 }") == answer_key("<think>y</think> \\\\boxed{97}")
    True
    """
    answer = extract_answer(text)
    return "" if answer is None else "".join(answer.split())


def select(texts: Sequence[str], candidates: Sequence[int], *, k: int,
           near_duplicate: float | None = 0.9) -> tuple[list[int], dict[int, str]]:
    """Choose at most ``k`` of the ``candidates`` (indices into ``texts``), preferring variety.

    Exact duplicates (after whitespace normalisation) go first. Then, greedily: the next pick is
    the candidate with an answer not picked yet, then the one least similar (word 3-gram
    Jaccard of the reasoning) to everything picked, then the lowest index. After each pick,
    candidates at least ``near_duplicate`` similar to it are dropped. Returns (picked indices
    in pick order, {dropped index: reason}). Work is O(candidates × k), not quadratic.

    >>> t = ["<think>a b c d</think> \\\\boxed{1}", "<think>a b c d</think>  \\\\boxed{1}",
    ...      "<think>a b c e</think> \\\\boxed{1}", "<think>w x y z</think> \\\\boxed{1}",
    ...      "<think>p q r s</think> \\\\boxed{2}"]
    >>> select(t, range(5), k=2, near_duplicate=0.3)
    ([0, 4], {1: 'exact_duplicate', 2: 'near_duplicate', 3: 'over_k'})
    """
    dropped: dict[int, str] = {}
    seen: set[str] = set()
    remaining: list[int] = []
    for i in candidates:
        key = normalize(texts[i])
        if key in seen:
            dropped[i] = "exact_duplicate"
        else:
            seen.add(key)
            remaining.append(i)
    grams = {i: shingles(texts[i]) for i in remaining}
    answers = {i: answer_key(texts[i]) for i in remaining}
    closest = dict.fromkeys(remaining, 0.0)  # max similarity to anything picked
    picked: list[int] = []
    picked_answers: set[str] = set()
    while remaining and len(picked) < k:
        best = min(remaining, key=lambda i: (answers[i] in picked_answers, closest[i], i))
        remaining.remove(best)
        picked.append(best)
        picked_answers.add(answers[best])
        still = []
        for i in remaining:
            closest[i] = max(closest[i], jaccard(grams[i], grams[best]))
            if near_duplicate is not None and closest[i] >= near_duplicate:
                dropped[i] = "near_duplicate"
            else:
                still.append(i)
        remaining = still
    dropped.update(dict.fromkeys(remaining, "over_k"))
    return picked, dropped


def pass_rate_histogram(rates: Sequence[float], bins: int = 10) -> dict[str, int]:
    """Prompts per pass-rate bin, plus the two ends GRPO learns nothing from.

    >>> pass_rate_histogram([0.0, 0.05, 0.5, 1.0], bins=2)
    {'never (0)': 1, 'always (1)': 1, '[0.0, 0.5)': 2, '[0.5, 1.0]': 2}
    """
    out = {"never (0)": sum(r == 0.0 for r in rates), "always (1)": sum(r == 1.0 for r in rates)}
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        last = b == bins - 1
        label = f"[{lo:.1f}, {hi:.1f}{']' if last else ')'}"
        out[label] = sum(lo <= r < hi or (last and r == hi) for r in rates)
    return out
