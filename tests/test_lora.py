"""LoRA through peft in every training stage: only the adapter learns, the merged hand-off is base +
adapter, checkpoints resume, bad target names are refused with the model's layer names."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback

from r1_recipe import lora, stage
from r1_recipe.configs import ConfigError, SFTStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data import preferences as prefs
from r1_recipe.data.loading import write_jsonl
from r1_recipe.lora import ADAPTER_CONFIG, linear_layer_names

LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
BLOCK_LINEARS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def _write(tmp_path, name, recipe) -> list[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return ["--config", str(path)]


def _sft_recipe(tmp_path, model, data, **over):
    return _write(tmp_path, "sft", {
        "model_name_or_path": str(model), "output_dir": str(tmp_path / "sft"),
        "dataset_mixture": [{"path": str(data / "cold_start.jsonl")}], "max_train_samples": 64,
        "per_device_train_batch_size": 8, "learning_rate": 1e-2, "max_length": 96, "max_steps": 3,
        "logging_steps": 1, "save_steps": 3, "report_to": "none", "seed": 0, **LORA, **over})


class _Snapshot(TrainerCallback):
    """The trained model's named parameters before the first and after the last step."""

    def __init__(self):
        self.before, self.after, self.trainable = None, None, set()

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kw):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_only_adapter_changed(snap: _Snapshot, must_change=("lora_",)):
    changed = {n for n in snap.before if not torch.equal(snap.before[n], snap.after[n])}
    frozen = [n for n in snap.before if "lora_" not in n and "modules_to_save" not in n]
    assert frozen and all(torch.equal(snap.before[n], snap.after[n]) for n in frozen)  # bit-identical base
    assert changed <= snap.trainable
    for key in must_change:
        assert any(key in n for n in changed), key


def _snapshot(trainer_cls, monkeypatch) -> _Snapshot:
    """A parameter snapshot callback attached to every ``trainer_cls`` built during the test."""
    snap = _Snapshot()
    original = trainer_cls.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.add_callback(snap)

    monkeypatch.setattr(trainer_cls, "__init__", init)
    return snap


def test_default_targets_are_the_block_linears(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert linear_layer_names(model) == BLOCK_LINEARS  # no lm_head


def test_a_target_the_model_lacks_is_an_error_listing_its_linear_layers(tmp_path, tiny_model_dir, demo_data_dir):
    from r1_recipe.sft import train

    config = parse_config(SFTStageConfig, _sft_recipe(tmp_path, tiny_model_dir, demo_data_dir,
                                                      lora_target_modules=["q_proj", "query_key_value"]))
    with pytest.raises(ConfigError, match="query_key_value is not a linear layer.*down_proj, gate_proj, k_proj"):
        train(config)


def test_load_in_4bit_is_refused_on_cpu(tmp_path, tiny_model_dir, demo_data_dir):
    if torch.cuda.is_available():
        pytest.skip("CPU-only refusal")
    with pytest.raises(ConfigError, match="load_in_4bit: QLoRA needs a CUDA GPU"):
        parse_config(SFTStageConfig, _sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, load_in_4bit=True))


def test_lora_sft_trains_only_the_adapter_and_hands_off_base_plus_adapter(tmp_path, tiny_model_dir, demo_data_dir,
                                                                        monkeypatch):
    from r1_recipe import sft

    snap = _snapshot(sft.WeightedSFTTrainer, monkeypatch)
    results = sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir))
    _assert_only_adapter_changed(snap)
    assert results["peft"]["merged"] is True and results["peft"]["target_modules"] == BLOCK_LINEARS
    out = tmp_path / "sft"
    assert not (out / ADAPTER_CONFIG).exists() and (out / "model.safetensors").exists()  # an ordinary folder
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with_adapter = PeftModel.from_pretrained(base, str(out / "checkpoint-3")).eval()  # the last step's adapter
    ids = torch.randint(0, merged.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = with_adapter(ids).logits, merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
    assert (expected - plain).abs().max() > 1e-3  # the adapter did something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_unmerged_adapter_is_handed_on_and_the_next_stage_records_both(tmp_path, tiny_model_dir, demo_data_dir):
    from r1_recipe import sft

    sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, merge_adapter=False, save_strategy="no"))
    adapter = tmp_path / "sft"
    assert (adapter / ADAPTER_CONFIG).exists() and not (adapter / "model.safetensors").exists()
    nxt = tmp_path / "next"
    nxt.mkdir()
    results = sft.main(_sft_recipe(nxt, adapter, demo_data_dir, use_peft=False, max_steps=1, save_strategy="no"))
    assert results["base_model"] == str(tiny_model_dir) and results["adapter"] == str(adapter)
    assert "peft" not in results
    AutoModelForCausalLM.from_pretrained(nxt / "sft")  # full fine-tune of base + adapter: an ordinary folder


def test_a_lora_checkpoint_resumes_from_its_step(tmp_path, tiny_model_dir, demo_data_dir):
    from r1_recipe import sft

    first = sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, max_steps=2, save_steps=2))
    assert first["global_step"] == 2 and (tmp_path / "sft" / "checkpoint-2" / ADAPTER_CONFIG).exists()
    second = sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, max_steps=4, save_steps=2))
    assert second["resumed_from"].endswith("checkpoint-2") and second["global_step"] == 4
    state = json.loads((tmp_path / "sft" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]


def _digits():
    from r1_recipe.rewards.base import named, texts

    return named(lambda completions, **kw: [sum(c.isdigit() for c in t) / max(1, len(t)) + len(t) % 3
                                            for t in texts(completions)], "digits_spread")


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_lora_grpo_trains_only_the_adapter_and_uses_the_disabled_adapter_as_reference(
        tmp_path, tiny_model_dir, monkeypatch, beta):
    from r1_recipe import grpo
    from r1_recipe.rewards import REWARDS

    monkeypatch.setitem(REWARDS, "digits_spread", _digits)
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(arithmetic.generate(32, seed=1), prompts)
    snap = _snapshot(grpo.AhaGRPOTrainer, monkeypatch)
    seen = {}
    original = grpo.AhaGRPOTrainer.train

    def train(self, *a, **kw):
        seen["ref_model"], seen["beta"] = self.ref_model, self.beta
        return original(self, *a, **kw)

    monkeypatch.setattr(grpo.AhaGRPOTrainer, "train", train)
    args = _write(tmp_path, "rl", {
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "rl"),
        "dataset_mixture": [{"path": str(prompts)}], "reward_funcs": ["digits_spread"], "num_generations": 4,
        "per_device_train_batch_size": 8, "max_completion_length": 8, "learning_rate": 1e-2, "max_steps": 2,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 0, "beta": beta, **LORA})
    results = grpo.train(parse_config(grpo.GRPOStageConfig, args))
    _assert_only_adapter_changed(snap)
    assert seen["ref_model"] is None and seen["beta"] == beta  # no second model: the base, adapter disabled
    log = [e for e in json.loads((tmp_path / "rl" / "trainer_state.json").read_text())["log_history"] if "kl" in e]
    if beta:  # step 1: the policy is still the base (LoRA's B starts at 0); step 2: it has moved off it
        assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6) and log[1]["kl"] > 1e-6
    assert results["peft"]["merged"] and AutoModelForCausalLM.from_pretrained(tmp_path / "rl")


def test_lora_reward_model_trains_its_score_head_and_scores_after_merging(tmp_path, tiny_model_dir, monkeypatch):
    from trl import RewardTrainer

    from r1_recipe import reward_model

    write_jsonl(prefs.preference_pairs(128, "helpful", split="train"), tmp_path / "train.jsonl")
    snap = _snapshot(RewardTrainer, monkeypatch)
    seen = {}
    args = _write(tmp_path, "rm", {
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "rm"),
        "dataset_mixture": [{"path": str(tmp_path / "train.jsonl")}], "max_steps": 3,
        "per_device_train_batch_size": 8, "learning_rate": 1e-2, "max_length": 64, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "seed": 0, **LORA})
    ids = torch.randint(3, 100, (3, 12), generator=torch.Generator().manual_seed(1))

    def save_after_scoring(trainer, config):  # the trained base + adapter's scores, just before the merge
        with torch.no_grad():
            seen["scores"] = trainer.model.eval()(ids).logits.clone()
        lora.save_model(trainer, config)

    monkeypatch.setattr(stage, "save_stage_model", save_after_scoring)
    results = reward_model.train(parse_config(reward_model.RewardModelStageConfig, args))
    assert "score" in results["peft"]["modules_to_save"]
    _assert_only_adapter_changed(snap, must_change=("lora_", "modules_to_save"))
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, seen["scores"], atol=1e-5, rtol=0)
    base_head = load_file(tiny_model_dir / "model.safetensors")
    assert "score.weight" not in base_head  # the head is new, trained in full, and saved in the merged folder


def test_lora_sequence_distillation_trains_only_the_student_adapter(tmp_path, tiny_model_dir, demo_data_dir,
                                                                  monkeypatch):
    from r1_recipe import distill, sft

    snap = _snapshot(sft.WeightedSFTTrainer, monkeypatch)
    args = _write(tmp_path, "distill", {
        "model_name_or_path": str(tiny_model_dir), "teacher_model_name_or_path": str(tiny_model_dir),
        "output_dir": str(tmp_path / "out"), "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}],
        "max_train_samples": 32, "max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "max_length": 96, **LORA})
    results = distill.main(args)
    _assert_only_adapter_changed(snap)
    assert results["peft"]["merged"]
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


def test_grpo_from_an_unmerged_adapter_takes_base_plus_adapter_as_its_reference(tmp_path, tiny_model_dir,
                                                                               demo_data_dir):
    """The reference is the starting policy: KL 0 at step 1 (it was the bare base: KL > 0)."""
    from r1_recipe import grpo, sft

    sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, merge_adapter=False, save_strategy="no"))
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(arithmetic.generate(16, seed=1), prompts)
    results = grpo.main(_write(tmp_path, "rl", {
        "model_name_or_path": str(tmp_path / "sft"), "output_dir": str(tmp_path / "rl"),
        "dataset_mixture": [{"path": str(prompts)}], "reward_funcs": ["format"], "num_generations": 4,
        "per_device_train_batch_size": 8, "max_completion_length": 8, "learning_rate": 1e-6, "max_steps": 1,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 0, "beta": 0.1}))
    log = [e for e in json.loads((tmp_path / "rl" / "trainer_state.json").read_text())["log_history"] if "kl" in e]
    assert results["adapter"] == str(tmp_path / "sft")
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-5)


def test_a_merged_save_removes_the_adapter_an_earlier_run_left_in_the_folder(tmp_path, tiny_model_dir,
                                                                            demo_data_dir):
    from r1_recipe import sft

    sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, merge_adapter=False, save_strategy="no",
                         resume=False))
    out = tmp_path / "sft"
    assert lora.is_adapter_folder(out)
    sft.main(_sft_recipe(tmp_path, tiny_model_dir, demo_data_dir, merge_adapter=True, save_strategy="no",
                         resume=False, learning_rate=5e-2))
    assert not lora.is_adapter_folder(out) and not (out / "adapter_model.safetensors").exists()
    ids = torch.arange(3, 20).unsqueeze(0)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # the merged weights, not the stale adapter
    on_disk = load_file(out / "model.safetensors")
    name = next(k for k in on_disk if k.endswith("q_proj.weight"))
    assert torch.equal(merged.state_dict()[name], on_disk[name])
    with torch.no_grad():
        assert (merged(ids).logits - AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits).abs().max() > 1e-3


def test_qlora_stores_its_4bit_weights_in_the_compute_dtype_so_fsdp_can_shard_them(monkeypatch):
    """FSDP flattens one dtype: packed uint8 (bitsandbytes' default storage) beside bf16 adapters cannot be."""
    import sys
    import types
    from types import SimpleNamespace

    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))  # not installed on CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)
    quant = lora.quantization_kwargs(SimpleNamespace(load_in_4bit=True))["quantization_config"]
    assert quant.bnb_4bit_quant_storage == torch.bfloat16 == quant.bnb_4bit_compute_dtype
