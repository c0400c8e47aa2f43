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

Speed (this runs serially between generation chunks, ~800k samples at R1's scale): the checks
are the reward definitions computed in bulk, with the same results. The language share counts
letter runs with one regex pass and looks at characters only in runs holding a non-ASCII letter
(an ASCII letter run is one Latin word); repetition and near-duplicate n-grams are numpy arrays
of word ids, not Python tuples or strings. ``benchmarks/data_scale.py`` measures it against the
per-character, per-n-gram versions.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from functools import lru_cache
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from r1_recipe.rewards.extract import extract_answer, split_reasoning
from r1_recipe.rewards.language import LANGUAGE_SCRIPTS, script_words

READABILITY_REASONS = ("mixed_language", "long_paragraph", "code_in_reasoning", "repetition")
SELECTION_REASONS = ("exact_duplicate", "near_duplicate", "over_k")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LETTER_RUN = re.compile(r"[^\W\d_]+")  # a run of letters, as rewards.language reads words


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


def _is_letter(ch: str) -> bool:
    return _LETTER_RUN.fullmatch(ch) is not None


_ASCII_LETTER = np.array([_is_letter(chr(c)) for c in range(128)] + [False])  # index 128: "not ASCII"


def language_share(text: str | None, language: str = "en") -> float:
    """:func:`r1_recipe.rewards.language.language_share` (the reward's definition) without a
    Python step per character: code points are a numpy array, letter runs are found by
    comparing neighbours, and only the runs holding a non-ASCII letter are split into words
    by script (:func:`r1_recipe.rewards.language.script_words`); every other run is one Latin word.

    >>> language_share("so the angle is x, add the ones"), language_share("add 的 ones")
    (1.0, 0.6666666666666666)
    >>> language_share(""), language_share("2 + 2 = 4"), language_share("écrire ça")
    (0.0, 1.0, 1.0)
    """
    if text is None or not text.strip():
        return 0.0
    target = LANGUAGE_SCRIPTS[language]
    if text.isascii():  # every letter run is one Latin word
        has_words = any(map(str.isalpha, text)) if "LATIN" not in target else True
        return 1.0 if "LATIN" in target or not has_words else 0.0
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    letter = _ASCII_LETTER[np.minimum(cps, 128)]
    wide = cps >= 128
    wide_letters = [c for c in np.unique(cps[wide]).tolist() if _is_letter(chr(c))]
    wide_letter = np.isin(cps, np.array(wide_letters, dtype=np.uint32)) if wide_letters else np.zeros_like(wide)
    letter |= wide_letter
    starts = letter & ~np.concatenate(([False], letter[:-1]))
    run_id = np.cumsum(starts) - 1  # the run each position belongs to
    runs = int(starts.sum())
    special = np.unique(run_id[wide_letter])  # runs holding a non-ASCII letter
    scripts: list[str] = []
    if len(special):
        begin = np.flatnonzero(starts)
        ends = np.flatnonzero(letter & ~np.concatenate((letter[1:], [False]))) + 1
        for r in special.tolist():
            scripts.extend(script_words(text[begin[r] : ends[r]]))
    latin_runs = runs - len(special)
    total = latin_runs + len(scripts)
    if total == 0:
        return 1.0
    return (("LATIN" in target) * latin_runs + sum(s in target for s in scripts)) / total


@dataclass(frozen=True)
class _Words:
    """A text's whitespace words as ids: ``ids`` case-sensitive (near-duplicate shingles),
    ``lower_ids`` lowercased (repetition, as the reward lowercases), ``distinct`` the words."""

    ids: np.ndarray
    lower_ids: np.ndarray
    distinct: tuple[str, ...]


@lru_cache(maxsize=256)  # one text is read by the repetition filter and by select's shingles
def _words(text: str) -> _Words:
    words = text.split()
    distinct = tuple(dict.fromkeys(words))
    index = {w: i for i, w in enumerate(distinct)}
    ids = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
    lower_index: dict[str, int] = {}
    lower_of = np.fromiter((lower_index.setdefault(w.lower(), len(lower_index)) for w in distinct),
                           dtype=np.int64, count=len(distinct))
    return _Words(ids, lower_of[ids], distinct)


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """One int64 per window of ``n`` ids, equal exactly when the windows are."""
    windows = len(ids) - n + 1
    base = int(ids.max()) + 1
    if base ** n >= 2 ** 63:  # too many distinct words for an exact int64 key: rows instead
        return np.unique(np.lib.stride_tricks.sliding_window_view(ids, n), axis=0, return_inverse=True)[1]
    key = np.zeros(windows, dtype=np.int64)
    for k in range(n):
        key = key * base + ids[k : k + windows]
    return key


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (``np.unique`` by one sort; its hash path is slower here)."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if len(values) else values


def repetition_share(text: str, ngram_size: int = 4) -> float:
    """Share of repeated word n-grams (0: none repeats; → 1: one loop): the repetition reward's
    definition (:func:`r1_recipe.rewards.length.repetition_penalty` with penalty -1, negated).

    >>> repetition_share("a b c d e f g")
    0.0
    >>> repetition_share("go on " * 20) > 0.9
    True
    """
    ids = _words(text).lower_ids
    if len(ids) < ngram_size:
        return 0.0
    keys = _ngram_keys(ids, ngram_size)
    return 1.0 - len(_sorted_distinct(keys)) / len(keys)


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


def shingles(text: str, n: int = 3) -> np.ndarray:
    """Stable 64-bit hashes of the word n-grams of a text's reasoning (the whole text when
    short), sorted and distinct. A window's hash combines its words' crc32 (stable across
    processes, unlike Python's ``hash``), so only the distinct words are hashed one by one.

    >>> len(shingles("a b c d")), np.array_equal(shingles("a b"), shingles(" a  b "))
    (2, True)
    >>> len(shingles("a b c a b c"))
    3
    """
    reasoning, _ = split_reasoning(text)
    body = reasoning if reasoning is not None else text
    words = _words(body)
    if len(words.ids) < n:
        return np.array([zlib.crc32(" ".join(body.split()).encode())], dtype=np.uint64)
    word_hash = np.fromiter((zlib.crc32(w.encode()) for w in words.distinct), dtype=np.uint64,
                            count=len(words.distinct))
    hashes = word_hash[words.ids]
    windows = len(hashes) - n + 1
    key = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            key = key * np.uint64(0x9E3779B97F4A7C15) + hashes[k : k + windows]  # wraps mod 2^64
    return _sorted_distinct(key)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted arrays of distinct values (as :func:`shingles` returns).

    >>> jaccard(np.array([1, 2]), np.array([2, 3]))
    0.3333333333333333
    """
    if not len(a) and not len(b):
        return 1.0
    if not len(a) or not len(b):
        return 0.0
    at = np.searchsorted(b, a).clip(max=len(b) - 1)
    inter = int(np.count_nonzero(b[at] == a))
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
