"""R_lang: the share of the chain of thought written in the target language.

DeepSeek-R1 added this reward because RL mixed scripts (English with Chinese) in its
reasoning. We judge a word by its Unicode script, which is what that mixing looks like; we
do not tell apart languages that share a script (English vs French both count as Latin).
Digits, symbols and punctuation are neutral. Scripts without spaces (Han, kana, Thai) count one
word per character, since there are no spaces to split on.

Math notation is neutral too, not a foreign script ("so the angle θ = π/3, hence sin θ = √3/2"
is all English): operators and symbols are not letters; letter-like math symbols (𝑥, ℝ, ℓ, ℏ,
ℵ, µ) never count; and a Greek letter or two standing alone (θ, π, αβ, the Δ of Δx) is a math
symbol unless the target language is written in Greek. Likewise a single Latin letter (x, n) is a
variable for a target language not written in Latin ("设 x = 3" is all Chinese). Longer runs
of Greek (a real Greek word) still count against an English target.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from r1_recipe.rewards.base import RewardFunc, applies, named, row_texts
from r1_recipe.rewards.extract import split_reasoning

# Target language -> the scripts its words are written in.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"LATIN"}) for lang in
       ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "tr", "vi", "id", "sv", "cs", "ro")},
    "zh": frozenset({"CJK"}),
    "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"HANGUL", "CJK"}),
    "ru": frozenset({"CYRILLIC"}),
    "uk": frozenset({"CYRILLIC"}),
    "ar": frozenset({"ARABIC"}),
    "fa": frozenset({"ARABIC"}),
    "he": frozenset({"HEBREW"}),
    "el": frozenset({"GREEK"}),
    "hi": frozenset({"DEVANAGARI"}),
    "th": frozenset({"THAI"}),
}
_NO_SPACES = {"CJK", "HIRAGANA", "KATAKANA", "THAI"}
_LETTERS = re.compile(r"[^\W\d_]+")
# Unicode names of letter-like math symbols begin with these (MATHEMATICAL ITALIC SMALL X,
# DOUBLE-STRUCK CAPITAL R, SCRIPT SMALL L, PLANCK CONSTANT, ALEF SYMBOL, MICRO SIGN, ...).
MATH_SYMBOL_NAMES = frozenset({"MATHEMATICAL", "DOUBLE-STRUCK", "SCRIPT", "BLACK-LETTER", "PLANCK", "ALEF", "BET",
                               "GIMEL", "DALET", "MICRO", "ANGSTROM", "OHM", "KELVIN"})
# Alphabets of math variables, and the longest run of them read as notation, not as a word.
VARIABLE_LETTERS = {"GREEK": 2, "LATIN": 1}
NEUTRAL = "NEUTRAL"  # the script of a math symbol


@lru_cache(maxsize=65536)
def script(ch: str) -> str:
    """The Unicode script of a letter, from its name ("LATIN SMALL LETTER A" -> "LATIN").

    >>> script("a"), script("中"), script("д"), script("ひ")
    ('LATIN', 'CJK', 'CYRILLIC', 'HIRAGANA')
    """
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in MATH_SYMBOL_NAMES:
        return NEUTRAL
    return "OTHER" if not first else first


def script_words(text: str, language: str | None = None) -> list[str]:
    """The script of each word; a run of letters splits where its script changes. Math
    symbols and, for a target ``language`` not written in their alphabet, short variable runs
    (θ, π; x for a non-Latin target) are left out (see the module docstring).

    >>> script_words("Let x = 3, 所以 ответ 3")
    ['LATIN', 'LATIN', 'CJK', 'CJK', 'CYRILLIC']
    >>> script_words("sin θ = √3/2, Δx on ℝ", language="en")
    ['LATIN', 'LATIN', 'LATIN']
    """
    target = LANGUAGE_SCRIPTS.get(language, frozenset()) if language else frozenset()
    words: list[str] = []
    for run in _LETTERS.finditer(text):
        segment, size = None, 0
        for ch in run.group():
            s = script(ch)
            if s in _NO_SPACES or s != segment:
                _close(words, segment, size, target)
                segment, size = s, 0
            size += 1
        _close(words, segment, size, target)
    return words


def unspaced(ch: str) -> bool:
    """A letter of a script written without spaces (Han, kana, Thai): a word on its own.

    >>> unspaced("中"), unspaced("ひ"), unspaced("a"), unspaced("。")
    (True, True, False, False)
    """
    return ch.isalpha() and script(ch) in _NO_SPACES


def words(text: str) -> list[str]:
    """The words n-gram rewards count: whitespace-separated, and each letter of an unspaced
    script its own word (else a looping Chinese completion is one word and never repeats).

    >>> words("so 答案是 4。")
    ['so', '答', '案', '是', '4。']
    """
    out: list[str] = []
    for token in text.split():
        if token.isascii():
            out.append(token)
            continue
        piece = ""
        for ch in token:
            if unspaced(ch):
                out.extend(filter(None, (piece, ch)))
                piece = ""
            else:
                piece += ch
        if piece:
            out.append(piece)
    return out


def _close(words: list[str], segment: str | None, size: int, target: frozenset[str]) -> None:
    """Count one finished same-script piece of a run as a word, unless it is math notation."""
    if segment is None or segment == NEUTRAL:
        return
    if target and segment not in target and size <= VARIABLE_LETTERS.get(segment, 0):
        return
    words.append(segment)


def language_share(reasoning: str | None, language: str = "en") -> float:
    """Words of the target language's scripts / all words in the reasoning.

    0.0 for a missing or empty reasoning; 1.0 for a reasoning with text but no words (only
    digits and symbols: nothing is in another language).

    >>> language_share("add the ones, then the tens")
    1.0
    >>> language_share("add 的 ones")
    0.6666666666666666
    >>> language_share("so the angle θ = π/3, hence sin θ = √3/2")
    1.0
    >>> language_share("")
    0.0
    """
    if reasoning is None or not reasoning.strip():
        return 0.0
    words = script_words(reasoning, language)
    if not words:
        return 1.0
    target = LANGUAGE_SCRIPTS[language]
    return sum(w in target for w in words) / len(words)


def language_consistency(language: str = "en") -> RewardFunc:
    """Share of words in the reasoning written in the target language's script (R_lang, by
    Unicode script); 0.0 for an empty reasoning.

    >>> language_consistency()(["<think>so 2+2 is 4</think> 4", "<think>所以 four</think> 4"])
    [1.0, 0.3333333333333333]
    """
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(
            f"language {language!r} is not known; choose one of {sorted(LANGUAGE_SCRIPTS)} "
            "or add its scripts to LANGUAGE_SCRIPTS"
        )

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        ok = applies(len(completions), kwargs.get("reward_type"))
        return [
            language_share(split_reasoning(t)[0], language) if ok[i] else None
            for i, t in enumerate(row_texts(completions, kwargs))
        ]

    return named(fn, "language_consistency")
