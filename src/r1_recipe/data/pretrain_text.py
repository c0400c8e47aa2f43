"""The demo's plain-text "pretraining" documents (see :mod:`r1_recipe.pretrain` for why they exist):
dialogues and worked sums in several plain-text layouts, in which the reasoning tags turn up only
incidentally. Generated here, beside the other demo data, so that ``r1-recipe data`` writes them
without importing the stage (which would import the CLI back).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from r1_recipe.data import arithmetic
from r1_recipe.data.templates import R1_ZERO_PROMPT

PREAMBLE = R1_ZERO_PROMPT.split("\nUser:", 1)[0]
CHATTER = ("I hope this helps.", "Let me know if you need more.", "Thanks!", "Done.")


def _document(problem: arithmetic.Problem, rng: random.Random, exact_share: float) -> str:
    style = rng.choice(arithmetic.STYLES)
    reasoning, reached = arithmetic.trace(problem, style)
    q, x = problem.text, reached
    if rng.random() < exact_share:  # the format, incidentally
        body = f"<think>\n{reasoning}\n</think>\n<answer>{x}</answer>"
    else:
        body = rng.choices(
            [
                f"{reasoning}\nThe answer is {x}.",
                f"<think>\n{reasoning}\n</think>\nThe answer is {x}.",
                f"<think>\n{reasoning}\n</think>\n<answer>{x}</answer> {rng.choice(CHATTER)}",
                f"The answer is <answer>{x}</answer>.",
                f"{reasoning}\n<answer>{x}</answer>",
                f"{problem.a} {problem.op} {problem.b} = {x}.",
            ],
            weights=[30, 25, 12, 10, 8, 15],
        )[0]
    return f"User: {q}\nAssistant: {body}"


def corpus(
    n: int, *, seed: int = 0, exact_share: float = 0.03, preamble_share: float = 0.25, max_turns: int = 1
) -> Iterator[dict]:
    """Yield ``n`` documents ``{"text": ...}`` of 1..``max_turns`` dialogues on training problems.

    ``preamble_share`` of them open with the R1-Zero prompt's preamble (the paragraph that
    describes the tags) followed by a dialogue that mostly does *not* follow it, as instructions
    and practice disagree on the web. Without it the tiny model has never read 180 tokens of
    prose before a question and answers that prompt with noise.

    >>> docs = [d["text"] for d in corpus(200, seed=0)]
    >>> sum(d.startswith("User: Compute") for d in docs) > 100 and sum(d.startswith(PREAMBLE) for d in docs) > 20
    True
    """
    rng = random.Random(seed)
    pool = [p for p in arithmetic.all_problems() if not p.held_out]
    for _ in range(n):
        turns = rng.randint(1, max_turns)
        text = "\n".join(_document(rng.choice(pool), rng, exact_share) for _ in range(turns))
        if rng.random() < preamble_share:
            text = f"{PREAMBLE}\n{text}"
        yield {"text": text}
