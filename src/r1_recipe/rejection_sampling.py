"""Rejection sampling (pipeline stage 3): turn the RL-stage-1 model into the SFT-stage-2 dataset.

    make rejection RECIPE=recipes/demo/rejection.yaml
    python -m r1_recipe.rejection_sampling --config recipes/Qwen2.5-7B/rejection/config_node.yaml

For every prompt, sample ``num_samples`` completions (vLLM on GPUs, transformers on CPU, through
:mod:`r1_recipe.sampling`), score them with the rewards registry and keep at most
``max_per_prompt`` that pass; then mix in non-reasoning data. Features and their recipe keys:

- keep rule: ``reward_funcs`` + ``reward_thresholds`` (default accuracy ≥ 1 and format ≥ 1), per
  row kind (``reward_type`` of the ``dataset_mixture`` source): for a mix of math and code prompts,
  ``reward_funcs: [accuracy, code, format]`` with ``reward_thresholds: {accuracy: 1.0, code: 1.0,
  format: 1.0}`` keeps a ``math`` row's sample on a verified answer and a ``code`` row's sample when
  its program passes every test of its ``verification_info`` (see :mod:`r1_recipe.rejection_filters`);
- readability filters (:mod:`r1_recipe.rejection_filters`): ``min_language_consistency``,
  ``max_paragraph_chars``, ``drop_code_in_reasoning``, ``max_repetition``;
- exact + near-duplicate removal, variety first: ``near_duplicate_threshold``, ``max_per_prompt``;
- per-prompt pass rates (``pass_rates.jsonl``) and, with ``pass_rate_range: [lo, hi]``, a
  prompt set for RL without the always/never-solved prompts (``rl_prompts.parquet``);
  ``write_sft_data: false`` makes that the only output;
- general data: ``general_mixture`` sources tagged ``source=general``, ``general_fraction`` of the
  final rows (the paper's 200k of 800k = 0.25);
- resumable and lossless: work goes in chunks of ``chunk_size`` prompts; each chunk's shard and
  then its marker are written atomically (temp file + rename), so after ``kill -9`` the same
  command redoes only unfinished chunks; ``num_shards``/``shard_index`` (default: the Slurm array
  task) split the chunks by index range across jobs;
- one node's GPUs: ``data_parallel_size: D`` starts D sampler processes, each on its own
  ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES``) and its own contiguous sub-shard of this
  job's chunks (worker k of job s is shard ``s·D + k`` of ``num_shards·D``), so every prompt is
  sampled exactly once; their logs go to ``workers/worker-<k>.log`` and this process writes the mix
  when they are done. vLLM's offline engine cannot do this itself: it refuses data parallelism in
  one process for dense models. With the transformers backend on CPU the same split runs D CPU
  processes (the tests use it);
- truncation: a sample cut by ``max_new_tokens`` or the model's context is never kept (drop
  reason ``truncated``: it stops mid-word); each chunk's marker counts them (``truncated``), and
  the stats report the share.

Output folder (``datasets.load_dataset(output_dir)`` and the SFT stage read it as is)::

    data/train-00000.parquet …   messages + prompt_id, prompt_index, source, sample_index,
    data/train-general.parquet   rewards, problem, reference, answer, pass_rate
    progress/chunk-00000.json …  per-chunk markers: per-prompt pass rates and drop reasons
    pass_rates.jsonl  stats.json (= results.json)  rl_prompts.parquet  manifest.json  resolved_config.yaml

Departures from the paper: DeepSeek also judged some samples with DeepSeek-V3 (generative
reward) and filtered by hand; here every judgement is a rule. Duplicate prompts are removed
before sampling; near-duplicates are removed among one prompt's samples, not across prompts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from r1_recipe.configs import ConfigError, check_generation_budget, parse_config
from r1_recipe.data.loading import DataError, check_reward_types, load_mixture
from r1_recipe.data.templates import prompt_for
from r1_recipe.rejection_config import RejectionSamplingConfig
from r1_recipe.rejection_filters import (
    TRUNCATED, UNVERIFIED, answer_key, prompt_id, reward_failure, row_thresholds, select,
)
from r1_recipe.rejection_output import finalize, format_summary, write_json, write_rows
from r1_recipe.reward_health import health_stats
from r1_recipe.rewards.base import PREFILL_COLUMN, template_opens_think
from r1_recipe.sampling import SamplingParams, prompt_seed, sampler_from_config, worker_gpus

logger = logging.getLogger(__name__)


# --- the prompts and the work plan ------------------------------------------------------------

PROMPT_ID_BATCH = 10_000  # problems held as Python strings at once while ids are computed


def load_prompts(config: RejectionSamplingConfig):
    """The prompt rows in a fixed order, duplicate problems removed: (dataset, ids, duplicates)."""
    ds = load_mixture(config.dataset_mixture, size=config.mixture_size, seed=config.seed,
                      text_columns={config.problem_column: "problem_column"})
    check_reward_types(ds, "dataset_mixture")
    if config.problem_column not in ds.column_names:
        raise DataError(f"dataset_mixture: no column {config.problem_column!r} (problem_column); "
                        f"the data has {ds.column_names}")
    ids, keep, seen = [], [], set()
    problems = (batch[config.problem_column] for batch in
                ds.select_columns([config.problem_column]).iter(batch_size=PROMPT_ID_BATCH))
    for i, problem in enumerate(p for batch in problems for p in batch):  # streamed: one batch of texts at a time
        pid = prompt_id(str(problem))
        if pid not in seen:
            seen.add(pid)
            ids.append(pid)
            keep.append(i)
    return (ds.select(keep) if len(keep) < len(ds) else ds), ids, len(ds) - len(keep)


def chunk_ranges(num_prompts: int, chunk_size: int) -> list[tuple[int, int]]:
    """[start, end) of every chunk, on one global grid whatever the number of jobs.

    >>> chunk_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(s, min(s + chunk_size, num_prompts)) for s in range(0, num_prompts, chunk_size)]


def shard_chunks(num_chunks: int, num_shards: int, shard_index: int) -> range:
    """The contiguous chunk indices of one job (a Slurm array task).

    >>> [list(shard_chunks(5, 2, i)) for i in range(2)]
    [[0, 1], [2, 3, 4]]
    """
    return range(num_chunks * shard_index // num_shards, num_chunks * (shard_index + 1) // num_shards)


# --- one chunk ----------------------------------------------------------------------------------

def score_chunk(config: RejectionSamplingConfig, rows: list[dict], prompts: list, ids: list[str], start: int,
                completions: list[list[str]], reward_funcs, prefilled: bool = False,
                truncated: list[list[bool]] | None = None) -> tuple[list[dict], list[dict]]:
    """Rewards, keep rule, truncation, readability, selection for one chunk: (kept rows, per-prompt
    stats). ``prefilled``: the chat template opened ``<think>`` (the completions continue the
    reasoning); ``truncated``: the sampler's flags per sample (cut by the token budget: dropped)."""
    from r1_recipe.rewards.base import texts as normalized_texts

    flat = [(i, j) for i, group in enumerate(completions) for j in range(len(group))]
    flat_completions = [completions[i][j] for i, j in flat]
    flat_prompts = [prompts[i] for i, _ in flat]
    columns = {c: [rows[i][c] for i, _ in flat] for c in rows[0] if c not in ("prompts", "completions")}
    if prefilled:
        columns[PREFILL_COLUMN] = [True] * len(flat)
    scores = {f.__name__: f(completions=flat_completions, prompts=flat_prompts, **columns) for f in reward_funcs}
    full = normalized_texts(flat_completions, flat_prompts, columns.get(PREFILL_COLUMN))  # <think> restored
    readability = config.readability()
    by_name = {f.__name__: f for f in reward_funcs}
    kept_rows, stats = [], []
    pos = 0
    for i, group in enumerate(completions):
        n = len(group)
        sample_rewards = [{name: scores[name][pos + j] for name in scores} for j in range(n)]
        text = full[pos : pos + n]
        pos += n
        reasons: dict[int, str] = {}
        passed = []
        kind = rows[i].get("reward_type")  # math rows: verified answers; code rows: programs passing every test
        thresholds = row_thresholds(kind, config.reward_thresholds, by_name, rows[i])
        cut = truncated[i] if truncated else [False] * n
        for j in range(n):
            why = UNVERIFIED if thresholds is None else reward_failure(sample_rewards[j], thresholds)
            if why is None:
                passed.append(j)
                why = TRUNCATED if cut[j] else readability.problem(text[j], kind)
            if why is not None:
                reasons[j] = why
        picked, dropped = select(text, [j for j in passed if j not in reasons], k=config.max_per_prompt,
                                 near_duplicate=config.near_duplicate_threshold)
        reasons.update(dropped)
        rate = len(passed) / n
        row = rows[i]
        for j in picked:
            kept_rows.append({
                "messages": [*prompts[i], {"role": "assistant", "content": group[j]}],
                "prompt_id": ids[i], "prompt_index": start + i, "source": "reasoning", "sample_index": j,
                "rewards": sample_rewards[j], "problem": str(row[config.problem_column]),
                "reference": None if row.get(config.answer_column) is None else str(row[config.answer_column]),
                "answer": answer_key(text[j]) or None, "pass_rate": rate,
            })
        health, _ = health_stats(reward_funcs, [scores[f.__name__][pos - n:pos] for f in reward_funcs],
                                 [{**row, PREFILL_COLUMN: prefilled}] * n, group, prompts=[prompts[i]] * n)
        stats.append({"prompt_id": ids[i], "prompt_index": start + i, "samples": n, "passed": len(passed),
                      "pass_rate": rate, "kept": len(picked), "dropped": dict(Counter(reasons.values())),
                      "health": {name: list(c) for name, c in health.items() if c[1]}})
    return kept_rows, stats


def _sampler(config: RejectionSamplingConfig):
    check_generation_budget(config.model_name_or_path, "max_new_tokens", [(config.max_new_tokens, "")])
    return sampler_from_config(config, enable_prefix_caching=True)  # the n samples of a prompt share its prefix


def _reward_funcs(config: RejectionSamplingConfig, prompts_ds):
    from r1_recipe.stage import check_reward_columns, reward_funcs_for

    funcs = reward_funcs_for(config)
    check_reward_columns(funcs, prompts_ds, "dataset_mixture")
    return funcs


# --- the run ------------------------------------------------------------------------------------

def run(config: RejectionSamplingConfig, sampler=None) -> dict:
    """Do this job's unfinished chunks; when every chunk is done, write the mix and the stats.

    Returns the stats (also in ``stats.json``), or a progress dict while other shards still work.
    """
    from tqdm.auto import tqdm

    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ConfigError("rejection sampling starts its own sampler processes (data_parallel_size of them, each on "
                          "tensor_parallel_size GPUs): run `python -m r1_recipe.rejection_sampling`, "
                          "not `accelerate launch`; for more nodes use num_shards/shard_index (slurm/generate.slurm)")
    out = Path(config.output_dir)
    prompts_ds, ids, duplicates = load_prompts(config)
    ranges = chunk_ranges(len(ids), config.chunk_size)
    _check_manifest(config, out, len(ids))
    mine = shard_chunks(len(ranges), config.num_shards, config.shard_index)
    todo = [c for c in mine if not _marker(out, c).exists()]
    logger.info("%d prompts (%d duplicates removed) in %d chunks; shard %d/%d: chunks %d..%d, %d to do",
                len(ids), duplicates, len(ranges), config.shard_index, config.num_shards,
                mine.start, mine.stop - 1, len(todo))
    if todo and config.data_parallel_size > 1 and sampler is None:
        run_workers(config, out)
    elif todo:
        reward_funcs = _reward_funcs(config, prompts_ds)  # before the sampler loads a model
        sampler = sampler or _sampler(config)
        prefilled = getattr(sampler, "tokenizer", None) is not None and template_opens_think(sampler.tokenizer)
        total = sum(ranges[c][1] - ranges[c][0] for c in mine)
        bar = tqdm(total=total, initial=total - sum(ranges[c][1] - ranges[c][0] for c in todo),
                   desc="rejection sampling", unit="prompt")
        kept_so_far = 0
        for c in todo:
            start, end = ranges[c]
            rows = prompts_ds.select(range(start, end)).to_list()
            prompts = [prompt_for(r[config.problem_column], template=config.template,
                                  system_prompt=config.system_prompt) for r in rows]
            # prompt i of the whole run owns seeds [seed + i·n, seed + (i+1)·n): no stream shared across prompts
            params = SamplingParams(config.num_samples, config.temperature, config.top_p, config.max_new_tokens,
                                    seed=prompt_seed(config.seed, start, config.num_samples))
            t0 = time.perf_counter()
            completions = sampler.generate(prompts, params)
            seconds = time.perf_counter() - t0
            cut = getattr(sampler, "last_truncated", None) or None
            truncated = sum(f for group in cut or [] for f in group)
            kept, stats = score_chunk(config, rows, prompts, ids[start:end], start, completions, reward_funcs,
                                      prefilled, cut)
            # shard first, marker last: a chunk without its marker is redone; no shard for a chunk that
            # kept nothing (datasets cannot read a zero-row Parquet file, so stage 2 would fail on it)
            if config.write_sft_data and kept:
                write_rows(kept, out / "data" / f"train-{c:05d}.parquet", config.reward_funcs)
            write_json({"chunk": c, "start": start, "end": end, "shard": config.shard_index,
                        "generation_seconds": seconds, "samples": sum(map(len, completions)),
                        "truncated": int(truncated), "prompts": stats}, _marker(out, c))
            bar.update(end - start)
            kept_so_far += len(kept)
            bar.set_postfix(kept=kept_so_far)
        bar.close()
    done = sum(_marker(out, c).exists() for c in range(len(ranges)))
    if done < len(ranges) or not config.merge:
        logger.info("%d of %d chunks done; the last job to finish writes the mix and stats", done, len(ranges))
        return {"chunks_done": done, "chunks": len(ranges)}
    return finalize(config, prompts_ds, duplicates)


def run_workers(config: RejectionSamplingConfig, out: Path) -> None:
    """This job's chunks on ``data_parallel_size`` sampler processes, one per GPU group, each on its
    own sub-shard; returns when all are done (an error names the failed worker's log)."""
    d = config.data_parallel_size
    gpus = worker_gpus(d, config.tensor_parallel_size)
    folder = out / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / f"shard-{config.shard_index}.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=True))
    procs = []
    for k in range(d):
        cmd = [sys.executable, "-m", "r1_recipe.rejection_sampling", "--config", str(recipe),
               "--num_shards", str(config.num_shards * d), "--shard_index", str(config.shard_index * d + k),
               "--data_parallel_size", "1", "--merge", "false"]
        env = {k_: v for k_, v in os.environ.items() if not k_.startswith("SLURM_ARRAY_")}
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus[k]
        log = folder / f"worker-{config.shard_index * d + k}.log"
        logger.info("sampler process %d/%d%s: shard %d of %d, log %s", k + 1, d,
                    f" on GPU(s) {gpus[k]}" if gpus else "", config.shard_index * d + k, config.num_shards * d, log)
        with open(log, "w") as f:
            procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), log))
    failed = [(p.wait(), log) for p, log in procs]
    failed = [(code, log) for code, log in failed if code != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {d} sampler processes failed (exit {failed[0][0]}): see {failed[0][1]}; "
                           "rerun the same command to redo only their unfinished chunks")


def _marker(out: Path, chunk: int) -> Path:
    return out / "progress" / f"chunk-{chunk:05d}.json"


def _check_manifest(config: RejectionSamplingConfig, out: Path, num_prompts: int) -> None:
    manifest = {"num_prompts": num_prompts, "config": config.fingerprint()}
    path = out / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(manifest)):
            changed = sorted(k for k in manifest["config"] if old.get("config", {}).get(k) != manifest["config"][k])
            raise ConfigError(
                f"output_dir {out} holds a run with other settings ({', '.join(changed) or 'num_prompts'} differ): "
                "resuming would mix two datasets. Use a new output_dir, or delete that folder to start over.")
        return
    write_json(manifest, path)


def underscored(args: Sequence[str]) -> list[str]:
    """Option names spelled the shell way (``--pass-rate-range``) as the field names the strict
    key check knows; values are left alone.

    >>> underscored(["--pass-rate-range", "0.1", "0.9", "--output_dir=a-b", "-x"])
    ['--pass_rate_range', '0.1', '0.9', '--output_dir=a-b', '-x']
    """
    out = []
    for a in args:
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            a = "--" + key.replace("-", "_") + eq + value
        out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    import sys

    from r1_recipe.stage import setup_logging

    setup_logging()
    stats = run(parse_config(RejectionSamplingConfig, underscored(sys.argv[1:] if argv is None else argv)))
    print(format_summary(stats))  # the command's output; stats.json holds the details
    return stats


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["rejection_sampling", *sys.argv[1:]]))
