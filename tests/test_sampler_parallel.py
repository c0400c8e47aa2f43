"""Sampling on GPUs, checked on CPU (issue 20, items 2, 7, 8, 9): the vLLM backend against a
recording stand-in for vLLM's offline API (seeds, finish_reason, parallelism arguments), the
transformers backend's truncation flags, rejection sampling's seeds across chunks, and its sampler
processes, one per replica, each on its own shard."""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

from r1_recipe.configs import ConfigError
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.rejection_sampling import RejectionSamplingConfig, run
from r1_recipe.sampling import SamplingParams, TransformersSampler, VLLMSampler, valid_tensor_parallel_sizes

SRC = str(Path(__file__).resolve().parents[1] / "src")


# --- a recording stand-in for vLLM's offline API -------------------------------------------------


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_dir):
    """``vllm.LLM`` / ``vllm.SamplingParams`` as TRL 1.16's vLLM versions define the parts used:
    ``LLM(...)`` records its arguments; ``generate`` answers each request with ``n`` outputs whose
    ``finish_reason`` is ``length`` when the request's ``max_tokens`` is under 5."""
    calls = SimpleNamespace(llm_kwargs=None, params=[], events=[])

    class FakeSamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class FakeLLM:
        def __init__(self, **kwargs):
            calls.llm_kwargs = kwargs
            calls.events.append("vllm start")
            self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len") or 64),
                                              shutdown=lambda: calls.events.append("vllm shutdown"))

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_model_dir)

        def generate(self, inputs, params, use_tqdm=False):
            calls.events.append("vllm generate")
            calls.params.extend(params)
            reason = lambda p: "length" if p.max_tokens < 5 else "stop"  # noqa: E731
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f"s{p.seed + j}", finish_reason=reason(p))
                                             for j in range(p.n)]) for p in params]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_vllm_samples_of_different_prompts_never_share_a_seed(fake_vllm, tiny_model_dir):
    sampler = VLLMSampler(str(tiny_model_dir))
    sampler.generate(["a", "b", "c"], SamplingParams(n=4, seed=10))
    # vLLM seeds the j-th sample of a request with seed + j: every (prompt, sample) needs its own number
    streams = [p.seed + j for p in fake_vllm.params for j in range(p.n)]
    assert len(set(streams)) == len(streams) == 12
    assert [p.seed for p in fake_vllm.params] == [10, 14, 18]


def test_vllm_finish_reason_becomes_the_truncated_share(fake_vllm, tiny_model_dir, caplog):
    from r1_recipe.sampling import truncated_share

    sampler = VLLMSampler(str(tiny_model_dir), max_model_len=64)
    sampler.generate(["a", "b"], SamplingParams(n=2, max_new_tokens=3))
    assert sampler.last_truncated == [[True, True], [True, True]] and truncated_share(sampler) == 1.0
    with caplog.at_level(logging.WARNING, logger="r1_recipe.sampling"):
        sampler.generate(["a"], SamplingParams(n=2, max_new_tokens=100))  # 100 new tokens > 64 positions
    assert sampler.last_truncated == [[False, False]] and truncated_share(sampler) == 0.0
    assert "exceed the model's 64 positions" in caplog.text


def test_vllm_never_gets_data_parallel_and_refuses_a_tensor_parallel_size_the_heads_do_not_allow(
        fake_vllm, tiny_model_dir, tmp_path):
    VLLMSampler(str(tiny_model_dir), tensor_parallel_size=1)
    assert "data_parallel_size" not in fake_vllm.llm_kwargs
    with pytest.raises(ConfigError, match="one process per replica"):
        VLLMSampler(str(tiny_model_dir), data_parallel_size=8)
    qwen7b = tmp_path / "qwen7b"  # Qwen2.5-7B's head layout: 28 attention heads, 4 key/value heads
    Qwen2Config(num_attention_heads=28, num_key_value_heads=4, hidden_size=28 * 8).save_pretrained(qwen7b)
    with pytest.raises(ConfigError, match=r"tensor_parallel_size 8 does not fit .*28 attention heads.*valid sizes: 1, 2, 4$"):
        VLLMSampler(str(qwen7b), tensor_parallel_size=8)
    VLLMSampler(str(qwen7b), tensor_parallel_size=4)
    assert fake_vllm.llm_kwargs["tensor_parallel_size"] == 4


def test_valid_tensor_parallel_sizes_for_the_recipes_models():
    c = SimpleNamespace
    assert valid_tensor_parallel_sizes(c(num_attention_heads=28, num_key_value_heads=4)) == [1, 2, 4]  # 7B
    assert valid_tensor_parallel_sizes(c(num_attention_heads=12, num_key_value_heads=2)) == [1, 2, 4, 6]  # 1.5B
    assert valid_tensor_parallel_sizes(c(num_attention_heads=40, num_key_value_heads=8)) == [1, 2, 4, 8]  # 14B
    assert valid_tensor_parallel_sizes(c(num_attention_heads=32, num_key_value_heads=8)) == [1, 2, 4, 8]  # Llama-8B


# --- the transformers backend's truncation flags ----------------------------------------------


def _greedy_tokens(model, tokenizer, text: str, steps: int) -> list[int]:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_transformers_sampler_flags_completions_that_hit_the_budget(tiny_model_dir, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    greedy = _greedy_tokens(model, tokenizer, "2 + 2 =", steps=3)
    unused = next(i for i in range(len(tokenizer)) if i not in greedy and i != tokenizer.pad_token_id)
    sampler = TransformersSampler(model, tokenizer, device="cpu")
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=3)
    sampler.stop_ids = [unused]  # never produced: all 3 tokens, cut
    sampler.generate(["2 + 2 ="], params)
    assert sampler.last_truncated == [[True]]
    sampler.stop_ids = [unused, greedy[1]]  # produced second: ended on its own
    sampler.generate(["2 + 2 ="], params)
    assert sampler.last_truncated == [[False]]
    with caplog.at_level(logging.WARNING, logger="r1_recipe.sampling"):
        sampler.generate(["2 + 2 ="], SamplingParams(n=1, temperature=0.0, max_new_tokens=sampler.positions))
    assert f"exceed the model's {sampler.positions} positions" in caplog.text


# --- rejection sampling: seeds across chunks, one sampler process per replica ------------------


def _prompts(tmp_path: Path, count: int) -> Path:
    data = tmp_path / "prompts.jsonl"
    write_jsonl(arithmetic.generate(count, seed=5), data)
    write_jsonl(arithmetic.generate_general(20, seed=0), tmp_path / "general.jsonl")
    return data


def _recipe(tmp_path: Path, model, out: Path, **extra) -> dict:
    data = _prompts(tmp_path, 16)
    return {"model_name_or_path": str(model), "output_dir": str(out), "dataset_mixture": [{"path": str(data)}],
            "num_samples": 3, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "chunk_size": 4,
            "reward_funcs": ["format"], "reward_thresholds": {}, "max_per_prompt": 3,
            "min_language_consistency": None, "max_repetition": None, "near_duplicate_threshold": None,
            "general_mixture": [{"path": str(tmp_path / "general.jsonl")}], "backend": "transformers",
            "batch_size": 64, "seed": 0, **extra}


class SeedRecorder:
    def __init__(self):
        self.seeds = []

    def generate(self, prompts, params, *, progress=False):
        self.seeds.extend(params.seed + i * params.n + j for i in range(len(prompts)) for j in range(params.n))
        return [["<think>\nx\n</think>\n1"] * params.n for _ in prompts]


def test_rejection_sampling_gives_every_prompt_its_own_seeds_across_chunks(tmp_path):
    recorder = SeedRecorder()
    run(RejectionSamplingConfig(**_recipe(tmp_path, "unused", tmp_path / "out")), sampler=recorder)
    assert len(recorder.seeds) == 16 * 3 and len(set(recorder.seeds)) == 16 * 3


class CraftedAnswers:
    """A deterministic stand-in model: sample j of a prompt is right for odd j only."""

    def generate(self, prompts, params, *, progress=False):
        import re

        out = []
        for p in prompts:
            a, op, b = re.search(r"(\d+) ([+-]) (\d+)", p[-1]["content"]).groups()
            right = int(a) + int(b) if op == "+" else int(a) - int(b)
            out.append([f"<think>\nsum {j}\n</think>\n\\boxed{{{right if j % 2 else right + 1}}}"
                        for j in range(params.n)])
        return out


def test_sampler_processes_write_each_prompt_exactly_once(tmp_path, monkeypatch):
    """3 array shards x 2 sampler processes, the processes run in-process as the commands ask: every
    chunk is done by exactly one process, on the GPUs assigned to it, and the output is a single run's."""
    import subprocess
    from unittest import mock

    from r1_recipe.configs import parse_config

    started = []

    class InProcess:
        def __init__(self, cmd, stdout, stderr, env):
            assert cmd[1:3] == ["-m", "r1_recipe.rejection_sampling"]
            config = parse_config(RejectionSamplingConfig, cmd[3:])
            started.append((config.shard_index, config.num_shards, env.get("CUDA_VISIBLE_DEVICES")))
            with mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": env.get("CUDA_VISIBLE_DEVICES", "")}):
                self.result = run(config, sampler=CraftedAnswers())

        def wait(self):
            return 0

    base = _recipe(tmp_path, "unused", tmp_path / "split", reward_funcs=["accuracy", "format"],
                   reward_thresholds={"accuracy": 1.0}, reward_kwargs={"accuracy": {"workers": 1}}, chunk_size=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with mock.patch.object(subprocess, "Popen", InProcess), mock.patch("torch.cuda.is_available", return_value=True):
        results = [run(RejectionSamplingConfig(**base, data_parallel_size=2, num_shards=3, shard_index=s))
                   for s in (2, 0, 1)]
    assert sorted(started) == [(k, 6, str(k % 2)) for k in range(6)]
    markers = [json.loads(p.read_text()) for p in sorted((tmp_path / "split" / "progress").glob("chunk-*.json"))]
    assert [m["shard"] for m in markers] == [0, 1, 2, 2, 3, 4, 5, 5]  # 8 chunks over 6 processes, once each
    indices = [s["prompt_index"] for m in markers for s in m["prompts"]]
    assert indices == list(range(len(indices)))
    assert results[:2] == [{"chunks_done": 3, "chunks": 8}, {"chunks_done": 5, "chunks": 8}]  # shard 2 first: 3 chunks
    single = run(RejectionSamplingConfig(**{**base, "output_dir": str(tmp_path / "single")}), sampler=CraftedAnswers())
    drop = ("generation_seconds", "samples_per_second")
    assert {k: v for k, v in results[2].items() if k not in drop} == {k: v for k, v in single.items() if k not in drop}
    assert results[2]["kept_reasoning"] > 0


@pytest.mark.slow  # ~50 s on 2 busy cores: two real sampler processes, each importing torch and loading the model
def test_sampler_processes_split_the_prompts_each_written_once(tmp_path, tiny_model_dir, monkeypatch):
    """data_parallel_size 2 with the transformers backend: two CPU sampler processes, each on its own
    chunks; the output equals a one-process run's, row for row."""
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    split = RejectionSamplingConfig(**_recipe(tmp_path, tiny_model_dir, tmp_path / "split", data_parallel_size=2))
    stats = run(split)
    markers = [json.loads(p.read_text()) for p in sorted((tmp_path / "split" / "progress").glob("chunk-*.json"))]
    assert [m["shard"] for m in markers] == [0, 0, 1, 1]  # worker k of 2 did chunks 2k, 2k+1
    logs = sorted(p.name for p in (tmp_path / "split" / "workers").glob("worker-*.log"))
    assert logs == ["worker-0.log", "worker-1.log"]
    indices = [s["prompt_index"] for m in markers for s in m["prompts"]]
    assert indices == list(range(stats["prompts"])) and stats["samples"] == 3 * stats["prompts"]
    single = run(RejectionSamplingConfig(**_recipe(tmp_path, tiny_model_dir, tmp_path / "single")))
    drop = ("generation_seconds", "samples_per_second")
    assert {k: v for k, v in stats.items() if k not in drop} == {k: v for k, v in single.items() if k not in drop}
    assert (load_dataset(str(tmp_path / "split"), split="train").to_list()
            == load_dataset(str(tmp_path / "single"), split="train").to_list())
    assert stats["truncated"] > 0 and stats["truncated_share"] == stats["truncated"] / stats["samples"]


def test_sampler_processes_get_their_own_gpus(monkeypatch):
    from unittest import mock

    from r1_recipe.rejection_sampling import worker_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    with mock.patch("torch.cuda.is_available", return_value=True):
        assert worker_gpus(4, 2) == ["0,1", "2,3", "4,5", "6,7"]
        assert worker_gpus(8, 1) == [str(i) for i in range(8)]
        with pytest.raises(ConfigError, match="lower data_parallel_size to 4"):
            worker_gpus(8, 2)
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert worker_gpus(2, 1) is None


# --- reward_model score: vLLM and the reward models on one GPU (item 5) ------------------------


def test_score_samples_first_with_room_left_then_loads_the_reward_models(fake_vllm, tiny_model_dir, tmp_path):
    from unittest import mock

    from transformers import AutoModelForSequenceClassification

    from r1_recipe.data import preferences as prefs
    from r1_recipe.reward_model import GeneralScoreConfig, score_general, vllm_memory_share, weights_bytes
    from r1_recipe.rewards import model as rm_module

    rm = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).save_pretrained(rm)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(rm)
    write_jsonl(prefs.rl_prompts("test"), tmp_path / "general.jsonl")
    config = GeneralScoreConfig(
        model_name_or_path=str(tiny_model_dir), prompts=str(tmp_path / "general.jsonl"), num_problems=2,
        reward_funcs=["reward_model:helpful"], num_samples=2, max_new_tokens=8, backend="vllm",
        reward_kwargs={"reward_model:helpful": {"model": str(rm), "device": "cpu"}}, output_dir=str(tmp_path / "out"))
    load = rm_module.RewardModelScorer.__init__

    def recorded(self, *args, **kwargs):
        fake_vllm.events.append("reward model load")
        load(self, *args, **kwargs)

    gpu = 2 * weights_bytes(str(rm)) + 3 * 1024**3  # a GPU that the reward model's weights fill in good part
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.get_device_properties", return_value=SimpleNamespace(total_memory=gpu)), \
            mock.patch.object(rm_module.RewardModelScorer, "__init__", recorded):
        summary = score_general(config)
    assert fake_vllm.events == ["vllm start", "vllm generate", "vllm shutdown", "reward model load"]
    share = fake_vllm.llm_kwargs["gpu_memory_utilization"]
    assert share == vllm_memory_share(weights_bytes(str(rm)), gpu) < 0.9
    assert share * gpu + 1.2 * weights_bytes(str(rm)) <= gpu  # both fit
    assert summary["num_samples"] == 2 and "reward_model:helpful" in summary


def test_evaluation_reports_the_truncated_share_per_benchmark():
    from r1_recipe.evaluate import EvalConfig, evaluate, format_summary

    class HalfCut:
        """Samples j = 0, 2, ... hit the budget; greedy samples never do."""

        def generate(self, prompts, params, *, progress=False):
            self.last_truncated = [[params.n > 1 and j % 2 == 0 for j in range(params.n)] for _ in prompts]
            return [["\\\\boxed{1}"] * params.n for _ in prompts]

    s = evaluate(EvalConfig(model_name_or_path="scripted", num_problems=3, num_samples=4), sampler=HalfCut())
    assert s["truncated_share"] == 0.5 and s["greedy_truncated_share"] == 0.0
    assert "truncated 50.0%" in format_summary(s)
