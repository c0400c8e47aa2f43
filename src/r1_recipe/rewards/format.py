"""R_format: structure of the output, ``<think>…</think>`` then the answer.

Two templates: ``r1`` (answer is the free text after ``</think>``, math in ``\\boxed{}``) and
``r1_zero`` (answer inside exactly one ``<answer>…</answer>`` after the reasoning). With
``template="auto"`` a row is R1-Zero when its ``template`` column says so, else when the prompt
or the completion mentions ``<answer>``.
"""

from __future__ import annotations

import re
from typing import Any

from r1_recipe.rewards.base import RewardFunc, applies, named, prompt_text, row_texts
from r1_recipe.rewards.extract import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    answer_tag,
    split_reasoning,
)

TEMPLATES = ("auto", "r1", "r1_zero")
_STEP = re.compile(
    r"^[ \t]*(?:Step \d+[:.]|\d+[.)][ \t]|[-*][ \t])|\b(?:First|Second|Third|Next|Then|Finally),",
    re.MULTILINE,
)


def structure_errors(text: str, zero: bool) -> list[str]:
    """The structural errors of one completion, by name (empty list: well formed).

    >>> structure_errors("<think>\\nadd\\n</think>\\n\\\\boxed{4}", zero=False)
    []
    >>> structure_errors("<think></think>", zero=False)
    ['empty reasoning', 'empty answer']
    >>> structure_errors("4 <think>a</think><think>b</think> 4", zero=False)
    ['<think> count 2', '</think> count 2', 'text before <think>']
    >>> structure_errors("<think>a</think>\\n<answer> 4 </answer> bye", zero=True)
    ['text outside <answer>']
    """
    errors = []
    n_open, n_close = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    if n_open != 1:
        errors.append(f"<think> count {n_open}")
    if n_close != 1:
        errors.append(f"</think> count {n_close}")
    first_open, first_close = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    if 0 <= first_close < first_open or (first_open < 0 and first_close >= 0):
        errors.append("</think> before <think>")
    elif first_open > 0 and text[:first_open].strip():
        errors.append("text before <think>")
    reasoning, answer = split_reasoning(text)
    if n_close and not reasoning:
        errors.append("empty reasoning")
    if zero:
        a_open, a_close = answer.count(ANSWER_OPEN), answer.count(ANSWER_CLOSE)
        if a_open != 1 or a_close != 1:
            errors.append(f"<answer> count {a_open}, </answer> count {a_close}")
        elif answer.find(ANSWER_CLOSE) < answer.find(ANSWER_OPEN):
            errors.append("</answer> before <answer>")
        elif answer[: answer.find(ANSWER_OPEN)].strip() or answer[
            answer.find(ANSWER_CLOSE) + len(ANSWER_CLOSE) :
        ].strip():
            errors.append("text outside <answer>")
        if not answer_tag(answer):
            errors.append("empty answer")
    elif not answer:
        errors.append("empty answer")
    return errors


def _is_zero(template: str, i: int, text: str, kwargs: dict[str, Any]) -> bool:
    if template != "auto":
        return template == "r1_zero"
    col = kwargs.get("template")
    if col is not None and col[i]:
        return str(col[i]).replace("-", "_").lower() == "r1_zero"
    prompts = kwargs.get("prompts")
    if prompts is not None and ANSWER_OPEN in prompt_text(prompts[i]):
        return True
    return ANSWER_OPEN in text or ANSWER_CLOSE in text


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {TEMPLATES}, got {template!r}")


def format_errors(template: str = "auto") -> RewardFunc:
    """-(number of structural errors): missing/duplicated/misordered tags, empty reasoning,
    empty answer, text outside <answer> (R1-Zero); 0.0 when well formed.

    >>> format_errors()(["<think>x</think> 4", "<think></think>", "no tags"])
    [0.0, -2.0, -2.0]
    """
    _check_template(template)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        ok = applies(len(completions), kwargs.get("reward_type"))
        return [
            float(-len(structure_errors(t, _is_zero(template, i, t, kwargs)))) if ok[i] else None
            for i, t in enumerate(row_texts(completions, kwargs))
        ]

    return named(fn, "format_errors")


def format(template: str = "auto") -> RewardFunc:  # noqa: A001 - the registry name
    """1.0 when the completion is one non-empty <think> block at the start then a non-empty
    answer (R1-Zero: exactly one <answer> block after it), else 0.0.

    >>> format()(["<think>x</think>\\n\\\\boxed{4}", "<think>x</think>"])
    [1.0, 0.0]
    >>> format("r1_zero")(["<think>x</think>\\n<answer>4</answer>", "<think>x</think> 4"])
    [1.0, 0.0]
    """
    errors = format_errors(template)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        return [None if e is None else float(e == 0.0) for e in errors(completions, **kwargs)]

    return named(fn, "format")


def tag_count() -> RewardFunc:
    """0.25 for each of <think>, </think>, <answer>, </answer> present exactly once (a dense
    shaping signal for R1-Zero, where format alone is 0/1).

    >>> tag_count()(["<think>a</think><answer>b</answer>", "<think>a</think><think>", "x"])
    [1.0, 0.25, 0.0]
    """
    tags = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        ok = applies(len(completions), kwargs.get("reward_type"))
        return [
            0.25 * sum(t.count(tag) == 1 for tag in tags) if ok[i] else None
            for i, t in enumerate(row_texts(completions, kwargs))
        ]

    return named(fn, "tag_count")


def reasoning_steps(min_steps: int = 3) -> RewardFunc:
    """Explicit step structure in the reasoning ("Step 1:", "1.", bullets, "First,", "Next,"
    ...): markers / min_steps, capped at 1.0.

    >>> reasoning_steps()(["<think>Step 1: a\\nStep 2: b\\nFinally, c</think> 4", "<think>hm</think>"])
    [1.0, 0.0]
    """
    if min_steps < 1:
        raise ValueError(f"min_steps must be >= 1, got {min_steps}")

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        ok = applies(len(completions), kwargs.get("reward_type"))
        out: list[float | None] = []
        for i, t in enumerate(row_texts(completions, kwargs)):
            reasoning, answer = split_reasoning(t)
            body = reasoning if reasoning is not None else answer
            out.append(min(1.0, len(_STEP.findall(body)) / min_steps) if ok[i] else None)
        return out

    return named(fn, "reasoning_steps")
