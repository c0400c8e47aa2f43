"""Issue 15.10: a model fine-tuned on a chat format from a base model must stop at the end of the
turn. The tokenizers here end documents with ``<|endoftext|>`` while their chat template ends
turns with ``<|im_end|>`` (as Qwen2.5 base ships it); the tiny demo tokenizer hides the bug
because its EOS already is ``<|im_end|>``."""

from __future__ import annotations

import pytest
import torch
import yaml
from _chat_tokenizers import chatml_base, llama3_folder
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2Config

from r1_recipe.configs import GRPOStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.end_of_turn import end_of_turn_token, stop_token_ids
from r1_recipe.data.loading import write_jsonl
from r1_recipe.grpo import build_trainer
from r1_recipe.sampling import SamplingParams, TransformersSampler
from r1_recipe.sft import main as sft_main

END, BASE_EOS = "<|im_end|>", "<|endoftext|>"


def _base_model(tokenizer_dir, out):
    """A random tiny Qwen2 whose config and generation config stop on the tokenizer's (base) EOS."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("chatml_base")
    return _base_model(chatml_base(None, out / "tok"), out / "model")


@pytest.fixture(scope="module")
def qwen_base(tmp_path_factory, require_asset):
    out = tmp_path_factory.mktemp("qwen_base")
    return _base_model(chatml_base(require_asset("qwen3-tokenizer"), out / "tok"), out / "model")


@pytest.fixture(params=["tiny", "qwen3-tokenizer"])
def base_dir(request):
    return request.getfixturevalue("tiny_base" if request.param == "tiny" else "qwen_base")


def test_end_of_turn_is_read_off_the_chat_template(tmp_path, require_asset):
    tok = AutoTokenizer.from_pretrained(chatml_base(None, tmp_path / "tiny"))
    assert (tok.eos_token, end_of_turn_token(tok)) == (BASE_EOS, END)
    assert tok.convert_ids_to_tokens(stop_token_ids(tok)) == [BASE_EOS, END]
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert end_of_turn_token(tok) is None  # a plain-text template has no token to stop on
    tiny_llama = AutoTokenizer.from_pretrained(llama3_folder(None, tmp_path / "llama"))
    assert end_of_turn_token(tiny_llama) == "<|eot_id|>"
    for asset, expected in [("qwen3-tokenizer", END), ("llama3-tokenizer", "<|eot_id|>"),
                            ("deepseek-v3-tokenizer", "<｜end▁of▁sentence｜>")]:
        assert end_of_turn_token(AutoTokenizer.from_pretrained(require_asset(asset))) == expected, asset


def _sft(tmp_path, model_dir, data_dir, **over) -> str:
    recipe = {"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "sft"),
              "dataset_mixture": [{"path": str(data_dir / "cold_start.jsonl")}], "max_train_samples": 2,
              "per_device_train_batch_size": 2, "max_steps": 1, "max_length": 96, "save_strategy": "no",
              "report_to": "none", "seed": 0, **over}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(recipe))
    sft_main(["--config", str(tmp_path / "sft.yaml")])
    return tmp_path / "sft"


def test_sft_on_chat_rows_saves_the_end_of_turn_as_eos(tmp_path, base_dir, demo_data_dir):
    base_eos_id = AutoTokenizer.from_pretrained(base_dir).convert_tokens_to_ids(BASE_EOS)
    out = _sft(tmp_path, base_dir, demo_data_dir)
    tok = AutoTokenizer.from_pretrained(out)
    end_id = tok.convert_tokens_to_ids(END)
    assert tok.eos_token == END
    assert AutoConfig.from_pretrained(out).eos_token_id == end_id
    # the end of turn first, the base EOS kept: either one halts generation
    assert GenerationConfig.from_pretrained(out).eos_token_id == [end_id, base_eos_id]


def test_plain_text_sft_keeps_the_base_eos_and_eos_token_overrides(tmp_path, tiny_base, demo_data_dir):
    out = _sft(tmp_path / "zero", tiny_base, demo_data_dir, template="r1_zero", max_length=256)  # R1-Zero: no chat format
    assert AutoTokenizer.from_pretrained(out).eos_token == BASE_EOS
    out = _sft(tmp_path / "override", tiny_base, demo_data_dir, eos_token=BASE_EOS)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == BASE_EOS
    assert GenerationConfig.from_pretrained(out).eos_token_id == tok.eos_token_id


def _bigram_model(tokenizer_dir, out, after: dict[str, str], default: str):
    """A Qwen2 whose greedy next token depends on the current token only: its layers add nothing
    (zero output projections), embeddings are one-hot and the head maps token t to ``after[t]``."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    v = len(tok)
    config = Qwen2Config(vocab_size=v, hidden_size=v + (-v % 8), intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=False,
                         max_position_embeddings=512, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = AutoModelForCausalLM.from_config(config)
    ids = {k: tok.convert_tokens_to_ids(k) for k in [*after, *after.values(), default]}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        model.model.embed_tokens.weight[:, :v] = torch.eye(v)
        model.lm_head.weight[ids[default], :v] = 1.0
        for src, dst in after.items():
            model.lm_head.weight[:, ids[src]] = 0.0
            model.lm_head.weight[ids[dst], ids[src]] = 2.0
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_transformers_sampler_stops_at_the_end_of_turn(tmp_path, tiny_base):
    # after the generation prompt's "\n" the model writes "7", then <|im_end|>, then "9" forever
    tok = AutoTokenizer.from_pretrained(tiny_base)
    newline = tok.convert_ids_to_tokens(tok("\n", add_special_tokens=False)["input_ids"])[0]
    model_dir = _bigram_model(tiny_base, tmp_path / "bigram", {newline: "7", "7": END}, default="9")
    sampler = TransformersSampler(str(model_dir))
    out = sampler.generate([[{"role": "user", "content": "hi"}]], SamplingParams(temperature=0.0, max_new_tokens=8))
    assert out == [["7"]]  # the base EOS alone let it run on: "79999999"


def test_grpo_on_chat_prompts_stops_and_saves_on_the_end_of_turn(tmp_path, tiny_base):
    write_jsonl(arithmetic.generate(8, seed=1), tmp_path / "prompts.jsonl")
    recipe = {"model_name_or_path": str(tiny_base), "output_dir": str(tmp_path / "rl"),
              "dataset_mixture": [{"path": str(tmp_path / "prompts.jsonl")}], "num_generations": 4,
              "per_device_train_batch_size": 4, "max_completion_length": 8, "max_steps": 1, "report_to": "none"}
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump(recipe))
    trainer = build_trainer(parse_config(GRPOStageConfig, ["--config", str(tmp_path / "rl.yaml")]))
    tok = trainer.processing_class
    end_id, base_id = tok.convert_tokens_to_ids(END), tok.convert_tokens_to_ids(BASE_EOS)
    assert trainer.eos_token_ids == [end_id, base_id]  # what TRL stops generation and masks completions on
    assert tok.eos_token == END


def test_vllm_sampler_passes_the_stop_ids(tmp_path, tiny_base, monkeypatch):
    """The vLLM backend asks vLLM to stop on the same ids (a stand-in engine records the call)."""
    import sys
    import types

    calls = []

    class FakeLLM:
        def __init__(self, model, **kwargs):
            self.tok = AutoTokenizer.from_pretrained(model)

        def get_tokenizer(self):
            return self.tok

        def generate(self, inputs, params, use_tqdm=False):
            calls.extend(params)
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="")]) for _ in inputs]

    class FakeParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=FakeParams))
    from r1_recipe.sampling import VLLMSampler

    VLLMSampler(str(tiny_base)).generate(["x"], SamplingParams(max_new_tokens=4))
    tok = AutoTokenizer.from_pretrained(tiny_base)
    assert tok.convert_ids_to_tokens(calls[0].stop_token_ids) == [BASE_EOS, END]
