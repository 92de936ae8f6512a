"""Several data threads (data.workers.ParallelPrefetcher): results in step order, errors
raised at their step, threads stopped on close."""

import threading
import time

import pytest

from unetkit.data.workers import ParallelPrefetcher


def test_steps_come_in_order_from_several_threads():
    seen = set()

    def make(step):
        seen.add(threading.current_thread().name)
        time.sleep(0.01 * (step % 3))  # later steps may finish first
        return step * step

    with ParallelPrefetcher(make, 5, workers=3) as data:
        assert [data.get(s) for s in range(5, 17)] == [s * s for s in range(5, 17)]
        assert data.prep_seconds > 0 and data.wait_seconds >= 0
    assert len(seen) >= 2


def test_an_error_is_raised_at_its_step():
    def make(step):
        if step == 3:
            raise ValueError("bad tile")
        return step

    with ParallelPrefetcher(make, 1, workers=2) as data:
        assert data.get(1) == 1 and data.get(2) == 2
        with pytest.raises(ValueError, match="bad tile"):
            data.get(3)


def test_steps_out_of_order_and_bad_workers_are_refused():
    with ParallelPrefetcher(lambda s: s, 1, workers=1, depth=1) as data, \
            pytest.raises(ValueError, match="asked for step 2"):
        data.get(2)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ParallelPrefetcher(lambda s: s, 1, workers=0)


def test_close_stops_the_threads():
    before = threading.active_count()
    data = ParallelPrefetcher(lambda s: s, 1, workers=3)
    data.get(1)
    data.close()
    assert threading.active_count() <= before
