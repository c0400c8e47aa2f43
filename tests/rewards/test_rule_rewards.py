"""format, format_errors, tag_count, reasoning_steps, language_consistency, repetition,
soft_overlong: tables of crafted completions with the exact reward each must get."""

import pytest

from r1_recipe.rewards import get_reward_funcs

FORMAT_R1 = [
    # (completion, format, format_errors)
    ("<think>\nadd\n</think>\n\\boxed{4}", 1.0, 0.0),
    ("  <think>add</think> 4", 1.0, 0.0),  # leading whitespace is fine
    ("<think>add</think>", 0.0, -1.0),  # empty answer
    ("<think></think> 4", 0.0, -1.0),  # empty reasoning
    ("<think></think>", 0.0, -2.0),
    ("4", 0.0, -2.0),  # both tags missing
    ("add</think> 4", 0.0, -2.0),  # missing <think>, </think> first
    ("<think>a</think><think>b</think> 4", 0.0, -2.0),  # duplicated block
    ("Sure! <think>a</think> 4", 0.0, -1.0),  # text before <think>
    ("</think> x <think>", 0.0, -2.0),  # misordered; and nothing after the last </think>
]

FORMAT_ZERO = [
    ("<think>a</think>\n<answer>4</answer>", 1.0, 0.0),
    ("<think>a</think>\n<answer>4</answer>\nbye", 0.0, -1.0),  # text after the answer
    ("<think>a</think>\n<answer></answer>", 0.0, -1.0),  # empty answer
    ("<think>a</think> 4", 0.0, -2.0),  # no answer tags: count + empty answer
    ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0, -1.0),  # duplicated
    ("<think>a</think></answer>4<answer>", 0.0, -2.0),  # misordered, hence empty
]


@pytest.mark.parametrize("template,cases", [("r1", FORMAT_R1), ("r1_zero", FORMAT_ZERO)])
def test_format_tables(template, cases):
    fmt, errs = get_reward_funcs(["format", "format_errors"], format={"template": template},
                                 format_errors={"template": template})
    completions = [c for c, _, _ in cases]
    assert fmt(completions=completions) == [f for _, f, _ in cases]
    assert errs(completions=completions) == [e for _, _, e in cases]


def test_format_auto_reads_the_template_from_the_prompt():
    (fmt,) = get_reward_funcs(["format"])
    zero_prompt = "... reasoning in <think> </think> and answer in <answer> </answer> tags."
    got = fmt(prompts=[zero_prompt, "Solve: 2+2"], completions=["<think>a</think> 4"] * 2)
    assert got == [0.0, 1.0]
    got = fmt(completions=["<think>a</think> 4"] * 2, template=["r1_zero", "r1"])
    assert got == [0.0, 1.0]


def test_tag_count_and_steps():
    tags, steps = get_reward_funcs(["tag_count", "reasoning_steps"])
    completions = [
        "<think>Step 1: a\nStep 2: b\nStep 3: c</think><answer>4</answer>",
        "<think>First, a. Next, b.</think><answer>4</answer><answer>",
        "<think>1. a\n2. b\n- c\n- d</think>",
        "just 4",
    ]
    assert tags(completions=completions) == [1.0, 0.75, 0.5, 0.0]
    assert steps(completions=completions) == [1.0, pytest.approx(2 / 3), 1.0, 0.0]


LANG = [
    # (reasoning, language, share)
    ("add the ones then the tens", "en", 1.0),
    ("add the ones 然后 tens", "en", 4 / 6),  # two Han characters = two words
    ("сложим единицы and tens", "en", 0.5),
    ("12 + 35 = 47", "en", 1.0),  # no words: nothing in another language
    ("", "en", 0.0),  # empty reasoning
    ("先算个位", "zh", 1.0),
    ("先算 the ones", "zh", 0.5),
    ("сначала единицы", "ru", 1.0),
    # math notation is neutral, not a foreign script
    ("so the angle θ = π/3, hence sin θ = √3/2", "en", 1.0),
    ("let 𝑥 ∈ ℝ, the wavelength ℓ in µm, Δx small, αβ = 1", "en", 1.0),
    ("设 x = 3, 所以", "zh", 1.0),  # a lone Latin letter is a variable in Chinese text
    ("καλημέρα friend", "en", 0.5),  # ... but a Greek word still counts
    ("το x και η", "el", 1.0),  # and in Greek text a lone Greek letter is a word
]


@pytest.mark.parametrize("reasoning,language,share", LANG)
def test_language_consistency(reasoning, language, share):
    (fn,) = get_reward_funcs(["language_consistency"], language_consistency={"language": language})
    assert fn(completions=[f"<think>{reasoning}</think> 4"]) == [pytest.approx(share)]


def test_language_needs_the_reasoning_block():
    (fn,) = get_reward_funcs(["language_consistency"])
    assert fn(completions=["no think tags at all", "<think>unclosed"]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="xx"):
        get_reward_funcs(["language_consistency"], language_consistency={"language": "xx"})


def test_repetition():
    (fn,) = get_reward_funcs(["repetition"], repetition={"ngram_size": 2, "max_penalty": -2.0})
    got = fn(completions=["a b c d", "a b a b a b", "x", "a a a a a"])
    # "a b a b a b": 5 bigrams, 2 distinct -> 0.6 repeated; "a a a a a": 4 bigrams, 1 distinct.
    assert got == [0.0, pytest.approx(-1.2), 0.0, pytest.approx(-1.5)]


def test_repetition_counts_ngrams_in_unspaced_scripts():
    # A looping Chinese or Japanese completion has no spaces: it was one "word", penalty 0.0.
    (fn,) = get_reward_funcs(["repetition"], repetition={"ngram_size": 3, "max_penalty": -1.0})
    loop_zh, loop_ja = "所以答案是四。" * 20, "だから答えは四です。" * 20
    fresh = "我们先算个位再算十位最后检查进位"  # 16 distinct characters: no 3-gram repeats
    got = fn(completions=[loop_zh, loop_ja, fresh, "所以 答案 是 四。 " * 20])
    assert got[0] < -0.9 and got[1] < -0.9 and got[3] < -0.9
    assert got[2] == 0.0


def test_soft_overlong_uses_token_counts():
    (fn,) = get_reward_funcs(["soft_overlong"], soft_overlong={"max_completion_len": 10,
                                                                "soft_punish_cache": 4})
    ids = [[1] * n for n in (3, 6, 8, 10, 11)]
    assert fn(completions=["x"] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(KeyError, match="completion_ids"):
        fn(completions=["x"])


@pytest.mark.parametrize("name", ["format", "format_errors", "tag_count", "reasoning_steps",
                                  "language_consistency", "repetition"])
def test_rule_rewards_skip_general_rows(name):
    (fn,) = get_reward_funcs([name])
    got = fn(completions=["<think>a</think> 4"] * 3, reward_type=["general", "reasoning", None])
    assert got[0] is None and got[1] is not None and got[2] is not None


HOSTILE = ["x" * 1_000_000, "{" * 10_000, "<think>\ud800\udc00\ud800</think>\\boxed{\\frac}",
           "<think>" * 100_000, "\\boxed{9^{9^{9^{9}}}}"]


def test_cheap_rewards_survive_hostile_completions():
    names = ["format", "format_errors", "tag_count", "reasoning_steps", "language_consistency",
             "repetition"]
    for fn in get_reward_funcs(names):
        got = fn(completions=HOSTILE)
        assert len(got) == len(HOSTILE) and all(isinstance(v, float) for v in got), fn.__name__


def test_the_rejection_filter_keeps_a_trace_written_in_math_notation():
    from r1_recipe.rejection_filters import Readability

    trace = "<think>\nso the angle θ = π/3, hence sin θ = √3/2 and Δx → 0 on ℝ\n</think>\n\\boxed{\\frac{\\sqrt{3}}{2}}"
    assert Readability().problem(trace) is None  # was 'mixed_language' (share 0.5 < 0.95)
    assert Readability().problem("<think>so the angle 角 is 60 度 degrees</think> 4") == "mixed_language"
