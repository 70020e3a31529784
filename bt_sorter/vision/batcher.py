"""Micro-batching: items submitted from many threads run through one function in batches.

    batcher = MicroBatcher(run_batch, max_batch=16, max_wait=0.002, name="classify")
    future = batcher.submit(item)          # from any thread; never blocks
    result = future.result(timeout=5)      # the result of ``run_batch`` for this very item

    with batcher.reserve() as slot:        # "an item is on its way" (e.g. still decoding)
        item = slow_preparation(raw)       # if this raises, the reservation is dropped
        future = slot.submit(item)

    batcher.close()                        # runs what is queued, then stops the worker

``run_batch(items)`` gets a list of items in submission order and must return one result per
item, in the same order; result ``i`` goes to the future of item ``i``, so answers cannot
cross between callers. If it raises, or returns the wrong number of results, every future of
that batch gets the exception.

When is a batch run? One worker thread takes the oldest queued item and everything queued
behind it, up to ``max_batch``. Before it runs a batch that is not full it waits for company
it has reason to expect: items *reserved* (announced with :meth:`reserve`, not yet
submitted), and as many items as were in play when the previous batch ended (its own plus
those queued behind it: callers served together come back together, and without this,
concurrent callers split into groups that take turns at the model, each waiting for the
other's pass).
That wait ends at ``max_wait`` seconds after the oldest item arrived or the previous batch
ended, whichever is later. So a lone caller never waits, callers that arrive together share
one call, and no item waits more than ``max_wait`` for company. ``on_batch(size, seconds)``
is called after each batch (for metrics).

Used by the classification service (``bt_sorter.vision.serve``): a request reserves a slot
before decoding its picture, so requests that arrive together decode in parallel and then
share one forward pass. Any back end that gains from batched calls can use it the same way.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, TypeVar

from bt_sorter.log import get_logger

T = TypeVar("T")
R = TypeVar("R")

log = get_logger(__name__)


class BatcherClosedError(RuntimeError):
    """The batcher was closed; the item was not (and will not be) run."""


@dataclass(slots=True)
class _Entry(Generic[T, R]):
    item: T
    future: Future[R]
    arrived: float = field(default_factory=time.monotonic)


class Reservation(Generic[T, R]):
    """A slot in a coming batch: :meth:`submit` once; leaving the ``with`` block frees it."""

    def __init__(self, batcher: MicroBatcher[T, R]) -> None:
        self._batcher = batcher
        self._open = True

    def submit(self, item: T) -> Future[R]:
        if not self._open:
            raise RuntimeError("this reservation was already used or released")
        self._open = False
        return self._batcher._put(item, reserved=True)

    def release(self) -> None:
        """Give the slot back without an item (idempotent)."""
        if self._open:
            self._open = False
            self._batcher._unreserve()

    def __enter__(self) -> Reservation[T, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class MicroBatcher(Generic[T, R]):
    """Runs ``run_batch`` over batches of submitted items on one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_batch: int = 16,
        max_wait: float = 0.002,
        name: str = "batcher",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: collections.deque[_Entry[T, R]] = collections.deque()
        self._reserved = 0
        self._last_size = 0  # items in play when the previous batch ended
        self._last_end = 0.0  # when it ended (time.monotonic)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future gets its result, or the batch's exception."""
        return self._put(item, reserved=False)

    def reserve(self) -> Reservation[T, R]:
        """Announce an item that is on its way, so a forming batch waits for it."""
        with self._cond:
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            self._reserved += 1
        return Reservation(self)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop taking items, run those already queued, and join the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _put(self, item: T, reserved: bool) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if reserved:
                self._reserved -= 1
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            self._queue.append(_Entry(item, future))
            self._cond.notify_all()
        return future

    def _unreserve(self) -> None:
        with self._cond:
            self._reserved -= 1
            self._cond.notify_all()

    def _next_batch(self) -> list[_Entry[T, R]] | None:
        """The next batch as the module doc says; None once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            expected = max(1, self._last_size)
            deadline = max(self._queue[0].arrived, self._last_end) + self.max_wait
            while (
                len(self._queue) < self.max_batch
                and (self._reserved > 0 or len(self._queue) < expected)
                and not self._closed
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self, batch: list[_Entry[T, R]]) -> None:
        live = [e for e in batch if e.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        try:
            results = list(self.run_batch([e.item for e in live]))
            if len(results) != len(live):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(live)} items")
        except Exception as exc:
            log.warning("batch_failed", size=len(live), error=repr(exc))
            for entry in live:
                entry.future.set_exception(exc)
        else:
            for entry, result in zip(live, results, strict=True):
                entry.future.set_result(result)
        if self.on_batch is not None:
            self.on_batch(len(live), time.perf_counter() - start)

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)
            with self._cond:
                self._last_size = len(batch) + len(self._queue)
                self._last_end = time.monotonic()
