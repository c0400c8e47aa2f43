"""``r1-recipe <command> …``: one subcommand per pipeline stage, plus the demo's helpers.

    r1-recipe sft --config recipes/demo/stage1.yaml      # cold start / SFT stage 2
    r1-recipe evaluate --model_name_or_path runs/demo/stage1 --benchmark arithmetic
    r1-recipe tiny --output runs/demo/base                # build the tiny local base model
    r1-recipe data --output runs/demo/data                # generate the demo's datasets
    r1-recipe rewards                                     # list the reward functions
    r1-recipe report runs/demo                            # results table of a run folder
    r1-recipe print-config RECIPE KEY [--stage sft]       # one resolved value, for scripts

Every stage also runs as ``python -m r1_recipe.<stage>``, which is what ``accelerate launch``
and the Makefile use.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from r1_recipe.command_line import ArgParser
from r1_recipe.config_checks import STAGE_CONFIGS, ConfigError
from r1_recipe.data.errors import DataError

# command -> (module with main(argv), one-line help); the stage configs are looked up by name
STAGES = {
    "sft": ("r1_recipe.sft", "cold-start SFT (stage 1) and SFT stage 2 (weighted reasoning/general loss)"),
    "pretrain": ("r1_recipe.pretrain", "plain language modelling (the demo's stand-in for a pretrained R1-Zero base)"),
    "grpo": ("r1_recipe.grpo", "GRPO: RL stage 1 / stage 2 from a cold start, R1-Zero from a base model"),
    "rejection_sampling": ("r1_recipe.rejection_sampling", "sample, score, filter, dedup + general mix: the SFT-2 dataset"),
    "reward_model": ("r1_recipe.reward_model", "train a helpfulness/harmlessness reward model; `score` a policy with them"),
    "distill": ("r1_recipe.distill", "distillation into a small student: sequence-level SFT or logit-level β·CE + (1−β)·KL"),
    "evaluate": ("r1_recipe.evaluate", "pass@1 over k samples, cons@k, greedy accuracy on benchmarks"),
    "decontaminate": ("r1_recipe.decontaminate", "flag or drop training rows sharing word 8-grams with benchmarks"),
    "pipeline": ("r1_recipe.pipeline", "the whole pipeline from one recipe: chained stages, lineage, resume, --status"),
}
CONFIGS = {k: v for k, v in STAGE_CONFIGS.items() if k != "score"}  # `--stage` choices of the tools


def _usage() -> str:
    lines = ["usage: r1-recipe <command> [options]", "", "stages:"]
    lines += [f"  {name:<20}{help_}" for name, (_, help_) in STAGES.items()]
    lines += [
        "",
        "tools:",
        "  tiny                build the tiny local base model + tokenizer (--output DIR --seed N)",
        "  model               link a released model into a run folder (--source HUB_ID|DIR --output DIR)",
        "  data                generate the demo datasets as JSONL (--output DIR, see --help)",
        "  rewards             list the reward functions of the registry",
        "  report              per-stage results table of a run folder (RUN_DIR)",
        "  print-config        print one resolved recipe value: RECIPE KEY [--stage NAME]",
        "  check-launch        check a recipe for N processes/nodes before a cluster launch (see --help)",
        "",
        "Run 'r1-recipe <command> --help' for a command's options.",
    ]
    return "\n".join(lines)


def _tiny(argv: Sequence[str]) -> None:
    from r1_recipe.stage import setup_logging
    from r1_recipe.tiny import build_tiny_model

    p = ArgParser(prog="r1-recipe tiny", description="Build the tiny local base model.")
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--intermediate-size", type=int, default=512)
    a = p.parse_args(argv)
    setup_logging()
    build_tiny_model(a.output, seed=a.seed, hidden_size=a.hidden_size, num_layers=a.layers,
                     intermediate_size=a.intermediate_size)


MODEL_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.txt")  # weights, configs, tokenizer, template


def _model(argv: Sequence[str]) -> None:
    """A released model as a run folder: the pipeline's first step, so the base is evaluated and its
    lineage starts where training does. Links the files of a local folder, of the copy `make assets`
    cached for that Hub id, or of a Hub snapshot."""
    from r1_recipe.assets import HUB_ASSETS, asset_dir

    p = ArgParser(prog="r1-recipe model", description="Link a released model's files into a run folder.")
    p.add_argument("--output", required=True)
    p.add_argument("--source", required=True, help="Hub id or local model folder")
    p.add_argument("--revision", default="main", help="Hub revision (a Hub download only)")
    a = p.parse_args(argv)
    source = Path(a.source).expanduser()
    cached = asset_dir(HUB_ASSETS[a.source]) if a.source in HUB_ASSETS else None
    if source.is_dir():
        folder, origin = source, "local folder"
    elif cached is not None:
        folder, origin = cached, "`make assets` cache"
    elif "/" in a.source and not a.source.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(a.source, revision=a.revision, allow_patterns=list(MODEL_FILES)))
        origin = f"Hub revision {a.revision}"
    else:
        raise ConfigError(f"r1-recipe model --source {a.source!r}: no such folder, and not a Hub id (org/name)")
    if not (folder / "config.json").exists():
        raise ConfigError(f"r1-recipe model --source {a.source!r}: {folder} holds no config.json (not a model folder)")
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    linked = []
    for file in sorted(f for f in folder.iterdir() if f.is_file() and any(f.match(g) for g in MODEL_FILES)):
        target = out / file.name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(file.resolve())
        linked.append(file.name)
    (out / "source.json").write_text(json.dumps({"source": a.source, "from": origin, "folder": str(folder),
                                                 "files": linked}, indent=1) + "\n")
    print(f"{a.source} ({origin}: {folder}) -> {out}: {len(linked)} files linked")


def _data(argv: Sequence[str]) -> None:
    from r1_recipe.data import arithmetic, code_tasks
    from r1_recipe.data.loading import write_jsonl
    from r1_recipe.data.templates import with_instruction

    p = ArgParser(prog="r1-recipe data", description="Generate the demo's JSONL datasets.")
    p.add_argument("--output", required=True, help="folder for cold_start.jsonl, rl_prompts.jsonl, general.jsonl, test.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold-start", type=int, default=4000, help="cold-start SFT traces")
    p.add_argument("--sloppy", type=float, default=0.5, help="share of cold-start traces in the sloppy style")
    p.add_argument("--checks", action="store_true",
                   help="end every cold-start trace with an inverse check; after a failed one, --retry-rate "
                        "of the traces redo the sum carefully ('retry'): the aha-moment demo")
    p.add_argument("--retry-rate", type=float, default=0.5, help="with --checks: share of failed checks that retry")
    p.add_argument("--instruction", default=None,
                   help="text appended to each arithmetic problem as the evaluator appends a benchmark's instruction "
                        "(problem, blank line, instruction): train on the prompts the model is evaluated with")
    p.add_argument("--rl-prompts", type=int, default=4000)
    p.add_argument("--general", type=int, default=1000)
    p.add_argument("--test", type=int, default=500, help="held-out problems")
    p.add_argument("--pretrain", type=int, default=20000, help="plain-text documents for the R1-Zero base (0: none)")
    p.add_argument("--general-sft", type=int, default=1000, help="general SFT rows (good/lazy/rude 50/25/25)")
    p.add_argument("--pairs", type=int, default=2000, help="preference pairs per reward model (0: no RL-2 data)")
    p.add_argument("--code-cold-start", type=int, default=1000,
                   help="cold-start traces of the code task (code_cold_start.jsonl; --sloppy applies; 0: none)")
    p.add_argument("--code-prompts", type=int, default=1000, help="RL prompts of the code task (code_prompts.jsonl)")
    a = p.parse_args(argv)
    out = Path(a.output)
    extra = {}
    if a.pretrain:
        from r1_recipe.data.pretrain_text import corpus

        extra["pretrain.jsonl"] = write_jsonl(corpus(a.pretrain, seed=a.seed), out / "pretrain.jsonl")
    if a.pairs:
        from r1_recipe.data.preferences import write_demo_files

        extra.update(write_demo_files(out, seed=a.seed, sft=a.general_sft, pairs=a.pairs) or {})
    styles = {"careful": 1 - a.sloppy, "sloppy": a.sloppy}

    def asked(rows):
        return ({**r, "problem": with_instruction(r["problem"], a.instruction)} for r in rows)

    counts = {
        "cold_start.jsonl": write_jsonl(asked(arithmetic.generate(a.cold_start, seed=a.seed, style_weights=styles,
                                                                  checks=a.checks, retry_rate=a.retry_rate)),
                                        out / "cold_start.jsonl"),
        "rl_prompts.jsonl": write_jsonl(asked(arithmetic.generate(a.rl_prompts, seed=a.seed + 1)),
                                        out / "rl_prompts.jsonl"),
        "general.jsonl": write_jsonl(arithmetic.generate_general(a.general, seed=a.seed), out / "general.jsonl"),
        "test.jsonl": write_jsonl(asked(arithmetic.generate(a.test, split="test", seed=a.seed)), out / "test.jsonl"),
    }
    if a.code_cold_start:
        counts["code_cold_start.jsonl"] = write_jsonl(
            code_tasks.cold_start(a.code_cold_start, seed=a.seed, sloppy=a.sloppy), out / "code_cold_start.jsonl")
    if a.code_prompts:
        counts["code_prompts.jsonl"] = write_jsonl(code_tasks.rl_prompts(a.code_prompts, seed=a.seed + 1),
                                                   out / "code_prompts.jsonl")
    counts.update(extra)
    print(json.dumps({str(out / k): v for k, v in counts.items()}, indent=1))


def _rewards(argv: Sequence[str]) -> None:
    from r1_recipe.rewards import rewards_table

    print(rewards_table(markdown="--markdown" in argv))


def _report(argv: Sequence[str]) -> None:
    from r1_recipe.report import write_report

    p = ArgParser(prog="r1-recipe report", description="Per-stage results (table + plots) of a run folder.")
    p.add_argument("run_dir")
    p.add_argument("--output", help="also write index.md and PNG plots to this folder")
    a = p.parse_args(argv)
    print(write_report(a.run_dir))
    if a.output:
        from r1_recipe.report import write_full_report

        print(f"report: {write_full_report(a.run_dir, a.output)}")


def _print_config(argv: Sequence[str]) -> None:
    from r1_recipe.configs import ConfigError, parse_config, read_recipe

    p = ArgParser(prog="r1-recipe print-config", description="Print one resolved recipe value.")
    p.add_argument("recipe")
    p.add_argument("key")
    p.add_argument("--stage", choices=sorted(CONFIGS), help="resolve defaults through this stage's config class")
    a = p.parse_args(argv)
    if a.stage:
        module, cls = CONFIGS[a.stage].split(":")
        config = parse_config(getattr(importlib.import_module(module), cls), ["--config", a.recipe])
        if not hasattr(config, a.key):
            raise ConfigError(f"{a.recipe}: {a.key!r} is not an option of the {a.stage} stage")
        value = getattr(config, a.key)
    else:
        data = read_recipe(a.recipe)
        if a.key not in data:
            raise ConfigError(f"{a.recipe}: no key {a.key!r} (pass --stage to resolve defaults)")
        value = data[a.key]
    print(json.dumps(value) if isinstance(value, (dict, list)) else value)


def _config_for_processes(stage: str, argv: Sequence[str], num_processes: int):
    """``stage``'s config from ``argv`` as ``num_processes`` launched processes would build it.

    The stage's own start-up checks run with that count (unknown keys, GRPO's group sizes via
    ``check_group_sizes``, TRL's batch checks via ``world_size``), but no process group starts:
    the subclass only answers ``num_processes`` where the config asks how many processes run.
    """
    from r1_recipe.configs import parse_config

    module, name = CONFIGS[stage].split(":")
    cls = getattr(importlib.import_module(module), name)
    attrs = {"world_size": property(lambda self: num_processes)}
    if hasattr(cls, "check_group_sizes"):
        attrs["check_group_sizes"] = lambda self: cls.check_group_sizes(self, num_processes)
    return parse_config(type(name, (cls,), attrs), argv)


def _uses_vllm_server(recipe: str, overrides: Sequence[str]) -> bool:
    """Whether a GRPO recipe generates with a `trl vllm-serve` server (use_vllm + vllm_mode: server).

    Read before the config is built, because the process count its checks need depends on it:
    command line, then recipe, then the config's defaults.
    """
    import dataclasses

    from transformers.hf_argparser import string_to_bool

    from r1_recipe.configs import GRPOStageConfig, read_recipe

    values = {f.name: f.default for f in dataclasses.fields(GRPOStageConfig) if f.name in ("use_vllm", "vllm_mode")}
    values.update({k: v for k, v in read_recipe(recipe).items() if k in values})
    p = ArgParser(add_help=False)
    p.add_argument("--use_vllm", type=string_to_bool, nargs="?", const=True)
    p.add_argument("--vllm_mode")
    known, _ = p.parse_known_args(list(overrides))
    values.update({k: v for k, v in vars(known).items() if v is not None})
    return bool(values["use_vllm"]) and values["vllm_mode"] == "server"


def _server_tensor_parallel_size(config, gpus_per_node: int, asked: int | None) -> int:
    """The vLLM server node's tensor parallel size: ``asked`` when the model's heads allow it (an
    error names the valid sizes otherwise), else the largest valid size up to the node's GPUs, so
    the node's GPUs are not left idle (a model whose config cannot be read yet: ``asked`` or 1)."""
    from transformers import AutoConfig

    from r1_recipe.configs import ConfigError
    from r1_recipe.sampling import valid_tensor_parallel_sizes

    try:
        model = AutoConfig.from_pretrained(config.model_name_or_path, revision=config.model_revision)
    except (OSError, ValueError):
        print(f"check-launch: cannot read {config.model_name_or_path}'s config: vLLM tensor parallel size "
              f"{asked or 1} unchecked", file=sys.stderr)
        return asked or 1
    valid = valid_tensor_parallel_sizes(model, limit=gpus_per_node)
    if asked is None:
        return valid[-1]
    if asked not in valid:
        text = getattr(model, "text_config", None) or model
        raise ConfigError(
            f"VLLM_TENSOR_PARALLEL_SIZE {asked} does not fit {config.model_name_or_path} "
            f"({text.num_attention_heads} attention heads, {getattr(text, 'num_key_value_heads', None)} key/value "
            f"heads) on {gpus_per_node} GPUs: valid sizes {', '.join(map(str, valid))}")
    return asked


def _check_launch(argv: Sequence[str]) -> None:
    from r1_recipe.configs import ConfigError

    p = ArgParser(
        prog="r1-recipe check-launch",
        description="Check a recipe for a multi-process launch before queueing it, and print the launch plan as "
        "key=value lines (num_processes, train_nodes, vllm_server, then the --print keys). With --nodes, a GRPO "
        "recipe with use_vllm: true and vllm_mode: server gets its last node for `trl vllm-serve`. Arguments after "
        "the options (e.g. -- --per_device_train_batch_size 2) are the stage's command-line overrides.",
    )
    p.add_argument("recipe")
    p.add_argument("--stage", required=True, choices=sorted(CONFIGS))
    p.add_argument("--num-processes", type=int, help="training processes in all (instead of --nodes)")
    p.add_argument("--nodes", type=int, help="nodes of the job, a vLLM server node included")
    p.add_argument("--gpus-per-node", type=int, default=1, help="processes per training node (default 1)")
    p.add_argument("--vllm-tensor-parallel-size", type=int, help="the vLLM server's tensor parallel size to check "
                   "against the model's heads (default: the largest valid size up to --gpus-per-node)")
    p.add_argument("--print", nargs="*", default=[], metavar="KEY", help="resolved recipe values to print too")
    a, overrides = p.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if (a.num_processes is None) == (a.nodes is None):
        raise ConfigError("check-launch: give either --num-processes or --nodes (with --gpus-per-node)")
    nodes = a.nodes or 1
    if min(nodes, a.gpus_per_node, a.num_processes or 1) < 1:
        raise ConfigError("check-launch: --nodes, --gpus-per-node and --num-processes must be >= 1")
    server = a.nodes is not None and a.stage == "grpo" and _uses_vllm_server(a.recipe, overrides)
    train_nodes = nodes - 1 if server else nodes
    if server and train_nodes < 1:
        raise ConfigError(
            f"{a.recipe}: use_vllm: true with vllm_mode: server needs a node of its own for `trl vllm-serve`: "
            f"ask for one node more (sbatch --nodes={nodes + 1}), or set vllm_mode: colocate to generate on the "
            "training GPUs"
        )
    processes = a.num_processes if a.num_processes is not None else train_nodes * a.gpus_per_node
    config = _config_for_processes(a.stage, ["--config", a.recipe, *overrides], processes)
    lines = {"num_processes": processes, "train_nodes": train_nodes, "vllm_server": str(server).lower()}
    if server:
        lines["vllm_tensor_parallel_size"] = _server_tensor_parallel_size(config, a.gpus_per_node,
                                                                          a.vllm_tensor_parallel_size)
    for key in a.print:
        if not hasattr(config, key):
            raise ConfigError(f"{a.recipe}: {key!r} is not an option of the {a.stage} stage")
        value = getattr(config, key)
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        if "\n" in text:
            raise ConfigError(f"{a.recipe}: {key} spans several lines; read it with `r1-recipe print-config`")
        lines[key] = text
    print("\n".join(f"{k}={v}" for k, v in lines.items()))


TOOLS = {"tiny": _tiny, "model": _model, "data": _data, "rewards": _rewards, "report": _report, "print-config": _print_config,
         "check-launch": _check_launch}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command in STAGES:
            code = importlib.import_module(STAGES[command][0]).main(rest)
            return code if isinstance(code, int) else 0
        elif command in TOOLS:
            TOOLS[command](rest)
        else:
            print(f"r1-recipe: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
            return 2
    except (ConfigError, DataError) as e:  # the user's to fix: one line, no traceback
        print(f"r1-recipe {command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
