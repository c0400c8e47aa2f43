"""The rejection-sampling stage's options (the recipe keys): one module that the stage
(:mod:`r1_recipe.rejection_sampling`) and its output writer (:mod:`r1_recipe.rejection_output`)
both import, so neither imports the other's module for them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from r1_recipe.configs import ConfigError, PromptArgs
from r1_recipe.rejection_filters import Readability
from r1_recipe.sampling import SamplerArgs


@dataclass
class RejectionSamplingConfig(SamplerArgs, PromptArgs):
    model_name_or_path: str | None = field(default=None, metadata={"help": "The RL-stage-1 model folder or Hub id."})
    dataset_mixture: list[dict] | None = field(default=None, metadata={
        "help": "Reasoning prompts: list of {path, name, split, weight, columns} sources (see data/loading.py)."})
    mixture_size: int | None = field(default=None, metadata={"help": "Prompts to use; None = all rows."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder of shards, stats and markers."})
    num_samples: int = field(default=16, metadata={"help": "Completions sampled per prompt."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling."})
    max_new_tokens: int = field(default=32768, metadata={"help": "Generation budget per completion."})
    reward_funcs: list[str] = field(default_factory=lambda: ["accuracy", "format"], metadata={
        "help": "Rewards (registry names) computed for every sample and stored with kept rows."})
    reward_kwargs: dict | None = field(default=None, metadata={
        "help": "Options per reward: {name: {option: value}}; `accuracy` reads answer_column by default."})
    reward_thresholds: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0}, metadata={
        "help": "Keep rule: {reward name: τ}; a sample is kept only if every listed reward that scores its row "
                "(by reward_type: accuracy on math rows, code on code rows) is ≥ τ; code: 1.0 = every test passes."})
    max_per_prompt: int = field(default=4, metadata={"help": "k: at most this many kept samples per prompt."})
    near_duplicate_threshold: float | None = field(default=0.9, metadata={
        "help": "Drop a sample whose reasoning shares this Jaccard share of word 3-grams with a kept one (None: off)."})
    language: str = field(default="en", metadata={"help": "Target language of the reasoning."})
    min_language_consistency: float | None = field(default=0.95, metadata={
        "help": "Drop reasoning with a smaller share of words in the target language (None: off)."})
    max_paragraph_chars: int | None = field(default=3000, metadata={
        "help": "Drop reasoning with a longer paragraph (characters between blank lines; None: off)."})
    drop_code_in_reasoning: bool = field(default=True, metadata={
        "help": "Drop reasoning holding a ``` code block (never on reward_type: code rows, whose reasoning drafts code)."})
    max_repetition: float | None = field(default=0.3, metadata={
        "help": "Drop reasoning whose share of repeated word 4-grams is above this (None: off)."})
    general_mixture: list[dict] | None = field(default=None, metadata={
        "help": "Non-reasoning sources (rows with messages, or problem/answer[/reasoning] columns), tagged general."})
    general_fraction: float = field(default=0.25, metadata={
        "help": "Share of general rows in the output (paper: 200k of 800k = 0.25); limited by the rows available."})
    pass_rate_range: list[float] | None = field(default=None, metadata={
        "help": "[lo, hi]: also write rl_prompts.parquet, the prompts whose pass rate is in [lo, hi]."})
    write_sft_data: bool = field(default=True, metadata={
        "help": "Write the SFT shards; false with pass_rate_range = the prompt-filtering mode only."})
    chunk_size: int = field(default=512, metadata={
        "help": "Prompts per chunk: the unit written atomically and redone after a kill."})
    num_shards: int | None = field(default=None, metadata={
        "help": "Jobs splitting the chunks by index range (None: SLURM_ARRAY_TASK_COUNT, else 1)."})
    shard_index: int | None = field(default=None, metadata={
        "help": "This job's shard, 0-based (None: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, else 0)."})
    seed: int = field(default=0, metadata={"help": "Seed of the prompt order, the sampling and the general mix."})
    merge: bool = field(default=True, metadata={
        "help": "When every chunk is done, write the mix and stats (false for the sampler processes this "
                "stage starts itself with data_parallel_size > 1: the starting process merges)."})

    def __post_init__(self):
        super().__post_init__()
        for key in ("model_name_or_path", "dataset_mixture", "output_dir"):
            if not getattr(self, key):
                raise ConfigError(f"{key} is required (see recipes/demo/rejection.yaml)")
        if self.template != "r1":
            raise ConfigError("template: rejection sampling writes chat `messages` for SFT stage 2; use template r1")
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        missing = [name for name in self.reward_thresholds if name not in self.reward_funcs]
        if missing:
            raise ConfigError(f"reward_thresholds names {missing}, which are not in reward_funcs {self.reward_funcs}: "
                              "add them to reward_funcs")
        if self.num_samples < 1 or self.max_per_prompt < 1 or self.chunk_size < 1:
            raise ConfigError("num_samples, max_per_prompt and chunk_size must be ≥ 1")
        if not 0.0 <= self.general_fraction < 1.0:
            raise ConfigError(f"general_fraction must be in [0, 1), got {self.general_fraction}")
        if self.pass_rate_range is not None and (
            len(self.pass_rate_range) != 2 or not 0.0 <= self.pass_rate_range[0] <= self.pass_rate_range[1] <= 1.0
        ):
            raise ConfigError(f"pass_rate_range must be [lo, hi] with 0 ≤ lo ≤ hi ≤ 1, got {self.pass_rate_range}")
        if not self.write_sft_data and self.pass_rate_range is None:
            raise ConfigError("write_sft_data: false leaves nothing to write; set pass_rate_range: [lo, hi]")
        env = os.environ
        if self.num_shards is None:
            self.num_shards = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
        if self.shard_index is None:
            self.shard_index = int(env.get("SLURM_ARRAY_TASK_ID", 0)) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        if not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(f"shard_index {self.shard_index} is outside 0..{self.num_shards - 1} (num_shards)")
        if self.data_parallel_size < 1 or self.tensor_parallel_size < 1:
            raise ConfigError("data_parallel_size and tensor_parallel_size must be ≥ 1")

    def readability(self) -> Readability:
        return Readability(self.language, self.min_language_consistency, self.max_paragraph_chars,
                           self.drop_code_in_reasoning, self.max_repetition)

    def fingerprint(self) -> dict:
        """The options that decide what a chunk holds: a restart with other values must not mix outputs."""
        skip = {"output_dir", "num_shards", "shard_index", "backend", "batch_size", "tensor_parallel_size",
                "data_parallel_size", "gpu_memory_utilization", "max_model_len", "vllm_kwargs", "general_mixture",
                "general_fraction", "pass_rate_range", "merge"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
