"""The two prompt/response templates of the R1 paper, turned into TRL's dataset formats.

- ``r1``: chat messages (optional system prompt, the user's problem); the response is
  ``<think>\\n…\\n</think>\\n`` followed by the answer, the final result in ``\\boxed{}``.
- ``r1_zero``: the plain-text template R1-Zero trained with straight from a base model (no chat
  template needed); the response closes the think block and puts the result in ``<answer>`` tags.

SFT rows become conversational prompt-completion pairs, so TRL computes the loss on the
completion only; RL rows become a ``prompt`` (messages for ``r1``, a string for ``r1_zero``).
"""

from __future__ import annotations

TEMPLATES = ("r1", "r1_zero")

R1_SYSTEM_PROMPT = (
    "You are a careful assistant. First reason step by step inside <think> and </think>, "
    "then state the final answer; for math put the final result in \\boxed{}."
)

R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question and the Assistant "
    "solves it: it first thinks through the reasoning, then gives the answer. The reasoning is "
    "enclosed in <think> </think> tags and the answer in <answer> </answer> tags.\n"
    "User: {problem}\nAssistant: <think>\n"
)


TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def hidden_tags_problem(tokenizer, model: str) -> str | None:
    """What is wrong when tags vanish in decoding with ``skip_special_tokens=True`` (as TRL's
    GRPOTrainer and our samplers decode): a tokenizer that registers them as *special* tokens
    hides them from every reward, which then reads 0 for every sample. ``None``: all visible."""
    hidden = []
    for tag in TAGS:
        ids = tokenizer(f"a{tag}b", add_special_tokens=False)["input_ids"]
        if tag not in tokenizer.decode(ids, skip_special_tokens=True):
            hidden.append(tag)
    if not hidden:
        return None
    return (f"the tokenizer of {model} registers {hidden} as special tokens; generations are decoded "
            "with skip_special_tokens=True, so the rewards would never see them. Re-save the "
            "tokenizer with the tags as normal added tokens (tokenizer.add_tokens([AddedToken(tag, "
            "special=False)])) or use a tokenizer that keeps them as text.")


def check_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    return name


def format_response(reasoning: str, answer: str, *, template: str = "r1", boxed: bool = True) -> str:
    """The assistant's text for a reasoning trace and a final answer.

    >>> format_response("2+2=4", "4")
    '<think>\\n2+2=4\\n</think>\\n\\\\boxed{4}'
    >>> format_response("2+2=4", "4", template="r1_zero")
    '2+2=4\\n</think>\\n<answer>4</answer>'
    """
    check_template(template)
    if template == "r1_zero":  # the prompt already opened the think block
        return f"{reasoning}\n</think>\n<answer>{answer}</answer>"
    final = f"\\boxed{{{answer}}}" if boxed else answer
    return f"<think>\n{reasoning}\n</think>\n{final}"


def with_instruction(problem: str, instruction: str | None) -> str:
    """The problem as the evaluator asks it: followed by a blank line and the benchmark's
    instruction (none: the problem alone). Training rows built with it ask what evaluation asks.

    >>> with_instruction("Compute 2 + 3.", "Answer with a number."), with_instruction("Compute 2 + 3.", None)
    ('Compute 2 + 3.\\n\\nAnswer with a number.', 'Compute 2 + 3.')
    """
    return f"{problem}\n\n{instruction}" if instruction else problem


def prompt_for(problem: str, *, template: str = "r1", system_prompt: str | None = None) -> list[dict] | str:
    """The prompt in TRL's format: messages for ``r1``, a plain string for ``r1_zero``."""
    check_template(template)
    if template == "r1_zero":
        return R1_ZERO_PROMPT.format(problem=problem)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": problem}]
