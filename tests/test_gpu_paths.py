"""The GPU code paths, checked on CPU against the real accelerate / transformers objects (issue 20):
FSDP saves one full state dict at the end of a stage, parameter counts see through ZeRO-3's
partitioning, and the deepspeed extra asks for what TRL itself needs."""

from __future__ import annotations

import os
import re
from importlib.metadata import requires
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from r1_recipe.stage import full_state_dict_for_final_save, parameter_count

ROOT = Path(__file__).resolve().parents[1]


# --- item 4: FSDP's final save ------------------------------------------------------------------


def test_fsdp_config_reaches_the_plugin_as_a_full_state_dict():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(ROOT / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "8", "train.py"])
    with mock.patch("torch.cuda.is_available", return_value=True), mock.patch("torch.cuda.device_count", return_value=8):
        args, _, _ = _validate_launch_command(args)
        env = prepare_multi_gpu_env(args)
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith(("FSDP_", "ACCELERATE_"))}):
        plugin = FullyShardedDataParallelPlugin()
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


def _fsdp_trainer(state_dict_type: str):
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type=state_dict_type)
    return SimpleNamespace(is_fsdp_enabled=True, accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)))


def test_a_sharded_fsdp_run_still_saves_its_stage_model_as_a_full_state_dict():
    """A user's own FSDP config with SHARDED_STATE_DICT: checkpoints stay sharded, the final save
    (which transformers' save_model skips for a sharded type) becomes full, with full configs."""
    from torch.distributed.fsdp import FullStateDictConfig

    trainer = _fsdp_trainer("SHARDED_STATE_DICT")
    full_state_dict_for_final_save(trainer)
    plugin = trainer.accelerator.state.fsdp_plugin
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert isinstance(plugin.state_dict_config, FullStateDictConfig) and plugin.state_dict_config.rank0_only
    full_state_dict_for_final_save(SimpleNamespace(is_fsdp_enabled=False))  # ddp / deepspeed: nothing to do


# --- item 6: parameter counts under ZeRO-3 -----------------------------------------------------


def test_parameter_count_reads_zero3_partitioned_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2, bias=False))
    assert parameter_count(model) == 4 * 3 + 3 + 3 * 2
    for p in model.parameters():  # what deepspeed.zero.Init leaves on each rank: an empty tensor + ds_numel
        p.ds_numel = p.numel()
        p.data = torch.empty(0)
    assert sum(p.numel() for p in model.parameters()) == 0  # the count distillation used to log
    assert parameter_count(model) == 21


# --- item 11: the deepspeed extra --------------------------------------------------------------


def _minimum(requirement: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.search(r">=\s*([\d.]+)", requirement).group(1).split("."))


def test_deepspeed_extra_asks_for_at_least_what_trl_requires():
    trl_needs = [r for r in requires("trl") if r.startswith("deepspeed") and 'extra == "deepspeed"' in r]
    assert trl_needs, "TRL's metadata no longer lists a deepspeed extra"
    source = (ROOT / "setup.py").read_text()
    (ours,) = re.findall(r'"deepspeed":\s*\[\s*"(deepspeed[^"]*)"', source)
    assert _minimum(ours) >= _minimum(trl_needs[0]), (ours, trl_needs[0])


# --- item 3: reward models under ZeRO-3 --------------------------------------------------------


class _Zero3Config:
    """What TrainingArguments registers with transformers under a ZeRO-3 accelerate config (the
    real HfTrainerDeepSpeedConfig needs deepspeed installed): from_pretrained asks it ``is_zero3()``."""

    config = {"zero_optimization": {"stage": 3}}

    def is_zero3(self) -> bool:
        return True


@pytest.fixture
def zero3_live():
    from transformers.integrations import deepspeed as hf_deepspeed

    live = _Zero3Config()
    hf_deepspeed.set_hf_deepspeed_config(live)
    try:
        yield live
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()


@pytest.fixture(scope="module")
def tiny_rm_loaded(tiny_rm):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm)
    return tiny_rm, model.eval()


def test_reward_model_loads_full_weights_while_a_zero3_config_is_live(tiny_rm_loaded, zero3_live):
    """Built after the GRPO config exists (as RL stage 2 builds its rewards), the scorer must not go
    through zero.Init: it loads every weight, scores like a plain load, and leaves ZeRO-3 on for the policy."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from r1_recipe.rewards.model import RewardModelScorer

    path, saved = tiny_rm_loaded  # loaded before the ZeRO-3 config went live
    scorer = RewardModelScorer(path, device="cpu")
    assert is_deepspeed_zero3_enabled(), "the policy's ZeRO-3 switch was not restored"
    for (name, p), q in zip(scorer.model.named_parameters(), saved.parameters()):
        assert p.numel() == q.numel() > 0 and torch.equal(p, q), name
    pairs = [("What is 2+2?", "4"), ("Name a colour.", "blue")]
    batch = scorer.tokenizer.pad({"input_ids": [scorer.encode(p, r) for p, r in pairs]}, return_tensors="pt")
    with torch.no_grad():
        expected = saved(**batch).logits.float()[:, 0].tolist()
    assert scorer.score(pairs) == pytest.approx(expected, abs=1e-5)


def test_reward_model_goes_on_this_processs_gpu():
    from r1_recipe.rewards.model import default_device

    with mock.patch("torch.cuda.is_available", return_value=True), mock.patch.dict(os.environ, {"LOCAL_RANK": "3"}):
        assert default_device() == "cuda:3"
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert default_device() == "cpu"


# --- benchmarks/gpu_check.py: the checks the GPU script relies on -------------------------------


def _gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_verify_refuses_an_untrained_output_and_the_table_reads_results(tmp_path, tiny_model_dir, capsys):
    import json
    import shutil

    from transformers import AutoModelForCausalLM

    check = _gpu_check()
    run = tmp_path / "sft-zero3"
    shutil.copytree(tiny_model_dir, run)
    results = {"model_name_or_path": str(tiny_model_dir), "global_step": 4, "wall_seconds": 8.0,
               "peak_gpu_memory_gib": 3.5}
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="equal the base's"):
        check.verify(run)  # what a save that wrote nothing new (or the base) looks like
    model = AutoModelForCausalLM.from_pretrained(run)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(run)
    check.verify(run)
    (run / "STATUS").write_text("ok\n")
    check.table(tmp_path)
    assert "| sft | zero3 | ok | 4 | 0.50 | 3.5 |  |" in capsys.readouterr().out


def _adam_steps(base: dict, lr: float, steps: int, *, master: bool) -> dict:
    """``steps`` sign-steps of size ``lr`` (AdamW's first steps), on an fp32 master copy saved in the
    weights' dtype, or on the 16-bit weights themselves (DDP on bf16 weights)."""
    torch.manual_seed(1)
    out = {}
    for name, w in base.items():
        direction = torch.sign(torch.randn(w.shape))
        if master:
            out[name] = (w.float() - lr * steps * direction).to(w.dtype)
        else:
            for _ in range(steps):
                w = (w.float() - lr * direction).to(w.dtype)
            out[name] = w
    return out


@pytest.mark.parametrize("lr", [1e-5, 1e-6])
def test_gpu_check_sees_updates_that_16_bit_weights_round_away(lr):
    check = _gpu_check()
    torch.manual_seed(0)
    base = {f"model.layers.{i}.mlp.up_proj.weight": (torch.randn(256, 256) * 0.02).to(torch.bfloat16) for i in range(2)}
    kept = check.update_check(_adam_steps(base, lr, 2, master=True), base, lr, 2)
    lost = check.update_check(_adam_steps(base, lr, 2, master=False), base, lr, 2)
    full = check.update_check({k: v.float() - lr for k, v in base.items()}, base, lr, 2)
    assert kept[0] >= check.MOVED_SHARE_FLOOR * kept[1]  # ZeRO: an fp32 master, saved in bf16
    assert 0 < lost[0] < check.MOVED_SHARE_FLOOR * lost[1]  # some weights moved: "a tensor changed" passes
    assert full == (1.0, 1.0)  # fp32 weights: every one moves


def test_gpu_check_on_a_machine_python_names_what_is_missing(tmp_path):
    import subprocess
    import sys

    bare = tmp_path / "python3"  # a Python without the packages: the interpreter, no site-packages
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "VENV"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**env, "PYTHON": str(bare), "CONFIGS": "ddp zero3"})
    assert result.returncode == 2
    assert "lacks torch, transformers, accelerate, peft, trl" in result.stderr and "deepspeed" in result.stderr
    assert "no CUDA device" not in result.stderr


# --- DDP on 16-bit weights: no fp32 master copy (issue 34) ---------------------------------------

RL1_RECIPE = ROOT / "recipes" / "Qwen2.5-1.5B" / "rl1" / "config_node.yaml"  # dtype bfloat16, lr 1e-6


@pytest.mark.parametrize("env, over, expected", [
    ({}, [], "float32"),  # the Makefile's default launcher (ddp) or one process: fp32 master weights
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, [], "bfloat16"),  # ZeRO keeps its own fp32 copy
    ({"ACCELERATE_USE_FSDP": "true"}, [], "bfloat16"),  # FSDP2 upcasts
    ({}, ["--use_peft", "true"], "bfloat16"),  # only the (fp32) adapter trains
])
def test_a_gpu_run_of_a_bf16_recipe_keeps_fp32_weights_where_the_launcher_does_not(monkeypatch, env, over, expected):
    from r1_recipe.configs import GRPOStageConfig, parse_config

    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    config = parse_config(GRPOStageConfig, ["--config", str(RL1_RECIPE), *over])
    assert config.dtype == "bfloat16" and config.learning_rate == 1e-6  # the shipped recipe's values
    for key, value in env.items():  # what `accelerate launch --config_file accelerate_configs/<x>.yaml` exports
        monkeypatch.setenv(key, value)
    assert config.weights_dtype(cuda=True) == expected
    assert config.weights_dtype(cuda=False) == "float32"


def _bf16_step_recipe(tmp_path, model_dir, out: str):
    from r1_recipe.data import arithmetic
    from r1_recipe.data.loading import write_jsonl

    write_jsonl(arithmetic.generate(16, seed=0), tmp_path / "rows.jsonl")
    recipe = tmp_path / f"{out}.yaml"
    recipe.write_text(yaml_dump({
        "model_name_or_path": str(model_dir), "output_dir": str(tmp_path / out), "dtype": "bfloat16",
        "dataset_mixture": [{"path": str(tmp_path / "rows.jsonl")}], "max_steps": 1, "learning_rate": 1e-6,
        "per_device_train_batch_size": 2, "max_length": 64, "save_strategy": "no", "report_to": "none",
        "logging_steps": 1, "seed": 0, "resume": False}))
    return recipe


def yaml_dump(data) -> str:
    import yaml

    return yaml.safe_dump(data)


def _moved_share(saved_dir, base_dir) -> float:
    from safetensors.torch import load_file

    saved, base = load_file(str(saved_dir / "model.safetensors")), load_file(str(base_dir / "model.safetensors"))
    names = [k for k in saved if ".layers." in k and saved[k].dim() == 2]
    moved = sum((saved[k].float() != base[k].float()).sum().item() for k in names)
    return moved / sum(saved[k].numel() for k in names)


@pytest.fixture
def bf16_base(tmp_path, tiny_model_dir):
    """The tiny model stored in bf16, as every GPU recipe's checkpoint is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tmp_path / "bf16_base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base)
    return base


def test_a_1e6_adamw_step_survives_in_the_weights_a_gpu_ddp_run_loads(tmp_path, bf16_base, monkeypatch):
    """One process: the dtype decision, then the step. On bf16 weights the same step rounds away."""
    from transformers import AutoModelForCausalLM

    from r1_recipe.configs import SFTStageConfig, parse_config
    from r1_recipe.sft import WeightedSFTTrainer, build_dataset
    from r1_recipe.stage import load_tokenizer

    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    shares = {}
    for name in ("fp32", "bf16"):
        config = parse_config(SFTStageConfig, ["--config", str(_bf16_step_recipe(tmp_path, bf16_base, name))])
        dtype = config.weights_dtype(cuda=True) if name == "fp32" else "bfloat16"  # bf16: what a GPU loaded before
        model = AutoModelForCausalLM.from_pretrained(bf16_base, dtype=getattr(torch, dtype))
        trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=build_dataset(config),
                                     processing_class=load_tokenizer(config))
        trainer.train()
        trainer.save_model(config.output_dir)
        shares[name] = _moved_share(tmp_path / name, bf16_base)
    assert shares["fp32"] > 0.9  # every weight with a gradient moved by ~1e-6
    assert shares["bf16"] < 0.2  # the condition: most of the step rounded away


@pytest.mark.slow
def test_a_1e6_adamw_step_changes_the_saved_weights_on_two_ddp_ranks(tmp_path, bf16_base, monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from _one_step_ranks import launch_two_ranks

    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    record = launch_two_ranks("bf16_step", _bf16_step_recipe(tmp_path, bf16_base, "ddp"), tmp_path / "ddp.pt")
    assert record["dtype"] == "float32"
    assert _moved_share(tmp_path / "ddp", bf16_base) > 0.9
