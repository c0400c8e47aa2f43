"""RL stage 2: one GRPO batch mixes reasoning prompts (rule rewards) and general prompts (two
reward models, helpfulness on the answer and harmlessness on the whole response); each reward
applies only to its rows, TRL logs each by name, and a row's reward is the weighted sum of the
rewards that apply to it."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from r1_recipe.configs import GRPOStageConfig, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data import preferences as prefs
from r1_recipe.data.loading import DataError, load_mixture, write_jsonl
from r1_recipe.grpo import build_trainer, train
from r1_recipe.rewards import get_reward_funcs

RULES = ["accuracy", "format"]
MODELS = ["reward_model:helpful", "reward_model:harmless"]


def _options(rm: str) -> dict:
    return {"reward_model:helpful": {"model": rm, "on": "answer"}, "reward_model:harmless": {"model": rm, "on": "full"}}


def test_each_reward_scores_only_its_rows(tiny_rm):
    funcs = get_reward_funcs(RULES + MODELS, **_options(tiny_rm))
    assert [f.__name__ for f in funcs] == RULES + MODELS  # TRL logs rewards/<name>/mean per instance
    completions = ["<think>\nunits 1+2=3 write 3\n</think>\n\\boxed{3}", "<think>\nx\n</think>\n\\boxed{5}",
                   "<think>\ngreet Ada\n</think>\nHello Ada, nice to meet you!",
                   "<think>\nugh, greet Ada, what a bore\n</think>\nHello Ada, nice to meet you!"]
    kw = {"prompts": [[{"role": "user", "content": p}] for p in ["Compute 1 + 2.", "Compute 1 + 2.",
                                                                  "Greet Ada politely.", "Greet Ada politely."]],
          "reward_type": ["reasoning", "reasoning", "general", "general"], "solution": ["3", "3", "", ""]}
    scores = {f.__name__: f(completions=[[{"role": "assistant", "content": c}] for c in completions], **kw)
              for f in funcs}
    for name in RULES:
        assert scores[name][2:] == [None, None] and None not in scores[name][:2], name
    assert scores["accuracy"][:2] == [1.0, 0.0]
    for name in MODELS:
        assert scores[name][:2] == [None, None] and None not in scores[name][2:], name
    # helpfulness reads the answer only (same answer, same score); harmlessness reads the reasoning too
    assert scores["reward_model:helpful"][2] == pytest.approx(scores["reward_model:helpful"][3], abs=1e-5)
    assert scores["reward_model:harmless"][2] != pytest.approx(scores["reward_model:harmless"][3], abs=1e-5)


def test_aliases_need_distinct_names_and_a_known_base(tiny_rm):
    with pytest.raises(ValueError, match="repeat a name"):
        get_reward_funcs(["reward_model:a", "reward_model:a"])
    with pytest.raises(ValueError, match="unknown reward 'reward_modl'"):
        get_reward_funcs(["reward_modl:helpful"])
    with pytest.raises(ValueError, match="option of reward 'reward_model:helpful'"):
        get_reward_funcs(["reward_model:helpful"], **{"reward_model:helpful": {"model": tiny_rm, "onn": "full"}})


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl2")
    write_jsonl(arithmetic.generate(32, seed=3), out / "reasoning.jsonl")
    write_jsonl(prefs.rl_prompts("train"), out / "general.jsonl")
    return out


def test_sources_are_tagged_with_their_reward_type(prompt_files):
    ds = load_mixture([{"path": str(prompt_files / "reasoning.jsonl"), "reward_type": "reasoning"},
                       {"path": str(prompt_files / "general.jsonl"), "reward_type": "general"}], size=40)
    by_type = {t: [r for r in ds if r["reward_type"] == t] for t in ("reasoning", "general")}
    assert len(by_type["reasoning"]) == len(by_type["general"]) == 20
    assert all(r["source"] == "reasoning" for r in by_type["reasoning"])
    assert all(r["source"] == "general" for r in by_type["general"])
    with pytest.raises(DataError, match="unknown key"):
        load_mixture([{"path": str(prompt_files / "general.jsonl"), "reward_typ": "general"}])


def _recipe(tmp_path, model_dir, prompt_files, rm, **over) -> list[str]:
    data = {
        "model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "rl2"),
        "dataset_mixture": [{"path": str(prompt_files / "reasoning.jsonl"), "reward_type": "reasoning"},
                            {"path": str(prompt_files / "general.jsonl"), "reward_type": "general"}],
        "mixture_size": 64, "reward_funcs": RULES + MODELS, "reward_weights": [1.0, 0.5, 2.0, 3.0],
        "reward_kwargs": _options(rm), "num_generations": 4, "per_device_train_batch_size": 16,
        "max_completion_length": 8, "learning_rate": 1e-3, "max_steps": 1, "logging_steps": 1, "save_steps": 1,
        "report_to": "none", "seed": 0, "dataloader_num_workers": 0, **over,
    }
    (tmp_path / "rl2.yaml").write_text(yaml.safe_dump(data))
    return ["--config", str(tmp_path / "rl2.yaml")]


def test_a_row_gets_the_weighted_sum_of_the_rewards_that_apply(tmp_path, tiny_model_dir, prompt_files, tiny_rm):
    trainer = build_trainer(parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompt_files, tiny_rm)))
    rows = [{"prompt": [{"role": "user", "content": "Compute 1 + 2."}], "solution": "3", "reward_type": "reasoning"},
            {"prompt": [{"role": "user", "content": "Greet Ada politely."}], "solution": "", "reward_type": "general"}]
    completions = [[{"role": "assistant", "content": "<think>\nunits 1+2=3 write 3\n</think>\n\\boxed{3}"}],
                   [{"role": "assistant", "content": "<think>\ngreet Ada\n</think>\nHello Ada, nice to meet you!"}]]
    per_func = trainer._calculate_rewards(rows, [r["prompt"] for r in rows], completions, [[1, 2], [1, 2]])
    assert per_func.shape == (2, 4)
    assert per_func[0, :2].tolist() == [1.0, 1.0] and per_func[0, 2:].isnan().all()
    assert per_func[1, :2].isnan().all() and not per_func[1, 2:].isnan().any()
    total = (per_func * trainer.reward_weights.unsqueeze(0)).nansum(dim=1)  # what TRL's advantages start from
    assert total[0].item() == pytest.approx(1.0 + 0.5)
    assert total[1].item() == pytest.approx(2.0 * per_func[1, 2].item() + 3.0 * per_func[1, 3].item())


def test_mixed_run_logs_every_reward_by_name(tmp_path, tiny_model_dir, prompt_files, tiny_rm):
    results = train(parse_config(GRPOStageConfig, _recipe(tmp_path, tiny_model_dir, prompt_files, tiny_rm)))
    state = json.loads((tmp_path / "rl2" / "checkpoint-1" / "trainer_state.json").read_text())
    (logged,) = [e for e in state["log_history"] if "reward" in e]
    for name in RULES + MODELS:
        assert not math.isnan(logged[f"rewards/{name}/mean"]), name  # each saw rows of its own kind
    assert results["reward_funcs"] == RULES + MODELS


@pytest.mark.parametrize("recipe, stage", [
    ("recipes/demo/stage2.yaml", "sft"), ("recipes/demo/rl2.yaml", "grpo"),
    ("recipes/demo/reward_model_helpful.yaml", "reward_model"), ("recipes/demo/reward_model_harmless.yaml", "reward_model"),
    ("recipes/Qwen2.5-7B/stage2/config_node.yaml", "sft"), ("recipes/Qwen2.5-7B/rl2/config_node.yaml", "grpo"),
    ("recipes/Qwen2.5-7B/reward_model/helpful.yaml", "reward_model"), ("recipes/demo/score_general.yaml", "score"),
])
def test_stage2_recipes_parse_and_name_real_rewards(recipe, stage):
    import importlib
    import inspect
    from pathlib import Path

    from r1_recipe.cli import CONFIGS
    from r1_recipe.rewards import REWARDS, base_name

    if stage == "score":
        from r1_recipe.reward_model import GeneralScoreConfig as cls
        argv = ["--model_name_or_path", "m", "--output_dir", "o"]
    else:
        module, name = CONFIGS[stage].split(":")
        cls, argv = getattr(importlib.import_module(module), name), []
    root = Path(__file__).resolve().parents[1]
    config = parse_config(cls, ["--config", str(root / recipe), *argv])
    for name in getattr(config, "reward_funcs", []):
        params = inspect.signature(REWARDS[base_name(name)]).parameters
        assert set((config.reward_kwargs or {}).get(name, {})) <= set(params), name
    if "reward_model:helpful" in getattr(config, "reward_funcs", []):
        assert config.reward_kwargs["reward_model:helpful"]["on"] == "answer"
        assert config.reward_kwargs["reward_model:harmless"]["on"] == "full"
