"""What every reward shares: reading TRL's arguments, routing rows, grouping samples.

TRL calls a reward as ``f(prompts=, completions=, completion_ids=, <dataset columns>,
trainer_state=, log_extra=, log_metric=)``. These helpers turn that into plain lists so each
reward stays a short pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from r1_recipe.rewards.extract import THINK_OPEN, completion_text, extract_answer, opens_think

RewardFunc = Callable[..., list[float | None]]

GENERAL, REASONING, MATH, CODE = "general", "reasoning", "math", "code"
REWARD_TYPES = (REASONING, MATH, CODE, GENERAL)
"""Values of the ``reward_type`` column (set per source in a ``dataset_mixture``), which routes a
row to the rewards that score it; a reward returns None on the rows it does not score:

- ``reasoning``: every rule reward (which of them can score the row is up to its columns);
- ``math``: the rule rewards except the code reward (accuracy and its length variants score it);
- ``code``: the rule rewards except the math-answer ones (accuracy, length, cosine), so the code
  reward scores it against its ``verification_info``;
- ``general``: the reward models only.

A row without a ``reward_type`` (None) goes to every reward, as ``reasoning`` and ``general`` both."""
DOMAINS = (MATH, CODE)


PREFILL_COLUMN = "think_prefilled"
"""Optional boolean dataset column: the chat template's generation prompt already opened
``<think>`` (DeepSeek-R1-Distill's template, Qwen3 thinking models), so completions start inside
the reasoning. Chat prompts reach the rewards as messages, without the template's text, so the
stage that renders them sets this column (:func:`template_opens_think`); TRL hands every dataset
column to the rewards."""


def template_opens_think(tokenizer: Any, **chat_template_kwargs: Any) -> bool:
    """Whether ``tokenizer``'s chat template ends its generation prompt inside ``<think>``.

    Rendered on a one-turn probe with ``add_generation_prompt=True`` (and e.g. Qwen3's
    ``enable_thinking``); a template whose prompt closes the block again (Qwen3 with thinking
    off writes ``<think></think>``) does not open it. False without a chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        return False
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False,
                                             add_generation_prompt=True, **chat_template_kwargs)
    return opens_think(rendered)


def mark_prefilled(dataset: Any, tokenizer: Any, **chat_template_kwargs: Any) -> Any:
    """``dataset`` (a ``datasets.Dataset`` of TRL prompts) with :data:`PREFILL_COLUMN` set when
    its prompts are chat messages and ``tokenizer``'s template opens ``<think>``; unchanged
    otherwise (plain-text prompts are their own rendering and need no flag)."""
    if (len(dataset) == 0 or PREFILL_COLUMN in dataset.column_names or not isinstance(dataset[0]["prompt"], list)
            or not template_opens_think(tokenizer, **chat_template_kwargs)):
        return dataset
    return dataset.add_column(PREFILL_COLUMN, [True] * len(dataset))


def prompt_opens_think(prompt: Any, prefilled: Any = None) -> bool:
    """Whether the completion of ``prompt`` starts inside ``<think>``: a plain-text prompt
    (R1-Zero's) that ends with the tag, a chat prompt whose final assistant message (a prefill)
    does, or a row whose :data:`PREFILL_COLUMN` says the template opened it."""
    if isinstance(prompt, str):  # rendered as-is, never through a template
        return opens_think(prompt)
    if prefilled:
        return True
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant":
        return opens_think(str(prompt[-1].get("content") or ""))
    return False


def full_text(completion: Any, prompt: Any = None, prefilled: Any = None) -> str:
    """One completion as the model wrote it *including* the ``<think>`` its prompt opened, so
    every reward and the evaluator read one format (a completion cut off before ``</think>``
    then has no answer).

    >>> full_text("a</think>b", "Q: 1+1? <think>\\n")
    '<think>\\na</think>b'
    >>> full_text([{"role": "assistant", "content": "a</think>b"}], [{"role": "user", "content": "1+1?"}], True)
    '<think>\\na</think>b'
    """
    text = completion_text(completion)
    if prompt_opens_think(prompt, prefilled) and not text.lstrip().startswith(THINK_OPEN):
        text = THINK_OPEN + "\n" + text
    return text


def final_answer(completion: Any, prompt: Any = None, prefilled: Any = None,
                 extract: Callable[[str], str | None] = extract_answer) -> str | None:
    """The one way a completion's final answer is read, by the rewards and by evaluation:
    ``extract`` (the last ``\\boxed{}`` after ``</think>``, else ``<answer>``) on its
    :func:`full_text`.

    >>> final_answer("so \\\\boxed{4}", "A: <think>\\n") is None  # truncated inside the reasoning
    True
    >>> final_answer("r</think> \\\\boxed{4}", "A: <think>\\n")
    '4'
    """
    return extract(full_text(completion, prompt, prefilled))


def texts(completions: Sequence[Any], prompts: Sequence[Any] | None = None,
          prefilled: Sequence[Any] | None = None) -> list[str]:
    """Completion texts; re-opens ``<think>`` where the prompt (or its template, per
    ``prefilled``: the :data:`PREFILL_COLUMN`) already opened it.

    R1-style templates often prefill ``<think>\\n`` in the prompt, so the completion starts
    inside the reasoning; restoring the tag lets every reward read one format.

    >>> texts(["a</think>b"], prompts=["Q: 1+1? <think>\\n"])
    ['<think>\\na</think>b']
    >>> texts([[{"role": "assistant", "content": "hi"}]])
    ['hi']
    """
    n = len(completions)
    ps = prompts if prompts is not None else [None] * n
    flags = prefilled if prefilled is not None else [None] * n
    return [full_text(c, p, f) for c, p, f in zip(completions, ps, flags)]


def row_texts(completions: Sequence[Any], kwargs: dict[str, Any]) -> list[str]:
    """:func:`texts` for a reward's TRL arguments (``prompts`` and the optional prefill column)."""
    return texts(completions, kwargs.get("prompts"), kwargs.get(PREFILL_COLUMN))


def prompt_text(prompt: Any) -> str:
    """A prompt as one string (chat prompts: the last message's content)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content") or "")
    return ""


def group_keys(n: int, prompts: Sequence[Any] | None) -> list[str]:
    """One key per sample; samples of the same prompt share it (GRPO's group).

    Keying on the prompt itself, not on batch position, stays right whatever order TRL or a
    caller puts the samples in.
    """
    if prompts is None:
        return ["" for _ in range(n)]
    return [p if isinstance(p, str) else repr(p) for p in prompts]


def applies(n: int, reward_type: Sequence[Any] | None, *, model_based: bool = False,
            domain: str | None = None) -> list[bool]:
    """Routing (see :data:`REWARD_TYPES`): rule rewards skip ``general`` rows, and a rule reward of
    one ``domain`` (``math`` or ``code``) also skips the rows of the other; model rewards skip the
    rule rows (``reasoning``, ``math``, ``code``).

    >>> applies(3, ["reasoning", "general", None])
    [True, False, True]
    >>> applies(2, ["reasoning", "general"], model_based=True)
    [False, True]
    >>> applies(2, None)
    [True, True]
    >>> applies(4, ["math", "code", "reasoning", "general"], domain="code")
    [False, True, True, False]
    """
    if reward_type is None:
        return [True] * n
    return [routes(t, model_based=model_based, domain=domain) for t in reward_type]


def routes(reward_type: Any, *, model_based: bool = False, domain: str | None = None) -> bool:
    """Whether a reward (rule or model based, of ``domain`` or none) scores a row of ``reward_type``."""
    if reward_type is None:
        return True
    kind = str(reward_type).lower()
    if kind not in REWARD_TYPES:
        raise ValueError(unknown_reward_type(reward_type))
    if model_based:
        return kind not in (REASONING, *DOMAINS)
    if kind == GENERAL:
        return False
    return domain is None or kind not in DOMAINS or kind == domain


def unknown_reward_type(value: Any, where: str = "a row") -> str:
    """The error for a ``reward_type`` no reward routes on (a typo would send the row everywhere)."""
    return (f"{where} has reward_type {value!r}; valid: {', '.join(REWARD_TYPES)} (or none). Set it per "
            "source in dataset_mixture, e.g. {path: ..., reward_type: code}")


def route(fn: RewardFunc, *, domain: str | None = None, model_based: bool = False) -> RewardFunc:
    """Record on a reward which rows it scores (what its :func:`applies` call does), so a stage
    can tell "does not apply to this row" from "applies and cannot verify" (both return None):
    rejection sampling's keep rule skips a threshold on rows its reward does not score."""
    fn.routing = {"domain": domain, "model_based": model_based}
    return fn


def scores_rows_of(fn: RewardFunc, reward_type: Any) -> bool:
    """Whether reward ``fn`` scores rows of ``reward_type`` (a plain rule reward unless :func:`route`
    said otherwise).

    >>> def acc(completions, **kw): ...
    >>> def fmt(completions, **kw): ...
    >>> scores_rows_of(route(acc, domain="math"), "code"), scores_rows_of(fmt, "code")
    (False, True)
    """
    return routes(reward_type, **getattr(fn, "routing", {}))


def column(kwargs: dict[str, Any], name: str, n: int, *, required: bool = True) -> list[Any]:
    """A dataset column from TRL's keyword arguments, with an error that says what to fix."""
    values = kwargs.get(name)
    if values is None:
        if required:
            cols = sorted(k for k in kwargs if k not in _TRL_ARGS)
            raise KeyError(
                f"reward needs the dataset column {name!r}; the batch has columns {cols}. "
                f"Add the column or set the reward's column option."
            )
        return [None] * n
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return list(values)


def reads(fn: RewardFunc, **columns: str) -> RewardFunc:
    """Record the dataset columns a reward reads, each with the reward option that names it
    (``column=option``), so a stage can refuse data without them before it loads a model.

    >>> def acc(completions, **kw): ...
    >>> reads(acc, solution="solution_column").columns
    {'solution': 'solution_column'}
    """
    fn.columns = dict(columns)
    return fn


def named(fn: RewardFunc, name: str, doc: str | None = None) -> RewardFunc:
    """Give a closure the registry name, so TRL logs ``rewards/<name>/mean``."""
    fn.__name__ = fn.__qualname__ = name
    if doc:
        fn.__doc__ = doc
    return fn


_TRL_ARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", PREFILL_COLUMN}
