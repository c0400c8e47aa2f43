"""What the rejection-sampling stage writes: atomic files, Parquet shards with one fixed schema,
the general-data mix and, once every chunk is done, the pass rates, RL prompt set and stats.

Every file goes through a hidden temp file and a rename, so a reader (or a restarted run) sees a
whole file or none; ``datasets`` and our loaders skip hidden files, so leftovers of a killed
writer are never read as data. :func:`finalize` only reads the chunk markers, so any job of a
Slurm array can run it, any number of times, with the same result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import Dataset, Features

from r1_recipe.data.loading import DataError, load_mixture
from r1_recipe.data.templates import format_response, prompt_for
from r1_recipe.rejection_config import RejectionSamplingConfig
from r1_recipe.rejection_filters import (
    READABILITY_REASONS, SELECTION_REASONS, TRUNCATED, pass_rate_histogram, prompt_id,
)
from r1_recipe.reward_health import HealthLimits, add_counts
from r1_recipe.reward_health import shares as health_shares

logger = logging.getLogger(__name__)


_HOST = socket.gethostname()


def _atomic(path: Path, write) -> None:
    """Write through a hidden temp file (ignored by datasets and by our loaders), fsync, rename.

    The temp name holds host and pid: array tasks on different nodes share the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(obj, path: Path) -> None:
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def row_schema(reward_names: Sequence[str]) -> pa.Schema:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([
        ("messages", pa.list_(message)), ("prompt_id", pa.string()), ("prompt_index", pa.int64()),
        ("source", pa.string()), ("sample_index", pa.int64()),
        ("rewards", pa.struct([(n, pa.float64()) for n in reward_names])),
        ("problem", pa.string()), ("reference", pa.string()), ("answer", pa.string()), ("pass_rate", pa.float64()),
    ])


def write_rows(rows: list[dict], path: Path, reward_names: Sequence[str]) -> None:
    """One Parquet shard with a fixed schema (every shard reads back as one dataset)."""
    table = pa.Table.from_pylist(rows, schema=row_schema(reward_names))
    _atomic(path, lambda f: pq.write_table(table, f))


def general_dataset(config: RejectionSamplingConfig, n: int) -> Dataset:
    """``n`` non-reasoning rows as chat messages tagged ``source=general`` (no repeats), in the
    shards' schema. Built by a batched map on the Arrow-backed mixture (reading only the
    columns used), never as one Python list of rows."""
    schema = row_schema(config.reward_funcs)
    features = Features.from_arrow_schema(schema)
    if n == 0 or not config.general_mixture:
        return Dataset.from_dict({name: [] for name in schema.names}, features=features)
    ds = load_mixture(config.general_mixture, seed=config.seed, where="general_mixture")
    if n > len(ds):
        logger.warning("general_mixture has %d rows, %d wanted for general_fraction %.2f: using all of them",
                       len(ds), n, config.general_fraction)
    ds = ds.select(range(min(n, len(ds))))
    problem_col, answer_col = config.problem_column, config.answer_column
    columns = set(ds.column_names)
    if "messages" not in columns and not {problem_col, answer_col} <= columns:
        raise DataError(f"general_mixture: rows need `messages` or the columns {problem_col!r} and {answer_col!r}; "
                        f"the data has {sorted(columns)}")
    inputs = [c for c in ("messages", problem_col, answer_col, "reasoning") if c in columns]

    def build(batch: dict, indices: list[int]) -> dict:
        messages = []
        for k in range(len(indices)):
            if "messages" in batch and batch["messages"][k]:
                messages.append(batch["messages"][k])
                continue
            if problem_col not in batch or answer_col not in batch:
                raise DataError(f"general_mixture: row {indices[k]} has no `messages` and the data has no "
                                f"{problem_col!r}/{answer_col!r} columns to build them from")
            answer = str(batch[answer_col][k])
            reasoning = batch["reasoning"][k] if "reasoning" in batch else None
            content = format_response(reasoning, answer, boxed=False) if reasoning else answer
            messages.append([*prompt_for(batch[problem_col][k], system_prompt=config.system_prompt),
                             {"role": "assistant", "content": content}])
        problems = [next((m["content"] for m in reversed(msgs) if m["role"] == "user"), "") for msgs in messages]
        none = [None] * len(indices)
        return {"messages": messages, "prompt_id": [prompt_id(p) for p in problems], "prompt_index": list(indices),
                "source": ["general"] * len(indices), "sample_index": none, "rewards": none, "problem": problems,
                "reference": none, "answer": none, "pass_rate": none}

    def call(*args):
        *cols, indices = args
        return build(dict(zip(inputs, cols)), indices)

    return ds.map(call, batched=True, with_indices=True, input_columns=inputs, features=features,
                  remove_columns=ds.column_names, desc="general mix")


def write_dataset(ds: Dataset, path: Path, reward_names: Sequence[str], batch_rows: int = 4096) -> None:
    """A dataset as one Parquet shard in the fixed schema, streamed batch by batch (memory flat
    in the number of rows)."""
    schema = row_schema(reward_names)

    def write(f):
        with pq.ParquetWriter(f, schema) as writer:
            for batch in ds.with_format("arrow").iter(batch_size=batch_rows):
                writer.write_table(batch.select(schema.names).cast(schema))
            if len(ds) == 0:
                writer.write_table(schema.empty_table())

    _atomic(path, write)


def finalize(config: RejectionSamplingConfig, prompts_ds, duplicates: int) -> dict:
    """Pass rates, general mix, RL prompt set and stats from the chunk markers (idempotent)."""
    out = Path(config.output_dir)
    markers = [json.loads(p.read_text()) for p in sorted((out / "progress").glob("chunk-*.json"))]
    per_prompt = [s for m in markers for s in m["prompts"]]
    _atomic(out / "pass_rates.jsonl", lambda f: f.writelines(json.dumps(s).encode() + b"\n" for s in per_prompt))
    kept = sum(s["kept"] for s in per_prompt)
    dropped = Counter()
    for s in per_prompt:
        dropped.update(s["dropped"])
    rates = [s["pass_rate"] for s in per_prompt]
    samples = sum(m["samples"] for m in markers)
    seconds = sum(m["generation_seconds"] for m in markers)
    truncated = sum(m.get("truncated", 0) for m in markers)  # cut by max_new_tokens or the context
    stats = {
        "prompts": len(per_prompt), "duplicate_prompts_removed": duplicates, "samples": samples,
        "passed_keep_rule": sum(s["passed"] for s in per_prompt), "kept_reasoning": kept,
        "dropped": {r: dropped.get(r, 0) for r in sorted(k for k in dropped if k.startswith("reward:"))}
        | {r: dropped.get(r, 0) for r in (TRUNCATED, *READABILITY_REASONS, *SELECTION_REASONS)},
        "prompts_with_kept": sum(s["kept"] > 0 for s in per_prompt),
        "mean_pass_rate": sum(rates) / len(rates) if rates else None,
        "pass_rate_histogram": pass_rate_histogram(rates),
        "generation_seconds": round(seconds, 2), "samples_per_second": samples / seconds if seconds else None,
        "truncated": truncated, "truncated_share": truncated / samples if samples else None,
    }
    health: dict[str, list[float]] = {}
    for s in per_prompt:  # markers written before reward health have none
        add_counts(health, s.get("health", {}))
    if samples:
        add_counts(health, {"truncated": (truncated, samples)})
    stats["reward_health"] = health_shares(health)
    HealthLimits().check(stats["reward_health"], step="end", where="rejection sampling")  # warns only
    if config.write_sft_data:
        want = round(kept * config.general_fraction / (1 - config.general_fraction))
        general = general_dataset(config, want)
        shard = out / "data" / "train-general.parquet"
        if len(general):  # no zero-row shard: datasets cannot read one
            write_dataset(general, shard, config.reward_funcs)
        else:  # an earlier run's general rows must not outlive a general count of 0
            shard.unlink(missing_ok=True)
        stats.update({"general": len(general), "rows": kept + len(general),
                      "general_share": len(general) / (kept + len(general)) if kept + len(general) else 0.0})
    if config.pass_rate_range is not None:
        lo, hi = config.pass_rate_range
        chosen = [s for s in per_prompt if lo <= s["pass_rate"] <= hi]
        # through Arrow, not Dataset.add_column: that fails on an empty selection of a mixture
        # (a concatenated dataset with an indices mapping), which no prompt in the range gives
        table = prompts_ds.select([s["prompt_index"] for s in chosen]).with_format("arrow")[:]
        table = table.append_column("pass_rate", pa.array([s["pass_rate"] for s in chosen], pa.float64()))
        _atomic(out / "rl_prompts.parquet", lambda f: pq.write_table(table, f))
        if not chosen:
            logger.warning("no prompt has a pass rate in pass_rate_range %s: rl_prompts.parquet is empty; widen "
                           "the range (or check the model: %d prompts, mean pass rate %s)", [lo, hi],
                           len(per_prompt), stats["mean_pass_rate"])
        stats["rl_prompts"] = {"range": [lo, hi], "kept": len(chosen), "dropped": len(per_prompt) - len(chosen)}
    write_json(stats, out / "stats.json")
    write_json({"stage": "rejection_sampling", "model_name_or_path": config.model_name_or_path,
                "output_dir": str(out), **stats}, out / "results.json")  # every stage's results file
    _atomic(out / "resolved_config.yaml", lambda f: f.write(yaml.safe_dump(dataclasses.asdict(config)).encode()))
    for tmp in out.rglob(".*.tmp"):
        if _stale(tmp):
            tmp.unlink(missing_ok=True)
    return stats


def _stale(tmp: Path) -> bool:
    """A temp file of a killed writer: a dead pid on this host, or an hour old from another host
    (a live job elsewhere may still be renaming it)."""
    rest, _, pid = tmp.name.removesuffix(".tmp").rpartition(".")
    if rest.endswith(f".{_HOST}") and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return time.time() - tmp.stat().st_mtime > 3600


def format_summary(stats: dict) -> str:
    if "chunks" in stats:
        return f"{stats['chunks_done']} of {stats['chunks']} chunks done (other shards still running)"
    lines = [f"prompts {stats['prompts']} (duplicates removed {stats['duplicate_prompts_removed']}), "
             f"samples {stats['samples']}, passed keep rule {stats['passed_keep_rule']}, "
             f"kept {stats['kept_reasoning']} from {stats['prompts_with_kept']} prompts"]
    if "general" in stats:
        lines.append(f"general rows {stats['general']} → {stats['rows']} rows ({100 * stats['general_share']:.1f}% general)")
    lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))
    if stats["mean_pass_rate"] is not None:
        lines.append(f"pass rate: mean {stats['mean_pass_rate']:.3f}, "
                     + ", ".join(f"{k} {v}" for k, v in stats["pass_rate_histogram"].items()))
    if "rl_prompts" in stats:
        r = stats["rl_prompts"]
        lines.append(f"RL prompts with pass rate in {r['range']}: {r['kept']} kept, {r['dropped']} dropped")
    if stats.get("truncated"):
        lines.append(f"truncated (max_new_tokens or the model's context): {stats['truncated']} samples "
                     f"({100 * stats['truncated_share']:.1f}%)")
    if stats["samples_per_second"]:
        lines.append(f"generation {stats['generation_seconds']:.0f} s, {stats['samples_per_second']:.1f} samples/s")
    return "\n".join(lines)
