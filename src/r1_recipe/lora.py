"""LoRA and QLoRA for every training stage, through peft and TRL's own ``peft_config`` argument.

Recipe keys (``r1_recipe.configs.LoraArgs``, shared by SFT, GRPO, reward models and distillation)::

    use_peft: true          # train an adapter, freeze the base
    lora_r: 16
    lora_alpha: 32
    lora_dropout: 0.05
    lora_target_modules: null   # every linear layer of the attention and MLP blocks
    lora_modules_to_save: null  # modules trained in full (a reward model's score head always is)
    load_in_4bit: false     # QLoRA: NF4 base on CUDA (pip install 'r1-recipe[qlora]')
    merge_adapter: true     # write an ordinary model folder; false keeps the adapter folder

This module builds the one ``LoraConfig`` every stage hands to its TRL trainer
(:func:`peft_config_for`); LoRA itself is peft's. Choices, as a careful TRL user would expect:

- Default targets are the leaf names of the ``nn.Linear`` layers inside the decoder blocks
  (``q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`` for Qwen2/Llama): the LM head,
  the embeddings and a reward model's ``score`` are not adapted. A name the model does not have
  is a :class:`ConfigError` listing the model's linear layer names.
- A reward model is a ``SEQ_CLS`` task: its freshly initialised score head is always in
  ``modules_to_save`` (trained in full, saved with the adapter).
- Hand-off (:func:`save_model`): by default the adapter is merged into the weights and the
  stage's ``output_dir`` is an ordinary model folder, so the next stage, vLLM and the evaluator
  need nothing special. With ``merge_adapter: false`` the folder holds the adapter (peft's
  ``adapter_config.json`` names the base); a stage that starts from such a folder loads the
  base, applies the adapter and merges it in memory (:func:`r1_recipe.model_folders.load_folder`,
  the one loader of every stage folder; vLLM refuses such a folder in one line), and its
  ``results.json`` records both (:func:`lineage`). Stacking a second unmerged adapter on an
  unmerged one is refused: its ``adapter_config.json`` could only name one base.
- QLoRA merges into a dequantized copy of the weights, layer by layer, before any merge (peft's
  4-bit merge re-quantizes ``W + ΔW`` and loses ΔW): the hand-off is never 4-bit. QLoRA from an
  unmerged adapter folder is refused (its base would be quantized before the merge).
- A save removes the other kind of weights an earlier run left in ``output_dir`` (a stale
  ``adapter_config.json`` beside merged weights would win over them for every loader).
- Merging needs the whole model on one process: under ZeRO-3 or FSDP set ``merge_adapter:
  false`` (refused otherwise, before training).
- GRPO with ``beta > 0``: TRL computes the reference log-probs with the adapter disabled, so no
  second copy of the model is loaded; vLLM receives merged weights on TRL's sync path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from r1_recipe.configs import ConfigError, RecipeArgs
from r1_recipe.model_folders import ADAPTER_CONFIG  # noqa: F401 - re-exported for the stages' tests
from r1_recipe.model_folders import (
    ADAPTER_FILES,
    MODEL_WEIGHT_FILES,
    adapter_base,
    is_adapter_folder,
    load_folder,
    merge_adapter,
)

logger = logging.getLogger(__name__)

SCORE_HEADS = ("score", "classifier")  # sequence-classification heads of transformers' models


def linear_layer_names(model: nn.Module) -> list[str]:
    """Leaf names of the ``nn.Linear`` layers inside the model's blocks (not its heads)."""
    heads = {"lm_head", *SCORE_HEADS}
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    quantized = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                 if type(module).__name__ in ("Linear4bit", "Linear8bitLt")}
    return sorted((names | quantized) - heads)


def peft_config_for(config: RecipeArgs, model: nn.Module, *, task_type: str = "CAUSAL_LM"):
    """The stage's ``LoraConfig`` (None without ``use_peft``), checked against ``model``'s layers."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    available = linear_layer_names(model)
    targets = list(config.lora_target_modules or available)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"lora_target_modules: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a linear layer of "
            f"{config.model_name_or_path}; its linear layers are {', '.join(available)}")
    to_save = list(config.lora_modules_to_save or [])
    if task_type == "SEQ_CLS":
        to_save += [h for h in SCORE_HEADS if hasattr(model, h) and h not in to_save]
    module_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in to_save if m not in module_names]
    if unknown:
        raise ConfigError(f"lora_modules_to_save: {', '.join(unknown)} not a module of {config.model_name_or_path}")
    logger.info("LoRA r=%d alpha=%d on %s%s", config.lora_r, config.lora_alpha, ", ".join(targets),
                f" (trained in full: {', '.join(to_save)})" if to_save else "")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=to_save or None, task_type=task_type, bias="none")


def quantization_kwargs(config: RecipeArgs) -> dict:
    """``from_pretrained`` keywords for QLoRA's 4-bit base (empty without ``load_in_4bit``)."""
    if not config.load_in_4bit:
        return {}
    try:
        import bitsandbytes  # noqa: F401 - the 4-bit kernels transformers will call
    except ImportError as e:
        raise ConfigError("load_in_4bit needs bitsandbytes: pip install 'r1-recipe[qlora]'") from e
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # quant_storage in the compute dtype: FSDP flattens parameters of one dtype, and packed uint8 4-bit
    # weights beside bf16 LoRA weights cannot be sharded together (QLoRA under FSDP, bitsandbytes' recipe)
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute,
                                                      bnb_4bit_quant_storage=compute)}


def load_pretrained(model_class, config: RecipeArgs, **kwargs):
    """``model_class.from_pretrained`` of the recipe's model: a model folder, or base + adapter."""
    kwargs = {**config.model_kwargs(), **quantization_kwargs(config), **kwargs}
    if is_adapter_folder(config.model_name_or_path):
        if config.use_peft and not config.merge_adapter:
            raise ConfigError(
                f"model_name_or_path {config.model_name_or_path} is an unmerged adapter and this stage would write "
                "another unmerged adapter on top of it: set merge_adapter: true here, or in the previous stage")
        if config.load_in_4bit:
            raise ConfigError(
                f"model_name_or_path {config.model_name_or_path} is an unmerged adapter and load_in_4bit would "
                "quantize its base before the merge: set merge_adapter: true in the previous stage (QLoRA then "
                "quantizes the merged weights)")
    return load_folder(model_class, config.model_name_or_path, **kwargs)


def check_can_merge(trainer, config: RecipeArgs) -> None:
    """Refuse, before training, a merge that needs the whole model on one process."""
    if not (config.use_peft and config.merge_adapter):
        return
    sharded = getattr(trainer, "is_fsdp_enabled", False) or (
        getattr(trainer, "is_deepspeed_enabled", False)
        and getattr(trainer.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3)
    if sharded:
        raise ConfigError("merge_adapter: merging the LoRA adapter needs the whole model on one process, and "
                          "ZeRO-3/FSDP shard it: set merge_adapter: false (the next stage merges base + adapter)")


def is_adapter_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def remove_stale_weights(folder: str | Path, names: tuple[str, ...]) -> None:
    """Delete weight files an earlier run left in ``folder`` that this save will not overwrite
    (a stale ``adapter_config.json`` beside merged weights wins over them for every loader)."""
    for name in names:
        path = Path(folder, name)
        if path.is_file():
            logger.warning("removing %s: left by an earlier run, it would shadow the weights saved now", path)
            path.unlink()


def save_model(trainer, config: RecipeArgs) -> None:
    """Write the stage's weights to ``output_dir``: merged (default) or the adapter alone."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    merging = config.use_peft and config.merge_adapter and hasattr(model, "merge_and_unload")
    if trainer.accelerator.is_main_process:  # a folder holds one kind of weights: the other kind is stale
        remove_stale_weights(config.output_dir, MODEL_WEIGHT_FILES if is_adapter_model(model) and not merging
                             else ADAPTER_FILES)
    if not merging:
        trainer.save_model(config.output_dir)  # every rank: gathers shards under ZeRO-3 / FSDP
        return
    if not trainer.accelerator.is_main_process:
        return
    merge_adapter(model).save_pretrained(config.output_dir)  # QLoRA: into dequantized weights
    logger.info("merged the LoRA adapter into %s", config.output_dir)


def lineage(config: RecipeArgs, model=None) -> dict:
    """What ``results.json`` records about adapters: the one trained here (its target modules read
    from ``model``'s peft config) and the one the stage started from."""
    out: dict = {}
    if is_adapter_folder(config.model_name_or_path):
        out["base_model"] = adapter_base(config.model_name_or_path)
        out["adapter"] = str(config.model_name_or_path)
    if config.use_peft:
        peft = getattr(model, "peft_config", {}).get("default")
        targets = sorted(peft.target_modules) if peft is not None else config.lora_target_modules
        out["peft"] = {"lora_r": config.lora_r, "lora_alpha": config.lora_alpha, "target_modules": targets,
                       "modules_to_save": sorted(peft.modules_to_save or []) if peft is not None else None,
                       "load_in_4bit": config.load_in_4bit, "merged": config.merge_adapter}
    return out
