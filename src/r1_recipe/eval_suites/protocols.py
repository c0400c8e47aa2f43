"""Evaluation protocols: how a benchmark's prompts are built, how long and how the model
decodes, and how an answer is read. A score is only comparable to a published one measured
under the same protocol.

    r1         DeepSeek-R1 (the default): 0-shot, the benchmark's instruction ("... put your final
               answer within \\boxed{}"), answers read from ``\\boxed{}``/``<answer>`` after
               ``</think>``; pass@1 over k samples at T 0.6, top-p 0.95, plus greedy.
    lighteval  lighteval's GSM8K, the protocol of the SmolLM2 model cards (gsm8k, and the generated
               GSM8K-style word_problems, whose examples come from the training slice): 5 examples
               from the train split as chat turns (user ``Question: …\\nAnswer:``, assistant the
               worked solution ending ``#### N``), then the question; greedy, 256 new tokens, the
               text cut at the stop sequence ``Question:``; the answer is the first match of
               ``#### (-?[0-9.,]+)`` without commas, equal to the reference as a string.

    r1-recipe evaluate --model_name_or_path MODEL --benchmark gsm8k=DIR --protocol lighteval

``DIR`` holds GSM8K's ``test*`` and ``train*`` files (JSONL or Parquet, the Hub's columns
``question``/``answer``): the problems come from test, the examples from train.

Why not lighteval itself: lighteval 0.13.0 does install beside our pins (``pip install --dry-run``
with torch 2.13, transformers 5.x and trl 1.16 resolves, adding about 70 packages: inspect-ai,
openai, boto3, scikit-learn, nltk, ...), but its GSM8K task reads ``openai/gsm8k`` from the Hub
(nothing here can), and its current task is no longer the cards' protocol (it asks for
``ANSWER: N`` and scores by expression match). The protocol is a prompt and a regex: kept here.

Where this departs from lighteval: lighteval draws each document's 5 examples with its own
random generator; here problem ``i`` draws them from the train split with ``Random(f"{seed}:{i}")``
(the same protocol, other examples). The model card's runs used lighteval's GSM8K task of that
time (the ``####`` regex above), not lighteval 0.13's current ``ANSWER:`` task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from r1_recipe.data.loading import DataError


@dataclass(frozen=True)
class Protocol:
    name: str
    answer_form: str  # what an extractable answer looks like (named when most have none)
    benchmarks: tuple[str, ...] | None = None  # the benchmarks it is defined for (None: all)
    num_fewshot: int = 0
    greedy_only: bool = False  # one greedy pass, no sampled one
    max_new_tokens: int | None = None  # None: the benchmark's
    stop: tuple[str, ...] = ()  # text from the first of these on is dropped before extraction


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol("r1", answer_form="\\boxed{...} (or <answer>...</answer>) after </think>"),
        Protocol("lighteval", answer_form="a line '#### N' (the number after four hashes)", benchmarks=("gsm8k", "word_problems"),
                 num_fewshot=5, greedy_only=True, max_new_tokens=256, stop=("Question:",)),
    ]
}

_HASHES = re.compile(r"#### (-?[0-9.,]+)")


def get(name: str, benchmark: str):
    """The protocol ``name`` for ``benchmark``; an error names the valid choices."""
    from r1_recipe.configs import ConfigError

    if name not in PROTOCOLS:
        raise ConfigError(f"protocol: {name!r} is not one of {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[name]
    if proto.benchmarks is not None and benchmark not in proto.benchmarks:
        raise ConfigError(f"protocol {name} is defined for {', '.join(proto.benchmarks)} only, not {benchmark}; "
                          "use protocol: r1 for it")
    return proto


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop sequence (generation would have stopped there).

    >>> cut_at_stop("#### 4\\n\\nQuestion: next", ["Question:"])
    '#### 4\\n\\n'
    """
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(ends)] if ends else text


def hashes_answer(completion: str) -> str | None:
    """lighteval's GSM8K answer: the first ``#### N`` of the completion (before ``Question:``),
    thousands separators removed; None when there is none.

    >>> hashes_answer("She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7")
    '7'
    >>> hashes_answer("#### 1,018.\\nQuestion: #### 5")
    '1018.'
    >>> hashes_answer("The answer is 7.") is None, hashes_answer("Question: x\\n#### 7") is None
    (True, True)
    """
    m = _HASHES.search(cut_at_stop(completion, PROTOCOLS["lighteval"].stop))
    return m.group(1).strip().replace(",", "") if m else None


def question_turn(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def fewshot_messages(question: str, shots: Sequence[dict]) -> list[dict]:
    """lighteval's chat-turn few-shot prompt: each example as a user/assistant pair, then the question.

    >>> m = fewshot_messages("Q2?", [{"question": "Q1?", "answer": "1 + 1 = 2\\n#### 2"}])
    >>> [(x["role"], x["content"]) for x in m]
    [('user', 'Question: Q1?\\nAnswer:'), ('assistant', '1 + 1 = 2\\n#### 2'), ('user', 'Question: Q2?\\nAnswer:')]
    """
    turns: list[dict] = []
    for shot in shots:
        turns += [{"role": "user", "content": question_turn(shot["question"])},
                  {"role": "assistant", "content": shot["answer"].strip()}]
    return [*turns, {"role": "user", "content": question_turn(question)}]


def draw_shots(pool: Sequence[dict], index: int, k: int, seed: int) -> list[dict]:
    """Problem ``index``'s ``k`` examples from the train ``pool``, fixed by ``seed`` and the index.

    >>> pool = [{"question": str(i)} for i in range(50)]
    >>> draw_shots(pool, 3, 5, 0) == draw_shots(pool, 3, 5, 0) != draw_shots(pool, 4, 5, 0)
    True
    """
    if len(pool) < k:
        raise DataError(f"the {k}-shot protocol needs ≥ {k} train rows, the train split has {len(pool)}")
    return random.Random(f"{seed}:{index}").sample(list(pool), k)
