"""The line model, the matcher and the watchdogs on a hand-driven blackboard.

Line time is set by the test; the belt runs from t = 0. The controller is told nothing
about the line (no ``line:``) unless a test gives it a prior.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import py_trees
import pytest
from contexts import running_context, tree_from_text

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Edge, Item, Outcome, Received
from bt_sorter.config import LineConfig, load_config
from bt_sorter.linemodel.estimates import WINDOW
from bt_sorter.linemodel.learning import SHIFT_ITEMS
from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.priors import PRIOR_CHECK_SAMPLES
from bt_sorter.linemodel.report import summary_section
from bt_sorter.linemodel.spacing import PUSH_REACH
from bt_sorter.matcher import Matcher
from bt_sorter.topology import Topology
from bt_sorter.trees.build import load_tree

Status = py_trees.common.Status

# A line: picture 2 s after the feed, gate k blocked at 3, 5, 7 s, each passage 0.4 s.
LINE = {"picture": 2.0, **{f"gate{k}.blocked": 1.0 + 2 * k for k in (1, 2, 3)}}
LINE |= {f"gate{k}.clear": 1.4 + 2 * k for k in (1, 2, 3)}
LINE |= {f"gate{k}.passage": 0.4 for k in (1, 2, 3)}


def scaled(factor: float) -> dict[str, float]:
    return {name: value * factor for name, value in LINE.items()}


def test_estimates_are_robust_medians_with_spread_and_count() -> None:
    model = LineModel()
    for jitter in (0.0, 0.01, -0.01, 0.02, 0.015):
        model.learning.learn({name: value + jitter for name, value in LINE.items()})
    report = summary_section(model)["quantities"]["gate2.blocked"]
    assert report["median"] == pytest.approx(5.01)
    assert 0 < report["spread"] < 0.05
    assert report["n"] == 5


def test_an_item_far_outside_the_windows_is_not_learned() -> None:
    # Issue 15: the next item's picture taken by an empty feed, 23.5 s after it.
    model = LineModel(feeder_cycle=0.9, rod_out=0.7, speed=8.0)
    for _ in range(3):
        model.learning.learn(LINE)
    spacing = model.spacing.safe_spacing()
    wild = {**LINE, "picture": 23.5, "gate1.blocked": 25.0, "gate1.passage": 20.0}
    model.learning.learn(wild)
    assert summary_section(model)["quantities"]["picture"]["n"] == 3
    assert model.spacing.safe_spacing() == pytest.approx(spacing)
    assert set(model.learning.last_outliers) == {"picture", "gate1.blocked", "gate1.passage"}
    assert model.learning.items_rejected == 1 and model.learning.items_learned == 3
    model.learning.learn(LINE)  # the next good item is learned as before
    assert model.learning.last_outliers == {} and model.learning.items_learned == 4


def test_a_belt_slower_than_the_windows_allow_is_followed_after_a_few_items() -> None:
    model = LineModel()
    for _ in range(WINDOW):
        model.learning.learn(LINE)
    slower = scaled(1 / 0.6)  # 40 % slower: every time 67 % longer, outside the windows
    for _ in range(SHIFT_ITEMS - 1):
        model.learning.learn(slower)
        assert model.learning.last_outliers  # one or two such items may be anything
    model.learning.learn(slower)  # three in a row that agree: the line changed
    assert model.learning.last_outliers == {} and model.learning.items_learned == WINDOW + 3
    assert model.windows.predict("gate3.clear") == pytest.approx(slower["gate3.clear"], rel=0.02)
    for _ in range(2):
        model.learning.learn(slower)
    assert model.estimates.expected("gate3.clear") == pytest.approx(slower["gate3.clear"])


def test_estimates_follow_a_belt_that_slows_by_20_percent_within_a_few_items() -> None:
    model = LineModel()
    for _ in range(WINDOW):
        model.learning.learn(LINE)
    slower = scaled(1 / 0.8)
    model.learning.learn(slower)
    assert model.windows.predict("gate3.clear") == pytest.approx(slower["gate3.clear"], rel=0.02)
    for _ in range(WINDOW // 2):
        model.learning.learn(slower)
    assert model.estimates.expected("gate3.clear") == pytest.approx(slower["gate3.clear"])


def test_a_wrong_prior_is_reported_and_the_measurement_wins() -> None:
    built_in = load_config().line  # the built-in line's metres: 0.1 m/s
    model = LineModel(built_in)
    mismatches = []
    for _ in range(PRIOR_CHECK_SAMPLES):
        mismatches += model.learning.learn(LINE)
    names = {m["quantity"] for m in mismatches}
    assert {"picture", "gate1.blocked", "gate3.clear"} <= names
    gate1 = next(m for m in mismatches if m["quantity"] == "gate1.blocked")
    assert gate1["measured"] == pytest.approx(3.0) and gate1["configured"] == pytest.approx(4.9)
    assert model.estimates.expected("gate1.blocked") == pytest.approx(3.0)
    assert not model.prior.confirmed & names


def test_a_confirmed_prior_shortens_learning() -> None:
    model = LineModel(LineConfig(belt_speed=0.1, item_length=0.04, camera_position=0.22,
                                 gate_positions=(0.34, 0.54, 0.74)))  # fmt: skip
    model.learning.learn(LINE)
    assert model.learning.measured(items=3)  # one item confirmed the prior everywhere
    assert not LineModel().learning.measured(items=3) and model.prior.mismatches == []


def test_gates_past_the_last_routed_rod_need_no_item_to_be_measured(tmp_path: Path) -> None:
    # Issue 20, seed 1000: on a line whose labels all go to rods at gates 1 and 2, no item
    # ever reaches gate 3; waiting for its edges fed one item at a time for ever.
    model = LineModel()
    for _ in range(3):
        model.learning.learn({n: v for n, v in LINE.items() if not n.startswith("gate3")})
    assert not model.learning.measured(items=3)  # gate 3 counts on a line that routes to its rod
    assert model.learning.measured(items=3, through=2)
    assert not model.learning.measured(items=3, through=3)
    assert not LineModel().learning.measured(items=3, through=1)  # the picture and gate 1 always
    # The leaf asks for the gates up to the last rod some label routes to.
    ctx = running_context(tmp_path, model, measured=False)
    root = tree_from_text(ctx, tmp_path, "root:\n  LineMeasured: measured\n")
    for routes, status in (({"ripe": 2, "half_ripe": 3}, Status.SUCCESS),
                           ({"raw": 4}, Status.FAILURE)):  # fmt: skip
        sorting = dataclasses.replace(ctx.config.sorting, routes=routes)
        ctx.config = ctx.config.replace(sorting=sorting)
        root.tick_once()
        assert root.status == status


def test_limit_is_the_feeder_cycle_or_the_safe_spacing() -> None:
    model = LineModel(feeder_cycle=2.5, rod_out=1.3, tick=0.02)
    assert model.spacing.safe_spacing() is None and model.spacing.limit_per_minute() is None
    model.learning.learn(LINE)
    late_push = PUSH_REACH * 0.4
    behind = 0.4 + late_push + 1.3  # the item behind stays off the push for this one
    ahead = model.windows.run_out([])  # this one is past the last rod's window (the belt end)
    assert ahead > behind
    assert model.spacing.safe_spacing() == pytest.approx(ahead + model.latency.command_margin)
    assert model.spacing.limit_per_minute() == pytest.approx(60 / model.spacing.safe_spacing())
    slow = LineModel(feeder_cycle=2.5, rod_out=1.3, tick=0.02)
    slow.learning.learn(scaled(10))  # a slow belt: 4 s passages
    assert slow.spacing.limit_per_minute() == pytest.approx(
        60 / (slow.spacing.safe_spacing() or 0.0)
    )


# -- the matcher and the watchdogs, through the tree's leaves ---------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return running_context(tmp_path, LineModel(None, tick=0.02), measured=False)


TREE = """
root:
  selector: line
  children:
    - parallel: healthy
      policy: success_on_one
      children:
        - LineHealthy: moving
        - TrackItems: track
        - repeat: rod 2
          num_success: -1
          child:
            failure_is_success: an item it cannot push rides on
            child:
              sequence: rod 2 cycle
              children:
                - PushRod: push 2
                  rod: 2
                - RetractRod: retract 2
                  rod: 2
    - sequence: abort
      children:
        - RetractAllRods: all rods back
        - StopBelt: stop belt
        - RaiseAlarm: alarm
"""


def fed(ctx: Context, t: float, rod: int | None) -> Item:
    item = ctx.bb.items.feed(t)
    item.label, item.rod, item.decided = "ripe" if rod else "unknown", rod, True
    return item


def run(
    ctx: Context, tmp_path: Path, end: float, events: dict[float, tuple[int, bool] | str]
) -> list[protocol.Command]:
    """Tick every 0.1 s to ``end``; at each listed time a gate edge or "picture"."""
    path = tmp_path / "tree.yaml"
    path.write_text(TREE)
    root = load_tree(path, ctx)
    sent: list[protocol.Command] = []
    for tick in range(round(end * 10) + 1):
        t = tick / 10
        event = events.get(t)
        if event == "picture":
            ctx.bb.ingest([Received(t, protocol.Picture(b"jpeg"))])
        elif isinstance(event, tuple):
            ctx.bb.ingest([Received(t, protocol.GateEdge(*event))])
        else:
            ctx.bb.ingest([])
        ctx.bb.now = t
        root.tick_once()
        sent += ctx.bb.take_outbox()
    return sent


def passage(at: float, gate: int, length: float = 0.4) -> dict[float, tuple[int, bool]]:
    return {at: (gate, True), round(at + length, 1): (gate, False)}


def test_one_item_is_matched_by_order_however_the_line_is_laid_out(
    ctx: Context, tmp_path: Path
) -> None:
    item = fed(ctx, 0.0, rod=2)  # gate 1 much later than any built-in line would say
    sent = run(ctx, tmp_path, 30.0, {9.0: "picture", **passage(25.0, 1, 1.5)})
    assert sent == [protocol.push(2), protocol.pull(2)]
    assert item.outcome is Outcome.SORTED and ctx.bb.alarms == []


def test_with_several_items_an_edge_before_its_window_fits_none(
    ctx: Context, tmp_path: Path
) -> None:
    for _ in range(3):
        ctx.bb.line.learning.learn(LINE)
    first = fed(ctx, 0.0, rod=None)
    second = fed(ctx, 2.5, rod=2)
    events = {2.0: "picture", 4.5: "picture", **passage(3.0, 1), 4.0: (1, True)}
    events |= {4.1: (1, False), **passage(5.5, 1)}  # a stray at 4.0 between the two items
    sent = run(ctx, tmp_path, 6.5, events)
    assert ctx.bb.unmatched_edges == 2
    assert first.cleared_at[1] == pytest.approx(3.4)
    assert second.outcome is Outcome.SORTED and sent[0] == protocol.push(2)


def test_item_that_passed_a_gate_unseen_leaves_the_next_edge_to_the_item_behind(
    ctx: Context, tmp_path: Path
) -> None:
    for _ in range(3):
        ctx.bb.line.learning.learn(LINE)
    first = fed(ctx, 0.0, rod=2)  # both its gate 1 edges are lost
    second = fed(ctx, 2.5, rod=2)
    sent = run(ctx, tmp_path, 6.5, {2.0: "picture", 4.5: "picture", **passage(5.5, 1)})
    assert first.uncertain and first.pushed_at is None
    assert second.outcome is Outcome.SORTED and sent[0] == protocol.push(2)


def test_a_slower_line_is_not_a_stuck_item(ctx: Context, tmp_path: Path) -> None:
    item = fed(ctx, 0.0, rod=None)  # 0.05 m/s, 15 cm: 3 s in each gate, gates 8 s apart
    events = {6.0: "picture", **passage(12.0, 1, 3.0), **passage(20.0, 2, 3.0)}
    sent = run(ctx, tmp_path, 30.0, {**events, **passage(28.0, 3, 1.9)})
    assert sent == [] and ctx.bb.alarms == []
    assert item.outcome is None  # still riding to the belt end


def test_a_faster_line_is_not_a_stalled_belt(ctx: Context, tmp_path: Path) -> None:
    ctx.bb.line.learning.learn(scaled(2.0))  # measured on a slower belt than it runs now
    events = {0.8: "picture", **passage(1.2, 1, 0.2), **passage(2.0, 2, 0.2)}
    item = fed(ctx, 0.0, rod=None)
    sent = run(ctx, tmp_path, 12.0, {**events, **passage(2.8, 3, 0.2)})
    assert sent == [] and ctx.bb.alarms == []
    assert item.outcome is Outcome.REJECTED  # rode to the belt end, as measured


def test_an_item_seen_only_by_its_edges_is_not_an_empty_feed(ctx: Context, tmp_path: Path) -> None:
    for _ in range(3):
        ctx.bb.line.learning.learn(LINE)
    item = fed(ctx, 0.0, rod=None)  # its picture never comes
    run(ctx, tmp_path, 9.0, {**passage(3.0, 1), **passage(5.0, 2), **passage(7.0, 3)})
    assert ctx.bb.items.empty_feeds == 0
    assert item.seen and 3 in item.evidence


def test_a_stalled_belt_is_reported_once_the_line_is_measured(ctx: Context, tmp_path: Path) -> None:
    for _ in range(3):
        ctx.bb.line.learning.learn(LINE)
    fed(ctx, 0.0, rod=None)  # the belt stalls after gate 1
    sent = run(ctx, tmp_path, 20.0, {2.0: "picture", **passage(3.0, 1)})
    assert sent[:2] == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert "stalled" in ctx.bb.alarms[0]


def test_matcher_gives_an_edge_past_an_items_window_to_the_item_behind(ctx: Context) -> None:
    for _ in range(3):
        ctx.bb.line.learning.learn(LINE)
    first, second = fed(ctx, 0.0, rod=2), fed(ctx, 3.0, rod=2)
    first.seen = second.seen = True
    ctx.bb.now = 6.0  # past the first item's deadline for leaving gate 1, on time for the second
    matcher = Matcher(ctx)  # no watchdog ran: the matcher alone must see first passed unseen
    assert matcher.edge(Edge(1, True, 6.0)) is second
    assert first.uncertain and first.cleared == 1
    assert matcher.edge(Edge(1, False, 6.4)) is second


def test_an_empty_feed_leaves_the_next_items_events_to_it(tmp_path: Path) -> None:
    # Issue 15, recorded on the fast timings: rod 1 pulled back before its stroke was done,
    # so the feed at 0 s put nothing on the belt. The item fed at 2 s shows its picture at
    # 4 s and its gate 1 edges at 5 s: inside the empty feed's windows (a margin of 0.44 s
    # at --speed 8), but nearer the later feed's predictions.
    model = LineModel(None, tick=0.02, speed=8.0)
    for _ in range(3):
        model.learning.learn(LINE)
    ctx = running_context(tmp_path, model, measured=False)
    empty, second, third = fed(ctx, 0.0, rod=None), fed(ctx, 2.0, rod=2), fed(ctx, 4.0, rod=None)
    events = {4.0: "picture", **passage(5.0, 1)}  # the second item, swept by rod 2
    events |= {6.0: "picture", **passage(7.0, 1), **passage(9.0, 2), **passage(11.0, 3)}
    sent = run(ctx, tmp_path, 16.0, events)
    assert second.picture_at == 4.0 and second.blocked_at[1] == 5.0
    assert second.outcome is Outcome.SORTED and sent[0] == protocol.push(2)
    assert third.picture_at == 6.0 and third.outcome is Outcome.REJECTED
    assert empty.outcome is None and ctx.bb.items.empty_feeds == 1  # called empty
    assert ctx.bb.feeder_misses == 1 and ctx.bb.empty_feeds_in_a_row == 0  # the stack is not
    assert ctx.bb.unmatched_edges == 0 and ctx.bb.alarms == []


def test_a_late_picture_stays_with_its_item_though_the_next_feed_is_nearer(
    tmp_path: Path,
) -> None:
    # Seen on a loaded machine at --speed 9: an item's picture came late (here 0.9 s),
    # before its gate 1 edge, and 0.6 s before the next feed's prediction. Pictures come
    # late, never early: it is the first item's, and taking it for the second put a label
    # on the wrong item.
    model = LineModel(None, tick=0.02, speed=8.0)
    for _ in range(3):
        model.learning.learn(LINE)
    ctx = running_context(tmp_path, model, measured=False)
    first, second = fed(ctx, 0.0, rod=None), fed(ctx, 1.5, rod=2)
    events = {2.9: "picture", **passage(3.0, 1), 3.5: "picture", **passage(4.5, 1)}
    run(ctx, tmp_path, 6.0, events)
    assert first.picture_at == 2.9 and second.picture_at == 3.5
    assert ctx.bb.items.empty_feeds == 0 and second.outcome is Outcome.SORTED


def test_the_item_ahead_has_left_a_rods_window_before_the_push_for_the_item_behind() -> None:
    """Issue 20 (harness seed 100141): rods on gates 3 and 4 of four, gates far apart. The
    window of the rod on gate 3 may reach gate 4 (the course's rule); the push for the
    item behind comes on its clear edge at gate 3, so the item ahead must have cleared
    gate 4 by then, and gone past the belt end for the rod on the last gate."""
    topology = Topology(gates=4, rod_gates=(3, 4))
    times = {"picture": 2.0}
    for k in range(1, 5):
        times |= {f"gate{k}.blocked": 6.0 * k, f"gate{k}.clear": 6.0 * k + 0.7,
                  f"gate{k}.passage": 0.7}  # fmt: skip
    model = LineModel(feeder_cycle=2.5, rod_out=1.1, tick=0.02, topology=topology)
    model.learning.learn(times)
    spacing = model.spacing.safe_spacing()
    assert spacing is not None
    assert spacing >= times["gate4.clear"] - times["gate3.clear"]  # 6 s: off rod 2's window
    assert spacing >= model.windows.run_out([])  # past the belt end: off rod 3's


def test_a_picture_past_the_deadline_of_an_item_in_gate_1_is_the_next_items(
    tmp_path: Path,
) -> None:
    # Issue 20, seed 1225: an item's picture was corrupt (dropped); the next item's came
    # while it was in gate 1, past its own picture's deadline, and it took it; the next
    # item took the one after, and so on: every item carried its follower's label.
    long = {**LINE, **{f"gate{k}.clear": LINE[f"gate{k}.blocked"] + 1.0 for k in (1, 2, 3)}}
    long |= {f"gate{k}.passage": 1.0 for k in (1, 2, 3)}  # in gate 1 from 3.0 to 4.0
    model = LineModel(None, tick=0.02)
    for _ in range(3):
        model.learning.learn(long)
    ctx = running_context(tmp_path, model, measured=False)
    first, second, third = fed(ctx, 0.0, rod=None), fed(ctx, 1.6, rod=None), fed(ctx, 3.2, 2)
    for item in (first, second, third):
        item.decided = False  # labels still to come
    # The first item's picture (2.0) is lost; the second's comes at 3.6 (first in gate 1,
    # 3.6 s after its feed: past its deadline, 3.38 s), the third's at 5.2 (second in gate 1).
    events = {3.6: "picture", 5.2: "picture", **passage(3.0, 1, 1.0), **passage(4.6, 1, 1.0)}
    run(ctx, tmp_path, 5.5, events)
    assert first.picture is None
    assert second.picture_at == 3.6 and third.picture_at == 5.2


def test_one_time_off_on_its_own_is_not_a_line_that_changed() -> None:
    # Issue 20, seed 1225: pictures taken one item late, item after item, agreed with each
    # other (the gates' times were right, so their paces did too) and were learned as a
    # line that changed: the shift then fit the windows, and nothing doubted it.
    model = LineModel()
    for _ in range(WINDOW):
        model.learning.learn(LINE)
    late_picture = {**LINE, "picture": LINE["picture"] + 2.0}
    for _ in range(2 * SHIFT_ITEMS):
        model.learning.learn(late_picture)
        assert set(model.learning.last_outliers) == {"picture"}
    assert model.estimates.expected("picture") == pytest.approx(LINE["picture"])


def test_gate_edges_one_item_late_are_not_a_line_that_changed() -> None:
    # Seed 103145: one item's pair of edges at gate 1 lost, each item then took the next
    # one's gate edges (a feed interval, 2 s, late from its feed; its picture its own).
    # Three such items agreed with each other and fit the windows stretched by their
    # pace (1.37): learned as a slower belt, the shift then fit the model, and rod 2
    # pushed a ripe item's label onto the raw item ahead of it. A slower belt stretches
    # the time between an item's own gate edges too; these are spaced as ever.
    model = LineModel()
    for _ in range(WINDOW):
        model.learning.learn(LINE)
    late = {n: v + 2.0 if n.startswith("gate") and "passage" not in n else v
            for n, v in LINE.items()}  # fmt: skip
    for _ in range(2 * SHIFT_ITEMS):
        model.learning.learn(late)
        assert "gate1.blocked" in model.learning.last_outliers
    assert model.estimates.expected("gate1.blocked") == pytest.approx(LINE["gate1.blocked"])
    assert model.learning.items_learned == WINDOW
