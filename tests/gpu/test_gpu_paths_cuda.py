"""The GPU paths on a real CUDA device (issue 20): run by ``benchmarks/gpu_check.sh`` (``pytest -m gpu
tests/gpu``), skipped without CUDA. The reward model loads whole while a real ZeRO-3 config is live;
a policy loaded under zero.Init is partitioned yet counted in full; the transformers sampler flags
truncation on the GPU."""

from __future__ import annotations

import os
import socket

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def tiny_rm_loaded(tiny_rm):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm)
    return tiny_rm, model.to(torch.bfloat16).cuda().eval()


@pytest.fixture
def single_process_group():
    """A one-rank NCCL group: what zero.Init needs to partition parameters."""
    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(key, None)


@pytest.fixture
def zero3_config():
    pytest.importorskip("deepspeed")
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    live = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1,
                              "bf16": {"enabled": True}})
    yield live
    unset_hf_deepspeed_config()


def test_reward_model_scores_like_a_plain_load_under_a_live_zero3_config(tiny_rm_loaded, single_process_group, zero3_config):
    from transformers.integrations import is_deepspeed_zero3_enabled

    from r1_recipe.rewards.model import RewardModelScorer

    path, reference = tiny_rm_loaded
    assert is_deepspeed_zero3_enabled()
    scorer = RewardModelScorer(path)
    assert scorer.device == "cuda:0" and all(p.numel() > 0 for p in scorer.model.parameters())
    pairs = [("What is 2+2?", "4"), ("Name a colour.", "blue")]
    batch = scorer.tokenizer.pad({"input_ids": [scorer.encode(p, r) for p, r in pairs]}, return_tensors="pt").to("cuda")
    with torch.no_grad():
        expected = reference(**batch).logits.float()[:, 0].tolist()
    assert scorer.score(pairs) == pytest.approx(expected, abs=2e-2)


def test_policy_under_zero_init_is_partitioned_but_counted_whole(tiny_model_dir, single_process_group, zero3_config):
    from transformers import AutoModelForCausalLM
    from transformers.integrations import unset_hf_deepspeed_config

    from r1_recipe.stage import parameter_count

    partitioned = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)  # inside zero.Init
    assert sum(p.numel() for p in partitioned.parameters()) == 0
    unset_hf_deepspeed_config()
    whole = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    assert parameter_count(partitioned) == whole > 0


def test_transformers_sampler_on_the_gpu_flags_budget_hits(tiny_model_dir):
    from r1_recipe.sampling import SamplingParams, TransformersSampler, truncated_share

    sampler = TransformersSampler(str(tiny_model_dir))
    out = sampler.generate(["2 + 2 =", "7 - 3 ="], SamplingParams(n=3, temperature=1.0, max_new_tokens=4))
    assert sampler.device == "cuda" and [len(g) for g in out] == [3, 3]
    assert [len(g) for g in sampler.last_truncated] == [3, 3] and 0.0 <= truncated_share(sampler) <= 1.0
