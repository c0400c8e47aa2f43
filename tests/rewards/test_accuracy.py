"""accuracy (and the verifier pool under it): verdicts, equivalent forms, routing, hostile input."""

import time

import pytest

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.verify import MathVerifier, get_verifier



def think(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n{answer}"

MATRIX = "\\begin{pmatrix} 1 & 2 & 3 \\\\\n 4 & 5 & 6 \\\\\n 7 & 8 & 19 \\end{pmatrix}"

# (completion, reference, expected reward)
CASES = [
    (think("2+2", "\\boxed{4}"), "4", 1.0),
    (think("2+2", "\\boxed{5}"), "4", 0.0),
    (think("half", "\\boxed{0.5}"), "\\frac{1}{2}", 1.0),  # equivalent forms
    (think("half", "\\boxed{\\frac12}"), "0.5", 1.0),
    (think("half", "\\boxed{1/2}"), "$\\frac{1}{2}$", 1.0),
    (think("r", "\\boxed{3\\sqrt{2}}"), "3\\sqrt{2}", 1.0),  # bare gold wrapped before parsing
    (think("r", "\\boxed{3}"), "3\\sqrt{2}", 0.0),  # ... not read as 3
    (think("r", "\\boxed{\\sqrt{18}}"), "3\\sqrt{2}", 1.0),
    (think("the answer is \\boxed{4}", "I am not sure."), "4", 0.0),  # box in reasoning only
    (think("r", "<answer>85</answer>"), "85", 1.0),  # tag content extracted first
    (think("r", "<answer>x = 3</answer>"), "3", 1.0),
    (think("r", "\\boxed{1,000}"), "1000", 1.0),
    (think("r", ""), "4", 0.0),  # no answer at all
    ("<think>truncated \\boxed{4}", "4", 0.0),
    (think("r", "\\boxed{4}"), "\\boxed{4}", 1.0),  # boxed gold
    (think("r", "\\boxed{4}"), "", None),  # empty reference: not applicable, never 1.0
    # A gold on several lines parses whole, not as its last number (one $...$ stops at a newline).
    (think("r", "\\boxed{" + MATRIX.replace("\n", " ") + "}"), MATRIX, 1.0),
    (think("r", "\\boxed{" + MATRIX + "}"), MATRIX, 1.0),
    (think("r", "\\boxed{19}"), MATRIX, 0.0),
    (think("r", "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}"), "\\begin{pmatrix} 1 \\\\\n 2 \\end{pmatrix}", 1.0),
    # A gold in plain words is no reference (it parsed as a product of letters and scored 0.0).
    (think("r", "\\boxed{42}"), "forty two", None),
    (think("r", "\\boxed{forty two}"), "forty two", None),
    (think("r", "\\boxed{xy}"), "xy", 1.0),  # single-letter products stay math
]


@pytest.fixture(scope="module")
def accuracy(verifier_opts):
    (fn,) = get_reward_funcs(["accuracy"], accuracy=verifier_opts)
    get_verifier(verifier_opts["workers"], verifier_opts["timeout"]).start()  # start-up is not the limit
    return fn


def test_table(accuracy):
    completions = [c for c, _, _ in CASES]
    got = accuracy(completions=completions, solution=[r for _, r, _ in CASES])
    assert got == [e for _, _, e in CASES]


def test_chat_completions_and_routing(accuracy):
    chat = [[{"role": "assistant", "content": think("r", "\\boxed{4}")}]] * 3
    got = accuracy(
        prompts=[[{"role": "user", "content": "2+2?"}]] * 3,
        completions=chat,
        solution=["4", "4", "4"],
        reward_type=["reasoning", "general", None],
        trainer_state=None,
        log_metric=lambda *a: None,
    )
    assert got == [1.0, None, 1.0]


def test_prefilled_think_in_prompt(accuracy):
    # The prompt ends with <think>: a box in the unclosed-looking reasoning must not score.
    got = accuracy(prompts=["Q <think>\n"] * 2, completions=["\\boxed{4} hmm</think> \\boxed{5}",
                   "r</think> \\boxed{4}"], solution=["4", "4"])
    assert got == [0.0, 1.0]


def test_unparseable_reference_is_none_not_one():
    v = MathVerifier(workers=0)
    assert v.verify_many([("\\text{anything}", "\\frac{"), (None, "")]) == [None, None]


def test_cosine_gives_none_for_a_gold_in_words(verifier_opts):
    (cosine,) = get_reward_funcs(["cosine"], cosine=verifier_opts)
    got = cosine(completions=[think("r", "\\boxed{42}"), think("r", "\\boxed{42}")], solution=["forty two", "42"])
    assert got[0] is None and got[1] > 0.5  # was -0.75: a wrong answer against an unreadable gold


def test_missing_column_says_what_to_fix(accuracy):
    with pytest.raises(KeyError, match="solution"):
        accuracy(completions=["x"], answer=["1"])


def test_identical_pairs_verified_once():
    v = MathVerifier(workers=1, timeout=5.0)
    try:
        pairs = [("4", "4"), ("5", "4"), ("4", "4"), ("0.5", "\\frac{1}{2}")] * 16
        assert v.verify_many(pairs) == [1.0, 0.0, 1.0, 1.0] * 16
        assert len(v.cache) == 3
    finally:
        v.close()


HOSTILE = [
    "9^{9^{9^{9}}}",  # a big-integer power that never returns
    "\\frac",  # no arguments
    "{" * 10_000,
    "x" * 1_000_000,
    "\ud800\udfff",
    "(" * 5_000 + ")" * 5_000,
]


def test_hostile_answers_score_zero_within_the_limit():
    v = MathVerifier(workers=2, timeout=1.5)
    try:
        v.start()  # the pool's start-up (seconds on a loaded machine) is not the per-pair limit
        start = time.monotonic()
        got = v.verify_many([(a, "5") for a in HOSTILE])
        elapsed = time.monotonic() - start
        assert got == [0.0] * len(HOSTILE)
        # 6 items on 2 workers, each killed at 1.5 s at worst and a timeout retried once, plus respawns.
        assert elapsed < 2 * 3 * 1.5 + 4
        # The pool still works after killing workers.
        assert v.verify_many([("7", "7")]) == [1.0]
    finally:
        v.close()


def test_hostile_completion_through_the_reward(accuracy):
    completions = [think("r", "\\boxed{9^{9^{9^{9}}}}"), "x" * 1_000_000,
                   think("r", "\\boxed{" * 10_000), think("\ud800", "\\boxed{\\frac}")]
    start = time.monotonic()
    got = accuracy(completions=completions, solution=["5"] * 4)
    assert got == [0.0] * 4
    assert time.monotonic() - start < 2 * 2.0 + 6  # the power tower hangs twice: a timeout is retried once
