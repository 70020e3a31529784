"""Leaves on a hand-driven blackboard: tracking, rods, vision, safety.

Time is set by the test (``bb.now``); the belt runs from t = 0. The line model has
measured the built-in line (0.1 m/s, items landing 0.5 s after their feed, gates at 0.5,
0.8 and 1.1 m, items 0.06 m long): an item fed at t = 0 blocks gate 1 at t = 4.9 and
clears it at t = 5.5.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import py_trees
import pytest
from contexts import fed, measured_line, running_context, step, tree_from_text
from peer import wait_until

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import ConnectionChanged, Outcome
from bt_sorter.sim.render import render_picture
from bt_sorter.vision.classifier import ClassifierWorker
from bt_sorter.vision.http_backend import HttpClassifier

Status = py_trees.common.Status


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return running_context(tmp_path, measured_line())  # the built-in line's times


tree = tree_from_text


TRACK_AND_RODS = """
root:
  parallel: line
  policy: success_on_all
  children:
    - TrackItems: track
    - repeat: rod 2
      num_success: -1
      child:
        sequence: rod 2 cycle
        children:
          - PushRod: push 2
            rod: 2
          - RetractRod: retract 2
            rod: 2
    - repeat: rod 3
      num_success: -1
      child:
        sequence: rod 3 cycle
        children:
          - PushRod: push 3
            rod: 3
          - RetractRod: retract 3
            rod: 3
"""


def test_rod_fires_on_the_clear_edge_of_the_gate_upstream(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    item = fed(ctx, 0.0, rod=2)
    assert step(ctx, root, 4.9, (1, True)) == []
    assert step(ctx, root, 5.5, (1, False)) == [protocol.push(2)]
    assert item.outcome is Outcome.SORTED
    assert step(ctx, root, 6.6) == [protocol.pull(2)]


def test_each_rod_fires_on_its_own_items_edge(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    first = fed(ctx, 0.0, rod=3)  # ahead: clears gate 1 at 5.5, gate 2 at 8.5
    second = fed(ctx, 2.5, rod=2)  # behind by 0.25 m: clears gate 1 at 8.0
    step(ctx, root, 4.9, (1, True))
    assert step(ctx, root, 5.5, (1, False)) == []  # gate 1 cleared by the rod-3 item
    step(ctx, root, 7.4, (1, True))
    step(ctx, root, 7.9, (2, True))
    assert step(ctx, root, 8.0, (1, False)) == [protocol.push(2)]
    assert second.outcome is Outcome.SORTED and first.outcome is None
    assert step(ctx, root, 8.5, (2, False)) == [protocol.push(3)]
    assert first.outcome is Outcome.SORTED


def test_edge_that_fits_no_item_is_ignored(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    item = fed(ctx, 0.0, rod=2)
    fed(ctx, 2.5, rod=3)  # two items in flight: the measured windows decide
    assert step(ctx, root, 3.0, (1, True), (1, False)) == []  # item still 0.2 m short of gate 1
    assert ctx.bb.unmatched_edges == 2
    assert item.cleared == 0
    step(ctx, root, 4.9, (1, True))
    assert step(ctx, root, 5.5, (1, False)) == [protocol.push(2)]


def test_flicker_in_the_middle_of_an_item_pushes_it_once_and_teaches_nothing(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    item = fed(ctx, 0.0, rod=2)
    behind = fed(ctx, 2.5, rod=2)
    step(ctx, root, 4.9, (1, True))
    # Half-way through the gate: the push now still meets it (the window is downstream).
    assert step(ctx, root, 5.2, (1, False), (1, True)) == [protocol.push(2)]
    assert step(ctx, root, 5.5, (1, False)) == []
    assert item.outcome is Outcome.SORTED and not item.clean
    assert behind.entered == 0 and ctx.bb.unmatched_edges == 2
    assert ctx.bb.line.estimates["gate1.passage"].total == 3  # the fixture's three only


def test_item_whose_clear_edge_is_lost_is_not_pushed_and_rides_to_bin_1(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    item = fed(ctx, 0.0, rod=2)
    passes = {7.9: (2, True), 8.5: (2, False), 10.9: (3, True), 11.5: (3, False)}
    sent = step(ctx, root, 4.9, (1, True))  # the clear edge of gate 1 never comes
    for tick in range(1, 150):
        t = round(4.9 + tick * 0.1, 1)
        sent += step(ctx, root, t, *[passes[t]] if t in passes else [])
    assert sent == []
    assert item.uncertain
    assert item.outcome is Outcome.REJECTED
    assert "missing" in item.outcome_reason
    assert ctx.bb.unmatched_edges == 0


def test_duplicate_clear_edge_does_not_push_the_next_item(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    fed(ctx, 0.0, rod=2)
    behind = fed(ctx, 2.5, rod=2)
    step(ctx, root, 4.9, (1, True))
    assert step(ctx, root, 5.5, (1, False), (1, False)) == [protocol.push(2)]
    assert behind.outcome is None and behind.cleared == 0
    assert ctx.bb.repeated_edges == 1 and ctx.bb.unmatched_edges == 0  # the same message again


def test_a_repeated_clear_edge_is_not_the_next_items_at_the_gate_downstream(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    ahead = fed(ctx, 0.0, rod=None)  # clears gate 2 at 8.5
    behind = fed(ctx, 3.1, rod=3)  # cleared gate 1 at 8.6; due at gate 2 at 11.6
    for t, edge in [(4.9, (1, True)), (5.5, (1, False)), (7.9, (2, True)), (8.0, (1, True))]:
        step(ctx, root, t, edge)
    assert step(ctx, root, 8.6, (1, False)) == []
    assert step(ctx, root, 8.62, (2, False), (2, False)) == []  # ahead's clear edge, twice
    assert ahead.cleared == 2 and behind.cleared == 1 and ctx.bb.repeated_edges == 1
    step(ctx, root, 11.0, (2, True))
    assert step(ctx, root, 11.6, (2, False)) == [protocol.push(3)]
    assert behind.outcome is Outcome.SORTED


UNTIL_EMPTY = (
    "root:\n  selector: until empty\n  children:\n"
    "    - StackEmpty: empty\n      empty_feeds: 2\n    - TrackItems: track\n"
)


def test_feeds_that_show_nothing_are_forgotten_and_end_the_stack(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, UNTIL_EMPTY)
    ctx.bb.items.feed(0.0).stretched = True  # fed with a lengthened feeder stroke
    ctx.bb.items.feed(2.5).stretched = True
    step(ctx, root, 1.0)
    assert root.status == Status.RUNNING
    step(ctx, root, 20.0)  # both estimates are far past gate 1: nothing was there
    assert len(ctx.bb.items) == 0 and len(ctx.bb.items.done) == 0
    step(ctx, root, 20.1)
    assert ctx.bb.stack_empty and root.status == Status.SUCCESS


def test_feeds_with_the_configured_stroke_that_show_nothing_do_not_end_the_stack(
    ctx: Context, tmp_path: Path
) -> None:
    # Two feeds out before the first is known empty (a pipelined tree): both may be the
    # feeder's misses; only feeds made with the lengthened stroke judge the stack.
    root = tree(ctx, tmp_path, UNTIL_EMPTY)
    ctx.bb.items.feed(0.0)
    ctx.bb.items.feed(2.5)
    step(ctx, root, 20.0)
    step(ctx, root, 20.1)
    assert ctx.bb.empty_feeds_in_a_row == 2 and not ctx.bb.stack_empty
    assert root.status == Status.RUNNING


HEALTH = """
root:
  selector: line
  children:
    - parallel: healthy
      policy: success_on_one
      children:
        - LineHealthy: moving
        - TrackItems: track
    - sequence: abort
      children:
        - RetractAllRods: all rods back
        - StopBelt: stop belt
        - RaiseAlarm: alarm
"""


Edges = dict[float, tuple[int, bool]]


def run_until(
    ctx: Context, root: py_trees.behaviour.Behaviour, end: float, edges: Edges, start: float = 0.0
) -> list[protocol.Command]:
    """Tick every 0.1 s from ``start`` to ``end`` with these edges at their times; commands."""
    sent: list[protocol.Command] = []
    for tick in range(round(start * 10), round(end * 10) + 1):
        t = tick / 10
        sent += step(ctx, root, t, *[edges[t]] if t in edges else [])
    return sent


def test_item_stuck_in_a_gate_runs_the_abort_branch(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    fed(ctx, 0.0, rod=2)  # reaches gate 1 at 4.9 and sticks there
    fed(ctx, 2.5, rod=3)  # held back behind it: no edge at gate 1 ever
    sent = run_until(ctx, root, 14.0, {4.9: (1, True)})  # issue 15: once the follower is due
    assert sent == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert ctx.bb.alarms and "gate 1" in ctx.bb.alarms[0] and "stuck" in ctx.bb.alarms[0]


def test_an_item_held_behind_a_stuck_one_does_not_excuse_it(ctx: Context, tmp_path: Path) -> None:
    # Issue 20, seed 1201: the item held behind a stuck one was taken for one bunched with
    # it (the gate's block "may be the next item's"), and that one for a feed behind it that
    # put nothing on the belt; both rode on "past the belt end", and the run ended, exit 0.
    root = tree(ctx, tmp_path, HEALTH)
    fed(ctx, 0.0, rod=None)  # sticks in gate 2 (blocked at 7.9)
    fed(ctx, 2.5, rod=None)  # apart from it at gate 1 (7.4 to 8.0), then held behind it
    ctx.bb.items.feed(5.0)  # a feed that put nothing on the belt
    edges = {4.9: (1, True), 5.5: (1, False), 7.4: (1, True), 7.9: (2, True), 8.0: (1, False)}
    sent = run_until(ctx, root, 14.0, edges)  # its gate 3 edge overdue at 12.9
    assert sent == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert ctx.bb.alarms and "gate 2" in ctx.bb.alarms[0] and "item 1" in ctx.bb.alarms[0]


@pytest.mark.parametrize("stuck", [True, False])
def test_no_rod_pushes_while_an_item_may_be_held_in_its_window(
    ctx: Context, tmp_path: Path, stuck: bool
) -> None:
    # Issue 20, seed 1201: gate 2 stayed blocked after the first item's clear edge there
    # went missing; the item behind it, held in rod 2's window, was swept into bin 2 with
    # the rod-2 item that cleared gate 1 next.
    root = tree(ctx, tmp_path, TRACK_AND_RODS)
    fed(ctx, 0.0, rod=None)  # in gate 2 from 7.9; its clear edge at 8.5 never comes if stuck
    fed(ctx, 2.5, rod=None)  # gate 1 from 7.4 to 8.0, then (if stuck) held behind it
    third = fed(ctx, 5.0, rod=2)  # gate 1 from 9.9 to 10.5: rod 2 fires on its clear edge
    edges = {4.9: (1, True), 5.5: (1, False), 7.4: (1, True), 7.9: (2, True), 8.0: (1, False),
             9.9: (1, True), 10.5: (1, False)}  # fmt: skip
    if not stuck:
        edges[8.5] = (2, False)
    sent = run_until(ctx, root, 10.5, edges)
    if stuck:
        assert protocol.push(2) not in sent and third.outcome is None
        assert third.uncertain and "item 2 may be held in rod 2's window" in third.reject_reason
    else:
        assert protocol.push(2) in sent and third.outcome is Outcome.SORTED


def test_one_lost_clear_edge_does_not_stop_the_line(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    fed(ctx, 0.0, rod=None)
    fed(ctx, 2.5, rod=None)
    edges = {4.9: (1, True), 7.4: (1, True), 8.0: (1, False), 7.9: (2, True), 8.5: (2, False)}
    sent = run_until(ctx, root, 12.0, edges)  # the first item's clear edge at 5.5 is lost
    assert sent == [] and ctx.bb.alarms == []


def test_a_lone_item_whose_gate_1_messages_were_lost_is_followed_downstream(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    item = fed(ctx, 0.0, rod=None)  # both its gate 1 edges (4.9, 5.5) are lost
    edges = {7.9: (2, True), 8.5: (2, False), 10.9: (3, True), 11.5: (3, False)}
    sent = run_until(ctx, root, 30.0, edges)
    assert sent == [] and ctx.bb.alarms == []  # the belt moves: not a stalled belt
    assert ctx.bb.unmatched_edges == 0
    assert item.outcome is not None and item.cleared == 3


def test_stalled_belt_runs_the_abort_branch(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    fed(ctx, 0.0, rod=None)  # the belt stalls at 6.0, with the item between gates 1 and 2
    sent = run_until(ctx, root, 20.0, {4.9: (1, True), 5.5: (1, False)})
    assert sent == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert "stalled" in ctx.bb.alarms[0]


class _HeldService(http.server.BaseHTTPRequestHandler):
    """A classification service that answers only once the test lets it."""

    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.release.wait(10)
        body = b'{"results": [{"label": "half_ripe", "confidence": 0.9}], "code": 0, "error": ""}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def held_service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeldService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _HeldService.release.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/aisim_tf_pre"
    _HeldService.release.set()
    server.shutdown()


def test_classify_does_not_block_the_tick_while_the_service_thinks(
    ctx: Context, tmp_path: Path, held_service: str
) -> None:
    ctx.classifiers["primary"] = ClassifierWorker(HttpClassifier(held_service, 10.0))
    root = tree(ctx, tmp_path, "root:\n  Classify: classify\n")
    item = ctx.bb.items.feed(0.0)
    item.picture = render_picture(np.random.default_rng(1), "half_ripe")
    ticked = threading.Event()

    def tick_twice() -> None:
        root.tick_once()
        root.tick_once()
        ticked.set()

    threading.Thread(target=tick_twice, daemon=True).start()
    assert ticked.wait(5.0), "a tick waited for the classification service"
    assert root.status == Status.RUNNING and not item.decided
    _HeldService.release.set()

    def answered() -> bool:
        root.tick_once()
        return root.status != Status.RUNNING

    assert wait_until(answered, timeout=60.0)  # the bound only catches a hang
    ctx.classifiers["primary"].close()
    assert root.status == Status.SUCCESS
    assert (item.label, item.rod) == ("half_ripe", 3)


SEQUENTIAL_ROUTE = """
root:
  parallel: line
  policy: success_on_selected
  selected: [route item]
  children:
    - TrackItems: track
    - selector: route item
      children:
        - sequence: push rod for label
          children:
            - ItemHasRod: item has a rod
            - PushRod: push rod at its gate
            - RetractRod: retract rod
        - WaitItemLeft: let it ride to bin 1
"""


def test_sequential_route_serves_the_new_item_while_an_unsorted_one_rides_on(
    ctx: Context, tmp_path: Path
) -> None:
    riding = fed(ctx, 0.0, rod=None, label="unknown")
    root = tree(ctx, tmp_path, SEQUENTIAL_ROUTE)
    for t, gate in ((4.9, 1), (7.9, 2)):
        step(ctx, root, t, (gate, True))
        step(ctx, root, t + 0.6, (gate, False))
    step(ctx, root, 10.9, (3, True))
    step(ctx, root, 11.5, (3, False))  # past the last rod: still on the belt for 3 s
    assert root.status == Status.SUCCESS  # the course feeds the next item now
    nxt = fed(ctx, 11.6, rod=2)
    root = tree(ctx, tmp_path, SEQUENTIAL_ROUTE)
    sent = step(ctx, root, 11.6)
    assert root.status == Status.RUNNING  # waiting for the new item, not the riding one
    sent += step(ctx, root, 16.5, (1, True))
    sent += step(ctx, root, 17.1, (1, False))
    assert sent == [protocol.push(2)]
    assert nxt.outcome is Outcome.SORTED
    assert riding.outcome is Outcome.REJECTED  # it fell off the end meanwhile


def test_back_online_the_line_is_told_again_what_it_should_be_doing(ctx: Context) -> None:
    ctx.bb.ingest([ConnectionChanged(0.0, True)])
    ctx.bb.command(protocol.push(3))
    ctx.bb.take_outbox()
    ctx.bb.ingest([ConnectionChanged(1.0, False), ConnectionChanged(2.0, True)])
    # belt running, rod 3 out (its leaf retracts it), every other rod pulled again
    assert ctx.bb.take_outbox() == [protocol.BELT_RUN, protocol.pull(1), protocol.pull(2),
                                    protocol.pull(4)]  # fmt: skip
    assert ctx.bb.last_evidence_at == 2.0


def test_waiting_for_the_newest_items_picture_fails_when_that_feed_was_empty(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, "root:\n  AwaitPicture: wait\n  item: newest\n")
    step(ctx, root, 0.0)
    assert root.status == Status.FAILURE  # nothing was fed
    ctx.bb.items.feed(0.0)
    root = tree(ctx, tmp_path, "root:\n  AwaitPicture: wait\n  item: newest\n")
    step(ctx, root, 1.0)
    assert root.status == Status.RUNNING


def test_letting_an_item_ride_ends_when_its_feed_turns_out_empty(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, SEQUENTIAL_ROUTE)
    ctx.bb.items.feed(0.0).decided = True  # labelled unknown: nothing was seen of it
    step(ctx, root, 1.0)
    assert root.status == Status.RUNNING
    step(ctx, root, 8.0)
    step(ctx, root, 15.0)  # far past gate 1 and never seen: forgotten as an empty feed
    assert ctx.bb.items.empty_feeds == 1
    assert root.status == Status.SUCCESS


def test_edges_lost_with_the_broker_are_not_taken_for_a_stalled_belt(
    ctx: Context, tmp_path: Path
) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    ctx.bb.ingest([ConnectionChanged(0.0, True)])
    passed = fed(ctx, 0.0, rod=None)  # runs through every gate while we are offline
    unseen = ctx.bb.items.feed(5.0)  # fed just before the broker went; never seen
    step(ctx, root, 4.9, (1, True))
    ctx.bb.ingest([ConnectionChanged(5.5, False)])
    ctx.bb.now = 5.5  # the tree holds while offline: no ticks
    ctx.bb.ingest([ConnectionChanged(14.0, True)])
    ctx.bb.take_outbox()
    sent = run_until(ctx, root, 25.0, {}, start=14.0)
    assert sent == [] and ctx.bb.alarms == []
    assert passed.outcome is Outcome.LOST and "gate 1" in passed.outcome_reason
    assert unseen.outcome is Outcome.LOST and "broker" in unseen.outcome_reason


def test_single_item_stuck_in_a_gate_is_reported_as_stuck(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    fed(ctx, 0.0, rod=None)  # blocks gate 1 at 4.9 and stays there
    sent = run_until(ctx, root, 11.0, {4.9: (1, True)})
    assert sent == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert "gate 1 stays blocked" in ctx.bb.alarms[0]


def test_two_lost_edges_in_a_row_do_not_stop_the_line(ctx: Context, tmp_path: Path) -> None:
    root = tree(ctx, tmp_path, HEALTH)
    item = fed(ctx, 0.0, rod=None)  # gate 1's clear edge and gate 2's blocked edge are lost
    edges = {4.9: (1, True), 8.5: (2, False), 10.9: (3, True), 11.5: (3, False)}
    sent = run_until(ctx, root, 17.0, edges)
    assert sent == [] and ctx.bb.alarms == []
    assert item.outcome is Outcome.REJECTED


def test_a_feeder_that_missed_lengthens_its_cycle_within_a_bound(
    ctx: Context, tmp_path: Path
) -> None:
    # Issue 15: a feed that came up empty may mean rod 1 went back before its stroke was
    # done: the next feeds hold it out longer.
    root = tree(ctx, tmp_path, "root:\n  repeat: feeding\n  num_success: -1\n  child:\n"
                "    FeedItem: feed\n    hold: 0.6\n    back: 0.3\n")  # fmt: skip
    pushes, pulls = [], []
    for tick in range(0, 200):
        t = round(tick * 0.05, 2)
        if t >= 1.0:
            ctx.bb.items.empty_feeds = tick  # an empty feed found during every feed
        if t == 6.0:  # until a later feed's item shows they were misses, the empty feeds
            assert ctx.bb.line.spacing.feeder_cycle == pytest.approx(0.9)  # may be the stack's end
            ctx.bb.feeder_misses = 1
        commands = step(ctx, root, t)
        pushes += [t] * commands.count(protocol.push(1))
        pulls += [t] * commands.count(protocol.pull(1))
    holds = [round(pull - push, 2) for push, pull in zip(pushes, pulls, strict=False)]
    assert holds[:5] == [0.6, 0.6, 0.75, 0.95, 1.2]  # x 1.25 each: 0.75, 0.9375, 1.17
    assert holds[5:] and all(hold == 1.2 for hold in holds[5:])  # at most twice 0.6
    lengthened = [e for e in ctx.record.recent if e["event"] == "feeder_cycle_lengthened"]
    assert lengthened[0]["hold"] == 0.75 and lengthened[-1]["at_limit"]
    assert ctx.bb.line.spacing.feeder_cycle == pytest.approx(1.2 + 0.6)  # the limit follows a miss


# Issue 20: TRACK_AND_RODS with the line's health watched too (no false alarm on a miss).
RODS_AND_HEALTH = TRACK_AND_RODS.replace(
    "    - TrackItems: track\n", "    - TrackItems: track\n    - LineHealthy: moving\n"
)


@pytest.mark.parametrize("behind_fed", [1.0, 2.5], ids=["close behind", "spaced"])
def test_a_pushed_item_seen_at_the_next_gate_is_a_missed_push_not_the_next_items(
    ctx: Context, tmp_path: Path, behind_fed: float
) -> None:
    """Issue 20: rod 2 was pushed as the item cleared gate 1, but the push came too late:
    the item passes gates 2 and 3 in plain sight. Its edges there are its own (the item
    behind keeps its own and is pushed by rod 3 on its own clear edge of gate 2); it rides
    to the belt end: not counted in bin 2, recorded ``push_missed``."""
    root = tree(ctx, tmp_path, RODS_AND_HEALTH)
    missed = fed(ctx, 0.0, rod=2)
    behind = fed(ctx, behind_fed, rod=3)
    edges: dict[float, list[tuple[int, bool]]] = {}
    for at, gates in ((0.0, (1, 2, 3)), (behind_fed, (1, 2))):
        for gate in gates:
            head = round(at + 4.9 + 3.0 * (gate - 1), 1)
            edges.setdefault(head, []).append((gate, True))
            edges.setdefault(round(head + 0.6, 1), []).append((gate, False))
    pushes: dict[float, list[protocol.Command]] = {}
    for tick in range(300):
        t = tick / 10
        sent = step(ctx, root, t, *edges.get(t, []))
        if pushed := [c for c in sent if c.action is protocol.Action.PUSH]:
            pushes[t] = pushed
    behind_clears_gate_2 = round(behind_fed + 8.5, 1)
    assert pushes == {5.5: [protocol.push(2)], behind_clears_gate_2: [protocol.push(3)]}
    assert behind.outcome is Outcome.SORTED and behind.cleared_at[2] == behind_clears_gate_2
    assert missed.outcome is Outcome.REJECTED and missed in ctx.bb.items.done
    assert missed.outcome_reason.startswith("push missed: rod 2 pushed as it cleared gate 1")
    assert missed.cleared_at == {1: 5.5, 2: 8.5, 3: 11.5}  # its own edges, all of them
    assert ctx.bb.missed_pushes == 1 and ctx.bb.unmatched_edges == 0
    assert ctx.bb.alarms == [] and ctx.bb.fault == ""
    bins = [i.rod if i.outcome is Outcome.SORTED else 1 for i in ctx.bb.items.done.recent()]
    assert sorted(bins) == [1, 3]  # as the run summary counts them
    record = (tmp_path / "record.jsonl").read_text()
    assert record.count('"event": "push_missed"') == 1


@pytest.mark.parametrize("behind_fed", [0.8, 2.5], ids=["close behind", "spaced"])
def test_a_swept_items_follower_keeps_its_edges_at_the_next_gate(
    ctx: Context, tmp_path: Path, behind_fed: float
) -> None:
    """The other side of issue 20's rule: the push took the item (nothing of it at gate 2),
    and the item behind, close enough that its blocked edge at gate 2 falls in the pushed
    one's window, keeps that edge (it is nearer its own prediction): no missed push."""
    root = tree(ctx, tmp_path, RODS_AND_HEALTH)
    swept = fed(ctx, 0.0, rod=2)
    behind = fed(ctx, behind_fed, rod=3)
    edges: dict[float, list[tuple[int, bool]]] = {4.9: [(1, True)], 5.5: [(1, False)]}
    for gate in (1, 2):
        head = round(behind_fed + 4.9 + 3.0 * (gate - 1), 1)
        edges.setdefault(head, []).append((gate, True))
        edges.setdefault(round(head + 0.6, 1), []).append((gate, False))
    sent = [c for tick in range(200) for c in step(ctx, root, tick / 10, *edges.get(tick / 10, []))]
    assert [c for c in sent if c.action is protocol.Action.PUSH] == [
        protocol.push(2),
        protocol.push(3),
    ]
    assert swept.outcome is Outcome.SORTED and behind.outcome is Outcome.SORTED
    assert behind.cleared_at[2] == round(behind_fed + 8.5, 1)
    assert ctx.bb.missed_pushes == 0 and ctx.bb.alarms == []
