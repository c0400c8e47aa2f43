"""Bad input gets one line (issue 19), tried systematically.

For every key that a recipe in recipes/ sets, per stage config: a value of the wrong type, and a
value just outside its range where the key has one; plus every kind of corrupt data file, bad
command-line overrides and bad pipeline steps. Each case runs the CLI's ``main`` in-process (a
few run as real subprocesses) and must exit non-zero with no traceback, at most 3 lines of error
output besides logs, a message naming the key or the file, and no model or tokenizer loaded for
a recipe error.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
import yaml

from r1_recipe import config_checks
from r1_recipe.cli import main

ROOT = Path(__file__).resolve().parents[1]

# recipe -> the command that runs it (the folder under recipes/<model>/, or the demo file's name)
COMMANDS = {"stage1": ["sft"], "stage2": ["sft"], "rl1": ["grpo"], "rl2": ["grpo"], "zero": ["grpo"],
            "distill": ["distill"], "rejection": ["rejection_sampling"], "reward_model": ["reward_model"],
            "evaluate": ["evaluate"], "pretrain": ["pretrain"], "score": ["reward_model", "score"]}
STAGE_OF = {"sft": "sft", "pretrain": "pretrain", "grpo": "grpo", "distill": "distill",
            "rejection_sampling": "rejection_sampling", "reward_model": "reward_model", "evaluate": "evaluate"}
# keys the issue names, which must get a range wherever a recipe sets them (the derivation must cover them)
MUST_HAVE_RANGE = {"per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                   "max_steps", "max_length", "max_completion_length", "num_generations", "temperature", "top_p",
                   "beta", "learning_rate", "num_samples", "max_new_tokens", "mixture_size", "chunk_size",
                   "general_fraction", "eval_fraction", "reasoning_alpha", "kd_beta", "kd_temperature",
                   "num_train_epochs", "steps_per_generation", "max_per_prompt", "gpu_memory_utilization",
                   "vllm_gpu_memory_utilization", "batch_size", "warmup_steps", "logging_steps", "save_steps",
                   "num_problems", "weight_decay", "near_duplicate_threshold", "min_language_consistency"}
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) |examples/s|it/s\]|^\s*$")


def _command(recipe: Path) -> list[str] | None:
    key = recipe.stem if recipe.parent.parent.name == "recipes" else recipe.parent.name  # recipes/<model>/<file>.yaml
    for name, command in COMMANDS.items():
        if key == name or key.startswith(name + "_"):
            return command
    return None


def _recipes() -> list[tuple[Path, list[str]]]:
    found = []
    for recipe in sorted((ROOT / "recipes").rglob("*.yaml")):
        if recipe.stem.startswith("pipeline"):
            continue
        command = _command(recipe)
        assert command, f"{recipe}: no command known for it; add it to COMMANDS"
        found.append((recipe, command))
    return found


def _config_class(command: list[str]) -> type:
    return config_checks.config_class("score" if command[-1] == "score" else STAGE_OF[command[0]])


def _wrong_type(cls: type, key: str, value):
    """A value no annotation of ``key`` accepts."""
    tp = config_checks.field_types(cls)[key]
    members = config_checks.union_members(tp)
    if any(m in (int, float) for m in members):
        return "abc"
    if bool in members:
        return "maybe"
    if any(config_checks.is_enum(m) for m in members):
        return "no-such-choice"
    if any(typing_origin(m) is dict or m is dict for m in members):
        return [1, 2]
    if any(typing_origin(m) is list or m is list for m in members) and str not in members:
        return {"a": 1}
    return {"a": 1}


def typing_origin(tp):
    import typing

    return typing.get_origin(tp)


def _out_of_range(cls: type, key: str):
    bounds = config_checks.value_range(cls, key)
    if bounds is None:
        return None
    lo, lo_ok, hi, hi_ok = bounds
    default = config_checks.init_fields(cls)[key].default
    candidates = ([hi + 1] if hi is not None else []) + [lo - 1 if lo_ok else lo, lo - 2]
    return next(v for v in candidates if v != default)


LOADER, DUMPER = getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@functools.cache
def _recipe_data(recipe: Path) -> dict:
    return yaml.load(recipe.read_text(), Loader=LOADER)


def bad_recipe_cases() -> list[tuple[str, Path, list[str], str, object]]:
    """(id, recipe, command, key, bad value) for every (stage config, key) a recipe sets."""
    cases, seen = [], set()
    for recipe, command in _recipes():
        cls = _config_class(command)
        for key, value in _recipe_data(recipe).items():
            if key == "env" or (cls, key) in seen:
                continue
            seen.add((cls, key))
            rel = recipe.relative_to(ROOT)
            cases.append((f"{rel}:{key}:type", recipe, command, key, _wrong_type(cls, key, value)))
            bad = _out_of_range(cls, key)
            if key in MUST_HAVE_RANGE:
                assert bad is not None, f"{cls.__name__}.{key} has no range: add a rule to config_checks.RANGES"
            if bad is not None:
                cases.append((f"{rel}:{key}:range", recipe, command, key, bad))
    return cases


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # only --help may exit; anything else is a failure to report
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # a traceback the user would have seen
            import traceback

            return 1, "Traceback (most recent call last):\n" + "".join(traceback.format_exception(e))
    return code, err.getvalue()


def assert_one_line_error(code: int, stderr: str, *names: str) -> str:
    assert code != 0, f"accepted: {stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not LOG_LINE.search(line)]
    assert 1 <= len(lines) <= 3, stderr
    text = "\n".join(lines)
    assert any(n in text for n in names), f"names none of {names}: {text}"
    return text


@pytest.fixture
def no_model_loads(monkeypatch):
    """Record any model or tokenizer load: a recipe error must be found before one."""
    loads = []

    def refuse(*args, **kwargs):
        loads.append(args[:2])
        raise RuntimeError("a model was loaded for a recipe error")

    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)
    return loads


def test_every_recipe_key_with_a_wrong_type_or_range_gets_one_line(tmp_path, no_model_loads, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative output folders of the recipes land here, if anything is written
    cases = bad_recipe_cases()
    failures = []
    for case_id, recipe, command, key, bad in cases:
        data = {**_recipe_data(recipe), key: bad}
        path = tmp_path / f"{len(failures)}_{recipe.name}"
        path.write_text(yaml.dump(data, Dumper=DUMPER))
        argv = [*command, "--config", str(path)]
        if "model_name_or_path" not in data:
            argv += ["--model_name_or_path", "some/model"]
        if command[-1] == "score":
            argv += ["--output_dir", str(tmp_path / "score")]
        code, stderr = run_cli(argv)
        try:
            text = assert_one_line_error(code, stderr, key)
            assert str(path) in text, f"does not name the file: {text}"
        except AssertionError as e:
            failures.append(f"{case_id} = {bad!r}: {str(e).splitlines()[0][:300]}")
    kinds = {c[0].rsplit(":", 1)[1] for c in cases}
    print(f"\nbad recipe values tried: {len(cases)} ({sum(c[0].endswith(':range') for c in cases)} out of range)")
    assert kinds == {"type", "range"} and len(cases) > 200
    assert not failures, "\n".join(failures)
    assert not no_model_loads


OVERRIDES = [  # (command-line override, what the error must name)
    (["--per_device_train_batch_size", "abc"], "per_device_train_batch_size"),
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
    (["--temperature", "-1"], "temperature"),
    (["--top_p", "2.0"], "top_p"),
    (["--max_completion_length", "0"], "max_completion_length"),
    (["--beta", "-0.1"], "beta"),
    (["--dataset_mixture", "[{path: a.jsonl, weight: -1}]"], "dataset_mixture"),
    (["--dataset_mixture", "[{path: a.jsonl"], "dataset_mixture"),
    (["--dataset_mixture", "[{pth: a.jsonl}]"], "dataset_mixture"),
    (["--reward_kwargs", "{accuracy: {timeout: 5}"], "reward_kwargs"),
    (["--reward_kwargs", "[1, 2]"], "reward_kwargs"),
    (["--reward_kwargs", '{"acuracy": {"timeout": 5}}'], "reward_kwargs"),
    (["--reward_funcs", "accuracy", "no_such_reward"], "reward_funcs"),
    (["--reward_weights", "1.0", "x", "0.1"], "reward_weights"),
    (["--reward_weights", "[1.0, 0.5]"], "reward_weights"),  # 2 weights for 3 rewards: both keys
    (["--num_generations", "3"], "num_generations"),
    (["--lr_scheduler_type", "cosin"], "lr_scheduler_type"),
    (["--use_vllm", "maybe"], "use_vllm"),
    (["--learning_rate", "1e-4", "2e-4"], "learning_rate"),
    (["--max_steps"], "max_steps"),
    (["--eval_strategy", "steps"], "eval_strategy"),
    (["--steps_per_generation", "4", "--generation_batch_size", "256"], "generation_batch_size"),
    (["--learnig_rate", "1e-4"], "learnig_rate"),
    (["stray"], "stray"),
]


@pytest.mark.parametrize("override,name", OVERRIDES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_command_line_overrides_get_one_line(override, name, no_model_loads):
    code, stderr = run_cli(["grpo", "--config", str(ROOT / "recipes/demo/rl1.yaml"), *override])
    assert_one_line_error(code, stderr, name)
    assert not no_model_loads


def test_list_and_dict_overrides_take_json_or_yaml():
    from r1_recipe.configs import GRPOStageConfig, parse_config

    config = parse_config(GRPOStageConfig, [
        "--config", str(ROOT / "recipes/demo/rl1.yaml"),
        "--dataset_mixture", '[{"path": "a.jsonl", "weight": 2}, {path: b.jsonl}]',
        "--reward_funcs", "accuracy", "format", "--reward_weights", "[1, 0.5]",
        "--reward_kwargs", "{accuracy: {timeout: 5}}", "--lr_scheduler_type", "cosine_with_min_lr",
        "--lr_scheduler_kwargs", '{"min_lr": 0.0}',
        "--system_prompt", "null", "--max_train_seconds=60",
    ])
    assert config.dataset_mixture == [{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl"}]
    assert config.reward_funcs == ["accuracy", "format"] and config.reward_weights == [1.0, 0.5]
    assert config.reward_kwargs == {"accuracy": {"timeout": 5}} and config.lr_scheduler_kwargs == {"min_lr": 0.0}
    assert config.system_prompt is None and config.max_train_seconds == 60.0


def test_the_readme_list_override_runs_and_takes_effect(capsys):
    import shlex

    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "--dataset_mixture '[" in line and line.startswith("r1-recipe"))
    argv = shlex.split(line.split("   #")[0])
    assert main(argv[1:]) == 0
    printed = dict(row.split("=", 1) for row in capsys.readouterr().out.splitlines() if "=" in row)
    assert json.loads(printed["dataset_mixture"]) == [{"path": "runs/demo/data/rl_prompts.jsonl", "weight": 1}]
    assert json.loads(printed["reward_weights"]) == [1.0, 0.5]


# --- data files --------------------------------------------------------------------------------

GOOD_ROW = {"problem": "Compute 1 + 2.", "solution": "3", "reasoning": "1+2=3"}


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


DATA_CASES = {  # name -> (file name, bytes or None for a folder, what the message must say)
    "empty file": ("d.jsonl", b"", "empty"),
    "blank lines only": ("d.jsonl", b"\n\n  \n", "no rows"),
    "binary file": ("d.jsonl", bytes(range(256)) * 4, "not a text file"),
    "not UTF-8": ("d.jsonl", _jsonl([GOOD_ROW]) + b'{"problem": "\xff\xfe"}\n', "line 2"),
    "truncated last line": ("d.jsonl", _jsonl([GOOD_ROW] * 3)[:-20], "line 3"),
    "invalid JSON line": ("d.jsonl", _jsonl([GOOD_ROW]) + b"{problem: 1}\n" + _jsonl([GOOD_ROW]), "line 2"),
    "a line that is not an object": ("d.jsonl", _jsonl([GOOD_ROW, [1, 2]]), "line 2"),
    "mixed types in a column": ("d.jsonl", _jsonl([GOOD_ROW, {**GOOD_ROW, "problem": 7}]), "line 2"),
    "number as the problem": ("d.jsonl", _jsonl([{**GOOD_ROW, "problem": 7}] * 2), "problem"),
    "list as the reasoning": ("d.jsonl", _jsonl([{**GOOD_ROW, "reasoning": ["a", "b"]}] * 2), "reasoning"),
    "number as the answer": ("d.jsonl", _jsonl([{**GOOD_ROW, "solution": 3}] * 2), "solution"),
    "messages not a list of turns": ("d.jsonl", _jsonl([{"messages": "hi"}]), "messages"),
    "code row without test lists": ("d.jsonl", _jsonl([{**GOOD_ROW, "verification_info": {"tests": "x"}}]),
                                    "verification_info"),
    "mixed item types in lists": ("d.jsonl", _jsonl([{**GOOD_ROW, "tags": [1]}, {**GOOD_ROW, "tags": ["a"]}]),
                                  "line 2"),
    "corrupt parquet": ("d.parquet", b"PAR1" + b"\x00" * 64, "Parquet"),
    "not parquet at all": ("d.parquet", _jsonl([GOOD_ROW]), "Parquet"),
    "bad CSV": ("d.csv", b'problem,solution\n"1 + 2,3\n', "d.csv"),
    "folder without data files": ("folder", None, "no data files"),
    "unreadable file": ("d.jsonl", "unreadable", "cannot read"),
    "missing file": ("d.jsonl", "missing", "does not exist"),
}


def _write_data(tmp_path: Path, name: str) -> Path:
    file_name, content, _ = DATA_CASES[name]
    path = tmp_path / name.replace(" ", "_") / file_name
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()
        (path / "README.md").write_text("no data here")
    elif content == "unreadable":
        path.symlink_to("/proc/self/mem")  # reading it fails, even as root
    elif content != "missing":
        path.write_bytes(content)
    return path


COLUMN_CASES = {"number as the problem", "list as the reasoning", "number as the answer"}  # what SFT reads


@pytest.mark.parametrize("name", sorted(set(DATA_CASES) - COLUMN_CASES))
def test_every_kind_of_corrupt_data_file_gets_one_line(name, tmp_path, no_model_loads):
    """Read by decontamination, which loads data and no model."""
    path = _write_data(tmp_path, name)
    code, stderr = run_cli(["decontaminate", "--dataset", str(path), "--output", str(tmp_path / "out.jsonl"),
                            "--benchmark", "arithmetic"])
    text = assert_one_line_error(code, stderr, str(path))
    assert DATA_CASES[name][2] in text, text


@pytest.mark.parametrize("name", sorted(COLUMN_CASES))
def test_a_column_of_the_wrong_type_fails_before_the_model_loads(name, tmp_path, tiny_model_dir, monkeypatch):
    """SFT reads problem, reasoning and answer as text; a number or a list there is never coerced."""
    path = _write_data(tmp_path, name)
    loads = []
    original = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: loads.append(a) or original(*a, **k))
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "out"),
                                      "dataset_mixture": [{"path": str(path)}], "max_steps": 1, "report_to": "none"}))
    code, stderr = run_cli(["sft", "--config", str(recipe)])
    text = assert_one_line_error(code, stderr, DATA_CASES[name][2])
    assert re.search(r"\((problem|reasoning|answer)_column\)", text), text  # and the recipe key that names it
    assert f"source {path}" in text and "dataset_mixture of" not in text, text  # the data file, not output_dir
    assert not loads


@pytest.mark.parametrize("command,extra", [
    (["grpo"], ["--reward_funcs", "format", "--reward_weights", "[1.0]"]),
    (["rejection_sampling"], ["--reward_funcs", "format", "--reward_thresholds", "{format: 1.0}", "--general_mixture", "null"]),
], ids=["grpo", "rejection"])
def test_a_wrong_typed_problem_column_names_the_data_file_in_every_prompt_stage(command, extra, tmp_path, tiny_model_dir,
                                                                                 monkeypatch):
    # The error named the stage's output_dir ("dataset_mixture of runs/x: column 'problem' ...")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model loaded before the data check"))
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl([{"problem": "What is 1+1?", "solution": "2"}]))
    path = _write_data(tmp_path, "number as the problem")
    recipe = tmp_path / "stage.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_model_dir), "output_dir": str(tmp_path / "out"),
                                      "dataset_mixture": [{"path": str(good)}, {"path": str(path)}]}))
    code, stderr = run_cli([*command, "--config", str(recipe), *extra])
    text = assert_one_line_error(code, stderr, "(problem_column)")
    assert f"dataset_mixture[1] source {path}" in text, text


GRPO_REWARDS = ["--reward_kwargs", "{}", "--reward_weights", "[1.0, 1.0]"]
REJECTION_REWARDS = ["--reward_thresholds", "{accuracy: 1.0, code: 1.0}", "--general_mixture", "null"]


@pytest.mark.parametrize("command,recipe,rewards,missing", [
    (["grpo"], "rl1.yaml", ["accuracy", "code", *GRPO_REWARDS], "verification_info"),
    (["grpo"], "rl1.yaml", ["format", "cosine", *GRPO_REWARDS], "solution"),
    (["rejection_sampling"], "rejection.yaml", ["accuracy", "code", *REJECTION_REWARDS], "verification_info"),
], ids=["grpo-code", "grpo-cosine", "rejection-code"])
def test_data_without_a_column_a_reward_reads_fails_before_the_model_loads(
        command, recipe, rewards, missing, tmp_path, tiny_model_dir, monkeypatch):
    """The reward used to raise its KeyError at the first batch, from inside TRL's generation loop."""
    rows = [{"problem": f"{i}+1", "solution": str(i + 1), "verification_info": None} for i in range(8)]
    for row in rows:
        del row[missing]
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(_jsonl(rows))
    loads = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(a))
    code, stderr = run_cli([*command, "--config", str(ROOT / "recipes/demo" / recipe),
                            "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "out"),
                            "--dataset_mixture", json.dumps([{"path": str(path)}]), "--mixture_size", "8",
                            "--reward_funcs", *rewards])
    text = assert_one_line_error(code, stderr, missing)
    assert "dataset_mixture" in text and "column" in text, text
    assert not loads


def test_a_saved_dataset_without_rows_gets_one_line(tmp_path, no_model_loads):
    from datasets import Dataset

    folder = tmp_path / "saved"
    Dataset.from_dict({"problem": [], "solution": []}).save_to_disk(str(folder))
    code, stderr = run_cli(["decontaminate", "--dataset", str(folder), "--output", str(tmp_path / "o.jsonl"),
                            "--benchmark", "arithmetic"])
    assert_one_line_error(code, stderr, str(folder))  # datasets itself fails on it: its error, one line


def test_a_source_that_yields_no_rows_is_refused():
    """A Hub split with no rows, say: the loader returns an empty dataset, which a mixture would divide by."""
    from datasets import Dataset

    from r1_recipe.data.checks import DataError, checked_source

    @checked_source
    def load(spec, *, where="dataset_mixture"):
        return Dataset.from_dict({"problem": []})

    with pytest.raises(DataError, match=r"dataset_mixture\[2\]: org/empty \(split 'test'\) yields no rows"):
        load({"path": "org/empty", "split": "test"}, where="dataset_mixture[2]")


def test_data_checks_pass_good_files(tmp_path):
    from r1_recipe.data.loading import load_source

    path = tmp_path / "ok.jsonl"
    rows = [GOOD_ROW, {**GOOD_ROW, "tags": []}, {**GOOD_ROW, "tags": ["x"], "solution": None},
            {"messages": [{"role": "user", "content": "hi"}], "verification_info": json.dumps({"tests": ["assert 1"]})}]
    path.write_bytes(_jsonl(rows).rstrip(b"\n"))  # no newline after the last line is fine when it is whole
    assert len(load_source(str(path))) == 4


# --- pipeline, tools and real processes ------------------------------------------------------------


def _pipeline(tmp_path: Path, steps: list) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "run_dir": str(tmp_path / "run"), "steps": steps}))
    return path


PIPELINE_CASES = [  # (steps, what the error must name)
    ([{"name": "rl", "stage": "grpo", "recipe": "recipes/demo/rl1.yaml", "set": {"top_p": 2.0}}], "step rl"),
    ([{"name": "sft1", "stage": "sft", "recipe": "recipes/demo/stage1.yaml", "set": {"learnig_rate": 1}}], "step sft1"),
    ([{"name": "s", "stage": "sft", "recipe": "recipes/demo/stage1.yaml", "args": ["--max_steps", "x"]}], "step s"),
    ([{"name": "s", "stage": "sft", "recipe": "recipes/demo/stage1.yaml", "set": [1]}], "set"),
    ([{"name": "s", "stage": "sft", "recipe": "recipes/demo/stage1.yaml", "evaluate": "yes"}], "evaluate"),
    ([{"name": "base", "tool": "tiny"},
      {"name": "late", "stage": "distill", "recipe": "recipes/demo/distill.yaml", "from": "base",
       "set": {"kd_temperature": 0}}], "step late"),
]


@pytest.mark.parametrize("steps,name", PIPELINE_CASES, ids=[c[1] + str(i) for i, c in enumerate(PIPELINE_CASES)])
def test_bad_pipeline_steps_get_one_line_naming_the_step(steps, name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = _pipeline(tmp_path, steps)
    code, stderr = run_cli(["pipeline", "--config", str(path)])
    assert_one_line_error(code, stderr, name)
    assert not (tmp_path / "run").exists()  # nothing ran: the last step's error stopped the first


@pytest.mark.parametrize("argv,name", [
    (["check-launch", "recipes/demo/rl1.yaml", "--stage", "grpo", "--num-processes", "abc"], "--num-processes"),
    (["check-launch", "recipes/demo/rl1.yaml", "--stage", "grpo", "--num-processes", "2", "--", "--num_generations", "6"],
     "num_generations"),
    (["check-launch", "recipes/demo/rl1.yaml", "--stage", "grpo", "--num-processes", "1", "--", "--top_p", "9"], "top_p"),
    (["evaluate", "--config", "recipes/demo/evaluate.yaml", "--model_name_or_path", "m", "--num_samples", "-1"], "num_samples"),  # 0 is greedy only
    (["evaluate", "--config", "recipes/demo/evaluate.yaml", "--model_name_or_path", "m", "--pass_at_k", "8"], "pass_at_k"),
    (["rejection_sampling", "--config", "recipes/demo/rejection.yaml", "--max-new-tokens", "0"], "max_new_tokens"),
    (["decontaminate", "--dataset", "x.jsonl"], "output"),
    (["decontaminate", "--dataset", "x.jsonl", "--output", "o.jsonl", "--ngram", "0"], "ngram"),
    (["print-config", "recipes/demo/rl1.yaml"], "key"),
    (["sft", "--config", "recipes/demo"], "recipes/demo"),  # a folder, not a recipe
    (["sft", "--config", "recipes/demo/nope.yaml"], "nope.yaml"),
    (["sft", "--config", "README.md"], "README.md"),  # not a mapping
    (["data", "--output", "x", "--seed", "abc"], "--seed"),
])
def test_tools_and_sampling_commands_get_one_line(argv, name, monkeypatch, no_model_loads):
    monkeypatch.chdir(ROOT)
    code, stderr = run_cli(argv)
    assert_one_line_error(code, stderr, name)
    assert not no_model_loads


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["grpo", "--help"])
    assert exit_.value.code == 0 and "--per_device_train_batch_size" in capsys.readouterr().out


def _one_line_from_processes(runs: list[tuple[list[str], str]]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = [(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                name) for argv, name in runs]  # side by side: each spends its time importing torch and TRL
    for process, name in started:
        _, stderr = process.communicate(timeout=300)
        assert_one_line_error(process.returncode, stderr, name)


def test_a_real_stage_process_prints_one_line(tmp_path):
    """As a user runs it: ``python -m r1_recipe.grpo``, through the stage's own __main__."""
    recipe = tmp_path / "rl1.yaml"
    recipe.write_text((ROOT / "recipes/demo/rl1.yaml").read_text().replace("temperature: 1.0", "temperature: -1"))
    _one_line_from_processes([([sys.executable, "-m", "r1_recipe.grpo", "--config", str(recipe)], "temperature")])


@pytest.mark.slow
def test_real_pipeline_and_tool_processes_print_one_line(tmp_path):
    truncated = tmp_path / "d.jsonl"
    truncated.write_bytes(_jsonl([GOOD_ROW] * 2)[:-5])
    pipeline = _pipeline(tmp_path, [{"name": "rl", "stage": "grpo", "recipe": str(ROOT / "recipes/demo/rl1.yaml"),
                                     "set": {"beta": -1}}])
    _one_line_from_processes([
        ([sys.executable, "-m", "r1_recipe.pipeline", "--config", str(pipeline)], "step rl"),
        ([sys.executable, "-m", "r1_recipe.decontaminate", "--dataset", str(truncated), "--output",
          str(tmp_path / "o.jsonl"), "--benchmark", "arithmetic"], str(truncated)),
    ])
