"""Generation backends for evaluation and rejection sampling, behind one small interface:
``sampler.generate(prompts, params) -> list[list[str]]`` (n completions per prompt).

``TransformersSampler`` runs anywhere (CPU included): prompts are batched, each call asks for
all n samples of every prompt in the batch at once (``num_return_sequences``), left padding.
Completions are decoded with ``skip_special_tokens=True``, as TRL's GRPOTrainer does, so the
text scored here is the text scored during RL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 0.6  # the R1 evaluation protocol
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class TransformersSampler:
    """Batched ``generate`` on a causal LM loaded by path or Hub id (or passed in)."""

    def __init__(self, model, tokenizer=None, *, batch_size: int = 64, device: str | None = None):
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise ValueError("pass the tokenizer with a model object")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def render(self, prompt: list[dict] | str) -> str:
        """Chat messages through the chat template (with the generation prompt); strings as-is."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def generate(self, prompts: list[list[dict] | str], params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        tok = self.tokenizer
        pad_side, tok.padding_side = tok.padding_side, "left"
        per_call = max(1, self.batch_size // max(1, params.n)) if not params.greedy else self.batch_size
        n = 1 if params.greedy else params.n
        out: list[list[str]] = []
        try:
            starts = range(0, len(prompts), per_call)
            for b, start in enumerate(tqdm(starts, desc="sampling", disable=not progress)):
                texts = [self.render(p) for p in prompts[start : start + per_call]]
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
                torch.manual_seed(params.seed + b)
                kwargs = {"do_sample": False} if params.greedy else {
                    "do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0
                }
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=params.max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    **kwargs,
                )
                decoded = tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                out.extend(decoded[i : i + n] for i in range(0, len(decoded), n))
        finally:
            tok.padding_side = pad_side
        if params.greedy and params.n > 1:  # every greedy sample is the same completion
            out = [group * params.n for group in out]
        return out
