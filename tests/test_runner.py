"""The fixed-rate runner with a real mosquitto: rate, commands out, offline hold, safe stop."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import py_trees
import pytest
from peer import Peer, wait_until

from bt_sorter import protocol
from bt_sorter.adapter import MqttAdapter
from bt_sorter.behaviours.base import Context, Leaf
from bt_sorter.blackboard import Blackboard, Outcome
from bt_sorter.broker import BrokerProcess, start_broker
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig, Config, Timings
from bt_sorter.record import Record
from bt_sorter.runner import EXIT_ABORTED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Runner

Status = py_trees.common.Status
STOP_WAIT = 0.2  # line seconds between all-pull and belt-stop in these tests


# -- tiny leaves ------------------------------------------------------------------------


class Count(Leaf):
    """RUNNING forever; counts its ticks and keeps every edge it saw."""

    def __init__(self, name: str, ctx: Context) -> None:
        super().__init__(name, ctx)
        self.ticks = 0
        self.edges: list[tuple[int, bool]] = []

    def update(self) -> Status:
        self.ticks += 1
        self.edges += [(e.gate, e.blocked) for e in self.bb.edges]
        return Status.RUNNING


class StartBeltAndPush(Leaf):
    """On its first tick requests belt run and rod 2 out; RUNNING after that."""

    def update(self) -> Status:
        if self.bb.tick == 1:
            self.bb.command(protocol.BELT_RUN)
            self.bb.command(protocol.push(2))
        return Status.RUNNING


class Explode(Leaf):
    """Raises on its third tick (a programming error inside a leaf)."""

    def update(self) -> Status:
        if self.bb.tick >= 3:
            raise RuntimeError("leaf broke")
        return Status.RUNNING


class Alarm(Leaf):
    """The abort branch: on its third tick requests all rods back and raises an alarm."""

    def update(self) -> Status:
        if self.bb.tick >= 3:
            self.bb.alarms.append("item 1 stuck at gate 2")
            return Status.FAILURE
        self.bb.command(protocol.BELT_RUN)
        return Status.RUNNING


class FeedAndResolve(Leaf):
    """Feeds an item on odd ticks and resolves the oldest on even ones."""

    def update(self) -> Status:
        if self.bb.tick % 2:
            self.bb.items.feed(self.bb.now)
        else:
            item = self.bb.items.oldest()
            assert item is not None
            self.bb.items.resolve(item, Outcome.SORTED, "pushed", self.bb.now)
        return Status.RUNNING


# -- the world -----------------------------------------------------------------------


class Line(Peer):
    """The line's place on the broker: records the command and the status topics."""

    def __init__(self, broker: BrokerProcess, status_topic: str) -> None:
        super().__init__(broker, protocol.COMMAND_TOPIC, status_topic)
        self.status_topic = status_topic

    def commands(self) -> list[protocol.Command | protocol.BadInput]:
        return [protocol.parse_command(p) for p in self.payloads(protocol.COMMAND_TOPIC)]

    def statuses(self) -> list[dict[str, object]]:
        events = [json.loads(p) for p in self.payloads(self.status_topic)]
        return [e for e in events if "event" in e]  # not the retained line status

    def send(self, payload: bytes) -> None:
        self.publish(payload)


class World:
    """A context, an adapter connected to ``broker``, and a line peer watching it."""

    def __init__(self, broker: BrokerProcess, record: Path) -> None:
        self.config = Config().replace(
            broker=BrokerConfig(
                host=broker.host,
                port=broker.port,
                client_id=f"bt-test-{uuid.uuid4()}",
                reconnect_min_delay=0.1,
                reconnect_max_delay=0.4,
            ),
            timings=Timings(tick_hz=50.0, stop_wait=STOP_WAIT),
        )
        clock = LineClock()
        self.ctx = Context(Blackboard(), self.config, clock, Record(record))
        self.adapter = MqttAdapter(self.config.broker, clock)
        self.line = Line(broker, self.config.broker.topics.resolve().status)
        self.adapter.start()
        assert self.adapter.wait_connected(5)

    def runner(self, root: py_trees.behaviour.Behaviour, **kwargs: object) -> Runner:
        return Runner(root, self.ctx, self.adapter, viz="none", **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.adapter.stop()
        self.line.close()


@pytest.fixture
def world(broker: BrokerProcess, tmp_path: Path) -> Iterator[World]:
    w = World(broker, tmp_path / "record.jsonl")
    yield w
    w.close()


def run_in_thread(runner: Runner) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(runner.run()), daemon=True)
    thread.start()
    return thread, code


def assert_safe_stop_observed(line: Line) -> None:
    """The last two commands on the broker are all rods back, then belt stop."""
    assert wait_until(lambda: line.commands()[-1:] == [protocol.BELT_STOP])
    assert line.commands()[-2:] == [protocol.ALL_PULL, protocol.BELT_STOP]


# -- tests -----------------------------------------------------------------------------


def test_runner_ticks_at_the_configured_rate_and_publishes_what_a_leaf_requests(
    world: World,
) -> None:
    runner = world.runner(StartBeltAndPush("start", world.ctx))
    threading.Timer(1.0, runner.request_stop, args=("test",)).start()
    assert runner.run() == EXIT_OK
    assert 40 <= runner.ticks <= 55, runner.stats()
    assert_safe_stop_observed(world.line)
    assert world.line.commands() == [
        protocol.BELT_RUN,
        protocol.push(2),
        protocol.ALL_PULL,
        protocol.BELT_STOP,
    ]
    stats = runner.stats()
    assert stats["ticks"] == runner.ticks and 40 <= stats["tick_hz_achieved"] <= 60


def test_safe_stop_after_request_stop_pulls_rods_then_stops_belt_and_exits_0(
    world: World,
) -> None:
    runner = world.runner(Count("count", world.ctx))
    thread, code = run_in_thread(runner)
    assert wait_until(lambda: runner.tree_ticks >= 5)
    pulled_at = time.monotonic()
    runner.request_stop("operator")
    thread.join(5)
    assert code == [EXIT_OK] and runner.stop_reason == "operator"
    assert_safe_stop_observed(world.line)
    assert time.monotonic() - pulled_at >= STOP_WAIT  # the rods had time to come back
    assert world.ctx.bb.rods_out == dict.fromkeys((1, 2, 3, 4), False)
    assert world.ctx.bb.belt_running is False


def test_exception_inside_a_leaf_still_stops_the_line_safely_and_exits_1(world: World) -> None:
    runner = world.runner(Explode("explode", world.ctx))
    assert runner.run() == EXIT_ERROR
    assert "leaf broke" in (runner.stop_reason or "")
    assert_safe_stop_observed(world.line)
    assert world.line.commands() == [protocol.ALL_PULL, protocol.BELT_STOP]


def test_alarm_from_the_abort_branch_is_published_and_exits_3(world: World) -> None:
    runner = world.runner(Alarm("abort", world.ctx))
    assert runner.run() == EXIT_ABORTED
    assert_safe_stop_observed(world.line)
    assert world.line.commands() == [
        protocol.BELT_RUN,
        protocol.BELT_RUN,
        protocol.ALL_PULL,
        protocol.BELT_STOP,
    ]
    assert wait_until(lambda: len(world.line.statuses()) >= 2)
    alarm, stopped = world.line.statuses()
    assert alarm["event"] == "alarm" and alarm["reason"] == "item 1 stuck at gate 2"
    assert stopped["event"] == "line_stopped" and stopped["exit_code"] == EXIT_ABORTED


def test_sigint_during_the_run_stops_safely_with_exit_code_130(world: World) -> None:
    runner = world.runner(Count("count", world.ctx))
    threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT)).start()
    assert runner.run() == EXIT_INTERRUPTED  # runs in the main thread: signals reach it
    assert runner.stop_reason == "sigint"
    assert_safe_stop_observed(world.line)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_root_success_and_max_items_end_the_run_with_exit_0(world: World) -> None:
    done = py_trees.behaviours.TickCounter(
        name="three ticks", duration=3, completion_status=Status.SUCCESS
    )
    runner = world.runner(done)
    assert runner.run() == EXIT_OK and runner.stop_reason == "tree_succeeded"

    runner = world.runner(FeedAndResolve("feed", world.ctx), max_items=3)
    assert runner.run() == EXIT_OK and runner.stop_reason == "max_items_resolved"
    assert len(world.ctx.bb.items.done) == 3 and len(world.ctx.bb.items) == 0


def test_bad_payloads_on_bb_are_counted_and_the_run_goes_on(world: World) -> None:
    leaf = Count("count", world.ctx)
    runner = world.runner(leaf)
    thread, code = run_in_thread(runner)
    try:
        for payload in (b"not json", b'{"first_switch": 3}', b"\xff\xfe", b'{"image": "@@"}') * 5:
            world.line.send(payload)
        world.line.send(protocol.encode_gate(1, True))
        assert wait_until(lambda: leaf.edges == [(1, True)])
        assert thread.is_alive()
    finally:
        runner.request_stop("test")
        thread.join(5)
    assert code == [EXIT_OK]
    assert world.ctx.bb.bad_inputs == 20


def test_tree_holds_while_the_broker_is_down_and_continues_after_it_restarts(
    tmp_path: Path,
) -> None:
    first = start_broker(kind="mosquitto")
    world = World(first, tmp_path / "record.jsonl")
    leaf = Count("count", world.ctx)
    runner = world.runner(leaf)
    second: BrokerProcess | None = None
    thread, code = run_in_thread(runner)
    try:
        assert wait_until(lambda: leaf.ticks >= 3)
        world.line.close()
        first.stop()
        assert wait_until(lambda: not world.ctx.bb.connected)
        held_at, loop_ticks = leaf.ticks, runner.ticks
        time.sleep(0.3)
        assert leaf.ticks == held_at  # no tree tick (so no command) while offline
        assert runner.ticks >= loop_ticks + 10  # but the loop kept its rate
        second = start_broker(port=first.port, kind="mosquitto")
        assert wait_until(lambda: world.ctx.bb.connected, timeout=10)
        assert wait_until(lambda: leaf.ticks > held_at)
        world.line = Line(second, world.config.broker.topics.resolve().status)
        world.line.send(protocol.encode_gate(2, True))  # only arrives if re-subscribed
        assert wait_until(lambda: (2, True) in leaf.edges)
        runner.request_stop("test")
        thread.join(5)
        assert code == [EXIT_OK]
        assert_safe_stop_observed(world.line)
    finally:
        runner.request_stop("test")
        thread.join(5)
        world.close()
        if second is not None:
            second.stop()
        first.stop()


def test_view_draws_the_tree_and_the_operator_facts_on_a_terminal(world: World) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    root = py_trees.composites.Sequence("sort", memory=False, children=[Count("count", world.ctx)])
    world.ctx.bb.items.feed(0.0).label = "ripe"
    runner = Runner(root, world.ctx, world.adapter, viz="ascii", stream=screen)
    threading.Timer(0.3, runner.request_stop, args=("test",)).start()
    assert runner.run() == EXIT_OK
    text = screen.getvalue()
    assert text.startswith("\x1b[H\x1b[J")  # redrawn in place
    assert 2 <= runner.view.draws <= 10  # ~10 Hz for 0.3 s plus the final frame, not 50 Hz
    last = text.rsplit("\x1b[H\x1b[J", 1)[1]
    assert "sort" in last and "count" in last
    assert "#1 zone 0 ripe" in last and "fed 1" in last
