"""Tokenizer folders shaped like the Hub's base models, for the end-of-turn and BOS tests.

- :func:`chatml_base`: a ChatML tokenizer whose EOS is ``<|endoftext|>``, as Qwen2.5 base models
  ship it (the chat template ends turns with ``<|im_end|>``, a different token);
- :func:`llama3_folder`: a Llama-3 tokenizer whose ``tokenizer.json`` adds ``<|begin_of_text|>``
  on every call (Meta's post-processor) while its chat template writes one too.

Each takes a real tokenizer from the assets cache when there is one, or the tiny one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import AutoTokenizer

from r1_recipe.tiny import build_tokenizer

BOS = "<|begin_of_text|>"
LLAMA3_TOKENS = [BOS, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"]
# Llama-3.1's template, without its tools and date system header
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def chatml_base(source: str | Path | None, out: Path) -> Path:
    """Save a ChatML tokenizer (``source``, else the tiny one) with EOS ``<|endoftext|>`` to ``out``."""
    tok = AutoTokenizer.from_pretrained(source) if source else build_tokenizer()
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(out)
    return out


def _with_bos_post_processor(tokenizer_json: Path, bos_id: int) -> None:
    data = json.loads(tokenizer_json.read_text())
    bos = {"SpecialToken": {"id": BOS, "type_id": 0}}
    data["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": BOS, "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}}},
    ]}
    tokenizer_json.write_text(json.dumps(data))


def llama3_folder(source: str | Path | None, out: Path) -> Path:
    """A Llama-3 tokenizer folder (``source``, else the tiny one with Llama-3's special tokens and
    template) whose every call adds ``<|begin_of_text|>``, as Meta's ``tokenizer.json`` does."""
    out.mkdir(parents=True, exist_ok=True)
    if source:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(source) / name, out / name)
    else:
        tok = build_tokenizer()
        tok.add_special_tokens({"additional_special_tokens": LLAMA3_TOKENS})
        tok.bos_token, tok.eos_token, tok.pad_token = BOS, "<|end_of_text|>", "<|endoftext|>"
        tok.chat_template = LLAMA3_TEMPLATE
        tok.save_pretrained(out)
    bos_id = AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(BOS)
    _with_bos_post_processor(out / "tokenizer.json", bos_id)
    return out
