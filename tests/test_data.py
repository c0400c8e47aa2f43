"""Generated data, mixtures and the row → TRL-format conversion."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from datasets import Dataset

from r1_recipe.data import arithmetic
from r1_recipe.data.loading import DataError, load_mixture, load_source, to_prompts, to_sft, write_jsonl


def test_held_out_problems_never_appear_in_training_data():
    train = {r["problem"] for r in arithmetic.generate(20000, seed=3)}
    test = {r["problem"] for r in arithmetic.generate(500, split="test", seed=3)}
    assert len(test) == 500 and not train & test


@pytest.mark.parametrize("p", arithmetic.all_problems()[::97])
def test_careful_traces_are_always_right_and_sloppy_only_without_carries(p):
    _, careful = arithmetic.trace(p, "careful")
    _, sloppy = arithmetic.trace(p, "sloppy")
    assert careful == p.answer
    assert (sloppy == p.answer) == (not p.needs_carry)


def test_style_weights_are_respected_and_styles_are_recognisable():
    rows = list(arithmetic.generate(2000, seed=0, style_weights={"careful": 0.5, "sloppy": 0.5}))
    share = Counter(r["style"] for r in rows)["sloppy"] / len(rows)
    assert 0.45 < share < 0.55
    for r in rows[:50]:
        assert arithmetic.style_of("<think>\n" + r["reasoning"]) == r["style"]


def test_mixture_weights_3_to_1_give_that_ratio(tmp_path):
    write_jsonl(({"problem": f"a{i}", "origin": "a"} for i in range(500)), tmp_path / "a.jsonl")
    write_jsonl(({"problem": f"b{i}", "origin": "b"} for i in range(500)), tmp_path / "b.jsonl")
    ds = load_mixture([{"path": str(tmp_path / "a.jsonl"), "weight": 3}, {"path": str(tmp_path / "b.jsonl"), "weight": 1}],
                      size=400, seed=0)
    counts = Counter(ds["origin"])
    assert counts == {"a": 300, "b": 100}
    assert ds["origin"][:20] != sorted(ds["origin"][:20])  # shuffled, not two blocks


def test_missing_column_error_lists_present_columns(tmp_path):
    write_jsonl([{"question": "q", "solution": "1", "reasoning": "r"}], tmp_path / "d.jsonl")
    ds = load_source(str(tmp_path / "d.jsonl"))
    with pytest.raises(DataError) as err:
        to_sft(ds, where="d.jsonl")
    assert "['problem']" in str(err.value) and "question" in str(err.value) and "d.jsonl" in str(err.value)


def test_column_renaming_and_missing_file_errors(tmp_path):
    write_jsonl([{"question": "q", "answer": "1"}], tmp_path / "d.jsonl")
    ds = load_source({"path": str(tmp_path / "d.jsonl"), "columns": {"problem": "question"}, "source": "general"})
    assert ds[0]["problem"] == "q" and ds[0]["source"] == "general"
    with pytest.raises(DataError, match="does not exist"):
        load_source(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="unknown key.*wieght"):
        load_source({"path": str(tmp_path / "d.jsonl"), "wieght": 2})


def test_sft_rows_are_prompt_completion_in_the_r1_format():
    ds = Dataset.from_list(list(arithmetic.generate(4, seed=0, style_weights={"sloppy": 1.0})))
    row = to_sft(ds, system_prompt="be careful")[0]
    assert row["prompt"][0] == {"role": "system", "content": "be careful"}
    assert row["prompt"][-1]["role"] == "user"
    content = row["completion"][0]["content"]
    assert content.startswith("<think>\nquick ") and "\n</think>\n\\boxed{" in content
    # the completion ends with the answer its own (possibly sloppy) trace reached
    assert content.endswith(f"\\boxed{{{ds[0]['reasoning_answer']}}}")
    zero = to_sft(ds, template="r1_zero")[0]
    assert zero["prompt"].endswith("Assistant: <think>\n") and zero["completion"].endswith("</answer>")


def test_messages_rows_split_at_last_assistant_turn():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\nx\n</think>\nhello"}]
    row = to_sft(Dataset.from_list([{"messages": msgs, "source": "general"}]))[0]
    assert row["prompt"] == msgs[:1] and row["completion"] == msgs[1:] and row["source"] == "general"


def test_prompts_keep_reference_columns():
    ds = to_prompts(Dataset.from_list(list(arithmetic.generate(3, seed=0))))
    assert ds[0]["prompt"][-1]["role"] == "user" and "solution" in ds.column_names


def test_cli_writes_the_demo_datasets(tmp_path, capsys):
    from r1_recipe.cli import main

    assert main(["data", "--output", str(tmp_path), "--cold-start", "40", "--rl-prompts", "10", "--general", "5",
                 "--test", "20", "--pretrain", "30", "--pairs", "10", "--general-sft", "10"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts[str(tmp_path / "cold_start.jsonl")] == 40
    assert sum(1 for _ in open(tmp_path / "test.jsonl")) == 20
    assert counts[str(tmp_path / "pretrain.jsonl")] == 30 and counts[str(tmp_path / "prefs_helpful_train.jsonl")] == 10


def test_data_instruction_follows_every_arithmetic_problem_as_the_evaluator_appends_it(tmp_path, capsys):
    """`--instruction`: the cold start and RL prompts are the prompts the model is evaluated on
    (problem, blank line, instruction), so the format it learns is the one it is scored in."""
    from r1_recipe.cli import main

    text = "Write the result as \\boxed{result}."
    assert main(["data", "--output", str(tmp_path), "--cold-start", "5", "--rl-prompts", "5", "--general", "0",
                 "--test", "5", "--pretrain", "0", "--pairs", "0", "--code-cold-start", "0", "--code-prompts", "0",
                 "--instruction", text]) == 0
    for name in ("cold_start.jsonl", "rl_prompts.jsonl", "test.jsonl"):
        rows = [json.loads(line) for line in open(tmp_path / name)]
        assert rows and all(r["problem"].startswith("Compute ") and r["problem"].endswith(f".\n\n{text}") for r in rows)


def test_mixture_keeps_columns_a_source_lacks_as_none(tmp_path):
    write_jsonl(({"problem": f"a{i}", "solution": str(i)} for i in range(6)), tmp_path / "a.jsonl")
    write_jsonl(({"problem": f"b{i}", "messages": [{"role": "user", "content": "hi"}]} for i in range(2)),
                tmp_path / "b.jsonl")
    ds = load_mixture([{"path": str(tmp_path / "a.jsonl"), "weight": 3}, {"path": str(tmp_path / "b.jsonl")}],
                      seed=0)
    rows = {r["problem"]: r for r in ds}
    assert len(rows) == 8 and set(ds.column_names) >= {"problem", "solution", "messages"}
    assert rows["a3"]["solution"] == "3" and rows["a3"]["messages"] is None
    assert rows["b1"]["solution"] is None and rows["b1"]["messages"] == [{"role": "user", "content": "hi"}]


def test_mixture_with_conflicting_column_types_names_the_column(tmp_path):
    write_jsonl([{"problem": "a", "solution": "1"}], tmp_path / "a.jsonl")
    write_jsonl([{"problem": "b", "solution": 2}], tmp_path / "b.jsonl")
    with pytest.raises(DataError, match=r"column 'solution' is .*source 0.*source 1"):
        load_mixture([{"path": str(tmp_path / "a.jsonl")}, {"path": str(tmp_path / "b.jsonl")}],
                     where="recipe.yaml: dataset_mixture")


def test_sft_mixture_of_message_rows_and_column_rows(tmp_path):
    """Rejection output (messages) mixed with plain rows: each row is built its own way."""
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd\n</think>\n4"}]
    write_jsonl([{"messages": chat, "source": "reasoning"}], tmp_path / "a.jsonl")
    write_jsonl([{"problem": "3+3?", "reasoning": "add", "solution": "6", "source": "general"}], tmp_path / "b.jsonl")
    ds = to_sft(load_mixture([{"path": str(tmp_path / "a.jsonl")}, {"path": str(tmp_path / "b.jsonl")}]))
    by_source = {r["source"]: r for r in ds}
    assert by_source["reasoning"]["completion"] == [chat[1]]
    assert "6" in by_source["general"]["completion"][0]["content"]
    assert by_source["general"]["prompt"][-1]["content"].endswith("3+3?")
    write_jsonl([{"problem": "3+3?", "source": "general"}], tmp_path / "c.jsonl")
    with pytest.raises(DataError, match=r"stage2.yaml: missing column\(s\) \['reasoning', 'solution'\]"):
        to_sft(load_mixture([{"path": str(tmp_path / f"{n}.jsonl")} for n in "ac"]), where="stage2.yaml")
    with pytest.raises(DataError, match=r"stage2.yaml: row \d has no \['reasoning', 'solution'\].*columns:"):
        to_sft(load_mixture([{"path": str(tmp_path / f"{n}.jsonl")} for n in "abc"]), where="stage2.yaml")
    with pytest.raises(DataError, match=r"rl.yaml: row \d has no 'problem'.*columns:"):
        to_prompts(load_mixture([{"path": str(tmp_path / f"{n}.jsonl")} for n in "ab"]), where="rl.yaml")


def test_checked_traces_fail_exactly_when_wrong_and_retries_reach_the_answer():
    """The aha demo's data: the check is the true inverse operation, it fails iff the trace's
    answer is wrong, and a retry (and only a retry) turns a failed check into the right answer."""
    rows = list(arithmetic.generate(3000, seed=0, style_weights={"careful": 0.3, "sloppy": 0.7},
                                    checks=True, retry_rate=0.5))
    failed = [r for r in rows if " bad" in r["reasoning"]]
    for r in rows:
        check = r["reasoning"].split("\ncheck ")[1].split("\n")[0]  # e.g. "87-49=38 bad"
        expr, verdict = check.split(" ")
        left, value = expr.split("=")
        assert eval(left) == int(value)  # noqa: S307 - generated digits and one operator
        assert (verdict == "bad") == ("\nretry " in r["reasoning"] or r["reasoning_answer"] != r["solution"])
        assert r["retried"] == ("\nretry " in r["reasoning"])
        assert (r["reasoning_answer"] == r["solution"]) == (verdict == "ok" or r["retried"])
    assert all(r["style"] == "sloppy" for r in failed)  # careful traces never fail their check
    assert 0.45 < sum(r["retried"] for r in failed) / len(failed) < 0.55
    stats = arithmetic.check_stats([r["reasoning"] for r in rows])
    assert stats["check_failed"] == len(failed) / len(rows)
    assert abs(stats["retry_after_failed_check"] - sum(r["retried"] for r in failed) / len(failed)) < 1e-12
    plain = next(arithmetic.generate(1, seed=0))
    assert "check" not in plain["reasoning"] and "retried" not in plain


def test_oversampling_shows_every_row_before_any_row_twice(tmp_path, caplog):
    """n > N: each row ⌊n/N⌋ or ⌈n/N⌉ times (the stacked copies used to leave rows out, others thrice)."""
    write_jsonl(({"problem": f"a{i}"} for i in range(10)), tmp_path / "a.jsonl")
    write_jsonl(({"problem": f"b{i}"} for i in range(100)), tmp_path / "b.jsonl")
    for seed in range(5):
        ds = load_mixture([{"path": str(tmp_path / "a.jsonl"), "weight": 1}, {"path": str(tmp_path / "b.jsonl")}],
                          size=50, seed=seed)
        counts = Counter(p for p in ds["problem"] if p.startswith("a"))
        assert sum(counts.values()) == 25 and len(counts) == 10 and set(counts.values()) == {2, 3}
        assert Counter(counts.values()) == {2: 5, 3: 5}
        b = [p for p in ds["problem"] if p.startswith("b")]
        assert len(b) == len(set(b)) == 25  # n ≤ N: distinct rows


def test_a_mixture_that_must_repeat_rows_warns_naming_the_source_and_mixture_size(tmp_path, caplog):
    write_jsonl(({"problem": f"a{i}"} for i in range(10)), tmp_path / "a.jsonl")
    with caplog.at_level("WARNING", logger="r1_recipe.data.loading"):
        load_mixture([{"path": str(tmp_path / "a.jsonl")}], size=15, seed=0)
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    message = record.getMessage()
    assert "a.jsonl" in message and "mixture_size 15" in message and "5 rows repeat" in message


def test_constant_and_missing_columns_are_added_without_copying_the_source(tmp_path):
    write_jsonl(({"problem": f"a{i}", "solution": str(i)} for i in range(300)), tmp_path / "a.jsonl")
    write_jsonl(({"problem": f"b{i}"} for i in range(300)), tmp_path / "b.jsonl")
    ds = load_mixture([{"path": str(tmp_path / "a.jsonl"), "source": "reasoning"},
                       {"path": str(tmp_path / "b.jsonl"), "source": "general"}], size=200, seed=0)
    assert Counter(ds["source"]) == {"reasoning": 100, "general": 100}
    rows = ds.to_list()
    assert all((r["solution"] is None) == (r["source"] == "general") for r in rows)
    assert all(r["problem"][0] == ("a" if r["source"] == "reasoning" else "b") for r in rows)
    assert ds._indices is not None and len(ds.data) == 600  # sampled by an indices mapping, not copied


def _simplerl_layout(root):
    """A local copy laid out like hkust-nlp/SimpleRL-Zoo-Data: data dirs with train and test
    files whose columns differ."""
    for folder, n in (("simplelr_qwen_level3to5", 3), ("simplelr_qwen_gsm8k_level1", 4)):
        (root / folder).mkdir(parents=True)
        Dataset.from_list([{"question": f"{folder} q{i}", "gt_answer": str(i)} for i in range(n)]).to_parquet(
            str(root / folder / "train.parquet"))
        Dataset.from_list([{"problem": "p", "answer": "2", "level": 1}]).to_parquet(str(root / folder / "test.parquet"))
    return root


def test_data_files_reads_one_split_of_a_hub_layout_folder(tmp_path):
    root = _simplerl_layout(tmp_path / "SimpleRL-Zoo-Data")
    ds = load_source({"path": str(root), "data_files": "simplelr_qwen_level3to5/train.parquet",
                      "columns": {"problem": "question", "answer": "gt_answer"}})
    assert ds.column_names == ["problem", "answer"] and len(ds) == 3
    assert ds[0]["problem"].startswith("simplelr_qwen_level3to5 ")
    split = load_source({"path": str(root), "data_files": {"train": "simplelr_qwen_gsm8k_level1/train.parquet"}})
    assert len(split) == 4


def test_data_dir_of_a_local_folder_uses_the_hub_path_and_its_error_names_data_files(tmp_path):
    root = _simplerl_layout(tmp_path / "SimpleRL-Zoo-Data")
    with pytest.raises(DataError, match="data_files"):
        load_source({"path": str(root), "data_dir": "simplelr_qwen_level3to5"})
    with pytest.raises(DataError, match="data_dir/data_files"):
        load_source({"path": str(root / "simplelr_qwen_level3to5" / "train.parquet"), "data_files": "x"})
