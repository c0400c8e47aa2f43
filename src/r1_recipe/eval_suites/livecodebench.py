"""LiveCodeBench code generation (``livecodebench/code_generation_lite``), scored in the sandbox.

The Hub repository holds one JSONL file per release increment (``test.jsonl``, ``test2.jsonl``
… ``test6.jsonl``); a release is the files up to it, as its loading script's table says
(``release_v1`` = test.jsonl, ``release_v2`` = + test2.jsonl, …, ``release_latest`` = all six;
``v3`` alone = test3.jsonl). ``datasets`` >= 4 refuses that script, so the files are read
directly with the ``json`` builder (``hf://datasets/...`` on the Hub, the folder of a local copy
or ``$R1_RECIPE_HUB_MIRROR``). Columns (the card and LiveCodeBench's ``lcb_runner``):
question_title, question_content, platform (leetcode/atcoder/codeforces), question_id,
contest_id, contest_date (ISO), starter_code, difficulty, public_test_cases (JSON list of
{input, output, testtype}), private_test_cases (the same list as a JSON string, pickled,
zlib-compressed and base64-encoded), metadata (JSON; ``func_name`` for functional problems).

Options (``benchmark_options: {livecodebench: {...}}``): ``release`` (default ``release_v5``),
``start_date``/``end_date`` (``YYYY-MM-DD``, inclusive, on contest_date; default 2024-08-01 to
2025-01-31, the window the R1 paper reports), ``time_limit_s`` (6 per test, LiveCodeBench's
default) and ``memory_mb`` (1024). The date window is how LiveCodeBench keeps a model's
training data out: pick one after the model's cutoff.

Problems with ``testtype`` "functional" (LeetCode: a ``class Solution`` method named by
``func_name``, starter code given) are called with each test's JSON-lines arguments and their
return value compared; "stdin" problems (AtCoder, Codeforces) read the input and their stdout is
compared line by line, numbers as decimals (LiveCodeBench's check). Every program gets
LiveCodeBench's import prelude. The prompt is LiveCodeBench's generic one ("### Question",
"### Format" with the starter code or the stdin/stdout instruction and a code block to fill,
"### Answer"), as a user turn, with its system message folded in front (our chat templates take
the recipe's system prompt).

Where this departs from LiveCodeBench: each test runs in its own fresh sandboxed process in
parallel (LiveCodeBench runs a sample's tests one after another in one process, stopping at
the first failure, which is equivalent for pass/fail); memory is capped at 1 GB per test by
default (LiveCodeBench: 4 GB per sample); a functional return value is compared after a JSON
round trip (tuples nested inside lists compare equal to lists, where LiveCodeBench converts
only a top-level tuple); pass@1 is the mean over k samples (16 by default), with its standard
error over problems. The private tests are unpickled with a loader that admits no Python
object but the string (a pickle can run code when loaded; the data is untrusted).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import zlib
from datetime import date
from pathlib import Path

from datasets import Dataset, load_dataset

from r1_recipe.data.hub_mirror import hub_location
from r1_recipe.data.loading import DataError

logger = logging.getLogger(__name__)

HUB_ID = "livecodebench/code_generation_lite"
COLUMNS = ("question_title", "question_content", "platform", "question_id", "contest_id", "contest_date",
           "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata")
_INCREMENTS = ["test.jsonl", *(f"test{i}.jsonl" for i in range(2, 7))]
RELEASES = {f"release_v{i}": _INCREMENTS[:i] for i in range(1, 7)}
RELEASES["release_latest"] = list(_INCREMENTS)
RELEASES.update({f"v{i}": [_INCREMENTS[i - 1]] for i in range(1, 7)})
OPTIONS = {"release": "release_v5", "start_date": "2024-08-01", "end_date": "2025-01-31", "time_limit_s": 6.0,
           "memory_mb": 1024}

SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
          "generate a correct Python program that matches the specification and passes all tests.")
WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                "code within delimiters.")
WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
                   "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
                   "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")


class _StringsOnly(pickle.Unpickler):
    """Loads pickled strings, lists and dicts; refuses every class or function (no code runs)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"private_test_cases: the pickle names {module}.{name}; only plain data is read")


def decode_tests(field: str) -> list[dict]:
    """A test-case column: plain JSON, or (private tests) base64 of zlib of a pickled JSON string.

    >>> blob = base64.b64encode(zlib.compress(pickle.dumps(json.dumps([{"input": "1", "output": "2"}])))).decode()
    >>> decode_tests(blob), decode_tests('[{"input": "3", "output": "4"}]')
    ([{'input': '1', 'output': '2'}], [{'input': '3', 'output': '4'}])
    """
    if not field:
        return []
    if field.lstrip().startswith("["):
        return json.loads(field)
    value = _StringsOnly(io.BytesIO(zlib.decompress(base64.b64decode(field.encode())))).load()
    return json.loads(value) if isinstance(value, str) else value


def load(path: str | None, options: dict) -> Dataset:
    """The release's rows: its JSONL files from the Hub, a mirror, a local folder or one file."""
    release = options["release"]
    if release not in RELEASES:
        raise DataError(f"livecodebench: release {release!r} is not one of {', '.join(RELEASES)}")
    base = path if path is not None else hub_location(HUB_ID)
    if path is not None and Path(path).is_file():
        files = [path]
    elif Path(base).is_dir():
        files = [str(Path(base) / f) for f in RELEASES[release]]
        missing = [f for f in files if not Path(f).exists()]
        if missing:
            raise DataError(f"livecodebench: {base} lacks {[Path(f).name for f in missing]} of {release}; "
                            f"download them from {HUB_ID} or pick an earlier release")
    else:
        files = [f"hf://datasets/{HUB_ID}/{f}" for f in RELEASES[release]]
    try:
        return load_dataset("json", data_files=files, split="train")
    except Exception as e:  # the Hub's errors name neither the benchmark nor the fix
        raise DataError(f"livecodebench: could not read {files[0]}…: {e}. Offline, pass a local copy of {HUB_ID} "
                        "(its test*.jsonl files): --benchmark livecodebench=FOLDER") from e


def _day(text: str, key: str) -> date:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        raise DataError(f"livecodebench: {key} {text!r} is not a date (YYYY-MM-DD)") from None


def select(ds: Dataset, options: dict) -> Dataset:
    """The problems whose contest_date falls in the window (before any test is decompressed)."""
    start, end = _day(options["start_date"], "start_date"), _day(options["end_date"], "end_date")
    keep = [start <= _day(d, "contest_date") <= end for d in ds["contest_date"][:]]
    kept = ds.select([i for i, k in enumerate(keep) if k])
    logger.info("livecodebench %s: %d of %d problems dated %s..%s", options["release"], len(kept), len(ds), start, end)
    if not len(kept):
        raise DataError(f"livecodebench: no problem of {options['release']} is dated {start}..{end}; "
                        "widen start_date/end_date or pick a later release")
    return kept


def prompt(row: dict) -> str:
    """LiveCodeBench's generic prompt for one problem."""
    text = f"{SYSTEM}\n\n### Question:\n{row['question_content']}\n\n"
    if row["starter_code"]:
        text += f"### Format: {WITH_STARTER}\n```python\n{row['starter_code']}\n```\n\n"
    else:
        text += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


def problem(row: dict, seed: int, options: dict) -> dict:
    """A row as problem (the prompt), answer (the reference: how it is checked) and its tests."""
    tests = decode_tests(row["public_test_cases"]) + decode_tests(row["private_test_cases"])
    metadata = json.loads(row["metadata"] or "{}")
    functional = bool(tests) and tests[0].get("testtype") == "functional"
    reference = {"kind": "functional" if functional else "stdio", "id": row["question_id"],
                 "time_limit_s": float(options["time_limit_s"]), "memory_mb": int(options["memory_mb"])}
    if functional:
        reference["fn_name"] = metadata.get("func_name")
        if not reference["fn_name"]:
            raise DataError(f"livecodebench: functional problem {row['question_id']} has no metadata.func_name")
    return {"problem": prompt(row), "answer": json.dumps(reference), "raw_problem": row["question_content"],
            "tests": json.dumps([{"input": t["input"], "output": t["output"]} for t in tests])}
