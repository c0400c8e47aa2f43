"""Flag or drop training rows that share a word n-gram (8 by default) with evaluation problems.

    r1-recipe decontaminate --dataset runs/demo/data/rl_prompts.jsonl --benchmark arithmetic \\
        --output runs/demo/data/rl_prompts.clean.jsonl
    r1-recipe decontaminate --dataset open-r1/OpenR1-Math-220k --benchmark aime24,math_500,gpqa_diamond \\
        --columns problem --mode drop --output data/openr1_clean.parquet

The RL and SFT data at scale come from the web, where benchmark problems are copied around.
Words are whitespace-separated and lowercased (the rule open-r1 and most reports use); a
benchmark problem shorter than n words counts as one n-gram of its own length, so short
questions are caught as whole phrases rather than never. ``mode: flag`` adds ``contaminated``
and ``contaminated_by`` (benchmark names) columns; ``mode: drop`` removes the matching rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, List, Value

from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data.loading import load_source, require_columns

logger = logging.getLogger(__name__)


@dataclass
class DecontaminateConfig:
    dataset: str = field(metadata={"help": "Training data: a .jsonl/.parquet file, a folder or a Hub dataset id."})
    output: str = field(metadata={"help": "Where to write the flagged/cleaned rows (.jsonl or .parquet)."})
    benchmark: str = field(default="aime24,math_500,gpqa_diamond,gsm8k", metadata={
        "help": "Comma-separated evaluation sets, as for evaluate (NAME, NAME=PATH or a local file)."})
    columns: list[str] = field(default_factory=lambda: ["problem"], metadata={
        "help": "Training columns to check (strings, or chat messages whose contents are joined)."})
    split: str = field(default="train", metadata={"help": "Split of a Hub/folder dataset."})
    ngram: int = field(default=8, metadata={"help": "Words per n-gram."})
    mode: str = field(default="flag", metadata={"help": "flag (add columns) or drop (remove rows)."})
    num_proc: int | None = field(default=None, metadata={"help": "Processes for the scan (datasets.map)."})
    problem_column: str = field(default="problem", metadata={"help": "Question column of a bare local benchmark file."})
    answer_column: str = field(default="solution", metadata={"help": "Answer column of a bare local benchmark file."})

    def __post_init__(self):
        if self.mode not in ("flag", "drop"):
            raise ConfigError(f"mode: {self.mode!r}; use flag or drop")
        if self.ngram < 1:
            raise ConfigError(f"ngram must be ≥ 1, got {self.ngram}")
        if Path(self.output).suffix not in (".jsonl", ".parquet"):
            raise ConfigError(f"output: {self.output!r} must end in .jsonl or .parquet")


def words(text: str) -> list[str]:
    """Lowercased whitespace-separated words.

    >>> words("Compute  48 +\\n49.")
    ['compute', '48', '+', '49.']
    """
    return text.lower().split()


def ngrams(tokens: Sequence[str], n: int) -> Iterable[str]:
    """Every contiguous n-word window, joined by spaces (the whole text when it is shorter).

    >>> list(ngrams(["a", "b", "c"], 2)), list(ngrams(["a"], 2))
    (['a b', 'b c'], ['a'])
    """
    if len(tokens) <= n:
        return [" ".join(tokens)] if tokens else []
    return (" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class NgramIndex:
    """The n-grams of evaluation problems, each mapped to the benchmarks it comes from."""

    def __init__(self, n: int = 8):
        self.n = n
        self.grams: dict[str, set[str]] = {}
        self.lengths: set[int] = set()  # n, plus the lengths of shorter whole problems

    def add(self, text: str, source: str) -> None:
        tokens = words(text)
        if tokens:
            self.lengths.add(min(len(tokens), self.n))
        for gram in ngrams(tokens, self.n):
            self.grams.setdefault(gram, set()).add(source)

    def matches(self, text: str) -> set[str]:
        """Benchmarks sharing at least one n-gram with ``text``.

        >>> index = NgramIndex(3); index.add("What is the sum of the roots?", "math_500")
        >>> index.matches("Q: what is the sum of all squares"), index.matches("the roots of unity")
        ({'math_500'}, set())
        """
        tokens = words(text)
        found: set[str] = set()
        for length in self.lengths:
            for i in range(len(tokens) - length + 1):
                hit = self.grams.get(" ".join(tokens[i : i + length]))
                if hit:
                    found |= hit
        return found


def _text(value) -> str:
    if isinstance(value, list):  # chat messages
        return "\n".join(str(m.get("content") or "") if isinstance(m, dict) else str(m) for m in value)
    return "" if value is None else str(value)


def build_index(config: DecontaminateConfig) -> NgramIndex:
    from r1_recipe.data import arithmetic
    from r1_recipe.eval_suites import load_benchmark

    index = NgramIndex(config.ngram)
    every_held_out = sum(p.held_out for p in arithmetic.all_problems())  # not just the 200 evaluated
    for spec in [b.strip() for b in config.benchmark.split(",") if b.strip()]:
        label, _, problems = load_benchmark(spec, problem_column=config.problem_column,
                                            answer_column=config.answer_column,
                                            num_problems=every_held_out if spec == "arithmetic" else None)
        for text in problems["raw_problem"]:
            index.add(text, label)
        logger.info("%s: %d problems indexed", label, len(problems))
    return index


def flag_rows(ds: Dataset, index: NgramIndex, columns: Sequence[str], *, num_proc: int | None = None) -> Dataset:
    """``ds`` with ``contaminated`` and ``contaminated_by`` (sorted benchmark names) columns."""

    def flag(batch):
        hits = [set().union(*(index.matches(_text(batch[c][i])) for c in columns))
                for i in range(len(batch[columns[0]]))]
        return {"contaminated": [bool(h) for h in hits], "contaminated_by": [sorted(h) for h in hits]}

    # Declared, not inferred from the first write batch: with rare contamination those rows are all
    # clean and `contaminated_by` would be typed as a list of nulls, failing at the first hit.
    features = ds.features.copy()
    features["contaminated"] = Value("bool")
    features["contaminated_by"] = List(Value("string"))
    return ds.map(flag, batched=True, features=features, num_proc=num_proc, desc="decontaminating")


def flag_counts(flagged: Dataset) -> tuple[int, dict[str, int]]:
    """Flagged rows, and rows per benchmark, counted by Arrow over the whole columns (the output
    of ``map``, which holds no indices mapping)."""
    table = flagged.data
    hits = pc.sum(table.column("contaminated")).as_py() or 0
    counts = pc.value_counts(pc.list_flatten(table.column("contaminated_by"))).to_pylist()
    return hits, {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def decontaminate(config: DecontaminateConfig) -> dict:
    """Scan, write ``config.output`` and return the counts per benchmark."""
    index = build_index(config)
    ds = load_source({"path": config.dataset, "split": config.split}, where=f"dataset {config.dataset}")
    require_columns(ds, config.columns, where=f"dataset {config.dataset}")
    flagged = flag_rows(ds, index, config.columns, num_proc=config.num_proc)
    hits, by_benchmark = flag_counts(flagged)
    result = flagged
    if config.mode == "drop":
        keep = np.flatnonzero(~flagged.data.column("contaminated").to_numpy(zero_copy_only=False))
        result = ds.select(keep) if len(keep) < len(ds) else ds
    out = Path(config.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        result.to_parquet(str(out))
    else:
        result.to_json(str(out), lines=True, force_ascii=False)
    summary = {"dataset": config.dataset, "rows": len(ds), "contaminated": hits, "by_benchmark": by_benchmark,
               "mode": config.mode, "rows_written": len(result), "output": str(out), "ngram": config.ngram}
    logger.info("%d of %d rows share a %d-gram with %s", hits, len(ds), config.ngram, config.benchmark)
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    from r1_recipe.stage import setup_logging

    setup_logging()
    summary = decontaminate(parse_config(DecontaminateConfig, argv))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["decontaminate", *sys.argv[1:]]))
