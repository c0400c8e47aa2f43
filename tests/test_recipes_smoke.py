"""Every shipped recipe (``recipes/**.yaml`` except ``recipes/demo/``) runs as shipped on CPU.

Only three things are swapped: the model (a Hub id becomes its stand-in from
``r1_recipe.standins``: real config shrunk, real tokenizer; a ``runs/…`` folder becomes the output
of the recipe that writes it, run here first), the data (Hub ids resolve to the Hub-shaped
fixtures in ``tests/fixtures/hub`` through ``R1_RECIPE_HUB_MIRROR`` — the same ``load_dataset``
call; ``runs/…`` inputs become upstream outputs) and the sizes (steps, batch, lengths, rows).
Accumulation, loss settings, templates, rewards and filters stay as written; so do a sampling
recipe's ``backend`` and ``data_parallel_size`` where vLLM is installed (``make test-vllm``: the
evaluation recipes start their vLLM replicas as shipped, with ``enforce_eager`` so an engine starts
in seconds); the main suite, without vLLM, runs them on transformers with one replica. Each run does 2
optimizer steps (sampling stages: a few prompts), then its output folder is checked as the next
stage will read it.

Before shrinking, the recipe's own lengths are checked against the model's positions: a recipe
that trains past ``max_position_embeddings`` fails here even though the shrunk run would not.

A random stand-in solves nothing, so the rejection stage keeps no trace; the stages that read a
rejection folder get that folder plus one reasoning shard and an RL prompt set written with the
stage's own writer from the OpenR1 fixture's correct traces — the rows a policy that solves the
fixture would have kept.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

HAS_VLLM = importlib.util.find_spec("vllm") is not None

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hub"
# recipes/demo/ runs in `make demo`; recipes/SmolLM2-135M/ runs here on the real weights (its
# stand-in is the model itself, r1_recipe.standins)
NOT_HERE = {"demo"}
# the model an evaluation recipe of recipes/<family>/evaluate/ scores (it takes it on the command line)
FAMILY_MODELS = {"SmolLM2-135M": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# runs/ inputs no recipe writes: benchmarks/real_model_rl.py writes the first with the same function;
# the `make demo-real` pipeline's data step writes the others (run here with its own arguments, fewer rows)
GENERATED = {"runs/smollm2/data/rl_prompts.jsonl": "recipes/SmolLM2-135M/evaluate.yaml",
             "runs/real/data/cold_start.jsonl": "recipes/SmolLM2-135M/pipeline.yaml",
             "runs/real/data/rl_prompts.jsonl": "recipes/SmolLM2-135M/pipeline.yaml"}


def write_generated(path: str, folder: Path) -> Path:
    """The SmolLM2 RL prompts (training problems with the evaluation recipe's instruction), or the
    file the pipeline's data step writes, from that step's arguments with 16 rows of each kind."""
    from r1_recipe.cli import main
    from r1_recipe.data.arithmetic import prompts_with_instruction
    from r1_recipe.data.loading import write_jsonl

    source = yaml.safe_load((ROOT / GENERATED[path]).read_text())
    out = folder / "generated" / path
    out.parent.mkdir(parents=True, exist_ok=True)
    if "steps" not in source:
        write_jsonl(prompts_with_instruction(16, source["instruction"]), out)
        return out
    args = [str(a).replace("{{", "{").replace("}}", "}") for a in next(s for s in source["steps"] if s["name"] == "data")["args"]]
    for flag in ("--cold-start", "--rl-prompts"):
        args[args.index(flag) + 1] = "16"
    assert main(["data", "--output", str(out.parent), *args]) == 0
    assert out.exists(), f"{path}: the pipeline's data step did not write it"
    return out


ALL = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if not NOT_HERE & set(p.relative_to(ROOT / "recipes").parts))
PIPELINES = [p for p in ALL if p.stem == "pipeline" or p.stem.startswith("pipeline_")]
RECIPES = [p for p in ALL if p not in PIPELINES]
FOLDER_STAGES = {"stage1": "sft", "stage2": "sft", "rl1": "grpo", "rl2": "grpo", "zero": "grpo", "distill": "distill",
                 "rejection": "rejection_sampling", "reward_model": "reward_model", "evaluate": "evaluate"}
# the default suite runs these (one per stage kind, the cheapest); the rest are `slow`
# (those that need no upstream stage; the assetless test below checks every recipe's inputs and lengths)
FAST = {"Qwen2.5-1.5B/stage1/cold_start.yaml", "Qwen2.5-1.5B/zero/config_simplerl.yaml",
        "Qwen2.5-1.5B/evaluate/benchmarks.yaml", "Qwen2.5-7B/evaluate/benchmarks.yaml"}
# rows of the Hub datasets the recipes sample (the cards' viewer counts), to catch a mixture that
# must repeat rows to reach its mixture_size
HUB_ROWS = {("open-r1/OpenR1-Math-220k", "default", "train"): 93_733,
            ("open-r1/OpenR1-Math-220k", "extended", "train"): 131_396,
            ("HuggingFaceH4/ultrafeedback_binarized", None, "train_prefs"): 61_135,
            ("HuggingFaceH4/ultrachat_200k", None, "train_sft"): 207_865,
            ("Skywork/Skywork-Reward-Preference-80K-v0.2", None, "train"): 77_016,
            ("open-r1/verifiable-coding-problems-python", None, "train"): 35_735}
LENGTHS = {"max_length", "max_completion_length", "max_new_tokens", "max_model_len"}
BENCHMARK_TOKENS = 32_768  # eval_suites' default generation budget for the Hub suites
DROP = {"vllm_mode", "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode", "vllm_server_host",
        "vllm_server_port", "vllm_server_timeout", "wandb_project", "wandb_group", "save_steps",
        "save_total_limit", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len"}


def stage_of(recipe: Path) -> str:
    folder = recipe.parent.name if recipe.parent.parent != ROOT / "recipes" else recipe.stem
    stage = next((v for k, v in FOLDER_STAGES.items() if folder == k or folder.startswith(k + "_")), None)
    assert stage, f"{recipe}: no stage known for folder {folder!r}; add it to FOLDER_STAGES"
    return stage


def writer_of(path: str) -> tuple[Path, str]:
    """The recipe whose output_dir holds ``path`` (a node recipe over a Slurm one), and the rest."""
    found = []
    assert path not in GENERATED, path
    for recipe in RECIPES:
        out = yaml.safe_load(recipe.read_text()).get("output_dir", "")
        if out and (path == out or path.startswith(out + "/")):
            found.append((len(out), "slurm" not in recipe.stem, recipe, path[len(out):].lstrip("/")))
    if not found:
        pytest.fail(f"{path}: no recipe under recipes/ writes it (no output_dir matches); add that stage's recipe")
    _, _, recipe, rest = max(found, key=lambda f: (f[0], f[1]))
    return recipe, rest


def shrink(recipe: dict, stage: str) -> dict:
    out = {k: v for k, v in recipe.items() if k not in DROP}
    if "mixture_size" in out:
        out["mixture_size"] = min(out["mixture_size"], 8)
    if stage in {"sft", "distill", "grpo", "reward_model"}:
        out.update(max_steps=2, logging_steps=1, save_strategy="no", report_to="none", bf16=False, dtype="float32",
                   warmup_steps=0)
        out.pop("num_train_epochs", None)
    if stage in {"sft", "distill"}:
        out.update(per_device_train_batch_size=1, max_length=min(out.get("max_length", 1024), 160))
    if stage == "reward_model":
        out.update(per_device_train_batch_size=2, per_device_eval_batch_size=2, max_length=160, eval_steps=2,
                   eval_fraction=max(out.get("eval_fraction", 0.0), 0.25))
    if stage == "grpo":
        out.update(use_vllm=False, num_generations=2, per_device_train_batch_size=2, max_completion_length=12,
                   log_completions=False, max_train_seconds=None)
        # at least one optimizer step's prompts (TRL skips a generation batch the data cannot fill)
        out["mixture_size"] = max(8, 2 * out.get("gradient_accumulation_steps", 1) // 2)
    if stage in {"rejection_sampling", "evaluate"}:
        out.update(num_samples=2, max_new_tokens=12, batch_size=64)
        if not HAS_VLLM:  # backend and replicas as shipped run under `make test-vllm` (.venv-vllm)
            out.update(backend="transformers", data_parallel_size=1)
        elif out.get("backend") == "vllm":  # an engine that starts in seconds, not one compiled for minutes
            out["vllm_kwargs"] = {**(out.get("vllm_kwargs") or {}), "enforce_eager": True}
    if stage == "rejection_sampling":
        out.update(mixture_size=min(out.get("mixture_size", 4), 4), chunk_size=4)
    if stage == "evaluate":
        out.update(num_problems=2)
    return out


def end_of_turn(tokenizer) -> str:
    """The special token the chat template closes an assistant turn with."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}],
                                         tokenize=False)
    tail = text.split("ANSWER", 1)[1]
    special = sorted((t for t in tokenizer.all_special_tokens + list(tokenizer.added_tokens_encoder) if t and t in tail),
                     key=tail.index)
    assert special, f"the chat template writes no special token after the assistant turn: {tail!r}"
    return special[0]


def seed_rejection(folder: Path) -> None:
    """Add what a policy that solves the OpenR1 fixture would have kept, in the stage's own schema:
    its correct traces, the general rows the stage's own general mix adds to them (a quarter), and
    the RL prompt set with a pass rate inside any range."""
    from datasets import load_dataset

    from r1_recipe.rejection_config import RejectionSamplingConfig
    from r1_recipe.rejection_filters import prompt_id
    from r1_recipe.rejection_output import general_dataset, write_dataset, write_rows

    shard = folder / "data" / "train-seeded.parquet"
    if shard.exists():
        return
    config = RejectionSamplingConfig(**yaml.safe_load((folder / "resolved_config.yaml").read_text()))
    rows = load_dataset("parquet", data_files=str(FIXTURES / "open-r1/OpenR1-Math-220k/default/*.parquet"),
                        split="train")
    names = list(config.reward_funcs)
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    kept = [{"messages": [*system, *r["messages"]], "prompt_id": prompt_id(r["problem"]), "prompt_index": i,
             "source": "reasoning", "sample_index": 0, "rewards": {n: 1.0 for n in names}, "problem": r["problem"],
             "reference": r["answer"], "answer": r["answer"], "pass_rate": 0.5} for i, r in enumerate(rows)]
    write_rows(kept, shard, names)
    want = round(len(kept) * config.general_fraction / (1 - config.general_fraction))
    if want:
        write_dataset(general_dataset(config, want), folder / "data" / "train-seeded-general.parquet", names)
    if config.pass_rate_range:
        rows.select_columns(["problem", "answer"]).rename_column("answer", "solution").add_column(
            "pass_rate", [0.5] * len(rows)).to_parquet(str(folder / "rl_prompts.parquet"))


class Smoke:
    """Runs recipes once per session, upstream first; remembers outputs and failures."""

    def __init__(self, tmp: Path, standin):
        self.tmp, self.standin, self.outputs, self.failed = tmp, standin, {}, {}
        self.problems: dict[Path, list[str]] = {}  # failed checks: the recipe's test fails, downstream still runs

    def model(self, path: str) -> str:
        from r1_recipe.standins import STANDINS

        if path in STANDINS:
            return str(self.standin(path))
        if path.startswith("runs/"):
            recipe, rest = writer_of(path)
            out = self.run(recipe)
            return str(out / rest) if rest else str(out)
        pytest.fail(f"model {path!r}: neither a stand-in (r1_recipe.standins.STANDINS) nor a runs/ folder")

    def data(self, sources: list | None) -> list | None:
        if not sources:
            return sources
        out = []
        for s in sources:
            s = {"path": s} if isinstance(s, str) else dict(s)
            if s["path"] in GENERATED:
                s["path"] = str(write_generated(s["path"], self.tmp))
            elif str(s["path"]).startswith("runs/"):
                recipe, _ = writer_of(s["path"])
                if stage_of(recipe) == "rejection_sampling":
                    seed_rejection(self.run(recipe))
                s["path"] = self.model(s["path"])
            out.append(s)
        return out

    def run(self, recipe: Path) -> Path:
        if recipe in self.outputs:
            return self.outputs[recipe]
        if recipe in self.failed:
            pytest.fail(f"upstream recipe {recipe.relative_to(ROOT)} failed: {self.failed[recipe]}")
        try:
            out = self._run(recipe)
        except BaseException as e:
            self.failed[recipe] = f"{type(e).__name__}: {str(e)[:300]}"
            raise
        self.outputs[recipe] = out
        return out

    def _run(self, recipe: Path) -> Path:
        stage, original = stage_of(recipe), yaml.safe_load(recipe.read_text())
        resolved = dict(original)
        if stage == "evaluate":  # evaluation recipes take the model on the command line: the family's base
            resolved["model_name_or_path"] = family_model(recipe)
        resolved["model_name_or_path"] = self.model(resolved["model_name_or_path"])
        problems = self.problems.setdefault(recipe, [])
        try:  # before anything upstream runs: a recipe past the model's context fails on its own
            check_context(recipe, original, stage, positions(resolved["model_name_or_path"]))
        except AssertionError as e:
            problems.append(str(e))
        if resolved.get("teacher_model_name_or_path"):
            resolved["teacher_model_name_or_path"] = self.model(resolved["teacher_model_name_or_path"])
        for key in ("dataset_mixture", "general_mixture", "eval_mixture"):
            resolved[key] = self.data(resolved.get(key))
        for opts in (resolved.get("reward_kwargs") or {}).values():
            if isinstance(opts, dict) and opts.get("model"):
                opts["model"] = self.model(opts["model"])
        if resolved.get("chat_template") and (ROOT / resolved["chat_template"]).exists():
            resolved["chat_template"] = str(ROOT / resolved["chat_template"])
        resolved = {k: v for k, v in resolved.items() if v is not None or k in original}
        out = self.tmp / recipe.relative_to(ROOT / "recipes").with_suffix("")
        resolved = shrink(resolved, stage) | {"output_dir": str(out)}
        path = out.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(resolved, sort_keys=False))
        importlib.import_module(f"r1_recipe.{stage}").main(["--config", str(path)])
        try:
            check_output(recipe, stage, out, resolved)
        except AssertionError as e:
            problems.append(str(e).split("\nassert")[0])
        return out


def family_model(recipe: Path) -> str:
    """The Hub model of the family folder an evaluation recipe sits in (recipes/<family>/…)."""
    family = recipe.relative_to(ROOT / "recipes").parts[0]
    return FAMILY_MODELS.get(family, f"Qwen/{family}")


def positions(model: str) -> int:
    return json.loads((Path(model) / "config.json").read_text())["max_position_embeddings"]


def check_context(recipe: Path, original: dict, stage: str, limit: int) -> None:
    """The recipe's own lengths fit the model's ``limit`` positions (before any shrinking)."""
    asked = {k: v for k, v in original.items() if k in LENGTHS and isinstance(v, int)}
    if stage == "evaluate":
        asked.setdefault("max_new_tokens", BENCHMARK_TOKENS)
    if stage == "grpo" and "max_prompt_length" in original:
        asked["max_prompt_length + max_completion_length"] = original["max_prompt_length"] + original.get(
            "max_completion_length", 0)
    # a generation budget needs room for the prompt too
    over = {k: v for k, v in asked.items() if v > limit or (v == limit and k != "max_length")}
    assert not over, (f"{recipe.relative_to(ROOT)}: {over} exceed the model's max_position_embeddings {limit} "
                      f"({original.get('model_name_or_path')}); shorten them or extend the context in a local copy")


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def check_output(recipe: Path, stage: str, out: Path, resolved: dict) -> None:
    """The output folder is what the next stage reads."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    where = recipe.relative_to(ROOT)
    if stage in {"sft", "distill", "grpo", "reward_model"}:
        results = json.loads((out / "results.json").read_text())
        assert results["global_step"] == 2, f"{where}: {results['global_step']} optimizer steps, not 2"
        tokenizer = AutoTokenizer.from_pretrained(out)
        assert tokenizer.chat_template, f"{where}: the saved tokenizer has no chat template; the next stage needs one"
        config = AutoConfig.from_pretrained(out)
        if stage == "reward_model":
            assert config.num_labels == 1 and config.pad_token_id == tokenizer.pad_token_id
            return
        if resolved.get("template") == "r1_zero":  # plain-text prompts: the base EOS still ends a completion
            return
        eot = end_of_turn(tokenizer)
        assert tokenizer.eos_token == eot, (
            f"{where}: the saved tokenizer's EOS is {tokenizer.eos_token!r} but its chat template ends turns with "
            f"{eot!r}: generation after this stage runs past the answer")
        eos = GenerationConfig.from_pretrained(out).eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        assert tokenizer.convert_tokens_to_ids(eot) in eos, f"{where}: generation_config.json stops on {eos}, not {eot!r}"
    elif stage == "rejection_sampling":
        assert not [f for f in (out / "data").rglob("*.parquet") if _rows(f) == 0], (
            f"{where}: zero-row Parquet files, which datasets cannot read")
        stats = json.loads((out / "stats.json").read_text())
        sampled = stats["prompts"] + stats["duplicate_prompts_removed"]
        assert sampled == resolved["mixture_size"], f"{where}: sampled {sampled} prompts"
        if resolved.get("pass_rate_range"):
            assert (out / "rl_prompts.parquet").exists()
    elif stage == "evaluate":
        for name in resolved["benchmark"].split(","):
            assert list(out.glob(f"eval_{name.strip()}*.json")), f"{where}: no summary for {name}"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, standin):
    before = os.environ.get("R1_RECIPE_HUB_MIRROR")
    os.environ["R1_RECIPE_HUB_MIRROR"] = str(FIXTURES)
    yield Smoke(tmp_path_factory.mktemp("smoke"), standin)
    if before is None:  # later tests (an offline Hub id that must fail) do not see the fixtures
        os.environ.pop("R1_RECIPE_HUB_MIRROR", None)
    else:
        os.environ["R1_RECIPE_HUB_MIRROR"] = before


def _param(recipe: Path):
    rel = str(recipe.relative_to(ROOT / "recipes"))
    return pytest.param(recipe, id=rel, marks=() if rel in FAST else pytest.mark.slow)


@pytest.mark.parametrize("recipe", [_param(r) for r in RECIPES])
def test_recipe_runs_on_stand_ins(recipe, smoke):
    smoke.run(recipe)
    assert not smoke.problems[recipe], "\n".join(smoke.problems[recipe])


def base_model(recipe: Path) -> str:
    """The Hub model a recipe's weights descend from, following runs/ folders to their writers."""
    data = yaml.safe_load(recipe.read_text())
    model = data.get("model_name_or_path") or family_model(recipe)  # evaluation: the family's
    while model.startswith("runs/"):
        recipe, _ = writer_of(model)
        model = yaml.safe_load(recipe.read_text())["model_name_or_path"]
    return model


def runs_inputs(data: dict) -> list[str]:
    paths = [data.get(k) for k in ("model_name_or_path", "teacher_model_name_or_path")]
    paths += [s["path"] if isinstance(s, dict) else s for k in ("dataset_mixture", "general_mixture", "eval_mixture")
              for s in data.get(k) or []]
    paths += [o.get("model") for o in (data.get("reward_kwargs") or {}).values() if isinstance(o, dict)]
    return [p for p in paths if isinstance(p, str) and p.startswith("runs/")]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_inputs_exist_and_fit_the_model(recipe):
    """Without assets or training: every runs/ input has a recipe that writes it, and the recipe's
    lengths fit the positions of the real model its weights descend from (the stand-ins' table)."""
    from r1_recipe.standins import STANDINS

    data = yaml.safe_load(recipe.read_text())
    for path in runs_inputs(data):
        if path not in GENERATED:
            writer_of(path)
    model = base_model(recipe)
    assert model in STANDINS, f"{recipe}: {model} has no stand-in in r1_recipe.standins.STANDINS; add one"
    limit = STANDINS[model].config["max_position_embeddings"]

    check_context(recipe, data, stage_of(recipe), STANDINS[model].config["max_position_embeddings"])
    sources = [x for x in data.get("dataset_mixture") or [] if isinstance(x, dict)]
    total = sum(float(x.get("weight", 1.0)) for x in sources)
    for x in sources if data.get("mixture_size") else []:
        rows = HUB_ROWS.get((x["path"], x.get("name"), x.get("split", "train")))
        wanted = round(data["mixture_size"] * float(x.get("weight", 1.0)) / total)
        assert rows is None or wanted <= rows, (f"{recipe}: mixture_size {data['mixture_size']} asks {wanted} rows of "
                                                f"{x['path']} {x.get('name') or ''}, which has {rows}: rows would repeat")
    trains_chat = stage_of(recipe) in {"sft", "distill"} and data.get("template", "r1") != "r1_zero"
    if trains_chat and not STANDINS[model].ships_chat_template:
        assert data.get("chat_template"), (f"{recipe}: {model} ships no chat template, and the recipe trains "
                                           "chat turns: set chat_template (a .jinja file) and its end of turn")


def test_every_recipe_is_covered():
    """A new recipe is picked up without editing this file, and pipelines name only present recipes."""
    from r1_recipe.pipeline import load_pipeline

    assert len(RECIPES) >= 15 and len(PIPELINES) >= 2
    for recipe in RECIPES:
        stage_of(recipe)
    for pipeline in PIPELINES:
        steps = load_pipeline(pipeline).steps  # fails when a step's recipe is missing
        assert all(Path(s.recipe).exists() for s in steps if s.recipe)


@pytest.mark.slow
def test_qwen25_1p5b_pipeline_end_to_end_on_stand_ins(tmp_path, standin, monkeypatch):
    """recipes/Qwen2.5-1.5B/pipeline.yaml, every step through the pipeline runner (one process per
    step, lineage, evaluation), with its stage recipes shrunk as above and the Hub models swapped
    for stand-ins. The rejection folder is seeded between the two halves (see the module doc)."""
    from r1_recipe.pipeline import load_pipeline, read_lineage, run
    from r1_recipe.standins import STANDINS

    monkeypatch.setenv("R1_RECIPE_HUB_MIRROR", str(FIXTURES))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = ROOT / "recipes" / "Qwen2.5-1.5B" / "pipeline.yaml"
    spec = yaml.safe_load(source.read_text())

    def swap(recipe: dict) -> dict:
        for key in ("model_name_or_path", "teacher_model_name_or_path"):
            if recipe.get(key) in STANDINS:
                recipe[key] = str(standin(recipe[key]))
        for opts in (recipe.get("reward_kwargs") or {}).values():
            if isinstance(opts, dict) and opts.get("model") in STANDINS:
                opts["model"] = str(standin(opts["model"]))
        return recipe

    for step in spec["steps"]:
        recipe = ROOT / step["recipe"]
        shrunk = shrink(swap(yaml.safe_load(recipe.read_text())), stage_of(recipe))
        step["recipe"] = str(tmp_path / f"{step['name']}.yaml")
        Path(step["recipe"]).write_text(yaml.safe_dump(shrunk))
        step["set"] = swap(step.get("set") or {})
    evaluation = shrink(yaml.safe_load((ROOT / spec["evaluation"]).read_text()), "evaluate")
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(evaluation))
    spec.update(run_dir=str(tmp_path / "runs"), evaluation=str(tmp_path / "evaluate.yaml"), launcher="python")
    spec.pop("accelerate_config", None)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    pipeline = load_pipeline(tmp_path / "pipeline.yaml")
    names = [s.name for s in pipeline.steps]
    first = names[: names.index("rejection") + 1]
    run(pipeline, only=first)
    seed_rejection(pipeline.folder("rejection"))
    run(pipeline)
    for step in pipeline.steps:
        lineage = read_lineage(pipeline.folder(step))
        assert lineage["status"] == "done", step.name
        if step.evaluate:
            benchmarks = {p.name.split("_samples")[0] for p in pipeline.folder(step).glob("eval_*.json")}
            assert len(benchmarks) >= 4, (step.name, benchmarks)
    assert read_lineage(pipeline.folder("rl2"))["model"] == str(pipeline.folder("stage2"))
