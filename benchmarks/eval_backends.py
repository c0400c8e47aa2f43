"""Claim: vLLM generates faster than transformers ``generate`` on the same prompts, on a GPU and on CPU
(vLLM's own CPU build, ``make install-vllm``), and scores the same (``tests/test_vllm.py`` checks that).

    .venv-vllm/bin/python benchmarks/eval_backends.py --models tiny ~/.cache/r1-recipe/assets/smollm2-135m-instruct

One run, per model: the same chat prompts (held-out arithmetic problems), the same sampling (n samples,
T=0.7, max_new_tokens), first through ``TransformersSampler`` (batched ``generate``, float32 on CPU) and then
through ``VLLMSampler``; prints generated tokens per second of each and their ratio. Tokens are the
completions re-tokenized, so both backends are counted alike; an engine's start-up (and vLLM's compile) is
timed apart and excluded, a short warm-up call first. ``tiny`` builds the demo's 1 M-parameter model.
Measure on an idle machine: run nothing beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def measure(model: str, backend: str, prompts: list, params, **options) -> dict:
    from r1_recipe.sampling import SamplingParams, make_sampler, release

    t0 = time.perf_counter()
    sampler = make_sampler(backend, model, seed=0, **options)
    start = time.perf_counter() - t0
    sampler.generate(prompts[:4], SamplingParams(n=1, temperature=0.7, top_p=1.0, max_new_tokens=8))  # warm-up
    t0 = time.perf_counter()
    out = sampler.generate(prompts, params)
    seconds = time.perf_counter() - t0
    tokens = sum(len(sampler.tokenizer(c, add_special_tokens=False)["input_ids"]) for group in out for c in group)
    release(sampler)
    return {"backend": backend, "start_seconds": round(start, 1), "seconds": round(seconds, 2), "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1)}


def main() -> None:
    from r1_recipe.data import arithmetic
    from r1_recipe.sampling import SamplingParams
    from r1_recipe.tiny import build_tiny_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny"], help="model folders or Hub ids; 'tiny' builds one")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--num_samples", type=int, default=1)
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=256, help="transformers: sequences per generate call")
    p.add_argument("--backends", default="transformers,vllm")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    problems = arithmetic.generate(a.prompts, split="test", seed=0)
    prompts = [[{"role": "user", "content": f"{row['problem']} Explain step by step."}] for row in problems]
    params = SamplingParams(n=a.num_samples, temperature=0.7, top_p=1.0, max_new_tokens=a.max_new_tokens, seed=0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models:
            path = str(build_tiny_model(os.path.join(tmp, "tiny"), seed=0)) if model == "tiny" else model
            rows = [measure(path, b, prompts, params, batch_size=a.batch_size) for b in a.backends.split(",")]
            for r in rows:
                print(f"{model:<50} {r['backend']:<13} {r['tokens_per_second']:>8.1f} tokens/s "
                      f"({r['tokens']} tokens in {r['seconds']:.1f} s; start-up {r['start_seconds']:.0f} s)")
            by = {r["backend"]: r for r in rows}
            if {"transformers", "vllm"} <= set(by):
                ratio = by["vllm"]["tokens_per_second"] / by["transformers"]["tokens_per_second"]
                print(f"{model:<50} vLLM / transformers: {ratio:.2f}x")
                by["ratio"] = round(ratio, 2)
            results[model] = by
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(f"1-minute load average at the end: {load}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "load_1min": load, "prompts": a.prompts, "num_samples": a.num_samples,
                       "max_new_tokens": a.max_new_tokens}, f, indent=2)


if __name__ == "__main__":  # vLLM spawns its engine: the guard is required
    main()
