"""Evaluation: pass@1 averaged over k samples (the R1 protocol) and greedy accuracy.

    python -m r1_recipe.evaluate --model_name_or_path runs/demo/stage1 --benchmark arithmetic \\
        --num_problems 200 --num_samples 4 --temperature 0.7 --output_dir runs/demo/stage1

Benchmarks: ``arithmetic`` (the demo's generated held-out problems, never in training data) or a
local ``.jsonl``/``.parquet`` file with a problem and a reference-answer column. The answer is
the last ``\\boxed{}`` (or ``<answer>``) after ``</think>``, compared exactly after trimming.

Writes ``eval_<benchmark>.json`` (summary) and ``eval_<benchmark>_samples.jsonl`` (every
sample: problem, completion, extracted answer, verdict) into ``output_dir`` when given.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset

from r1_recipe.configs import ConfigError, PromptArgs, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import load_source, require_columns, to_prompts
from r1_recipe.rewards.extract import extract_answer
from r1_recipe.sampling import SamplingParams, TransformersSampler

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig(PromptArgs):
    model_name_or_path: str | None = field(default=None, metadata={"help": "Model folder or Hub id to evaluate."})
    benchmark: str = field(default="arithmetic", metadata={"help": "'arithmetic' or a local .jsonl/.parquet file."})
    num_problems: int | None = field(default=200, metadata={"help": "Problems to evaluate (None = all)."})
    num_samples: int = field(default=4, metadata={"help": "k: samples per problem for pass@1."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature (R1: 0.6)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling (R1: 0.95)."})
    greedy: bool = field(default=True, metadata={"help": "Also report greedy accuracy."})
    max_new_tokens: int = field(default=512, metadata={"help": "Generation budget per sample."})
    batch_size: int = field(default=256, metadata={"help": "Sequences generated per call."})
    seed: int = field(default=0, metadata={"help": "Sampling seed: same seed, same numbers."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the summary and samples files."})

    def __post_init__(self):
        super().__post_init__()
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required: the model folder or Hub id to evaluate")


def load_problems(config: EvalConfig) -> Dataset:
    if config.benchmark == "arithmetic":
        n = config.num_problems or 500
        return Dataset.from_list(list(arithmetic.generate(n, split="test", seed=config.seed)))
    if Path(config.benchmark).suffix in (".jsonl", ".json", ".parquet"):
        ds = load_source(config.benchmark, where=f"benchmark {config.benchmark}")
        require_columns(ds, [config.problem_column, config.answer_column], where=f"benchmark {config.benchmark}")
        return ds.select(range(min(config.num_problems or len(ds), len(ds))))
    raise ConfigError(f"benchmark: unknown {config.benchmark!r}; use 'arithmetic' or a .jsonl/.parquet file")


def is_correct(completion: str, reference: str) -> tuple[str | None, bool]:
    answer = extract_answer(completion)
    return answer, answer is not None and answer.strip() == str(reference).strip()


def pass_at_1(verdicts: list[list[bool]]) -> tuple[float, float]:
    """Mean correctness over all samples, and its standard error across problems.

    >>> pass_at_1([[True, False], [True, True]])
    (0.75, 0.25)
    """
    per_problem = [sum(v) / len(v) for v in verdicts]
    mean = sum(per_problem) / len(per_problem)
    if len(per_problem) < 2:
        return mean, 0.0
    var = sum((p - mean) ** 2 for p in per_problem) / (len(per_problem) - 1)
    return mean, math.sqrt(var / len(per_problem))


def evaluate(config: EvalConfig, sampler: TransformersSampler | None = None) -> dict:
    """Sample, score and summarise; write files into ``output_dir`` when set."""
    problems = load_problems(config)
    sampler = sampler or TransformersSampler(config.model_name_or_path, batch_size=config.batch_size)
    prompts = to_prompts(
        problems, template=config.template, system_prompt=config.system_prompt, problem_column=config.problem_column
    )["prompt"]
    references = problems[config.answer_column]
    summary: dict = {"model": config.model_name_or_path, "benchmark": config.benchmark, "problems": len(problems)}
    records = []
    runs = [("sampled", SamplingParams(config.num_samples, config.temperature, config.top_p, config.max_new_tokens, config.seed))]
    if config.greedy:
        runs.insert(0, ("greedy", SamplingParams(1, 0.0, 1.0, config.max_new_tokens, config.seed)))
    for mode, params in runs:
        completions = sampler.generate(prompts, params, progress=True)
        verdicts = []
        for i, group in enumerate(completions):
            row = []
            for j, text in enumerate(group):
                answer, ok = is_correct(text, references[i])
                row.append(ok)
                records.append({"mode": mode, "problem_index": i, "sample": j, "problem": problems[config.problem_column][i],
                                "reference": references[i], "completion": text, "answer": answer, "correct": ok})
            verdicts.append(row)
        mean, stderr = pass_at_1(verdicts)
        if mode == "greedy":
            summary["greedy_accuracy"] = mean
        else:
            summary.update({"pass@1": mean, "pass@1_stderr": stderr, "samples_per_problem": params.n,
                            "temperature": params.temperature, "top_p": params.top_p})
            if config.benchmark == "arithmetic":  # which way of thinking the model picks
                styles = Counter(arithmetic.style_of(t) or "other" for g in completions for t in g)
                total = sum(styles.values())
                summary["style_share"] = {k: v / total for k, v in sorted(styles.items())}
    if config.output_dir:
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = Path(config.benchmark).stem
        (out / f"eval_{name}.json").write_text(json.dumps({**summary, "config": asdict(config)}, indent=2))
        with open(out / f"eval_{name}_samples.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    logger.info("%s", format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    parts = [f"{summary['benchmark']} ({summary['problems']} problems)"]
    if "greedy_accuracy" in summary:
        parts.append(f"greedy {summary['greedy_accuracy']:.3f}")
    if "pass@1" in summary:
        parts.append(
            f"pass@1 {summary['pass@1']:.3f} ± {summary['pass@1_stderr']:.3f} "
            f"(k={summary['samples_per_problem']}, T={summary['temperature']})"
        )
    return " | ".join(parts)


def main(argv: Sequence[str] | None = None) -> dict:
    from r1_recipe.stage import setup_logging

    setup_logging()
    return evaluate(parse_config(EvalConfig, argv))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["evaluate", *sys.argv[1:]]))
