"""R_acc: the final answer checked against the reference with math-verify.

Only the answer section counts (after ``</think>``: the last ``\\boxed{…}``, else
``<answer>…</answer>``), so a number guessed in the reasoning never scores. ``None`` when the
reference itself does not parse: an unverifiable row must not hand out 1.0 (open-r1 shipped
that bug) nor punish the policy. A pair whose verification runs out of time twice scores 0.0 for
this batch only (see :mod:`r1_recipe.rewards.verify`); each call logs how many did through TRL's
``log_metric`` as ``rewards/<name>/timeouts``.
"""

from __future__ import annotations

from typing import Any

from r1_recipe.rewards.base import MATH, PREFILL_COLUMN, RewardFunc, applies, column, final_answer, named, reads, route
from r1_recipe.rewards.verify import get_verifier


def correctness(
    completions: list[Any],
    kwargs: dict[str, Any],
    *,
    solution_column: str,
    timeout: float,
    workers: int | None,
    name: str = "accuracy",
) -> list[float | None]:
    """1.0 / 0.0 / None per sample; shared by accuracy, length and cosine (one cache).

    ``name`` is the calling reward's, for its ``rewards/<name>/timeouts`` metric."""
    n = len(completions)
    refs = column(kwargs, solution_column, n)
    ok = applies(n, kwargs.get("reward_type"), domain=MATH)  # None on code and general rows
    prompts, prefilled = kwargs.get("prompts") or [None] * n, kwargs.get(PREFILL_COLUMN) or [None] * n
    answers = [final_answer(c, p, f) for c, p, f in zip(completions, prompts, prefilled)]
    idx = [i for i in range(n) if ok[i] and refs[i] is not None and str(refs[i]).strip()]
    verifier = get_verifier(workers, timeout)
    before = verifier.timeouts
    verdicts = verifier.verify_many([(answers[i], str(refs[i]).strip()) for i in idx])
    if (log_metric := kwargs.get("log_metric")) is not None:
        log_metric(f"rewards/{name}/timeouts", float(verifier.timeouts - before))
    out: list[float | None] = [None] * n
    for i, v in zip(idx, verdicts):
        out[i] = v
    return out


def accuracy(
    solution_column: str = "solution", timeout: float = 5.0, workers: int | None = None
) -> RewardFunc:
    """Final answer (last \\boxed{} or <answer> after </think>) equals the reference, by
    math-verify: 1.0 / 0.0, None if the reference does not parse.

    Each distinct (answer, reference) pair is verified once, in a worker process killed after
    ``timeout`` seconds (then 0.0); ``workers`` defaults to the CPU count (max 8).
    """

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        return correctness(
            completions, kwargs, solution_column=solution_column, timeout=timeout, workers=workers,
            name=fn.__name__,
        )

    return route(reads(named(fn, "accuracy"), **{solution_column: "solution_column"}), domain=MATH)
