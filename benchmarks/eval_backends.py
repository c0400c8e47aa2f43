"""Claim: the vLLM backend scores like the transformers backend (same prompts, same scoring:
pass@1 within sampling noise) and generates many times faster. Needs a CUDA GPU with vLLM.

    PYTHONPATH=src python benchmarks/eval_backends.py --model Qwen/Qwen2.5-Math-1.5B-Instruct \\
        --benchmark math_500 --num_problems 50 --num_samples 4 --max_new_tokens 2048
    PYTHONPATH=src python benchmarks/eval_backends.py --model runs/demo/stage1 --benchmark arithmetic \\
        --max_new_tokens 64 --backends transformers        # CPU smoke run of the script itself

Both runs use the same seed, problems and protocol (T=0.6, top-p 0.95 unless overridden); the
samples differ (each backend has its own random stream), so agreement means the pass@1
difference is within 3 standard errors of the difference. Throughput is sampled completions
per second of generation (greedy pass excluded), as each backend's summary records it.
"""

from __future__ import annotations

import argparse
import json
import math

from r1_recipe.evaluate import EvalConfig, evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", default="math_500", help="NAME, NAME=PATH or a local file, as for evaluate")
    p.add_argument("--num_problems", type=int, default=50)
    p.add_argument("--num_samples", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--batch_size", type=int, default=64, help="transformers: sequences per generate call")
    p.add_argument("--backends", default="transformers,vllm")
    a = p.parse_args()
    results = {}
    for backend in a.backends.split(","):
        cfg = EvalConfig(model_name_or_path=a.model, benchmark=a.benchmark, num_problems=a.num_problems,
                         num_samples=a.num_samples, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                         greedy=False, backend=backend, batch_size=a.batch_size)
        results[backend] = evaluate(cfg)
        s = results[backend]
        print(f"{backend:<13} pass@1 {s['pass@1']:.3f} ± {s['pass@1_stderr']:.3f}  cons@{s['samples_per_problem']} "
              f"{s['cons@k']:.3f}  {s['samples_per_second']:.2f} samples/s  ({s['seconds']:.0f} s)")
    if {"transformers", "vllm"} <= set(results):
        t, v = results["transformers"], results["vllm"]
        diff, se = v["pass@1"] - t["pass@1"], math.hypot(v["pass@1_stderr"], t["pass@1_stderr"])
        speedup = v["samples_per_second"] / t["samples_per_second"]
        print(f"difference {diff:+.3f} (±{se:.3f}): {'agree' if abs(diff) <= 3 * se + 1e-9 else 'DISAGREE'}; "
              f"vLLM is {speedup:.1f}× faster")
    print(json.dumps({b: {k: s[k] for k in ("pass@1", "pass@1_stderr", "cons@k", "samples_per_second")}
                      for b, s in results.items()}))


if __name__ == "__main__":
    main()
