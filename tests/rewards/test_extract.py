"""Answer extraction: the answer section only, the last balanced box, hostile text in linear time."""

import time

import pytest

from r1_recipe.rewards.extract import extract_answer, last_code_block, split_reasoning

CASES = [
    # (completion, expected answer)
    ("<think>\n2+2\n</think>\nSo \\boxed{4}.", "4"),
    ("<think>guess \\boxed{3}</think>\nno final answer", None),  # box in reasoning only
    ("<think>a</think> \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # last box
    ("<think>a</think> \\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),  # nested braces
    ("<think>a</think> \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are literals
    ("<think>a</think> \\boxed{5} and \\boxed{ 6", "5"),  # truncated last box: the balanced one
    ("<think>a</think>\n<answer>\n85\n</answer>", "85"),  # R1-Zero tag, stripped
    ("<think>a</think>\n<answer>\\boxed{7}</answer>", "7"),  # box wins inside the tag
    ("<think>a</think>\n<answer></answer>", None),
    ("<think>never closed \\boxed{4}", None),  # truncated reasoning scores nothing
    ("prefilled reasoning</think> \\boxed{12}", "12"),  # prompt opened <think>
    ("no tags at all \\boxed{-3}", "-3"),
    ("<think>a</think><think>\\boxed{9}</think> \\boxed{2}", "2"),  # after the LAST </think>
    ("<think>a</think> \\fbox{8}", "8"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_split_reasoning_keeps_reasoning_and_answer_apart():
    assert split_reasoning("<think>\n r \n</think>\n a ") == ("r", "a")
    assert split_reasoning("plain") == (None, "plain")


HOSTILE = [
    "{" * 10_000,
    "</think>" + "\\boxed{" * 10_000,
    "</think>\\boxed{" + "{" * 10_000 + "}" * 10_000 + "}",
    "x" * 1_000_000,
    "</think>" + "\\boxed{1}" * 100_000,
    "<think>\ud800</think>\\boxed{\udfff}",  # lone surrogates (invalid UTF-8)
    "```\n" * 200_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_fast(text):
    start = time.perf_counter()
    answer = extract_answer(text)
    last_code_block(text)
    assert time.perf_counter() - start < 0.5
    assert answer is None or isinstance(answer, str)


def test_deep_box_content_is_returned_whole():
    inner = "{" * 10_000 + "}" * 10_000
    assert extract_answer("</think>\\boxed{" + inner + "}") == inner


def test_last_code_block_ignores_reasoning_drafts():
    text = "<think>```python\nimport os\n```</think>\nfirst\n```python\na=1\n```\n```py\nprint(2)\n```"
    assert last_code_block(text) == "print(2)\n"
    assert last_code_block("<think>```python\nx\n```</think> no code") is None
