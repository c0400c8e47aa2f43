"""Reward health: the shares that tell a verifier that stopped verifying from a policy that learns.

The most common silent failure of R1-style RL is a reward that pays for the wrong thing: golds
that do not parse (open-r1 once paid 1.0 on every such row), answers never extracted, a policy
paid for its format while its answers are wrong, completions truncated en masse, a verifier that
times out. Each batch of scored completions gives five shares (:data:`HEALTH`):

- ``unparsed_reference``: of the rows a correctness reward (:data:`CORRECTNESS`) scores and
  whose reference column is filled, the share it returned None for (the reference did not parse);
- ``no_answer``: of the rows a non-code correctness reward scores, the share of completions with
  no final answer to read (no ``\\boxed{}`` / ``<answer>`` after ``</think>``);
- ``format_while_wrong``: of the rows both a format reward (:data:`FORMAT`) and a correctness
  reward score, the share with a positive format reward and a correctness of 0;
- ``truncated``: the share of completions that hit the token limit (no end of turn);
- ``verifier_timeouts``: verifications that ran out of time, per completion.

The GRPO stage logs them every step as ``health/<name>`` (:mod:`r1_recipe.grpo`); rejection
sampling and evaluation put them in their statistics. A recipe sets limits::

    reward_health: {stop_if: {unparsed_reference: 0.2}, warn_if: {truncated: 0.8}}

``stop_if`` stops the run (one line naming the share, the step and a few row ids); ``warn_if``
overrides the default warning limits (:data:`WARN_IF`), which only warn, once per share.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from r1_recipe.config_checks import ConfigError
from r1_recipe.rewards.base import PREFILL_COLUMN, final_answer, scores_rows_of
from r1_recipe.rewards.verify import verify_pair

logger = logging.getLogger(__name__)

PREFIX = "health/"
HEALTH = ("unparsed_reference", "no_answer", "format_while_wrong", "truncated", "verifier_timeouts")
WARN_IF = {"unparsed_reference": 0.05, "no_answer": 0.5, "format_while_wrong": 0.5, "truncated": 0.5,
           "verifier_timeouts": 0.01}
"""Default warning limits: a share above its limit logs one warning per run (no stop)."""
CORRECTNESS = ("accuracy", "code", "reasoning_gym")
"""Rewards that verify a completion against a reference column: 1.0 right, 0.0 wrong, None unverifiable."""
FORMAT = ("format", "tag_count", "reasoning_steps")
"""Rewards paid for the shape of a completion (positive when it looks right)."""
ID_COLUMNS = ("id", "row_id", "problem_id", "task_id")


class RewardHealthError(ConfigError):
    """A ``reward_health.stop_if`` limit was passed: the rewards are not measuring what they should."""


def check_health_limits(settings: Mapping | None, where: str = "reward_health") -> None:
    """Refuse unknown keys and limits outside [0, 1] before anything loads."""
    if settings is None:
        return
    if not isinstance(settings, Mapping) or set(settings) - {"stop_if", "warn_if"}:
        raise ConfigError(f"{where} takes {{stop_if: {{share: limit}}, warn_if: {{share: limit}}}}, got {settings!r}")
    for kind, limits in settings.items():
        if not isinstance(limits, Mapping):
            raise ConfigError(f"{where}.{kind} must map a share to a limit, e.g. {{unparsed_reference: 0.2}}; "
                              f"got {limits!r}")
        for name, limit in limits.items():
            if name not in HEALTH:
                raise ConfigError(f"{where}.{kind}.{name}: unknown share; valid: {', '.join(HEALTH)}")
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1:
                raise ConfigError(f"{where}.{kind}.{name} must be a share in [0, 1], got {limit!r}")


def _base(fn: Callable) -> str:
    return getattr(fn, "__name__", "").split(":", 1)[0]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _filled(value: Any) -> bool:
    return value is not None and bool(str(value).strip())


def health_stats(
    reward_funcs: Sequence[Callable],
    rewards: Sequence[Sequence[float | None]],
    rows: Sequence[Mapping[str, Any]],
    completions: Sequence[Any],
    *,
    prompts: Sequence[Any] | None = None,
    truncated: Sequence[bool] | None = None,
    timeouts: float = 0.0,
) -> tuple[dict[str, tuple[float, int]], dict[str, list[int]]]:
    """The health counts of one scored batch, ``{share: (flagged, counted)}``, and the batch
    positions each share flags (counts, so several processes' batches add up: :func:`shares`).

    ``rewards[k][i]``: reward ``k``'s value on row ``i`` (None/NaN where it returned None); ``rows``
    the rows' dataset columns. A share with nothing to count (e.g. no correctness reward) counts 0.

    >>> from r1_recipe.rewards import get_reward_funcs
    >>> funcs = get_reward_funcs(["accuracy", "format"])
    >>> rows = [{"solution": "4"}, {"solution": "\\\\frac{"}]
    >>> counts, where = health_stats(funcs, [[0.0, None], [1.0, 1.0]], rows,
    ...                              ["<think>a</think> \\\\boxed{5}", "<think>a</think> oops"], truncated=[False, True])
    >>> shares(counts)
    {'unparsed_reference': 0.5, 'no_answer': 0.5, 'format_while_wrong': 1.0, 'truncated': 0.5, 'verifier_timeouts': 0.0}
    >>> where["unparsed_reference"], where["format_while_wrong"]
    ([1], [0])
    """
    n = len(completions)
    prompts = prompts if prompts is not None else [None] * n
    types = [r.get("reward_type") for r in rows]
    flagged: dict[str, list[int]] = {name: [] for name in HEALTH}
    counted = dict.fromkeys(HEALTH, 0)
    checks = [(fn, values) for fn, values in zip(reward_funcs, rewards) if _base(fn) in CORRECTNESS]
    shapes = [values for fn, values in zip(reward_funcs, rewards) if _base(fn) in FORMAT]
    for i in range(n):
        verdicts, answer_row = [], False
        for fn, values in checks:
            if not scores_rows_of(fn, types[i]):
                continue
            refs = [rows[i].get(c) for c in getattr(fn, "columns", {})]
            if refs and not all(_filled(r) for r in refs):
                continue  # no reference on this row: the reward does not apply
            counted["unparsed_reference"] += 1
            if _missing(values[i]):
                flagged["unparsed_reference"].append(i)
            else:
                verdicts.append(float(values[i]))
            answer_row |= _base(fn) != "code"
        if answer_row:
            counted["no_answer"] += 1
            if final_answer(completions[i], prompts[i], rows[i].get(PREFILL_COLUMN)) is None:
                flagged["no_answer"].append(i)
        shaped = [float(v[i]) for v in shapes if not _missing(v[i])]
        if verdicts and shaped:
            counted["format_while_wrong"] += 1
            if max(shaped) > 0 and max(verdicts) <= 0:
                flagged["format_while_wrong"].append(i)
    if truncated is not None:
        counted["truncated"] = n
        flagged["truncated"] = [i for i, t in enumerate(truncated) if t]
    counts = {name: (float(len(flagged[name])), counted[name]) for name in HEALTH[:4]}
    counts["verifier_timeouts"] = (float(timeouts), n if checks else 0)
    return counts, flagged


def shares(counts: Mapping[str, tuple[float, int]]) -> dict[str, float]:
    """``{share: flagged / counted}`` for the shares that counted anything."""
    return {name: flagged / counted for name, (flagged, counted) in counts.items() if counted}


def add_counts(total: dict[str, list[float]], counts: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """``total`` with ``counts`` (``{share: (flagged, counted)}``, e.g. read back from JSON) added in."""
    for name, (flagged, counted) in counts.items():
        pair = total.setdefault(name, [0.0, 0])
        pair[0] += flagged
        pair[1] += counted
    return total


def evaluation_health(answers: Sequence[str | None], truncated: float | None,
                      math_references: Sequence[str] | None = None) -> dict[str, float]:
    """The shares an evaluation can tell without rewards: answers never extracted, samples cut by
    the token limit, and (math benchmarks) references math-verify cannot parse, per problem.

    >>> evaluation_health(["4", None, "7", None], 0.25, ["4", "@@@"])
    {'no_answer': 0.5, 'truncated': 0.25, 'unparsed_reference': 0.5}
    """
    out = {"no_answer": sum(a is None for a in answers) / len(answers)} if answers else {}
    if truncated is not None:
        out["truncated"] = truncated
    if math_references:
        unparsed = sum(verify_pair(None, str(r)) is None for r in dict.fromkeys(math_references))
        out["unparsed_reference"] = unparsed / len(set(math_references))
    return out


def row_ids(rows: Sequence[Mapping[str, Any]], positions: Sequence[int], limit: int = 3) -> list[str]:
    """A few rows named for a person: their id column if they have one, else the problem's start."""
    out: list[str] = []
    for i in positions:
        if len(out) == limit:
            break
        row = rows[i]
        key = next((c for c in ID_COLUMNS if row.get(c) is not None), None)
        if key is not None:
            name = f"{key}={row[key]}"
        else:
            name = repr(str(row.get("problem") or row.get("prompt") or f"#{i}")[:40])
        if name not in out:  # a group's samples share their row
            out.append(name)
    return out


class HealthLimits:
    """Applies a recipe's ``reward_health`` to each batch's shares: warn once per share above its
    warning limit, raise :class:`RewardHealthError` above a ``stop_if`` limit."""

    def __init__(self, settings: Mapping | None = None, where: str = "reward_health"):
        check_health_limits(settings, where)
        settings = settings or {}
        self.stop_if = dict(settings.get("stop_if") or {})
        self.warn_if = {**WARN_IF, **(settings.get("warn_if") or {})}
        self.warned: set[str] = set()

    def check(self, shares: Mapping[str, float], *, step: int | str, examples: Mapping[str, Sequence[str]] = {},
              where: str = "GRPO") -> None:
        for name, share in shares.items():
            rows = ", ".join(examples.get(name, [])) or "-"
            if name in self.stop_if and share > self.stop_if[name]:
                raise RewardHealthError(
                    f"{where}: reward health {name} = {share:.2f} > stop_if limit {self.stop_if[name]} at step {step} "
                    f"(rows e.g. {rows}); fix the data or rewards, or raise reward_health.stop_if.{name}")
            if share > self.warn_if.get(name, 1.0) and name not in self.warned:
                self.warned.add(name)
                logger.warning("%s: reward health %s = %.2f > %.2f at step %s (rows e.g. %s); "
                               "reward_health.stop_if.%s stops a run on it", where, name, share,
                               self.warn_if[name], step, rows, name)
