"""Generation backends for evaluation and rejection sampling, behind one small interface:
``sampler.generate(prompts, params) -> list[list[str]]`` (n completions per prompt).

- ``TransformersSampler`` runs anywhere (CPU included): prompts are batched, each call asks for
  all n samples of every prompt in the batch at once (``num_return_sequences``), left padding.
- ``VLLMSampler`` runs vLLM's offline ``LLM`` on GPUs (tensor and data parallel). vLLM is
  imported only when this backend is chosen; it is never installed in the CPU environment.

Both render a prompt to token ids with the same function (:func:`prompt_ids`: the tokenizer's
chat template for messages, the text as-is for strings, no extra BOS) and decode completions with
``skip_special_tokens=True``, as TRL's GRPOTrainer does: the same prompts go in and the text
scored here is the text scored during RL. Both stop on the same ids (:func:`stop_token_ids`:
the tokenizer's EOS, the generation config's, and the chat template's end of turn), so a model
whose saved EOS is still its base ``<|endoftext|>`` stops at ``<|im_end|>`` too.
``make_sampler`` picks a backend by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1_recipe.data.end_of_turn import stop_token_ids
from r1_recipe.data.templates import hidden_tags_problem

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


def render(tokenizer, prompt: list[dict] | str) -> str:
    """Chat messages through the chat template (with the generation prompt); strings as-is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, prompt: list[dict] | str) -> list[int]:
    """The token ids every backend generates from (the template already holds any BOS)."""
    return tokenizer(render(tokenizer, prompt), add_special_tokens=False)["input_ids"]


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
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))

    def render(self, prompt: list[dict] | str) -> str:
        return render(self.tokenizer, prompt)

    @torch.no_grad()
    def generate(self, prompts: list[list[dict] | str], params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        tok = self.tokenizer
        pad_side, tok.padding_side = tok.padding_side, "left"
        per_call = max(1, self.batch_size // max(1, params.n)) if not params.greedy else self.batch_size
        n = 1 if params.greedy else params.n
        out: list[list[str]] = []
        try:
            bar = tqdm(total=len(prompts), desc=f"sampling n={n}", unit="problem", disable=not progress)
            for b, start in enumerate(range(0, len(prompts), per_call)):
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
                    eos_token_id=self.stop_ids,
                    **kwargs,
                )
                decoded = tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                out.extend(decoded[i : i + n] for i in range(0, len(decoded), n))
                bar.update(len(texts))
            bar.close()
        finally:
            tok.padding_side = pad_side
        if params.greedy and params.n > 1:  # every greedy sample is the same completion
            out = [group * params.n for group in out]
        return out


class VLLMSampler:
    """vLLM's offline engine behind the same interface (GPU only).

    Each prompt gets its own seed (``params.seed + index``), so a run is reproducible and the
    k samples of different problems are independent. Prompts go in as token ids from
    :func:`prompt_ids`, so vLLM sees exactly what the transformers backend sees.
    """

    def __init__(self, model: str, tokenizer=None, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, seed: int = 0,
                 dtype: str = "auto", **llm_kwargs):
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "backend 'vllm' needs vLLM on a CUDA machine: pip install -e '.[vllm]'. "
                "Without a GPU use backend 'transformers'."
            ) from e
        kwargs = {"max_model_len": max_model_len} if max_model_len else {}
        if data_parallel_size > 1:
            kwargs["data_parallel_size"] = data_parallel_size
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization, **kwargs, **llm_kwargs)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        self.stop_ids = stop_token_ids(self.tokenizer)  # vLLM adds the folder's generation_config.json EOS ids

    def generate(self, prompts: list[list[dict] | str], params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        from vllm import SamplingParams as VLLMParams

        n = 1 if params.greedy else params.n
        per_prompt = [
            VLLMParams(n=n, temperature=params.temperature, top_p=1.0 if params.greedy else params.top_p,
                       max_tokens=params.max_new_tokens, seed=params.seed + i, skip_special_tokens=True,
                       stop_token_ids=self.stop_ids)
            for i in range(len(prompts))
        ]
        inputs = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        results = self.llm.generate(inputs, per_prompt, use_tqdm=progress)
        out = [[c.text for c in r.outputs] for r in results]
        if params.greedy and params.n > 1:
            out = [group * params.n for group in out]
        return out


BACKENDS = ("auto", "transformers", "vllm")


def make_sampler(backend: str, model: str, tokenizer=None, *, batch_size: int = 64, **vllm_options):
    """``transformers`` | ``vllm`` | ``auto`` (vLLM when CUDA and vLLM are there, else transformers).

    ``vllm_options`` (tensor_parallel_size, data_parallel_size, gpu_memory_utilization,
    max_model_len, seed, ...) go to :class:`VLLMSampler` and are ignored by transformers.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampling backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        import importlib.util

        backend = "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "transformers"
    logger.info("sampling backend: %s", backend)
    if backend == "vllm":
        sampler = VLLMSampler(model, tokenizer, **vllm_options)
    else:
        sampler = TransformersSampler(model, tokenizer, batch_size=batch_size)
    if problem := hidden_tags_problem(sampler.tokenizer, str(model)):  # format checks and rewards fail
        logger.warning(problem)
    return sampler


@dataclass
class SamplerArgs:
    """Generation-backend options shared by every config that samples (evaluation, rejection sampling)."""

    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto, transformers or vllm."})
    batch_size: int = field(default=256, metadata={"help": "Sequences per generate call (transformers)."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM: GPUs per model replica."})
    data_parallel_size: int = field(default=1, metadata={"help": "vLLM: model replicas."})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM: share of GPU memory it may take."})
    max_model_len: int | None = field(default=None, metadata={"help": "vLLM: context length (None: the model's)."})

    def __post_init__(self):
        from r1_recipe.configs import ConfigError

        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


def sampler_from_config(config, **extra):
    """The sampler a config asks for (evaluation, rejection sampling share these fields):
    backend, model, batch size, vLLM parallelism and memory, seed, and the chat-template override
    the training stages apply. ``extra`` goes to the vLLM engine (e.g. ``enable_prefix_caching``).
    """
    from r1_recipe.configs import ConfigError

    try:
        tokenizer = None
        if config.chat_template:
            from pathlib import Path

            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path)
            template = Path(config.chat_template)
            tokenizer.chat_template = template.read_text() if template.suffix == ".jinja" else config.chat_template
        return make_sampler(
            config.backend, config.model_name_or_path, tokenizer, batch_size=config.batch_size,
            tensor_parallel_size=config.tensor_parallel_size, data_parallel_size=config.data_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
            seed=config.seed, **extra,
        )
    except OSError as e:  # transformers' message names neither the option nor the fix
        raise ConfigError(f"model_name_or_path {config.model_name_or_path!r}: not a model folder here and not "
                          f"loadable from the Hub ({str(e).splitlines()[0]})") from e
