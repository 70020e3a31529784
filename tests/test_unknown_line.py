"""Both trees end to end on a line the controller was not told about.

The simulator runs as its own process with its own config, whose ``line:`` differs from
anything the controller knows: a belt 2.5x faster than the built-in line's, camera and
gates elsewhere, longer items. The controller gets either no ``line:`` at all or the
built-in line's (wrong) one. Every item must be sorted correctly, none missorted, every
one accounted for; the wrong geometry must be reported as a mismatch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bt_sorter.broker import start_broker
from bt_sorter.config import DEFAULT_CONFIG
from bt_sorter.sim.process import start_simulator

ROOT = Path(__file__).resolve().parent.parent

# The line the simulator runs and the controller is never told about.
UNKNOWN_LINE = """
line:
  belt_speed: 0.25
  item_length: 0.1
  feed_zone: 0.15
  camera_position: 0.4
  gate_positions: [0.75, 1.0, 1.3]
  rod_offset: 0.07
  rod_window: 0.1
  belt_length: 1.6
  rod_stroke_time: 0.15
  feeder_stroke_time: 0.4
  camera_delay: 0.03
"""
# A shared, loaded machine: the simulator renders pictures in its sending loop, and at
# high speed-ups its edges arrive late enough that a 0.25 m/s belt carries the item past
# where the controller may still push it (it then rejects it to bin 1 rather than guess).
SPEEDS = {"trees/sort.yaml": 5, "trees/sort_pipelined.yaml": 2, "trees/calibrate.yaml": 5}
NO_LINE = "classifier: {backend: torch, fallback: hsv}\n"  # no line: at all


def run_against(
    tmp_path: Path, tree: str, controller_config: Path, items: int, *extra: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """run.py with ``controller_config`` against the simulator on UNKNOWN_LINE."""
    sim_config = tmp_path / "sim_line.yaml"
    sim_config.write_text(UNKNOWN_LINE)
    summary = tmp_path / "summary.json"
    with start_broker(kind="mosquitto") as broker:
        sim = start_simulator(
            broker.address, summary=tmp_path / "sim.json", config=sim_config,
            items=items, seed=5, speed=SPEEDS[tree],
        )  # fmt: skip
        with sim:
            cmd = [
                sys.executable, "run.py", "--tree", tree, "--broker", broker.address,
                "--config", str(controller_config), "--speed", str(SPEEDS[tree]), "--viz", "none",
                "--max-items", str(items), "--summary", str(summary),
                "--log-level", "warning", "--record", str(tmp_path / "record.jsonl"), *extra,
            ]  # fmt: skip
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
            truth = sim.wait(timeout=60)
    assert summary.exists(), done.stderr[-3000:]
    return done.returncode, json.loads(summary.read_text()), truth


def assert_all_sorted(code: int, summary: dict[str, Any], truth: dict[str, Any], n: int) -> None:
    assert code == 0, summary
    assert truth["missorted"] == 0, truth
    assert truth["correct"] == n, truth
    assert truth["jammed"] == 0 and truth["lost"] == 0, truth
    assert summary["outcomes"] == {"sorted": n}, summary


@pytest.mark.slow
@pytest.mark.parametrize("tree", ["trees/sort.yaml", "trees/sort_pipelined.yaml"])
def test_tree_sorts_a_line_it_was_told_nothing_about(tmp_path: Path, tree: str) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text(NO_LINE)
    items = 8 if tree.endswith("sort.yaml") else 14
    code, summary, truth = run_against(tmp_path, tree, config, items)
    assert_all_sorted(code, summary, truth, items)
    passage = summary["measured_line"]["quantities"]["gate1.passage"]
    assert passage["median"] == pytest.approx(0.1 / 0.25, rel=0.05)  # item length / belt speed


@pytest.mark.slow
@pytest.mark.parametrize("tree", ["trees/sort.yaml", "trees/sort_pipelined.yaml"])
def test_tree_overrules_a_wrong_geometry_and_reports_it(tmp_path: Path, tree: str) -> None:
    items = 8 if tree.endswith("sort.yaml") else 14
    code, summary, truth = run_against(tmp_path, tree, DEFAULT_CONFIG, items)
    assert_all_sorted(code, summary, truth, items)
    mismatched = {m["quantity"] for m in summary["measured_line"]["geometry_mismatches"]}
    assert {"gate1.blocked", "gate1.clear", "gate3.clear"} <= mismatched


@pytest.mark.slow
def test_calibrated_config_holds_the_lines_timings(tmp_path: Path) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text(NO_LINE)
    out = tmp_path / "calibrated.yaml"
    code, _, _ = run_against(tmp_path, "trees/calibrate.yaml", config, 5,
                                   "--calibrate", "--out", str(out))  # fmt: skip
    assert code == 0 and out.exists()
    check = subprocess.run(
        [sys.executable, "run.py", "--tree", "trees/sort.yaml", "--config", str(out), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "gate3.clear" in check.stdout
    # The simulated line: gate 3 at 1.3 m, the item lands 0.4 s after the feed command.
    from bt_sorter.config import load_config

    line = load_config(out).line
    assert line is not None and len(line.gates) == 3
    gate3 = line.gates[2]
    assert gate3.clear is not None and gate3.blocked is not None
    assert gate3.clear.median == pytest.approx(0.4 + 1.3 / 0.25, rel=0.05)
    assert gate3.blocked.median == pytest.approx(0.4 + (1.3 - 0.1) / 0.25, rel=0.05)
