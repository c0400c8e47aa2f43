"""The command line of the stages and tools: ``--config FILE`` plus ``--key value`` overrides.

Values arrive as strings: list and dict options take JSON or YAML
(``--dataset_mixture '[{path: a.jsonl}]'``, ``--reward_kwargs '{"accuracy": {"timeout": 5}}'``),
lists also space-separated items (``--reward_funcs accuracy format``), ``null`` is None for an
optional option, and a flag alone is ``true``. The result is then checked like a recipe value
(:mod:`r1_recipe.config_checks`). The tools' own options use :class:`ArgParser`, whose mistakes are
one line; argparse's usage text is for ``--help`` only.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence

import yaml

from r1_recipe.config_checks import ConfigError, expected, field_types, show, union_members

NONE_WORDS = ("null", "None")  # command-line spellings of None for optional fields


class ArgParser(argparse.ArgumentParser):
    """argparse for the tools' own options, whose usage mistakes are one :class:`ConfigError`
    line: the usage text is for ``--help`` only."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def split_command_line(args: Sequence[str]) -> tuple[str | None, list[tuple[str, list[str]]]]:
    """``--config FILE`` and the ``--key value...`` overrides, in order (``--key=value`` too)."""
    recipe, overrides, current = None, [], None
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            if key == "config":
                if eq:
                    recipe = value
                elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                    recipe, i = args[i + 1], i + 1
                else:
                    raise ConfigError("--config needs a recipe path")
                current = None
            else:
                current = (key, [value] if eq else [])
                overrides.append(current)
        elif current is None:
            raise ConfigError(f"command line: unexpected argument {a!r}; options look like --key value")
        else:
            current[1].append(a)
        i += 1
    return recipe, overrides


def canonical_option(cls: type, key: str, tokens: list[str]) -> tuple[str, list[str]]:
    """The field and value tokens of an option spelled as ``--help`` prints it: dashes for
    underscores (``--batch-size``), and ``--no_X`` / ``--no-X`` for a boolean field ``X`` set false.
    Any other key is returned as given (and refused by the key check, with close matches).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Options:
    ...     greedy: bool = True
    ...     num_samples: int | None = None
    >>> canonical_option(Options, "no-greedy", []), canonical_option(Options, "num-samples", ["0"])
    (('greedy', ['false']), ('num_samples', ['0']))
    """
    fields = field_types(cls)
    name = key.replace("-", "_")
    if name in fields or name == "env":
        return name, tokens
    flag = name[3:] if name.startswith("no_") else None
    if flag is not None and bool in union_members(fields.get(flag)):
        if tokens:
            raise ConfigError(f"command line: --{key} takes no value (it sets {flag} false); got {' '.join(tokens)}")
        return flag, ["false"]
    return key, tokens


def from_command_line(cls: type, name: str, tokens: list[str]):
    """The raw value of one ``--name tokens...`` override (checked afterwards like a recipe value)."""
    tp = field_types(cls).get(name, typing.Any)
    members = union_members(tp)
    structured = [m for m in members if typing.get_origin(m) in (list, dict) or m in (list, dict)]
    where = f"command line: --{name}"
    if not tokens:
        if bool in members:
            return True
        raise ConfigError(f"{where}: needs a value")
    if len(tokens) == 1 and tokens[0] in NONE_WORDS and type(None) in members:
        return None
    if structured and len(tokens) == 1 and tokens[0].lstrip()[:1] in ("[", "{"):
        try:
            return yaml.safe_load(tokens[0])
        except yaml.YAMLError as e:
            problem = str(getattr(e, "problem", None) or e).splitlines()[0]
            raise ConfigError(f"{where}: not valid JSON or YAML ({problem}): {show(tokens[0])}") from None
    lists = [m for m in structured if typing.get_origin(m) is list or m is list]
    if lists and (len(tokens) > 1 or not any(m in (str, int, float, bool) for m in members)):
        (item,) = typing.get_args(lists[0]) or (str,)
        if typing.get_origin(item) is dict or item is dict:
            try:
                items = [yaml.safe_load(t) for t in tokens]
            except yaml.YAMLError:
                raise ConfigError(f"{where}: each item must be a JSON or YAML mapping, got {tokens}") from None
            return [{"path": i} if isinstance(i, str) else i for i in items]  # a bare path is a source
        return list(tokens)
    if len(tokens) > 1:
        raise ConfigError(f"{where}: takes one value, got {len(tokens)}: {' '.join(tokens)}")
    if structured and not any(m in (str, int, float, bool) for m in members):
        raise ConfigError(f"{where}: expected {expected(tp)} as JSON or YAML, got {show(tokens[0])}")
    return tokens[0]
