"""Loading a stage's output folder: the one function every stage, tool and reward goes through.

A stage hands the next one its ``output_dir``. That folder is an ordinary model folder (the
default), or, with ``merge_adapter: false``, a LoRA adapter folder whose ``adapter_config.json``
names the base. :func:`load_folder` loads either kind as an ordinary in-memory model, so a reward
model scorer, a distillation teacher or the transformers sampler cannot tell them apart; vLLM,
which loads a path its own way, gets :func:`refuse_adapter_folder` instead (one line: merge it).

Two hand-offs that would silently lose training are handled here, once:

- QLoRA: peft's ``Linear4bit.merge`` re-quantizes ``W + ΔW`` to NF4, and a LoRA delta is far
  below one NF4 step, so merging into a 4-bit base throws the training away.
  :func:`merge_adapter` dequantizes each adapted layer first and merges into the full-precision
  copy; an adapter folder's base is always loaded in full precision for the same reason.
- FSDP with ``fsdp_cpu_ram_efficient_loading`` (``accelerate_configs/fsdp.yaml``): accelerate
  exports ``FSDP_CPU_RAM_EFFICIENT_LOADING=true`` and transformers then fills every
  ``from_pretrained`` with zeros on local ranks other than 0, expecting FSDP to broadcast rank 0's
  weights. Only the trained policy is broadcast; a model loaded beside it (reward model, teacher,
  GRPO's reference) must be loaded with :func:`every_rank_loads_weights`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from r1_recipe.data.errors import ConfigError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")
EFFICIENT_LOADING_ENV = "FSDP_CPU_RAM_EFFICIENT_LOADING"


def is_adapter_folder(path: str | Path) -> bool:
    return Path(path, ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (peft's ``base_model_name_or_path``)."""
    base = json.loads(Path(path, ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{Path(path, ADAPTER_CONFIG)}: no base_model_name_or_path; point model_name_or_path at a "
                          "model folder, or write the base's folder or Hub id into that key")
    return base


def refuse_adapter_folder(path: str | Path, who: str) -> None:
    """One-line refusal for a loader that cannot apply an adapter itself (vLLM)."""
    if is_adapter_folder(path):
        raise ConfigError(f"{path} is an unmerged LoRA adapter folder, which {who} cannot load: run the stage that "
                          "wrote it with merge_adapter: true (the default), or merge it into its base first")


@contextlib.contextmanager
def every_rank_loads_weights() -> Iterator[None]:
    """``from_pretrained`` inside this block reads the real weights on every rank, even under FSDP's
    CPU-RAM-efficient loading (whose zeros only the prepared policy gets broadcast over)."""
    old = os.environ.get(EFFICIENT_LOADING_ENV)
    os.environ[EFFICIENT_LOADING_ENV] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(EFFICIENT_LOADING_ENV, None)
        else:
            os.environ[EFFICIENT_LOADING_ENV] = old


def is_quantized_layer(layer: nn.Module) -> bool:
    """bitsandbytes 4/8-bit (``Params4bit``/``Int8Params`` weights) or HQQ-style (``W_q``) layers."""
    weight = getattr(layer, "weight", None)
    return hasattr(layer, "W_q") or type(weight).__name__ in ("Params4bit", "Int8Params")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def merge_adapter(peft_model) -> nn.Module:
    """``peft_model`` with its adapter merged into full-precision weights.

    Each adapted layer whose base is quantized becomes a plain ``nn.Linear`` holding
    ``dequantize(W) + ΔW`` (peft's own merge would re-quantize the sum, losing ΔW); the rest is
    peft's ``merge_and_unload``, and base layers that carry no adapter are dequantized last.
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    for name, module in list(peft_model.named_modules()):
        if not isinstance(module, LoraLayer) or not is_quantized_layer(module.get_base_layer()):
            continue
        base = module.get_base_layer()
        weight = dequantize_module_weight(base).float()
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter).float()
        # the dtype the layer computes in (bitsandbytes' compute_dtype), else the embeddings'
        dtype = getattr(base, "compute_dtype", None) or peft_model.get_input_embeddings().weight.dtype
        plain = nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None, device=weight.device,
                          dtype=dtype)
        plain.weight.data.copy_(weight.to(dtype))
        if base.bias is not None:
            plain.bias.data.copy_(base.bias.data.to(dtype))
        _replace(peft_model, name, plain)
    merged = peft_model.merge_and_unload()
    if getattr(merged, "is_quantized", False) or getattr(merged, "quantization_method", None):
        merged = merged.dequantize()
    return merged


def _score_labels(folder: Path) -> int | None:
    """Rows of the score head an adapter folder saved in full (a reward model's ``modules_to_save``)."""
    from safetensors import safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), "pt") as f:
        for key in f.keys():
            if key.rsplit(".", 2)[-2:] == ["score", "weight"] or key.endswith("score.weight"):
                return f.get_slice(key).get_shape()[0]
    return None


def load_folder(model_class, folder: str | Path, **kwargs):
    """``model_class.from_pretrained(folder)`` for either kind of stage folder.

    An adapter folder loads its base in full precision (a ``quantization_config`` is dropped),
    applies the adapter and merges it: an ordinary model. Its ``config._name_or_path`` stays the
    base's, a folder vLLM can start from; a library that reloads "the same model" by that name
    must be pointed at ``folder`` (see :func:`trl_reference_through_load_folder`).
    """
    if not is_adapter_folder(folder):
        return model_class.from_pretrained(folder, **kwargs)
    from peft import PeftModel

    base_path = adapter_base(folder)
    logger.info("%s holds a LoRA adapter: loading its base %s and merging the adapter", folder, base_path)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("quantization_config", "revision")}
    if model_class.__name__.endswith("SequenceClassification") and "num_labels" not in kwargs:
        labels = _score_labels(Path(folder))
        if labels is not None:
            kwargs["num_labels"] = labels
    base = model_class.from_pretrained(base_path, **kwargs)
    merged = merge_adapter(PeftModel.from_pretrained(base, str(folder)))
    return merged.requires_grad_(True)  # peft froze the base; the caller decides what trains


def load_beside_policy(model_class, folder: str | Path, **kwargs):
    """A model loaded next to the trained policy (reward model, teacher, reference): either kind of
    folder, with its real weights on every rank (see :func:`every_rank_loads_weights`)."""
    with every_rank_loads_weights():
        return load_folder(model_class, folder, **kwargs)


@contextlib.contextmanager
def trl_reference_through_load_folder(policy_folder: str | Path | None) -> Iterator[None]:
    """Inside this block TRL's GRPO trainer builds its reference model from ``policy_folder`` (the
    folder the policy was loaded from) with :func:`load_beside_policy`.

    TRL reloads the reference by the policy's ``config._name_or_path``: for a policy loaded from an
    adapter folder that is the bare base (the adapter is then missing from the reference; the
    policy keeps that name so vLLM, which starts from the same name, gets a loadable folder). Under
    FSDP's efficient loading TRL's own load would also be zeros on every rank but 0.
    """
    from transformers import AutoModelForCausalLM
    from trl.trainer import grpo_trainer

    original = grpo_trainer.create_model_from_path

    def create(model_id: str, architecture=None, **kwargs):
        if policy_folder is None or not is_adapter_folder(policy_folder):
            with every_rank_loads_weights():
                return original(model_id, architecture, **kwargs)
        kwargs.pop("device_map", None)  # base + adapter merge in memory; the trainer places the model
        return load_beside_policy(architecture or AutoModelForCausalLM, policy_folder, **kwargs)

    grpo_trainer.create_model_from_path = create
    try:
        yield
    finally:
        grpo_trainer.create_model_from_path = original
