"""The vLLM paths, for real: vLLM 0.31's own CPU build in ``.venv-vllm`` (``make install-vllm``, then
``make test-vllm``). Marked ``vllm``: the main suite, which never installs vLLM, deselects them.

Each engine start is ~30 s on 2 idle cores with ``enforce_eager`` (minutes when vLLM compiles the model),
so the module trains one competent tiny model and shares it; every test asserts what a user relies on:
vLLM scores what transformers scores, a prompt's samples do not depend on the batch or the replica that
drew them, rejection sampling over two sampler processes writes every prompt once and resumes, a merged
LoRA stage loads, and GRPO's colocated vLLM is pinned to what it does on CPU.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("vllm", reason="vLLM is not installed here: `make install-vllm test-vllm` runs these")

from r1_recipe.data import arithmetic  # noqa: E402
from r1_recipe.data.loading import write_jsonl  # noqa: E402
from r1_recipe.evaluate import EvalConfig, evaluate  # noqa: E402
from r1_recipe.sampling import SamplingParams, make_sampler, prompt_ids, release  # noqa: E402

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
EAGER = {"enforce_eager": True}  # a CPU engine starts in seconds instead of compiling for minutes


def _recipe(path: Path, recipe: dict) -> list[str]:
    path.write_text(yaml.safe_dump(recipe))
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def cold_start(tmp_path_factory, tiny_model_dir, demo_data_dir) -> Path:
    """The tiny model after a 250-step cold start: it solves some held-out problems, not all."""
    from r1_recipe.sft import main as sft_main

    out = tmp_path_factory.mktemp("vllm") / "stage1"
    sft_main(_recipe(out.with_suffix(".yaml"), {
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(out),
        "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}], "per_device_train_batch_size": 32,
        "learning_rate": 3e-3, "lr_scheduler_type": "cosine", "warmup_steps": 20, "max_length": 128,
        "max_steps": 250, "save_strategy": "no", "report_to": "none", "seed": 0}))
    return out


def _eval(model, backend: str, **over) -> dict:
    options = dict(model_name_or_path=str(model), backend=backend, num_problems=200, num_samples=4, temperature=0.5,
                   top_p=1.0, max_new_tokens=48, greedy=False, vllm_kwargs=EAGER, batch_size=256)
    return evaluate(EvalConfig(**{**options, **over}))


def _agree(a: dict, b: dict, sigmas: float = 2.0) -> bool:
    return abs(a["pass@1"] - b["pass@1"]) <= sigmas * math.hypot(a["pass@1_stderr"], b["pass@1_stderr"]) + 1e-9


def test_tiny_model_vllm_scores_like_transformers_and_replicas_do_not_change_a_prompts_samples(cold_start):
    hf = _eval(cold_start, "transformers")
    vllm = _eval(cold_start, "vllm")
    numbers = (hf["pass@1"], hf["pass@1_stderr"], vllm["pass@1"], vllm["pass@1_stderr"])
    assert 0.02 < hf["pass@1"] < 0.98 and 0.02 < vllm["pass@1"] < 0.98, numbers  # headroom: the test can fail
    assert _agree(hf, vllm), numbers
    assert vllm["truncated_share"] < 0.05 and vllm["answered"] > 0.9  # stops at its end of turn, answers boxed

    prompts = [[{"role": "user", "content": p["problem"]}] for p in arithmetic.generate(24, split="test", seed=4)]
    params = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=11)
    one = make_sampler("vllm", str(cold_start), seed=0, **EAGER)
    whole = one.generate(prompts, params)
    again = one.generate(prompts, params)
    split = one.generate(prompts[:10], params) + one.generate(
        prompts[10:], SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=11 + 10 * 3))
    cut = one.generate(prompts[:4], SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=3, seed=0))
    assert one.last_truncated == [[True, True]] * 4 and all(len(c) <= 40 for g in cut for c in g)
    release(one)
    assert again == whole and split == whole  # a prompt's samples: its own seeds, whatever the batch
    assert len({g[0] for g in whole}) > 12 and any(len(set(g)) > 1 for g in whole)  # independent draws
    two = make_sampler("vllm", str(cold_start), seed=0, data_parallel_size=2, **EAGER)
    try:
        assert two.generate(prompts, params) == whole  # two replicas, one share each: the same samples
        assert len(two._workers) == 2
    finally:
        release(two)


def test_smollm2_vllm_scores_like_transformers_on_its_one_shot_protocol(require_asset, tmp_path):
    """The real model, the shipped evaluation recipe's protocol (one-shot ChatML, T=0.7), on one-digit sums it
    gets right about a quarter of the time."""
    model = require_asset("smollm2-135m-instruct")
    rng = random.Random(1)
    pairs = [(rng.randint(1, 9), rng.randint(1, 9)) for _ in range(40)]
    write_jsonl([{"problem": f"Compute {a} + {b}.", "answer": str(a + b)} for a, b in pairs], tmp_path / "sums.jsonl")
    recipe = yaml.safe_load((ROOT / "recipes/SmolLM2-135M/evaluate.yaml").read_text())
    over = {k: recipe[k] for k in ("instruction", "template", "system_prompt", "max_new_tokens")}
    over |= {"chat_template": str(ROOT / recipe["chat_template"]), "benchmark": str(tmp_path / "sums.jsonl"),
             "answer_column": "answer", "num_problems": 40}
    hf, vllm = _eval(model, "transformers", **over), _eval(model, "vllm", **over)
    assert 0.05 < vllm["pass@1"] < 0.95 and _agree(hf, vllm), (hf["pass@1"], vllm["pass@1"])
    assert vllm["truncated_share"] < 0.2  # stops at <|im_end|>: few of the 20-token budgets run out


def test_rejection_sampling_on_two_vllm_sampler_processes_writes_every_prompt_once_and_resumes(cold_start, tmp_path):
    from datasets import load_dataset

    from r1_recipe.rejection_sampling import main

    data = tmp_path / "prompts.jsonl"
    write_jsonl(arithmetic.generate(32, seed=5), data)
    write_jsonl(arithmetic.generate_general(16, seed=0), tmp_path / "general.jsonl")
    out = tmp_path / "out"
    recipe = {"model_name_or_path": str(cold_start), "output_dir": str(out), "dataset_mixture": [{"path": str(data)}],
              "num_samples": 4, "max_new_tokens": 48, "temperature": 1.0, "top_p": 1.0, "chunk_size": 4,
              "reward_funcs": ["accuracy", "format"], "max_per_prompt": 2,
              "general_mixture": [{"path": str(tmp_path / "general.jsonl")}], "backend": "vllm",
              "data_parallel_size": 2, "vllm_kwargs": EAGER, "seed": 0}
    args = _recipe(tmp_path / "r.yaml", recipe)
    first = main(args)
    logs = sorted((out / "workers").glob("worker-*.log"))
    assert len(logs) == 2  # two sampler processes, one shard each
    rates = [json.loads(x) for x in (out / "pass_rates.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in rates] == list(range(first["prompts"]))  # every prompt once
    assert first["kept_reasoning"] > 0
    rows = load_dataset(str(out), split="train").to_list()

    # a kill mid-run: the last chunk of each shard lost its marker and shard file; the rerun redoes only those
    markers = sorted((out / "progress").glob("chunk-*.json"))
    lost = [markers[len(markers) // 2 - 1], markers[-1]]
    for marker in lost:
        marker.unlink()
        (out / "data" / f"train-{marker.stem.split('-')[1]}.parquet").unlink(missing_ok=True)
    (out / "stats.json").unlink()
    again = main(args)
    assert {k: v for k, v in again.items() if "seconds" not in k and "per_second" not in k} == {
        k: v for k, v in first.items() if "seconds" not in k and "per_second" not in k}
    assert load_dataset(str(out), split="train").to_list() == rows  # same seeds per prompt: the same rows


def test_a_merged_lora_stage_and_a_template_that_opens_think_run_in_vllm(cold_start, demo_data_dir, tmp_path):
    from safetensors.torch import load_file

    from r1_recipe.sft import main as sft_main

    out = tmp_path / "lora"
    sft_main(_recipe(tmp_path / "lora.yaml", {
        "model_name_or_path": str(cold_start), "output_dir": str(out),
        "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}], "per_device_train_batch_size": 16,
        "learning_rate": 2e-2, "max_length": 128, "max_steps": 10, "save_strategy": "no", "report_to": "none",
        "seed": 0, "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0}))
    assert not (out / "adapter_config.json").exists()
    base, merged = load_file(cold_start / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not base[k].equal(merged[k]) for k in base)  # the adapter is in the weights vLLM loads

    # every token vLLM picks greedily is the merged model's argmax up to a near-tie (float32 kernels differ), and far
    # from the cold start's: the adapter is in what vLLM ran
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams as VLLMParams

    tokenizer = AutoTokenizer.from_pretrained(out)
    prompts = [[{"role": "user", "content": p["problem"]}] for p in arithmetic.generate(16, split="test", seed=6)]
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    engine = make_sampler("vllm", str(out), seed=0, **EAGER)
    try:
        results = engine.llm.generate([{"prompt_token_ids": x} for x in ids],
                                      VLLMParams(temperature=0.0, max_tokens=32, stop_token_ids=engine.stop_ids))
    finally:
        release(engine)
    chosen = [list(r.outputs[0].token_ids) for r in results]

    def worst_gap(folder) -> float:
        """The largest log-prob gap, under ``folder``'s model, between its argmax and vLLM's token."""
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        gaps = []
        for x, new in zip(ids, chosen):
            with torch.no_grad():
                logp = model(torch.tensor([x + new])).logits[0, len(x) - 1 : len(x) - 1 + len(new)].log_softmax(-1)
            gaps.append(float((logp.max(-1).values - logp[torch.arange(len(new)), torch.tensor(new)]).max()))
        return max(gaps)

    merged_gap, base_gap = worst_gap(out), worst_gap(cold_start)
    assert merged_gap < 0.25 and base_gap > 2.0, (merged_gap, base_gap)  # measured: 0.04 (a near-tie) vs 8.7

    # a chat template that opens <think> (DeepSeek-R1-Distill's shape): the answer is read after the restored tag
    template = (out / "chat_template.jinja").read_text()
    assert "<|im_start|>assistant\n{% endif %}" in template
    opened = tmp_path / "opens_think.jinja"
    opened.write_text(template.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}"))
    s_hf = _eval(out, "transformers", chat_template=str(opened), num_problems=40)
    s_vllm = _eval(out, "vllm", chat_template=str(opened), num_problems=40)
    assert s_vllm["answered"] > 0.5 and _agree(s_hf, s_vllm), (s_hf, s_vllm)


def test_grpo_colocated_vllm_on_cpu_is_pinned(cold_start, demo_data_dir, tmp_path):
    """TRL's colocate mode starts vLLM in the trainer's process and syncs the policy's weights into it each
    step. On vLLM's CPU build the sync fails: the CPU backend repacks Linear weights after loading, and TRL's
    ``load_weights`` then meets parameters without vLLM's ``weight_loader``. This pins that error (so a vLLM
    that fixes it shows up here) and that it fails at the first step, not silently; the README says GRPO with
    vLLM is verified on GPUs only."""
    data = tmp_path / "rl.jsonl"
    write_jsonl(arithmetic.generate(16, seed=7), data)
    recipe = {"model_name_or_path": str(cold_start), "output_dir": str(tmp_path / "rl"),
              "dataset_mixture": [{"path": str(data)}], "reward_funcs": ["accuracy"], "num_generations": 4,
              "per_device_train_batch_size": 4, "max_completion_length": 24, "max_steps": 1, "save_strategy": "no",
              "report_to": "none", "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.1,
              "vllm_enable_sleep_mode": False, "seed": 0}
    args = _recipe(tmp_path / "rl.yaml", recipe)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "r1_recipe.grpo", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode == 0:
        pytest.fail("GRPO with colocated vLLM now trains on CPU: update this test and the README's GPU section")
    assert "weight_loader" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
