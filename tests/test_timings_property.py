"""No configuration within physical bounds causes a missort (issue 15), property style.

A fixed, seeded sample of :data:`CONFIGURATIONS` (7) configurations, each one whole run
of ``run.py`` on the built-in simulated line (its own broker and simulator process):

- actuator timings drawn within the bounds a line engineer can physically write: rod 1
  held ``feed_hold`` in [feeder stroke + 0.1, 1.5] s (shorter, it never completes its
  stroke and feeds nothing), back ``feed_back`` in [0.3, 1.0] s; a classifying rod held
  ``push_hold`` in [0.4, 1.0] s (at least its stroke), back ``push_back`` in
  [max(0.3, rod stroke), 1.0] s (the pipelined tree sets its own ``back: 0.3``);
- the line: the built-in one (``config/default.yaml``, whose ``line:`` the controller
  is given) or one of ``config/lines/*.yaml`` (which the controller is not told);
- both trees (:data:`PLAN`), a stack seed in 1..50, and ``--speed`` from 4 up to 10:
  at most the speed at which an item stays in its rod's window for 100 ms of wall time
  after its clear edge (:func:`window_speed`: 9 on the built-in line, 6.4 on
  fast_short, 10 on the others), since no controller can push faster than a loaded
  machine delivers the edge and the command.

Each run feeds :data:`ITEMS` items and must give, by the simulator's own ledger: no
missort (no item in a bin 2-4 other than its label's), no jam, no item lost or left
on the belt; by the controller: exit 0, no alarm, every fed item resolved and none
lost. An item the controller rejects goes to bin 1 with a reason (the project's rule
"when unsure, bin 1"), which is not a missort. The sample is fixed (:data:`SAMPLE_SEED`)
so a failure is reproducible: the test id names the configuration.

Time: 7 runs of 8 items, 15-30 s each on two loaded cores (about 2-3 min in all), and
one run of 30 items with the issue's fast set and a feeder whose feeds come up empty
(about 15 s).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from line_runs import LINE_FILES, ROOT, run_line

from bt_sorter.config import LineGeometry, load_config
from bt_sorter.sim.summary import route_bin

SAMPLE_SEED = 15
CONFIGURATIONS = 7
ITEMS = 8
MAX_SPEED = 10.0
MIN_SPEED = 4.0
PUSH_WALL_S = 0.1  # wall s an item must stay in its rod's window after its clear edge
TREES = ("trees/sort.yaml", "trees/sort_pipelined.yaml")
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
LINES = {path.stem: path for path in LINE_FILES}


@dataclass(frozen=True)
class Case:
    """One drawn configuration."""

    tree: str
    line: Path | None  # None: the built-in line of config/default.yaml
    feed_hold: float
    feed_back: float
    push_hold: float
    push_back: float
    seed: int
    speed: float

    @property
    def id(self) -> str:
        line = self.line.stem if self.line else "builtin"
        return (
            f"{Path(self.tree).stem}-{line}-feed{self.feed_hold}/{self.feed_back}-"
            f"push{self.push_hold}/{self.push_back}-seed{self.seed}-x{self.speed}"
        )


def geometry_of(line: Path | None) -> LineGeometry:
    return load_config(line).geometry() if line else load_config(DEFAULT_CONFIG).geometry()


def window_speed(geo: LineGeometry) -> float:
    """The highest --speed at which an item stays :data:`PUSH_WALL_S` of wall time in its
    rod's window after clearing the gate upstream (the narrowest of the three)."""
    reach = min(
        geo.rod_window_of(gate + 1)[1] - position
        for gate, position in enumerate(geo.gate_positions, start=1)
    )
    return reach / geo.belt_speed / PUSH_WALL_S


# (tree, line) of each configuration: the pipelined tree on every line, the sequential
# one on the built-in line and the two short ones; the pipelined tree on the
# built-in line and on slow_long at their top speeds (9 and 10).
PLAN: list[tuple[str, Path | None, bool]] = [
    ("trees/sort_pipelined.yaml", None, True),
    ("trees/sort.yaml", None, False),
    ("trees/sort_pipelined.yaml", LINES["fast_short"], False),
    ("trees/sort_pipelined.yaml", LINES["large_items"], False),
    ("trees/sort_pipelined.yaml", LINES["slow_long"], True),
    ("trees/sort.yaml", LINES["large_items"], False),
    ("trees/sort.yaml", LINES["fast_short"], False),
]


def draw(rng: random.Random, tree: str, line: Path | None, top_speed: bool) -> Case:
    """One configuration of ``tree`` on ``line``: timings, seed and speed drawn."""
    geo = geometry_of(line)

    def uniform(low: float, high: float) -> float:
        return round(rng.uniform(low, high), 2)

    top = round(min(MAX_SPEED, window_speed(geo)), 1)
    return Case(
        tree=tree,
        line=line,
        feed_hold=uniform(geo.feeder_stroke_time + 0.1, 1.5),
        feed_back=uniform(0.3, 1.0),
        push_hold=uniform(max(0.4, geo.rod_stroke_time), 1.0),
        push_back=uniform(max(0.3, geo.rod_stroke_time), 1.0),
        seed=rng.randint(1, 50),
        speed=top if top_speed else round(rng.uniform(MIN_SPEED, top), 1),
    )


_rng = random.Random(SAMPLE_SEED)
CASES = [draw(_rng, *plan) for plan in PLAN]


def controller_config(case: Case, tmp_path: Path) -> Path:
    """config/default.yaml with the case's timings; no ``line:`` for a line file's run
    (the controller is not told that line)."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text("utf-8"))
    data["timings"].update(
        feed_hold=case.feed_hold, feed_back=case.feed_back,
        push_hold=case.push_hold, push_back=case.push_back,
    )  # fmt: skip
    if case.line is not None:
        del data["line"]
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def test_the_sample_covers_both_trees_every_line_and_the_top_speed() -> None:
    assert len(CASES) == CONFIGURATIONS
    assert {c.tree for c in CASES} == set(TREES)
    assert {c.line for c in CASES} == {None, *LINE_FILES}
    assert max(c.speed for c in CASES) == MAX_SPEED


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_no_missort_no_false_alarm_every_item_accounted_for(case: Case, tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    args = [
        "--tree", case.tree, "--builtin", "--config", str(controller_config(case, tmp_path)),
        "--items", str(ITEMS), "--seed", str(case.seed), "--speed", str(case.speed),
        "--ledger", str(ledger_path), "--log-level", "warning",
    ]  # fmt: skip
    if case.line is not None:
        args += ["--line", str(case.line)]
    code, summary = run_line(tmp_path, *args, timeout=300)
    ledger = [json.loads(r) for r in ledger_path.read_text("utf-8").splitlines()]
    routes = load_config(DEFAULT_CONFIG).sorting.routes
    explain = json.dumps({"case": case.id, "summary": summary, "ledger": ledger})[-4000:]

    wrong = [r for r in ledger if r["bin"] not in (1, route_bin(r["label"], routes))]
    assert wrong == [], explain  # no missort: nothing pushed into another label's bin
    assert len(ledger) == ITEMS, explain
    assert all(isinstance(r["bin"], int) for r in ledger), explain  # no jam, none lost
    assert code == 0 and not summary.get("alarms"), explain  # no false alarm
    assert summary["fed"] == summary["resolved"] == ITEMS, explain
    assert "lost" not in summary["outcomes"], explain
    rejected = [r for r in ledger if r["bin"] == 1]
    assert summary["outcomes"].get("rejected", 0) <= len(rejected), explain


FAST = {"feed_hold": 0.6, "feed_back": 0.3, "push_hold": 0.4}  # the fast set
FAST_ITEMS = 30
FEEDER_STROKE = 0.58  # the simulator's rod 1: 0.02 s short of the hold (the built-in: 0.1 s)


@pytest.mark.slow
def test_fast_timings_whose_feeds_come_up_empty_lose_and_missort_nothing(
    tmp_path: Path,
) -> None:
    """Issue 15's fast set, rod 1 held 0.6 s, on the built-in line with a feeder stroke of
    0.58 s: a push that reaches the line 20 ms of line time late is pulled back before its
    stroke is done, and the feed puts nothing on the belt (often: 3 to 6 of 30 feeds in
    the runs tried). At --speed 10 the latency margin makes the windows wide enough that
    the next item's picture falls inside the empty feed's: it must not be taken for the
    empty feed's (that shifted every later item, and the line model learned the shifted
    times: a safe spacing of 22 s). Every item is fed, none goes into another label's bin
    (bin 1 with a reason is allowed: at speed 10 a late clear edge may come too late to
    push), no alarm, and the learned spacing stays near the line's."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text("utf-8"))
    line = tmp_path / "slow_feeder.yaml"
    line.write_text(yaml.safe_dump({"line": {**data["line"], "feeder_stroke_time": FEEDER_STROKE}}))
    case = Case("trees/sort_pipelined.yaml", None, **FAST, push_back=1.0, seed=7, speed=10.0)
    ledger_path = tmp_path / "ledger.jsonl"
    code, summary = run_line(
        tmp_path, "--tree", case.tree, "--builtin", "--config",
        str(controller_config(case, tmp_path)), "--line", str(line), "--items",
        str(FAST_ITEMS), "--seed", "7", "--speed", str(case.speed), "--ledger",
        str(ledger_path), "--log-level", "warning", timeout=300,
    )  # fmt: skip
    ledger = [json.loads(r) for r in ledger_path.read_text("utf-8").splitlines()]
    routes = load_config(DEFAULT_CONFIG).sorting.routes
    explain = json.dumps({"summary": summary, "ledger": ledger})[-4000:]
    wrong = [r for r in ledger if r["bin"] not in (1, route_bin(r["label"], routes))]
    assert wrong == [], explain  # no missort
    assert all(isinstance(r["bin"], int) for r in ledger), explain  # all fed, none lost
    assert code == 0 and not summary.get("alarms"), explain
    assert summary["fed"] == summary["resolved"] == FAST_ITEMS, explain
    assert summary["measured_line"]["safe_spacing_s"] < 10.0, explain  # no outlier learned
