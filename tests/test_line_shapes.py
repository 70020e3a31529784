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
from bt_sorter.linemodel import LineModel
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


def test_edges_of_an_undeclared_gate_stop_the_pushing_and_then_raise_the_alarm(
    tmp_path: Path,
) -> None:
    """config says the FS scene (three gates); the line sends a fourth gate's edges: a rod's
    gate may not be what config says, so nothing more is pushed (bin 1, with the reason),
    and once such edges keep coming the inputs are distrusted (the abort branch's alarm)."""
    ctx = running_context(tmp_path, measured_line())
    root = tree(ctx, tmp_path)
    guard = tree(ctx, tmp_path, "root:\n  InputsTrusted: inputs are trustworthy\n")
    ahead, behind = fed(ctx, 0.0, rod=3), fed(ctx, 2.5, rod=4)
    step(ctx, root, 4.0, (4, True))
    assert guard.tick_once() is None and guard.status is py_trees.common.Status.RUNNING
    for item in (ahead, behind):
        assert item.uncertain
        assert item.reject_reason.startswith("the line has more gates than config.topology")
    for t, edge in ((4.9, (1, True)), (5.5, (1, False)), (7.9, (2, True)), (8.5, (2, False))):
        assert step(ctx, root, t, edge) == []  # gate 2's clear edge would fire rod 3
    assert ahead.outcome is None and ahead.cleared == 2
    ctx.bb.ingest([Received(9.0, protocol.GateEdge(4, b)) for b in (False, True)])
    guard.tick_once()
    assert guard.status is py_trees.common.Status.FAILURE
    assert "more gates than config.topology declares: 3 edges of gate 4" in ctx.bb.fault


def test_the_spacing_rule_runs_over_the_gates_that_fire_rods() -> None:
    """A gate that only tracks fires no rod: its passage does not set the feed spacing."""
    times = {f"gate{g}.passage": 0.4 for g in (2, 3, 4)} | {"gate1.passage": 3.0}
    tracking, fs_like = LineModel(topology=TRACKING_GATE), LineModel(topology=FIVE_BINS)
    for model in (tracking, fs_like):
        for _ in range(3):
            model.learn(times)
    tracking_spacing, fs_spacing = tracking.safe_spacing(), fs_like.safe_spacing()
    assert tracking_spacing is not None and fs_spacing is not None
    assert fs_spacing - tracking_spacing == pytest.approx(2.6 * 1.75, abs=0.01)


def test_the_line_model_learns_and_reports_every_declared_gate(tmp_path: Path) -> None:
    model = measured_shape(FIVE_BINS)
    assert model.chain[-2:] == ("gate4.blocked", "gate4.clear")
    assert model.report()["quantities"]["gate4.passage"]["median"] == 0.4
    assert len(model.line_section()["gates"]) == 4
    assert model.measured(items=3)
    ctx = running_context(tmp_path, model)
    drawn = [(s["gate"], s["rod"]) for s in stations(ctx) if s["kind"] == "gate"]
    assert drawn == [(1, 2), (2, 3), (3, 4), (4, 5)]
    ctx = running_context(tmp_path, measured_shape(TRACKING_GATE))
    drawn = [(s["gate"], s["rod"]) for s in stations(ctx) if s["kind"] == "gate"]
    assert drawn == [(1, None), (2, 2), (3, 3), (4, 4)]
