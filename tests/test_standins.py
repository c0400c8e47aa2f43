"""The stand-ins carry the real models' vocabularies, special tokens, templates and positions."""

from __future__ import annotations

import json

from transformers import AutoConfig, AutoTokenizer, GenerationConfig


def test_qwen25_base_standin_has_the_base_eos_and_a_chatml_template(standin):
    folder = standin("Qwen/Qwen2.5-1.5B")
    tok, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    assert (config.vocab_size, config.max_position_embeddings, config.tie_word_embeddings) == (151936, 131072, True)
    assert len(tok) == 151665  # Qwen2.5's 151,643 BPE tokens + 22 special ones; no Qwen3 <think>
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token) == ("<|endoftext|>", 151643, "<|endoftext|>")
    assert GenerationConfig.from_pretrained(folder).eos_token_id == 151643
    assert tok.tokenize("<think>") != ["<think>"]  # plain text for Qwen2.5, as on the Hub
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   tokenize=False)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                    "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n")


def test_math_and_7b_standins_keep_their_real_positions_and_vocabularies(standin):
    math = AutoConfig.from_pretrained(standin("Qwen/Qwen2.5-Math-1.5B"))
    assert (math.max_position_embeddings, math.rope_theta if hasattr(math, "rope_theta") else
            math.rope_parameters["rope_theta"]) == (4096, 10000.0)
    big = AutoConfig.from_pretrained(standin("Qwen/Qwen2.5-7B"))
    assert (big.vocab_size, big.tie_word_embeddings) == (152064, False)


def test_llama31_base_standin_has_no_chat_template(standin):
    folder = standin("meta-llama/Llama-3.1-8B")
    tok, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    assert not tok.chat_template
    assert (tok.bos_token_id, tok.eos_token, tok.eos_token_id) == (128000, "<|end_of_text|>", 128001)
    assert config.vocab_size == 128256 and len(tok) == 128256
    scaling = json.loads((folder / "config.json").read_text())
    assert "llama3" in json.dumps(scaling)  # the llama3 rope scaling survives the save


def test_reward_model_standin_is_a_one_output_classifier_with_a_chat_template(standin):
    from transformers import AutoModelForSequenceClassification

    folder = standin("Skywork/Skywork-Reward-V2-Llama-3.1-8B")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id == 128004
    text = tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                   tokenize=False)
    assert text.startswith("<|begin_of_text|>") and text.endswith("a<|eot_id|>") and tok.eos_token == "<|eot_id|>"
