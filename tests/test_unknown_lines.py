"""Both trees on lines the controller was not told about (issue 9's "done when").

The built-in simulator gets a line file from ``config/lines/`` (``run.py --line``); the
controller gets a config with no ``line:`` section, or with the built-in line's geometry,
which is wrong for every one of those lines. Either way every item must be sorted
correctly: it is the simulator's truth that counts (its summary and ledger), not the
controller's own account. ``run.py --calibrate`` on each line writes a config holding the
line file's timings (worked out from its metres, independently of the controller's code)
within 5 %. Also: the FS scene's config loads and passes ``--check``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from line_runs import ROOT, run_unknown_line, speed_for, true_timings

from bt_sorter.config import load_config
from bt_sorter.sim.geometry import load_line
from bt_sorter.sim.line import draw_labels
from bt_sorter.sim.summary import route_bin

TREES = {"sequential": "trees/sort.yaml", "pipelined": "trees/sort_pipelined.yaml"}
ITEMS = {"sequential": 6, "pipelined": 10}
SEED = 1  # 6 items: 2 of each label; 10 items: 3 ripe, 3 half_ripe, 4 raw
FS_CONFIG = ROOT / "config" / "fs_aisims.yaml"
# --calibrate: a few ms of wall time from the line to the controller must stay well under 5 %
# of the shortest time measured (fast_short's picture, 0.94 line s after the feed)
CALIBRATE_SPEEDS = {"fast_short": 2.0}


@pytest.mark.slow
def test_the_pipelined_tree_sorts_every_item_on_a_line_it_was_told_wrong(tmp_path: Path) -> None:
    """One real-process run (broker, simulator, run.py); every line file, both trees and
    both geometries run in virtual time in test_controller_logic.py."""
    line = ROOT / "config" / "lines" / "slow_long.yaml"
    items = ITEMS["pipelined"]
    run = run_unknown_line(
        tmp_path, tree=TREES["pipelined"], line=line, geometry="builtin", items=items,
        speed=speed_for(line), seed=SEED,
    )  # fmt: skip
    truth = run.truth
    assert run.code == 0, run.explain()
    assert truth.get("items") == items and truth["correct"] == items, run.explain()
    routes = load_config().sorting.routes
    labels = draw_labels(items, SEED, load_config().sim.mix)
    assert [r["bin"] for r in run.ledger] == [route_bin(x, routes) for x in labels]
    assert run.summary["outcomes"] == {"sorted": items}, run.explain()
    assert run.summary["measured_line"]["geometry_mismatches"], run.explain()


@pytest.mark.slow
@pytest.mark.parametrize("line", [ROOT / "config" / "lines" / "large_items.yaml"],
                         ids=["large_items"])  # fmt: skip
def test_calibrate_writes_a_config_holding_the_line_timings_within_5_percent(
    line: Path, tmp_path: Path
) -> None:
    out, items = tmp_path / "calibrated.yaml", 3
    run = run_unknown_line(
        tmp_path, tree="trees/calibrate.yaml", line=line, geometry="none", items=items,
        speed=CALIBRATE_SPEEDS.get(line.stem, 5.0), seed=SEED,
        extra=["--calibrate", str(items), "--out", str(out)],
    )  # fmt: skip
    assert run.code == 0, run.explain()
    assert run.truth["correct"] == items, run.explain()

    measured = load_config(out).line  # --config accepts it
    truth = true_timings(load_line(line).geometry)
    assert measured is not None and measured.picture is not None, out.read_text()
    found = {"picture": measured.picture.median}
    for gate, times in enumerate(measured.gates, start=1):
        assert times.blocked is not None and times.clear is not None, out.read_text()
        found[f"gate{gate}.blocked"], found[f"gate{gate}.clear"] = (
            times.blocked.median,
            times.clear.median,
        )
    assert found.keys() == truth.keys()
    for name, value in truth.items():
        assert found[name] == pytest.approx(value, rel=0.05), (name, out.read_text())
    check = subprocess.run(
        [sys.executable, "run.py", "--tree", TREES["sequential"], "--config", str(out), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_fs_scene_config_loads_and_passes_check() -> None:
    config = load_config(FS_CONFIG)
    assert config.broker.port == 21883
    assert config.line is None  # nobody measured the scene: the controller learns it
    for tree in TREES.values():
        done = subprocess.run(
            [sys.executable, "run.py", "--tree", tree, "--config", str(FS_CONFIG), "--check"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"config {FS_CONFIG}: ok" in done.stdout
