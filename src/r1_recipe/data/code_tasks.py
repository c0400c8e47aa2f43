"""Generated, sandbox-checked code problems for the CPU demo: a one-line Python ``f(x)``.

Each problem is a two-step integer transformation described in words, e.g. "add 4, then
multiply by 3", and is checked by three asserts run in the code sandbox (one program, so one
run per completion). The chain of thought comes, as in :mod:`r1_recipe.data.arithmetic`, in two
*styles* named by the first word after ``<think>``:

- ``careful`` (``first … then …``): brackets the first step when the second binds tighter
  (``(x+4)*3``). Always right.
- ``sloppy`` (``fast … fast …``): writes the steps one after the other without brackets
  (``x+4*3``). Right only when the first step is a product or a remainder, which Python already
  evaluates first: exactly half of the problems (the first step is ``+``/``-`` in half of them).

The first step is one of ``+ - * %`` with a constant 2..30, the second ``*`` or ``%`` with a
constant 2..30: 6,728 problems. Held-out problems are a fixed tenth of them by a stable hash of
the problem (673), whatever the seed, so no evaluation problem can reach training data. The test
inputs 3, 17 and 40 tell every sloppy program of a ``+``/``-`` problem from the right one (the
tests check that for all of them).
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from r1_recipe.data.arithmetic import draw
from r1_recipe.data.templates import format_response

STYLES = ("careful", "sloppy")
HELD_OUT_BUCKETS = 10  # one bucket in ten is held out
CONSTANTS = range(2, 31)
FIRST_OPS = ("+", "-", "*", "%")
SECOND_OPS = ("*", "%")
TEST_INPUTS = (3, 17, 40)
_WORDS = {"+": "add {k}", "-": "subtract {k}", "*": "multiply by {k}", "%": "take the remainder mod {k}"}
_STYLE_WORDS = {"careful": ("first", "then"), "sloppy": ("fast", "fast")}


def _apply(op: str, x: int, k: int) -> int:
    return {"+": x + k, "-": x - k, "*": x * k, "%": x % k}[op]


@dataclass(frozen=True)
class Problem:
    op1: str
    k1: int
    op2: str
    k2: int

    @property
    def key(self) -> str:
        return f"x{self.op1}{self.k1}{self.op2}{self.k2}"

    @property
    def text(self) -> str:
        first, second = _WORDS[self.op1].format(k=self.k1), _WORDS[self.op2].format(k=self.k2)
        return f"Write a Python function f(x): {first}, then {second}."

    def value(self, x: int) -> int:
        return _apply(self.op2, _apply(self.op1, x, self.k1), self.k2)

    @property
    def held_out(self) -> bool:
        return zlib.crc32(f"code:{self.key}".encode()) % HELD_OUT_BUCKETS == 0

    @property
    def needs_brackets(self) -> bool:
        """Whether the first step must be bracketed: where ``sloppy`` fails."""
        return self.op1 in "+-"

    @property
    def asserts(self) -> str:
        """The problem's tests, one program: ``assert f(3) == …`` for each test input."""
        return "\n".join(f"assert f({x}) == {self.value(x)}" for x in TEST_INPUTS)

    @property
    def verification_info(self) -> str:
        """The code reward's test column (a JSON string): all asserts as one test, one run."""
        return json.dumps({"language": "python", "tests": [self.asserts]})

    @property
    def reference(self) -> str:
        """What the evaluator checks against, in HumanEval's shape (no prompt to continue)."""
        body = "".join(f"    assert candidate({x}) == {self.value(x)}\n" for x in TEST_INPUTS)
        return json.dumps({"task_id": f"demo_code/{self.key}", "prompt": "",
                           "test": f"def check(candidate):\n{body}", "entry_point": "f"})


def all_problems() -> list[Problem]:
    return [Problem(o1, k1, o2, k2) for o1 in FIRST_OPS for k1 in CONSTANTS for o2 in SECOND_OPS for k2 in CONSTANTS]


def trace(problem: Problem, style: str) -> tuple[str, str]:
    """The reasoning for ``problem`` in ``style`` and the expression it reaches.

    >>> trace(Problem("+", 4, "*", 3), "careful")
    ('first x+4\\nthen (x+4)*3', '(x+4)*3')
    >>> trace(Problem("+", 4, "*", 3), "sloppy")
    ('fast x+4\\nfast x+4*3', 'x+4*3')
    >>> trace(Problem("*", 4, "%", 3), "careful")
    ('first x*4\\nthen x*4%3', 'x*4%3')
    """
    if style not in STYLES:
        raise ValueError(f"unknown trace style {style!r}; choose one of {STYLES}")
    w1, w2 = _STYLE_WORDS[style]
    inner = f"x{problem.op1}{problem.k1}"
    grouped = f"({inner})" if style == "careful" and problem.needs_brackets else inner
    expr = f"{grouped}{problem.op2}{problem.k2}"
    return f"{w1} {inner}\n{w2} {expr}", expr


def program(expr: str) -> str:
    """The one-line function a trace ends with.

    >>> program("(x+4)*3")
    'def f(x): return (x+4)*3'
    """
    return f"def f(x): return {expr}"


def answer_block(expr: str) -> str:
    """The answer section: the function in one fenced Python block (what the code reward runs)."""
    return f"```python\n{program(expr)}\n```"


def expression_passes(problem: Problem, expr: str) -> bool:
    """Whether ``expr`` (one of *our* generated expressions in x) meets the problem's asserts;
    evaluated here, not sandboxed: only for the generator's own text (tests, statistics)."""
    return all(eval(expr, {"__builtins__": {}}, {"x": x}) == problem.value(x) for x in TEST_INPUTS)  # noqa: S307


def generate(n: int, *, split: str = "train", seed: int = 0,
             style_weights: dict[str, float] | None = None) -> Iterator[dict]:
    """Yield ``n`` rows of the ``split`` ("train" or "test") as plain dicts.

    Columns: ``problem``, ``reasoning`` (a trace in the sampled style), ``reasoning_answer`` (the
    program that trace writes), ``solution_program`` (the right one), ``messages`` (the cold-start
    turn: the problem, then ``<think>`` reasoning ``</think>`` and the program in a fenced block),
    ``verification_info`` (the code reward's tests), ``reference`` (the evaluator's),
    ``style``, ``source`` and ``task``. There is no ``solution`` column: the math ``accuracy``
    reward returns None on these rows and the ``code`` reward scores them. Train rows are drawn
    with replacement from the training slice; test rows without replacement from the held-out
    slice.
    """
    rng = random.Random(seed)
    for problem, style in draw(all_problems(), n, split=split, rng=rng, style_weights=style_weights,
                               styles=STYLES, what="code problems"):
        reasoning, expr = trace(problem, style)
        response = format_response(reasoning, answer_block(expr), boxed=False)
        yield {
            "problem": problem.text,
            "reasoning": reasoning,
            "reasoning_answer": program(expr),
            "solution_program": program(trace(problem, "careful")[1]),
            "messages": [{"role": "user", "content": problem.text}, {"role": "assistant", "content": response}],
            "verification_info": problem.verification_info,
            "reference": problem.reference,
            "style": style,
            "source": "reasoning",
            "task": "code",
        }


def style_of(completion: str) -> str | None:
    """Which style a completion's reasoning follows, from its first word (None: neither).

    >>> style_of("<think>\\nfast x+4\\nfast x+4*3")
    'sloppy'
    """
    head = completion.split("<think>", 1)[-1].lstrip()
    if head.startswith("first"):
        return "careful"
    if head.startswith("fast"):
        return "sloppy"
    return None


COLD_START_COLUMNS = ("problem", "reasoning", "messages", "style", "source", "task")
PROMPT_COLUMNS = ("problem", "verification_info", "source", "task")


def cold_start(n: int, *, seed: int = 0, sloppy: float = 0.5) -> Iterator[dict]:
    """Cold-start SFT rows (a ``messages`` turn each), ``sloppy`` of them in the sloppy style."""
    for row in generate(n, seed=seed, style_weights={"careful": 1 - sloppy, "sloppy": sloppy}):
        yield {c: row[c] for c in COLD_START_COLUMNS}


def rl_prompts(n: int, *, seed: int = 0) -> Iterator[dict]:
    """RL prompts: the problem and the code reward's tests (no ``solution``: accuracy skips them)."""
    for row in generate(n, seed=seed):
        yield {c: row[c] for c in PROMPT_COLUMNS}
