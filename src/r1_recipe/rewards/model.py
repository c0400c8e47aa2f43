"""Model-based reward for general prompts (RL stage 2): a sequence-classification reward model.

DeepSeek-R1 judges helpfulness on the final answer only (so the reward model cannot be
swayed by the reasoning) and harmlessness on the whole response: ``on="answer"`` or
``on="full"``. Rows whose ``reward_type`` is ``reasoning``, ``math`` or ``code`` get None: rule rewards
score them.

The input is what TRL's ``RewardTrainer`` trained on: the chat template over (user prompt,
assistant response), tokenized *without* adding special tokens again (the template already
writes any BOS: Llama-3's ``<|begin_of_text|>`` would otherwise appear twice, an input the
reward model never saw); a model without a chat template gets ``prompt\nresponse`` and the EOS
(TRL appends it to non-conversational pairs, so the head was trained reading it) with the
tokenizer's own special tokens, once. An input longer than ``max_length`` loses the *start of
the prompt* first (the template's header, the end of the prompt and the whole response stay);
only when the response alone does not fit does it lose its start too (its end, where the answer
is, stays), with a warning.

On GPUs every training process holds its own full copy of the reward model on its own GPU
(``cuda:LOCAL_RANK``) and scores its own completions with a plain forward: no collective, so ranks
may score different numbers of batches. Under ZeRO-3 the trainer's config has already switched
transformers' ``from_pretrained`` into ``deepspeed.zero.Init`` by the time rewards are built, which
would partition the reward model and leave each rank's forward with empty parameters; the load
therefore runs with that switch off (:func:`outside_zero3_init`), as accelerate's own
``zero3_init_context_manager(enable=False)`` does; under FSDP's CPU-RAM-efficient loading it reads the
real weights on every rank, and an unmerged reward-model adapter folder loads as base + adapter
(:func:`r1_recipe.model_folders.load_beside_policy`). A copy per GPU costs memory (a 7B reward model in
bf16 is ~15 GB per GPU); TRL's alternative, preparing it with DeepSpeed, shards it but needs
every rank to score in lock-step.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist

from r1_recipe.model_folders import load_beside_policy
from r1_recipe.rewards.base import RewardFunc, applies, named, prompt_text, route, row_texts
from r1_recipe.rewards.extract import split_reasoning

logger = logging.getLogger(__name__)

ON = ("answer", "full")


@contextlib.contextmanager
def outside_zero3_init() -> Iterator[None]:
    """``from_pretrained`` inside this block loads full weights even when a ZeRO-3 config is live
    (transformers keys ``zero.Init`` off one module-level reference, restored on exit)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = ref


def default_device() -> str:
    """This process's GPU (``LOCAL_RANK`` under a launcher: not every rank on GPU 0), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


class RewardModelScorer:
    """Loads the model once; scores (prompt, response) pairs in batches, no gradients."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 8,
                 max_length: int = 2048):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.device = device or default_device()
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        with outside_zero3_init():  # a full copy per process, whatever the trainer's ZeRO stage or FSDP loading
            self.model = load_beside_policy(AutoModelForSequenceClassification, model, dtype=dtype)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._warned_long_response = False

    @property
    def chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format(self, prompt: str, response: str) -> str:
        """The reward model's input text: its chat template when it has one."""
        if self.chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False,
            )
        # TRL's RewardTrainer appends the EOS to non-conversational pairs: the head learned to read it
        eos = self.tokenizer.eos_token or ""
        return f"{prompt}\n{response}" + ("" if response.endswith(eos) else eos)

    def _ids(self, prompt: str, response: str) -> list[int]:
        # templated text holds its special tokens already; plain text gets the tokenizer's, once
        return self.tokenizer(self.format(prompt, response), add_special_tokens=not self.chat)["input_ids"]

    def _drop_start(self, text: str, build, excess: int) -> list[int] | None:
        """``build(text without its first tokens)``, dropping as few as fit ``max_length`` (None: none do)."""
        pieces = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        cut = max(1, excess)
        while cut <= len(pieces):
            ids = build(self.tokenizer.decode(pieces[cut:]))
            excess = len(ids) - self.max_length
            if excess <= 0:
                return ids
            cut += excess  # re-tokenizing at the new boundary may differ by a token: check again
        return None

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of one input, at most ``max_length``: the prompt's start goes first."""
        ids = self._ids(prompt, response)
        if len(ids) <= self.max_length:
            return ids
        ids = self._drop_start(prompt, lambda p: self._ids(p, response), len(ids) - self.max_length)
        if ids is not None:
            return ids
        if not self._warned_long_response:
            logger.warning("reward_model: a response alone is longer than max_length %d tokens; its start is cut "
                           "(raise max_length to score whole responses)", self.max_length)
            self._warned_long_response = True
        ids = self._drop_start(response, lambda r: self._ids("", r), len(self._ids("", response)) - self.max_length)
        if ids is None:
            raise ValueError(f"reward_model: max_length {self.max_length} does not even hold the chat template's "
                             f"header ({len(self._ids('', ''))} tokens); raise max_length")
        return ids

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """One scalar per (prompt, response): the logit of a 1-label head, else P(last label)."""
        out: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            ids = [self.encode(p, r) for p, r in pairs[start : start + self.batch_size]]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
            with self.torch.no_grad():
                logits = self.model(**batch).logits.float()
            vals = logits[:, 0] if logits.shape[-1] == 1 else logits.softmax(-1)[:, -1]
            out.extend(vals.cpu().tolist())
        return out


def zscore(scores: list[float], gather: bool = False) -> list[float]:
    """``scores`` z-scored over the batch. On several trainer processes (``gather``: TRL calls
    the rewards on every process at every step) the mean and std are those of every process's
    scores together: TRL spreads one prompt's group over processes, and a per-process scale would
    weigh the same group's completions differently. A batch with one score (or none) stays as is.

    >>> zscore([1.0, 3.0])
    [-1.0, 1.0]
    """
    total, sq, count = sum(scores), sum(s * s for s in scores), len(scores)
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (total, sq, count))
        total, sq, count = (sum(p[k] for p in parts) for k in range(3))
    if count < 2:
        return scores
    mean = total / count
    std = max(sq / count - mean * mean, 0.0) ** 0.5
    return [(s - mean) / max(std, 1e-6) for s in scores]


def reward_model(
    model: str | None = None, on: str = "answer", batch_size: int = 8, device: str | None = None,
    max_length: int = 2048, normalize: bool = False,
) -> RewardFunc:
    """Sequence-classification reward model (option model: path or Hub id) on the answer or the
    full response; None for reasoning rows; normalize: z-score over the batch (of every trainer
    process together)."""
    if model is None:
        raise ValueError("reward_model needs the option model: a local path or Hub id of a "
                         "sequence-classification reward model")
    if on not in ON:
        raise ValueError(f"reward_model: on must be one of {ON}, got {on!r}")
    scorer = RewardModelScorer(model, device=device, batch_size=batch_size, max_length=max_length)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        ok = applies(n, kwargs.get("reward_type"), model_based=True)
        prompts = kwargs.get("prompts") or [""] * n
        idx = [i for i in range(n) if ok[i]]
        full = row_texts(completions, kwargs)
        inputs = []
        for i in idx:
            response = split_reasoning(full[i])[1] if on == "answer" else full[i]
            inputs.append((prompt_text(prompts[i]), response))
        scores = scorer.score(inputs) if inputs else []
        if normalize:
            scores = zscore(scores, gather="trainer_state" in kwargs)
        out: list[float | None] = [None] * n
        for i, s in zip(idx, scores):
            out[i] = s
        return out

    return route(named(fn, "reward_model"), model_based=True)
