"""Physics of the simulated line (bt_sorter.sim.line) at explicit line times, no broker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bt_sorter.config import LineConfig, load_config
from bt_sorter.protocol import ALL_PULL, BELT_RUN, BELT_STOP, Action, Command, pull, push
from bt_sorter.sim.geometry import (
    LineFile,
    LineGeometry,
    geometry_of,
    load_line,
    min_item_spacing,
)
from bt_sorter.sim.line import (
    JAM,
    STUCK,
    GateChanged,
    ItemResolved,
    Line,
    LineEvent,
    PictureDue,
    RodState,
    draw_labels,
)
from bt_sorter.sim.summary import summarise

ROOT = Path(__file__).resolve().parent.parent
GEO = geometry_of(load_config())
V = GEO.belt_speed
L = GEO.item_length
STROKE = GEO.feeder_stroke_time


Script = list[tuple[float, Command]]


def running_line(labels: list[str], geo: LineGeometry = GEO, **kwargs: object) -> Line:
    """A line with the belt running from t=0."""
    line = Line(geo, labels, **kwargs)  # type: ignore[arg-type]
    line.apply(BELT_RUN, 0.0)
    return line


def run_script(line: Line, script: list[tuple[float, Command]], until: float) -> list[LineEvent]:
    """Apply timed commands in time order, then advance to ``until``; every event."""
    events: list[LineEvent] = []
    for at, command in sorted(script, key=lambda step: step[0]):
        events += line.apply(command, at)
    return events + line.advance(until)


def feed(script: list[tuple[float, Command]], at: float) -> float:
    """Push rod 1 at ``at``, pull it 1.5 s later; the time the item lands on the belt."""
    script += [(at, push(1)), (at + 1.5, pull(1))]
    return at + STROKE


def time_tail_reaches(position: float, landed: float) -> float:
    return landed + position / V


def bins(line: Line) -> dict[int, object]:
    return {item.id: item.bin for item in line.items}


def gate_1_fall(landed: float) -> float:
    return time_tail_reaches(GEO.gate_positions[0], landed)


def test_push_on_gate_1_falling_edge_lands_item_in_bin_2() -> None:
    script: list[tuple[float, Command]] = []
    landed = feed(script, 0.0)
    events = run_script(running_line(["ripe"]), script, 20.0)
    falls = [e for e in events if isinstance(e, GateChanged) and e.gate == 1 and not e.blocked]
    assert falls and falls[0].time == pytest.approx(gate_1_fall(landed))
    line = running_line(["ripe"])
    run_script(line, [*script, (falls[0].time, push(2)), (falls[0].time + 1, pull(2))], 30.0)
    assert bins(line) == {1: 2}
    assert line.items[0].why == "swept by rod 2"


def test_push_two_lengths_late_misses_the_item() -> None:
    script: list[tuple[float, Command]] = []
    late = gate_1_fall(feed(script, 0.0)) + 2 * L / V
    line = running_line(["ripe"])
    run_script(line, [*script, (late, push(2)), (late + 1.0, pull(2))], 30.0)
    assert bins(line) == {1: 1}
    assert line.items[0].why == "fell off the belt end"


def test_push_with_two_items_in_the_window_takes_both() -> None:
    # rod 1 fed twice quickly: the second item lands as soon as the first cleared the feed zone
    second_push = (GEO.feed_zone + 0.005) / V
    script: list[tuple[float, Command]] = [(0.0, push(1)), (STROKE, pull(1))]
    script += [(second_push, push(1)), (second_push + STROKE, pull(1))]
    start, end = GEO.rod_window_of(2)
    gap = GEO.feed_zone + 0.005 - L
    first_tail = (start + gap + end) / 2  # the second's head is in, the first's tail not out
    both_in = time_tail_reaches(first_tail, STROKE)
    script += [(both_in, push(2)), (both_in + 1.0, pull(2))]
    line = running_line(["ripe", "raw"])
    run_script(line, script, 40.0)
    assert bins(line) == {1: 2, 2: 2}


def test_feeding_onto_an_item_in_the_feed_zone_is_a_jam() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    script += [(0.6, BELT_STOP)]  # the first item stays in the feed zone
    feed(script, 2.0)
    line = running_line(["ripe", "raw", "half_ripe"])
    events = run_script(line, script, 5.0)
    jams = [e for e in events if isinstance(e, ItemResolved) and e.bin == JAM]
    assert {e.item for e in jams} == {1, 2}
    assert line.items[1].why == "collided while feeding"
    assert line.items[2].bin is None and len(line.stack) == 1


def test_feeding_after_the_feed_zone_cleared_is_no_jam() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    feed(script, STROKE + GEO.feed_zone / V + 0.1)
    line = running_line(["ripe", "raw"])
    run_script(line, script, 5.0)
    assert len(line.belt) == 2 and all(item.bin is None for item in line.items)


def test_extended_rod_left_out_diverts_the_next_item() -> None:
    script: list[tuple[float, Command]] = [(0.0, push(3))]
    feed(script, 0.0)
    line = running_line(["raw"])
    run_script(line, script, 30.0)
    assert bins(line) == {1: 3}


def test_item_nobody_takes_falls_into_bin_1_after_all_three_gates() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    line = running_line(["half_ripe"])
    events = run_script(line, script, 30.0)
    edges = [(e.gate, e.blocked) for e in events if isinstance(e, GateChanged)]
    assert edges == [(1, True), (1, False), (2, True), (2, False), (3, True), (3, False)]
    assert bins(line) == {1: 1}
    rising, falling = line.items[0].gate_edges[2][0]
    assert falling - rising == pytest.approx(L / V)


def test_camera_sends_one_picture_per_item_after_the_camera_delay() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    feed(script, 3.0)
    events = run_script(running_line(["ripe", "raw"]), script, 30.0)
    pictures = [e for e in events if isinstance(e, PictureDue)]
    assert [p.item for p in pictures] == [1, 2]
    expected = time_tail_reaches(GEO.camera_position - L / 2, STROKE) + GEO.camera_delay
    assert pictures[0].time == pytest.approx(expected)


def test_stopped_belt_holds_items_and_rod_1_pushed_twice_feeds_once() -> None:
    line = Line(GEO, ["ripe", "raw"])
    run_script(line, [(0.0, push(1)), (0.2, push(1))], 10.0)
    assert len(line.belt) == 1 and line.belt[0].tail == 0.0
    assert len(line.stack) == 1


def test_stuck_item_stays_at_gate_2_and_holds_the_next_one_back() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    feed(script, 3.0)
    line = running_line(["ripe", "raw"], stuck_item=1)
    run_script(line, script, 60.0)
    assert line.gate_blocked[1]
    assert [i.id for i in line.belt] == [1, 2]
    assert line.belt[1].tail + L == pytest.approx(line.belt[0].tail)
    left = line.finish(61.0)
    assert [i.bin for i in left] == [STUCK, "on_belt"]


def test_stalled_belt_moves_nothing_although_running() -> None:
    script: list[tuple[float, Command]] = []
    feed(script, 0.0)
    line = running_line(["ripe"], stall_at=2.0)
    run_script(line, script, 30.0)
    assert line.belt_running
    assert line.belt[0].tail == pytest.approx((2.0 - STROKE) * V)


def test_many_items_in_flight_each_reach_their_own_bin() -> None:
    labels = ["ripe", "half_ripe", "raw", "unknown"] * 3
    routes = {"ripe": 2, "half_ripe": 3, "raw": 4}
    script: list[tuple[float, Command]] = []
    for k, label in enumerate(labels):
        landed = feed(script, k * 2.0)
        rod = routes.get(label)
        if rod:
            at = time_tail_reaches(GEO.gate_positions[rod - 2], landed)
            script += [(at, push(rod)), (at + 0.4, pull(rod))]
    line = running_line(labels)
    run_script(line, script, 200.0)
    assert [item.bin for item in line.items] == [routes.get(x, 1) for x in labels]


def test_labels_follow_seed_and_mix() -> None:
    assert draw_labels(50, 3, {"ripe": 1, "raw": 1}) == draw_labels(50, 3, {"ripe": 1, "raw": 1})
    assert set(draw_labels(50, 3, {"ripe": 1.0, "raw": 0.0})) == {"ripe"}
    with pytest.raises(ValueError):
        draw_labels(5, 1, {"ripe": 0.0})


def test_retracting_rod_does_not_sweep_and_states_follow_the_stroke() -> None:
    script: list[tuple[float, Command]] = []
    landed = feed(script, 0.0)
    start, _ = GEO.rod_window_of(2)
    enters = time_tail_reaches(start - L, landed)  # the head reaches the window
    pulled = enters - 0.05  # retracting (0.2 s stroke) while the item comes in
    line = running_line(["ripe"])
    run_script(line, [*script, (pulled - 0.5, push(2))], pulled - 0.4)
    assert line.rod_state(2) is RodState.EXTENDING
    run_script(line, [], pulled)
    assert line.rod_state(2) is RodState.EXTENDED
    run_script(line, [(pulled, pull(2))], enters + 0.01)
    assert line.rod_state(2) is RodState.RETRACTING
    line.advance(30.0)
    assert line.rod_state(2) is RodState.RETRACTED
    assert bins(line) == {1: 1}


def test_belt_drift_changes_the_speed_from_its_time_on() -> None:
    line = running_line(["raw"], drift_at=5.0, drift_factor=0.8)
    script: list[tuple[float, Command]] = []
    landed = feed(script, 0.0)

    events = run_script(line, script, until=30.0)

    slow = 0.8 * V
    at_drift = V * (5.0 - landed)  # the tail's position when the belt slows
    edges = [(e.gate, e.blocked, e.time) for e in events if isinstance(e, GateChanged)]
    expected = [(1, True, landed + (GEO.gate_positions[0] - L) / V)]  # before the drift
    for gate, position in enumerate(GEO.gate_positions, start=1):
        if gate > 1:
            expected.append((gate, True, 5.0 + (position - L - at_drift) / slow))
        expected.append((gate, False, 5.0 + (position - at_drift) / slow))
    assert [e[:2] for e in edges] == [e[:2] for e in expected]
    assert [e[2] for e in edges] == pytest.approx([e[2] for e in expected])
    assert line.belt_speed == pytest.approx(slow)


# -- lines of another shape (config/lines/five_bins.yaml, tracking_gate.yaml) ------------

FIVE_BINS = load_line(ROOT / "config" / "lines" / "five_bins.yaml")
TRACKING_GATE = load_line(ROOT / "config" / "lines" / "tracking_gate.yaml")


def shaped_script(shape: LineFile, pushes: list[tuple[int, int | None]], every: float) -> Script:
    """Feed one item every ``every`` s; push (rod) on the clear edge of ``gate`` for each."""
    geo = shape.geometry
    script: Script = []
    for k, (gate, rod) in enumerate(pushes):
        landed = k * every + geo.feeder_stroke_time
        script += [(k * every, push(1)), (k * every + 1.5, pull(1))]
        if rod is not None:
            at = landed + geo.gate_positions[gate - 1] / geo.belt_speed
            script += [(at, push(rod)), (at + 1.0, pull(rod))]
    return script


def test_five_bin_line_sends_each_item_to_the_rod_past_its_gate() -> None:
    topology = FIVE_BINS.topology
    pushes = [(topology.gate_of(rod), rod) for rod in (2, 3, 4, 5)] + [(4, None)]
    line = Line(FIVE_BINS.geometry, ["a", "b", "c", "d", "e"], topology=topology)
    line.apply(BELT_RUN, 0.0)
    events = run_script(line, shaped_script(FIVE_BINS, pushes, every=12.0), 80.0)
    assert bins(line) == {1: 2, 2: 3, 3: 4, 4: 5, 5: 1}
    assert line.items[3].why == "swept by rod 5"
    edges = [(e.gate, e.blocked) for e in events if isinstance(e, GateChanged)]
    assert edges[-8:] == [(g, b) for g in (1, 2, 3, 4) for b in (True, False)]  # item 5


def test_a_rod_past_a_tracking_gate_takes_items_at_its_own_gate_only() -> None:
    # tracking_gate: gate 1 fires no rod, rod 2 stands past gate 2
    line = Line(TRACKING_GATE.geometry, ["early", "right"], topology=TRACKING_GATE.topology)
    line.apply(BELT_RUN, 0.0)
    run_script(line, shaped_script(TRACKING_GATE, [(1, 2), (2, 2)], every=15.0), 40.0)
    assert bins(line) == {1: 1, 2: 2}


def test_all_pull_moves_every_rod_of_a_five_rod_line() -> None:
    line = Line(FIVE_BINS.geometry, ["a"], topology=FIVE_BINS.topology)
    line.apply(Command(Action.PUSH, 0), 0.0)
    line.advance(1.0)
    assert {r: line.rod_state(r) for r in line.rods} == dict.fromkeys(
        (1, 2, 3, 4, 5), RodState.EXTENDED
    )
    line.apply(ALL_PULL, 1.0)
    assert {r: line.rod_state(r) for r in line.rods} == dict.fromkeys(
        (1, 2, 3, 4, 5), RodState.RETRACTING
    )
    with pytest.raises(ValueError, match="no rod 6"):
        line.apply(push(6), 2.0)


def test_a_line_whose_gate_positions_disagree_with_its_topology_is_refused() -> None:
    with pytest.raises(ValueError, match=r"4 gates .* but 3 gate positions"):
        Line(GEO, ["a"], topology=FIVE_BINS.topology)


def test_the_summary_counts_every_bin_of_the_line_even_when_empty() -> None:
    line = Line(FIVE_BINS.geometry, ["a"], topology=FIVE_BINS.topology)
    line.finish(0.0)
    summary = summarise(line, {"a": 5}, stats={}, faults={}, ended_because="test", speed=1, seed=1)
    assert summary["bins"] == {
        **dict.fromkeys(("1", "2", "3", "4", "5"), 0),
        **{JAM: 0, STUCK: 0, "on_belt": 0, "not_fed": 1},
    }


@pytest.mark.parametrize("shape", [FIVE_BINS, TRACKING_GATE], ids=["five_bins", "tracking_gate"])
def test_items_fed_at_the_configs_min_spacing_each_reach_their_bin(shape: LineFile) -> None:
    """min_item_spacing holds on a line of any shape: fed that far apart (a fast
    feeder, so that spacing binds) and pushed at their gates, every item reaches its bin;
    a fifth closer, a rod still out takes the next item too."""
    config = load_config().replace(
        topology=shape.topology, line=LineConfig(**dataclasses.asdict(shape.geometry))
    )
    config = config.replace(
        timings=dataclasses.replace(config.timings, feed_hold=0.6, feed_back=0.3)
    )
    geo, t = geometry_of(config), config.timings
    assert geo == shape.geometry
    rods = [*shape.topology.classifying_rods, None]
    labels = [str(rods[k % len(rods)]) for k in range(12)]

    def sorted_bins(every: float) -> list[object]:
        script: Script = []
        for k, label in enumerate(labels):
            script += [(k * every, push(1)), (k * every + t.feed_hold, pull(1))]
            if label != "None":
                rod = int(label)
                gate = geo.gate_positions[shape.topology.gate_of(rod) - 1]
                at = k * every + geo.feeder_stroke_time + gate / geo.belt_speed
                script += [(at, push(rod)), (at + t.push_hold, pull(rod))]
        line = Line(geo, labels, topology=shape.topology)
        line.apply(BELT_RUN, 0.0)
        run_script(line, script, len(labels) * every + 30.0)
        return [item.bin for item in line.items]

    spacing = min_item_spacing(geo, t) / geo.belt_speed
    assert spacing > t.feeder_cycle()  # the spacing binds, not the feeder
    assert sorted_bins(spacing + 0.01) == [int(x) if x != "None" else 1 for x in labels]
    assert sorted_bins(spacing * 0.8) != [int(x) if x != "None" else 1 for x in labels]
