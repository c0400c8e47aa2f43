"""A tiny causal LM of a real architecture (Qwen2) with a locally trained tokenizer.

It stands in for ``Qwen/Qwen2.5-1.5B`` on machines with no GPU and no network: it is saved as a
normal Hugging Face folder, so every stage loads it by path through ``from_pretrained`` exactly
as it would load a Hub model.

The tokenizer is a byte-level BPE trained by ``tokenizers`` on generated task text, with digits
split one per token (arithmetic is learned digit by digit), a ChatML chat template, and the
reasoning tags added as *normal* tokens: TRL decodes completions with
``skip_special_tokens=True``, so special tags would vanish from the text the rewards read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

from r1_recipe.data import arithmetic, code_tasks
from r1_recipe.data.templates import R1_SYSTEM_PROMPT, R1_ZERO_PROMPT, format_response

logger = logging.getLogger(__name__)

REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus(seed: int) -> list[str]:
    """Text the BPE learns its merges from: the demo's prompts and traces (arithmetic and code)
    and general rows."""
    text = [R1_SYSTEM_PROMPT, R1_ZERO_PROMPT, "\\boxed{} user assistant system"]
    for style in arithmetic.STYLES:
        for row in arithmetic.generate(1500, seed=seed, style_weights={style: 1.0}):
            text.append(row["problem"])
            text.append(format_response(row["reasoning"], row["solution"]))
    for style in code_tasks.STYLES:  # the demo's code task: its words, brackets and fences
        for row in code_tasks.generate(500, seed=seed, style_weights={style: 1.0}):
            text.append(row["problem"])
            text.append(row["messages"][-1]["content"])
    for row in arithmetic.generate_general(500, seed=seed):
        text.append(row["problem"] + " " + format_response(row["reasoning"], row["solution"], boxed=False))
    return text


def build_tokenizer(vocab_size: int = 400, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE tokenizer; identical output for identical arguments."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=None
    )
    # normal (not special) added tokens: they survive skip_special_tokens=True
    tokenizer.add_tokens(REASONING_TAGS, special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    return tokenizer


def build_tiny_model(
    output_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 512,
    vocab_size: int = 400,
) -> Path:
    """Build and save a randomly initialised tiny Qwen2 + tokenizer; return the folder."""
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(vocab_size=vocab_size, seed=seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny model: %s parameters, vocab %d -> %s", f"{n_params:,}", len(tokenizer), output_dir)
    return output_dir
