"""The tiny local model: deterministic, a normal HF folder, reasoning tags visible in decoded text."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1_recipe.tiny import REASONING_TAGS, build_tiny_model


def test_same_seed_builds_identical_model_and_tokenizer(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny_model_dir / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    other = build_tiny_model(tmp_path / "other", seed=1)
    c = load_file(other / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_loads_by_path_like_a_hub_model(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6


def test_reasoning_tags_are_single_normal_tokens_that_survive_decoding(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "<think>\nunits 8+9=17 write 7 carry 1\n</think>\n<answer>97</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for tag in REASONING_TAGS:
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1
        assert tag not in tok.all_special_tokens
    assert tok.decode(ids, skip_special_tokens=True) == text  # what GRPO's rewards will read
    assert [tok.decode([i]) for i in tok("48", add_special_tokens=False)["input_ids"]] == ["4", "8"]


def test_chat_template_ends_with_assistant_turn(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Compute 1 + 2."}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>"
