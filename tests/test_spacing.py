"""The feed spacing's measured margins and the watchdogs' bunched-or-stuck call (issue 15).

The line model's margin grows with the controller's measured decision delay (so a busy
machine or a higher --speed lengthens the spacing), a late picture does not move an
item's windows, and two items close together in a gate are not a stuck item, while a
stuck one still stops the line. The leaves run as in tests/test_linemodel.py: a tree of
TrackItems, LineHealthy and rod 2, ticked every 0.1 s over scripted events.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_linemodel import LINE, fed, passage, run

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Outcome
from bt_sorter.clock import LineClock
from bt_sorter.config import load_config
from bt_sorter.item_story import identity_doubt
from bt_sorter.linemodel import quantities
from bt_sorter.linemodel.latency import DELAY_WINDOW
from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.report import summary_section
from bt_sorter.record import Record


@pytest.fixture
def measured(tmp_path: Path) -> Context:
    """A context whose line model has measured LINE from three items."""
    context = Context(
        bb=Blackboard(line=LineModel(None, tick=0.02)),
        config=load_config().replace(line=None),
        clock=LineClock(1.0),
        record=Record(tmp_path / "record.jsonl"),
    )
    context.bb.connected = True
    context.bb.command(protocol.BELT_RUN)
    context.bb.take_outbox()
    for _ in range(3):
        context.bb.line.learning.learn(LINE)
    return context


def test_the_spacing_grows_with_the_measured_decision_delay() -> None:
    model = LineModel(feeder_cycle=1.5, rod_out=1.3, tick=0.02, speed=8.0)
    model.learning.learn(LINE)
    idle = model.spacing.safe_spacing()
    assert idle is not None and model.latency.command_margin == pytest.approx(0.05 * 8 + 2 * 0.02)
    for _ in range(DELAY_WINDOW):
        model.latency.note_delay(0.01)  # an idle machine: ticks 10 ms of line time late
    assert model.latency.decision_delay == pytest.approx(0.02 + 0.01)
    for _ in range(DELAY_WINDOW // 10):
        model.latency.note_delay(0.3)  # a loaded one: one tick in ten goes out 0.3 s late
    assert model.latency.decision_delay == pytest.approx(0.02 + 0.3)
    assert model.spacing.safe_spacing() == pytest.approx(idle + 2 * (0.32 - 0.02))
    assert model.latency.margin == pytest.approx(
        0.05 * 8 + 2 * 0.02
    )  # windows: the network and a tick
    assert summary_section(model)["decision_delay_s"] == pytest.approx(0.32)


def test_a_late_picture_does_not_move_the_items_windows() -> None:
    model = LineModel(tick=0.02)
    model.learning.learn(LINE)
    late = (quantities.PICTURE, LINE["picture"] + 1.5)  # the picture came 1.5 s late
    gate = quantities.blocked(1)
    assert model.windows.window(gate, late) == model.windows.window(gate)
    assert model.windows.window(gate)[0] <= LINE[gate] <= model.windows.window(gate)[1]


def test_two_items_close_together_keep_their_own_edges_and_raise_no_alarm(
    measured: Context, tmp_path: Path
) -> None:
    first = fed(measured, 0.0, rod=None)
    second = fed(measured, 0.3, rod=None)  # its head reaches each gate before first's tail
    third = fed(measured, 2.8, rod=None)
    events = {2.0: "picture", 2.3: "picture", 4.8: "picture", 3.0: (1, True), 3.7: (1, False)}
    events |= {5.0: (2, True), 5.7: (2, False), 7.0: (3, True), 7.7: (3, False)}
    events |= {**passage(5.8, 1), **passage(7.8, 2), **passage(9.8, 3)}
    run(measured, tmp_path, 16.0, events)
    assert measured.bb.alarms == [] and not measured.bb.fault
    assert first.evidence == third.evidence == {1, 2, 3}  # the third's edges are its own
    assert second.evidence == set()  # every block it was in began with the first


def test_a_long_block_the_item_behind_explains_is_not_a_stuck_item(
    measured: Context, tmp_path: Path
) -> None:
    first = fed(measured, 0.0, rod=None)
    second = fed(measured, 2.5, rod=None)  # in gate 1 by the time first is overdue twice
    events = {2.0: "picture", 4.5: "picture", 3.0: (1, True), 7.0: (1, False)}
    events |= {9.0: (2, True), 9.4: (2, False), 11.0: (3, True), 11.4: (3, False)}
    run(measured, tmp_path, 14.0, events)
    assert measured.bb.alarms == [] and not measured.bb.fault
    records = (tmp_path / "record.jsonl").read_text("utf-8")
    assert '"event": "items_bunched"' in records
    assert first.outcome is not None and 1 in second.evidence


def test_an_item_stuck_in_a_gate_still_stops_the_line(measured: Context, tmp_path: Path) -> None:
    fed(measured, 0.0, rod=None)  # stuck in gate 1: it never clears it
    fed(measured, 2.5, rod=None)  # held back behind it
    sent = run(measured, tmp_path, 20.0, {2.0: "picture", 4.5: "picture", 3.0: (1, True)})
    assert sent[:2] == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert "gate 1 stays blocked; item 2" in measured.bb.alarms[0]  # once its deadline passed


def test_an_item_with_no_edge_of_its_own_upstream_is_not_pushed_on_the_next_ones(
    measured: Context, tmp_path: Path
) -> None:
    fed(measured, 0.0, rod=None)
    second = fed(measured, 0.3, rod=3)  # bunched with the first at gates 1 and 2
    third = fed(measured, 2.8, rod=None)
    events = {2.0: "picture", 2.3: "picture", 4.8: "picture", 3.0: (1, True), 3.7: (1, False)}
    events |= {5.0: (2, True), 5.7: (2, False), 7.0: (3, True), 7.7: (3, False)}
    events |= {**passage(5.8, 1), **passage(7.8, 2), **passage(9.8, 3)}
    sent = run(measured, tmp_path, 16.0, events)
    assert protocol.push(3) not in sent  # rod 3 would have swept the third item
    assert second.uncertain and second.pushed_at is None
    assert third.evidence == {1, 2, 3} and measured.bb.alarms == []


def test_an_item_whose_events_are_two_items_is_not_pushed(measured: Context) -> None:
    first = fed(measured, 0.0, rod=2)
    fed(measured, 2.5, rod=None)
    first.picture_at = 2.0  # its own picture ...
    first.blocked_at[1], first.cleared_at[1] = 3.0, 3.4  # ... and its own gate 1 edges
    assert identity_doubt(measured, first) is None
    first.blocked_at[1], first.cleared_at[1] = 5.5, 5.9  # the next item's edges, 2.5 s on
    doubt = identity_doubt(measured, first)
    assert doubt is not None and "picture and gate1.blocked" in doubt


def test_an_empty_feed_after_an_item_that_lost_an_edge_is_called_empty(
    measured: Context, tmp_path: Path
) -> None:
    last = fed(measured, 0.0, rod=None)  # its gate 3 clear edge is lost, then it rides off
    fed(measured, 14.0, rod=None)  # the stack is empty: nothing comes of this feed
    events = {2.0: "picture", **passage(3.0, 1), **passage(5.0, 2), 7.0: (3, True)}
    run(measured, tmp_path, 20.0, events)
    assert last.outcome is Outcome.REJECTED  # rode to the belt end
    assert measured.bb.items.empty_feeds == 1 and len(measured.bb.items) == 0
    assert measured.bb.missed_since_evidence == 0 and measured.bb.alarms == []
