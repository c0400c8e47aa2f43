"""The demo's code task: generator, held-out split, traces vs. the sandbox, the code reward on
crafted demo completions, and the demo_code benchmark through the evaluator."""

from __future__ import annotations

import json

import pytest

from r1_recipe import eval_suites
from r1_recipe.data import code_tasks
from r1_recipe.data.code_tasks import Problem
from r1_recipe.data.loading import load_mixture, to_sft, write_jsonl
from r1_recipe.eval_suites import demo_code
from r1_recipe.evaluate import EvalConfig, evaluate
from r1_recipe.rewards import get_reward_funcs
from r1_recipe.tiny import build_tokenizer


def _completion(code: str, reasoning: str = "first x+4") -> str:
    return f"<think>\n{reasoning}\n</think>\n```python\n{code}\n```"


def test_generator_is_deterministic_and_seeded():
    a = list(code_tasks.generate(50, seed=3, style_weights={"careful": 0.5, "sloppy": 0.5}))
    assert a == list(code_tasks.generate(50, seed=3, style_weights={"careful": 0.5, "sloppy": 0.5}))
    assert a != list(code_tasks.generate(50, seed=4, style_weights={"careful": 0.5, "sloppy": 0.5}))
    assert list(code_tasks.cold_start(20, seed=0)) == list(code_tasks.cold_start(20, seed=0))


def test_problem_text_program_and_asserts_worked_by_hand():
    p = Problem("+", 4, "%", 7)
    assert p.text == "Write a Python function f(x): add 4, then take the remainder mod 7."
    assert p.asserts == "assert f(3) == 0\nassert f(17) == 0\nassert f(40) == 2"  # 7%7, 21%7, 44%7
    assert code_tasks.trace(p, "careful")[1] == "(x+4)%7" and code_tasks.trace(p, "sloppy")[1] == "x+4%7"
    assert json.loads(p.verification_info) == {"language": "python", "tests": [p.asserts]}  # one run


def test_no_held_out_problem_reaches_training_data():
    held = {p.text for p in code_tasks.all_problems() if p.held_out}
    assert 550 < len(held) < 800  # about a tenth of 6,728
    train = [r["problem"] for r in code_tasks.cold_start(3000, seed=0)]
    train += [r["problem"] for r in code_tasks.rl_prompts(3000, seed=1)]
    assert not held & set(train)
    bench = {r["problem"] for r in demo_code.rows(200, seed=0)}
    assert bench <= held and len(bench) == 200 and not bench & set(train)
    with pytest.raises(ValueError, match="held-out code problems"):
        list(code_tasks.generate(len(held) + 1, split="test"))


def test_every_careful_program_passes_and_sloppy_ones_fail_exactly_where_brackets_matter():
    problems = code_tasks.all_problems()
    assert len(problems) == 4 * 29 * 2 * 29
    for p in problems:
        assert code_tasks.expression_passes(p, code_tasks.trace(p, "careful")[1]), p
        assert code_tasks.expression_passes(p, code_tasks.trace(p, "sloppy")[1]) == (p.op1 in "*%"), p
    assert sum(p.needs_brackets for p in problems) / len(problems) == 0.5  # sloppy is right on half


def test_cold_start_traces_in_the_sandbox_pass_or_fail_as_their_style_says():
    rows = list(code_tasks.generate(40, seed=0, style_weights={"careful": 0.5, "sloppy": 0.5}))
    rewards = get_reward("code")([r["messages"][-1]["content"] for r in rows],
                                 verification_info=[r["verification_info"] for r in rows])
    expected = [1.0 if r["style"] == "careful" or "return (" not in r["solution_program"] else 0.0 for r in rows]
    assert rewards == expected and 0 < sum(expected) < len(rows)
    sloppy = [r for r in rows if r["style"] == "sloppy"]
    assert {r["reasoning"].split()[0] for r in sloppy} == {"fast"}


def test_code_reward_on_crafted_demo_completions():
    info = Problem("+", 4, "*", 3).verification_info  # f(3)=21, f(17)=63, f(40)=132
    completions = [
        _completion("def f(x): return (x+4)*3"),                  # right
        _completion("def f(x): return x+4*3"),                    # the sloppy bug
        _completion("def f(x) return (x+4)*3"),                   # syntax error
        _completion("import os\nos.fork()\ndef f(x): return (x+4)*3"),  # fork: denied
        _completion("def f(x):\n    while True: pass"),           # never returns
        _completion("import socket\nsocket.socket()\ndef f(x): return (x+4)*3"),  # no network
        "<think>\nfirst x+4\n</think>\ndef f(x): return (x+4)*3",  # no code block
        _completion("def f(x): return (x+4)*3\nopen('/etc/hostname').read()"),  # outside its folder
    ]
    reward = get_reward("code", wall_s=3.0, cpu_s=2)
    assert reward(completions, verification_info=[info] * len(completions)) == [1.0] + [0.0] * 7


def test_one_batch_routes_arithmetic_rows_to_accuracy_and_code_rows_to_code(tmp_path):
    write_jsonl([{"problem": "Compute 2 + 2.", "solution": "4"}], tmp_path / "a.jsonl")
    write_jsonl(code_tasks.rl_prompts(1, seed=0), tmp_path / "c.jsonl")
    ds = load_mixture([{"path": str(tmp_path / "a.jsonl")}, {"path": str(tmp_path / "c.jsonl")}], seed=0)
    by_task = {("code" if r["verification_info"] else "arithmetic"): r for r in ds}
    code_row = next(code_tasks.generate(1, seed=0))  # the same draw as rl_prompts(1, seed=0)
    cols = {k: [by_task["arithmetic"][k], by_task["code"][k]] for k in ("solution", "verification_info")}
    completions = ["<think>\nunits 2+2=4 write 4\n</think>\n\\boxed{4}", code_row["messages"][-1]["content"]]
    assert get_reward("accuracy")(completions, **cols) == [1.0, None]
    assert get_reward("code")(completions, **cols) == [None, 1.0]


def test_cold_start_mixture_keeps_the_code_turn_and_boxes_only_arithmetic(tmp_path):
    from r1_recipe.data import arithmetic

    write_jsonl(arithmetic.generate(4, seed=0), tmp_path / "a.jsonl")
    write_jsonl(code_tasks.cold_start(2, seed=0), tmp_path / "c.jsonl")
    ds = to_sft(load_mixture([{"path": str(tmp_path / "a.jsonl"), "weight": 2},
                              {"path": str(tmp_path / "c.jsonl"), "weight": 1}], seed=0))
    texts = [r["completion"][0]["content"] for r in ds]
    code = [t for t in texts if "```python\ndef f(x): return " in t]
    assert len(texts) == 6 and len(code) == 2 and not any("boxed" in t for t in code)
    assert sum("\\boxed{" in t for t in texts) == 4


def test_tiny_tokenizer_covers_the_code_task_and_keeps_digits_single():
    tok = build_tokenizer()
    row = next(code_tasks.generate(1, seed=0, style_weights={"sloppy": 1.0}))
    for text in (row["problem"], row["messages"][-1]["content"], "def f(x): return (x-29)%30"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    pieces = [tok.decode([i]) for i in tok("def f(x): return (x+29)*30", add_special_tokens=False)["input_ids"]]
    assert {"2", "9", "3", "0"} <= set(pieces) and " return" in pieces  # digits one by one, words whole
    assert len(tok(row["messages"][-1]["content"])["input_ids"]) < 48  # fits the demo's 64 new tokens


def get_reward(name, **options):
    return get_reward_funcs([name], **({name: options} if options else {}))[0]


class _Scripted:
    """Answers every demo_code prompt with ``answer(problem_text)``."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, prompts, params, progress=False):
        return [[self.answer(p[-1]["content"])] * params.n for p in prompts]


def _program_for(text: str, style: str) -> str:
    p = next(q for q in code_tasks.all_problems() if q.text == text)
    return code_tasks.answer_block(code_tasks.trace(p, style)[1])


def test_demo_code_benchmark_scores_canonical_answers_one_and_wrong_answers_zero(tmp_path):
    config = EvalConfig(model_name_or_path="m", benchmark="demo_code", num_problems=30, num_samples=2,
                        output_dir=str(tmp_path))
    right = evaluate(config, _Scripted(lambda t: "<think>\nfirst\n</think>\n" + _program_for(t, "careful")))
    assert right["pass@1"] == 1.0 and right["greedy_accuracy"] == 1.0 and right["pass@1_stderr"] == 0.0
    wrong = evaluate(config, _Scripted(lambda t: "<think>\nx\n</think>\n```python\ndef f(x): return x\n```"))
    assert wrong["pass@1"] == 0.0 and wrong["greedy_accuracy"] == 0.0
    sloppy = evaluate(config, _Scripted(lambda t: "<think>\nfast\n</think>\n" + _program_for(t, "sloppy")))
    rows = demo_code.rows(30, seed=0)
    expected = sum("return (" not in r["solution_program"] for r in rows) / 30
    assert sloppy["pass@1"] == pytest.approx(expected) and 0 < expected < 1
    samples = [json.loads(line) for line in open(tmp_path / "eval_demo_code_samples.jsonl")]
    assert len(samples) == 30 * 3 and all(s["answer"].startswith("def f(x)") for s in samples)


def test_batched_scoring_survives_hostile_programs_and_matches_one_process_each():
    rows = demo_code.rows(6, seed=0)
    refs = [r["answer"] for r in rows]
    good = [r["solution_program"] for r in rows]
    hostile = [
        "import os\nos._exit(0)",                                    # ends the shared process early
        "def f(x):\n    while True:\n        try:\n            pass\n        except BaseException:\n            pass",
        "print('x' * 10**7)",                                        # over the output cap
        "import sys\nsys.stdout.write('\\n' + 'deadbeef' + '1' * 99)",  # a forged verdict line
    ]
    programs = good + hostile + [None]
    references = refs + refs[:4] + [refs[0]]
    verdicts = eval_suites.verify(programs, references, "code_batched", workers=1, timeout=1.0)
    assert verdicts == [True] * 6 + [False] * 4 + [False]
    assert eval_suites.verify(good[:3] + ["def f(x): return x"], refs[:4], "code", workers=1) == \
        eval_suites.verify(good[:3] + ["def f(x): return x"], refs[:4], "code_batched", workers=1)


def test_data_tool_writes_the_code_files_apart_from_the_arithmetic_ones(tmp_path, capsys):
    from r1_recipe.cli import main

    assert main(["data", "--output", str(tmp_path), "--cold-start", "10", "--rl-prompts", "10", "--general", "2",
                 "--test", "5", "--pretrain", "0", "--pairs", "0", "--code-cold-start", "30",
                 "--code-prompts", "20"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts[str(tmp_path / "code_cold_start.jsonl")] == 30 and counts[str(tmp_path / "code_prompts.jsonl")] == 20
    prompts = [json.loads(line) for line in open(tmp_path / "code_prompts.jsonl")]
    assert set(prompts[0]) == {"problem", "verification_info", "source", "task"}  # no solution: accuracy skips
    styles = [json.loads(line)["style"] for line in open(tmp_path / "code_cold_start.jsonl")]
    assert 0 < styles.count("sloppy") < 30  # --sloppy 0.5 applies
    assert all("task" in json.loads(line) and json.loads(line)["task"] == "arithmetic"
               for line in open(tmp_path / "rl_prompts.jsonl"))  # rejection and RL 2 read no code


def test_code_reward_runs_each_distinct_program_of_a_batch_once(monkeypatch):
    """A GRPO group often holds the same program several times: one sandbox run per distinct
    (program, tests), the same rewards as running each (the demo's RL budget)."""
    from r1_recipe.rewards import code as code_reward
    from r1_recipe.rewards.sandbox import LocalSandbox

    runs = []

    class Counting(LocalSandbox):
        def run(self, program, stdin="", **judge):
            runs.append(program)
            return super().run(program, stdin, **judge)

    monkeypatch.setitem(code_reward.SANDBOX_PROVIDERS, "counting", Counting)
    info = Problem("+", 4, "*", 3).verification_info
    other = Problem("-", 4, "*", 3).verification_info
    right, wrong = _completion("def f(x): return (x+4)*3"), _completion("def f(x): return x+4*3")
    completions = [right] * 5 + [wrong] * 3 + [right]
    infos = [info] * 8 + [other]  # the same program against other tests is another run
    rewards = get_reward("code", provider="counting")(completions, verification_info=infos)
    assert rewards == [1.0] * 5 + [0.0] * 3 + [0.0]
    assert len(runs) == 3
