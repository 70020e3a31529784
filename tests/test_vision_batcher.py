"""The micro-batcher pairs every result with its own caller, batches what arrives together,
waits only for announced items and never past its bound, and passes failures to callers."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from bt_sorter.vision.batcher import BatcherClosedError, MicroBatcher

HANG = 30.0  # s: a bound that only catches a hang


class Recorder:
    """run_batch that squares its items and records each batch it was given."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(HANG)
        self.batches.append(list(items))
        return [i * i for i in items]


def test_many_threads_each_get_the_result_of_their_own_item() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait=0.01)
    barrier = threading.Barrier(32)

    def caller(i: int) -> int:
        barrier.wait()
        return batcher.submit(i).result(HANG)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(caller, range(32)))
    batcher.close()
    assert results == [i * i for i in range(32)]
    assert sorted(i for b in run.batches for i in b) == list(range(32))
    assert max(len(b) for b in run.batches) <= 8


def test_items_queued_while_a_batch_runs_share_the_next_batch() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = MicroBatcher(run, max_batch=4, max_wait=0.0)
    first = batcher.submit(0)  # the worker takes it and blocks on the gate
    assert run.entered.wait(HANG)
    rest = [batcher.submit(i) for i in range(1, 7)]
    gate.set()
    assert [f.result(HANG) for f in [first, *rest]] == [i * i for i in range(7)]
    batcher.close()
    assert run.batches == [[0], [1, 2, 3, 4], [5, 6]]


def test_a_lone_item_runs_without_waiting_out_max_wait() -> None:
    batcher = MicroBatcher(Recorder(), max_batch=8, max_wait=HANG)
    start = time.monotonic()
    assert batcher.submit(3).result(HANG) == 9
    assert time.monotonic() - start < HANG / 2  # nothing was announced, so nothing was awaited
    batcher.close()


def test_a_forming_batch_waits_for_a_reserved_item() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait=HANG)
    with batcher.reserve() as slot:
        first = batcher.submit(1)
        time.sleep(0.05)
        assert not first.done()  # held back: an item is on its way
        second = slot.submit(2)
    assert (first.result(HANG), second.result(HANG)) == (1, 4)
    batcher.close()
    assert run.batches == [[1, 2]]


def test_a_released_reservation_lets_the_batch_go() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait=HANG)
    with pytest.raises(ValueError), batcher.reserve():
        future = batcher.submit(5)
        raise ValueError("the picture did not decode")  # leaves without submitting
    assert future.result(HANG) == 25
    batcher.close()
    assert run.batches == [[5]]


def test_the_wait_for_reserved_items_is_bounded_by_max_wait() -> None:
    batcher = MicroBatcher(Recorder(), max_batch=8, max_wait=0.05)
    slot = batcher.reserve()  # announced, never comes
    assert batcher.submit(2).result(HANG) == 4
    slot.release()
    batcher.close()


def test_a_failing_batch_fails_every_caller_in_it_and_the_batcher_goes_on() -> None:
    calls = []

    def run(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model fault")
        return items

    batcher = MicroBatcher(run, max_batch=8, max_wait=0.0)
    with pytest.raises(RuntimeError, match="model fault"):
        batcher.submit(1).result(HANG)
    assert batcher.submit(2).result(HANG) == 2
    batcher.close()


def test_a_wrong_number_of_results_is_an_error_not_a_misdelivery() -> None:
    batcher = MicroBatcher(lambda items: items[:-1], max_batch=8, max_wait=0.0)
    with pytest.raises(RuntimeError, match="results for"):
        batcher.submit(1).result(HANG)
    batcher.close()


def test_close_runs_what_is_queued_then_refuses_new_items() -> None:
    gate = threading.Event()
    batcher = MicroBatcher(Recorder(gate), max_batch=2, max_wait=0.0)
    futures = [batcher.submit(i) for i in range(5)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(HANG)
    assert [f.result(0) for f in futures] == [i * i for i in range(5)]
    with pytest.raises(BatcherClosedError):
        batcher.submit(9)
    with pytest.raises(BatcherClosedError):
        batcher.reserve()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(Recorder(), max_wait=-1)


def test_callers_served_together_are_waited_for_together() -> None:
    # 0 runs alone while 1 and 2 queue; when 0 comes back (as 3), it joins 1 and 2 rather
    # than 1 and 2 running without it and 3 waiting for their pass.
    gate = threading.Event()
    run = Recorder(gate)
    batcher = MicroBatcher(run, max_batch=8, max_wait=1.0)
    first = batcher.submit(0)
    assert run.entered.wait(HANG)
    queued = [batcher.submit(1), batcher.submit(2)]
    gate.set()
    assert first.result(HANG) == 0
    again = batcher.submit(3)
    assert [f.result(HANG) for f in [*queued, again]] == [1, 4, 9]
    batcher.close()
    assert run.batches == [[0], [1, 2, 3]]
