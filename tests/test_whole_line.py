"""Whole runs of ``run.py`` against the simulator: what a user sees at the end of a run.

Each test runs the real controller (a subprocess), a real broker and the simulator (a
process of its own), with few items at ``--speed 5``, and asserts on what a user can
check: which bin each item ended in by the simulator's ledger, the commands and alarms on
the broker, the exit code, and the ``--record`` file. The controller's logic on whole runs
(classification failures, fallbacks, weak answers, late pushes, spacing) runs in virtual
time in test_controller_logic.py; these are the real-process runs.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peer import Peer, wait_until
from test_run_cli import run_py

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess
from bt_sorter.config import load_config
from bt_sorter.sim.process import start_simulator

SPEED = "5"  # slow enough that a busy machine's hiccup is not a late push
ROUTES = {"ripe": 2, "half_ripe": 3, "raw": 4}  # config/default.yaml's sorting.routes
RUN_TIMEOUT = 240.0  # only catches a hang: these runs take seconds


@dataclass
class Run:
    """One finished run: exit code, output, and the files it wrote."""

    code: int
    stdout: str
    stderr: str
    ledger: dict[int, dict[str, Any]]  # the simulator's truth, by item id
    record: list[dict[str, Any]]  # the controller's --record, in order
    summary: dict[str, Any]

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.record
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]

    def tail(self) -> str:
        return f"exit {self.code}\n{self.stdout}\n{self.stderr[-3000:]}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_line(
    tmp_path: Path,
    tree: str | Path = "trees/sort.yaml",
    *args: str,
    items: int = 2,
    config: str | None = None,
) -> Run:
    """``run.py`` on the built-in line (broker and simulator started by run.py)."""
    ledger, record, summary = tmp_path / "ledger.jsonl", tmp_path / "record.jsonl", tmp_path / "s"
    cmd = ["--tree", str(tree), "--items", str(items), "--speed", SPEED, "--viz", "none"]
    cmd += ["--ledger", str(ledger), "--record", str(record), "--summary", str(summary)]
    if config is not None:
        path = tmp_path / "line.yaml"
        path.write_text(config)
        cmd += ["--config", str(path), "--builtin"]
    try:
        done = run_py(*cmd, *args, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as hung:
        stderr = hung.stderr.decode() if isinstance(hung.stderr, bytes) else hung.stderr or ""
        pytest.fail(f"run.py still running after {RUN_TIMEOUT} s:\n{stderr[-6000:]}")
    return Run(
        done.returncode,
        done.stdout,
        done.stderr,
        {row["id"]: row for row in read_jsonl(ledger)},
        read_jsonl(record),
        json.loads(summary.read_text()) if summary.exists() else {},
    )


def assert_sorted(run: Run, items: int, forced_to_bin_1: set[int] = frozenset()) -> None:
    """Every item in its own bin (``forced_to_bin_1``: these in bin 1, with a reason), and
    the record agrees with the line: one push recorded for every item in a rod's bin."""
    assert len(run.ledger) == items, run.tail()
    for item in run.ledger.values():
        expected = 1 if item["id"] in forced_to_bin_1 else ROUTES.get(item["label"], 1)
        assert item["bin"] == expected, (item, run.tail())
    resolved = run.events("item_resolved")
    assert all(e["reason"] for e in resolved)
    for rod in (2, 3, 4):  # one push recorded for every item the line has in that bin
        in_bin = sum(1 for item in run.ledger.values() if item["bin"] == rod)
        pushed = [e for e in resolved if e["outcome"] == "sorted" and e["bin"] == rod]
        assert len(pushed) == in_bin, (rod, run.tail())
        for event in pushed:
            (extended,) = run.events("rod_extended", item=event["item"])
            (classified,) = run.events("item_classified", item=event["item"])
            assert extended["rod"] == classified["rod"] == rod


# -- the pipelined tree: feeding, vision, rods and tracking side by side -----------------


def test_pipelined_tree_sorts_items_in_flight_together_and_records_each_decision(
    tmp_path: Path,
) -> None:
    # A slow belt: the stack is found empty (two empty feeds) while the last items still
    # ride to their rods; the run must wait for them (WaitLineClear). The tree learns the
    # line from 3 items fed one at a time, then pipelines the other 5.
    slow_belt = "line:\n  belt_speed: 0.05\n"
    run = run_line(tmp_path, "trees/sort_pipelined.yaml", "--seed", "2", items=8, config=slow_belt)

    assert run.code == 0, run.tail()
    assert_sorted(run, 8)  # WaitLineClear: none left on the belt
    # several items were on the belt at once, each matched to its own picture and label
    in_flight, most = set(), 0
    for event in run.record:
        if event["event"] == "item_fed":
            in_flight.add(event["item"])
        elif event["event"] == "item_resolved":
            in_flight.discard(event["item"])
        most = max(most, len(in_flight))
    assert most >= 2, run.tail()  # pipelined: the next item fed before the last one left


# -- the abort branch -------------------------------------------------------------------


def test_a_stuck_item_runs_the_abort_branch_rods_back_belt_stopped_alarm_exit_3(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    status_topic = load_config().broker.topics.resolve().status
    line = Peer(broker, protocol.COMMAND_TOPIC, status_topic)
    sim = start_simulator(
        broker.address,
        summary=tmp_path / "sim.json",
        items=3,
        speed=float(SPEED),
        ledger=tmp_path / "ledger.jsonl",
        # the line waits for a controller slow to start (a loaded machine), not 60 line s
        extra_args=["--stuck-item", "1", "--silence-timeout", "3000"],
    )
    summary = tmp_path / "summary.json"
    try:
        done = run_py(
            "--tree", "trees/sort.yaml", "--broker", broker.address, "--speed", SPEED,
            "--viz", "none", "--summary", str(summary), timeout=RUN_TIMEOUT,
        )  # fmt: skip
        # the last status leaves before run.py exits; let the broker hand it on
        stopped = lambda: b"line_stopped" in b"".join(line.payloads(status_topic))  # noqa: E731
        assert wait_until(stopped, timeout=30)
    finally:
        sim.stop()
        line.close()

    assert done.returncode == 3, done.stderr[-3000:]
    commands = [protocol.parse_command(p) for p in line.payloads(protocol.COMMAND_TOPIC)]
    assert commands[-2:] == [protocol.ALL_PULL, protocol.BELT_STOP]  # rods back, belt stopped
    # the status topic also carries the plant's retained line status (kind: line_status)
    statuses = [s for p in line.payloads(status_topic) if "event" in (s := json.loads(p))]
    alarms = [s for s in statuses if s["event"] == "alarm"]
    assert alarms and alarms[0]["reason"], statuses  # the fault, in words
    assert statuses[-1]["event"] == "line_stopped" and statuses[-1]["exit_code"] == 3
    result = json.loads(summary.read_text())
    assert result["alarms"] and result["in_flight_at_stop"] == []  # in flight: lost, with why
