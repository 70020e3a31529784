"""What the controller reports of a line it was not told about, end to end.

The simulator runs a line file from ``config/lines/`` (``run.py --line``); the controller
gets no ``line:`` or the built-in line's (wrong) one. ``test_unknown_lines.py`` checks that
every item is sorted and that ``--calibrate`` keeps the line's timings; these check the
``geometry_mismatch`` report's values against the line file's own dimensions, a belt that
slows by 20 % mid-run, and ``--calibrate``'s usage.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from line_runs import ROOT, controller_config, run_line, run_unknown_line, speed_for

from bt_sorter.config import load_config
from bt_sorter.linemodel import prior_times

LINES = ROOT / "config" / "lines"


@pytest.mark.slow
def test_a_wrong_geometry_is_reported_and_overruled(tmp_path: Path) -> None:
    line = LINES / "slow_long.yaml"
    run = run_unknown_line(tmp_path, tree="trees/sort.yaml", line=line, geometry="builtin",
                           items=3, speed=speed_for(line))  # fmt: skip
    assert run.code == 0 and run.truth["correct"] == 3, run.explain()
    measured = run.summary["measured_line"]
    mismatched = {m["quantity"]: m for m in measured["geometry_mismatches"]}
    assert {"picture", "gate1.blocked", "gate1.clear"} <= set(mismatched), measured
    truth = prior_times(load_config(line).line)  # the line file's metres as times
    gate1 = mismatched["gate1.blocked"]
    assert gate1["configured"] == pytest.approx(4.9)  # the built-in line's
    assert gate1["measured"] == pytest.approx(truth["gate1.blocked"], rel=0.05)


@pytest.mark.slow
def test_pipelined_tree_follows_a_belt_that_slows_by_20_percent(tmp_path: Path) -> None:
    config = controller_config(tmp_path, "none")
    items, drift_at = 24, 45.0  # the built-in line, pipelining by the time the belt slows
    code, summary = run_line(
        tmp_path, "--tree", "trees/sort_pipelined.yaml", "--builtin", "--config", str(config),
        "--items", str(items), "--speed", "10", f"--sim-arg=--belt-drift={drift_at}:0.8",
    )  # fmt: skip
    truth = summary["line"]
    assert code == 0 and truth["faults"]["belt_drifts"] == 1, summary
    assert truth["missorted"] == 0 and truth["correct"] == items, summary
    passage = summary["measured_line"]["quantities"]["gate1.passage"]["median"]
    assert passage == pytest.approx(0.06 / (0.1 * 0.8), rel=0.05)  # the slowed belt's


def test_calibrate_without_an_out_file_is_a_clear_error() -> None:
    done = subprocess.run([sys.executable, "run.py", "--calibrate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "--calibrate needs --out FILE" in done.stderr
