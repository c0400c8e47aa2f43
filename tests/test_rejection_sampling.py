"""Rejection sampling: the keep rule and each filter on crafted samples, the general mix, the
pass-rate prompt set, sharding, a real SIGKILL + restart, and SFT training on the output."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.rejection_sampling import RejectionSamplingConfig, main, run, underscored

LONG = " ".join(f"w{i}" for i in range(100))  # 100 distinct words: no repetition, but 3-grams to compare


def crafted(answer: int) -> list[str]:
    """One completion per outcome, in a fixed order (index -> expected fate with k=2)."""
    ok = f"\\boxed{{{answer}}}"
    return [
        f"<think>\n{LONG}\n</think>\n{ok}",                                    # 0 kept (first pick)
        f"<think>\n{LONG}  \n</think>\n {ok}",                                 # 1 exact duplicate of 0
        f"<think>\nquick sum gives {answer}\n</think>\n{ok}",                  # 2 kept (least like 0)
        f"<think>\n{LONG}\n</think>\n\\boxed{{{answer + 1}}}",                 # 3 wrong answer
        f"the answer is {ok}",                                                 # 4 right, no <think>: format
        f"<think>\n先算个位 然后 十位 the sum is {answer}\n</think>\n{ok}",      # 5 mixed language
        f"<think>\n```python\nprint({answer})\n```\n</think>\n{ok}",           # 6 code in the reasoning
        f"<think>\n{'wait let me check again ' * 30}\n</think>\n{ok}",         # 7 heavy repetition
        f"<think>\n{'digits ' * 600}end\n</think>\n{ok}",                      # 8 one 4,000-char paragraph
        f"<think>\n{LONG.replace('w50', 'v50')}\n</think>\n{ok}",       # 9 near duplicate of 0
        f"<think>\n{LONG[:200]} so the total is {answer}\n</think>\n{ok}",     # 10 distinct, over k
    ]


EXPECTED = {"reward:accuracy": 1, "reward:format": 1, "truncated": 0, "mixed_language": 1, "code_in_reasoning": 1,
            "repetition": 1, "long_paragraph": 1, "exact_duplicate": 1, "near_duplicate": 1, "over_k": 1}


class CraftedSampler:
    """Stands in for a model: the crafted completions for each prompt's problem; counts calls."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params, *, progress=False):
        self.calls += 1
        out = []
        for p in prompts:
            a, op, b = re.search(r"(\d+) ([+-]) (\d+)", p[-1]["content"]).groups()
            out.append(crafted(int(a) + int(b) if op == "+" else int(a) - int(b))[: params.n])
        return out


def _config(tmp_path, **overrides) -> RejectionSamplingConfig:
    data = tmp_path / "prompts.jsonl"
    if not data.exists():
        write_jsonl(arithmetic.generate(12, seed=3), data)
        write_jsonl(arithmetic.generate_general(50, seed=0), tmp_path / "general.jsonl")
    options = dict(model_name_or_path="unused", dataset_mixture=[{"path": str(data)}],
                   output_dir=str(tmp_path / "out"), num_samples=11, max_per_prompt=2, chunk_size=5,
                   general_mixture=[{"path": str(tmp_path / "general.jsonl")}], reward_kwargs={"accuracy": {"workers": 1}})
    return RejectionSamplingConfig(**{**options, **overrides})


def _counts(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("generation_seconds", "samples_per_second")}


def test_keep_rule_filters_dedup_and_general_mix_on_crafted_samples(tmp_path):
    config = _config(tmp_path)
    stats = run(config, sampler=CraftedSampler())
    prompts = stats["prompts"]
    duplicates = stats["duplicate_prompts_removed"]
    assert prompts + duplicates == 12 and prompts >= 8
    assert stats["dropped"] == {k: v * prompts for k, v in EXPECTED.items()}
    assert stats["kept_reasoning"] == 2 * prompts
    assert stats["general"] == round(2 * prompts / 3)  # 3 : 1, the paper's 600k : 200k
    ds = load_dataset(config.output_dir, split="train")
    reasoning = ds.filter(lambda r: r["source"] == "reasoning")
    assert sorted(set(reasoning["sample_index"])) == [0, 2]
    assert len(set(reasoning["prompt_id"])) == prompts
    row = reasoning[0]
    assert row["messages"][-1]["role"] == "assistant" and row["rewards"] == {"accuracy": 1.0, "format": 1.0}
    assert row["messages"][-1]["content"] == crafted(int(row["reference"]))[row["sample_index"]]
    general = ds.filter(lambda r: r["source"] == "general")
    assert general[0]["messages"][-1]["content"].startswith("<think>\n")  # the plan becomes the reasoning
    rates = [json.loads(line) for line in Path(config.output_dir, "pass_rates.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in rates] == list(range(prompts))
    assert all(r["pass_rate"] == 9 / 11 for r in rates)  # all but the wrong answer and the missing tags


class TruncatingSampler(CraftedSampler):
    """The model hit max_new_tokens on sample 2 (a kept one): a right box, then cut mid-word."""

    def generate(self, prompts, params, *, progress=False):
        groups = super().generate(prompts, params, progress=progress)
        groups = [[c + " so the ans" if j == 2 else c for j, c in enumerate(g)] for g in groups]
        self.last_truncated = [[j == 2 for j in range(len(g))] for g in groups]
        return groups


def test_samples_cut_by_the_token_budget_are_never_kept(tmp_path):
    # The sampler's truncation flags never reached the filters: "\boxed{N} so the ans" was kept
    # and SFT stage 2 learned to stop mid-word.
    config = _config(tmp_path)
    stats = run(config, sampler=TruncatingSampler())
    prompts = stats["prompts"]
    assert stats["truncated"] == prompts and stats["dropped"]["truncated"] == prompts
    assert stats["kept_reasoning"] == 2 * prompts  # sample 10 takes its place
    reasoning = load_dataset(config.output_dir, split="train").filter(lambda r: r["source"] == "reasoning")
    assert sorted(set(reasoning["sample_index"])) == [0, 10]
    assert not any(r["messages"][-1]["content"].endswith("the ans") for r in reasoning)
    rates = [json.loads(line) for line in Path(config.output_dir, "pass_rates.jsonl").read_text().splitlines()]
    assert all(r["pass_rate"] == 9 / 11 for r in rates)  # the keep rule's verdicts, as before


def test_a_general_shard_of_an_earlier_run_does_not_survive_a_general_count_of_0(tmp_path):
    # general_fraction is not part of a chunk: a rerun in the same folder only rewrites the mix
    config = _config(tmp_path, num_samples=4)
    assert run(config, sampler=CraftedSampler())["general"] > 0
    config.general_fraction = 0.0
    stats = run(config, sampler=CraftedSampler())
    assert stats["general"] == 0
    ds = load_dataset(config.output_dir, split="train")
    assert len(ds) == stats["rows"] and set(ds["source"]) == {"reasoning"}  # the old general rows were still there


R1_DISTILL_TEMPLATE = (  # DeepSeek-R1-Distill's generation prompt opens the reasoning block
    "{% for message in messages %}{{ '<｜User｜>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


class ContinuingSampler(CraftedSampler):
    """A model behind a template that opens <think>: its completions start inside the reasoning."""

    def __init__(self):
        super().__init__()
        from r1_recipe.tiny import build_tokenizer

        self.tokenizer = build_tokenizer()
        self.tokenizer.chat_template = R1_DISTILL_TEMPLATE

    def generate(self, prompts, params, *, progress=False):
        groups = super().generate(prompts, params, progress=progress)
        return [[c.removeprefix("<think>") for c in group] for group in groups]


def test_a_template_that_opens_think_does_not_fail_every_format_check(tmp_path):
    # Without the template's opening every completion lacks <think>: format 0, nothing kept.
    stats = run(_config(tmp_path, num_samples=3, general_mixture=None), sampler=ContinuingSampler())
    assert stats["kept_reasoning"] == 2 * stats["prompts"]
    assert "reward:format" not in stats["dropped"]


def test_a_restart_redoes_only_unmarked_chunks_and_other_settings_are_refused(tmp_path):
    config = _config(tmp_path)
    first = run(config, sampler=CraftedSampler())
    again = CraftedSampler()
    assert run(config, sampler=again) == first and again.calls == 0
    results = json.loads(Path(config.output_dir, "results.json").read_text())
    assert results["stage"] == "rejection_sampling" and results["kept_reasoning"] == first["kept_reasoning"]
    rows = load_dataset(config.output_dir, split="train").to_list()
    # killed after writing chunk 1's shard but before its marker, and mid-write of another file
    out = Path(config.output_dir)
    (out / "progress" / "chunk-00001.json").unlink()
    (out / "data" / "train-00001.parquet").write_bytes(b"half a parquet file")
    (out / "data" / f".train-00002.parquet.{socket.gethostname()}.999999999.tmp").write_bytes(b"junk")
    (out / "stats.json").unlink()
    redo = CraftedSampler()
    assert _counts(run(config, sampler=redo)) == _counts(first) and redo.calls == 1  # only the unmarked chunk
    assert load_dataset(config.output_dir, split="train").to_list() == rows
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(ConfigError, match="max_per_prompt"):
        run(_config(tmp_path, max_per_prompt=3), sampler=CraftedSampler())


def test_shards_of_an_array_job_add_up_to_the_single_run(tmp_path):
    single = _config(tmp_path)
    run(single, sampler=CraftedSampler())
    parts = [_config(tmp_path, output_dir=str(tmp_path / "sharded"), num_shards=3, shard_index=i) for i in range(3)]
    assert run(parts[0], sampler=CraftedSampler()) == {"chunks_done": 1, "chunks": 3}
    run(parts[2], sampler=CraftedSampler())
    run(parts[1], sampler=CraftedSampler())  # the last one to finish writes the mix
    whole = load_dataset(single.output_dir, split="train").to_list()
    sharded = load_dataset(parts[0].output_dir, split="train").to_list()
    assert sharded == whole


def test_pass_rate_mode_writes_only_the_prompts_worth_rl(tmp_path):
    # num_samples 4: samples 0..3 of the crafted list, of which 3 pass -> pass rate 0.75 for every prompt
    config = _config(tmp_path, num_samples=4, write_sft_data=False, pass_rate_range=[0.1, 0.7])
    stats = run(config, sampler=CraftedSampler())
    assert stats["rl_prompts"]["kept"] == 0 and not Path(config.output_dir, "data").exists()
    config = _config(tmp_path, output_dir=str(tmp_path / "b"), num_samples=4, write_sft_data=False,
                     pass_rate_range=[0.1, 0.9])
    run(config, sampler=CraftedSampler())
    rl = load_dataset("parquet", data_files=str(Path(config.output_dir, "rl_prompts.parquet")), split="train")
    assert len(rl) == stats["prompts"] and set(rl["pass_rate"]) == {0.75}
    assert {"problem", "solution"} <= set(rl.column_names)  # the original columns, for the GRPO stage


def test_config_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match="not `accelerate launch`"):
        run(_config(tmp_path), sampler=CraftedSampler())
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ConfigError, match="add them to reward_funcs"):
        _config(tmp_path, reward_thresholds={"cosine": 0.5})
    with pytest.raises(ConfigError, match="shard_index 3"):
        _config(tmp_path, num_shards=2, shard_index=3)
    with pytest.raises(ConfigError, match="pass_rate_range"):
        _config(tmp_path, pass_rate_range=[0.9, 0.1])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", "output_dir": "o", "dataset_mixture": [{"path": "p"}],
                                      "max_per_promt": 3}))
    with pytest.raises(ConfigError, match="max_per_prompt"):
        parse_config(RejectionSamplingConfig, ["--config", str(recipe)])


def _kill_recipe(tmp_path, model, data, out) -> str:
    recipe = {"model_name_or_path": str(model), "output_dir": str(out), "dataset_mixture": [{"path": str(data)}],
              "num_samples": 4, "max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0, "chunk_size": 4,
              "reward_funcs": ["format"], "reward_thresholds": {}, "max_per_prompt": 2,
              "min_language_consistency": None, "max_repetition": None,  # random text: keep enough rows
              "general_mixture": [{"path": str(data.parent / "general.jsonl")}],
              "backend": "transformers", "batch_size": 64, "seed": 0}
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture
def one_thread():
    """One torch thread, as the killed subprocess gets: same numerics in both, and on a shared
    2-core box a tiny model runs ~8x faster on one thread than fighting for two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    torch.set_num_threads(before)


def test_sigkill_mid_run_then_restart_equals_an_uninterrupted_run(tmp_path, tiny_model_dir, one_thread):
    data = tmp_path / "prompts.jsonl"
    write_jsonl(arithmetic.generate(64, seed=5), data)
    write_jsonl(arithmetic.generate_general(40, seed=0), tmp_path / "general.jsonl")
    killed = tmp_path / "killed"
    recipe = _kill_recipe(tmp_path, tiny_model_dir, data, killed)
    proc = subprocess.Popen([sys.executable, "-m", "r1_recipe.rejection_sampling", "--config", recipe],
                            env=one_thread, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "progress" / "chunk-00001.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((killed / "progress").glob("chunk-*.json"))
    assert 2 <= len(done) < 16 and not (killed / "stats.json").exists()  # killed mid-run

    resumed = main(["--config", recipe])
    reference = main(["--config", _kill_recipe(tmp_path, tiny_model_dir, data, tmp_path / "reference")])
    assert _counts(resumed) == _counts(reference)
    assert resumed["prompts"] == 64 - resumed["duplicate_prompts_removed"] and resumed["kept_reasoning"] > 0
    rows = load_dataset(str(killed), split="train").to_list()
    assert rows == load_dataset(str(tmp_path / "reference"), split="train").to_list()
    rates = [json.loads(x) for x in (killed / "pass_rates.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in rates] == list(range(resumed["prompts"]))  # no gap, no duplicate
    assert not list(killed.rglob("*.tmp"))


def test_the_output_trains_in_the_sft_stage_without_conversion(tmp_path, tiny_model_dir, one_thread):
    from r1_recipe.sft import main as sft_main

    config = _config(tmp_path)
    stats = run(config, sampler=CraftedSampler())
    recipe = tmp_path / "stage2.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "stage2"),
        "dataset_mixture": [{"path": config.output_dir}], "reasoning_alpha": 0.75, "max_steps": 2,
        "per_device_train_batch_size": 4, "max_length": 512, "save_strategy": "no", "report_to": "none",
        "logging_steps": 1}))
    results = sft_main(["--config", str(recipe)])
    assert results["global_step"] == 2 and results["train_rows"] == stats["rows"]
    assert results["last_logged_loss"] > 0


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parents[1].glob("recipes/**/rejection*.yaml"))
                         + sorted(Path(__file__).parents[1].glob("recipes/*/rejection/*.yaml")), ids=str)
def test_recipes_parse_and_open_with_their_command(recipe):
    text = recipe.read_text()
    assert text.startswith("#") and "make rejection RECIPE=" + str(recipe.relative_to(Path(__file__).parents[1])) in text
    config = parse_config(RejectionSamplingConfig, underscored(["--config", str(recipe), "--pass-rate-range", "0.2", "0.8"]))
    assert config.pass_rate_range == [0.2, 0.8] and config.reward_thresholds["accuracy"] == 1.0


def _mixed_texts(n: int, seed: int = 0) -> list[str]:
    """Texts mixing scripts at random, inside words and between them: Latin (ASCII and
    accented), Greek, Cyrillic, Han, kana, Hangul, superscripts, math italic letters,
    operators, digits, emoji."""
    import random

    pool = list("abcxyzABC ") * 6 + list("éïçΘθπλжд中文的ひカ한²𝑥√≤×−’→0123456789+=_.,!\n😀")
    rng = random.Random(seed)
    return ["".join(rng.choices(pool, k=rng.randint(0, 60))) for _ in range(n)]


CRAFTED_TEXTS = [
    "so the angle θ = π/3, hence sin θ = √3/2", "add 的 ones", "先算个位 然后 十位 the sum is 4", "écrire ça",
    "ответ 3 so the answer", "abc中def", "x² + 𝑥 = 2", "カタカナ and ひらがな", "한국어 text", "", "   ", "2 + 2 = 4",
    "naïve café", "Δx → 0", "😀 fine", "_under_score_ words", "wait " * 40, LONG,
    "设 x = 3", "设 xy = 3 和 z", "αβγδ is a Greek word, αβ is not", "ℝ and 𝑥 and µ", "λx.x",
]


@pytest.mark.parametrize("language", ["en", "zh", "ru", "el", "ja", "ko"])
def test_the_filters_fast_language_share_equals_the_rewards_definition(language):
    from r1_recipe.rejection_filters import language_share as fast
    from r1_recipe.rewards.language import language_share as reward

    for text in CRAFTED_TEXTS + _mixed_texts(400, seed=len(language)):
        assert fast(text, language) == reward(text, language), (text, language)


def test_the_filters_repetition_and_shingles_equal_the_per_ngram_definitions():
    import zlib

    from r1_recipe.rejection_filters import jaccard, repetition_share, shingles
    from r1_recipe.rewards.language import words as language_words
    from r1_recipe.rewards.length import repetition_penalty

    texts = CRAFTED_TEXTS + _mixed_texts(200) + ["Go on GO on go ON " * 5, "a b " * 3, "A a",
                                                 "答案是四。" * 8, "所以 x=4。所以 x=4。" * 3, "ひらがなカタカナ" * 4]
    for text in texts:
        for n in (1, 3, 4):
            assert repetition_share(text, n) == -repetition_penalty(text, n, -1.0) + 0.0, (text, n)

    def crc_shingles(text):  # the per-n-gram definition (crc32 of each joined 3-gram)
        words = language_words(text)
        if len(words) < 3:
            return frozenset({zlib.crc32(" ".join(words).encode())})
        return frozenset(zlib.crc32(" ".join(words[i : i + 3]).encode()) for i in range(len(words) - 2))

    def crc_jaccard(a, b):
        return len(a & b) / len(a | b) if a or b else 1.0

    pairs = list(zip(texts, texts[1:] + texts[:1])) + [(LONG, LONG.replace("w50", "v50")), (LONG, LONG)]
    for a, b in pairs:
        assert jaccard(shingles(a), shingles(b)) == pytest.approx(crc_jaccard(crc_shingles(a), crc_shingles(b)))


def test_no_prompt_in_the_pass_rate_range_of_a_mixture_writes_an_empty_prompt_set(tmp_path):
    # a mixture of two sources (concatenated, sampled: an indices mapping) and a range no prompt
    # falls in: the empty selection once crashed Dataset.add_column ("tables don't have the same
    # number of rows"), which a random or a saturated model reaches on a real run
    config = _config(tmp_path, num_samples=4, write_sft_data=False, pass_rate_range=[0.1, 0.7], mixture_size=8)
    first = config.dataset_mixture[0]["path"]
    config.dataset_mixture = [{"path": first, "weight": 1}, {"path": first, "weight": 1}]
    stats = run(config, sampler=CraftedSampler())
    import pyarrow.parquet as pq

    rl = pq.read_table(Path(config.output_dir, "rl_prompts.parquet"))
    assert stats["rl_prompts"]["kept"] == 0 and rl.num_rows == 0 and "pass_rate" in rl.column_names


def test_an_output_without_general_rows_or_with_an_empty_chunk_loads_as_sft_data(tmp_path):
    # general_fraction 0 (reasoning only) and a chunk whose samples all fail used to leave
    # zero-row Parquet shards, which datasets cannot read: stage 2 failed on a valid output
    from r1_recipe.data.loading import load_source

    config = _config(tmp_path, num_samples=4, general_fraction=0.0)
    stats = run(config, sampler=CraftedSampler())
    assert stats["general"] == 0 and stats["kept_reasoning"] > 0
    ds = load_source({"path": config.output_dir})
    assert len(ds) == stats["rows"] and set(ds["source"]) == {"reasoning"}
