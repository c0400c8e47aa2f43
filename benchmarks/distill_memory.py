"""Claim: the chunked KD loss peaks at <= 0.25x the memory of the full-logits one (target), same loss.

    PYTHONPATH=src python benchmarks/distill_memory.py [--tokens 2048] [--vocab 151936] [--dtype float32]

The loss is logit distillation's β·CE + (1−β)·T²·KL(teacher‖student) over ``--tokens`` completion
tokens at Qwen2.5's vocabulary (151,936), from the final hidden states of a Qwen2.5-Math-1.5B-sized
student (1,536) and a 7B-sized teacher (3,584), forward and backward. Baseline: the implementation
this project had before (kept only here, in ``full_logits_kd``): both LM heads project every
position to full-vocabulary logits, cast to float32, and CE + KL run through autograd. Ours:
``r1_recipe.distill.kd_loss``, which projects ``KD_CHUNK_TOKENS`` tokens at a time and forms the
student's gradient per chunk.

Peak memory is what the loss adds on top of its inputs (hidden states and heads, allocated
first), gradients included. Each variant runs in a fresh child process of this run, so neither
sees the other's allocations: on CUDA ``torch.cuda.max_memory_allocated``, on CPU the process's
peak resident set (``VmHWM``) minus its resident set just before the loss. Both children build
the same inputs from one seed; the parent prints the ratio, the loss difference and the largest
gradient difference. The baseline at the default size needs ~12 GB on CPU: check free memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from r1_recipe.distill import KD_CHUNK_TOKENS, kd_loss

BETA, TEMPERATURE = 0.5, 1.0


def full_logits_kd(student_hidden, student_head, teacher_hidden, teacher_head, labels, *, beta, temperature,
                   vocab_size):
    """The previous implementation: the models' full logits [B, L, V], shifted, then the loss on them."""
    student_logits = student_head(student_hidden)[:, :-1]
    with torch.no_grad():
        teacher_logits = teacher_head(teacher_hidden)[:, :-1]
    labels = labels[:, 1:]
    v = vocab_size
    mask = labels != -100
    s = student_logits[..., :v][mask].float()
    t = teacher_logits[..., :v][mask].float()
    n = s.shape[0]
    ce = F.cross_entropy(s, labels[mask], reduction="sum") / n
    log_s = F.log_softmax(s / temperature, dim=-1)
    log_t = F.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum") / n * temperature**2
    return beta * ce + (1.0 - beta) * kl


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(variant: str, tokens: int, vocab: int, student_hidden: int, teacher_hidden: int, dtype: str,
            grad_out: str) -> dict:
    """Run one variant on fresh inputs; return its peak memory above the inputs, loss and seconds."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    kw = {"device": device, "dtype": getattr(torch, dtype)}
    s_head = torch.nn.Linear(student_hidden, vocab, bias=False, **kw)
    t_head = torch.nn.Linear(teacher_hidden, vocab, bias=False, **kw).requires_grad_(False)
    with torch.no_grad():  # Qwen2.5-scale init: logits of a few units, like a trained model's
        s_head.weight.normal_(0, 0.02)
        t_head.weight.normal_(0, 0.02)
    s_h = torch.randn(1, tokens + 1, student_hidden, **kw).requires_grad_()
    t_h = torch.randn(1, tokens + 1, teacher_hidden, **kw)
    labels = torch.randint(0, vocab, (1, tokens + 1), device=device)
    labels[0, 0] = -100  # position 0 is never a target: L positions predict L - 1 = tokens labels
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_kib("VmRSS") * 1024
    started = time.perf_counter()
    if variant == "old":
        loss = full_logits_kd(s_h, s_head, t_h, t_head, labels, beta=BETA, temperature=TEMPERATURE,
                              vocab_size=vocab)
    else:
        shifted = labels[:, 1:]
        mask = shifted != -100
        loss, _ = kd_loss(s_h[:, :-1][mask], s_head, t_h[:, :-1][mask], t_head, shifted[mask], beta=BETA,
                          temperature=TEMPERATURE, vocab_size=vocab)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _rss_kib("VmHWM") * 1024 - before
    seconds = time.perf_counter() - started
    torch.save({"hidden": s_h.grad.float().cpu(), "weight_norm": s_head.weight.grad.float().norm().item()}, grad_out)
    return {"variant": variant, "device": device, "peak_bytes": peak, "loss": loss.item(), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--student-hidden", type=int, default=1536)
    p.add_argument("--teacher-hidden", type=int, default=3584)
    p.add_argument("--dtype", default="float32", help="of the hidden states and heads (bfloat16 on a GPU)")
    p.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    p.add_argument("--grad-out", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [str(x) for x in (a.tokens, a.vocab, a.student_hidden, a.teacher_hidden)]
    if a.child:
        print(json.dumps(measure(a.child, a.tokens, a.vocab, a.student_hidden, a.teacher_hidden, a.dtype,
                                 a.grad_out)))
        return
    results, grads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("old", "new"):
            grad_out = str(Path(tmp) / f"{variant}.pt")
            cmd = [sys.executable, __file__, "--child", variant, "--grad-out", grad_out, "--tokens", sizes[0],
                   "--vocab", sizes[1], "--student-hidden", sizes[2], "--teacher-hidden", sizes[3], "--dtype", a.dtype]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[variant] = json.loads(line)
            grads[variant] = torch.load(grad_out)
    old, new = results["old"], results["new"]
    gib = 2**30
    hidden_diff = (grads["old"]["hidden"] - grads["new"]["hidden"]).abs().max().item()
    norm_diff = abs(grads["old"]["weight_norm"] - grads["new"]["weight_norm"]) / grads["old"]["weight_norm"]
    print(f"KD loss, {a.tokens} tokens x vocab {a.vocab:,}, student/teacher hidden {a.student_hidden}/"
          f"{a.teacher_hidden}, {a.dtype} on {old['device']}; chunk {KD_CHUNK_TOKENS} tokens")
    print(f"full logits (before) : peak {old['peak_bytes'] / gib:.2f} GiB, {old['seconds']:.1f} s")
    print(f"chunked (ours)       : peak {new['peak_bytes'] / gib:.2f} GiB, {new['seconds']:.1f} s")
    print(f"peak memory ratio    : {new['peak_bytes'] / old['peak_bytes']:.3f}x (target <= 0.25x)")
    print(f"loss difference      : {abs(old['loss'] - new['loss']):.2e} (loss {old['loss']:.6f}; target <= 1e-5)")
    print(f"gradient difference  : hidden max abs {hidden_diff:.2e}, head-weight norm rel {norm_diff:.2e}")


if __name__ == "__main__":
    main()
