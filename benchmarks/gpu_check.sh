#!/usr/bin/env bash
# The GPU path end to end on a lent GPU node, no network and no vLLM, in at most ~8 minutes:
#   bash benchmarks/gpu_check.sh                     # all four launcher configs
#   CONFIGS="ddp zero3" bash benchmarks/gpu_check.sh # a subset; WORK=folder to keep the outputs elsewhere
# 1. the GPU tests (pytest -m gpu tests/gpu);
# 2. a random-init model with Qwen2.5-0.5B's architecture: SFT (4 steps) and GRPO (2 steps, transformers
#    generation, rewards format + an RL-stage-2 reward model) through the Makefile targets `make stage1` and
#    `make rl1` under ACCELERATE=ddp, zero2, zero3 and fsdp, on every visible GPU (NUM_PROCESSES);
# 3. each output folder loaded in a fresh process (trained weights, same parameter count, tokenizer);
#    and moved as far as the learning rate says (the share of moved block weights against the expected one:
#    16-bit weights without an fp32 master copy round small steps away);
# 4. a table of steps/s, peak GPU memory and the reward model's score spread (> 0: it scores, under ZeRO-3
#    included) per configuration. Logs: WORK/<stage>-<config>/launch.log.
# Python: VENV's when VENV is set or .venv exists, else the machine's own (PYTHON, default python3: a bare GPU
# machine's torch, transformers, accelerate, peft...). WHEELS=folder installs carried wheels into it first
# (pip --no-index). Whatever is still missing is named, and nothing runs.
# Environment: VENV, PYTHON, WHEELS, WORK (default runs/gpu_check), CONFIGS, STEP_TIMEOUT (seconds per launch,
# default 150).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
if [ -n "${VENV:-}" ] || { [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; }; then
  VENV="${VENV:-.venv}"
  PY="$VENV/bin/python"
  [ -x "$PY" ] || { echo "gpu_check: $PY does not exist (unset VENV to use the machine's python3)" >&2; exit 2; }
else
  PY="$(command -v "${PYTHON:-python3}")" || { echo "gpu_check: no ${PYTHON:-python3} on PATH" >&2; exit 2; }
  # the Makefile runs $(VENV)/bin/python and $(VENV)/bin/accelerate: point both at this Python
  VENV="$(mktemp -d)" && mkdir "$VENV/bin" && ln -s "$PY" "$VENV/bin/python"
  printf '#!/bin/sh\nexec "%s" -c "from accelerate.commands.accelerate_cli import main; main()" "$@"\n' "$PY" \
    > "$VENV/bin/accelerate" && chmod +x "$VENV/bin/accelerate"
fi
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/*.whl \
    || { echo "gpu_check: installing the wheels in $WHEELS into $PY failed" >&2; exit 2; }
fi
WORK="${WORK:-runs/gpu_check}"
CONFIGS="${CONFIGS:-ddp zero2 zero3 fsdp}"
STEP_TIMEOUT="${STEP_TIMEOUT:-150}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false
START=$SECONDS
FAILED=0

"$PY" benchmarks/gpu_check.py needs "$CONFIGS" || exit 2  # names each missing package
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: $PY's torch $("$PY" -c 'import torch; print(torch.__version__)') sees no CUDA device" >&2; exit 2; }
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
