"""Test helpers: run.py end to end on the built-in line, and on lines it was not told about.

:func:`run_line` runs ``python run.py`` on the built-in line (its own broker and simulator
process) and returns the exit code and the summary. :func:`run_unknown_line` gives the
simulator a line file (``run.py --line``, ``config/lines/*.yaml``) while the controller
gets only its own config: :func:`controller_config` writes one with no ``line:`` section
(``"none"``) or with the built-in line's geometry (``"builtin"``, wrong for every line file).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from bt_sorter.sim.geometry import LineGeometry, load_line
from bt_sorter.topology import FS

ROOT = Path(__file__).resolve().parent.parent
ALL_LINE_FILES = sorted((ROOT / "config" / "lines").glob("*.yaml"))
# the FS scene's shape (3 gates, rods 2..4), which a controller with the default config fits
LINE_FILES = [path for path in ALL_LINE_FILES if load_line(path).topology == FS]
# lines of another shape (a topology: section): a controller needs a config of that shape
SHAPED_LINE_FILES = [path for path in ALL_LINE_FILES if path not in LINE_FILES]
# --speed per line file in tests, so that a gate's clear edge that comes late on a loaded
# machine still leaves time to push: the controller pushes within 3/4 of an item's passage
# (fast_short: 0.15 line s, 50 ms of wall time at speed 3; five_bins: 0.3 line s, 150 ms at
# speed 2, where the four-class model classifies in the controller's own process and a push
# once came late at speed 5 on a loaded CI machine; the others: 0.87 line s or more)
TEST_SPEEDS = {"fast_short": 3.0, "five_bins": 2.0, "slow_long": 10.0, "large_items": 10.0}


def speed_for(line: Path) -> float:
    """The --speed a test runs ``line`` at (5 for a line not listed in TEST_SPEEDS)."""
    return TEST_SPEEDS.get(line.stem, 5.0)


Geometry = Literal["none", "builtin"]


def true_timings(geo: LineGeometry) -> dict[str, float]:
    """A line file's timings as the controller measures them: seconds of belt running since
    the feed command (the item lands once rod 1 is out), for the picture and gate edges."""
    landed = geo.feeder_stroke_time
    times = {"picture": landed + (geo.camera_position - geo.item_length / 2) / geo.belt_speed}
    times["picture"] += geo.camera_delay
    for gate, position in enumerate(geo.gate_positions, start=1):
        times[f"gate{gate}.blocked"] = landed + (position - geo.item_length) / geo.belt_speed
        times[f"gate{gate}.clear"] = landed + position / geo.belt_speed
    return times


def run_line(
    tmp_path: Path, *args: str, timeout: float = 240.0, cwd: Path = ROOT
) -> tuple[int, dict[str, Any]]:
    """``python run.py`` on the built-in line, started in ``cwd``; its exit code and summary."""
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, str(ROOT / "run.py"), "--viz", "none", "--summary", str(summary), *args]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert summary.exists(), done.stderr[-3000:]
    return done.returncode, json.loads(summary.read_text())


def shaped_config(tmp_path: Path, line: Path, routes: dict[str, int]) -> Path:
    """A controller config for a line of another shape, written as a user would: the
    built-in config with no ``line:``, the line file's ``topology:``, and ``routes``."""
    data = yaml.safe_load((ROOT / "config" / "default.yaml").read_text("utf-8"))
    del data["line"]
    data["topology"] = yaml.safe_load(line.read_text("utf-8"))["topology"]
    data["sorting"]["routes"] = routes
    path = tmp_path / f"controller_{line.stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def controller_config(tmp_path: Path, geometry: Geometry) -> Path:
    """The built-in config, with no ``line:`` section (none) or its own geometry (builtin)."""
    default = ROOT / "config" / "default.yaml"
    if geometry == "builtin":
        return default
    data = yaml.safe_load(default.read_text("utf-8"))
    del data["line"]
    path = tmp_path / "controller_without_line.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


@dataclass
class LineRun:
    """One run.py run on a line file: the controller's summary and the simulator's truth."""

    code: int
    summary: dict[str, Any]  # run.py's summary (the controller's account)
    ledger: list[dict[str, Any]]  # the simulator's per-item ledger, by item id

    @property
    def truth(self) -> dict[str, Any]:
        """The simulator's summary: items, correct, missorted, jammed, lost, not_fed, bins."""
        line: dict[str, Any] = self.summary.get("line") or {}
        return line

    def explain(self) -> str:
        """What to print when a check fails."""
        keys = ("stop_reason", "exit_code", "fed", "resolved", "outcomes", "reasons", "alarms")
        mine = {k: self.summary.get(k) for k in keys}
        truth = {k: self.truth.get(k) for k in ("correct", "missorted", "lost", "bins")}
        return json.dumps({"controller": mine, "line": truth, "ledger": self.ledger})[-4000:]


def run_unknown_line(
    tmp_path: Path,
    *,
    tree: str,
    line: Path,
    geometry: Geometry,
    items: int,
    speed: float,
    seed: int = 1,
    extra: Sequence[str] = (),
    timeout: float = 300.0,
    config: Path | None = None,
) -> LineRun:
    """run.py with ``tree`` on the built-in simulator given ``line``; the controller's config
    (``config``, else the built-in one) says nothing of that line (``geometry``)."""
    config = config or controller_config(tmp_path, geometry)
    ledger = tmp_path / "ledger.jsonl"
    code, summary = run_line(
        tmp_path, "--tree", tree, "--builtin", "--config", str(config), "--line", str(line),
        "--items", str(items), "--seed", str(seed), "--speed", str(speed),
        "--ledger", str(ledger), "--log-level", "warning", *extra, timeout=timeout,
    )  # fmt: skip
    rows = (
        [json.loads(x) for x in ledger.read_text("utf-8").splitlines()] if ledger.exists() else []
    )
    return LineRun(code, summary, sorted(rows, key=lambda r: r["id"]))
