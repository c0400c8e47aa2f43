"""Every option a stage's ``--help`` prints is accepted by the parser that then reads the command
line: dashes or underscores, and ``--no_X`` / ``--no-X`` for a boolean ``X``."""

from __future__ import annotations

import re

import pytest

from r1_recipe import cli
from r1_recipe.command_line import canonical_option, from_command_line
from r1_recipe.config_checks import STAGE_CONFIGS, config_class, field_types, union_members
from r1_recipe.configs import check_keys, parse_config
from r1_recipe.evaluate import EvalConfig

FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
COMMANDS = {stage: ["reward_model", "score"] if stage == "score" else [stage] for stage in STAGE_CONFIGS}


def printed_flags(command: list[str], capsys) -> set[str]:
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    return set(FLAG.findall(capsys.readouterr().out)) - {"--help"}


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_flag_the_help_prints_is_accepted(stage, capsys):
    cls = config_class(stage)
    flags = printed_flags(COMMANDS[stage], capsys)
    assert len(flags) > 10
    bools = {name for name, tp in field_types(cls).items() if bool in union_members(tp)}
    for flag in sorted(flags):
        key, tokens = canonical_option(cls, flag[2:], [])
        check_keys(cls, [key], where=f"{' '.join(COMMANDS[stage])} {flag}")  # raises on an unknown key
        if flag[2:].replace("-", "_").removeprefix("no_") in bools and flag[2:5] in ("no_", "no-"):
            assert key in bools and from_command_line(cls, key, tokens) == "false", flag


def test_evaluate_help_flags_parse_end_to_end(capsys):
    """The flags the issue found refused ("unknown key 'no_greedy' for EvalConfig")."""
    flags = printed_flags(["evaluate"], capsys)
    assert {"--no_greedy", "--no-greedy", "--no_progress_bar", "--num_samples"} <= flags
    config = parse_config(EvalConfig, ["--model-name-or-path", "m", "--no_greedy", "--no-progress-bar",
                                       "--num-samples", "2"])
    assert (config.greedy, config.progress_bar, config.num_samples) == (False, False, 2)
