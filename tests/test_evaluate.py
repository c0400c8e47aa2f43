"""Evaluation: the metrics on crafted samples, the benchmark registry on local copies shaped like
the Hub's, GPQA letters and option shuffling, both backends (vLLM faked), and the CLI offline."""

from __future__ import annotations

import itertools
import json
import sys
import types

import pytest

from r1_recipe import cli, eval_suites
from r1_recipe.configs import ConfigError
from r1_recipe.data.loading import DataError, write_jsonl
from r1_recipe.evaluate import (
    EvalConfig,
    evaluate,
    format_table,
    majority_vote,
    math_equivalence,
    pass_at_k,
    score,
    vote_labels,
)
from r1_recipe.sampling import SamplingParams, TransformersSampler, make_sampler, prompt_ids

FAST = {"verify_workers": 2, "verify_timeout": 3.0}


# --- metrics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n,c,k", [(5, 2, 3), (6, 1, 2), (4, 4, 2), (4, 0, 3), (7, 3, 1), (3, 2, 3)])
def test_pass_at_k_equals_brute_force(n, c, k):
    """The unbiased estimator is the chance that a random k-subset of the n samples holds a hit."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_edges():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0  # k = 1 = n
    assert pass_at_k(64, 64, 8) == 1.0 and pass_at_k(64, 0, 8) == 0.0
    assert pass_at_k(64, 16, 1) == 0.25  # pass@1 is the mean
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_vote_ties_none_and_equivalent_spellings():
    # tie 2-2: the answer seen first wins, whichever is right
    assert majority_vote(["7", "8", "8", "7"], [False, True, True, False]) == ("7", False)
    assert majority_vote(["8", "7", "7", "8"], [True, False, False, True]) == ("8", True)
    # unextracted samples never vote, even when they are the majority
    assert majority_vote([None, None, None, "3"], [False, False, False, True]) == ("3", True)
    # spacing and \left/\right do not split the vote: 2 × (1,2) beat 2 × 5 by coming first
    assert majority_vote(["(1, 2)", "5", "\\left(1,2\\right)", "5"], [True, False, True, False])[1] is True


def test_score_on_crafted_groups():
    answers = [["1", "1", "2", "2"],  # tie, the wrong answer seen first: cons wrong, pass@1 .5
               ["3", "3", "3", "3"],  # all correct
               ["9", None, "8", "9"],  # none correct
               ["5", "6", "6", "6"]]  # majority right, one wrong
    verdicts = [[False, False, True, True], [True] * 4, [False] * 4, [False, True, True, True]]
    out = score(answers, verdicts, ks=[1, 2, 4])
    assert out["pass@1"] == pytest.approx((0.5 + 1 + 0 + 0.75) / 4)
    assert out["cons@k"] == pytest.approx(0.5)
    assert out["pass@4"] == pytest.approx(0.75)
    assert out["pass@2"] == pytest.approx((5 / 6 + 1 + 0 + 1) / 4)
    assert out["pass@1_stderr"] > 0
    one = score([["4"]], [[True]])  # k = 1: cons@1 = pass@1
    assert one["pass@1"] == one["cons@k"] == 1.0


def test_cons_at_k_votes_by_math_equivalence_and_ties_go_to_the_first_group():
    same = math_equivalence(workers=1, timeout=3.0)
    half = ["\\frac{1}{2}", "2", "\\dfrac{1}{2}", "2", "0.5"]  # three spellings of one half beat two 2s
    ok = [True, False, True, False, True]
    assert vote_labels([half], same) == [[0, 1, 0, 1, 0]]
    assert majority_vote(half, ok, vote_labels([half], same)[0]) == ("\\frac{1}{2}", True)
    assert score([half], [ok], labels=vote_labels([half], same))["cons@k"] == 1.0
    # 2-2 tie: the group whose first answer comes first wins, here the wrong one
    tie = ["2", "\\frac{1}{2}", "0.5", "2", None, None]
    assert majority_vote(tie, [False, True, True, False, False, False], vote_labels([tie], same)[0]) == ("2", False)
    # problems are grouped in one batch but never vote across each other
    assert vote_labels([["1", "1.0"], ["1.0", "2"]], same) == [[0, 0], [0, 1]]


def test_evaluate_votes_equivalent_spellings_together(tmp_path):
    box = "<think>\nhm\n</think>\n\\boxed{{{}}}".format
    path = tmp_path / "half.jsonl"
    write_jsonl([{"problem": "Half of one?", "answer": "\\frac{1}{2}"}], path)
    sampler = ScriptedSampler({"Half": [box("\\frac{1}{2}"), box("2"), box("\\dfrac{1}{2}"), box("2"), box("0.5")]})
    s = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"math_500={path}", num_samples=5,
                            greedy=False, **FAST), sampler=sampler)
    assert s["pass@1"] == pytest.approx(3 / 5) and s["cons@k"] == 1.0  # string votes: '2' won, cons 0


# --- benchmarks: GPQA, GSM8K, local copies ---------------------------------------------------

@pytest.mark.parametrize("text,letter", [
    ("<think>maybe A</think>\nThe answer is \\boxed{C}.", "C"),
    ("<think>x</think>\n\\boxed{(B)}", "B"),
    ("<think>x</think>\n\\boxed{\\text{D) 12 eV}}", "D"),
    ("<think>x</think>\n<answer> A </answer>", "A"),
    ("<think>x</think>\nSo the answer is (B).", "B"),
    ("<think>x</think>\nAnswer: **C**", "C"),
    ("<think>The answer is D</think>\nNo idea.", None),  # reasoning never counts
    ("<think>x</think>\n\\boxed{E}", None),  # not an option
    ("<think>x</think>\n\\boxed{Because}", None),
    ("<think>x</think>\nThe answer is a prime number.", None),
    ("<think>unclosed \\boxed{A}", None),
])
def test_gpqa_letter_extraction(text, letter):
    assert eval_suites.extract_letter(text) == letter


def _gpqa_rows(n=40):
    return [{"Question": f"Question number {i}: which value is right?", "Correct Answer": f"right {i}",
             "Incorrect Answer 1": f"wrong a{i}", "Incorrect Answer 2": f"wrong b{i}",
             "Incorrect Answer 3": f"wrong c{i}", "Subdomain": "Physics"} for i in range(n)]


def test_gpqa_options_shuffled_with_a_fixed_seed(tmp_path):
    path = tmp_path / "gpqa_diamond.jsonl"
    write_jsonl(_gpqa_rows(), path)
    _, bench, first = eval_suites.load_benchmark(f"gpqa_diamond={path}")
    _, _, again = eval_suites.load_benchmark(f"gpqa_diamond={path}")
    _, _, sliced = eval_suites.load_benchmark(f"gpqa_diamond={path}", num_problems=5)
    _, _, other = eval_suites.load_benchmark(f"gpqa_diamond={path}", shuffle_seed=1)
    assert bench.verifier == "letter" and first["problem"] == again["problem"]
    assert sliced["problem"] == first["problem"][:5]  # order depends on the question, not the slice
    assert other["problem"] != first["problem"]
    assert len(set(first["answer"])) == 4  # the right answer is not always A
    for i, (problem, letter) in enumerate(zip(first["problem"], first["answer"])):
        assert f"{letter}) right {i}\n" in problem + "\n"
        assert problem.startswith(f"Question number {i}")


def test_gsm8k_reference_after_hashes(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    write_jsonl([{"question": "How many eggs?", "answer": "16 - 3 = <<16-3=13>>13\n#### 1,013"}], path)
    _, bench, ds = eval_suites.load_benchmark(f"gsm8k={path}")
    assert ds["answer"] == ["1013"] and bench.verifier == "math"
    write_jsonl([{"question": "q", "answer": "no final line"}], path)
    with pytest.raises(DataError, match="####"):
        eval_suites.load_benchmark(f"gsm8k={path}")


def test_missing_dataset_column_and_unknown_name_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        eval_suites.load_benchmark(f"math_500={tmp_path / 'nope.jsonl'}")
    path = tmp_path / "math500.jsonl"
    write_jsonl([{"problem": "1+1?", "solution": "2"}], path)  # no 'answer' column
    with pytest.raises(DataError, match=r"missing column\(s\) \['answer'\].*columns of HuggingFaceH4/MATH-500"):
        eval_suites.load_benchmark(f"math_500={path}")
    with pytest.raises(DataError, match="not one of aime24"):
        eval_suites.load_benchmark("aime25")
    with pytest.raises(DataError, match="math_500=PATH"):  # offline: the Hub id fails, the fix is named
        eval_suites.load_benchmark("math_500")


def test_paper_defaults_and_overrides():
    b = eval_suites.BENCHMARKS
    assert b["aime24"].num_samples == 64 and b["aime24"].max_new_tokens == 32_768
    assert b["gpqa_diamond"].verifier == "letter" and b["math_500"].verifier == "math"
    with pytest.raises(ConfigError, match="pass_at_k"):
        evaluate(EvalConfig(model_name_or_path="m", num_samples=2, pass_at_k=[4]), sampler=object())
    with pytest.raises(ConfigError, match="backend"):
        EvalConfig(model_name_or_path="m", backend="tgi")


# --- the evaluator with a scripted sampler: exact numbers, math-verify, files -----------------

class ScriptedSampler:
    """Returns completions from a table keyed by a substring of the prompt."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, prompts, params, progress=False):
        self.calls.append(params)
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            group = next(v for k, v in self.script.items() if k in text)
            out.append(group[:1] * params.n if params.greedy else group[: params.n])
        return out


def test_math500_like_file_scored_with_math_verify(tmp_path):
    path = tmp_path / "math500.jsonl"
    write_jsonl([
        {"problem": "Half of one?", "solution": "...", "answer": "\\frac{1}{2}", "subject": "Algebra"},
        {"problem": "Root of 18?", "solution": "...", "answer": "3\\sqrt{2}", "subject": "Algebra"},
        {"problem": "Interval?", "solution": "...", "answer": "(1,2)", "subject": "Algebra"},
    ], path)
    box = "<think>\nhm\n</think>\n\\boxed{{{}}}".format
    sampler = ScriptedSampler({
        "Half": [box("0.5"), box("1/2"), box("2"), box("\\dfrac{1}{2}")],  # 3 equivalent spellings
        "Root": [box("\\sqrt{18}"), box("4"), box("4"), box("4")],
        "Interval": ["<think>\\boxed{(1,2)}</think> no answer", box("(1, 2)"), box("3"), box("3")],
    })
    out = tmp_path / "out"
    cfg = EvalConfig(model_name_or_path="scripted", benchmark=f"math_500={path}", num_samples=4, pass_at_k=[2],
                     output_dir=str(out), samples_format="parquet", **FAST)
    s = evaluate(cfg, sampler=sampler)
    assert s["benchmark"] == "math_500" and s["problems"] == 3
    assert s["pass@1"] == pytest.approx((3 / 4 + 1 / 4 + 1 / 4) / 3)
    assert s["greedy_accuracy"] == pytest.approx(2 / 3)
    assert s["cons@k"] == pytest.approx(1 / 3)  # 0.5 wins; '4' wins; '3' wins
    assert s["answered"] == pytest.approx(11 / 12)
    assert s["max_new_tokens"] == 32_768 and sampler.calls[1].temperature == 0.6  # the paper's defaults
    saved = json.loads((out / "eval_math_500.json").read_text())
    assert saved["pass@1"] == s["pass@1"] and saved["config"]["num_samples"] == 4
    from datasets import Dataset

    rows = Dataset.from_parquet(str(out / "eval_math_500_samples.parquet"))
    assert len(rows) == 3 + 12 and set(rows["mode"]) == {"greedy", "sampled"}
    assert {"prompt", "completion", "answer", "correct", "reference"} <= set(rows.column_names)
    assert "Please reason step by step" in rows["prompt"][0][-1]["content"]
    assert "| math_500 | r1 | 3 | 4 |" in format_table([s])


def test_gpqa_evaluation_scores_letters(tmp_path):
    path = tmp_path / "gpqa.jsonl"
    write_jsonl(_gpqa_rows(4), path)
    _, _, ds = eval_suites.load_benchmark(f"gpqa_diamond={path}")
    right = dict(zip((q.split(":")[0] for q in ds["problem"]), ds["answer"]))
    script = {q: [f"<think>x</think>\n\\boxed{{{a}}}", "<think>x</think>\nAnswer: E"] for q, a in right.items()}
    s = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gpqa_diamond={path}", num_samples=2,
                            greedy=False), sampler=ScriptedSampler(script))
    assert s["pass@1"] == 0.5 and s["cons@k"] == 1.0 and "greedy_accuracy" not in s


# --- answers read as the rewards read them ----------------------------------------------------

def _one_problem(tmp_path):
    path = tmp_path / "one.jsonl"
    write_jsonl([{"problem": "What is 2+2?", "answer": "4"}], path)
    return f"math_500={path}"


def test_r1_zero_truncated_completion_scores_zero_in_evaluation_as_in_the_reward(tmp_path):
    # The R1-Zero prompt opens <think>: a completion cut before </think> is all reasoning, and the
    # box inside it is no answer. Evaluation used to read the raw text and credit it.
    cut, done = "2+2 is \\boxed{4}, but let me check", "2+2 is 4.\n</think>\n<answer>4</answer>"
    samples = tmp_path / "out"
    s = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=_one_problem(tmp_path), template="r1_zero",
                            num_samples=2, greedy=False, output_dir=str(samples), **FAST),
                 sampler=ScriptedSampler({"2+2": [cut, done]}))
    assert s["pass@1"] == 0.5
    rows = [json.loads(line) for line in (samples / "eval_math_500_samples.jsonl").read_text().splitlines()]
    assert [(r["answer"], r["correct"]) for r in rows] == [(None, False), ("4", True)]
    from r1_recipe.rewards import get_reward_funcs

    (accuracy,) = get_reward_funcs(["accuracy"], accuracy={"workers": 2, "timeout": 3.0})
    prompt = rows[0]["prompt"]
    assert accuracy(prompts=[prompt, prompt], completions=[cut, done], solution=["4", "4"]) == [0.0, 1.0]


R1_DISTILL_TEMPLATE = (  # DeepSeek-R1-Distill's generation prompt opens the reasoning block
    "{% for message in messages %}{{ '<｜User｜>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


class TemplatedSampler(ScriptedSampler):
    """The scripted completions behind a real tokenizer's chat template (as every real sampler has)."""

    def __init__(self, script, tokenizer):
        super().__init__(script)
        self.tokenizer = tokenizer


def test_a_chat_template_that_opens_think_is_restored_before_extraction(tmp_path):
    from r1_recipe.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = R1_DISTILL_TEMPLATE
    done, cut = "2+2 is 4.\n</think>\n\\boxed{4}", "so \\boxed{4} and then it was cut"
    s = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=_one_problem(tmp_path), num_samples=2,
                            greedy=False, **FAST), sampler=TemplatedSampler({"2+2": [done, cut]}, tok))
    assert s["pass@1"] == 0.5 and s["answered"] == 0.5


# --- real backends on the tiny model ---------------------------------------------------------

def _summary_numbers(s):
    return {k: v for k, v in s.items() if k not in ("seconds", "samples_per_second")}


def test_tiny_model_same_seed_same_numbers(tiny_model_dir, tmp_path):
    sampler = TransformersSampler(str(tiny_model_dir), batch_size=64)
    cfg = dict(model_name_or_path=str(tiny_model_dir), benchmark="arithmetic", num_problems=8, num_samples=3,
               temperature=1.0, max_new_tokens=12, pass_at_k=[3])
    a = evaluate(EvalConfig(**cfg, output_dir=str(tmp_path / "a")), sampler)
    b = evaluate(EvalConfig(**cfg, output_dir=str(tmp_path / "b")), TransformersSampler(str(tiny_model_dir)))
    c = evaluate(EvalConfig(**cfg, seed=1, output_dir=str(tmp_path / "c")), sampler)
    # a random-init model: in range, answers nothing right, and reproducible sample for sample
    assert 0.0 <= a["pass@1"] <= 0.05 and a["greedy_accuracy"] <= 0.1 and 0 <= a["answered"] <= 1
    assert sum(a["style_share"].values()) == pytest.approx(1.0)
    assert _summary_numbers(a) == _summary_numbers(b)
    read = lambda d: (tmp_path / d / "eval_arithmetic_samples.jsonl").read_text()  # noqa: E731
    assert read("a") == read("b") and read("a") != read("c")


def test_cli_evaluate_offline_on_local_hub_shaped_files(tiny_model_dir, tmp_path, capsys):
    math500, gsm8k = tmp_path / "math500.jsonl", tmp_path / "gsm8k.jsonl"
    write_jsonl([{"problem": f"What is {i} + {i}?", "solution": "...", "answer": str(2 * i)} for i in range(3)], math500)
    write_jsonl([{"question": f"Ben has {i} eggs. How many?", "answer": f"so\n#### {i}"} for i in range(2)], gsm8k)
    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--model_name_or_path", str(tiny_model_dir), "--benchmark",
                     f"math_500={math500},gsm8k={gsm8k}", "--num_samples", "2", "--max_new_tokens", "6",
                     "--backend", "transformers", "--output_dir", str(out), "--verify_workers", "2"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| math_500 | r1 | 3 | 2 |" in table and "| gsm8k | r1 | 2 | 2 |" in table
    for name, n in (("math_500", 3), ("gsm8k", 2)):
        summary = json.loads((out / f"eval_{name}.json").read_text())
        assert summary["problems"] == n and 0.0 <= summary["pass@1"] <= 1.0
        assert len((out / f"eval_{name}_samples.jsonl").read_text().splitlines()) == n * 3

    # every benchmark is checked before the model loads: a bad one fails first, named
    code = cli.main(["evaluate", "--model_name_or_path", str(tmp_path / "no-model"), "--benchmark",
                     f"arithmetic,math_500={tmp_path / 'missing.jsonl'}"])
    assert code == 2 and "missing.jsonl does not exist" in capsys.readouterr().err
    code = cli.main(["evaluate", "--model_name_or_path", str(tmp_path / "no-model"), "--num_problems", "1"])
    assert code == 2 and "model_name_or_path" in capsys.readouterr().err


# --- vLLM, faked: the code around the engine -------------------------------------------------

@pytest.fixture
def fake_vllm(monkeypatch):
    calls = {}

    class FakeParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class FakeLLM:
        def __init__(self, **kw):
            calls["init"] = kw

        def get_tokenizer(self):
            from transformers import AutoTokenizer

            calls["get_tokenizer"] = True
            return AutoTokenizer.from_pretrained(calls["init"]["model"])

        def generate(self, inputs, params, use_tqdm=True):
            calls["generate"] = (inputs, params)
            done = types.SimpleNamespace
            return [done(outputs=[done(text=f"<think>s{p.seed}</think>\n\\boxed{{{j}}}") for j in range(p.n)])
                    for p in params]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_vllm_backend_same_prompt_tokens_and_seeds(fake_vllm, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampler = make_sampler("vllm", str(tiny_model_dir), tok, tensor_parallel_size=2, max_model_len=4096, seed=3)
    init = fake_vllm["init"]  # no data_parallel_size: vLLM's offline engine refuses it for dense models
    assert (init["model"], init["tensor_parallel_size"], init["seed"]) == (str(tiny_model_dir), 2, 3)
    assert "data_parallel_size" not in init
    prompts = [[{"role": "user", "content": "Compute 12 + 30."}], "plain r1_zero prompt"]
    out = sampler.generate(prompts, SamplingParams(n=3, temperature=0.6, top_p=0.95, max_new_tokens=9, seed=7))
    inputs, params = fake_vllm["generate"]
    assert [len(g) for g in out] == [3, 3] and out[1][2].endswith("\\boxed{2}")
    assert [p.seed for p in params] == [7, 10] and params[0].max_tokens == 9  # seeds 7-9, then 10-12 and params[0].top_p == 0.95
    hf = TransformersSampler(str(tiny_model_dir))
    expected = tok([hf.render(p) for p in prompts], add_special_tokens=False)["input_ids"]
    assert "get_tokenizer" not in fake_vllm  # the chat-template override passed in is the one used
    assert [i["prompt_token_ids"] for i in inputs] == expected == [prompt_ids(tok, p) for p in prompts]
    greedy = sampler.generate(prompts, SamplingParams(n=4, temperature=0.0))
    assert fake_vllm["generate"][1][0].n == 1 and len(set(greedy[0])) == 1 and len(greedy[0]) == 4


def test_vllm_backend_through_evaluate(fake_vllm, tiny_model_dir):
    s = evaluate(EvalConfig(model_name_or_path=str(tiny_model_dir), backend="vllm", num_problems=5, num_samples=2))
    assert fake_vllm["init"]["model"] == str(tiny_model_dir) and fake_vllm["get_tokenizer"]
    assert s["problems"] == 5 and s["answered"] == 1.0 and 0.0 <= s["pass@1"] <= 1.0


def test_vllm_missing_says_how_to_install(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"pip install -e '.\[vllm\]'"):
        make_sampler("vllm", str(tiny_model_dir))


@pytest.mark.slow
def test_trained_tiny_model_in_the_expected_range_and_reproducible(tmp_path, tiny_model_dir, demo_data_dir):
    """~2 min on 2 cores: a 250-step cold start, then the protocol at T=0.7 twice with one seed."""
    import yaml

    from r1_recipe.sft import main as sft_main

    recipe = {"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "sft"),
              "dataset_mixture": [{"path": str(demo_data_dir / "cold_start.jsonl")}],
              "per_device_train_batch_size": 32, "learning_rate": 3e-3, "lr_scheduler_type": "cosine",
              "warmup_steps": 20, "max_length": 128, "max_steps": 250, "save_strategy": "no",
              "report_to": "none", "seed": 0}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    sft_main(["--config", str(tmp_path / "r.yaml")])
    cfg = EvalConfig(model_name_or_path=str(tmp_path / "sft"), num_problems=100, num_samples=4, temperature=0.7,
                     top_p=1.0, max_new_tokens=48, pass_at_k=[4])
    first, second = evaluate(cfg), evaluate(cfg)
    # the random base scores 0 (test above); how far 250 steps get is the SFT tests' business
    assert 0.0 < first["pass@1"] <= 1.0 and 0.0 < first["greedy_accuracy"] <= 1.0
    assert first["pass@4"] >= first["pass@1"] and 0.0 < first["cons@k"] <= 1.0
    assert _summary_numbers(first) == _summary_numbers(second)


def test_a_sampler_warns_when_the_tokenizer_hides_the_tags(tiny_model_dir, tmp_path, caplog):
    """Evaluation and rejection sampling decode with skip_special_tokens=True too: say so."""
    import logging
    import shutil

    from transformers import AutoTokenizer

    from r1_recipe.sampling import make_sampler

    model_dir = tmp_path / "special_tags"
    shutil.copytree(tiny_model_dir, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.add_special_tokens({"additional_special_tokens": ["</think>"]})
    tok.save_pretrained(model_dir)
    with caplog.at_level(logging.WARNING, logger="r1_recipe.sampling"):
        make_sampler("transformers", str(tiny_model_dir))
        assert "special tokens" not in caplog.text
        make_sampler("transformers", str(model_dir))
    assert "registers ['</think>'] as special tokens" in caplog.text
