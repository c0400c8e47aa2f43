#!/usr/bin/env bash
# The GPU path end to end on a lent GPU node, no network and no vLLM, in at most ~8 minutes:
#   bash benchmarks/gpu_check.sh                     # all four launcher configs
#   CONFIGS="ddp zero3" bash benchmarks/gpu_check.sh # a subset; WORK=folder to keep the outputs elsewhere
# 1. the GPU tests (pytest -m gpu tests/gpu);
# 2. a random-init model with Qwen2.5-0.5B's architecture: SFT (4 steps) and GRPO (2 steps, transformers
#    generation, rewards format + an RL-stage-2 reward model) through the Makefile targets `make stage1` and
#    `make rl1` under ACCELERATE=ddp, zero2, zero3 and fsdp, on every visible GPU (NUM_PROCESSES);
# 3. each output folder loaded in a fresh process (trained weights, same parameter count, tokenizer);
# 4. a table of steps/s, peak GPU memory and the reward model's score spread (> 0: it scores, under ZeRO-3
#    included) per configuration. Logs: WORK/<stage>-<config>/launch.log.
# Environment: VENV (default .venv, needs torch with CUDA, deepspeed: pip install -e ".[deepspeed]"),
# WORK (default runs/gpu_check), CONFIGS, STEP_TIMEOUT (seconds per launch, default 150).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
WORK="${WORK:-runs/gpu_check}"
CONFIGS="${CONFIGS:-ddp zero2 zero3 fsdp}"
STEP_TIMEOUT="${STEP_TIMEOUT:-150}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false
START=$SECONDS
FAILED=0

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: no CUDA device visible to $PY: nothing to check" >&2; exit 2; }
nvidia-smi -L

echo "== GPU tests"
OMP_NUM_THREADS=1 "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider || FAILED=1

echo "== prepare $WORK"
rm -rf "$WORK" && mkdir -p "$WORK"
"$PY" benchmarks/gpu_check.py prepare "$WORK" || exit 1

for config in $CONFIGS; do
  for pair in "stage1:sft" "rl1:grpo"; do
    target="${pair%%:*}" stage="${pair##*:}"
    run="$WORK/$stage-$config"
    mkdir -p "$run"
    echo "== make $target ACCELERATE=$config ($((SECONDS - START)) s so far)"
    if timeout "$STEP_TIMEOUT" make --no-print-directory "$target" "VENV=$VENV" "ACCELERATE=$config" \
        "RECIPE=$WORK/$stage.yaml" "ARGS=--output_dir $run" > "$run/launch.log" 2>&1 \
        && "$PY" benchmarks/gpu_check.py verify "$run"; then
      echo ok > "$run/STATUS"
    else
      echo "FAILED (see $run/launch.log)" > "$run/STATUS"
      tail -n 25 "$run/launch.log"
      FAILED=1
    fi
  done
done

echo "== results ($((SECONDS - START)) s)"
"$PY" benchmarks/gpu_check.py table "$WORK"
exit "$FAILED"
