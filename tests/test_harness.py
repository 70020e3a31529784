"""The deterministic simulation (bt_sorter.harness): the real controller against the
simulator's line core in virtual time.

- the same seed gives the same run, byte for byte (record, ledger, summary), in this
  process and in another;
- the oracles catch a controller that sorts wrong or not at all (they can fail);
- every seed that ever found a defect stays here as a named regression;
- the CI batch: :data:`BATCH` seeded scenarios (both trees, random lines, topologies,
  timings, faults, classifier errors), with 0 items in a wrong bin, 0 unexplained, no
  false alarm, no unsafe stop.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bt_sorter import log as logs
from bt_sorter.harness.__main__ import report, run_batch, table
from bt_sorter.harness.run import run_scenario
from bt_sorter.harness.scenario import (
    HARNESS_FAULTS,
    PHYSICAL_FAULTS,
    TREES,
    WIRE_FAULTS,
    Scenario,
    draw,
)

ROOT = Path(__file__).resolve().parent.parent
PIPELINED, SEQUENTIAL = "trees/sort_pipelined.yaml", "trees/sort.yaml"
BATCH = 300  # scenarios in CI (about 6,600 items)
BATCH_SEED = 1000

# Seeds that found a defect, each with what it was. They run in every suite.
REGRESSIONS = {
    # A corrupt picture made the feed "empty" as soon as the picture's deadline passed;
    # the next feed took the item's gate edges and pushed a ripe item into bin 3.
    "empty_feed_called_before_gate_1_on_a_broken_picture": (121, PIPELINED),
    # The spacing kept the item behind off the push for the item ahead, not the other
    # way round: a raw item riding on to bin 1 was still in rod 2's window (wide, gates
    # far apart) when the ripe item behind cleared gate 3, and was swept with it.
    "item_ahead_still_in_the_window_of_the_push_for_the_item_behind": (100141, PIPELINED),
    "item_ahead_still_in_the_window_under_corrupt_pictures": (100129, PIPELINED),
    # Gates closer than an item's length: its head blocked the next gate before rod 2 had
    # swept it; that blocked edge was taken for a missed push, the item "back on the
    # belt" was then overdue at gate 3, and a false stalled-belt alarm stopped the line.
    "a_head_at_the_next_gate_before_the_sweep_is_no_missed_push": (1130, PIPELINED),
    # Issue 20: no label routed to the rods past gate 7 of 8 (nor to bin 1), so no item
    # reached gate 8; LineMeasured waited for its edges and the tree fed one item at a
    # time for ever (18 % of the measured limit). Seed 1097: the same on 5 gates, rod 5
    # at gate 4 unused and gate 5 a tracking gate.
    "pipelines_when_no_item_reaches_the_last_gates": (1000, PIPELINED),
    "pipelines_when_no_item_reaches_the_last_gates_5_gates": (1097, PIPELINED),
    # Issue 20: an item stuck at gate 2; the item held behind it was swept into bin 2 by
    # rod 2's push for the next one, the watchdogs excused the stuck item as "bunched"
    # with the held one (and that one with an empty feed), and the run ended exit 0.
    "stuck_item_alarms_and_no_push_sweeps_the_item_held_behind_it": (1201, PIPELINED),
    # Issue 20: the last item stuck at gate 2 was taken as bunched with a feed behind it
    # that put nothing on the belt (the stack was empty): no alarm, exit 0 "stack empty".
    "stuck_last_item_not_excused_by_an_empty_feed_behind_it": (1543, PIPELINED),
    # Issue 20: after a corrupt picture each item took its follower's picture (it was in
    # gate 1, past its own picture's deadline), and the shifted picture time was learned
    # as a line that changed: items 23, 25 and 26 went to other labels' bins. (Since the
    # LineMeasured fix this run pipelines sooner and no longer takes that path; the leaf
    # tests in test_linemodel.py hold both parts of the fix.)
    "a_lost_picture_does_not_shift_the_next_pictures": (1225, PIPELINED),
    # Issue 20: the last item stuck at the last gate: no item behind it was left to miss
    # its edges there, it "rode to the belt end", and the run ended exit 0 with the gate
    # blocked. A run now ends well only on a clear line.
    "last_item_stuck_at_the_last_gate_alarms": (100735, PIPELINED),
    "last_item_stuck_at_the_last_gate_alarms_sequential": (102374, SEQUENTIAL),
    "last_item_stuck_at_the_last_gate_alarms_when_the_tree_succeeds": (102977, PIPELINED),
    # A line outside the course's rule with lost messages: item 9's pair of edges at gate
    # 1 lost, each item after it took the next one's gate edges. The push guard (its
    # picture and gate 1 a feed interval off their gap) held the first ripe one back, but
    # three such items were learned as a slower belt, the shift then fit the model, and
    # rod 2's pushes for items 17 and 19 swept the raw and half-ripe items 18 and 20.
    "gate_edges_one_item_late_are_not_learned_as_a_slower_belt": (103145, PIPELINED),
}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logs.configure("critical")


def healthy(seed: int, tree: str) -> Scenario:
    """The first healthy scenario of the FS shape from ``seed`` on."""
    while True:
        scenario = draw(seed, tree)
        if scenario.healthy and scenario.topology.gates == 3 and len(scenario.routes) == 3:
            return scenario
        seed += 1


@pytest.mark.parametrize("tree", TREES)
def test_same_seed_same_run_byte_for_byte(tree: str, tmp_path: Path) -> None:
    seed = 121 if tree == PIPELINED else 2  # a corrupt + hiccups run, and a drop run
    runs = []
    for k in range(2):
        record, ledger = tmp_path / f"r{k}.jsonl", tmp_path / f"l{k}.jsonl"
        result = run_scenario(draw(seed, tree), record=record, ledger=ledger)
        summary = json.dumps(result.summary, sort_keys=True, default=str)
        runs.append((record.read_bytes(), ledger.read_bytes(), summary))
    assert runs[0] == runs[1]
    assert runs[0][0].count(b'"item_resolved"') >= 15  # a whole run, not an empty file
    # Another process (another hash seed) writes the same record.
    other = tmp_path / "other.jsonl"
    cmd = [sys.executable, "-m", "bt_sorter.harness", "--scenarios", "1", "--seed", str(seed),
           "--tree", tree, "--record", str(other)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300, check=False)
    assert other.read_bytes() == runs[0][0]


def test_a_healthy_line_sorts_every_item_into_its_own_bin() -> None:
    scenario = healthy(1, PIPELINED)
    result = run_scenario(scenario)
    vision_bin_1 = result.items - result.correct - result.vision_errors
    assert result.failures == []
    assert result.correct + result.vision_errors + vision_bin_1 == result.items
    rods = sum(v for k, v in result.bins.items() if k.isdigit() and k != "1")
    assert rods >= result.items * 0.8  # most items in a rod's bin, not bin 1
    assert result.exit_code == 0 and not result.alarms


def test_the_oracles_catch_a_controller_that_pushes_the_wrong_rods() -> None:
    scenario = healthy(1, SEQUENTIAL)
    data = scenario.config_data()
    routes = data["sorting"]["routes"]
    labels = sorted(routes)
    data["sorting"]["routes"] = {a: routes[b] for a, b in zip(labels, labels[1:] + labels[:1],
                                                               strict=True)}  # fmt: skip
    result = run_scenario(scenario, config_data=data)
    assert len(result.wrong_bin) >= scenario.items // 2
    assert any("in bin" in f for f in result.failures)


def test_the_oracles_catch_a_controller_that_sends_everything_to_bin_1() -> None:
    scenario = healthy(1, PIPELINED)
    data = scenario.config_data()
    data["sorting"]["confidence_threshold"] = 1.0  # every answer is too weak to act on
    result = run_scenario(scenario, config_data=data)
    assert result.bins["1"] == scenario.items
    assert len(result.unforced_bin1) >= scenario.items * 0.8
    assert any("bin 1 without cause" in f for f in result.failures)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    seed, tree = REGRESSIONS[name]
    result = run_scenario(draw(seed, tree))
    assert result.failures == [], f"{name}: {result.failures}\n{result.reproducer()}"


CHUNKS = 10  # the batch in parts, so that the suite's processes share it


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_seeded_scenarios(chunk: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The CI batch (both trees drawn), a tenth of it per test. Prints the part's table:
    ``python -m bt_sorter.harness --scenarios 300 --seed 1000`` prints the whole one."""
    size = BATCH // CHUNKS
    seeds = range(BATCH_SEED + chunk * size, BATCH_SEED + (chunk + 1) * size)
    # in a process of lower priority: the real-time runs beside it in the suite come first
    results = [result for result, _ in run_batch(seeds, None, "oracle", jobs=1, nice=5)]
    failed = [r for r in results if r.failures]
    lines = [f"{r.scenario.describe()}: {r.failures}\n  {r.reproducer()}" for r in failed]
    with capsys.disabled():
        print(f"\n{table(results)}\n{report(results, 1.0, 1.0, 1).splitlines()[0]}")
    assert sum(r.items for r in results) >= 6000 // CHUNKS
    assert lines == [], "\n".join(lines)


def test_the_batch_draws_both_trees_every_fault_kind_and_many_shapes() -> None:
    scenarios = [draw(seed) for seed in range(BATCH_SEED, BATCH_SEED + BATCH)]
    assert {s.tree for s in scenarios} == set(TREES)
    kinds = {k for s in scenarios for k in s.fault_kinds}
    assert kinds == set(WIRE_FAULTS + PHYSICAL_FAULTS + HARNESS_FAULTS)
    assert sum(s.healthy for s in scenarios) >= BATCH // 5
    assert sum(bool(s.rule_problems) for s in scenarios) >= BATCH // 20
    assert {s.topology.gates for s in scenarios} == set(range(2, 9))
    assert sum(s.items for s in scenarios) >= 6000


def test_the_shipped_model_on_rendered_pictures_sorts_a_healthy_line() -> None:
    """Some scenarios run the real ResNet on each rendered picture (``--classifier model``)."""
    scenario = dataclasses.replace(healthy(1, PIPELINED), classifier="model", items=15)
    result = run_scenario(scenario)
    assert result.failures == []
    rods = sum(v for k, v in result.bins.items() if k.isdigit() and k != "1")
    assert rods + result.bins["1"] == 15 and rods >= 13  # the model is right on its renders
    assert result.vision_errors == 0
