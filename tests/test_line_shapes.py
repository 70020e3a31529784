"""Lines of another shape: the controller takes gates and rods from config ``topology:``.

A five-bin line (four gates, rods 2..5) and a line whose gate 1 only tracks (rods 2..4
fired by gates 2..4), driven through the real leaves and tree loader: each rod fires on
the clear edge of its own gate, the last gate is the last one declared, the spacing rule
runs over the rods' gates, and edges of a gate config does not declare stop the pushing.
"""

from __future__ import annotations

import json
from pathlib import Path

import py_trees
import pytest
from contexts import fed as fed_item
from contexts import measured_line, measured_shape, running_context, step, tree_from_text

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Item, Outcome, Received
from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.report import line_section, summary_section
from bt_sorter.topology import Topology
from bt_sorter.web.state import stations
from bt_sorter.yamlio import SpecError

FIVE_BINS = Topology(gates=4, rod_gates=(1, 2, 3, 4))
TRACKING_GATE = Topology(gates=4, rod_gates=(2, 3, 4))

# Every rod the line declares, one branch each (as trees/sort_pipelined.yaml does).
RODS_TREE = """
root:
  parallel: line
  policy: success_on_all
  children:
    - TrackItems: track
    - for_each_rod: every rod
      child:
        repeat: rod {rod}
        num_success: -1
        child:
          failure_is_success: rod {rod} rides on
          child:
            sequence: rod {rod} cycle
            children:
              - PushRod: push rod {rod} at gate {gate}
                rod: "{rod}"
              - RetractRod: retract rod {rod}
                rod: "{rod}"
"""


def shaped(tmp_path: Path, topology: Topology) -> Context:
    return running_context(tmp_path, measured_shape(topology))


def tree(ctx: Context, tmp_path: Path, text: str = RODS_TREE) -> py_trees.behaviour.Behaviour:
    return tree_from_text(ctx, tmp_path, text)


def fed(ctx: Context, t: float, rod: int | None) -> Item:
    return fed_item(ctx, t, rod, "ripe" if rod else "unknown")


def through_gates(
    ctx: Context, root: py_trees.behaviour.Behaviour, gates: range
) -> dict[int, list[protocol.Command]]:
    """One item through ``gates`` on :func:`measured_shape`'s times: gate -> the commands
    sent on its clear edge."""
    sent = {}
    for gate in gates:
        head = 4.5 + 3.0 * (gate - 1)
        step(ctx, root, head, (gate, True))
        sent[gate] = step(ctx, root, round(head + 0.4, 1), (gate, False))
    return sent


def test_a_five_bin_lines_fifth_rod_fires_on_the_fourth_gates_clear_edge(
    tmp_path: Path,
) -> None:
    ctx = shaped(tmp_path, FIVE_BINS)
    root = tree(ctx, tmp_path)
    assert [child.name for child in root.children[1:]] == ["rod 2", "rod 3", "rod 4", "rod 5"]
    item = fed(ctx, 0.0, rod=5)
    sent = through_gates(ctx, root, range(1, 5))
    assert sent == {1: [], 2: [], 3: [], 4: [protocol.push(5)]}
    assert item.outcome is Outcome.SORTED and item.outcome_reason == "pushed by rod 5"


def test_behind_a_tracking_gate_rod_2_fires_on_gate_2_not_gate_1(tmp_path: Path) -> None:
    ctx = shaped(tmp_path, TRACKING_GATE)
    root = tree(ctx, tmp_path)
    assert [child.name for child in root.children[1:]] == ["rod 2", "rod 3", "rod 4"]
    item = fed(ctx, 0.0, rod=2)
    sent = through_gates(ctx, root, range(1, 3))
    assert sent == {1: [], 2: [protocol.push(2)]}
    assert item.outcome is Outcome.SORTED
    assert item.cleared_at.keys() == {1, 2}  # the tracking gate's edges were its own


def test_a_rod_the_line_lacks_is_a_tree_error_with_file_and_line(tmp_path: Path) -> None:
    ctx = shaped(tmp_path, TRACKING_GATE)
    text = "root:\n  sequence: rods\n  children:\n    - PushRod: push 5\n      rod: 5\n"
    with pytest.raises(SpecError) as caught:
        tree(ctx, tmp_path, text)
    assert f"{tmp_path / 'tree.yaml'}:4:" in str(caught.value)
    assert "rod 5 is not a classifying rod of this line" in str(caught.value)


def test_an_item_missing_at_the_last_gate_of_a_longer_line_is_not_taken_for_bin_1(
    tmp_path: Path,
) -> None:
    """On a four-gate line the belt end is past gate 4: an item that cleared gate 3 and
    never showed at gate 4 is overdue there, recorded missing, and lost with the reason,
    not called 'rode to the belt end'."""
    ctx = shaped(tmp_path, FIVE_BINS)
    root = tree(ctx, tmp_path)
    item = fed(ctx, 0.0, rod=None)
    through_gates(ctx, root, range(1, 4))
    for tick in range(110, 400):
        step(ctx, root, tick / 10)
        if item.outcome is not None:
            break
    assert item.outcome is Outcome.LOST, item.outcome_reason
    assert item.outcome_reason == "not seen after gate 3; past the belt end by now"
    record = [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]
    missing = [e for e in record if e["event"] == "edge_missing" and e["item"] == item.id]
    assert [(e["gate"], e["blocked"]) for e in missing] == [(4, True), (4, False)]


# -- a line with more gates than declared, and stray messages of such a gate (issue 20) --

Edges = dict[float, list[tuple[int, bool]]]
Feeds = list[tuple[float, int | None]]


def passes(fed_at: float, gates: range) -> Edges:
    """An item fed at ``fed_at`` through ``gates`` of the built-in line's times (gate k
    blocked 4.9 + 3 (k - 1) s after the feed, for 0.6 s; a gate 4 would follow at 13.9)."""
    out: Edges = {}
    for gate in gates:
        head = round(fed_at + 4.9 + 3.0 * (gate - 1), 1)
        out.setdefault(head, []).append((gate, True))
        out.setdefault(round(head + 0.6, 1), []).append((gate, False))
    return out


def drive(
    ctx: Context,
    roots: list[py_trees.behaviour.Behaviour],
    feeds: Feeds,
    edges: Edges,
    until: float,
    start: float = 0.0,
) -> list[protocol.Command]:
    """Tick every 0.1 s from ``start`` to ``until``: feed (time, rod) items, deliver
    ``edges`` (time -> (gate, blocked) in arrival order); the commands sent."""
    sent: list[protocol.Command] = []
    items = dict(feeds)
    for tick in range(round(start * 10), round(until * 10) + 1):
        t = tick / 10
        if t in items:
            fed(ctx, t, items[t])
        ctx.bb.ingest([Received(t, protocol.GateEdge(g, b)) for g, b in edges.get(t, [])])
        ctx.bb.now = t
        for root in roots:
            root.tick_once()
        sent += ctx.bb.take_outbox()
    return sent


def merged(*schedules: Edges) -> Edges:
    out: Edges = {}
    for schedule in schedules:
        for t, edges in schedule.items():
            out.setdefault(t, []).extend(edges)
    return out


def records(tmp_path: Path, event: str) -> list[dict[str, object]]:
    lines = (tmp_path / "record.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


GUARD = "root:\n  InputsTrusted: inputs are trustworthy\n"


def fs_sorting(
    tmp_path: Path, n: int
) -> tuple[Context, list[py_trees.behaviour.Behaviour], Feeds, Edges]:
    """The FS scene, measured, its rods 2..4 on gates 1..3; ``n`` items 2.5 s apart routed
    to rods 2, 3, 4 and bin 1 in turn, each through the gates up to its rod's (all three
    for bin 1): the line as it is, with nothing undeclared."""
    ctx = running_context(tmp_path, measured_line())
    roots = [tree(ctx, tmp_path, GUARD), tree(ctx, tmp_path)]
    feeds = [(2.5 * i, (2, 3, 4, None)[i % 4]) for i in range(n)]
    edges = merged(*(passes(t, range(1, rod or 4)) for t, rod in feeds))
    return ctx, roots, feeds, edges


def test_a_stray_message_of_an_undeclared_gate_is_noise_and_sorting_goes_on(
    tmp_path: Path,
) -> None:
    """The issue-20 defect: one ``{"fourth_switch": true}`` on the FS scene switched pushing
    off for the rest of the run. A lone edge, edges while no item can be past gate 3, and a
    blocked/clear pair no item's passage fits are noise: counted, recorded, and every item
    still goes to its own bin; no alarm."""
    ctx, roots, feeds, edges = fs_sorting(tmp_path, 12)
    strays = {1.0: [(4, False)], 6.0: [(4, True)], 14.0: [(4, True)], 16.5: [(4, False)],
              22.0: [(4, False)], 25.2: [(4, True)]}  # fmt: skip
    sent = drive(ctx, roots, feeds, merged(edges, strays), until=50.0)
    done = {item.id: item for item in ctx.bb.items.done.recent()}
    assert len(done) == 12 and not ctx.bb.items
    for n, (_, rod) in enumerate(feeds, start=1):
        item = done[n]
        if rod is None:
            assert item.outcome is Outcome.REJECTED
            assert item.outcome_reason == "rode to the belt end"
        else:
            assert item.outcome is Outcome.SORTED, item.outcome_reason
            assert item.outcome_reason == f"pushed by rod {rod}"
    assert sorted(c.rod for c in sent if c.action is protocol.Action.PUSH) == sorted(
        rod for _, rod in feeds if rod is not None
    )
    assert roots[0].status is py_trees.common.Status.RUNNING and not ctx.bb.fault
    assert ctx.bb.stray_gate_edges == 6 and not ctx.bb.shape_doubt and ctx.bb.missed_pushes == 0
    assert ctx.bb.bad_inputs == 6
    assert len(records(tmp_path, "gate_edge_stray")) == 6
    assert records(tmp_path, "topology_mismatch") == []


def test_one_stray_blocked_edge_while_items_pass_gate_3_changes_nothing(tmp_path: Path) -> None:
    """The one-message case exactly: a lone ``fourth_switch: true`` while an item is past
    gate 3 (where a real gate 4 would see it): noise once no clear edge follows."""
    ctx, roots, feeds, edges = fs_sorting(tmp_path, 8)
    drive(ctx, roots, feeds, merged(edges, {14.2: [(4, True)]}), until=40.0)
    outcomes = [item.outcome for item in sorted(ctx.bb.items.done.recent(), key=lambda i: i.id)]
    assert outcomes == [Outcome.SORTED] * 3 + [Outcome.REJECTED] + [Outcome.SORTED] * 3 + [
        Outcome.REJECTED
    ]
    assert ctx.bb.stray_gate_edges == 1 and not ctx.bb.fault
    (stray,) = records(tmp_path, "gate_edge_stray")
    assert stray["reason"] == "no clear edge followed it"


def test_items_passing_an_undeclared_gate_stop_the_pushing_and_then_raise_the_alarm(
    tmp_path: Path,
) -> None:
    """config says the FS scene (three gates); the line has a fourth past gate 3. A lone
    edge of it is noise, but an item's passage there (blocked, then clear one passage
    later, while the item is past gate 3) puts the shape in doubt: a rod's gate may not be
    what config says, so nothing more is pushed (bin 1, with the reason); the second
    passage proves it and the inputs are distrusted (the abort branch's alarm)."""
    ctx = running_context(tmp_path, measured_line())
    guard, root = tree(ctx, tmp_path, GUARD), tree(ctx, tmp_path)
    roots, feeds = [guard, root], [(0.0, 4), (4.0, 4)]
    edges = merged(passes(0.0, range(1, 5)), passes(4.0, range(1, 5)), {3.0: [(4, True)]})
    sent = drive(ctx, roots, feeds, edges, until=14.4)
    assert sent == [protocol.push(4), protocol.pull(4)]  # ahead, on its clear edge of gate 3
    ahead, behind = ctx.bb.items.done.recent()[0], ctx.bb.items.newest()
    assert guard.status is py_trees.common.Status.RUNNING and not ctx.bb.shape_doubt
    assert ctx.bb.stray_gate_edges == 1  # the lone edge at 3.0: nothing is past gate 3
    sent = drive(ctx, roots, feeds, edges, start=14.5, until=14.5)  # ahead's passage of gate 4
    assert ctx.bb.shape_doubt.startswith("the line seems to have more gates than config.topology")
    assert ahead.outcome is Outcome.LOST  # only it was there: pushed, then past gate 4
    sent += drive(ctx, roots, feeds, edges, start=14.6, until=18.5)  # behind's passage ends
    assert sent == []  # rod 4 would have fired on behind's clear edge of gate 3 at 15.5
    assert behind.uncertain and behind.reject_reason == ctx.bb.shape_doubt
    assert behind.pushed_at is None
    assert ahead.outcome_reason == (
        "pushed by rod 4 as it cleared gate 3, then it passed gate 4, which config lacks: "
        "its bin is unknown"
    )
    assert ahead in ctx.bb.items.done and ahead.id not in [i.id for i in ctx.bb.items]
    assert guard.status is py_trees.common.Status.RUNNING  # it ticks before tracking
    drive(ctx, roots, feeds, edges, start=18.6, until=18.6)
    assert guard.status is py_trees.common.Status.FAILURE
    assert "more gates than config.topology declares: 2 items passed gate 4" in ctx.bb.fault
    passages = records(tmp_path, "undeclared_passage")
    assert [e["items"] for e in passages] == [[ahead.id], [behind.id]]
    assert ctx.bb.stray_gate_edges == 1


def test_a_doubt_no_later_item_confirms_lapses_and_pushing_resumes(tmp_path: Path) -> None:
    """A stray pair that happens to fit an item's passage puts the shape in doubt; when the
    next two items ride past gate 3 to the belt end and nothing shows at gate 4, the doubt
    lapses: the item after them is pushed again."""
    ctx = running_context(tmp_path, measured_line())
    roots = [tree(ctx, tmp_path, GUARD), tree(ctx, tmp_path)]
    feeds = [(0.0, None), (2.5, 4), (5.0, None), (20.0, 4)]
    edges = merged(passes(0.0, range(1, 4)), passes(2.5, range(1, 4)), passes(5.0, range(1, 4)),
                   passes(20.0, range(1, 4)), {12.0: [(4, True)], 12.6: [(4, False)]})  # fmt: skip
    sent = drive(ctx, roots, feeds, edges, until=40.0)
    done = {item.id: item for item in ctx.bb.items.done.recent()}
    assert done[2].outcome is Outcome.REJECTED and "more gates" in done[2].outcome_reason
    assert done[4].outcome is Outcome.SORTED and sent.count(protocol.push(4)) == 1
    assert len(records(tmp_path, "topology_doubt_lapsed")) == 1 and not ctx.bb.shape_doubt
    assert roots[0].status is py_trees.common.Status.RUNNING and not ctx.bb.fault


def close_gates(passages: dict[int, float]) -> dict[str, float]:
    """An item's times on a line whose gates are close together (0.5 s apart): the
    spacing is set by the passages (the item behind), not by the item ahead's way out of
    a window."""
    times: dict[str, float] = {}
    for gate, time in passages.items():
        head = 3.5 + 0.5 * gate
        times |= {f"gate{gate}.blocked": head, f"gate{gate}.clear": head + time,
                  f"gate{gate}.passage": time}  # fmt: skip
    return times


def test_the_spacing_rule_runs_over_the_gates_that_fire_rods() -> None:
    """A gate that only tracks fires no rod: its passage does not set the feed spacing."""
    times = close_gates({1: 3.0, 2: 0.4, 3: 0.4, 4: 0.4})
    tracking, fs_like = LineModel(topology=TRACKING_GATE), LineModel(topology=FIVE_BINS)
    for model in (tracking, fs_like):
        for _ in range(3):
            model.learning.learn(times)
    tracking_spacing, fs_spacing = tracking.spacing.safe_spacing(), fs_like.spacing.safe_spacing()
    assert tracking_spacing is not None and fs_spacing is not None
    assert fs_spacing - tracking_spacing == pytest.approx(2.6 * 1.75, abs=0.01)


def test_an_unrouted_rod_sets_no_spacing() -> None:
    """Rod 2 on gate 1 with a long passage there, routed to by no label: it never pushes,
    so gate 1's passage does not set the feed spacing (issue 20, harness seed 1097)."""
    times = close_gates({1: 3.0, 2: 0.4, 3: 0.4, 4: 0.4})
    every, routed = LineModel(topology=FIVE_BINS), LineModel(topology=FIVE_BINS, routed=[3, 4])
    for model in (every, routed):
        for _ in range(3):
            model.learning.learn(times)
    assert routed.spacing.push_gates == [2, 3] and every.spacing.push_gates == [1, 2, 3, 4]
    spacing_every, spacing_routed = every.spacing.safe_spacing(), routed.spacing.safe_spacing()
    assert spacing_every is not None and spacing_routed is not None
    assert spacing_every - spacing_routed == pytest.approx(2.6 * 1.75, abs=0.01)


def test_the_line_model_learns_and_reports_every_declared_gate(tmp_path: Path) -> None:
    model = measured_shape(FIVE_BINS)
    assert model.estimates.chain[-2:] == ("gate4.blocked", "gate4.clear")
    assert summary_section(model)["quantities"]["gate4.passage"]["median"] == 0.4
    assert len(line_section(model)["gates"]) == 4
    assert model.learning.measured(items=3)
    ctx = running_context(tmp_path, model)
    drawn = [(s["gate"], s["rod"]) for s in stations(ctx) if s["kind"] == "gate"]
    assert drawn == [(1, 2), (2, 3), (3, 4), (4, 5)]
    ctx = running_context(tmp_path, measured_shape(TRACKING_GATE))
    drawn = [(s["gate"], s["rod"]) for s in stations(ctx) if s["kind"] == "gate"]
    assert drawn == [(1, None), (2, 2), (3, 3), (4, 4)]
