"""Code reward: run the completion's last code block against the row's tests in a sandbox.

Tests come in the row's ``verification_info`` column (a dict or its JSON string), either
``{"test_cases": [{"input": stdin, "output": expected stdout}, …]}`` or
``{"tests": ["assert f(2) == 4", …]}`` (each appended to the program; passes on exit 0).
Only Python runs locally; rows for other languages get None unless a provider runs them.
Identical (program, test) jobs of one call run once (the samples of a GRPO group often repeat a
program), so a program's verdict is its first run's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1_recipe.rewards.base import RewardFunc, applies, column, named, row_texts
from r1_recipe.rewards.extract import last_code_block
from r1_recipe.rewards.sandbox import LocalSandbox, Sandbox

logger = logging.getLogger(__name__)

# Add a remote service here (name -> factory taking the sandbox options) to make it selectable.
SANDBOX_PROVIDERS: dict[str, Callable[..., Sandbox]] = {"local": LocalSandbox}


def _same_output(got: str, expected: str) -> bool:
    """Equal up to trailing whitespace on each line and trailing blank lines."""
    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.strip().splitlines()]

    return norm(got) == norm(expected)


def _jobs(code: str, info: dict) -> list[tuple[str, str, str | None]]:
    """(program, stdin, expected stdout or None for 'exit 0 passes') per test."""
    if info.get("test_cases"):
        return [(code, str(t.get("input", "")), str(t.get("output", ""))) for t in info["test_cases"]]
    return [(f"{code}\n\n{t}\n", "", None) for t in info.get("tests") or []]


def code(
    provider: str = "local", verification_column: str = "verification_info", cpu_s: int = 5,
    wall_s: float = 10.0, memory_mb: int = 512, max_tests: int = 32, workers: int = 2,
    strict: bool = True,
) -> RewardFunc:
    """Fraction of the row's tests passed by the last fenced code block after </think>, run in
    a sandbox (local: seccomp, Landlock, rlimits, no network, temp dir); None without tests."""
    if provider not in SANDBOX_PROVIDERS:
        raise ValueError(f"code: unknown provider {provider!r}; known: {sorted(SANDBOX_PROVIDERS)}")
    box = SANDBOX_PROVIDERS[provider](cpu_s=cpu_s, wall_s=wall_s, memory_mb=memory_mb,
                                      strict=strict)

    def passed(job: tuple[str, str, str | None]) -> bool:
        program, stdin, expected = job
        try:
            r = box.run(program, stdin)
        except Exception as e:  # noqa: BLE001 - a sandbox failure must not stop training
            logger.warning("code sandbox failed: %r", e)
            return False
        if r.timed_out or r.returncode != 0:
            return False
        return expected is None or _same_output(r.stdout, expected)

    def fn(completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        infos = column(kwargs, verification_column, n)
        ok = applies(n, kwargs.get("reward_type"))
        rows: list[list[tuple[str, str, str | None]] | None] = []
        for i, text in enumerate(row_texts(completions, kwargs)):
            info = json.loads(infos[i]) if isinstance(infos[i], str) else (infos[i] or {})
            lang = str(info.get("language", "python")).lower()
            if not ok[i] or lang != "python" and provider == "local":
                rows.append(None)
                continue
            block = last_code_block(text)
            jobs = _jobs(block, info)[:max_tests] if block is not None else []
            has_tests = bool(info.get("test_cases") or info.get("tests"))
            rows.append(jobs if has_tests else None)
        flat = [job for jobs in rows if jobs for job in jobs]
        distinct = list(dict.fromkeys(flat))  # a GRPO group repeats programs: one run each
        with ThreadPoolExecutor(max(1, workers)) as pool:
            verdict = dict(zip(distinct, pool.map(passed, distinct)))
        results = iter([verdict[job] for job in flat])
        out: list[float | None] = []
        for i, jobs in enumerate(rows):
            if jobs is None:
                out.append(None)
            elif not jobs:  # tests exist but no code block
                out.append(0.0)
            else:
                out.append(sum(next(results) for _ in jobs) / len(jobs))
        return out

    return named(fn, "code")
