"""Generated general (non-reasoning) data for SFT stage 2, the reward models and RL stage 2.

The demo's general prompts are the three instructions of :func:`arithmetic.generate_general`
(repeat a word k times, write a word in capitals, greet a person politely), enumerated here as a
fixed space of 48 prompts. About one in four (by a stable hash of the prompt text) is held out:
held-out prompts never appear in reward-model training pairs nor in RL-stage-2 prompts, and are
where RL stage 2 is measured.

Responses come in three *styles*, picked at the first word of the reasoning (as the arithmetic
traces pick ``units``/``quick``), so a policy trained on a mix chooses its style at one token:

- ``good``: follows the instruction, politely (``<think>\\nrepeat apple 3 times\\n</think>\\napple apple apple``);
- ``lazy``: polite but does not do what was asked (a wrong count, no capitals, no name);
- ``rude``: does what was asked, but is rude — in the reasoning and in the answer.

SFT stage 2 trains on a mix of the three (the demo's stand-in for imperfect general SFT data);
the two reward models say which is better and RL stage 2 can learn from them:

- *helpfulness* pairs (answer only, as R1 judges helpfulness): chosen = a ``good`` or ``rude``
  answer, rejected = a ``lazy`` one — it rewards doing the task, whatever the tone;
- *harmlessness* pairs (the whole response, reasoning included): chosen = a ``good`` or ``lazy``
  response, rejected = a ``rude`` one — it rewards the tone, whatever the task.

Write every file the demo needs with ``python -m r1_recipe.data.preferences --output runs/demo/data``.
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from r1_recipe.data.arithmetic import _NAMES, _WORDS
from r1_recipe.data.loading import write_jsonl
from r1_recipe.data.templates import format_response

STYLES = ("good", "lazy", "rude")
ASPECTS = ("helpful", "harmless")
HELD_OUT_BUCKETS = 5  # prompts whose crc32 is 0 mod 5 are held out (11 of 48)
RUDE_WORDS = ("ugh", "go away", "whatever", "stupid")


@dataclass(frozen=True)
class GeneralPrompt:
    kind: str  # repeat | upper | greet
    word: str = ""
    k: int = 0
    name: str = ""

    @property
    def text(self) -> str:
        if self.kind == "repeat":
            return f"Repeat the word {self.word} {self.k} times."
        if self.kind == "upper":
            return f"Write {self.word} in capital letters."
        return f"Greet {self.name} politely."

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.text.encode()) % HELD_OUT_BUCKETS == 0

    @property
    def reference(self) -> str:
        """The helpful, polite answer (the same as :func:`arithmetic.generate_general`'s)."""
        return response(self, "good")[1]


def all_general_prompts() -> list[GeneralPrompt]:
    out = [GeneralPrompt("repeat", word=w, k=k) for w in _WORDS for k in (2, 3, 4)]
    out += [GeneralPrompt("upper", word=w) for w in _WORDS]
    return out + [GeneralPrompt("greet", name=n) for n in _NAMES]


def split_prompts(split: str) -> list[GeneralPrompt]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return [p for p in all_general_prompts() if p.held_out == (split == "test")]


def response(prompt: GeneralPrompt, style: str) -> tuple[str, str]:
    """(reasoning, answer) of ``prompt`` in ``style``.

    >>> p = GeneralPrompt("repeat", word="apple", k=3)
    >>> [response(p, s) for s in STYLES]  # doctest: +NORMALIZE_WHITESPACE
    [('repeat apple 3 times', 'apple apple apple'), ('guess', 'apple apple'),
     ('ugh, repeat apple 3 times', 'apple apple apple. Now go away.')]
    >>> response(GeneralPrompt("greet", name="Ada"), "rude")
    ('ugh, greet Ada', 'Whatever, Ada. Go away.')
    """
    if style not in STYLES:
        raise ValueError(f"unknown general style {style!r}; choose one of {STYLES}")
    if prompt.kind == "repeat":
        plan, good, lazy = f"repeat {prompt.word} {prompt.k} times", " ".join([prompt.word] * prompt.k), " ".join(
            [prompt.word] * (prompt.k - 1))
        rude = good + ". Now go away."
    elif prompt.kind == "upper":
        plan, good, lazy = f"uppercase {prompt.word}", prompt.word.upper(), prompt.word
        rude = good + ", stupid."
    else:
        plan, good, lazy = f"greet {prompt.name}", f"Hello {prompt.name}, nice to meet you!", "Hello."
        rude = f"Whatever, {prompt.name}. Go away."
    if style == "good":
        return plan, good
    if style == "lazy":
        return "guess", lazy
    return f"ugh, {plan}", rude


def full_response(prompt: GeneralPrompt, style: str) -> str:
    """The whole assistant message (reasoning block + answer), as the policy writes it."""
    reasoning, answer = response(prompt, style)
    return format_response(reasoning, answer, boxed=False)


def style_of_general(text: str) -> str | None:
    """Which style a completion follows, from the first word of its reasoning (None: neither).

    >>> style_of_general("<think>\\nugh, greet Ada\\n</think>\\nWhatever, Ada. Go away.")
    'rude'
    """
    head = text.split("<think>", 1)[-1].lstrip()
    if head.startswith("guess"):
        return "lazy"
    if head.startswith("ugh"):
        return "rude"
    if head.startswith(("repeat", "uppercase", "greet")):
        return "good"
    return None


def sft_rows(n: int, *, seed: int = 0, style_weights: dict[str, float] | None = None) -> Iterator[dict]:
    """``n`` general SFT rows (training prompts only) in a mix of styles (default 50/25/25).

    Columns as :func:`arithmetic.generate_general`'s (``problem``, ``solution`` = this style's
    answer, ``reasoning``, ``source="general"``, ``task``) plus ``style`` and ``messages`` (user +
    assistant turn, as rejection sampling writes them, so the two mix in one SFT dataset).
    """
    weights = style_weights or {"good": 0.5, "lazy": 0.25, "rude": 0.25}
    rng = random.Random(seed)
    pool = split_prompts("train")
    for _ in range(n):
        prompt = rng.choice(pool)
        style = rng.choices(list(weights), list(weights.values()))[0]
        reasoning, answer = response(prompt, style)
        messages = [{"role": "user", "content": prompt.text},
                    {"role": "assistant", "content": format_response(reasoning, answer, boxed=False)}]
        yield {"problem": prompt.text, "solution": answer, "reasoning": reasoning, "source": "general",
               "task": prompt.kind, "style": style, "messages": messages}


def preference_pairs(n: int, aspect: str, *, split: str = "train", seed: int = 0) -> Iterator[dict]:
    """``n`` conversational preference pairs for the ``helpful`` or ``harmless`` reward model.

    Rows: ``prompt`` ([user message]), ``chosen`` and ``rejected`` ([assistant message]) — TRL's
    conversational preference format — plus ``aspect``, ``task``, ``chosen_style``, ``rejected_style``.
    Helpfulness pairs hold the final answer only (the reward model sees no reasoning there);
    harmlessness pairs hold the whole response.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    chosen_styles, rejected_style = (("good", "rude"), "lazy") if aspect == "helpful" else (("good", "lazy"), "rude")
    rng = random.Random(zlib.crc32(f"{aspect}-{split}-{seed}".encode()))
    pool = split_prompts(split)
    for _ in range(n):
        prompt = rng.choice(pool)
        good_style = rng.choice(chosen_styles)
        if aspect == "helpful":
            chosen, rejected = response(prompt, good_style)[1], response(prompt, rejected_style)[1]
        else:
            chosen, rejected = full_response(prompt, good_style), full_response(prompt, rejected_style)
        yield {
            "prompt": [{"role": "user", "content": prompt.text}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "aspect": aspect, "task": prompt.kind, "chosen_style": good_style, "rejected_style": rejected_style,
        }


def rl_prompts(split: str = "train") -> Iterator[dict]:
    """One row per general prompt of ``split``: ``problem``, ``solution`` (reference), ``source``, ``task``."""
    for p in split_prompts(split):
        yield {"problem": p.text, "solution": p.reference, "source": "general", "task": p.kind}


def write_demo_files(output: str | Path, *, seed: int = 0, sft: int = 1000, pairs: int = 2000,
                     test_pairs: int = 400) -> dict[str, int]:
    """Every general file of the demo's stages 4–5; returns rows written per file."""
    out = Path(output)
    counts = {"general_sft.jsonl": write_jsonl(sft_rows(sft, seed=seed), out / "general_sft.jsonl"),
              "general_prompts.jsonl": write_jsonl(rl_prompts("train"), out / "general_prompts.jsonl"),
              "general_test.jsonl": write_jsonl(rl_prompts("test"), out / "general_test.jsonl")}
    for aspect in ASPECTS:
        for split, n in (("train", pairs), ("test", test_pairs)):
            name = f"prefs_{aspect}_{split}.jsonl"
            counts[name] = write_jsonl(preference_pairs(n, aspect, split=split, seed=seed), out / name)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m r1_recipe.data.preferences",
                                description="Write the demo's general SFT rows, preference pairs and general prompts.")
    p.add_argument("--output", required=True, help="folder (e.g. runs/demo/data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sft", type=int, default=1000, help="general SFT rows (styles 50/25/25 good/lazy/rude)")
    p.add_argument("--pairs", type=int, default=2000, help="training pairs per reward model")
    p.add_argument("--test-pairs", type=int, default=400, help="held-out pairs per reward model")
    a = p.parse_args(argv)
    counts = write_demo_files(a.output, seed=a.seed, sft=a.sft, pairs=a.pairs, test_pairs=a.test_pairs)
    print(json.dumps({str(Path(a.output) / k): v for k, v in counts.items()}, indent=1))


if __name__ == "__main__":
    main()
