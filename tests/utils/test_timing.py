"""The one micro-timer: interleaved samples, repeated calls per sample, early stop on budget."""
import time

from flexcore.utils.timing import time_interleaved


def test_samples_are_interleaved_and_per_call():
    order = []
    slow = lambda: (order.append("slow"), time.sleep(0.02))  # noqa: E731
    fast = lambda: order.append("fast")  # noqa: E731
    samples = time_interleaved([slow, fast], rounds=3, min_sample_s=0.01)
    assert [len(s) for s in samples] == [3, 3]
    assert all(0.02 <= t < 0.5 for t in samples[0])  # seconds per call, not per sample
    assert max(samples[1]) < min(samples[0])
    timed = order[2:]  # after one warm-up call each
    assert timed.count("slow") == 3  # a 20 ms call already fills a 10 ms sample
    fast_calls = timed.count("fast") // 3  # a fast call is repeated until its sample lasts 10 ms
    assert fast_calls > 1 and timed == (["slow"] + ["fast"] * fast_calls) * 3


def test_stops_after_two_rounds_once_the_budget_is_spent():
    samples = time_interleaved([lambda: time.sleep(0.02)], rounds=10, min_sample_s=0.0, budget_s=0.015)
    assert len(samples[0]) == 2
    one_round = time_interleaved([lambda: time.sleep(0.05)], rounds=10, min_sample_s=0.0, budget_s=0.015)
    assert len(one_round[0]) == 1  # a single round over twice the budget is enough
