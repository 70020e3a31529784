"""A tree sorts a line of another shape end to end (issue 11's "done when").

The built-in simulator runs a line file of another shape (``config/lines/``: four gates;
five bins, or a gate 1 that only tracks); the controller gets a config a user would
write for it (:func:`line_runs.shaped_config`: the line's ``topology:``, routes, no
``line:``) and the unchanged trees ``trees/sort.yaml`` and ``trees/sort_pipelined.yaml``.
The simulator's truth counts: every item in its bin, none missorted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from line_runs import ROOT, SHAPED_LINE_FILES, run_unknown_line, shaped_config, speed_for

from bt_sorter.config import load_config
from bt_sorter.replay import Session, account, read_record
from bt_sorter.sim.line import draw_labels

TREES = {"sequential": "trees/sort.yaml", "pipelined": "trees/sort_pipelined.yaml"}
ITEMS = {"sequential": 6, "pipelined": 10}
SEED = 1  # 6 items: 2 of each label; 10 items: 3 ripe, 3 half_ripe, 4 raw
# tracking_gate: the FS classes and model, with a config written from the line file;
# five_bins: the shipped config/five_bins.yaml (four classes, the four-class model).
ROUTES = {"tracking_gate": {"ripe": 2, "half_ripe": 3, "raw": 4}}
FIVE_BINS = ROOT / "config" / "five_bins.yaml"


def _config_for(tmp_path: Path, line: Path) -> Path:
    if line.stem == "five_bins":
        return FIVE_BINS
    return shaped_config(tmp_path, line, ROUTES[line.stem])


# One real-process run: the pipelined tree on the five-bin line with the shipped config
# and the four-class model. Random topologies (2 to 8 gates, tracking gates, unused rods)
# with both trees run in virtual time in the harness batch (tests/test_harness.py).
PLAN = [("pipelined", path) for path in SHAPED_LINE_FILES if path.stem == "five_bins"]


@pytest.mark.slow
@pytest.mark.parametrize(("tree", "line"), PLAN, ids=[f"{t}-{p.stem}" for t, p in PLAN])
def test_a_tree_sorts_a_line_of_another_shape_from_config_alone(
    tree: str, line: Path, tmp_path: Path
) -> None:
    items = ITEMS[tree]
    config = _config_for(tmp_path, line)
    routes = load_config(config).sorting.routes
    run = run_unknown_line(
        tmp_path, tree=TREES[tree], line=line, geometry="none", items=items,
        speed=speed_for(line), seed=SEED, config=config,
    )  # fmt: skip

    truth = run.truth
    assert run.code == 0, run.explain()
    assert truth["missorted"] == 0 and truth["correct"] == items, run.explain()
    assert truth["jammed"] == truth["lost"] == truth["not_fed"] == 0, run.explain()
    labels = draw_labels(items, SEED, load_config(config).sim.mix)
    assert [r["bin"] for r in run.ledger] == [routes[label] for label in labels]
    assert run.summary["outcomes"] == {"sorted": items}, run.explain()
    assert run.summary["topology"] == load_config(config).topology.describe()


def test_check_prints_the_topology_and_one_rod_branch_per_declared_rod(tmp_path: Path) -> None:
    line = next(path for path in SHAPED_LINE_FILES if path.stem == "tracking_gate")
    config = shaped_config(tmp_path, line, ROUTES[line.stem])
    done = subprocess.run(
        [sys.executable, "run.py", "--tree", TREES["pipelined"], "--config", str(config),
         "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "topology: 4 gates; rod 2@gate 2, rod 3@gate 3, rod 4@gate 4" in done.stdout
    pushes = [x.split("--> ")[1] for x in done.stdout.splitlines() if "--> push rod" in x]
    assert [p.removesuffix(" [-]") for p in pushes] == [
        f"push rod {rod} when its item clears gate {rod}" for rod in (2, 3, 4)
    ]


def test_the_five_bin_config_passes_check_with_its_model_and_routes() -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "--tree", TREES["pipelined"], "--config", str(FIVE_BINS),
         "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shape = "topology: 4 gates; rod 2@gate 1, rod 3@gate 2, rod 4@gate 3, rod 5@gate 4"
    assert shape in done.stdout


@pytest.mark.slow
def test_a_line_with_a_gate_config_lacks_stops_with_the_alarm_and_no_item_in_a_wrong_bin(
    tmp_path: Path,
) -> None:
    """Issue 20, end to end: the FS config (three gates, rods on gates 1..3) on
    ``tracking_gate.yaml`` (a fourth gate past gate 3, rods past gates 2..4). The first
    item's passage of gate 4 puts the shape in doubt, the second's stops the line: exit 3
    with the reason; no item in another label's bin; the controller claims no bin the line
    does not show (the first item, pushed on gate 3's edge and then seen at gate 4, is
    lost with the reason, not counted in its rod's bin); the replay of the record agrees."""
    line = next(path for path in SHAPED_LINE_FILES if path.stem == "tracking_gate")
    record = tmp_path / "record.jsonl"
    run = run_unknown_line(
        tmp_path, tree=TREES["sequential"], line=line, geometry="builtin", items=10,
        speed=speed_for(line), seed=SEED, extra=("--record", str(record)),
    )  # fmt: skip
    assert run.code == 3, run.explain()
    (alarm,) = run.summary["alarms"]
    assert alarm.startswith("the line has more gates than config.topology declares: 2 items "
                            "passed gate 4"), run.explain()  # fmt: skip
    fs_routes = load_config().sorting.routes
    swept = [row for row in run.ledger if isinstance(row["bin"], int) and row["bin"] != 1]
    assert all(row["bin"] == fs_routes[row["label"]] for row in swept), run.explain()
    for rod, count in run.summary["bins"].items():
        assert count <= run.truth["bins"][rod], run.explain()
    assert run.summary["stray_gate_edges"] == 0, run.explain()
    replayed = account(Session(read_record(record)))["counts"]
    assert replayed["bins"] == run.summary["bins"] and replayed["outcomes"]["sorted"] == 0
