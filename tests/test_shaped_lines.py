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
