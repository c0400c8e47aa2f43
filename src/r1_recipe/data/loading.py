"""Loading datasets (Hub id, local JSONL/Parquet file or folder), weighted mixtures, and the
conversion of rows into what TRL trains on.

A *source* is a dict, written in the recipe under ``dataset_mixture``::

    dataset_mixture:
      - {path: runs/demo/data/cold_start.jsonl, weight: 3}
      - {path: open-r1/OpenR1-Math-220k, name: default, split: train, weight: 1,
         columns: {problem: problem, solution: answer}}

``weight`` is relative: with ``mixture_size`` rows in total, a source with weight w gets
``round(size · w / Σw)`` rows (sampled with the mixture seed). ``columns`` renames the source's
columns to the ones the stage reads (``{ours: theirs}``). ``source`` and ``reward_type`` set that
column to one value for every row of the source (RL stage 2 tags reasoning and general prompts
with ``reward_type: reasoning | general``, which routes them to rule rewards or reward models).
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset, concatenate_datasets, load_dataset

from r1_recipe.data.hub_mirror import hub_location
from r1_recipe.data.templates import format_response, prompt_for

logger = logging.getLogger(__name__)

SOURCE_KEYS = {"path", "name", "split", "weight", "columns", "source", "reward_type", "data_dir"}
CONSTANT_COLUMNS = ("source", "reward_type")  # source keys that set a column of the same name
_FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """A dataset, source spec or column problem the user can fix in the recipe or the data."""


def load_source(spec: dict | str, *, where: str = "dataset_mixture") -> Dataset:
    """Load one source: a local file, a local folder of shards, or a Hub dataset id."""
    if isinstance(spec, str):
        spec = {"path": spec}
    unknown = set(spec) - SOURCE_KEYS
    if unknown:
        raise DataError(f"{where}: unknown key(s) {sorted(unknown)} in {spec}; valid keys: {sorted(SOURCE_KEYS)}")
    if "path" not in spec:
        raise DataError(f"{where}: every source needs a 'path' (Hub id, file or folder); got {spec}")
    path, split = str(spec["path"]), spec.get("split", "train")
    local = Path(path)
    if local.suffix in _FILE_TYPES:
        if not local.exists():
            raise DataError(f"{where}: data file {path} does not exist (generate it or fix 'path')")
        ds = load_dataset(_FILE_TYPES[local.suffix], data_files=str(local), split="train")
    elif local.is_dir():
        ds = _load_folder(local, split, where)
    else:
        try:
            ds = load_dataset(hub_location(path), spec.get("name"), split=split, data_dir=spec.get("data_dir"))
        except Exception as e:  # the Hub's errors name neither the recipe nor the fix
            raise DataError(
                f"{where}: could not load {path!r} (split {split!r}) from the Hugging Face Hub: {e}. "
                "Use an existing Hub dataset id, or a local .jsonl/.parquet file or folder; a gated "
                "dataset (e.g. Idavidrein/gpqa) needs its terms accepted on the Hub and a login "
                "(`huggingface-cli login` or HF_TOKEN)."
            ) from e
    for ours, theirs in (spec.get("columns") or {}).items():
        require_columns(ds, [theirs], where=f"{where} source {path}")
        if ours != theirs:
            if ours in ds.column_names:
                ds = ds.remove_columns(ours)
            ds = ds.rename_column(theirs, ours)
    for key in CONSTANT_COLUMNS:
        if key in spec:
            ds = ds.remove_columns([c for c in [key] if c in ds.column_names])
            ds = ds.add_column(key, [spec[key]] * len(ds))
    return ds


def _load_folder(folder: Path, split: str, where: str) -> Dataset:
    """A folder written by ``save_to_disk`` or holding JSONL/Parquet shards (``<split>*``)."""
    if (folder / "dataset_info.json").exists() or (folder / "state.json").exists():
        from datasets import load_from_disk

        return load_from_disk(str(folder))
    for suffix, kind in (("parquet", "parquet"), ("jsonl", "json")):
        files = sorted(folder.rglob(f"*.{suffix}"))
        if files:
            named = [f for f in files if f.name.startswith(split)] or files
            return load_dataset(kind, data_files=[str(f) for f in named], split="train")
    raise DataError(f"{where}: folder {folder} has no .parquet or .jsonl files")


def require_columns(ds: Dataset, columns: list[str], *, where: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing}; the data has {ds.column_names}. "
            "Rename them with `columns: {wanted: existing}` in the source, or set the stage's column options."
        )


def load_mixture(
    sources: list[dict | str], *, size: int | None = None, seed: int = 0, where: str = "dataset_mixture"
) -> Dataset:
    """Load and mix sources by relative weight; shuffle the result with ``seed``."""
    if not sources:
        raise DataError(f"{where}: no sources given; add at least one {{path: ...}} entry")
    loaded = [load_source(s, where=f"{where}[{i}]") for i, s in enumerate(sources)]
    if len(loaded) == 1 and size is None:
        return loaded[0].shuffle(seed=seed)
    weights = [float((s if isinstance(s, dict) else {}).get("weight", 1.0)) for s in sources]
    if any(w < 0 for w in weights) or sum(weights) == 0:
        raise DataError(f"{where}: weights must be non-negative and not all zero; got {weights}")
    size = size if size is not None else sum(len(d) for d in loaded)
    parts = []
    for i, (ds, w) in enumerate(zip(loaded, weights)):
        n = round(size * w / sum(weights))
        if n == 0:
            continue
        if n > len(ds):  # repeat the source rather than silently under-weighting it
            logger.warning("%s[%d]: %d rows requested, %d available; repeating rows", where, i, n, len(ds))
        reps = -(-n // len(ds))
        idx = [j for _ in range(reps) for j in range(len(ds))]
        shuffled = ds.select(idx).shuffle(seed=seed + i)
        parts.append(shuffled.select(range(n)))
    return concatenate_datasets(_one_schema(parts, where)).shuffle(seed=seed)


def _one_schema(parts: list[Dataset], where: str) -> list[Dataset]:
    """Give every source every column: a column a source lacks is filled with None there
    (a general prompt has no ``solution``; rewards return None for it), so nothing is dropped.
    Two sources with one column name but different types is an error that names both."""
    features: dict[str, tuple[int, object]] = {}
    for i, part in enumerate(parts):
        for name, feature in part.features.items():
            first, known = features.setdefault(name, (i, feature))
            if known != feature:
                raise DataError(
                    f"{where}: column {name!r} is {known} in source {first} but {feature} in "
                    f"source {i}; rename one with `columns:` or convert it so the types agree")
    out = []
    for part in parts:
        missing = [name for name in features if name not in part.column_names]
        if missing:
            logger.info("%s: filling columns %s with None for a source that lacks them", where, missing)
        for name in missing:
            part = part.add_column(name, [None] * len(part), feature=features[name][1])
        out.append(part.select_columns(list(features)))
    return out


def to_sft(
    ds: Dataset,
    *,
    template: str = "r1",
    system_prompt: str | None = None,
    problem_column: str = "problem",
    reasoning_column: str = "reasoning",
    answer_column: str = "solution",
    where: str = "dataset",
) -> Dataset:
    """Rows -> conversational prompt/completion pairs (loss on the completion only).

    Rows that already hold ``messages`` (e.g. rejection-sampling output) are split at their last
    assistant turn; other rows are built from the problem, reasoning and answer columns.
    """
    keep = [c for c in ("source",) if c in ds.column_names]
    has_messages = "messages" in ds.column_names  # a mixture may hold both kinds of rows
    columns = [problem_column, reasoning_column, answer_column]
    if not has_messages:
        require_columns(ds, columns, where=where)

    def split(row):
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError(f"{where}: a row's messages have no assistant turn: {msgs}")
        prompt = msgs[:last]
        if system_prompt and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        return {"prompt": prompt, "completion": [msgs[last]]}

    def build(row, index):
        if has_messages and row["messages"] is not None:
            return split(row)
        require_columns(ds, columns, where=where)  # a row without messages needs them
        missing = [c for c in columns if row[c] is None]
        if missing:
            raise DataError(f"{where}: row {index} has no {missing} (its source lacks the column); "
                            "map one with `columns:` in that source")
        prompt = prompt_for(row[problem_column], template=template, system_prompt=system_prompt)
        boxed = row.get("source", "reasoning") != "general"
        answer = row.get("reasoning_answer") or row[answer_column]
        response = format_response(row[reasoning_column], answer, template=template, boxed=boxed)
        if template == "r1_zero":
            return {"prompt": prompt, "completion": response}
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": response}]}

    return ds.map(build, with_indices=True, remove_columns=[c for c in ds.column_names if c not in keep])


def to_prompts(
    ds: Dataset,
    *,
    template: str = "r1",
    system_prompt: str | None = None,
    problem_column: str = "problem",
    where: str = "dataset",
) -> Dataset:
    """Rows -> a ``prompt`` column for RL and evaluation; every other column is kept for rewards."""
    require_columns(ds, [problem_column], where=where)

    def build(row, index):
        if row[problem_column] is None:
            raise DataError(f"{where}: row {index} has no {problem_column!r} (its source lacks the column); "
                            "map one with `columns:` in that source")
        return {"prompt": prompt_for(row[problem_column], template=template, system_prompt=system_prompt)}

    return ds.map(build, with_indices=True)


def write_jsonl(rows, path: str | Path) -> int:
    """Write rows atomically (temp file + rename); return how many were written."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    tmp.replace(path)
    return n
