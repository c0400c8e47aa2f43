"""Decontamination: word 8-gram overlap between training rows and evaluation problems."""

from __future__ import annotations

import json

import pytest

from r1_recipe import cli, eval_suites
from r1_recipe.configs import ConfigError
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.decontaminate import DecontaminateConfig, NgramIndex, decontaminate

AIME_LIKE = ("Find the number of ordered pairs of positive integers such that the product of the two "
             "numbers equals twice their sum plus seven.")


def test_eight_word_overlap_is_caught_seven_is_not():
    index = NgramIndex(8)
    index.add(AIME_LIKE, "aime24")
    words = AIME_LIKE.split()
    eight, seven = " ".join(words[5:13]), " ".join(words[5:12])
    assert index.matches(f"Intro text. {eight.upper()}   and more") == {"aime24"}  # case, spacing
    assert index.matches(f"Intro text. {seven} and more") == set()
    assert index.matches("A fresh problem about triangles and circles with no shared phrase at all.") == set()


def test_short_problems_match_as_whole_phrases():
    index = NgramIndex(8)
    index.add("Compute 48 + 49.", "arithmetic")
    assert index.matches("Q: compute 48 + 49. Show work.") == {"arithmetic"}
    assert index.matches("Compute 48 - 49.") == set()


def test_generated_training_data_is_clean_and_a_leak_is_flagged_or_dropped(tmp_path, capsys):
    _, _, evaluated = eval_suites.load_benchmark("arithmetic")
    train = list(arithmetic.generate(300, seed=5))
    never_evaluated = next(p.text for p in arithmetic.all_problems() if p.held_out and p.text not in evaluated["problem"])
    leaked = [{**train[0], "problem": p} for p in (evaluated["problem"][3], never_evaluated)]  # any held-out one
    path = tmp_path / "rl_prompts.jsonl"
    write_jsonl(train + leaked, path)

    out = tmp_path / "flagged.jsonl"
    assert cli.main(["decontaminate", "--dataset", str(path), "--benchmark", "arithmetic",
                     "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 302 and summary["contaminated"] == 2 and summary["by_benchmark"] == {"arithmetic": 2}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["problem"] for r in rows if r["contaminated"]] == [r["problem"] for r in leaked]
    assert rows[-1]["contaminated_by"] == ["arithmetic"]

    dropped = tmp_path / "clean.parquet"
    s = decontaminate(DecontaminateConfig(dataset=str(path), output=str(dropped), benchmark="arithmetic", mode="drop"))
    from datasets import Dataset

    clean = Dataset.from_parquet(str(dropped))
    assert s["rows_written"] == len(clean) == 300 and "contaminated" not in clean.column_names


def test_local_hub_copy_and_chat_columns(tmp_path):
    bench = tmp_path / "aime.jsonl"
    write_jsonl([{"problem": AIME_LIKE, "answer": "3"}], bench)
    data = tmp_path / "sft.jsonl"
    write_jsonl([
        {"messages": [{"role": "user", "content": "Solve: " + AIME_LIKE.lower()}, {"role": "assistant", "content": "3"}]},
        {"messages": [{"role": "user", "content": "Something else entirely."}, {"role": "assistant", "content": "ok"}]},
    ], data)
    s = decontaminate(DecontaminateConfig(dataset=str(data), output=str(tmp_path / "o.jsonl"),
                                          benchmark=f"aime24={bench}", columns=["messages"]))
    assert s["contaminated"] == 1 and s["by_benchmark"] == {"aime24": 1}


def test_errors_name_the_fix(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_jsonl([{"question": "q"}], data)
    code = cli.main(["decontaminate", "--dataset", str(data), "--benchmark", "arithmetic",
                     "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "missing column(s) ['problem']" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="flag or drop"):
        DecontaminateConfig(dataset="d", output="o.jsonl", mode="remove")


@pytest.mark.parametrize("leak_at", [5, 1200])
def test_a_leak_after_the_first_write_batch_is_flagged(tmp_path, leak_at):
    """Rare contamination: the first 1,000 rows (datasets.map's write batch) can all be clean."""
    bench = tmp_path / "aime.jsonl"
    write_jsonl([{"problem": AIME_LIKE, "answer": "3"}], bench)
    rows = [{"problem": f"Fresh problem number {i} about a triangle with sides {i}, {i + 1} and {i + 2}."}
            for i in range(1500)]
    rows[leak_at] = {"problem": "Solve: " + AIME_LIKE}
    data = tmp_path / "train.jsonl"
    write_jsonl(rows, data)
    out = tmp_path / "flagged.parquet"
    s = decontaminate(DecontaminateConfig(dataset=str(data), output=str(out), benchmark=f"aime24={bench}"))
    assert s["contaminated"] == 1 and s["by_benchmark"] == {"aime24": 1}
    from datasets import Dataset

    flagged = Dataset.from_parquet(str(out))
    assert [i for i, c in enumerate(flagged["contaminated"]) if c] == [leak_at]
    assert flagged[leak_at]["contaminated_by"] == ["aime24"] and flagged[0]["contaminated_by"] == []
