"""Loading datasets (Hub id, local JSONL/Parquet file or folder), weighted mixtures, and the
conversion of rows into what TRL trains on.

A *source* is a dict, written in the recipe under ``dataset_mixture``::

    dataset_mixture:
      - {path: runs/demo/data/cold_start.jsonl, weight: 3}
      - {path: open-r1/OpenR1-Math-220k, name: default, split: train, weight: 1,
         columns: {problem: problem, solution: answer}}

``weight`` is relative: with ``mixture_size`` rows in total, a source with weight w gets
``n = round(size · w / Σw)`` rows. The rows of a source of N rows are drawn **without
replacement**: n ≤ N takes n distinct rows (the first n of a permutation seeded by the mixture
seed); n > N takes every row ⌊n / N⌋ times plus n mod N distinct rows once more, so no row
appears twice before every row has appeared once (and a warning says how many rows repeat).
``columns`` renames the source's
columns to the ones the stage reads (``{ours: theirs}``). ``source`` and ``reward_type`` set that
column to one value for every row of the source. ``reward_type`` routes rows to rewards
(:data:`r1_recipe.rewards.base.REWARD_TYPES`): RL stage 2 tags reasoning and general prompts with
``reward_type: reasoning | general`` (rule rewards or reward models); a math-and-code RL stage 1
tags ``math`` and ``code`` sources, so ``accuracy`` scores only the math rows and ``code`` only the
code rows (from their ``verification_info``, e.g. ``open-r1/verifiable-coding-problems-python``
with ``columns: {problem: problem_statement}``).
``data_dir`` and ``data_files`` mean what they mean to ``datasets.load_dataset`` (a Hub repo or a
local folder laid out like one): ``data_files: simplelr_qwen_level3to5/train.parquet`` reads that
file only, where ``data_dir`` would also build the folder's other splits (a ``test.parquet`` with
other columns fails).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, concatenate_datasets, load_dataset

from r1_recipe.data.checks import DataError, check_text_columns, checked_source, holds_no_rows
from r1_recipe.data.hub_mirror import hub_location
from r1_recipe.data.templates import format_response, prompt_for

logger = logging.getLogger(__name__)

SOURCE_KEYS = {"path", "name", "split", "weight", "columns", "source", "reward_type", "data_dir", "data_files"}
REWARD_TYPES = ("reasoning", "math", "code", "general")  # = r1_recipe.rewards.base.REWARD_TYPES (no import: ground)
CONSTANT_COLUMNS = ("source", "reward_type")  # source keys that set a column of the same name
_FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@checked_source  # files checked first, datasets' own errors as one line naming the source (data/checks.py)
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
    hub_layout = spec.get("data_dir") is not None or spec.get("data_files") is not None
    if local.suffix in _FILE_TYPES:
        if hub_layout:
            raise DataError(f"{where}: {path} is one file; data_dir/data_files select files inside a Hub repo "
                            "or a folder: drop them, or set 'path' to the folder")
        if not local.exists():
            raise DataError(f"{where}: data file {path} does not exist (generate it or fix 'path')")
        ds = load_dataset(_FILE_TYPES[local.suffix], data_files=str(local), split="train")
    elif local.is_dir() and not hub_layout:
        ds = _load_folder(local, split, where)
    else:  # a Hub id, or a local folder laid out like a Hub repo (same code path)
        ds = _load_hub_layout(spec, path, split, where)
    for ours, theirs in (spec.get("columns") or {}).items():
        require_columns(ds, [theirs], where=f"{where} source {path}")
        if ours != theirs:
            if ours in ds.column_names:
                ds = ds.remove_columns(ours)
            ds = ds.rename_column(theirs, ours)
    if "reward_type" in spec and str(spec["reward_type"]).lower() not in REWARD_TYPES:
        raise DataError(f"{where}: reward_type {spec['reward_type']!r} of source {path} is not one of "
                        f"{', '.join(REWARD_TYPES)}: it decides which rewards score the rows")
    if str(spec.get("reward_type")).lower() == "code" and "verification_info" not in ds.column_names:
        logger.warning("%s: source %s is tagged reward_type: code but has no verification_info column (its "
                       "columns: %s): the code reward finds no tests and gives its rows None; map the tests "
                       "with `columns: {verification_info: ...}` or set the code reward's verification_column",
                       where, path, ds.column_names)
    for key in CONSTANT_COLUMNS:
        if key in spec:
            ds = ds.remove_columns([c for c in [key] if c in ds.column_names])
            ds = constant_column(ds, key, spec[key])
    return ds


def _load_hub_layout(spec: dict, path: str, split: str, where: str) -> Dataset:
    try:
        return load_dataset(hub_location(path), spec.get("name"), split=split, data_dir=spec.get("data_dir"),
                            data_files=spec.get("data_files"))
    except Exception as e:  # the Hub's errors name neither the recipe nor the fix
        hint = (" If the folder's splits have different columns, read one split's files with "
                "`data_files:` instead of `data_dir:`." if spec.get("data_dir") is not None else "")
        raise DataError(
            f"{where}: could not load {path!r} (split {split!r}) from the Hugging Face Hub: {e}. "
            "Use an existing Hub dataset id, or a local .jsonl/.parquet file or folder; a gated "
            "dataset (e.g. Idavidrein/gpqa) needs its terms accepted on the Hub and a login "
            f"(`huggingface-cli login` or HF_TOKEN).{hint}"
        ) from e


def check_reward_types(ds: Dataset, where: str) -> None:
    """Every ``reward_type`` in ``ds`` is one the rewards route on (a column from the data itself,
    not set by a source's key, is read here too): a typo would send its rows to every reward."""
    if "reward_type" not in ds.column_names:
        return
    found = {t for t in ds.unique("reward_type") if t is not None}
    unknown = sorted(str(t) for t in found if str(t).lower() not in REWARD_TYPES)
    if unknown:
        raise DataError(f"{where}: reward_type values {unknown} are not among {', '.join(REWARD_TYPES)}; "
                        "set reward_type per source in dataset_mixture (e.g. {path: ..., reward_type: code})")


def constant_column(ds: Dataset, name: str, value, feature=None) -> Dataset:
    """``ds`` with a column holding ``value`` in every row, built by Arrow (no Python list of
    ``len(ds)`` items). Call it before any ``select``/``shuffle``: on a dataset with an indices
    mapping, ``datasets`` copies the whole table to add a column."""
    import pyarrow as pa

    arrow_type = Features({name: feature}).arrow_schema.field(name).type if feature is not None else None
    if value is None:
        column = pa.nulls(len(ds), type=arrow_type or pa.null())
    else:
        column = pa.repeat(pa.scalar(value, type=arrow_type), len(ds))
    return ds.add_column(name, column, feature=feature)


def _load_folder(folder: Path, split: str, where: str) -> Dataset:
    """A folder written by ``save_to_disk`` or holding JSONL/Parquet shards (``<split>*``)."""
    if (folder / "dataset_info.json").exists() or (folder / "state.json").exists():
        from datasets import load_from_disk

        return load_from_disk(str(folder))
    for suffix, kind in (("parquet", "parquet"), ("jsonl", "json")):
        files = sorted(folder.rglob(f"*.{suffix}"))
        if files:
            named = [f for f in files if f.name.startswith(split)] or files
            named = [f for f in named if not holds_no_rows(f)] or named  # datasets fails on a 0-row shard
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
    sources: list[dict | str], *, size: int | None = None, seed: int = 0, where: str = "dataset_mixture",
    text_columns: dict[str, str] | None = None,
) -> Dataset:
    """Load and mix sources by relative weight; shuffle the result with ``seed``.

    ``text_columns`` (column -> the recipe key naming it) must hold strings; each source is
    checked on its own, so a wrong type is reported with the file that holds it."""
    if not sources:
        raise DataError(f"{where}: no sources given; add at least one {{path: ...}} entry")
    loaded = [load_source(s, where=f"{where}[{i}]") for i, s in enumerate(sources)]
    for i, (spec, ds) in enumerate(zip(sources, loaded)):
        if text_columns:
            path = spec["path"] if isinstance(spec, dict) else spec
            check_text_columns(ds, text_columns, where=f"{where}[{i}] source {path}")
    if len(loaded) == 1 and size is None:
        return loaded[0].shuffle(seed=seed)
    weights = [float((s if isinstance(s, dict) else {}).get("weight", 1.0)) for s in sources]
    if any(w < 0 for w in weights) or sum(weights) == 0:
        raise DataError(f"{where}: weights must be non-negative and not all zero; got {weights}")
    size = size if size is not None else sum(len(d) for d in loaded)
    counts = [round(size * w / sum(weights)) for w in weights]
    used = [i for i, n in enumerate(counts) if n > 0]
    # columns first, on the whole sources (no indices yet: adding a column copies nothing), then sample
    unified = _one_schema([loaded[i] for i in used], where)
    parts = []
    for i, ds in zip(used, unified):
        n = counts[i]
        if n > len(ds):
            name = sources[i]["path"] if isinstance(sources[i], dict) else sources[i]
            logger.warning(
                "%s[%d] (%s): mixture_size %d gives this source %d rows but it has %d: %d rows repeat "
                "(every row %d or %d times). Duplicates add no new data (rejection sampling removes "
                "duplicate prompts): lower mixture_size or the weight, or add a source.",
                where, i, name, size, n, len(ds), n - len(ds), n // len(ds), -(-n // len(ds)))
        parts.append(ds.select(sample_indices(len(ds), n, seed + i)))
    return concatenate_datasets(parts).shuffle(seed=seed)


def sample_indices(num_rows: int, n: int, seed: int) -> np.ndarray:
    """``n`` row indices of a source of ``num_rows``, without replacement (see the module docstring).

    >>> sorted(np.bincount(sample_indices(4, 10, seed=0)).tolist())
    [2, 2, 3, 3]
    >>> len(set(sample_indices(10, 6, seed=0).tolist()))
    6
    """
    order = np.random.default_rng(seed).permutation(num_rows)  # what Dataset.shuffle(seed) draws
    return np.concatenate([np.tile(order, n // num_rows), order[: n % num_rows]])


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
            part = constant_column(part, name, None, feature=features[name][1])
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
    check_text_columns(ds, {problem_column: "problem_column", reasoning_column: "reasoning_column",
                            answer_column: "answer_column"}, where=where)

    def split(msgs):
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError(f"{where}: a row's messages have no assistant turn: {msgs}")
        prompt = msgs[:last]
        if system_prompt and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        return prompt, [msgs[last]]

    # Batched, reading only the columns used: the per-row path converted every column of every
    # row (OpenR1's generations are long) into a Python dict, which dominated the conversion.
    present = set(ds.column_names)
    inputs = [c for c in ("messages", *columns, "source", "reasoning_answer") if c in present]
    inputs = list(dict.fromkeys(inputs))
    absent = [c for c in columns if c not in present]

    def build(batch, indices):
        prompts, completions = [], []
        for k, index in enumerate(indices):
            if has_messages and batch["messages"][k] is not None:
                prompt, completion = split(batch["messages"][k])
                prompts.append(prompt)
                completions.append(completion)
                continue
            if absent:  # a row without messages needs them
                require_columns(ds, columns, where=where)
            missing = [c for c in columns if batch[c][k] is None]
            if missing:
                raise DataError(f"{where}: row {index} has no {missing} (its source lacks the column); "
                                "map one with `columns:` in that source")
            prompts.append(prompt_for(batch[problem_column][k], template=template, system_prompt=system_prompt))
            boxed = ("source" not in batch or batch["source"][k] or "reasoning") != "general"
            answer = ("reasoning_answer" in batch and batch["reasoning_answer"][k]) or batch[answer_column][k]
            response = format_response(batch[reasoning_column][k], answer, template=template, boxed=boxed)
            completions.append(response if template == "r1_zero" else [{"role": "assistant", "content": response}])
        return {"prompt": prompts, "completion": completions}

    def call(*args):
        *cols, indices = args
        return build(dict(zip(inputs, cols)), indices)

    return ds.map(call, batched=True, with_indices=True, input_columns=inputs,
                  remove_columns=[c for c in ds.column_names if c not in keep])


def to_prompts(
    ds: Dataset,
    *,
    template: str = "r1",
    system_prompt: str | None = None,
    problem_column: str = "problem",
    where: str = "dataset",
) -> Dataset:
    """Rows -> a ``prompt`` column for RL and evaluation; every other column is kept for rewards.

    Batched over the problem column only: the other columns are never converted to Python."""
    require_columns(ds, [problem_column], where=where)
    check_text_columns(ds, {problem_column: "problem_column"}, where=where)

    def build(problems, indices):
        for problem, index in zip(problems, indices):
            if problem is None:
                raise DataError(f"{where}: row {index} has no {problem_column!r} (its source lacks the column); "
                                "map one with `columns:` in that source")
        return {"prompt": [prompt_for(p, template=template, system_prompt=system_prompt) for p in problems]}

    return ds.map(build, batched=True, with_indices=True, input_columns=[problem_column])


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
