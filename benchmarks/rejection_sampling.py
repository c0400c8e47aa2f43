"""Claim: batched group sampling (all n samples of many prompts in one ``generate`` call, as the
rejection-sampling stage does) is ≥ 3× faster than a naive loop (one prompt, one ``generate``
call per sample), on CPU with the tiny model, measured in the same run.

    PYTHONPATH=src python benchmarks/rejection_sampling.py                        # a fresh tiny model
    PYTHONPATH=src python benchmarks/rejection_sampling.py --model runs/demo/stage1 --prompts 16

Both paths go through the same ``TransformersSampler`` with the same sampling settings; only the
batching differs. Throughput is completions per second of generation (model loading excluded).
The naive loop is timed on the first ``--naive_prompts`` prompts (it is the slow one). With a
random-init model every completion runs to ``--max_new_tokens``, so both paths generate the same
number of tokens per sample. vLLM on a GPU: see benchmarks/eval_backends.py (needs a GPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from r1_recipe.data import arithmetic
from r1_recipe.data.templates import prompt_for
from r1_recipe.sampling import SamplingParams, TransformersSampler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: build the tiny random model in a temp dir)")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--naive_prompts", type=int, default=4, help="prompts timed in the naive loop")
    p.add_argument("--num_samples", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=48)
    p.add_argument("--batch_size", type=int, default=256, help="sequences per batched generate call")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = a.model
    if model is None:
        from r1_recipe.tiny import build_tiny_model

        model = str(build_tiny_model(tempfile.mkdtemp(prefix="tiny-"), seed=0))
    sampler = TransformersSampler(model, batch_size=a.batch_size)
    prompts = [prompt_for(r["problem"]) for r in arithmetic.generate(a.prompts, seed=0)]
    params = SamplingParams(n=a.num_samples, temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens)
    sampler.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=4))  # warm-up

    t0 = time.perf_counter()
    batched = sampler.generate(prompts, params)
    batched_rate = sum(map(len, batched)) / (time.perf_counter() - t0)

    one = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens)
    t0 = time.perf_counter()
    naive = [sampler.generate([prompt], SamplingParams(**{**one.__dict__, "seed": s}))[0][0]
             for prompt in prompts[: a.naive_prompts] for s in range(a.num_samples)]
    naive_rate = len(naive) / (time.perf_counter() - t0)

    ratio = batched_rate / naive_rate
    print(f"batched group sampling {batched_rate:8.1f} samples/s  ({a.prompts} prompts × {a.num_samples}, "
          f"≤ {a.batch_size} sequences per call)")
    print(f"naive loop             {naive_rate:8.1f} samples/s  (1 prompt, 1 sample per call, {len(naive)} calls)")
    print(f"ratio {ratio:.1f}× ({'meets' if ratio >= 3 else 'MISSES'} the 3× target); torch threads "
          f"{torch.get_num_threads()}")
    print(json.dumps({"batched_samples_per_s": batched_rate, "naive_samples_per_s": naive_rate, "ratio": ratio}))


if __name__ == "__main__":
    main()
