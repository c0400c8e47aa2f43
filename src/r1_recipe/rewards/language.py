"""R_lang: the share of the chain of thought written in the target language.

DeepSeek-R1 added this reward because RL mixed scripts (English with Chinese) in its
reasoning. We judge a word by its Unicode script, which is what that mixing looks like; we
do not tell apart languages that share a script (English vs French both count as Latin).
Digits, symbols and punctuation are neutral. Scripts without spaces (Han, kana, Thai) count one
word per character, since there are no spaces to split on.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from r1_recipe.rewards.base import RewardFunc, applies, named, texts
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


@lru_cache(maxsize=65536)
def script(ch: str) -> str:
    """The Unicode script of a letter, from its name ("LATIN SMALL LETTER A" -> "LATIN").

    >>> script("a"), script("中"), script("д"), script("ひ")
    ('LATIN', 'CJK', 'CYRILLIC', 'HIRAGANA')
    """
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return "OTHER" if not first else first


def script_words(text: str) -> list[str]:
    """The script of each word; a run of letters splits where its script changes.

    >>> script_words("Let x = 3, 所以 ответ 3")
    ['LATIN', 'LATIN', 'CJK', 'CJK', 'CYRILLIC']
    """
    words: list[str] = []
    for run in _LETTERS.finditer(text):
        prev = None
        for ch in run.group():
            s = script(ch)
            if s in _NO_SPACES or s != prev:
                words.append(s)
            prev = s
    return words


def language_share(reasoning: str | None, language: str = "en") -> float:
    """Words of the target language's scripts / all words in the reasoning.

    0.0 for a missing or empty reasoning; 1.0 for a reasoning with text but no words (only
    digits and symbols: nothing is in another language).

    >>> language_share("add the ones, then the tens")
    1.0
    >>> language_share("add 的 ones")
    0.6666666666666666
    >>> language_share("")
    0.0
    """
    if reasoning is None or not reasoning.strip():
        return 0.0
    words = script_words(reasoning)
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
            for i, t in enumerate(texts(completions, kwargs.get("prompts")))
        ]

    return named(fn, "language_consistency")
