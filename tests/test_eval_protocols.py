"""Evaluation protocols (R1's and lighteval's GSM8K), the answer-health shares every evaluation
reports, and which passes a num_samples/greedy/temperature combination runs.

The GSM8K-shaped rows here are written for these tests (the real test set is not in the repo);
each prompt and extraction below was checked by hand against lighteval's task definition.
"""

from __future__ import annotations

import json
import re

import pytest

from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import DataError
from r1_recipe.eval_suites import protocols
from r1_recipe.evaluate import EvalConfig, evaluate, format_table

TEST = [
    {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?",
     "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A farm sells 1,000 eggs a day and 18 more on Sunday. How many eggs on Sunday?",
     "answer": "1000 + 18 = <<1000+18=1018>>1018\n#### 1,018"},
    {"question": "Tom reads 6 pages a day for 5 days. How many pages?",
     "answer": "6 * 5 = <<6*5=30>>30\n#### 30"},
]
TRAIN = [{"question": f"Train question {i}?", "answer": f"Work {i}.\n#### {i}"} for i in range(8)]


def write_jsonl(rows, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def gsm8k_dir(tmp_path):
    """A local GSM8K copy as a folder of test and train files (the Hub's columns)."""
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    write_jsonl(TEST, folder / "test.jsonl")
    write_jsonl(TRAIN, folder / "train.jsonl")
    return folder


class Scripted:
    """Answers by a substring of the last user turn; records each call's params and prompts;
    ``cut`` marks samples as stopped by the token budget."""

    def __init__(self, script, cut=()):
        self.script, self.cut, self.calls, self.last_truncated = script, set(cut), [], []

    def generate(self, prompts, params, progress=False):
        self.calls.append((params, prompts))
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            key = next(k for k in self.script if k in text)
            out.append([self.script[key]] * (1 if params.greedy else params.n))
        self.last_truncated = [[any(k in (p[-1]["content"] if isinstance(p, list) else p) for k in self.cut)] * len(g)
                               for p, g in zip(prompts, out)]
        return out


# --- the prompts and extraction of each protocol, on hand-checked rows -----------------------

def test_lighteval_prompt_is_five_train_examples_as_chat_turns_then_the_question(gsm8k_dir):
    s = Scripted({"Ann": "#### 7", "eggs": "#### 1018", "Tom": "#### 30"})
    evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", protocol="lighteval"),
             sampler=s)
    (params, prompts), = s.calls
    first = prompts[0]
    assert [m["role"] for m in first] == ["user", "assistant"] * 5 + ["user"]
    assert first[-1]["content"] == ("Question: Ann has 3 apples and buys 4 more. How many apples does she have?"
                                    "\nAnswer:")
    shots = protocols.draw_shots(TRAIN, 0, 5, 0)
    assert first[0]["content"] == f"Question: {shots[0]['question']}\nAnswer:"
    assert first[1]["content"] == shots[0]["answer"]  # the worked solution with its '#### N' line
    assert all(m["content"].startswith("Question: Train question") for m in first[:-1:2])  # never a test row
    assert (params.greedy, params.n, params.max_new_tokens) == (True, 1, 256)


@pytest.mark.parametrize("completion, expected", [
    ("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "7"),
    ("#### 1,018", "1018"),  # thousands separators dropped, as lighteval's normalizer does
    ("The answer is 7.", None),  # no '####': unextractable under this protocol
    ("#### -3", "-3"),
    ("#### 7\n\nQuestion: next one?\nAnswer: #### 9", "7"),  # the first; the stop sequence ends the answer
    ("Question: what?\n#### 9", None),  # everything from 'Question:' on is dropped
])
def test_lighteval_extraction(completion, expected):
    assert protocols.hashes_answer(completion) == expected


def test_lighteval_scores_hashes_and_reports_unreadable_answers(gsm8k_dir):
    s = Scripted({"Ann": "3 + 4 = 7\n#### 7", "eggs": "so #### 1,018", "Tom": "The answer is 30."})
    out = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", protocol="lighteval"),
                   sampler=s)
    assert out["greedy_accuracy"] == pytest.approx(2 / 3) and out["protocol"] == "lighteval"
    assert out["greedy_unextractable_share"] == pytest.approx(1 / 3) and "pass@1" not in out
    assert len(s.calls) == 1  # greedy only: one pass


def test_r1_prompt_and_extraction_on_the_same_rows(gsm8k_dir):
    s = Scripted({"Ann": "<think>\n3+4\n</think>\n\\boxed{7}", "eggs": "<think>x</think>\n\\boxed{1018}",
                  "Tom": "<think>x</think>\nThe answer is 30."})
    out = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", num_samples=0),
                   sampler=s)
    (_, prompts), = s.calls
    assert prompts[0] == [{"role": "user", "content": TEST[0]["question"] + "\n\nPlease reason step by step, and put "
                                                      "your final answer within \\boxed{}."}]
    assert out["greedy_accuracy"] == pytest.approx(2 / 3) and out["greedy_unextractable_share"] == pytest.approx(1 / 3)


def test_lighteval_needs_train_rows_and_gsm8k(tmp_path, gsm8k_dir):
    with pytest.raises(DataError, match="no train split.*gsm8k=DIR"):
        evaluate(EvalConfig(model_name_or_path="m", benchmark=f"gsm8k={gsm8k_dir / 'test.jsonl'}",
                            protocol="lighteval"), sampler=Scripted({"": "#### 1"}))
    with pytest.raises(ConfigError, match="protocol lighteval is defined for gsm8k, word_problems only, not math_500"):
        EvalConfig(model_name_or_path="m", benchmark="math_500", protocol="lighteval")
    with pytest.raises(ConfigError, match="protocol: 'helm' is not one of r1, lighteval"):
        EvalConfig(model_name_or_path="m", protocol="helm")


# --- generated GSM8K-style word problems: the SmolLM2 pipeline's check beside the trained task --

WORDED = re.compile(r"(\w+) has (\d+) (\w+)\. \1 (gets|gives) (\d+) (?:more )?\3")


def _sum_of(question: str) -> arithmetic.Problem:
    name, a, thing, verb, b = WORDED.match(question).groups()
    return arithmetic.Problem(int(a), "+" if verb == "gets" else "-", int(b))


class Solver:
    """Reads the last question of a lighteval prompt and answers it under the protocol: right on
    even problem indices, one off on odd ones."""

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, params, progress=False):
        self.prompts += prompts
        out = []
        for i, p in enumerate(prompts):
            answer = _sum_of(p[-1]["content"].removeprefix("Question: ")).answer + i % 2
            out.append([f"That is {answer}.\n#### {answer}"])
        return out


def test_word_problems_are_held_out_sums_in_words_with_examples_from_the_training_slice():
    out = evaluate(EvalConfig(model_name_or_path="solver", benchmark="word_problems", protocol="lighteval"),
                   sampler=(solver := Solver()))
    assert out["problems"] == 100 and out["greedy_accuracy"] == pytest.approx(0.5)  # exactly the right half
    questions = [p[-1]["content"].removeprefix("Question: ").removesuffix("\nAnswer:") for p in solver.prompts]
    assert all(_sum_of(q).held_out for q in questions) and len(set(questions)) == 100
    shots = [m for p in solver.prompts for m in p[:-1]]
    assert len(shots) == 100 * 10
    for user, assistant in zip(shots[::2], shots[1::2]):  # worked examples: training sums, right answers
        problem = _sum_of(user["content"].removeprefix("Question: "))
        assert not problem.held_out and assistant["content"].endswith(f"\n#### {problem.answer}")
    # under R1's protocol the same rows read \boxed{}
    r1 = evaluate(EvalConfig(model_name_or_path="m", benchmark="word_problems", num_problems=3, num_samples=0),
                  sampler=Scripted({"has": "<think>x</think>\n\\boxed{7}"}))
    assert r1["problems"] == 3 and r1["protocol"] == "r1"


# --- why a score is low ------------------------------------------------------------------------

def test_mostly_unreadable_answers_warn_and_name_the_expected_form(gsm8k_dir, capsys):
    s = Scripted({"Ann": "The answer is 7.", "eggs": "The answer is 1018.", "Tom": "<think>x</think>\\boxed{30}"},
                 cut={"Tom"})
    out = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", num_samples=2,
                              greedy=False), sampler=s)
    assert out["unextractable_share"] == pytest.approx(2 / 3) and out["truncated_share"] == pytest.approx(1 / 3)
    assert any("67% of sampled completions have no answer the r1 protocol can read" in w and "\\boxed{...}" in w
               for w in out["warnings"])
    assert any("33.3% of sampled completions hit max_new_tokens" in w for w in out["warnings"])
    row = format_table([out]).splitlines()[2]
    assert row.endswith("| 66.7 | 33.3 |")  # the table's "no answer" and "cut" columns


def test_a_stop_sequence_is_not_a_cut(gsm8k_dir):
    """lighteval stops at 'Question:'; a sample that ran past it into the budget was not cut."""
    s = Scripted({"Ann": "#### 7\n\nQuestion: and then", "eggs": "#### 1018", "Tom": "#### 30"}, cut={"Ann", "Tom"})
    out = evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", protocol="lighteval"),
                   sampler=s)
    assert out["greedy_truncated_share"] == pytest.approx(1 / 3) and out["greedy_accuracy"] == 1.0


# --- which passes run ----------------------------------------------------------------------------

@pytest.mark.parametrize("options, passes", [
    ({"num_samples": 0}, [(True, 1)]),  # greedy only
    ({"temperature": 0}, [(True, 1)]),  # greedy decoding is one greedy pass
    ({"temperature": 0, "num_samples": 1}, [(True, 1)]),
    ({"num_samples": 3}, [(True, 1), (False, 3)]),  # greedy (default on) and k samples
    ({"num_samples": 3, "greedy": False}, [(False, 3)]),
    ({"protocol": "lighteval"}, [(True, 1)]),
    ({"protocol": "lighteval", "num_samples": 2}, [(True, 1), (False, 2)]),  # asked for: sampled too
])
def test_num_samples_greedy_temperature_decide_the_passes(gsm8k_dir, options, passes):
    s = Scripted({"Ann": "#### 7", "eggs": "#### 1018", "Tom": "#### 30"})
    evaluate(EvalConfig(model_name_or_path="scripted", benchmark=f"gsm8k={gsm8k_dir}", **options), sampler=s)
    assert [(p.greedy, p.n) for p, _ in s.calls] == passes


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "0", "--num_samples", "4"], "temperature 0 is greedy decoding"),
    (["--num_samples", "0", "--no_greedy"], "leaves nothing to run"),
    (["--num_samples", "-1"], "num_samples"),
])
def test_contradictory_pass_options_are_refused(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(EvalConfig, ["--model_name_or_path", "m", *argv])


def test_greedy_only_from_the_command_line():
    config = parse_config(EvalConfig, ["--model_name_or_path", "m", "--temperature", "0", "--greedy", "true"])
    assert config.temperature == 0 and config.greedy is True
    assert parse_config(EvalConfig, ["--model_name_or_path", "m", "--no_greedy"]).greedy is False


def test_the_shipped_smollm2_gsm8k_recipe_runs_the_card_protocol(gsm8k_dir):
    """recipes/SmolLM2-135M/evaluate_gsm8k.yaml as shipped (only the data folder and the model given)."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes/SmolLM2-135M/evaluate_gsm8k.yaml"
    config = parse_config(EvalConfig, ["--config", str(recipe), "--model_name_or_path", "scripted",
                                       "--benchmark", f"gsm8k={gsm8k_dir}"])
    s = Scripted({"Ann": "#### 7", "eggs": "#### 1018", "Tom": "#### 31"})
    out = evaluate(config, sampler=s)
    assert [(p.greedy, p.n, p.max_new_tokens) for p, _ in s.calls] == [(True, 1, 256)]
    assert out["protocol"] == "lighteval" and out["greedy_accuracy"] == pytest.approx(2 / 3)
