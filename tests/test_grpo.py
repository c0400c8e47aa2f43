"""GRPO stage: a real (tiny) run trains and logs every reward; a learnable reward is learned
while a random-reward control is not; sizes fail early; aha metrics; resume continues from the
saved step."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml
from safetensors.torch import load_file

from r1_recipe.configs import ConfigError, GRPOStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.grpo import AhaLogFile, aha_metrics, phrase_pattern, read_aha_log, train
from r1_recipe.rewards import REWARDS
from r1_recipe.rewards.base import named, texts


def _spread():
    """A test-only reward that differs between samples of a random model (so advantages ≠ 0)."""

    def fn(completions, **kwargs):
        return [float(len(t) % 5) for t in texts(completions)]

    return named(fn, "spread")


@pytest.fixture
def spread_reward(monkeypatch):
    monkeypatch.setitem(REWARDS, "spread", _spread)


def _digits():
    """Test-only: the share of a completion's characters that are digits (learnable from scratch)."""

    def fn(completions, **kwargs):
        return [sum(c.isdigit() for c in t) / max(1, len(t)) for t in texts(completions)]

    return named(fn, "digits")


def _coin():
    """Test-only: a reward that carries no information (seeded uniform noise)."""
    rng = random.Random(0)

    def fn(completions, **kwargs):
        return [rng.random() for _ in completions]

    return named(fn, "coin")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl") / "rl_prompts.jsonl"
    write_jsonl(arithmetic.generate(64, seed=1), path)
    return path


def _recipe(tmp_path, model_dir, prompts, **over) -> list[str]:
    data = {
        "model_name_or_path": str(model_dir),
        "output_dir": str(tmp_path / "rl"),
        "dataset_mixture": [{"path": str(prompts)}],
        "reward_funcs": ["accuracy", "format", "spread"],
        "reward_weights": [1.0, 0.5, 1.0],
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 8,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "report_to": "none",
        "seed": 0,
        "dataloader_num_workers": 0,
        **over,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["--config", str(path)]


def test_tiny_run_changes_parameters_and_logs_every_reward(tmp_path, tiny_model_dir, prompts_file, spread_reward):
    config = parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file))
    results = train(config)
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "rl" / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {changed} changed"
    logged = [e for e in json.loads((tmp_path / "rl" / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
              if "reward" in e]
    assert len(logged) == 2
    for name in ("accuracy", "format", "spread"):
        assert all(f"rewards/{name}/mean" in e for e in logged), name
    assert results["global_step"] == 2 and results["reward_funcs"] == ["accuracy", "format", "spread"]
    rows = read_aha_log(tmp_path / "rl" / "aha_metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert {"aha/completion_length", "aha/self_correction", "aha/language_consistency",
            "rewards/spread/mean"} <= set(rows[0])
    assert 0 < rows[0]["aha/completion_length"] <= 8  # tokens, bounded by max_completion_length
    assert (tmp_path / "rl" / "resolved_config.yaml").exists()
    assert json.loads((tmp_path / "rl" / "results.json").read_text())["stage"] == "grpo"


def test_true_reward_is_learned_and_a_random_reward_control_is_not(tmp_path, tiny_model_dir, prompts_file,
                                                                    monkeypatch):
    """The SPEC's control run: the same GRPO setup optimising a learnable reward (share of digits)
    raises it from ~2% to most of the completion; optimising noise (the digits reward logged
    at weight 0) does not. Separates "the signal is weak" from "training is broken"."""
    monkeypatch.setitem(REWARDS, "digits", _digits)
    monkeypatch.setitem(REWARDS, "coin", _coin)
    curves = {}
    for name, weights in (("true", [1.0, 0.0]), ("control", [0.0, 1.0])):
        out = tmp_path / name
        out.mkdir()
        args = _recipe(out, tiny_model_dir, prompts_file, reward_funcs=["digits", "coin"], reward_weights=weights,
                       num_generations=8, per_device_train_batch_size=16, learning_rate=1e-2, beta=0.0,
                       max_steps=20, save_strategy="no")
        train(parse_config(GRPOStageConfig, args))
        history = json.loads((out / "rl" / "trainer_state.json").read_text())["log_history"]
        curves[name] = [e["rewards/digits/mean"] for e in history if "rewards/digits/mean" in e]
    for name, curve in curves.items():
        assert len(curve) == 20 and sum(curve[:3]) / 3 < 0.06, (name, curve)  # both start at chance
    assert sum(curves["true"][-3:]) / 3 > 0.5, curves["true"]
    assert sum(curves["control"][-3:]) / 3 < 0.1, curves["control"]


def test_resume_continues_from_the_saved_step(tmp_path, tiny_model_dir, prompts_file, spread_reward):
    args = _recipe(tmp_path, tiny_model_dir, prompts_file)
    train(parse_config(GRPOStageConfig, args))
    resumed = train(parse_config(GRPOStageConfig, [*args, "--max_steps", "3"]))
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert resumed["global_step"] == 3
    state = json.loads((tmp_path / "rl" / "checkpoint-3" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "reward" in e] == [1, 2, 3]  # history kept, not restarted
    assert [r["step"] for r in read_aha_log(tmp_path / "rl" / "aha_metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize(
    "sizes, hint",
    [
        ({"per_device_train_batch_size": 12, "num_generations": 8}, r"num_generations to one of \[2, 3, 4, 6, 12\]"),
        ({"per_device_train_batch_size": 4, "num_generations": 8, "gradient_accumulation_steps": 3},
         r"holds 12 completions .*gradient_accumulation_steps 3"),
        ({"per_device_train_batch_size": 8, "num_generations": 8, "generation_batch_size": 20},
         r"generation_batch_size to a multiple of 8"),
        ({"per_device_train_batch_size": 8, "num_generations": 4, "generation_batch_size": 12},
         r"generation_batch_size 12 is not a multiple of the global batch 8 .*use a multiple of 8"),
        ({"num_generations": 1}, r"num_generations must be >= 2"),
    ],
)
def test_bad_group_sizes_say_what_to_change(tmp_path, sizes, hint):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "m", "output_dir": str(tmp_path), **sizes}))
    with pytest.raises(ConfigError, match=hint):
        parse_config(GRPOStageConfig, ["--config", str(path)])


def test_reward_weights_must_match_rewards(tmp_path):
    with pytest.raises(ConfigError, match="one weight per reward"):
        GRPOStageConfig(model_name_or_path="m", output_dir=str(tmp_path), reward_funcs=["accuracy", "format"],
                        reward_weights=[1.0])


def test_aha_metrics_on_crafted_completions():
    completions = [
        "<think>\nunits 8+9=17 write 7\nwait, let me check: carry 1\n</think>\n\\boxed{97}",  # self-corrects
        "<think>\nunits 8+9=17 write 7 carry 1\n</think>\n\\boxed{97}",
        "<think>\n所以 答案 97\n</think>\n\\boxed{97}",  # reasoning in another script
        "no reasoning at all, WAIT what",  # no think block: phrase counts, consistency 0
    ]
    m = aha_metrics(completions, lengths=[20, 10, 6, 4], phrases=["wait", "let me check"], language="en")
    assert m["completion_length"] == 10.0
    assert m["self_correction"] == 0.5
    assert m["language_consistency"] == pytest.approx((1.0 + 1.0 + 0.0 + 0.0) / 4)
    chat = [[{"role": "assistant", "content": c}] for c in completions[:2]]
    assert aha_metrics(chat, phrases=["wait"])["self_correction"] == 0.5


def test_aha_metrics_read_prefilled_r1_zero_prompts():
    prompt = "User: Compute 1 + 1.\nAssistant: <think>\n"
    m = aha_metrics(["1+1=2, hmm, re-check: 2\n</think>\n<answer>2</answer>"], prompts=[prompt],
                    phrases=["re-check"])
    assert m["self_correction"] == 1.0 and m["language_consistency"] == 1.0


def test_phrases_match_whole_words_only():
    pattern = phrase_pattern(["wait", "let me check"])
    assert pattern.search("Let  me\ncheck that")
    assert not pattern.search("awaiting the checkmate")
    assert phrase_pattern([]) is None


def test_aha_log_drops_rows_after_the_resumed_step(tmp_path):
    from transformers import TrainerControl, TrainerState

    path = tmp_path / "aha.jsonl"
    path.write_text("".join(json.dumps({"step": s, "aha/self_correction": 0.1}) + "\n" for s in (1, 2, 3, 4)))
    state = TrainerState()
    state.global_step = 2
    AhaLogFile(path).on_train_begin(None, state, TrainerControl())
    assert [r["step"] for r in read_aha_log(path)] == [1, 2]


R1_DISTILL_TEMPLATE = (  # DeepSeek-R1-Distill's generation prompt opens the reasoning block
    "{% for message in messages %}{{ '<｜User｜>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


def test_a_template_that_opens_think_is_told_to_the_rewards(tmp_path, tiny_model_dir, prompts_file):
    from r1_recipe.grpo import build_trainer
    from r1_recipe.rewards.base import PREFILL_COLUMN

    args = _recipe(tmp_path, tiny_model_dir, prompts_file, reward_funcs=["format"], reward_weights=[1.0],
                   chat_template=R1_DISTILL_TEMPLATE)
    trainer = build_trainer(parse_config(GRPOStageConfig, args))
    rows = trainer.train_dataset
    assert rows[PREFILL_COLUMN] == [True] * len(rows)
    (fmt,) = trainer.reward_funcs
    row = rows[0]
    completion = [{"role": "assistant", "content": "add them\n</think>\n\\boxed{4}"}]
    assert fmt(prompts=[row["prompt"]], completions=[completion], **{PREFILL_COLUMN: [row[PREFILL_COLUMN]]}) == [1.0]
    plain = build_trainer(parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompts_file,
                                                                reward_funcs=["format"], reward_weights=[1.0])))
    assert PREFILL_COLUMN not in plain.train_dataset.column_names  # the tiny ChatML template opens nothing


def test_a_tokenizer_that_hides_the_tags_is_refused_before_training(tmp_path, tiny_model_dir, prompts_file):
    """Tags registered as special tokens vanish in decoding (skip_special_tokens=True): every
    reward would read 0. The stage says so instead of training on a blind reward."""
    import shutil

    from transformers import AutoTokenizer

    model_dir = tmp_path / "special_tags"
    shutil.copytree(tiny_model_dir, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    tok.save_pretrained(model_dir)
    config = parse_config(GRPOStageConfig, _recipe(tmp_path, model_dir, prompts_file, reward_funcs=["format"],
                                                   reward_weights=[1.0]))
    with pytest.raises(ConfigError, match=r"registers \['<think>', '</think>'\] as special tokens.*special=False"):
        train(config)
    assert not (tmp_path / "rl").exists()
