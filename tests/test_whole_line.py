"""Whole runs of ``run.py`` against the simulator: what a user sees at the end of a run.

Each test runs the real controller (a subprocess), a real broker and the simulator (a
process of its own), with few items at ``--speed 10``, and asserts on what a user can
check: which bin each item ended in by the simulator's ledger, the commands and alarms on
the broker, the exit code, and the ``--record`` file.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peer import Peer, wait_until
from test_run_cli import ROOT, run_py

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess, free_port
from bt_sorter.config import LineGeometry, load_config
from bt_sorter.sim.process import start_simulator

SPEED = "10"
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


def assert_sorted_safely(run: Run, items: int) -> int:
    """No missort and nothing left on the line; the record agrees with the line.

    Each item is in its own bin or, rejected with a reason, in bin 1 (on a loaded machine
    a picture or an edge can come too late to act on: bin 1 is then the right answer).
    Returns how many items went to their own bin.
    """
    assert len(run.ledger) == items, run.tail()
    for item in run.ledger.values():
        assert item["bin"] in (ROUTES[item["label"]], 1), (item, run.tail())
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
    return sum(1 for item in run.ledger.values() if item["bin"] != 1)


def attempted(run: Run, backend: str = "primary") -> list[int]:
    """Items the controller asked ``backend`` about (a picture arrived in time)."""
    seen = {e["item"] for e in run.record if e.get("backend") == backend}
    return sorted(seen)


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
    sorted_items = assert_sorted_safely(run, 8)  # WaitLineClear: none left on the belt
    assert sorted_items >= 1, run.tail()
    # several items were on the belt at once, each matched to its own picture and label
    in_flight, most = set(), 0
    for event in run.record:
        if event["event"] == "item_fed":
            in_flight.add(event["item"])
        elif event["event"] == "item_resolved":
            in_flight.discard(event["item"])
        most = max(most, len(in_flight))
    assert most >= 3, run.tail()


def test_pipelined_feeder_waits_until_a_rod_held_out_cannot_reach_the_next_item(
    tmp_path: Path,
) -> None:
    # Rods held out 3 s: a feed every feeder cycle (2.5 s) would put the next item into
    # the window of a rod still out for the one before. FeedIsSafe must space the feeds.
    # The controller is told no geometry; the simulator runs the built-in line. A rod held
    # out for one item must be back before the next item's head reaches its gate: feeds at
    # least an item's passage (its length over the belt speed) plus the hold apart.
    config = "timings:\n  push_hold: 3.0\n"
    path = tmp_path / "spacing.yaml"
    path.write_text(config)
    timings = load_config(path)
    geo = LineGeometry()  # the simulator's line (the built-in one)
    spacing_s = geo.item_length / geo.belt_speed + timings.timings.push_hold
    assert spacing_s > timings.feeder_cycle()  # the feeder alone would feed too soon

    run = run_line(tmp_path, "trees/sort_pipelined.yaml", items=8, config=config)

    assert run.code == 0, run.tail()
    assert_sorted_safely(run, 8)
    feeds = sorted(item["feed_time"] for item in run.ledger.values())
    # the first 3 items teach the line one at a time; judge the pipelined feeds after them
    gaps = sorted(b - a for a, b in itertools.pairwise(feeds[3:]))
    # The line feeds when the command lands: a late message shortens one gap and lengthens
    # the next, so judge the median gap, against the middle of the two spacings.
    median = (gaps[1] + gaps[2]) / 2
    assert median >= (spacing_s + timings.feeder_cycle()) / 2, (gaps, spacing_s)


# -- classification: retry, fallback, reject, weak answers, broken pictures --------------


def test_a_broken_picture_is_refused_unasked_and_its_item_goes_to_bin_1(
    tmp_path: Path,
) -> None:
    run = run_line(tmp_path, "trees/sort.yaml", "--sim-arg=--corrupt-picture-rate=1", items=3)

    assert run.code == 0, run.tail()
    assert len(run.ledger) == 3
    assert all(truth["bin"] == 1 for truth in run.ledger.values()), run.ledger
    # refused from its header as bad input before the blackboard: no classifier was asked
    assert run.summary["bad_inputs"] >= 3, run.tail()
    assert not run.events("classify_failed") and not run.events("picture_received"), run.tail()
    for resolved in run.events("item_resolved"):
        assert resolved["bin"] == 1 and resolved["reason"] == "no usable picture", resolved


def dead_service_config(fallback: str) -> str:
    url = f"http://127.0.0.1:{free_port()}/aisim_tf_pre"  # nothing listens there
    return f"classifier:\n  backend: http\n  url: {url}\n  timeout: 5.0\n  fallback: {fallback}\n"


def test_a_failing_classifier_is_retried_then_the_fallback_sorts_the_item(
    tmp_path: Path,
) -> None:
    run = run_line(tmp_path, config=dead_service_config("hsv"), items=3)

    assert run.code == 0, run.tail()
    assert_sorted_safely(run, 3)
    assert attempted(run), run.tail()
    for item_id in attempted(run):
        assert len(run.events("classify_failed", item=item_id, backend="primary")) == 2
        (classified,) = run.events("item_classified", item=item_id)
        assert classified["backend"] == "hsv" and classified["label"] in ROUTES


def test_fallback_reject_sends_the_item_to_bin_1_when_the_classifier_fails(
    tmp_path: Path,
) -> None:
    run = run_line(tmp_path, config=dead_service_config("reject"), items=3)

    assert run.code == 0, run.tail()
    assert len(run.ledger) == 3
    assert all(truth["bin"] == 1 for truth in run.ledger.values()), run.ledger
    assert attempted(run), run.tail()
    for item_id in attempted(run):
        assert len(run.events("classify_failed", item=item_id, backend="primary")) == 2
        (classified,) = run.events("item_classified", item=item_id)
        assert classified["label"] == "unknown" and classified["backend"] is None


def test_a_weak_answer_becomes_unknown_and_rides_to_bin_1(tmp_path: Path) -> None:
    # With a threshold of 1.0 every answer short of certainty is weak. The belt also
    # runs up for a configured 5 s (timings.belt_start_wait) before the first feed.
    config = "sorting:\n  confidence_threshold: 1.0\ntimings:\n  belt_start_wait: 5.0\n"
    run = run_line(tmp_path, config=config, items=3)

    assert run.code == 0, run.tail()
    (started,) = run.events("belt_started")
    assert run.events("item_fed")[0]["t"] - started["t"] >= 5.0
    assert_sorted_safely(run, 3)
    weak = [
        e
        for e in run.events("item_classified")
        if e["confidence"] is not None and e["confidence"] < 1.0
    ]
    assert weak, run.record  # the model gave at least one answer short of 1.0
    for event in weak:
        assert event["label"] == "unknown" and event["rod"] is None
        (resolved,) = run.events("item_resolved", item=event["item"])
        assert resolved["bin"] == 1


# -- pushing ------------------------------------------------------------------------------


def test_a_push_later_than_max_delay_after_its_edge_is_given_up_and_the_item_rides_to_bin_1(
    tmp_path: Path,
) -> None:
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

    run = run_line(tmp_path, trees / "sort.yaml")

    assert run.code == 0, run.tail()
    assert len(run.ledger) == 2
    assert all(truth["bin"] == 1 for truth in run.ledger.values()), run.ledger
    assert run.events("rod_extended") == []  # no late push went out
    gave_up = [e for e in run.events("item_resolved") if "could not be pushed" in e["reason"]]
    assert gave_up, run.tail()


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
