"""The fixed-rate runner: pre-tick, tick, publish, show; and the safe stop on every exit.

Ticks are scheduled by deadline (next = previous + period), so the tick's own cost
does not make the rate drift; a tick that ends more than one period late skips to the
next future deadline and counts an overrun. Each tick:

1. drain the adapter's queue into the blackboard (:meth:`Blackboard.ingest`), in order;
2. stamp line time and the tick number;
3. tick the tree once, only while connected (offline the tree holds: no tick, no
   commands; it continues on reconnect);
4. publish the commands the leaves requested;
5. update the live view (cheap when not due);
6. about once a wall second, publish the line's retained status (state, counts, alarm,
   throughput) on its status topic, for ``python -m bt_sorter.plant status``.

The loop stops on :meth:`Runner.request_stop` (also SIGINT/SIGTERM), when the root
succeeds, when the tree raises an alarm (a root that fails raises one for it), when
``max_items`` items are resolved, or when the stack is found empty. Whatever the exit,
the ``finally`` retracts all rods, waits ``timings.stop_wait`` line seconds, stops the
belt and closes the record.
"""

from __future__ import annotations

import itertools
import math
import signal
import statistics
import sys
import threading
import time
import traceback
from collections import deque
from types import FrameType
from typing import Any, Protocol, TextIO

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Event
from bt_sorter.log import get_logger
from bt_sorter.portable import stop_signals
from bt_sorter.trace import Trace
from bt_sorter.view import LiveView, Viz

EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected exception (logged with its traceback; still stopped safely)
EXIT_INVALID = 2  # a tree or config error, before anything moved (run.py)
EXIT_ABORTED = 3  # an alarm: the abort branch raised one, or the root failed (one is raised)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM

SWITCH_INTERVAL = 0.001  # s: the shortest GIL switch interval the runner sets
_PERIOD_SAMPLES = 100_000  # tick periods kept for the jitter figures (~33 min at 50 Hz)
STATUS_EVERY = 1.0  # wall s between two retained line statuses

log = get_logger("bt_sorter.runner")


class Observer(Protocol):
    """A view fed from the tick thread (the live web page): cheap unless due."""

    def update(self, force: bool = False) -> None: ...
    def close(self) -> None: ...


class Adapter(Protocol):
    """What the runner needs from the MQTT adapter."""

    def drain(self) -> list[Event]: ...
    def publish(self, command: protocol.Command) -> bool: ...
    def publish_status(self, event: str, **facts: Any) -> bool: ...
    def publish_line_status(self, payload: bytes) -> bool: ...
    def flush(self, timeout: float = 1.0) -> bool: ...


class _RateLimitedLog:
    """Logs each kind of bad input at most once per ``every`` seconds, with a count."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def bad_input(self, bad: protocol.BadInput, tick: int) -> None:
        kind = bad.reason.split(":", 1)[0][:60]
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        if len(self._last) > 1000:  # arbitrary payloads make many kinds; keep memory flat
            self._last.clear()
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        log.warning(
            "bad_input_ignored",
            reason=bad.reason,
            excerpt=bad.excerpt,
            tick=tick,
            similar_suppressed=suppressed,
        )


class Runner:
    """Ticks ``root`` at ``ctx.config.timings.tick_hz`` against the adapter's events.

    The tick period is a configured duration like any other, so ``--speed X`` divides it
    by X too: a time-lapsed line is ticked as finely, in line time, as a real one.
    """

    def __init__(
        self,
        root: py_trees.behaviour.Behaviour,
        ctx: Context,
        adapter: Adapter,
        *,
        viz: Viz = "ascii",
        stream: TextIO | None = None,
        max_items: int | None = None,
        handle_signals: bool = True,
        web: Observer | None = None,
    ) -> None:
        self.root = root
        self.ctx = ctx
        self.adapter = adapter
        self.view = LiveView(root, ctx.bb, viz, stream or sys.stdout)
        self.web = web
        self.trace = Trace(root, ctx)  # node transitions, edges, commands to --record
        self.max_items = max_items
        self.handle_signals = handle_signals
        self.period = ctx.clock.wall(1.0 / ctx.config.timings.tick_hz)  # wall seconds
        self.stop_reason: str | None = None
        self.exit_code: int | None = None
        self._stop_requested: str | None = None
        self._stop_code = EXIT_OK
        self._alarms_published = 0
        self._bad_log = _RateLimitedLog()
        # tick statistics (wall seconds)
        self.ticks = 0
        self.tree_ticks = 0
        self.overruns = 0
        self.skipped_deadlines = 0
        self.commands = 0
        self.longest_tick = 0.0
        self._overrun_logged_at = -1e9
        self._periods: deque[float] = deque(maxlen=_PERIOD_SAMPLES)
        self._lateness: deque[float] = deque(maxlen=_PERIOD_SAMPLES)  # tick start - deadline
        self._first_start: float | None = None
        self._last_start: float | None = None
        self._status_at = -1e9  # wall time of the last retained line status
        self._first_fed: float | None = None  # line time of the first feed

    # -- control ---------------------------------------------------------------------

    def request_stop(self, reason: str = "requested", code: int = EXIT_OK) -> None:
        """Ask the loop to stop after the current tick. Only sets a flag: thread and signal safe."""
        if self._stop_requested is None:
            self._stop_code = code
            self._stop_requested = reason

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name.lower(), EXIT_INTERRUPTED)

    # -- the loop --------------------------------------------------------------------

    def run(self) -> int:
        """Tick until a stop condition, stop the line safely, return the exit code."""
        previous: dict[int, Any] = {}
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in stop_signals():  # Windows: SIGBREAK (Ctrl-Break) too
                previous[sig] = signal.signal(sig, self._on_signal)
        code = EXIT_ERROR
        # A busy adapter thread (a flood on bb) holds the GIL for up to the switch interval
        # (5 ms) each time the tick thread wakes; 1 ms (a twentieth of a 50 Hz period)
        # keeps ticks on time without making every thread switch all the time.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, max(SWITCH_INTERVAL, self.period / 20)))
        log.info("runner_started", tick_hz=1.0 / self.period, max_items=self.max_items)
        try:
            code = self._loop()
        except KeyboardInterrupt:
            self.stop_reason = "keyboard_interrupt"
            code = EXIT_INTERRUPTED
        except Exception as exc:
            self.stop_reason = f"error: {type(exc).__name__}: {exc}"
            log.error(
                "runner_failed",
                error=repr(exc),
                tick=self.ctx.bb.tick,
                traceback=traceback.format_exc(),
            )
            code = EXIT_ERROR
        finally:
            self.exit_code = code
            try:
                self._safe_stop()
            finally:
                sys.setswitchinterval(switch_interval)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return code

    def _loop(self) -> int:
        bb = self.ctx.bb
        clock = self.ctx.clock
        next_deadline = clock.monotonic()
        while True:
            now = clock.monotonic()
            if now < next_deadline:
                clock.sleep(next_deadline - now)
            if self._stop_requested is not None:
                self.stop_reason = self._stop_requested
                log.info("stop_requested", reason=self.stop_reason, tick=bb.tick)
                return self._stop_code
            start = clock.monotonic()
            self._lateness.append(start - next_deadline)
            self._tick()
            end = clock.monotonic()
            self._account(start, end)
            # Issue 15: how late this tick's commands went out after it was due, in line
            # time: the line model's margin for what happens between an event and its effect.
            self.ctx.bb.line.latency.note_delay(self.ctx.clock.speed * (end - next_deadline))
            code = self._check_finished()
            if code is not None:
                return code
            next_deadline += self.period
            lag = end - next_deadline
            if lag > self.period:
                skipped = int(lag // self.period)
                next_deadline += skipped * self.period
                self.overruns += 1
                self.skipped_deadlines += skipped
                if end - self._overrun_logged_at >= 5.0:  # no flood when overloaded
                    self._overrun_logged_at = end
                    log.warning(
                        "tick_overran",
                        tick=bb.tick,
                        took_ms=round((end - start) * 1000, 2),
                        skipped=skipped,
                        overruns=self.overruns,
                    )

    def _tick(self) -> None:
        bb = self.ctx.bb
        events = self.adapter.drain()
        for bad in bb.ingest(events):
            self._bad_log.bad_input(bad, bb.tick)
        bb.now = self.ctx.clock.now()
        bb.tick += 1
        if bb.connected:
            if self.trace.enabled:
                for node in self.root.tick():  # tick_once, showing each ticked node to the trace
                    self.trace.visit(node)
            else:
                self.root.tick_once()
            self.tree_ticks += 1
        commands = bb.take_outbox()
        for command in commands:
            self.commands += 1
            self.adapter.publish(command)
        self.trace.after_tick(commands)
        self.view.update()
        if bb.connected and self.ctx.clock.monotonic() - self._status_at >= STATUS_EVERY:
            self._publish_line_status("running")
        if self.web is not None:
            self.web.update()

    def _publish_line_status(self, state: str) -> None:
        """The line's retained status: what an operator of the plant sees for this line."""
        self._status_at = self.ctx.clock.monotonic()
        bb = self.ctx.bb
        done = bb.items.done  # counted as items resolve (issue 22): no recount per status
        if self._first_fed is None:
            feeds = [item.fed_at for item in bb.items]
            if done.first_fed_at is not None:
                feeds.append(done.first_fed_at)
            self._first_fed = min(feeds, default=None)
        span = bb.now - self._first_fed if self._first_fed is not None else 0.0
        rate = round(60.0 * len(done) / span, 2) if span > 0 and done else None
        counts = {"fed": bb.items.fed, "resolved": len(done), "in_flight": len(bb.items)}
        counts.update({k: done.outcomes.get(k, 0) for k in ("sorted", "rejected", "lost")})
        # What the tick thread costs lately (issue 22: bench/soak.py reads them here): the
        # tick period's p99 over about the last status interval, and a page snapshot's.
        recent = sorted(itertools.islice(reversed(self._periods), int(STATUS_EVERY / self.period)))
        snapshots = sorted(itertools.islice(reversed(getattr(self.web, "costs", ())), 20))
        payload = protocol.encode_line_status(
            state,
            line=self.ctx.config.broker.topics.line_name(),
            counts=counts,
            alarm=bb.alarms[-1] if bb.alarms else None,
            items_per_minute=rate,
            line_time=round(bb.now, 2),
            stop_reason=self.stop_reason,
            wall_time=round(time.time(), 3),
            tick_period_p99_ms=round(_percentile(recent, 99) * 1000, 3) if recent else None,
            snapshot_p99_ms=round(_percentile(snapshots, 99) * 1000, 3) if snapshots else None,
        )
        self.adapter.publish_line_status(payload)

    def _account(self, start: float, end: float) -> None:
        self.ticks += 1
        if self._last_start is not None:
            self._periods.append(start - self._last_start)
        else:
            self._first_start = start
        self._last_start = start
        self.longest_tick = max(self.longest_tick, end - start)

    def _check_finished(self) -> int | None:
        bb = self.ctx.bb
        status = self.root.status
        if status is py_trees.common.Status.FAILURE and not bb.alarms:
            # a tree with no abort branch of its own: its failure is an alarm all the same
            log.error("tree_failed", tick=bb.tick, root=self.root.name)
            bb.alarms.append(f"tree failed: {self.root.name}")
        if len(bb.alarms) > self._alarms_published:
            for alarm in bb.alarms[self._alarms_published :]:
                self.adapter.publish_status("alarm", reason=alarm, tick=bb.tick)
            self._alarms_published = len(bb.alarms)
            self.stop_reason = f"alarm: {bb.alarms[-1]}"
            log.error("line_aborted", alarms=list(bb.alarms), tick=bb.tick)
            return EXIT_ABORTED
        if status is py_trees.common.Status.SUCCESS:
            if not len(bb.items):
                return self._finish_clear("tree_succeeded")
            self.stop_reason = "tree_succeeded"  # the tree's call: items left in flight
            return EXIT_OK
        done = len(bb.items.done)
        if bb.stack_empty and not len(bb.items):  # and the last items have reached their bins
            return self._finish_clear("stack_empty")
        if self.max_items is not None and done >= self.max_items and not len(bb.items):
            return self._finish_clear("max_items_resolved")
        return None

    def _finish_clear(self, reason: str) -> int:
        """The run's work is done; it ends well only on a clear line. A gate that still
        reads blocked has something in it that no item in flight explains: the last item
        stuck there (no item behind it is left to miss its edges there, which is how a
        stuck item is found otherwise), or the gate's clear edge lost. Either way an
        operator must look (issue 20, seeds 100735, 102374 and 102977: the run ended
        "done" with an item stuck at the last gate)."""
        bb = self.ctx.bb
        blocked = sorted(gate for gate, on in bb.gates.items() if on)
        if not blocked:
            self.stop_reason = reason
            return EXIT_OK
        alarm = (f"gate {blocked[0]} still reads blocked with every item resolved: "
                 "something is on the belt (an item stuck there, or the gate's clear edge "
                 "lost)")  # fmt: skip
        log.error("line_not_clear", gates=blocked, tick=bb.tick, finished=reason)
        bb.alarms.append(alarm)
        self.adapter.publish_status("alarm", reason=alarm, tick=bb.tick)
        self._alarms_published = len(bb.alarms)
        self.stop_reason = f"alarm: {alarm}"
        return EXIT_ABORTED

    # -- the safe stop -----------------------------------------------------------------

    def _safe_stop(self) -> None:
        """All rods back, wait ``stop_wait``, belt stop, flush; never publishes anything else."""
        bb, clock = self.ctx.bb, self.ctx.clock
        try:
            sent_pull = self.adapter.publish(protocol.ALL_PULL)
            bb.command(protocol.ALL_PULL)
            self.trace.stopping(self.stop_reason)
            try:
                self.root.stop(py_trees.common.Status.INVALID)  # leaves cancel their work
            except Exception as exc:  # a leaf's terminate() must not keep the line running
                log.error("tree_stop_failed", error=repr(exc), traceback=traceback.format_exc())
            discarded = bb.take_outbox()[1:]
            self.trace.commands([protocol.ALL_PULL])
            if discarded:
                log.warning("commands_discarded", commands=[str(c) for c in discarded])
            clock.sleep(clock.wall(self.ctx.config.timings.stop_wait))
            sent_stop = self.adapter.publish(protocol.BELT_STOP)
            bb.now = clock.now()
            bb.command(protocol.BELT_STOP)
            bb.take_outbox()
            self.trace.commands([protocol.BELT_STOP])
            self.adapter.publish_status(
                "line_stopped", reason=self.stop_reason, exit_code=self.exit_code, tick=bb.tick
            )
            self._publish_line_status("aborted" if self.exit_code == EXIT_ABORTED else "stopped")
            flushed = self.adapter.flush(1.0)
            log.info(
                "line_stopped",
                reason=self.stop_reason,
                exit_code=self.exit_code,
                rods_pulled=sent_pull,
                belt_stopped=sent_stop,
                flushed=flushed,
                **self.stats(),
            )
        finally:
            try:
                self.view.close()
                if self.web is not None:
                    self.web.close()
            finally:
                self.ctx.record.close()

    # -- figures -------------------------------------------------------------------------

    def stats(self) -> dict[str, float | int]:
        """Tick count, overruns, achieved rate, period jitter and deadline lateness (ms).

        ``jitter_*`` is |tick-to-tick period - set period|; ``late_*`` is how long after
        its deadline a tick started (one late tick shows twice in the jitter, once here).
        """
        periods = list(self._periods)
        out: dict[str, float | int] = {
            "ticks": self.ticks,
            "tree_ticks": self.tree_ticks,
            "commands": self.commands,
            "overruns": self.overruns,
            "skipped_deadlines": self.skipped_deadlines,
            "tick_hz_set": round(1.0 / self.period, 3),
            "longest_tick_ms": round(self.longest_tick * 1000, 3),
        }
        if self._first_start is not None and self._last_start is not None and self.ticks > 1:
            span = self._last_start - self._first_start
            out["tick_hz_achieved"] = round((self.ticks - 1) / span, 3) if span > 0 else 0.0
        if len(periods) >= 2:
            jitter = sorted(abs(p - self.period) * 1000 for p in periods)
            out["jitter_p50_ms"] = round(_percentile(jitter, 50), 3)
            out["jitter_p99_ms"] = round(_percentile(jitter, 99), 3)
            out["period_mean_ms"] = round(statistics.fmean(periods) * 1000, 3)
        lateness = sorted(max(0.0, x) * 1000 for x in self._lateness)
        if lateness:
            out["late_p50_ms"] = round(_percentile(lateness, 50), 3)
            out["late_p99_ms"] = round(_percentile(lateness, 99), 3)
        return out


def _percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(q / 100 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, rank))]
