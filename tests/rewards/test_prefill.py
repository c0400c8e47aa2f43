"""Templates that open ``<think>`` themselves (DeepSeek-R1-Distill's, Qwen3 thinking models): the
completion starts inside the reasoning and lacks the opening tag. The rewards must see the
prompt's opening, or every sample scores 0 on format."""

import pytest

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.base import PREFILL_COLUMN, final_answer, template_opens_think
from r1_recipe.tiny import CHAT_TEMPLATE, build_tokenizer

# The generation prompt of DeepSeek-R1-Distill's template (its real text, minus tool calls).
R1_DISTILL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)
# Qwen3's hybrid template: thinking off closes an empty block in the prompt.
QWEN3_LIKE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

CHAT = [{"role": "user", "content": "What is 2+2?"}]
# What a model behind the R1-Distill template writes: the reasoning, then </think>, then the answer.
CONTINUED = [[{"role": "assistant", "content": "2 and 2 make 4.\n</think>\nThe answer is \\boxed{4}."}],
             [{"role": "assistant", "content": "2 and 2 make 4, so \\boxed{4} and then it was cut off"}]]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_the_opening_is_read_from_the_template(tokenizer):
    tokenizer.chat_template = R1_DISTILL_TEMPLATE
    assert template_opens_think(tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    assert not template_opens_think(tokenizer)
    tokenizer.chat_template = QWEN3_LIKE
    assert not template_opens_think(tokenizer, enable_thinking=False)
    assert not template_opens_think(tokenizer, enable_thinking=True)


def test_a_real_qwen3_template_with_thinking_off_does_not_open(require_asset):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(require_asset("qwen3-tokenizer"))
    assert not template_opens_think(tok, enable_thinking=False)


def test_rewards_see_the_opening_the_template_wrote(verifier_opts):
    fmt, acc, lang, errors = get_reward_funcs(["format", "accuracy", "language_consistency", "format_errors"],
                                              accuracy=verifier_opts)
    rows = {"prompts": [CHAT, CHAT], "completions": CONTINUED, "solution": ["4", "4"]}
    opened = {**rows, PREFILL_COLUMN: [True, True]}
    assert fmt(**opened) == [1.0, 0.0]
    assert acc(**opened) == [1.0, 0.0]  # the cut-off one has no answer: its box is reasoning
    assert lang(**opened) == [1.0, 0.0]
    assert errors(**opened) == [0.0, -2.0]  # no </think>, empty answer
    # Without the column the first completion looks tagless: format 0 (what happened before).
    assert fmt(**rows) == [0.0, 0.0]


def test_final_answer_is_the_one_extraction():
    # A plain R1-Zero prompt opens the block itself: a completion cut inside it has no answer.
    prompt = "User: 2+2?\nAssistant: <think>\n"
    assert final_answer("2+2 is \\boxed{4} and", prompt) is None
    assert final_answer("2+2 is 4 </think> <answer>4</answer>", prompt) == "4"
    # A chat prompt: only the template (the prefill flag) says the block is open.
    assert final_answer("so \\boxed{4}", CHAT) == "4"
    assert final_answer("so \\boxed{4}", CHAT, True) is None
