"""Codeforces problems with their tests (``open-r1/codeforces``), scored in the sandbox.

The card: configs ``default`` (all ~10k problems; ``data/train-*``, ``data/test-*``) and
``verifiable`` (the problems whose tests can decide a solution; ``verifiable/<split>-*``), splits
``train`` and ``test`` (468 problems in ``default``); columns id ("1234/A"), aliases,
contest_id, contest_name, contest_type, contest_start (unix time), contest_start_year, index,
time_limit (seconds, float), memory_limit (MB, float), title, description, input_format,
output_format, interaction_format (set for interactive problems), note, examples and
official_tests (lists of {input, output}), official_tests_complete, editorial, rating, tags,
testset_size, input_mode ("stdio" or "file"), generated_checker (Python code of a checker for
problems with several correct answers, else null), executable, generated_tests.

Options (``benchmark_options: {codeforces: {...}}``): ``config`` (``verifiable``), ``split``
(``test``), ``time_scale`` (1.0: each test gets ``time_limit × time_scale`` seconds of CPU) and
``with_checkers`` (false). Each official test runs in its own sandboxed process with the
problem's own time and memory limits; the output must equal the expected one token by token
(Codeforces' default checker).

The prompt follows open-r1's Python prompt for these problems (the card's
``verifiable-prompts`` config): the instruction to reason and answer with one Python 3 program
reading standard input and writing standard output in a single code block, then "# Problem",
"## Constraints" (time and memory limit per test), "## Input Format", "## Output Format",
"## Examples" (```input / ```output blocks) and "## Note".

Where this departs from open-r1 / Codeforces: problems that need their custom checker
(``generated_checker`` set), interactive problems and file-input problems are left out
(``with_checkers: true`` keeps the checker problems, scored by tokens, which underrates answers
that differ from the reference but are right), as are problems without official tests and those
whose official tests are truncated (``official_tests_complete`` false: the card says to judge them
on the generated tests it ships as separate files, which are not read here); only the official
tests run;
Codeforces ranks by rating and percentile, here the score is pass@1 (the mean over k samples,
8 by default) with its standard error over problems.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from datasets import Dataset

from r1_recipe.data.loading import DataError, load_source

logger = logging.getLogger(__name__)

HUB_ID = "open-r1/codeforces"
COLUMNS = ("id", "contest_id", "title", "description", "input_format", "output_format", "examples",
           "official_tests", "time_limit", "memory_limit")
OPTIONS = {"config": "verifiable", "split": "test", "time_scale": 1.0, "with_checkers": False}

INSTRUCTION = (
    "You will be given a competitive programming problem.\n"
    "Analyze the maximum input constraints and identify the optimal algorithmic approach and data structures "
    "needed to process the largest possible test cases within the time and memory limits, then explain why your "
    "chosen implementation strategy is the most efficient solution. Please reason step by step about your solution "
    "approach, then provide a complete implementation in Python 3 that is thoroughly optimized for both speed and "
    "memory usage.\n\n"
    "Your solution must read input from standard input (input()), write output to standard output (print()).\n"
    "Do not include any debug prints or additional output.\n\n"
    "Put your final solution within a single code block:\n```python\n<your code here>\n```"
)


def load(path: str | None, options: dict) -> Dataset:
    """The configured split: from the Hub (or its mirror) by config, or a local copy."""
    where = "benchmark codeforces"
    if path is None:
        spec = {"path": HUB_ID, "name": options["config"], "split": options["split"]}
    elif Path(path).is_dir() and (Path(path) / "README.md").exists():  # a whole copy of the Hub repository
        spec = {"path": path, "data_dir": options["config"] if options["config"] != "default" else "data",
                "split": options["split"]}
    else:  # a file, or a folder of one config's shards
        spec = {"path": path, "split": options["split"]}
    try:
        return load_source(spec, where=where)
    except DataError as e:
        raise DataError(f"{e} Offline, pass a local copy in the Hub's shape: --benchmark codeforces=PATH") from e


def select(ds: Dataset, options: dict) -> Dataset:
    """The problems a stdin/stdout run with token comparison can decide."""
    columns = set(ds.column_names)

    def keep(row: dict) -> bool:
        if not row["official_tests"]:
            return False
        if "official_tests_complete" in columns and row["official_tests_complete"] is False:
            return False  # truncated official tests (the card: use the generated ones, which we do not read)
        if "interaction_format" in columns and row["interaction_format"]:
            return False
        if "input_mode" in columns and (row["input_mode"] or "stdio") != "stdio":
            return False
        return bool(options["with_checkers"]) or "generated_checker" not in columns or not row["generated_checker"]

    kept = ds.filter(keep)
    logger.info("codeforces: %d of %d problems are stdin/stdout with complete official tests%s", len(kept), len(ds),
                "" if options["with_checkers"] else " and need no custom checker")
    if not len(kept):
        raise DataError("codeforces: no problem left after dropping interactive, file-input, checker, "
                        "test-less and incomplete-test ones; set with_checkers: true or use another split")
    return kept


def _limit(value, unit: str) -> str:
    return f"{value:g} {unit}" if isinstance(value, (int, float)) else f"{value} {unit}"


def prompt(row: dict) -> str:
    """open-r1's Python prompt for one problem."""
    parts = [INSTRUCTION, f"# Problem\n\n{row['description']}",
             f"## Constraints\nTime limit per test: {_limit(row['time_limit'], 'seconds')}\n"
             f"Memory limit per test: {_limit(row['memory_limit'], 'megabytes')}",
             f"## Input Format\n{row['input_format']}", f"## Output Format\n{row['output_format']}"]
    examples = "".join(f"```input\n{e['input']}\n```\n```output\n{e['output']}\n```\n-----\n"
                       for e in row["examples"] or [])
    parts.append(f"## Examples\n{examples}".rstrip())
    if row.get("note"):
        parts.append(f"## Note\n{row['note']}")
    return "\n\n".join(parts)


def problem(row: dict, seed: int, options: dict) -> dict:
    reference = {"kind": "stdio", "id": row["id"], "compare": "tokens", "prelude": False,
                 "time_limit_s": float(row["time_limit"] or 2.0) * float(options["time_scale"]),
                 "memory_mb": int(row["memory_limit"] or 256)}
    tests = [{"input": t["input"], "output": t["output"]} for t in row["official_tests"]]
    return {"problem": prompt(row), "answer": json.dumps(reference), "raw_problem": row["description"],
            "tests": json.dumps(tests)}
