"""Pure text helpers shared by the rewards and the evaluator.

They split a completion in the R1 output format (``<think>…</think>`` then the answer) and
pull out the final answer. They run on every sample of every step and on hostile text, so
they are linear-time: no backtracking regexes, one pass to match braces.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"\\\\|\\[{}]|[{}]")  # escaped backslash, escaped brace, brace
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)


REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # where a parsed message keeps it


def _message_text(message: dict) -> str:
    """A message's text; reasoning that a response parser moved into its own field (TRL parses
    completions with the tokenizer's ``response_schema`` when it has one) goes back in tags."""
    content = str(message.get("content") or "")
    reasoning = next((message[f] for f in REASONING_FIELDS if message.get(f)), None)
    if reasoning is None or THINK_CLOSE in content:
        return content
    return f"{THINK_OPEN}\n{str(reasoning).strip()}\n{THINK_CLOSE}\n{content}"


def completion_text(completion: str | list[dict] | dict) -> str:
    """The text of one completion, whether TRL passes a string or chat messages.

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    >>> completion_text("hi")
    'hi'
    >>> completion_text({"role": "assistant", "reasoning_content": "2+2=4", "content": "\\\\boxed{4}"})
    '<think>\\n2+2=4\\n</think>\\n\\\\boxed{4}'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _message_text(completion)
    if isinstance(completion, list) and completion:
        return "".join(_message_text(m) for m in completion if isinstance(m, dict))
    return ""


def opens_think(rendered: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` (its completion continues the
    reasoning): it ends with the tag, up to whitespace.

    >>> opens_think("<|im_start|>assistant\\n<think>\\n"), opens_think("<think>\\n\\n</think>\\n\\n")
    (True, False)
    """
    return rendered.rstrip().endswith(THINK_OPEN)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split a completion into (reasoning, answer section).

    The reasoning is the content of the first ``<think>…</think>`` block (or everything before
    ``</think>`` when the prompt already opened the tag). The answer section is the text after
    the *last* ``</think>``, so nothing inside any reasoning block can ever score. An unclosed
    ``<think>`` means a truncated completion: no reasoning and an empty answer. Without tags
    the whole text is the answer.

    >>> split_reasoning("<think>\\n2+2 is 4\\n</think>\\nThe answer is \\\\boxed{4}.")
    ('2+2 is 4', 'The answer is \\\\boxed{4}.')
    >>> split_reasoning("prefilled thought</think> 4")
    ('prefilled thought', '4')
    >>> split_reasoning("<think> never closed \\\\boxed{4}")
    (None, '')
    >>> split_reasoning("just 4")
    (None, 'just 4')
    """
    close = text.find(THINK_CLOSE)
    if close < 0:
        return (None, "") if THINK_OPEN in text else (None, text.strip())
    open_ = text.rfind(THINK_OPEN, 0, close)
    reasoning = text[open_ + len(THINK_OPEN) : close] if open_ >= 0 else text[:close]
    answer = text[text.rfind(THINK_CLOSE) + len(THINK_CLOSE) :]
    return reasoning.strip(), answer.strip()


def _match_braces(text: str, start: int) -> dict[int, int]:
    """Map each ``{`` at or after ``start`` to its matching ``}`` (one linear pass).

    Escaped braces ``\\{ \\}`` are LaTeX literals and do not count; unmatched braces are left
    out, so 10 000 unclosed braces cost one scan, not 10 000.
    """
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for m in _BRACE.finditer(text, start):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{…}`` (or ``\\fbox{…}``), stripped.

    >>> last_boxed(r"\\boxed{1} then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{\\{1,2\\}}")
    '\\\\{1,2\\\\}'
    >>> last_boxed(r"\\boxed{5} and \\boxed{ unclosed") is None
    False
    >>> last_boxed("no box") is None
    True
    """
    starts = [m.end() - 1 for m in _BOXED.finditer(text)]
    if not starts:
        return None
    pairs = _match_braces(text, starts[0])
    for brace in reversed(starts):
        end = pairs.get(brace)
        if end is not None:
            content = text[brace + 1 : end].strip()
            return content or None
    return None


def answer_tag(text: str) -> str | None:
    """Content of the last closed ``<answer>…</answer>``, stripped; None when empty or absent.

    >>> answer_tag("<answer> 85 </answer>")
    '85'
    >>> answer_tag("<answer></answer>") is None
    True
    """
    open_ = text.rfind(ANSWER_OPEN)
    if open_ < 0:
        return None
    close = text.find(ANSWER_CLOSE, open_)
    if close < 0:
        return None
    return text[open_ + len(ANSWER_OPEN) : close].strip() or None


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the last ``\\boxed{…}`` in the answer section, else
    the content of ``<answer>…</answer>``; None when there is none.

    Numbers in the reasoning never count (see :func:`split_reasoning`).

    >>> extract_answer("<think>maybe \\\\boxed{3}</think>\\nSo \\\\boxed{4}.")
    '4'
    >>> extract_answer("<think>maybe \\\\boxed{3}</think>\\nI give up.") is None
    True
    >>> extract_answer("<think>x</think>\\n<answer>\\n85\\n</answer>")
    '85'
    """
    _, answer = split_reasoning(text)
    boxed = last_boxed(answer)
    return boxed if boxed is not None else answer_tag(answer)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block of the answer section as (language tag, code), in order.

    >>> code_blocks("<think>```py\\nbad()\\n```</think>\\n```python\\nprint(1)\\n```\\n```\\n1\\n```")
    [('python', 'print(1)\\n'), ('', '1\\n')]
    """
    _, answer = split_reasoning(text)
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(answer)]


def last_code_block(text: str) -> str | None:
    """The last fenced code block of the answer section (reasoning drafts never run).

    >>> last_code_block("<think>```py\\nbad()\\n```</think>\\n```python\\nprint(1)\\n```")
    'print(1)\\n'
    """
    _, answer = split_reasoning(text)
    last = None
    for last in _FENCE.finditer(answer):
        pass
    return last.group(2) if last else None
