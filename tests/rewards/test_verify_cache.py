"""The verdict cache and timeouts of the math-verify pool: a batch reads its own results before
anything is evicted, eviction is least-recently-used, and a timeout is retried once and never
cached as a wrong answer."""

import time

import pytest

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.verify import TIMEOUT, MathVerifier, verify_pair

# Pairs the exact fast path leaves to math-verify (so they reach the cache through the slow path).
SLOW = [("\\sin(x)", "\\sin(x)"), ("\\cos(x)", "\\sin(x)"), ("\\tan(x)", "\\tan(x)")]


def test_a_batch_larger_than_the_cache_reads_its_own_results():
    v = MathVerifier(workers=0, cache_size=2)
    # 2 fast-path pairs and 3 math-verify pairs: 5 distinct, the cache holds 2.
    got = v.verify_many([("1", "1"), ("2", "3"), *SLOW, ("1", "1")])
    assert got == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert len(v.cache) == 2


def test_eviction_is_least_recently_used():
    v = MathVerifier(workers=0, cache_size=2)
    a, b, c = ("1", "1"), ("2", "2"), ("3", "3")
    v.verify_many([a])
    v.verify_many([b])
    v.verify_many([a])  # a hit refreshes a: b is now the oldest
    v.verify_many([c])
    assert a in v.cache and c in v.cache and b not in v.cache


class FirstAttemptTimesOut(MathVerifier):
    """The real pool, except that the first attempt at ``slow`` pairs reports a timeout (as a
    worker does when its own alarm fires); the retry runs for real."""

    def __init__(self, slow, **kw):
        super().__init__(**kw)
        self.slow, self.attempts = set(slow), []

    def _run(self, todo, *, retry=False):
        self.attempts.append((list(todo), retry))
        out = super()._run(todo, retry=retry)
        return [TIMEOUT if (p in self.slow and not retry) else v for p, v in zip(todo, out)]


def test_a_timeout_is_retried_once_and_the_retry_verdict_is_kept():
    v = FirstAttemptTimesOut([SLOW[0]], workers=1, timeout=5.0)
    try:
        assert v.verify_many([SLOW[0], SLOW[1]]) == [1.0, 0.0]
        assert v.attempts == [([SLOW[0], SLOW[1]], False), ([SLOW[0]], True)]
        assert v.cache[SLOW[0]] == 1.0 and v.timeouts == 0
    finally:
        v.close()


def test_a_pair_that_times_out_twice_scores_zero_now_and_is_not_cached():
    v = MathVerifier(workers=1, timeout=1.0)
    hang = ("9^{9^{9^{9}}}", "5")  # a big-integer power that never returns
    try:
        v.start()  # the pool's start-up is not the per-pair limit
        start = time.monotonic()
        assert v.verify_many([hang, ("7", "7")]) == [0.0, 1.0]
        assert time.monotonic() - start < 2 * 1.0 + 6  # two attempts, plus worker respawns
        assert hang not in v.cache  # the next batch tries again
        assert v.timeouts == 1
        assert v.verify_many([("8", "8")]) == [1.0]  # the pool survives the kills
    finally:
        v.close()


def test_math_verify_gets_the_whole_budget_not_a_third():
    # The worker's own alarm covers the whole pair with (nearly) the whole limit; math-verify's
    # per-operation alarms used to get timeout // 3 each, turning a slow but right pair into 0.
    v = MathVerifier(workers=1, timeout=6.0)
    assert v.worker_budget >= 0.9 * 6.0 - 1e-9
    assert v.worker_budget < 6.0  # the graceful alarm fires before the hard kill


def test_the_accuracy_reward_logs_its_timeouts():
    (fn,) = get_reward_funcs(["accuracy"], accuracy={"timeout": 1.0, "workers": 1})
    logged = []
    got = fn(completions=["<think>r</think> \\boxed{9^{9^{9^{9}}}}", "<think>r</think> \\boxed{4}"],
             solution=["5", "4"], log_metric=lambda name, value: logged.append((name, value)))
    assert got == [0.0, 1.0]
    assert logged == [("rewards/accuracy/timeouts", 1.0)]


@pytest.mark.parametrize("name", ["length", "cosine"])
def test_rewards_sharing_the_verifier_log_under_their_own_name(name):
    (fn,) = get_reward_funcs([name], **{name: {"timeout": 1.0, "workers": 1}})
    logged = []
    fn(completions=["<think>r</think> \\boxed{4}"], solution=["4"], prompts=["p"],
       log_metric=lambda n, value: logged.append((n, value)))
    assert logged == [(f"rewards/{name}/timeouts", 0.0)]


def test_a_missing_answer_to_a_plain_reference_is_decided_without_starting_workers():
    # A truncated completion has no answer: against a number the verdict is 0.0 (verify_pair's
    # rule), and it must not cost the start of the math-verify processes (seconds on 2 cores).
    v = MathVerifier(workers=2)
    try:
        got = v.verify_many([(None, "153"), ("  ", "7"), ("153", "153")])
        assert got == [verify_pair(None, "153"), verify_pair("  ", "7"), 1.0] == [0.0, 0.0, 1.0]
        assert v._workers == []
    finally:
        v.close()


def test_a_missing_answer_to_a_reference_outside_the_fast_grammar_still_asks_math_verify():
    v = MathVerifier(workers=0)
    assert v.verify_many([(None, "\\sin(x)"), (None, "no math here")]) == [
        verify_pair(None, "\\sin(x)"), verify_pair(None, "no math here")]
    assert v.fast_decided == 0
