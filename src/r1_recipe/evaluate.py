"""Evaluation with the DeepSeek-R1 protocol: k samples per problem (temperature 0.6, top-p 0.95),
**pass@1** = mean correctness over the k samples, **cons@k** = majority vote over the k
extracted answers, optional unbiased **pass@k**, and greedy accuracy.

    r1-recipe evaluate --model_name_or_path runs/demo/stage1 --benchmark arithmetic \\
        --num_samples 4 --temperature 0.7 --output_dir runs/demo/stage1
    r1-recipe evaluate --model_name_or_path deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B \\
        --benchmark aime24,math_500,gpqa_diamond --backend vllm --output_dir runs/eval/distill-1.5b
    r1-recipe evaluate --model_name_or_path MODEL --benchmark math_500=data/math500.jsonl   # offline copy

Protocols (``protocol``, :mod:`r1_recipe.eval_suites.protocols`): ``r1`` (above, the default) or a
benchmark's published one, e.g. ``lighteval`` for GSM8K (5-shot chat turns, ``#### N`` answers,
greedy, 256 tokens: the SmolLM2 model cards' numbers). Passes: a greedy one (``greedy``) and a
sampled one of ``num_samples`` per problem; ``num_samples 0`` or ``temperature 0`` runs the greedy
pass alone (the lighteval protocol's default).

Why a score is low: each pass reports the share of completions with no extractable answer
(``unextractable_share``, ``greedy_unextractable_share``) and the share cut at the token limit
(``truncated_share``, ``greedy_truncated_share``); over half unextractable is a warning that names
the answer form the protocol expects, printed under the table and kept in ``warnings``.

Benchmarks (comma-separated) come from :mod:`r1_recipe.eval_suites`; each brings its own answer
extraction, verifier and paper defaults (k=64 for AIME, 32k new tokens), which ``num_samples``,
``max_new_tokens`` and ``num_problems`` override. Backends (``backend``): ``vllm`` on GPUs,
``transformers`` anywhere, ``auto`` picks; same prompts and scoring in both.

Code benchmarks (``humaneval``, ``livecodebench``, ``codeforces``) score a sample by running its
program on every test of its problem in the code reward's sandbox, ``verify_workers`` tests at a
time, each with the problem's time and memory limits (:mod:`r1_recipe.eval_suites.code_tests`);
``benchmark_options`` picks e.g. LiveCodeBench's release and contest-date window.

Per benchmark, ``output_dir`` gets ``eval_<name>.json`` (summary + resolved config) and
``eval_<name>_samples.jsonl`` (or ``.parquet``: every sample's prompt, completion, extracted
answer and verdict); the command prints one table row per benchmark.

Answers are read exactly as the rewards read them (:func:`r1_recipe.rewards.base.final_answer`):
where the rendered prompt already opened ``<think>`` (R1-Zero's plain prompt, DeepSeek-R1-Distill's
chat template) the tag is restored first, so a completion cut off before ``</think>`` has no
answer and scores 0 in evaluation as in training, whatever ``\\boxed{}`` its reasoning holds.

cons@k votes by mathematical equivalence on math benchmarks: answers that match after removing
spacing and ``\\left``/``\\right`` vote together at once (the fast path); the remaining distinct
answers are compared by math-verify (through the rewards' pool and its exact fast path), so
``\\frac{1}{2}``, ``\\dfrac{1}{2}`` and ``0.5`` are one vote. Each distinct answer, in the order the
samples first give it, joins the first earlier group whose first answer it equals, else starts
a group; a group's verdict is its first answer's. Letter and exact-match benchmarks vote by the
string.

Where this departs from the paper: the paper does not say how cons@k ties break; here a tie goes
to the group whose first answer appears first among the samples.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from datasets import Dataset

from r1_recipe import eval_suites
from r1_recipe.configs import ConfigError, PromptArgs, check_generation_budget, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.templates import prompt_for, with_instruction
from r1_recipe.eval_suites import protocols
from r1_recipe.reward_health import evaluation_health
from r1_recipe.rewards.base import final_answer
from r1_recipe.rewards.extract import opens_think
from r1_recipe.rewards.verify import get_verifier
from r1_recipe.sampling import SamplerArgs, SamplingParams, release, render, sampler_from_config

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig(SamplerArgs, PromptArgs):
    # num_samples 0 and temperature 0 mean greedy only (config_checks reads these intervals)
    VALUE_RANGES: ClassVar[dict] = {"num_samples": (0, True, None, False), "temperature": (0, True, None, False)}
    model_name_or_path: str | None = field(default=None, metadata={"help": "Model folder or Hub id to evaluate."})
    benchmark: str = field(default="arithmetic", metadata={
        "help": "Comma-separated: aime24, math_500, gpqa_diamond, gsm8k, arithmetic, humaneval, livecodebench, "
                "codeforces; NAME=PATH for a local copy of a Hub benchmark; or a local .jsonl/.parquet file with "
                "problem_column/answer_column."})
    benchmark_options: dict | None = field(default=None, metadata={
        "help": "Options per benchmark, e.g. {livecodebench: {release: release_v6, start_date: '2025-02-01', "
                "end_date: '2025-05-01'}} (keys: see each benchmark's module in r1_recipe.eval_suites)."})
    progress_bar: bool = field(default=True, metadata={
        "help": "Progress bar while code tests run (shown on a terminal only)."})
    num_problems: int | None = field(default=None, metadata={
        "help": "First N problems (None: the benchmark's default: all, 200 for arithmetic)."})
    protocol: str = field(default="r1", metadata={
        "help": "How prompts are built and answers read: r1 (0-shot, \\boxed{} answers, pass@1 over k samples) or "
                "lighteval (gsm8k: 5-shot chat turns, '#### N' answers, greedy, 256 tokens: the SmolLM2 model "
                "cards' protocol); see r1_recipe.eval_suites.protocols."})
    num_samples: int | None = field(default=None, metadata={
        "help": "k samples per problem for pass@1 and cons@k (None: the benchmark's default, 64 for aime24; the "
                "lighteval protocol's is 0). 0: no sampled pass, greedy only."})
    temperature: float = field(default=0.6, metadata={
        "help": "Sampling temperature (R1: 0.6). 0 is greedy decoding: one greedy pass, no sampled one "
                "(num_samples must then be unset, 0 or 1)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling (R1: 0.95)."})
    greedy: bool = field(default=True, metadata={
        "help": "Run a greedy pass too and report its accuracy (--greedy false or --no_greedy: sampled pass only). "
                "With num_samples 0 or temperature 0 the greedy pass is the only one."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Generation budget per sample (None: the protocol's or benchmark's default, 32768 for Hub "
                "suites, 256 for lighteval)."})
    pass_at_k: list[int] = field(default_factory=list, metadata={
        "help": "Also report unbiased pass@k for these k (each ≤ num_samples)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed: same seed, same numbers."})
    shuffle_seed: int = field(default=0, metadata={"help": "Seed of the GPQA option order (fixed across runs)."})
    instruction: str | None = field(default=None, metadata={
        "help": "Text appended to each problem (None: the benchmark's, e.g. 'Please reason step by step...')."})
    verify_workers: int | None = field(default=None, metadata={"help": "math-verify processes (None: CPUs, max 8)."})
    verify_timeout: float = field(default=5.0, metadata={"help": "Seconds per math-verify check (then wrong)."})
    samples_format: str = field(default="jsonl", metadata={"help": "Per-sample file: jsonl or parquet."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the summary and samples files."})

    def __post_init__(self):
        super().__post_init__()
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required: the model folder or Hub id to evaluate")
        if self.samples_format not in ("jsonl", "parquet"):
            raise ConfigError(f"samples_format: {self.samples_format!r}; use jsonl or parquet")
        if self.num_samples is not None and self.num_samples < 0:
            raise ConfigError(f"num_samples must be ≥ 0 (0: greedy only), got {self.num_samples}")
        if self.temperature == 0 and (self.num_samples or 0) > 1:
            raise ConfigError(f"temperature 0 is greedy decoding: its {self.num_samples} samples would be one "
                              "completion; drop num_samples (or set 0) for a greedy-only run, or set temperature > 0")
        if not self.greedy and (self.num_samples == 0 or self.temperature == 0):
            raise ConfigError("greedy false with num_samples 0 or temperature 0 leaves nothing to run; "
                              "set greedy true (a greedy-only run) or num_samples ≥ 1 with temperature > 0")
        for spec in self.benchmarks:  # a protocol defined for other benchmarks fails before anything loads
            protocols.get(self.protocol, spec.partition("=")[0])
        if any(k < 1 for k in self.pass_at_k):
            raise ConfigError(f"pass_at_k values must be ≥ 1, got {self.pass_at_k}")
        unknown = sorted(set(self.benchmark_options or {}) - set(eval_suites.BENCHMARKS))
        if unknown:
            raise ConfigError(f"benchmark_options: {unknown} are not benchmarks; options go under one of "
                              f"{', '.join(b for b, s in eval_suites.BENCHMARKS.items() if s.options is not None)}")

    @property
    def benchmarks(self) -> list[str]:
        return [b.strip() for b in self.benchmark.split(",") if b.strip()]


# --- metrics --------------------------------------------------------------------------------

def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean over problems and its standard error (sample std / √N; 0 for one problem).

    >>> mean_stderr([0.5, 1.0])
    (0.75, 0.25)
    """
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def pass_at_1(verdicts: list[list[bool]]) -> tuple[float, float]:
    """Mean correctness over all samples, and its standard error across problems.

    >>> pass_at_1([[True, False], [True, True]])
    (0.75, 0.25)
    """
    return mean_stderr([sum(v) / len(v) for v in verdicts])


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 1, 2), 3)
    (0.25, 1.0, 0.0, 0.5)
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 ≤ k ≤ n, got k={k}, n={n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def vote_labels(answers: Sequence[Sequence[str | None]],
                equivalent: Callable[[list[tuple[str, str]]], list[bool]] | None = None) -> list[list[int | None]]:
    """Per problem, each sample's vote: the index of the first sample of its group (None: no
    answer, no vote).

    Answers with the same :func:`eval_suites.vote_key` share a group without a check. With
    ``equivalent`` (``[(answer, earlier answer)] -> [same?]``, one batched call per round for all
    problems) each further distinct answer joins the first earlier group it equals.

    >>> vote_labels([["4", " 4", None, "5"]])
    [[0, 0, None, 3]]
    >>> vote_labels([["0.5", "2", "1/2"]], lambda pairs: [{a, b} == {"0.5", "1/2"} for a, b in pairs])
    [[0, 1, 0]]
    """
    firsts: list[dict[str, int]] = []  # per problem: vote key -> its first sample, in order
    for group in answers:
        seen: dict[str, int] = {}
        for j, a in enumerate(group):
            if a is not None:
                seen.setdefault(eval_suites.vote_key(a), j)
        firsts.append(seen)
    label_of: list[dict[int, int]] = [{j: j for j in seen.values()} for seen in firsts]  # first sample -> group
    if equivalent is not None:
        heads: list[list[int]] = [[] for _ in answers]  # per problem: each group's first sample
        order = [list(seen.values()) for seen in firsts]
        for r in range(max(map(len, order), default=0)):
            asks = [(p, order[p][r], h) for p in range(len(answers)) if r < len(order[p]) for h in heads[p]]
            same = equivalent([(answers[p][j], answers[p][h]) for p, j, h in asks]) if asks else []
            joined: dict[int, int] = {}
            for (p, j, h), ok in zip(asks, same):
                if ok and p not in joined:
                    joined[p] = h
            for p in range(len(answers)):
                if r < len(order[p]):
                    j = order[p][r]
                    if p in joined:
                        label_of[p][j] = joined[p]
                    else:
                        heads[p].append(j)
    out: list[list[int | None]] = []
    for group, seen, labels in zip(answers, firsts, label_of):
        out.append([None if a is None else labels[seen[eval_suites.vote_key(a)]] for a in group])
    return out


def majority_vote(answers: Sequence[str | None], verdicts: Sequence[bool],
                  labels: Sequence[int | None] | None = None) -> tuple[str | None, bool]:
    """The winning answer and whether it is correct (cons@k for one problem).

    ``labels`` are the samples' groups (:func:`vote_labels`; default: by vote key). Samples
    without an answer do not vote; a tie goes to the group whose first answer comes first; a
    group's answer and verdict are its first sample's.

    >>> majority_vote(["4", "5", "5", None, None], [True, False, False, False, False])
    ('5', False)
    >>> majority_vote(["4", "5"], [True, False])
    ('4', True)
    >>> majority_vote([None, None], [False, False])
    (None, False)
    """
    if labels is None:
        (labels,) = vote_labels([answers])
    counts = Counter(label for label in labels if label is not None)
    if not counts:
        return None, False
    winner = min(counts, key=lambda label: (-counts[label], label))  # most votes, then first seen
    return answers[winner], verdicts[winner]


def score(answers: list[list[str | None]], verdicts: list[list[bool]], ks: Sequence[int] = (),
          labels: list[list[int | None]] | None = None) -> dict:
    """pass@1 (± stderr), cons@k (± stderr) and the requested unbiased pass@k, over problems.
    ``labels``: the vote groups of :func:`vote_labels` (default: by vote key)."""
    n = len(verdicts[0])
    labels = labels if labels is not None else vote_labels(answers)
    out: dict = {}
    out["pass@1"], out["pass@1_stderr"] = pass_at_1(verdicts)
    votes = [float(majority_vote(a, v, g)[1]) for a, v, g in zip(answers, verdicts, labels)]
    out["cons@k"], out["cons@k_stderr"] = mean_stderr(votes)
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(n, sum(v), k) for v in verdicts) / len(verdicts)
    return out


def math_equivalence(workers: int | None, timeout: float) -> Callable[[list[tuple[str, str]]], list[bool]]:
    """``[(answer, earlier answer)] -> [equal?]`` by the rewards' math-verify pool (exact fast
    path first, then math-verify; the earlier answer plays the reference)."""
    def equivalent(pairs: list[tuple[str, str]]) -> list[bool]:
        return [v == 1.0 for v in get_verifier(workers, timeout).verify_many(pairs)]

    return equivalent


# --- the run --------------------------------------------------------------------------------

def _sampler_for(config: EvalConfig, benchmarks: Sequence[tuple[str, eval_suites.Benchmark]]):
    """The sampler, once every benchmark's generation budget fits the model (read from its config)."""
    budgets = []
    for label, bench in benchmarks:
        proto = protocols.get(config.protocol, label)
        if config.max_new_tokens:
            budgets.append((config.max_new_tokens, ""))
        elif proto.max_new_tokens:
            budgets.append((proto.max_new_tokens, f"the {proto.name} protocol's"))
        else:
            budgets.append((bench.max_new_tokens, f"the {label} default"))
    check_generation_budget(config.model_name_or_path, "max_new_tokens", budgets)
    return sampler_from_config(config)


def opened_by_prompt(sampler, prompts: Sequence[list[dict] | str]) -> list[bool]:
    """Whether each prompt, rendered as the sampler renders it, ends inside ``<think>``.

    Plain-text prompts are their own rendering; chat prompts go through the sampler's tokenizer
    (a sampler without one, e.g. a scripted test sampler, renders no template: False)."""
    tokenizer = getattr(sampler, "tokenizer", None)
    return [opens_think(p) if isinstance(p, str) else tokenizer is not None and opens_think(render(tokenizer, p))
            for p in prompts]


def load(config: EvalConfig) -> tuple[str, eval_suites.Benchmark, Dataset]:
    """The one benchmark of ``config`` as (label, benchmark, rows)."""
    if len(config.benchmarks) != 1:
        raise ConfigError(f"evaluate() takes one benchmark, got {config.benchmark!r}; use evaluate_all()")
    return eval_suites.load_benchmark(
        config.benchmarks[0], num_problems=config.num_problems, seed=config.seed, shuffle_seed=config.shuffle_seed,
        problem_column=config.problem_column, answer_column=config.answer_column,
        options=(config.benchmark_options or {}).get(config.benchmarks[0].partition("=")[0]),
    )


def evaluate(config: EvalConfig, sampler=None, *, loaded: tuple | None = None) -> dict:
    """Sample, score and summarise one benchmark; write files into ``output_dir`` when set."""
    label, bench, problems = loaded or load(config)
    proto = protocols.get(config.protocol, label)
    k = config.num_samples if config.num_samples is not None else (0 if proto.greedy_only else bench.num_samples)
    if config.temperature == 0:
        k = 0  # greedy decoding: the greedy pass is the run
    max_new_tokens = config.max_new_tokens or proto.max_new_tokens or bench.max_new_tokens
    too_big = [x for x in config.pass_at_k if x > k]
    if too_big:
        raise ConfigError(f"pass_at_k {too_big} exceed num_samples={k}: raise num_samples or drop them")
    # one read of each column as a list: datasets' Column re-queries the table on every index or step
    problem_texts = problems["problem"][:]
    references = [str(a) for a in problems["answer"][:]]
    if proto.num_fewshot:
        pool = eval_suites.load_fewshot_pool(config.benchmarks[0] if len(config.benchmarks) == 1 else label)
        prompts = [protocols.fewshot_messages(q, protocols.draw_shots(pool, i, proto.num_fewshot, config.seed))
                   for i, q in enumerate(problem_texts)]
    else:
        instruction = bench.instruction if config.instruction is None else config.instruction
        texts = [with_instruction(p, instruction) for p in problem_texts]
        prompts = [prompt_for(t, template=config.template, system_prompt=config.system_prompt) for t in texts]
    suites = problems["tests"][:] if "tests" in problems.column_names else None  # code tests, read once
    own = sampler is None  # a sampler this call starts is released at its end (vLLM's engine is a process)
    sampler = sampler or _sampler_for(config, [(label, bench)])
    opened = opened_by_prompt(sampler, prompts)
    verifier = "exact" if proto.name == "lighteval" else bench.verifier

    def extract_for(i: int) -> Callable[[str], str | None]:
        if proto.name == "lighteval":
            return protocols.hashes_answer
        return lambda text: eval_suites.extract(text, bench.verifier, references[i])

    summary: dict = {"model": config.model_name_or_path, "benchmark": label, "protocol": proto.name,
                     "problems": len(problems)}
    records: list[dict] = []
    runs = []
    if config.greedy or k == 0:
        runs.append(("greedy", SamplingParams(1, 0.0, 1.0, max_new_tokens, config.seed)))
    if k > 0:
        runs.append(("sampled", SamplingParams(k, config.temperature, config.top_p, max_new_tokens, config.seed)))
    started = time.perf_counter()
    for mode, params in runs:
        logger.info("%s: %d problems × %d %s sample(s), ≤ %d new tokens, %s protocol", label, len(prompts), params.n,
                    mode, params.max_new_tokens, proto.name)
        t0 = time.perf_counter()
        completions = sampler.generate(prompts, params, progress=True)
        gen_seconds = time.perf_counter() - t0
        cut = cut_share(sampler, completions, proto.stop)  # by max_new_tokens or the context: scored as written
        if proto.stop:  # generation would have stopped there: the rest is not read
            completions = [[protocols.cut_at_stop(t, proto.stop) for t in group] for group in completions]
        flat = [(i, j, text) for i, group in enumerate(completions) for j, text in enumerate(group)]
        flat_answers = [final_answer(text, prompts[i], opened[i], extract=extract_for(i)) for i, _, text in flat]
        flat_ok = eval_suites.verify(flat_answers, [references[i] for i, _, _ in flat], verifier,
                                     workers=config.verify_workers, timeout=config.verify_timeout,
                                     tests=None if suites is None else [suites[i] for i, _, _ in flat],
                                     progress=config.progress_bar)
        answers = [[] for _ in completions]
        verdicts: list[list[bool]] = [[] for _ in completions]
        for (i, j, text), answer, ok in zip(flat, flat_answers, flat_ok):
            answers[i].append(answer)
            verdicts[i].append(ok)
            records.append({"mode": mode, "problem_index": i, "sample": j, "problem": problem_texts[i],
                            "prompt": prompts[i], "reference": references[i], "completion": text,
                            "answer": answer, "correct": ok})
        health = answer_health(label, mode, proto, flat_answers, cut, params.max_new_tokens)
        summary.setdefault("warnings", []).extend(health.pop("warnings"))
        if mode == "greedy":
            summary["greedy_accuracy"], summary["greedy_accuracy_stderr"] = pass_at_1(verdicts)
            summary.update({f"greedy_{key}": value for key, value in health.items()})
            if k == 0:
                summary["max_new_tokens"] = params.max_new_tokens
            continue
        same = math_equivalence(config.verify_workers, config.verify_timeout) if verifier == "math" else None
        summary.update(score(answers, verdicts, config.pass_at_k, vote_labels(answers, same)))
        summary.update({
            "samples_per_problem": params.n, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "answered": sum(a is not None for a in flat_answers) / len(flat_answers),
            **health,
            "reward_health": evaluation_health(flat_answers, cut, references if verifier == "math" else None),
            "samples_per_second": len(flat) / gen_seconds if gen_seconds > 0 else None,
        })
        if label == "arithmetic":  # which way of thinking the model picks (greedy hides it)
            styles = Counter(arithmetic.style_of(text) or "other" for _, _, text in flat)
            summary["style_share"] = {s: c / len(flat) for s, c in sorted(styles.items())}
            if checks := arithmetic.check_stats([text for _, _, text in flat]):  # the aha demo's traces
                summary.update(checks)
    summary["seconds"] = time.perf_counter() - started
    if config.output_dir:
        write_outputs(config, label, summary, records)
    logger.info("%s", format_summary(summary))
    if own:
        release(sampler)
    return summary


UNEXTRACTABLE_WARNING = 0.5  # above this share of completions without an answer, the score mostly says "unread"


def cut_share(sampler, completions: list[list[str]], stop: Sequence[str] = ()) -> float | None:
    """The share of the last call's samples cut by the token budget or the context (None: the
    sampler does not say); a sample that reached a stop sequence was not cut."""
    flags = getattr(sampler, "last_truncated", None)
    if not flags:
        return None
    cut = [f and not any(s in text for s in stop) for fs, group in zip(flags, completions)
           for f, text in zip(fs, group)]
    return sum(cut) / len(cut) if cut else None


def answer_health(label: str, mode: str, proto: protocols.Protocol, answers: Sequence[str | None],
                  cut: float | None, max_new_tokens: int) -> dict:
    """Why a score may be low: the share of completions with no extractable answer and the share
    cut at the token limit, with a warning (in ``warnings``) naming the answer form expected.

    >>> h = answer_health("gsm8k", "greedy", protocols.PROTOCOLS["r1"], [None, None, "4"], 0.0, 256)
    >>> round(h["unextractable_share"], 3), h["truncated_share"], "\\\\boxed" in h["warnings"][0]
    (0.667, 0.0, True)
    """
    none = sum(a is None for a in answers) / len(answers) if answers else 0.0
    warnings = []
    if none > UNEXTRACTABLE_WARNING:
        warnings.append(
            f"{label}: {100 * none:.0f}% of {mode} completions have no answer the {proto.name} protocol can read "
            f"(it expects {proto.answer_form}): they score 0, so the score says more about the answer format than "
            "the model's skill; read a few in the samples file, or evaluate under the protocol the model was "
            "published with (--protocol)")
    if cut:
        warnings.append(f"{label}: {100 * cut:.1f}% of {mode} completions hit max_new_tokens {max_new_tokens} "
                        "or the model's context (scored as written)")
    for w in warnings:
        logger.warning("%s", w)
    return {"unextractable_share": none, "truncated_share": cut, "warnings": warnings}


def evaluate_all(config: EvalConfig, sampler=None) -> list[dict]:
    """Every benchmark of ``config.benchmark`` with one loaded model."""
    configs = [dataclasses.replace(config, benchmark=b) for b in config.benchmarks]
    loaded = [load(c) for c in configs]  # a missing file or column fails before the model loads
    own = sampler is None
    sampler = sampler or _sampler_for(config, [(label, bench) for label, bench, _ in loaded])
    summaries = [evaluate(c, sampler, loaded=data) for c, data in zip(configs, loaded)]
    if own:
        release(sampler)
    return summaries


def write_outputs(config: EvalConfig, label: str, summary: dict, records: list[dict]) -> None:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"eval_{label}.json").write_text(json.dumps({**summary, "config": asdict(config)}, indent=2))
    if config.samples_format == "parquet":
        from datasets import Dataset

        Dataset.from_list(records).to_parquet(str(out / f"eval_{label}_samples.parquet"))
    else:
        with open(out / f"eval_{label}_samples.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def format_summary(summary: dict) -> str:
    parts = [f"{summary['benchmark']} ({summary['problems']} problems)"]
    if "greedy_accuracy" in summary:
        parts.append(f"greedy {summary['greedy_accuracy']:.3f}")
    if "pass@1" in summary:
        parts.append(
            f"pass@1 {summary['pass@1']:.3f} ± {summary['pass@1_stderr']:.3f} "
            f"(k={summary['samples_per_problem']}, T={summary['temperature']})"
        )
    if "cons@k" in summary:
        parts.append(f"cons@{summary['samples_per_problem']} {summary['cons@k']:.3f}")
    if "retry_after_failed_check" in summary:
        parts.append(f"failed checks {summary['check_failed']:.3f}, "
                     f"retried after one {summary['retry_after_failed_check']:.3f}")
    if summary.get("truncated_share"):
        parts.append(f"truncated {100 * summary['truncated_share']:.1f}%")
    return " | ".join(parts)


def format_table(summaries: list[dict]) -> str:
    """A Markdown table, one row per benchmark, in percent (as the paper reports). "no answer" and
    "cut" are the shares of completions with no extractable answer and cut at the token limit
    (the sampled pass's when there is one, else the greedy pass's)."""
    ks = sorted({int(key[5:]) for s in summaries for key in s if key.startswith("pass@") and key[5:].isdigit()} - {1})
    head = ["benchmark", "protocol", "problems", "k", "greedy", "pass@1", "cons@k", *(f"pass@{k}" for k in ks),
            "no answer", "cut"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    rows = []
    for s in summaries:
        mode = "" if "pass@1" in s else "greedy_"
        greedy = pct(s.get("greedy_accuracy"))
        if s.get("greedy_accuracy_stderr") is not None and "pass@1" not in s:
            greedy += f" ± {pct(s['greedy_accuracy_stderr'])}"
        sampled = f"{pct(s.get('pass@1'))} ± {pct(s.get('pass@1_stderr'))}" if "pass@1" in s else "-"
        rows.append([s["benchmark"], s.get("protocol", "r1"), str(s["problems"]), str(s.get("samples_per_problem", "-")),
                     greedy, sampled, pct(s.get("cons@k")), *(pct(s.get(f"pass@{k}")) for k in ks),
                     pct(s.get(f"{mode}unextractable_share")), pct(s.get(f"{mode}truncated_share"))])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main(argv: Sequence[str] | None = None) -> list[dict]:
    from r1_recipe.stage import setup_logging

    setup_logging()
    summaries = evaluate_all(parse_config(EvalConfig, argv))
    print(format_table(summaries))  # the command's output; the files hold the details
    for warning in (w for s in summaries for w in s.get("warnings", [])):
        print(f"warning: {warning}")
    return summaries


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["evaluate", *sys.argv[1:]]))
