"""Every load of a stage folder goes through r1_recipe.model_folders (issue 34): an unmerged
reward-model adapter scores like base + adapter, vLLM refuses an adapter folder in one line, a
QLoRA merge keeps the trained delta, and models loaded beside the policy under FSDP's
CPU-RAM-efficient loading hold real weights on ranks other than 0."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import yaml
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from r1_recipe import lora
from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data import preferences as prefs
from r1_recipe.data.loading import write_jsonl
from r1_recipe.model_folders import merge_adapter
from r1_recipe.rewards.model import RewardModelScorer

LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}


@pytest.fixture(scope="module")
def rm_adapter(tmp_path_factory, tiny_model_dir):
    """A reward model trained by the stage with LoRA and ``merge_adapter: false``."""
    from r1_recipe import reward_model

    tmp = tmp_path_factory.mktemp("rm_adapter")
    write_jsonl(prefs.preference_pairs(64, "helpful", split="train"), tmp / "train.jsonl")
    recipe = tmp / "rm.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp / "rm"),
        "dataset_mixture": [{"path": str(tmp / "train.jsonl")}], "max_steps": 2, "per_device_train_batch_size": 8,
        "learning_rate": 5e-2, "max_length": 64, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "seed": 0, "merge_adapter": False, **LORA}))
    reward_model.train(parse_config(reward_model.RewardModelStageConfig, ["--config", str(recipe)]))
    assert lora.is_adapter_folder(tmp / "rm")
    return tmp / "rm"


def test_an_unmerged_reward_model_adapter_scores_as_base_plus_adapter(rm_adapter, tiny_model_dir):
    scorer = RewardModelScorer(str(rm_adapter))
    ids = scorer.encode("What is 2+2?", "It is 4.")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    expected_model = PeftModel.from_pretrained(base, str(rm_adapter)).eval()
    with torch.no_grad():
        got = scorer.model(torch.tensor([ids])).logits
        expected = expected_model(torch.tensor([ids])).logits
    assert got.shape == (1, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_vllm_refuses_an_adapter_folder_in_one_line_saying_to_merge(rm_adapter):
    from r1_recipe.sampling import VLLMSampler

    with pytest.raises(ConfigError, match="unmerged LoRA adapter folder, which vLLM cannot load.*merge_adapter: true"):
        VLLMSampler(str(rm_adapter))


# --- QLoRA: merge into dequantized weights -------------------------------------------------------

STEP = 0.05  # the fake's grid: far coarser than the LoRA delta, as an NF4 step is


def _to_grid(w: torch.Tensor) -> torch.Tensor:
    return torch.round(w / STEP) * STEP


class FakeQuantLinear(nn.Linear):
    """A linear layer stored on a coarse grid; ``W_q`` marks it quantized (as HQQ layers are) and
    ``dequantize`` returns its weight in full precision."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.weight.data = _to_grid(linear.weight.data)
        if linear.bias is not None:
            self.bias.data = linear.bias.data.clone()
        self.W_q = self.weight.detach()  # the "quantized" storage (HQQ layers name it so)

    def dequantize(self) -> torch.Tensor:
        return self.weight.detach().clone()


class FakeQuantLora(LoraLinear):
    """peft's ``Linear4bit.merge`` in miniature: the merged sum is re-quantized to the grid."""

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        for name in adapter_names or self.active_adapters:
            base = self.get_base_layer()
            base.weight.data = _to_grid(base.weight.data + self.get_delta_weight(name))
            self.merged_adapters.append(name)


def _quantized_peft_model(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for name, module in list(model.named_modules()):
        if name.endswith(("q_proj", "v_proj")):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FakeQuantLinear(module))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    config._register_custom_module({FakeQuantLinear: FakeQuantLora})
    peft_model = get_peft_model(model, config)
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=1e-2)  # |ΔW| ~ 1e-3: far below one grid step
    return peft_model.eval()


def test_a_quantized_base_is_dequantized_before_the_adapter_merges(tiny_model_dir, tmp_path):
    ids = torch.arange(3, 40).unsqueeze(0)
    peft_model = _quantized_peft_model(tiny_model_dir)
    with torch.no_grad():
        expected = peft_model(ids).logits
        with peft_model.disable_adapter():
            base_only = peft_model(ids).logits
    assert (expected - base_only).abs().max() > 1e-3  # the adapter matters

    requantized = _quantized_peft_model(tiny_model_dir).merge_and_unload()  # the old order: the delta rounds away
    with torch.no_grad():
        torch.testing.assert_close(requantized(ids).logits, base_only, atol=1e-6, rtol=0)

    trainer = SimpleNamespace(model=peft_model, accelerator=SimpleNamespace(
        unwrap_model=lambda m: m, is_main_process=True))
    lora.save_model(trainer, SimpleNamespace(use_peft=True, merge_adapter=True, output_dir=str(tmp_path / "out")))
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert not any(isinstance(m, FakeQuantLinear) for m in saved.modules())
    with torch.no_grad():
        torch.testing.assert_close(saved(ids).logits, expected, atol=1e-5, rtol=0)


def test_merge_adapter_keeps_unadapted_layers_and_full_precision_weights(tiny_model_dir):
    peft_model = _quantized_peft_model(tiny_model_dir)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    expected = layer.get_base_layer().dequantize() + layer.get_delta_weight("default")
    merged = merge_adapter(peft_model)
    q = merged.model.layers[0].self_attn.q_proj
    assert type(q) is nn.Linear and q.weight.dtype == torch.float32
    torch.testing.assert_close(q.weight.data, expected, atol=1e-7, rtol=0)


def test_qlora_from_an_unmerged_adapter_is_refused(tmp_path, monkeypatch, rm_adapter):
    config = SimpleNamespace(model_name_or_path=str(rm_adapter), use_peft=True, merge_adapter=True, load_in_4bit=True,
                             model_kwargs=dict)
    monkeypatch.setattr(lora, "quantization_kwargs", lambda config: {})
    with pytest.raises(ConfigError, match="load_in_4bit would quantize its base before the merge"):
        lora.load_pretrained(AutoModelForCausalLM, config)


# --- FSDP CPU-RAM-efficient loading: rank 1 of a launcher, one process ---------------------------


@pytest.fixture
def fsdp_rank_1(monkeypatch, tmp_path):
    """The environment ``accelerate launch --config_file accelerate_configs/fsdp.yaml`` gives local
    rank 1 (a one-process gloo group stands in for the launcher's)."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    monkeypatch.setenv("LOCAL_RANK", "1")
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _same_as_files(model, folder) -> bool:
    on_disk = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    return all(torch.equal(state[k].float(), v.float()) for k, v in on_disk.items() if k in state)


def test_fsdp_rank_1_condition_zeroes_a_plain_load(fsdp_rank_1, tiny_model_dir):
    """The condition: a policy load on rank 1 is zeros, waiting for FSDP's broadcast. transformers
    5.17 (what the vllm extra installs) does this; later versions read the weights on every rank."""
    import transformers

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if _same_as_files(model, tiny_model_dir):
        pytest.skip(f"transformers {transformers.__version__} reads real weights on every rank; the zeros "
                    "need transformers 5.17 (the vllm extra's)")
    assert all(not p.any() for p in model.parameters())


def test_under_fsdp_the_reward_model_loads_real_weights_on_rank_1(fsdp_rank_1, tiny_rm):
    from pathlib import Path

    scorer = RewardModelScorer(tiny_rm)
    assert _same_as_files(scorer.model, Path(tiny_rm))
    assert scorer.score([("2+2?", "4"), ("3+3?", "6")]) != [0.0, 0.0]
    assert json.loads((Path(tiny_rm) / "config.json").read_text())["architectures"]  # an ordinary folder


def test_under_fsdp_the_distillation_teacher_loads_real_weights_on_rank_1(fsdp_rank_1, tiny_model_dir,
                                                                          demo_data_dir, tmp_path, monkeypatch):
    from r1_recipe import distill

    seen = {}

    class Stop(Exception):
        pass

    def capture(*args, teacher, **kwargs):
        seen["teacher"] = teacher
        raise Stop

    monkeypatch.setattr(distill, "LogitDistillationTrainer", capture)
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "teacher_model_name_or_path": str(tiny_model_dir),
        "distill_mode": "logit", "output_dir": str(tmp_path / "out"),
        "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}], "max_train_samples": 8,
        "max_steps": 1, "per_device_train_batch_size": 4, "max_length": 64, "report_to": "none"}))
    with pytest.raises(Stop):
        distill.main(["--config", str(recipe)])
    assert _same_as_files(seen["teacher"], tiny_model_dir)


def test_under_fsdp_trl_builds_the_grpo_reference_with_real_weights_on_rank_1(fsdp_rank_1, tiny_model_dir):
    from trl.trainer import grpo_trainer

    from r1_recipe.model_folders import trl_reference_through_load_folder

    with trl_reference_through_load_folder(str(tiny_model_dir)):
        ref = grpo_trainer.create_model_from_path(str(tiny_model_dir), dtype=torch.float32)
    assert _same_as_files(ref, tiny_model_dir)
