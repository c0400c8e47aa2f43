"""Issue 15.13: token budgets beyond the model's positions are refused from its config alone.

The model folders here hold a ``config.json`` and nothing else (no tokenizer, no weights): a
stage that got as far as loading anything else would fail with another message, so each test
also shows the check runs first, as it must to be cheap on a 7B model.
"""

from __future__ import annotations

import logging

import pytest
import yaml
from transformers import Qwen2Config

from r1_recipe.configs import ConfigError, GRPOStageConfig, SFTStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.evaluate import EvalConfig, evaluate_all
from r1_recipe.grpo import train as grpo_train
from r1_recipe.rejection_sampling import RejectionSamplingConfig
from r1_recipe.rejection_sampling import run as rejection_run
from r1_recipe.sft import main as sft_main


def _config_only(path, positions: int = 4096, **kw):
    """A model folder holding only a config (by default Qwen/Qwen2.5-Math-1.5B's 4096 positions)."""
    Qwen2Config(max_position_embeddings=positions, **kw).save_pretrained(path)
    return str(path)


@pytest.fixture
def math_1p5b(tmp_path):
    return _config_only(tmp_path / "Qwen2.5-Math-1.5B")


@pytest.fixture
def prompts(tmp_path):
    write_jsonl(arithmetic.generate(4, seed=0), tmp_path / "p.jsonl")
    return str(tmp_path / "p.jsonl")


def _recipe(tmp_path, **values) -> list[str]:
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "report_to": "none",
                                                      **values}))
    return ["--config", str(tmp_path / "r.yaml")]


def test_sft_refuses_max_length_beyond_the_positions_before_loading_anything(tmp_path, math_1p5b, prompts):
    argv = _recipe(tmp_path, model_name_or_path=math_1p5b, dataset_mixture=[{"path": prompts}], max_length=16384)
    with pytest.raises(ConfigError) as e:
        sft_main(argv)
    message = str(e.value)
    for part in ("max_length: 16384", "4096 positions", "max_position_embeddings", "131072", "model_name_or_path"):
        assert part in message, part


def test_grpo_refuses_max_completion_length_beyond_the_positions(tmp_path, math_1p5b, prompts):
    config = parse_config(GRPOStageConfig, _recipe(
        tmp_path, model_name_or_path=math_1p5b, dataset_mixture=[{"path": prompts}], max_completion_length=8192,
        num_generations=2, per_device_train_batch_size=2))
    with pytest.raises(ConfigError, match=r"max_completion_length: 8192 is beyond the 4096 positions"):
        grpo_train(config)


def test_evaluation_refuses_a_default_budget_beyond_the_positions(tmp_path, math_1p5b):
    write_jsonl([{"problem": "1+1?", "answer": "2"}], tmp_path / "math500.jsonl")
    config = EvalConfig(model_name_or_path=math_1p5b, benchmark=f"math_500={tmp_path / 'math500.jsonl'}",
                        backend="transformers")
    with pytest.raises(ConfigError, match=r"max_new_tokens: 32768 \(the math_500 default\) is beyond the 4096"):
        evaluate_all(config)
    config.max_new_tokens = 4096  # within the positions: the check passes, the (absent) weights fail to load
    with pytest.raises(ConfigError, match="not a model folder"):
        evaluate_all(config)


def test_rejection_sampling_refuses_its_budget_beyond_the_positions(tmp_path, math_1p5b, prompts):
    config = RejectionSamplingConfig(model_name_or_path=math_1p5b, dataset_mixture=[{"path": prompts}],
                                     output_dir=str(tmp_path / "rej"), backend="transformers")
    with pytest.raises(ConfigError, match=r"max_new_tokens: 32768 is beyond the 4096 positions"):
        rejection_run(config)


def test_yarn_scaling_extends_the_limit_and_trl_defaults_are_lowered(tmp_path, caplog):
    from r1_recipe.configs import check_context_length

    yarn = _config_only(tmp_path / "yarn", rope_scaling={"type": "yarn", "factor": 4.0,
                                                         "original_max_position_embeddings": 4096})
    config = SFTStageConfig(model_name_or_path=yarn, output_dir=str(tmp_path / "o"), max_length=16384)
    check_context_length(config, ["max_length"])  # 4 × 4096 positions: allowed
    config.max_length = 16385
    with pytest.raises(ConfigError, match="16384 positions"):
        check_context_length(config, ["max_length"])
    small = _config_only(tmp_path / "small", positions=512)
    config = SFTStageConfig(model_name_or_path=small, output_dir=str(tmp_path / "o"))  # TRL's default 1024
    with caplog.at_level(logging.WARNING):
        check_context_length(config, ["max_length"])
    assert config.max_length == 512 and "default 1024" in caplog.text
