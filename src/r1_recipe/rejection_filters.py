"""What rejection sampling keeps: the keep rule, the readability filters of the R1 paper,
exact and near-duplicate removal, and the choice of at most k samples per prompt.

Every function here is pure and deterministic (no Python ``hash``, which changes per process),
so a restarted run makes exactly the choices the interrupted one made.

Each dropped sample gets one *reason*, the first that applies, in this order:

1. ``reward:<name>``: a reward below its threshold (the keep rule; ``None`` counts as failing:
   an unverifiable sample is not kept). The rule is per row kind (the ``reward_type`` column, see
   :data:`r1_recipe.rewards.base.REWARD_TYPES`): a threshold on a reward that does not score the
   row's kind is skipped, so with ``{accuracy: 1.0, code: 1.0, format: 1.0}`` a ``math`` row is kept
   on a verified answer and a ``code`` row when its program passes every test (code reward 1.0).
   A ``reasoning`` or untyped row goes to the rewards of both domains, so which of them scores it
   is up to its columns: a threshold on a math or code reward binds it only when the row holds
   every column that reward reads (a math problem without ``verification_info`` is not dropped
   as ``reward:code``). A ``math`` or ``code`` row that no thresholded reward of its domain scores,
   a row of any kind that thresholded domain rewards exist for but none scores, or a row that no
   threshold applies to at all, is dropped as ``reward:unverified``: nothing checked it
   (``reward_thresholds: {}`` turns the keep rule off for every row);
2. ``truncated``: the sampler cut the sample at ``max_new_tokens`` or the model's context (its
   answer may be right, but it stops mid-word, and SFT stage 2 would learn to stop there); it
   still counts as passing the keep rule in the pass rates;
3. readability, on the reasoning (the whole text when there is no ``<think>`` block):
   ``mixed_language``, ``long_paragraph``, ``code_in_reasoning`` (not on ``code`` rows, whose
   reasoning drafts code by nature), ``repetition``;
4. ``exact_duplicate``, ``near_duplicate`` (within the prompt's samples), ``over_k``.

The paper names the readability problems but gives no thresholds; ours are defaults to tune
on the stats JSON of a first run.

Speed (this runs serially between generation chunks, ~800k samples at R1's scale): the checks
are the reward definitions computed in bulk, with the same results. The language share finds
letter runs in a numpy array of code points and asks the reward's script rules only about runs
holding a non-ASCII letter (an ASCII letter run is one Latin word); words are hashed all at once from a prefix sum over
the code points, and repetition and near-duplicate n-grams are numpy keys of those hashes, not
Python tuples or strings. ``benchmarks/data_scale.py`` measures it against the
per-character, per-n-gram versions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from r1_recipe.rewards.base import CODE, DOMAINS, scores_rows_of
from r1_recipe.rewards.extract import extract_answer, split_reasoning
from r1_recipe.rewards.language import LANGUAGE_SCRIPTS, VARIABLE_LETTERS, script_words, unspaced

TRUNCATED = "truncated"
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


UNVERIFIED = "reward:unverified"


def row_thresholds(reward_type, thresholds: Mapping[str, float], reward_funcs: Mapping[str, object],
                   row: Mapping[str, object] | None = None) -> dict | None:
    """The thresholds of the keep rule that apply to a row of ``reward_type`` (``reward_funcs``:
    name -> the reward, which says which rows it scores and which columns it reads; ``row``: the
    row's columns, which decide it for a ``reasoning`` or untyped row), or None when nothing would
    verify the row (see the module docstring).

    >>> from r1_recipe.rewards.base import route
    >>> def acc(c, **k): ...
    >>> def code(c, **k): ...
    >>> def fmt(c, **k): ...
    >>> funcs = {"accuracy": route(acc, domain="math"), "code": route(code, domain="code"), "format": fmt}
    >>> t = {"accuracy": 1.0, "code": 1.0, "format": 1.0}
    >>> row_thresholds("code", t, funcs), row_thresholds("math", t, funcs)
    ({'code': 1.0, 'format': 1.0}, {'accuracy': 1.0, 'format': 1.0})
    >>> row_thresholds(None, t, funcs) == t, row_thresholds("code", {"accuracy": 1.0, "format": 1.0}, funcs)
    (True, None)
    >>> row_thresholds("code", {}, funcs)  # reward_thresholds: {} turns the keep rule off
    {}
    >>> acc.columns, code.columns = {"solution": "solution_column"}, {"verification_info": "verification_column"}
    >>> row_thresholds("reasoning", t, funcs, {"solution": "4", "verification_info": None})
    {'accuracy': 1.0, 'format': 1.0}
    >>> row_thresholds(None, t, funcs, {"solution": "", "verification_info": None}) is None  # nothing verifies it
    True
    """
    if not thresholds:  # no keep rule at all (reward_thresholds: {}): nothing to verify, as before
        return {}
    kind = None if reward_type is None else str(reward_type).lower()

    def binds(name: str) -> bool:
        fn = reward_funcs.get(name)
        if fn is None:
            return True
        if not scores_rows_of(fn, reward_type):
            return False
        if kind in DOMAINS or row is None or _domain(fn) is None:
            return True
        return all(_holds(row.get(c)) for c in getattr(fn, "columns", {}))  # a reasoning row: by its columns

    applied = {n: tau for n, tau in thresholds.items() if binds(n)}
    domain_checked = any(_domain(reward_funcs.get(n)) == kind for n in applied)
    if not applied or kind in DOMAINS and not domain_checked:
        return None
    if kind not in DOMAINS and row is not None and not any(_domain(reward_funcs.get(n)) for n in applied) \
            and any(_domain(reward_funcs.get(n)) for n in thresholds):
        return None  # math or code rewards hold thresholds, and none of them can check this row
    return applied


def _domain(fn) -> str | None:
    return getattr(fn, "routing", {}).get("domain")


def _holds(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


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
    by :func:`r1_recipe.rewards.language.script_words`. Every other run is one Latin word, or,
    for a target not written in Latin, a variable (left out) when it is as short as the
    reward's ``VARIABLE_LETTERS["LATIN"]``.

    >>> language_share("so the angle θ = π/3, hence sin θ = √3/2"), language_share("add 的 ones")
    (1.0, 0.6666666666666666)
    >>> language_share(""), language_share("2 + 2 = 4"), language_share("écrire ça"), language_share("设 x = 3", "zh")
    (0.0, 1.0, 1.0, 1.0)
    """
    if text is None or not text.strip():
        return 0.0
    target = LANGUAGE_SCRIPTS[language]
    latin = "LATIN" in target
    variable = VARIABLE_LETTERS.get("LATIN", 0)  # the longest Latin run that is a variable
    if text.isascii():  # every letter run is Latin: all the target's words, or none of them
        if latin:
            return 1.0
        return 0.0 if re.search(f"[A-Za-z]{{{variable + 1}}}", text) else 1.0
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    letter = _ASCII_LETTER[np.minimum(cps, 128)]
    wide_letters = [c for c in np.unique(cps[cps >= 128]).tolist() if _is_letter(chr(c))]
    wide_letter = np.isin(cps, np.array(wide_letters, dtype=np.uint32)) if wide_letters else np.zeros_like(letter)
    letter |= wide_letter
    begin = np.flatnonzero(letter & ~np.concatenate(([False], letter[:-1])))  # where each run starts
    end = np.flatnonzero(letter & ~np.concatenate((letter[1:], [False]))) + 1
    special = np.unique(np.searchsorted(begin, np.flatnonzero(wide_letter), side="right") - 1)  # runs with one
    plain = np.ones(len(begin), dtype=bool)
    plain[special] = False
    latin_words = int(plain.sum() if latin else (plain & (end - begin > variable)).sum())
    scripts = [s for r in special.tolist() for s in script_words(text[begin[r] : end[r]], language)]
    total = latin_words + len(scripts)
    if total == 0:
        return 1.0
    return (latin * latin_words + sum(s in target for s in scripts)) / total


# Word hashes without a Python step per word: a word is a run of non-whitespace characters (as
# str.split reads them), each letter of an unspaced script a word of its own; its hash is a
# polynomial in its code points mod 2^64, computed for every word at once from one prefix sum
# (Q is P's inverse mod 2^64, so no division is needed). Stable across processes and runs,
# unlike Python's ``hash``.
_P = np.uint64(0x100000001B3)
_Q = np.uint64(pow(int(_P), -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)  # combines word hashes into n-gram keys
_SPACE = np.array([chr(c).isspace() for c in range(0x3001)] + [False])  # str.isspace; none above U+3000


_UNSPACED: list[np.ndarray] = []  # rewards.language.unspaced per code point (none past the CJK blocks)


def _unspaced_table() -> np.ndarray:
    if not _UNSPACED:
        _UNSPACED.append(np.array([unspaced(chr(c)) for c in range(0x40000)] + [False]))
    return _UNSPACED[0]


def word_hashes(text: str) -> np.ndarray:
    """One stable 64-bit hash per word of ``text``, in order, words as
    :func:`r1_recipe.rewards.language.words` reads them (whitespace-separated; each Han, kana or
    Thai letter a word); equal words get equal hashes.

    >>> h = word_hashes("to be  or not\\nto be"); len(h), bool(h[0] == h[4]), bool(h[1] == h[5]), bool(h[0] == h[1])
    (6, True, True, False)
    >>> len(word_hashes("so 答案是 4。"))
    5
    """
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if not len(cps):
        return np.zeros(0, dtype=np.uint64)
    char = ~_SPACE[np.minimum(cps, len(_SPACE) - 1)]
    alone = np.zeros(len(cps), dtype=bool)  # a letter that is a word on its own
    if not text.isascii():
        table = _unspaced_table()
        alone = table[np.minimum(cps, len(table) - 1)]
    cut_before = alone | np.concatenate(([True], alone[:-1] | ~char[:-1]))
    cut_after = alone | np.concatenate((alone[1:] | ~char[1:], [True]))
    starts = np.flatnonzero(char & cut_before)
    ends = np.flatnonzero(char & cut_after) + 1
    p_pow, q_pow = _powers(len(cps))
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(cps) + 1, dtype=np.uint64)
        weighted = cps.astype(np.uint64)
        weighted += np.uint64(1)
        weighted *= q_pow[: len(cps)]
        np.cumsum(weighted, out=prefix[1:])
        hashes = (prefix[ends] - prefix[starts]) * p_pow[ends - 1]  # Σ (cp + 1) · P^(end - 1 - i)
        return hashes * _P + (ends - starts).astype(np.uint64)  # the length too


_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and Q^i for i < n (at least), computed once and grown by doubling."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]) if _POWERS else 1 << 15)
        with np.errstate(over="ignore"):
            p_pow = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _P, dtype=np.uint64))))
            q_pow = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _Q, dtype=np.uint64))))
        _POWERS[:] = [p_pow, q_pow]
    return _POWERS[0], _POWERS[1]


def ngram_keys(hashes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit key per window of ``n`` consecutive word hashes (all of them when fewer)."""
    windows = max(len(hashes) - n + 1, 1)
    n = min(n, len(hashes))
    key = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            key = key * _MIX + hashes[k : k + windows]
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
    hashes = word_hashes(text.lower())
    if len(hashes) < ngram_size:
        return 0.0
    keys = ngram_keys(hashes, ngram_size)
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

    def problem(self, text: str, reward_type: str | None = None) -> str | None:
        """The first readability reason to drop ``text``, or None when it reads well (a ``code``
        row's reasoning may hold code blocks).

        >>> r = Readability()
        >>> r.problem("<think>\\nunits 8+9=17 write 7 carry 1\\n</think>\\n\\\\boxed{97}") is None
        True
        >>> r.problem("<think>add 的 ones 然后 tens</think> 4")
        'mixed_language'
        >>> r.problem("<think>" + "x" * 3001 + "</think> 4")
        'long_paragraph'
        >>> r.problem("<think>try\\n```python\\nprint(2+2)\\n```\\n</think> 4")
        'code_in_reasoning'
        >>> r.problem("<think>try\\n```python\\nprint(2+2)\\n```\\n</think> 4", reward_type="code") is None
        True
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
        if self.code_blocks and "```" in body and str(reward_type).lower() != CODE:
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
    short), sorted and distinct (:func:`word_hashes` combined by :func:`ngram_keys`).

    >>> len(shingles("a b c d")), np.array_equal(shingles("a b"), shingles(" a  b "))
    (2, True)
    >>> len(shingles("a b c a b c"))
    3
    """
    reasoning, _ = split_reasoning(text)
    return _sorted_distinct(ngram_keys(word_hashes(reasoning if reasoning is not None else text), n))


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
