"""Math answer verification: math-verify in worker processes, with a hard wall-clock limit.

Why processes: math-verify bounds its work with ``signal.alarm``, which raises in threads and
cannot interrupt C code (``9^{9^{9^{9}}}`` hangs inside a big-integer power). Each worker
runs one pair at a time under one alarm of (nearly) the whole limit, with math-verify's own
per-operation alarms off (they used to get a third of the limit each, so a slow but right pair
read 0); the parent kills a worker that overruns the limit anyway (C code ignores alarms) and
respawns it.

Timeouts: a pair that runs out of time is retried once, with the whole limit again (the first
try often lost its time to a busy machine or a cold parser); if the retry also runs out the pair
scores 0.0 *for this call only*: it is counted (``timeouts``; the rewards log it as
``rewards/<name>/timeouts``) and never cached, so a later batch tries it afresh.

Why it is fast: verdicts are cached per (answer, reference) pair
(GRPO samples 16-64 completions per prompt, most answers repeat); pairs of numbers (integers,
decimals, fractions, surds, multiples of pi and their sums), one-variable polynomials, and
intervals, tuples and sets of numbers are decided in the parent by an exact fast path tested
against math-verify (:mod:`r1_recipe.rewards.exact`); only the rest reach the workers,
which parse each reference once (pairs go to a worker that has parsed their reference).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import OrderedDict, deque
from multiprocessing.connection import Connection, wait
from pathlib import Path

from r1_recipe.rewards.exact import fast_verdict

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000  # no real final answer is longer; longer ones score 0.0 unparsed
TIMEOUT = "timeout"  # a worker's reply (and an attempt's result) when the pair ran out of time
_PARSED: OrderedDict[tuple[str, str], list] = OrderedDict()  # per-process parse cache


def _extraction_config():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(), ExprExtractionConfig()]


def _cached_parse(kind: str, text: str, seconds: int, use_cache: bool = True) -> list:
    from math_verify import parse

    key = (kind, text)
    if use_cache and key in _PARSED:
        _PARSED.move_to_end(key)
        return _PARSED[key]
    cfg = _extraction_config()
    if kind == "ref":
        if _plain_words(text):
            return []  # "forty two" would parse as the product f*o*r*t*y*t*w*o: no reference
        # A bare gold like 3\sqrt{2} parses as 3 without math delimiters; one `$...$` does not
        # match across lines, so a multi-line gold (a pmatrix) is joined onto one line first,
        # else it parses as its last number.
        wrapped = text if ("$" in text or "\\boxed" in text) else "$" + " ".join(text.split()) + "$"
        parsed = parse(wrapped, extraction_config=cfg, parsing_timeout=seconds)
        if not parsed and wrapped != text:
            parsed = parse(text, extraction_config=cfg, parsing_timeout=seconds)
    else:
        # The extracted answer is final by construction: re-box it so that the whole of it is
        # read; '<answer>85</answer>' content alone would parse to nothing.
        parsed = parse(f"\\boxed{{{text}}}", extraction_config=cfg, parsing_timeout=seconds)
        if not parsed:
            parsed = parse(text, extraction_config=cfg, parsing_timeout=seconds)
    if not use_cache:
        return parsed
    _PARSED[key] = parsed
    if len(_PARSED) > 20_000:
        _PARSED.popitem(last=False)
    return parsed


_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*(?:[ ,]+[A-Za-z][A-Za-z'-]*)*[.!]?")


def _plain_words(text: str) -> bool:
    """A reference written in words ("forty two", "Monday"): letters only with a run of three
    or more, so single-letter products like ``xy`` or ``x y`` stay math.

    >>> _plain_words("forty two"), _plain_words("Monday"), _plain_words("xy"), _plain_words("2x")
    (True, True, False, False)
    """
    text = text.strip()
    return bool(_WORDS.fullmatch(text)) and re.search(r"[A-Za-z]{3}", text) is not None


def verify_pair(answer: str | None, reference: str, seconds: int = 5,
                use_cache: bool = True) -> float | None:
    """Serial verdict for one pair: 1.0 / 0.0, None when the reference does not parse.

    This is the whole rule; the pool only runs it elsewhere, bounded and cached.
    ``seconds`` feeds math-verify's own alarms (main thread only); ``use_cache=False`` parses
    everything afresh (the naive baseline of benchmarks/rewards.py).
    """
    ref = _cached_parse("ref", reference, seconds, use_cache)
    # math-verify falls back to the raw string when nothing parses: that is no reference.
    if not any(not isinstance(x, str) for x in ref):
        return None
    if answer is None or not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
        return 0.0
    from math_verify import verify

    parsed = _cached_parse("ans", answer, seconds, use_cache)
    if not parsed:
        return 0.0
    return 1.0 if verify(ref, parsed, timeout_seconds=seconds) else 0.0


def warm_up() -> None:
    """Pay math-verify's first-call costs (lazy sympy imports, ANTLR parser set-up, the first
    interval/tuple/pi: ~0.5 s) at pool start, not on the first batch."""
    for answer, reference in [("\\frac{1}{2}", "0.5"), ("2\\sqrt{3}", "x+1"), ("(1,2)", "\\{3\\}"),
                              ("[2, \\infty)", "(-\\infty, 3]"), ("7", "\\frac{2\\pi}{3}"), ("(1, 3)", "(1, 2)")]:
        try:
            verify_pair(answer, reference, use_cache=False)
        except Exception:  # noqa: BLE001 - only a warm-up
            pass


class _Overrun(BaseException):
    """Raised by the worker's alarm; a BaseException so math-verify's ``except Exception``
    blocks cannot swallow it and report the pair as wrong."""


def _on_alarm(signum, frame):
    raise _Overrun


def _worker_main(rfd: int, wfd: int, memory_mb: int, budget: float) -> None:
    """Worker loop: receive (answer, reference), send the verdict (or TIMEOUT when the pair's
    alarm fired); any other error scores 0.0."""
    import resource

    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Our alarm bounds the whole pair; math-verify's own (timeout 0: off) would warn once.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    warm_up()  # lazy imports and parser set-up happen before the first deadline starts
    signal.signal(signal.SIGALRM, _on_alarm)
    outbox.send("ready")
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            signal.setitimer(signal.ITIMER_REAL, budget)
            try:
                verdict = verify_pair(msg[0], msg[1], 0)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Overrun:
            verdict = TIMEOUT
        except BaseException as e:  # noqa: BLE001 - a hostile answer must never kill the loop
            logger.debug("verification error %r", e)
            verdict = 0.0
        outbox.send(verdict)


class _Worker:
    """One worker process, started as a fresh interpreter: it never re-imports the caller's
    ``__main__`` (multiprocessing's spawn/forkserver do, which breaks unguarded scripts) and
    forks nothing from a trainer holding threads and CUDA state."""

    def __init__(self, memory_mb: int, budget: float):
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from r1_recipe.rewards.verify import _worker_main as m; "
             f"m({p2c_r}, {c2p_w}, {memory_mb}, {budget!r})"],
            pass_fds=(p2c_r, c2p_w), env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(p2c_r)
        os.close(c2p_w)
        self.send = Connection(p2c_w, readable=False)
        self.conn = Connection(c2p_r, writable=False)
        self.ready = False
        self.refs: set[str] = set()  # references this worker has parsed (and cached)
        self.task: tuple[str | None, str] | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.send.close()
        self.conn.close()


class MathVerifier:
    """A pool of verification workers with a per-pair wall-clock limit and a verdict cache.

    ``workers=0`` verifies in the calling process (no wall-clock guarantee; for debugging).
    """

    def __init__(self, workers: int = 2, timeout: float = 5.0, memory_mb: int = 4096,
                 cache_size: int = 200_000):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.n_workers, self.timeout, self.memory_mb = workers, timeout, memory_mb
        # The worker's graceful alarm (whole pair) fires just before the parent's hard kill.
        self.worker_budget = 0.9 * timeout
        self.seconds = max(1, round(timeout))  # math-verify's own alarms, inline mode only
        self.cache: OrderedDict[tuple[str | None, str], float | None] = OrderedDict()  # LRU order
        self.cache_size = cache_size
        self.timeouts = 0  # pairs scored 0.0 because both attempts ran out of time
        self.fast_decided = 0  # pairs settled by the exact fast path (a statistic for benchmarks)
        self._workers: list[_Worker] = []
        self._pid = os.getpid()

    def _pool(self) -> list[_Worker]:
        if self._pid != os.getpid():  # forked (e.g. a DataLoader worker): start our own
            self._workers, self._pid = [], os.getpid()
        if not self._workers:
            self._workers = [_Worker(self.memory_mb, self.worker_budget) for _ in range(self.n_workers)]
        return self._workers

    def start(self, within: float = 120.0) -> None:
        """Start the workers now and wait until they are ready (else the first batch that needs
        math-verify pays the ~1 s start-up)."""
        deadline = time.monotonic() + within
        for w in self._pool() if self.n_workers > 0 else []:
            while not w.ready and w.conn.poll(max(0.0, deadline - time.monotonic())):
                w.ready = w.conn.recv() == "ready"
            if not w.ready:
                raise RuntimeError("math verification workers did not start within "
                                   f"{within:.0f} s")

    def verify_many(self, pairs: list[tuple[str | None, str]]) -> list[float | None]:
        """Verdicts for (answer, reference) pairs, in order; each pair bounded by ``timeout``.

        The batch's verdicts are collected first and only then merged into the cache and the
        cache trimmed (least recently used first), so a batch larger than the cache still reads
        all of its own results; a hit counts as a use.
        """
        found: dict[tuple[str | None, str], float | None] = {}
        todo = []
        for pair in dict.fromkeys(pairs):
            if pair in self.cache:
                self.cache.move_to_end(pair)
                found[pair] = self.cache[pair]
            elif (fast := self._fast(pair)) is not None:
                found[pair] = self.cache[pair] = fast
            else:
                todo.append(pair)
        for pair, verdict in zip(todo, self._slow(todo)):
            if verdict == TIMEOUT:  # scored 0.0 now, tried afresh next time
                self.timeouts += 1
                found[pair] = 0.0
            else:
                found[pair] = self.cache[pair] = verdict
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return [found[p] for p in pairs]

    def _slow(self, todo: list[tuple[str | None, str]]) -> list[float | None | str]:
        """math-verify's verdicts; a pair that runs out of time gets one more try, then TIMEOUT."""
        if not todo:
            return []
        if self.n_workers <= 0:
            return [self._inline(p) for p in todo]
        out = self._run(todo)
        again = [i for i, v in enumerate(out) if v == TIMEOUT]
        if again:
            logger.info("math verification: %d pair(s) ran out of %.1fs; retrying once", len(again), self.timeout)
            for i, verdict in zip(again, self._run([todo[i] for i in again], retry=True)):
                out[i] = verdict
                if verdict == TIMEOUT:
                    logger.warning("math verification over %.1fs twice, scored 0.0 (not cached): %.80r",
                                   self.timeout, todo[i][0])
        return out

    def _fast(self, pair: tuple[str | None, str]) -> float | None:
        """The exact fast path's verdict, or None to send the pair to math-verify.

        No answer (a truncated completion) against a reference in the fast path's grammar is
        0.0, :func:`verify_pair`'s verdict, decided here: otherwise every batch with one truncated
        sample started the math-verify processes (~1 s of CPU each, 4-8 s wall on a busy 2-core
        box) in every GRPO, rejection-sampling and evaluation process of the demo.
        """
        if pair[0] is None or not pair[0].strip():
            decided = fast_verdict(pair[1], pair[1]) is not None  # the reference is in the grammar
            self.fast_decided += decided
            return 0.0 if decided else None
        if len(pair[0]) > MAX_ANSWER_CHARS:
            return None
        verdict = fast_verdict(pair[0], pair[1])
        self.fast_decided += verdict is not None
        return None if verdict is None else float(verdict)

    def _inline(self, pair: tuple[str | None, str]) -> float | None:
        try:
            return verify_pair(pair[0], pair[1], self.seconds)
        except Exception:  # noqa: BLE001
            return 0.0

    def _run(self, todo: list[tuple[str | None, str]], *, retry: bool = False) -> list[float | None | str]:
        """Keep every ready worker busy with one pair; the deadline starts at dispatch. A pair
        whose worker overran its deadline (killed) or whose alarm fired reads TIMEOUT.
        ``retry`` marks the second attempt (the same budget; a hook for tests and logs)."""
        workers = self._pool()
        queue = deque(range(len(todo)))
        out: list[float | None] = [0.0] * len(todo)
        index: dict[int, int] = {}  # id(worker) -> index of its pair
        started = time.monotonic()
        while queue or index:
            for w in workers:
                if w.ready and w.task is None and queue:
                    # Prefer a pair whose reference this worker has parsed already.
                    i = next((j for j in queue if todo[j][1] in w.refs), queue[0])
                    queue.remove(i)
                    w.refs.add(todo[i][1])
                    w.task, w.deadline = todo[i], time.monotonic() + self.timeout
                    w.send.send(todo[i])
                    index[id(w)] = i
            if not any(w.ready for w in workers) and time.monotonic() - started > 120:
                raise RuntimeError("math verification workers did not start within 120 s; "
                                   "check that r1_recipe.rewards.verify imports in a fresh interpreter")
            deadlines = [w.deadline for w in workers if w.task is not None]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            for conn in wait([w.conn for w in workers], timeout=wait_s):
                w = next(w for w in workers if w.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # worker died (e.g. out of memory): score 0.0
                    if w.task is not None:
                        logger.warning("math verification worker died on %.80r", w.task[0])
                        index.pop(id(w))
                    w = self._replace(w)
                    continue
                if msg == "ready":
                    w.ready = True
                elif w.task is not None:
                    out[index.pop(id(w))] = msg
                    w.task = None
            now = time.monotonic()
            for w in list(workers):
                if w.task is not None and now >= w.deadline:
                    out[index.pop(id(w))] = TIMEOUT
                    self._replace(w)
        return out

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = _Worker(self.memory_mb, self.worker_budget)
        self._workers[self._workers.index(w)] = new
        return new

    def close(self) -> None:
        for w in self._workers:
            try:
                w.send.send(None)
                w.proc.wait(1)
            except (OSError, subprocess.TimeoutExpired):
                pass
            w.kill()
        self._workers = []


_VERIFIERS: dict[tuple, MathVerifier] = {}


def get_verifier(workers: int | None = None, timeout: float = 5.0,
                 memory_mb: int = 4096) -> MathVerifier:
    """One shared pool per setting, so accuracy, length and cosine share verdicts."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    key = (workers, float(timeout), memory_mb)
    if key not in _VERIFIERS:
        _VERIFIERS[key] = MathVerifier(workers, timeout, memory_mb)
    return _VERIFIERS[key]


@atexit.register
def _close_all() -> None:
    for v in _VERIFIERS.values():
        v.close()

