"""The controller's logic on whole runs, in virtual time (bt_sorter.harness).

These were real-time whole-line runs (a broker, the simulator and run.py as processes at
--speed 10, where a busy machine's hiccup is most of a second of belt). The subject is
the controller's decisions, so they run here on the real tree, leaves, blackboard and
runner against the simulator's line core, with the network and classifier modelled: the
same run every time, in about a second. Each demands the count: on a healthy line every
item in its own bin; bin 1 only for the items the case forces there, each with its reason.
The real-process runs that remain (README command 1, each tree once, an external line,
the plant, the live page, hostile inputs, Ctrl-C) are in test_whole_line.py and others.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from bt_sorter import log as logs
from bt_sorter.config import FaultConfig, LineConfig
from bt_sorter.harness.run import Result, run_scenario
from bt_sorter.harness.scenario import Scenario, draw
from bt_sorter.harness.world import Delay, VisionModel
from bt_sorter.linemodel.priors import prior_times
from bt_sorter.sim.geometry import LineGeometry, load_line
from bt_sorter.topology import FS
from bt_sorter.vision.oddity import UNLIKE

ROOT = Path(__file__).resolve().parent.parent
PIPELINED, SEQUENTIAL = "trees/sort_pipelined.yaml", "trees/sort.yaml"
ROUTES = {"half_ripe": 3, "raw": 4, "ripe": 2}
TIMINGS = {"feed_hold": 1.5, "feed_back": 1.0, "push_hold": 1.0, "push_back": 1.0}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logs.configure("critical")


def builtin(tree: str, items: int = 8, seed: int = 3, **changes: Any) -> Scenario:
    """The built-in line (config/default.yaml's shape, routes and timings), healthy, with a
    clean classifier, the controller told nothing of the line; ``changes`` on top."""
    base = dataclasses.replace(
        draw(seed, tree),
        items=items,
        topology=FS,
        geometry=LineGeometry(),
        routes=dict(ROUTES),
        reject=(),
        timings=dict(TIMINGS),
        told_line=False,
        speed=4.0,
        faults=FaultConfig(),
        fault_kinds=(),
        stray_times=(),
        outages=(),
        vision=VisionModel(),
        fallback="hsv",
        rule_problems=(),
        latency=Delay(0.0005, 0.0005, 0.01, (0.002, 0.01)),
        lateness=Delay(0.00005, 0.0001),  # no machine hiccups: a healthy line
    )
    return dataclasses.replace(base, **changes)


def run(
    scenario: Scenario, tmp_path: Path, config: dict[str, Any] | None = None
) -> tuple[Result, list[dict[str, Any]]]:
    """Run it; the result and the record's decisions (no trace lines)."""
    record = tmp_path / "record.jsonl"
    data = scenario.config_data()
    for section, values in (config or {}).items():
        data.setdefault(section, {}).update(values)
    result = run_scenario(scenario, record=record, config_data=data)
    trace = ('"node_status"', '"picture"', '"command"', '"edge"')
    events = [
        json.loads(x) for x in record.read_text().splitlines() if not x[10:25].startswith(trace)
    ]
    return result, events


def events_of(events: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e for e in events if e["event"] == name and all(e.get(k) == v for k, v in match.items())
    ]


def in_own_bins(result: Result) -> int:
    """Items in their own rod's bin, by the line's truth."""
    return sum(v for k, v in result.bins.items() if k.isdigit() and k != "1")


# -- both trees on the built-in line ----------------------------------------------------


@pytest.mark.parametrize("tree", [SEQUENTIAL, PIPELINED])
def test_every_item_goes_into_its_own_bin_and_each_push_is_recorded(
    tree: str, tmp_path: Path
) -> None:
    result, events = run(builtin(tree, items=12), tmp_path)
    assert result.failures == []
    assert in_own_bins(result) == 12 and result.bins["1"] == 0  # the count, not "no missort"
    sorted_ = events_of(events, "item_resolved", outcome="sorted")
    assert len(sorted_) == 12
    for event in sorted_:
        (extended,) = events_of(events, "rod_extended", item=event["item"])
        (classified,) = events_of(events, "item_classified", item=event["item"])
        assert extended["rod"] == classified["rod"] == event["bin"]


def test_the_pipelined_tree_has_several_items_in_flight_and_waits_for_the_last(
    tmp_path: Path,
) -> None:
    # A slow belt: the stack is found empty while the last items still ride to their
    # rods; the run waits for them (WaitLineClear). It learns from 3 items one at a time.
    slow = dataclasses.replace(LineGeometry(), belt_speed=0.05)
    result, events = run(builtin(PIPELINED, geometry=slow), tmp_path)
    assert result.exit_code == 0 and result.failures == []
    assert in_own_bins(result) == 8
    in_flight, most = set(), 0
    for event in events:
        if event["event"] == "item_fed":
            in_flight.add(event["item"])
        elif event["event"] == "item_resolved":
            in_flight.discard(event["item"])
        most = max(most, len(in_flight))
    assert most >= 3


def test_the_pipelined_feeder_waits_until_a_rod_held_out_cannot_reach_the_next_item(
    tmp_path: Path,
) -> None:
    # Rods held out 3 s: feeding every feeder cycle (2.5 s) would put the next item into
    # the window of a rod still out for the one before; FeedIsSafe spaces the feeds.
    geo = LineGeometry()
    timings = {**TIMINGS, "push_hold": 3.0}
    spacing_s = geo.item_length / geo.belt_speed + timings["push_hold"]
    feeder_cycle = timings["feed_hold"] + timings["feed_back"]
    assert spacing_s > feeder_cycle  # the feeder alone would feed too soon
    result, events = run(builtin(PIPELINED, timings=timings), tmp_path)
    assert result.failures == [] and in_own_bins(result) == 8
    feeds = [e["t"] for e in events_of(events, "item_fed")]
    gaps = [b - a for a, b in itertools.pairwise(feeds[3:])]  # after the 3 learning items
    assert min(gaps) >= spacing_s, (gaps, spacing_s)


# -- classification: broken pictures, retry, fallback, weak answers ------------------------


def test_a_broken_picture_is_refused_unasked_and_its_item_goes_to_bin_1(tmp_path: Path) -> None:
    faults = dataclasses.replace(builtin(SEQUENTIAL).faults, corrupt_picture_rate=1.0)
    scenario = builtin(SEQUENTIAL, items=3, faults=faults, fault_kinds=("corrupt",))
    result, events = run(scenario, tmp_path)
    assert result.bins["1"] == 3 and result.failures == []
    assert result.summary["bad_inputs"] >= 3  # refused from the header, as bad input
    assert not events_of(events, "classify_failed") and not events_of(events, "picture_received")
    for resolved in events_of(events, "item_resolved"):
        assert resolved["bin"] == 1 and resolved["reason"] == "no usable picture", resolved


def test_a_failing_classifier_is_retried_then_the_fallback_sorts_the_item(tmp_path: Path) -> None:
    scenario = builtin(SEQUENTIAL, items=4, vision=VisionModel(fail_rate=1.0),
                       fallback_vision=VisionModel())  # fmt: skip
    result, events = run(scenario, tmp_path)
    assert result.failures == [] and in_own_bins(result) == 4
    for item in range(1, 5):
        assert len(events_of(events, "classify_failed", item=item, backend="primary")) == 2
        (classified,) = events_of(events, "item_classified", item=item)
        assert classified["backend"] == "hsv" and classified["label"] in ROUTES


def test_fallback_reject_sends_the_item_to_bin_1_when_the_classifier_fails(tmp_path: Path) -> None:
    scenario = builtin(SEQUENTIAL, items=3, vision=VisionModel(fail_rate=1.0), fallback="reject")
    result, events = run(scenario, tmp_path)
    assert result.bins["1"] == 3 and result.failures == []
    for item in range(1, 4):
        assert len(events_of(events, "classify_failed", item=item, backend="primary")) == 2
        (classified,) = events_of(events, "item_classified", item=item)
        assert classified["label"] == "unknown" and classified["backend"] is None
        (resolved,) = events_of(events, "item_resolved", item=item)
        assert resolved["bin"] == 1 and resolved["reason"]


def test_a_weak_answer_becomes_unknown_and_rides_to_bin_1(tmp_path: Path) -> None:
    # Every answer under the threshold; the belt also runs up 5 s before the first feed.
    scenario = builtin(SEQUENTIAL, items=3, vision=VisionModel(weak_rate=1.0),
                       timings={**TIMINGS, "belt_start_wait": 5.0})  # fmt: skip
    result, events = run(scenario, tmp_path)
    assert result.bins["1"] == 3 and result.failures == []
    (started,) = events_of(events, "belt_started")
    assert events_of(events, "item_fed")[0]["t"] - started["t"] >= 5.0
    for item in range(1, 4):  # (a 4th feed finds the stack empty: no picture, no answer)
        (event,) = events_of(events, "item_classified", item=item)
        assert event["label"] == "unknown" and event["rod"] is None
        assert event["confidence"] is not None and event["confidence"] < 0.6
        (resolved,) = events_of(events, "item_resolved", item=item)
        assert resolved["bin"] == 1 and resolved["reason"] == "no confident label"


def test_a_doubted_picture_rides_to_bin_1_with_its_own_reason_however_confident(
    tmp_path: Path,
) -> None:
    # Every answer confident (>= 0.75, over the 0.6 threshold) but doubted by the back end
    # (the picture is unlike any trained one): not acted on, and the reason says why.
    scenario = builtin(SEQUENTIAL, items=3, vision=VisionModel(odd_rate=1.0))
    result, events = run(scenario, tmp_path)
    assert result.bins["1"] == 3 and result.failures == []
    for item in range(1, 4):
        (event,) = events_of(events, "item_classified", item=item)
        assert event["label"] == "unknown" and event["rod"] is None
        assert event["confidence"] >= 0.75
        (resolved,) = events_of(events, "item_resolved", item=item)
        assert resolved["bin"] == 1 and resolved["reason"] == UNLIKE


# -- pushing ------------------------------------------------------------------------------


def test_a_push_later_than_max_delay_after_its_edge_is_given_up(tmp_path: Path) -> None:
    trees = tmp_path / "trees"
    shutil.copytree(ROOT / "trees", trees)
    one_item = trees / "one_item.yaml"
    text, count = re.subn(
        r"^( *)- PushRod: (.*)$",
        lambda m: f"{m[1]}- PushRod: {m[2]}\n{m[1]}  max_delay: 0.000001",
        one_item.read_text(),
        flags=re.MULTILINE,
    )
    assert count == 1
    one_item.write_text(text)  # no push can follow its edge within a microsecond
    result, events = run(builtin(str(trees / "sort.yaml"), items=3), tmp_path)
    assert result.bins["1"] == 3 and not result.wrong_bin
    assert events_of(events, "rod_extended") == []  # no late push went out
    gave_up = [
        e for e in events_of(events, "item_resolved") if "could not be pushed" in e["reason"]
    ]
    assert len(gave_up) == 3


# -- lines the controller was not told, and lines that change --------------------------------


@pytest.mark.parametrize("tree", [SEQUENTIAL, PIPELINED])
@pytest.mark.parametrize("line", ["fast_short", "large_items", "slow_long"])
def test_every_item_is_sorted_on_a_line_the_controller_was_not_told(
    line: str, tree: str, tmp_path: Path
) -> None:
    geometry = load_line(ROOT / "config" / "lines" / f"{line}.yaml").geometry
    result, _ = run(builtin(tree, items=10, geometry=geometry, speed=3.0), tmp_path)
    assert result.failures == [] and in_own_bins(result) == 10


def test_a_wrong_configured_line_is_reported_and_overruled(tmp_path: Path) -> None:
    # The controller is told the built-in line; the line is slow_long.
    geometry = load_line(ROOT / "config" / "lines" / "slow_long.yaml").geometry
    scenario = builtin(PIPELINED, items=10, geometry=geometry)
    told = dataclasses.asdict(LineGeometry())
    result, _ = run(scenario, tmp_path, {"line": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in told.items()}})  # fmt: skip
    assert result.failures == [] and in_own_bins(result) == 10
    measured = result.summary["measured_line"]
    mismatched = {m["quantity"]: m for m in measured["geometry_mismatches"]}
    assert {"picture", "gate1.blocked", "gate1.clear"} <= set(mismatched), measured
    truth = prior_times(LineConfig(**told))  # what the config said ...
    line = prior_times(LineConfig(**dataclasses.asdict(geometry)))  # ... and the line
    gate1 = mismatched["gate1.blocked"]
    assert gate1["configured"] == pytest.approx(truth["gate1.blocked"])
    assert gate1["measured"] == pytest.approx(line["gate1.blocked"], rel=0.05)


def test_the_pipelined_tree_follows_a_belt_that_slows_by_20_percent(tmp_path: Path) -> None:
    faults = dataclasses.replace(builtin(PIPELINED).faults, belt_drift_at=40.0,
                                 belt_drift_factor=0.8)  # fmt: skip
    result, _ = run(builtin(PIPELINED, items=20, faults=faults), tmp_path)
    assert result.failures == [] and in_own_bins(result) == 20
    assert result.summary["line"]["faults"]["belt_drifts"] == 1  # it happened mid-run
    passage = result.summary["measured_line"]["quantities"]["gate1.passage"]["median"]
    assert passage == pytest.approx(0.06 / (0.1 * 0.8), rel=0.05)  # the slowed belt's


def test_fast_timings_whose_feeds_come_up_empty_lose_and_missort_nothing(tmp_path: Path) -> None:
    """Issue 15's fast set (rod 1 held 0.6 s, back 0.3 s, rods held 0.4 s) against a feeder
    whose stroke takes 0.58 s: a push that reaches the line a little late is pulled back
    before its stroke is done, and the feed puts nothing on the belt. The next item's
    events must not be taken for the empty feed's; the learned spacing stays the line's."""
    geometry = dataclasses.replace(LineGeometry(), feeder_stroke_time=0.58)
    timings = {"feed_hold": 0.6, "feed_back": 0.3, "push_hold": 0.4, "push_back": 1.0}
    scenario = builtin(PIPELINED, items=30, seed=1, geometry=geometry, timings=timings,
                       speed=10.0)  # fmt: skip
    result, _ = run(scenario, tmp_path)
    assert result.failures == [] and in_own_bins(result) == 30
    assert result.summary["feeder_misses"] >= 1  # the case happened
    assert result.summary["measured_line"]["safe_spacing_s"] < 10.0  # no outlier learned
