"""length (per prompt group), cosine, reasoning_gym, and the registry's errors and docs."""

import json

import pytest

from r1_recipe.rewards import REWARDS, get_reward_funcs, rewards_table


def box(answer: str, pad: int) -> str:
    return "<think>" + "r" * pad + "</think> \\boxed{" + answer + "}"


def test_length_is_computed_within_each_prompt_group(verifier_opts):
    (fn,) = get_reward_funcs(["length"], length=verifier_opts)
    # Prompt A: lengths 10, 20, 30; prompt B: 100 and 1000, interleaved as a batch might be.
    ids = [[0] * n for n in (10, 100, 20, 1000, 30)]
    prompts = ["A", "B", "A", "B", "A"]
    texts = [box("4", 1), box("4", 1), box("4", 1), box("5", 1), box("5", 1)]
    got = fn(completions=texts, completion_ids=ids, prompts=prompts, solution=["4"] * 5)
    # A: min 10, max 30 -> correct 10: 0.5, correct 20: 0.0, wrong 30: -0.5.
    # B: min 100, max 1000 -> correct 100: 0.5, wrong 1000: min(0, -0.5).
    # Over the whole batch (open-r1) A's samples would all sit near +0.5.
    assert got == [0.5, 0.5, 0.0, -0.5, -0.5]


def test_cosine_table(verifier_opts):
    (fn,) = get_reward_funcs(["cosine"], cosine={**verifier_opts, "max_len": 100})
    ids = [[0] * n for n in (0, 100, 0, 50, 5000)]
    texts = [box("4", 1), box("4", 1), box("5", 1), box("4", 1), box("5", 1)]
    got = fn(completions=texts, completion_ids=ids, solution=["4"] * 5)
    assert got == pytest.approx([1.0, 0.5, -1.0, 0.75, -0.5])


def test_length_and_cosine_are_none_where_accuracy_is(verifier_opts):
    for fn in get_reward_funcs(["length", "cosine"], length=verifier_opts, cosine=verifier_opts):
        got = fn(completions=[box("4", 1)] * 2, solution=["", "4"], reward_type=[None, "general"])
        assert got == [None, None]


def test_reasoning_gym_scores_with_the_generators_rule():
    import reasoning_gym

    ds = reasoning_gym.create_dataset("chain_sum", size=2, seed=3)
    rows = [ds[0], ds[1]]
    (fn,) = get_reward_funcs(["reasoning_gym"])
    completions = [
        f"<think>add</think><answer>{rows[0]['answer']}</answer>",
        "<think>add</think><answer>999999</answer>",
        f"<think>{rows[0]['answer']}</think> no answer",
        "<think>a</think> \\boxed{1}",
    ]
    got = fn(
        completions=completions,
        answer=[rows[0]["answer"], rows[1]["answer"], rows[0]["answer"], "1"],
        metadata=[rows[0]["metadata"], json.dumps(rows[1]["metadata"]), rows[0]["metadata"], {}],
        question=[r["question"] for r in rows] + ["q", "q"],
    )
    assert got == [1.0, 0.0, 0.0, None]  # the last row is not a gym row


def test_unknown_names_and_options_are_errors():
    with pytest.raises(ValueError, match="Did you mean 'accuracy'"):
        get_reward_funcs(["acurracy"])
    with pytest.raises(ValueError, match="Did you mean 'max_len'"):
        get_reward_funcs(["cosine"], cosine={"maxlen": 10})
    with pytest.raises(ValueError, match="not in the reward list"):
        get_reward_funcs(["format"], cosine={"max_len": 10})


def test_names_match_registry_and_table_lists_every_reward():
    cheap = ["format", "format_errors", "tag_count", "reasoning_steps", "language_consistency",
             "repetition", "soft_overlong", "reasoning_gym", "accuracy", "length", "cosine"]
    assert [f.__name__ for f in get_reward_funcs(cheap)] == cheap
    table = rewards_table()
    md = rewards_table(markdown=True).splitlines()
    for name in REWARDS:
        assert any(line.startswith(name + " ") for line in table.splitlines())
    assert len(md) == len(REWARDS) + 2 and all(line.count(" | ") >= 2 for line in md[2:])
    assert "<think>" not in rewards_table(markdown=True)  # would vanish as an HTML tag
