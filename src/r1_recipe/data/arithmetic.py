"""Generated, verifiable arithmetic for the CPU demo and the tests.

Two-digit addition and subtraction, each with a short chain-of-thought trace written in one of
two *styles* — the demo's stand-in for the imperfect cold-start data of the R1 paper:

- ``careful``: column by column, with carries and borrows. Always right.
- ``sloppy``: the same layout but it forgets carries and borrows. Right only when there are
  none (about half of the problems).

The first word after ``<think>`` names the style (``units`` vs ``quick``), so a model trained on
a mix picks its way of thinking at one token; that is the choice RL stage 1 can learn to make
well (SPEC: "RL learns where the reward tells apart high-probability choices").

Held-out problems are a fixed, seed-independent slice of the problem space (by a stable hash of
the problem), so no seed or sample size can leak an evaluation problem into training.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from r1_recipe.data.templates import with_instruction

STYLES = ("careful", "sloppy")
HELD_OUT_BUCKETS = 10  # one bucket in ten is held out


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def key(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def text(self) -> str:
        return f"Compute {self.a} {self.op} {self.b}."

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.key.encode()) % HELD_OUT_BUCKETS == 0

    @property
    def needs_carry(self) -> bool:
        """Whether the units column carries (``+``) or borrows (``-``): where ``sloppy`` fails."""
        ua, ub = self.a % 10, self.b % 10
        return ua + ub >= 10 if self.op == "+" else ua < ub


def all_problems() -> list[Problem]:
    """Every problem of the task: a ± b with two-digit a, b and a ≥ b for subtraction."""
    out = [Problem(a, "+", b) for a in range(10, 100) for b in range(10, 100)]
    out += [Problem(a, "-", b) for a in range(10, 100) for b in range(10, a + 1)]
    return out


def trace(problem: Problem, style: str) -> tuple[str, int]:
    """The reasoning text for ``problem`` in ``style`` and the answer that reasoning reaches.

    >>> trace(Problem(48, "+", 49), "careful")
    ('units 8+9=17 write 7 carry 1\\ntens 4+4+1=9 write 9\\nanswer 97', 97)
    >>> trace(Problem(48, "+", 49), "sloppy")
    ('quick 8+9=17 write 7\\nquick 4+4=8 write 8\\nanswer 87', 87)
    >>> trace(Problem(62, "-", 25), "careful")
    ('units 12-5=7 write 7 borrow 1\\ntens 6-2-1=3 write 3\\nanswer 37', 37)
    """
    if style not in STYLES:
        raise ValueError(f"unknown trace style {style!r}; choose one of {STYLES}")
    (ta, ua), (tb, ub) = divmod(problem.a, 10), divmod(problem.b, 10)
    careful = style == "careful"
    word = "units" if careful else "quick"
    tens_word = "tens" if careful else "quick"
    if problem.op == "+":
        s = ua + ub
        carry = s // 10 if careful else 0
        first = f"{word} {ua}+{ub}={s} write {s % 10}" + (f" carry {carry}" if carry else "")
        t = ta + tb + carry
        second = f"{tens_word} {ta}+{tb}" + (f"+{carry}" if carry else "") + f"={t} write {t}"
        result = t * 10 + s % 10
    else:
        borrow = 1 if ua < ub else 0
        top = ua + 10 * borrow
        first = f"{word} {top}-{ub}={top - ub} write {top - ub}"
        if borrow and careful:
            first += " borrow 1"
        else:
            borrow = 0
        t = ta - tb - borrow
        second = f"{tens_word} {ta}-{tb}" + (f"-{borrow}" if borrow else "") + f"={t} write {t}"
        result = t * 10 + (top - ub)
    return f"{first}\n{second}\nanswer {result}", result


def checked_trace(problem: Problem, style: str, *, retry: bool) -> tuple[str, int]:
    """``trace`` followed by an inverse-operation check; after a failed check (``bad``) the trace
    either stops at its wrong answer or, with ``retry``, redoes the sum carefully — the demo's
    "aha moment": RL can learn to retry after a failed check.

    >>> print(checked_trace(Problem(48, "+", 49), "sloppy", retry=True)[0])
    quick 8+9=17 write 7
    quick 4+4=8 write 8
    answer 87
    check 87-49=38 bad
    retry units 8+9=17 write 7 carry 1
    tens 4+4+1=9 write 9
    answer 97
    >>> checked_trace(Problem(48, "+", 49), "careful", retry=True)[0].splitlines()[-1]
    'check 97-49=48 ok'
    """
    text, reached = trace(problem, style)
    back = reached - problem.b if problem.op == "+" else reached + problem.b
    inverse = "-" if problem.op == "+" else "+"
    ok = back == problem.a
    text += f"\ncheck {reached}{inverse}{problem.b}={back} {'ok' if ok else 'bad'}"
    if ok or not retry:
        return text, reached
    again, reached = trace(problem, "careful")
    return f"{text}\nretry {again}", reached


def check_stats(completions: list[str]) -> dict[str, float] | None:
    """For traces with checks: the share of samples whose check failed (``bad``) and, of those,
    the share that retried; ``None`` when no sample holds a check.

    >>> check_stats(["answer 87\\ncheck 87-49=38 bad\\nretry units", "check 87-49=38 bad", "check 9-4=5 ok"])
    {'check_failed': 0.6666666666666666, 'retry_after_failed_check': 0.5}
    """
    checked = [c for c in completions if "\ncheck " in c or c.startswith("check ")]
    if not checked:
        return None
    bad = [c for c in checked if re.search(r"check \S+ bad\b", c)]
    retried = [c for c in bad if re.search(r"\bbad\s+retry\b", c)]
    return {"check_failed": len(bad) / len(completions),
            "retry_after_failed_check": len(retried) / len(bad) if bad else 0.0}


def draw(problems: list, n: int, *, split: str, rng: random.Random, style_weights: dict[str, float] | None,
         styles: tuple[str, ...], what: str = "problems") -> Iterator[tuple]:
    """``n`` (problem, style) pairs of a generated task: train problems with replacement from the
    training slice, test problems without replacement from the held-out one (``problem.held_out``),
    each with a style drawn by ``style_weights`` (default all careful). Lazy, so a caller's own
    draws between items keep their place in ``rng``'s stream."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    weights = style_weights or {"careful": 1.0}
    for name in weights:
        if name not in styles:
            raise ValueError(f"unknown trace style {name!r} in style_weights; choose from {styles}")
    pool = [p for p in problems if p.held_out == (split == "test")]
    if split == "test":
        if n > len(pool):
            raise ValueError(f"only {len(pool)} held-out {what} exist; asked for {n}")
        chosen = rng.sample(pool, n)
    else:
        chosen = [rng.choice(pool) for _ in range(n)]
    names, probs = list(weights), list(weights.values())
    for problem in chosen:
        yield problem, rng.choices(names, probs)[0]


def generate(
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    style_weights: dict[str, float] | None = None,
    checks: bool = False,
    retry_rate: float = 0.5,
) -> Iterator[dict]:
    """Yield ``n`` rows of the ``split`` ("train" or "test") as plain dicts.

    Columns: ``problem`` (the question), ``solution`` (the gold final answer), ``reasoning`` (a
    trace in the sampled style), ``reasoning_answer`` (what that trace concludes; differs from
    ``solution`` for sloppy traces that needed a carry), ``style``, ``source`` and ``task``.
    With ``checks`` every trace ends with an inverse check (:func:`checked_trace`), and a share
    ``retry_rate`` of the failed checks retries (column ``retried``).
    Train rows are drawn with replacement from the training slice; test rows without
    replacement from the held-out slice.
    """
    rng = random.Random(seed)
    for problem, style in draw(all_problems(), n, split=split, rng=rng, style_weights=style_weights,
                               styles=STYLES):
        extra = {}
        if checks:  # the extra draw only with checks: the plain stream stays as it was
            retry = rng.random() < retry_rate
            reasoning, reached = checked_trace(problem, style, retry=retry)
            extra["retried"] = "\nretry " in reasoning
        else:
            reasoning, reached = trace(problem, style)
        yield {
            "problem": problem.text,
            "solution": str(problem.answer),
            "reasoning": reasoning,
            "reasoning_answer": str(reached),
            "style": style,
            "source": "reasoning",
            "task": "arithmetic",
            **extra,
        }


def prompts_with_instruction(n: int, instruction: str, *, seed: int = 0) -> list[dict]:
    """``n`` training problems (``problem``, ``solution``), each followed by ``instruction`` the way
    the evaluator appends a benchmark's instruction: the RL prompts of a model that is evaluated
    with one (recipes/SmolLM2-135M)."""
    return [{"problem": with_instruction(r["problem"], instruction), "solution": r["solution"]}
            for r in generate(n, seed=seed)]


_WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "candle", "forest", "rocket")
_NAMES = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana")


def generate_general(n: int, *, seed: int = 0) -> Iterator[dict]:
    """Yield ``n`` non-reasoning rows (instruction following, greetings) for the later stages.

    Each row has ``problem`` (the instruction), ``solution`` (the reference response),
    ``reasoning`` (a one-line plan), ``source="general"`` and ``task``.
    """
    rng = random.Random(seed)
    for _ in range(n):
        kind = rng.choice(("repeat", "upper", "greet"))
        word = rng.choice(_WORDS)
        if kind == "repeat":
            k = rng.randint(2, 4)
            problem, response, plan = f"Repeat the word {word} {k} times.", " ".join([word] * k), f"repeat {word} {k} times"
        elif kind == "upper":
            problem, response, plan = f"Write {word} in capital letters.", word.upper(), f"uppercase {word}"
        else:
            name = rng.choice(_NAMES)
            problem, response, plan = f"Greet {name} politely.", f"Hello {name}, nice to meet you!", f"greet {name}"
        yield {"problem": problem, "solution": response, "reasoning": plan, "source": "general", "task": kind}


_THINGS = ("apples", "stickers", "coins", "books", "marbles", "stamps")


def word_problems(n: int, *, split: str, seed: int = 0) -> list[dict]:
    """``n`` GSM8K-shaped word problems over this task's sums (``question``, and an ``answer``
    that works it out and ends ``#### N``), drawn as :func:`draw` draws: test rows from the
    held-out slice, train rows (a few-shot protocol's examples) from the rest. No stage trains
    on this wording; it shows whether a model still does a differently posed task, under a
    protocol (lighteval's 5-shot ``####``) the released model already follows.

    >>> word_problems(1, split="test", seed=3)[0]["answer"].splitlines()[-1].startswith("#### ")
    True
    """
    rng = random.Random(f"words:{seed}")
    rows = []
    for problem, _ in draw(all_problems(), n, split=split, rng=rng, style_weights=None, styles=STYLES):
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        if problem.op == "+":
            question = (f"{name} has {problem.a} {thing}. {name} gets {problem.b} more {thing}. "
                        f"How many {thing} does {name} have now?")
            work = f"{name} has {problem.a} + {problem.b} = {problem.answer} {thing} now."
        else:
            question = (f"{name} has {problem.a} {thing}. {name} gives {problem.b} {thing} away. "
                        f"How many {thing} does {name} have left?")
            work = f"{name} has {problem.a} - {problem.b} = {problem.answer} {thing} left."
        rows.append({"question": question, "answer": f"{work}\n#### {problem.answer}"})
    return rows


def style_of(completion: str) -> str | None:
    """Which style a completion's reasoning follows, from its first word (None: neither).

    >>> style_of("<think>\\nunits 8+9=17 write 7 carry 1")
    'careful'
    """
    head = completion.split("<think>", 1)[-1].lstrip()
    if head.startswith("units"):
        return "careful"
    if head.startswith("quick"):
        return "sloppy"
    return None
