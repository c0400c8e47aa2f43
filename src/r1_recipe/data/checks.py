"""Checks of data files at load time, so that a bad file gets one line naming it (and the line
or row) instead of a 40–80-line ``datasets`` traceback, and nothing trains on a coerced value.

:func:`check_local` runs before ``datasets`` reads a local file or folder:

- the file can be read, is text (no NUL bytes, UTF-8) and is not empty;
- every JSONL line is a JSON object, and a last line cut short (no newline, not valid JSON) is
  reported as a truncated file;
- within a column, every non-null value has one JSON kind (a number in a column of strings would
  be coerced to text by the loader, or fail it on some other line);
- the columns whose meaning the project fixes by name hold what their readers expect:
  ``messages`` a list of ``{role, content}`` string mappings, ``verification_info`` (code rows)
  ``{"test_cases": [{input, output}, …]}`` or ``{"tests": [str, …]}``;
- a Parquet file's footer is readable; a folder holds data files.

:func:`check_text_columns` runs where a stage turns rows into prompts: the problem, reasoning and
answer columns the recipe names must hold strings (a column of numbers would train on ``str(5)``).

The scan is one pass of ``json.loads`` over each local JSONL file (about a second per 100 MB).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from datasets import Dataset, Value

from r1_recipe.data.errors import DataError


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
FOLDER_SUFFIXES = (".parquet", ".jsonl")  # what a folder of shards may hold (see loading._load_folder)
TEXT_TYPES = ("string", "large_string")


def checked_source(load: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """Wrap a source loader ``load(spec, *, where=...)``: :func:`check_local` on the source's path
    first, any error of the loader itself (``datasets``, ``pyarrow``) re-raised as one
    :class:`DataError` line naming the source, and a source that yields no rows refused."""
    signature = inspect.signature(load)

    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        spec, where = bound.arguments["spec"], bound.arguments["where"]
        path = spec.get("path") if isinstance(spec, dict) else spec
        if isinstance(path, (str, Path)):
            check_local(Path(path), where=where)
        try:
            ds = load(*args, **kwargs)
        except DataError:
            raise
        except Exception as e:
            cause = e
            while cause.__cause__ is not None or cause.__context__ is not None:  # datasets wraps the reader's error
                cause = cause.__cause__ or cause.__context__
            message = " ".join(str(cause).split())[:300] or type(cause).__name__
            raise DataError(f"{where}: cannot load {path}: {message}") from e
        if len(ds) == 0:  # a Hub split or a save_to_disk folder with no rows: a mixture would divide by it
            split = f" (split {spec.get('split')!r})" if isinstance(spec, dict) and spec.get("split") else ""
            raise DataError(f"{where}: {path}{split} yields no rows: check the path and split")
        return ds

    return wrapper


def check_local(path: Path, *, where: str) -> None:
    """Raise :class:`DataError` when a local data file, or a folder's data files, would fail to
    load or load wrongly; a path that is not local (a Hub id) is left alone."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return  # written by save_to_disk: datasets' own format
        files = [f for suffix in FOLDER_SUFFIXES for f in sorted(path.rglob(f"*{suffix}"))]
        if not files:
            raise DataError(f"{where}: folder {path} has no data files (.parquet or .jsonl)")
        filled = [f for f in files if not holds_no_rows(f)]  # an empty shard beside full ones is fine
        if not filled:
            raise DataError(f"{where}: folder {path} holds no rows (every data file in it is empty)")
        for f in filled:
            check_file(f, where=where)
    elif path.suffix in DATA_SUFFIXES and path.exists():
        check_file(path, where=where)


def holds_no_rows(path: Path) -> bool:
    """An empty file, or a readable Parquet file of 0 rows (what a stage that kept nothing writes)."""
    import pyarrow.parquet as pq

    try:
        if path.stat().st_size == 0:
            return True
        return path.suffix == ".parquet" and pq.ParquetFile(path).metadata.num_rows == 0
    except Exception:  # unreadable: check_file names the problem
        return False


def check_file(path: Path, *, where: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise DataError(f"{where}: cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise DataError(f"{where}: {path} is empty: no rows to load")
    if path.suffix == ".parquet":
        _check_parquet(path, head, where)
        return
    if b"\x00" in head:
        raise DataError(f"{where}: {path} is not a text file (it holds NUL bytes): a binary file with a "
                        f"{path.suffix} name?")
    if path.suffix == ".csv":
        _check_text(path, where)
        return
    rows = _json_document(path) if path.suffix == ".json" and head.lstrip()[:1] in (b"[", b"{") else None
    if rows == []:
        return
    check_rows(_json_rows(path, where) if rows is None else rows, path=path, where=where)


def _check_parquet(path: Path, head: bytes, where: str) -> None:
    import pyarrow.parquet as pq

    if not head.startswith(b"PAR1"):
        raise DataError(f"{where}: {path} is not a Parquet file (no PAR1 header)")
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow's errors for a cut or corrupt file
        raise DataError(f"{where}: {path} is not a readable Parquet file (truncated or corrupt?): "
                        f"{str(e).splitlines()[0]}") from None
    if rows == 0:
        raise DataError(f"{where}: {path} holds no rows")


def _check_text(path: Path, where: str) -> None:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: {path} line {number}: not UTF-8 text (a binary file?)") from None


def _json_rows(path: Path, where: str) -> Iterator[tuple[str, object]]:
    """``("line N", row)`` for every non-blank line of a JSON-lines file, read as a stream."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if b"\x00" in raw:
                raise DataError(f"{where}: {path} line {number}: holds NUL bytes (a binary file?)")
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataError(f"{where}: {path} line {number}: not UTF-8 text (a binary file?)") from None
            except json.JSONDecodeError as e:
                if not raw.endswith(b"\n"):  # only the last line lacks one
                    raise DataError(f"{where}: {path} line {number}: the last line is cut short (the file was "
                                    "truncated while being written?): delete it or regenerate the file") from None
                raise DataError(f"{where}: {path} line {number}: not valid JSON ({e.msg}, column {e.colno})") from None
            yield f"line {number}", row


def _json_document(path: Path) -> list[tuple[str, object]] | None:
    """Rows of a ``.json`` file holding one JSON array of objects (``[]`` for another JSON
    document, whose layout datasets' loader decides); None when it is JSON lines."""
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(data, list):
        return [(f"row {i}", row) for i, row in enumerate(data)]
    return []


def _kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def check_rows(rows: Iterable[tuple[str, object]], *, path: Path | str, where: str) -> int:
    """Check decoded rows (``(label, row)`` pairs); return how many there were."""
    kinds: dict[str, tuple[str, str]] = {}
    n = 0
    for label, row in rows:
        n += 1
        at = f"{where}: {path} {label}"
        if not isinstance(row, dict):
            raise DataError(f"{at}: expected a JSON object {{column: value}}, got {_kind(row)}")
        for column, value in row.items():
            if value is None:
                continue
            kind = _kind(value)
            if isinstance(value, list):  # a list's items must agree with earlier lists' items too
                item = next((_kind(v) for v in value if v is not None), None)
                kind = f"a list of {item.split(' ', 1)[1]}s" if item else kind
            first = kinds.get(column)
            if first is None or (first[0] == "a list" and kind.startswith("a list")):
                kinds[column] = first = (kind, label)
            if first[0] != kind and not (kind == "a list" and first[0].startswith("a list")):
                raise DataError(f"{at}: column {column!r} is {kind} here but {first[0]} on {first[1]}: one column, "
                                "one type (the loader would coerce or fail); fix the row")
            if column == "messages":
                _check_messages(value, at)
            elif column == "verification_info":
                _check_tests(value, at)
    if n == 0:
        raise DataError(f"{where}: {path} holds no rows")
    return n


def _check_messages(value, at: str) -> None:
    ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    if not ok:
        raise DataError(f"{at}: 'messages' must be a list of {{role: str, content: str}} turns, got {_show(value)}")


def _check_tests(value, at: str) -> None:
    info = value
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError:
            raise DataError(f"{at}: 'verification_info' is a string but not JSON: {_show(value)}") from None
    cases, tests = (info.get("test_cases"), info.get("tests")) if isinstance(info, dict) else (None, None)
    ok = (isinstance(cases, list) and all(isinstance(c, dict) for c in cases)) or (
        isinstance(tests, list) and all(isinstance(t, str) for t in tests))
    if not ok:
        raise DataError(f"{at}: 'verification_info' must be {{test_cases: [{{input, output}}, ...]}} or "
                        f"{{tests: [\"assert ...\", ...]}}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_text_columns(ds: Dataset, columns: dict[str, str], *, where: str) -> None:
    """``columns`` maps a column to the recipe key naming it; each must hold strings (or be absent:
    :func:`require_columns` says so)."""
    for column, key in columns.items():
        feature = ds.features.get(column)
        if feature is None:
            continue
        if not (isinstance(feature, Value) and feature.dtype in TEXT_TYPES) and not _all_null(feature):
            raise DataError(f"{where}: column {column!r} ({key}) holds {_describe(feature)} values, but the stage "
                            "reads it as text: convert it to strings in the data (or map another column with "
                            f"`columns:` / {key})")


def _all_null(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype == "null"


def _describe(feature) -> str:
    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, (list, tuple)) or type(feature).__name__ in ("List", "Sequence", "LargeList"):
        return "list"
    if isinstance(feature, dict):
        return "mapping"
    return type(feature).__name__
