"""Session replay: a run recorded with --record plays back to the run's own final counts,
in the account and in the page (a real headless Chromium); a record cut by a crash
still replays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from headless import Chromium
from page import PAGE_FACTS, needs_browser, wait_http

from bt_sorter.broker import free_port
from bt_sorter.record import Record, record_files
from bt_sorter.replay import Session, account, read_record

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = str(ROOT / "run.py")


def record_run(folder: Path, *extra: str) -> tuple[Path, dict]:
    record, summary = folder / "record.jsonl", folder / "summary.json"
    result = subprocess.run(
        [sys.executable, RUN_PY, "--tree", "trees/sort_pipelined.yaml", "--items", "6",
         "--speed", "4", "--viz", "none", "--record", str(record), "--summary", str(summary),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    # 3: a loaded machine can make the line look stuck; that run replays just the same
    assert result.returncode in (0, 3), result.stderr[-2000:]
    return record, json.loads(summary.read_text())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return record_run(tmp_path_factory.mktemp("recorded"))


def test_record_holds_node_transitions_and_line_events(recorded: tuple[Path, dict]) -> None:
    record, _ = recorded
    events = [json.loads(line) for line in record.read_text().splitlines()]
    header = events[0]
    assert header["event"] == "session_started"
    names = [n["name"] for n in header["tree"]]
    assert "feed item" in names and header["tree"][0]["parent"] is None
    transitions = [e for e in events if e["event"] == "node_status"]
    feed = names.index("feed item")
    mine = [(e["old"], e["new"]) for e in transitions if e["node"] == feed]
    assert ("INVALID", "RUNNING") in mine and ("RUNNING", "SUCCESS") in mine
    times = [e["t"] for e in transitions]
    assert times == sorted(times)
    kinds = {e["event"] for e in events}
    assert {"edge", "command", "picture", "item_fed", "item_resolved"} <= kinds
    commands = {(e["action"], e["rod"]) for e in events if e["event"] == "command"}
    assert ("run", None) in commands and ("stop", None) in commands and ("push", 1) in commands


def test_replay_reaches_the_runs_final_counts(recorded: tuple[Path, dict]) -> None:
    record, summary = recorded
    result = subprocess.run(
        [sys.executable, "-m", "bt_sorter.replay", str(record)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["bins"] == summary["bins"]
    assert counts["fed"] == summary["fed"] and counts["resolved"] == summary["resolved"]
    assert {k: v for k, v in counts["outcomes"].items() if v} == summary["outcomes"]


def test_replay_moves_back_and_forth(recorded: tuple[Path, dict]) -> None:
    """Seeking back rebuilds the past: nothing resolved at the start, all at the end."""
    record, summary = recorded
    session = Session(read_record(record))
    session.end()
    assert session.snapshot(False, 1.0)["counts"]["resolved"] == summary["resolved"]
    session.seek(session.t0)
    assert session.snapshot(False, 1.0)["counts"]["resolved"] == 0
    session.goto_item(3)
    state = session.snapshot(False, 1.0)
    assert [i["id"] for i in state["line"]["items"]][-1] == 3
    before = session.pos
    session.step(1)
    assert session.pos > before and session.events[session.pos - 1]["event"] != "node_status"


def test_record_cut_by_a_crash_still_replays(tmp_path: Path) -> None:
    """SIGKILL mid-run: every line written is whole, and the replay folds them."""
    record = tmp_path / "record.jsonl"
    run = subprocess.Popen(
        [sys.executable, RUN_PY, "--tree", "trees/sort_pipelined.yaml", "--items", "20",
         "--speed", "8", "--viz", "none", "--record", str(record)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if record.exists() and record.read_text().count('"item_resolved"') >= 2:
                break
            time.sleep(0.2)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    lines = record.read_text().splitlines()
    resolved = sum('"item_resolved"' in line for line in lines)
    assert resolved >= 2
    session = Session(read_record(record))
    assert account(session)["counts"]["resolved"] == resolved


@needs_browser
def test_replay_page_plays_to_the_final_counts(recorded: tuple[Path, dict]) -> None:
    """The replay page plays to the run's final counts; step, jump to an item and
    scrub back work from its controls."""
    record, summary = recorded
    port = free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.replay", str(record), "--web", str(port),
         "--speed", "30"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        with Chromium(f"http://127.0.0.1:{port}/") as browser:
            browser.wait_for("document.getElementById('mode').textContent === 'REPLAY'")
            done = (
                f"document.getElementById('play').textContent === '▶' && "
                f"Number(document.getElementById('count-resolved').textContent) === "
                f"{summary['resolved']}"
            )
            browser.wait_for(done, timeout=90)  # played to its end by itself
            facts = json.loads(browser.evaluate(PAGE_FACTS))
            assert {k: v for k, v in facts["bins"].items() if v} == summary["bins"], facts
            assert facts["sorted"] == summary["outcomes"].get("sorted", 0)
            # back to the start with the scrub bar: nothing resolved yet
            browser.evaluate("(() => { const s = document.getElementById('scrub'); s.value = 0;"
                             " s.dispatchEvent(new Event('input')); })()")  # fmt: skip
            browser.wait_for("document.getElementById('count-resolved').textContent === '0'")
            # jump to item 3: it is on the drawn line
            browser.evaluate("(() => { document.getElementById('item-no').value = 3;"
                             " document.getElementById('jump-item').click(); })()")  # fmt: skip
            browser.wait_for("document.querySelector('#line .item[data-item=\"3\"]') !== null")
            # one event on: the replay's event counter moves
            before = browser.evaluate("document.getElementById('replay-event').textContent")
            browser.evaluate("document.getElementById('step-fwd').click()")
            browser.wait_for(
                f"document.getElementById('replay-event').textContent !== {json.dumps(before)}"
            )
            if os.environ.get("BT_SORTER_SCREENSHOTS"):
                scrub = "document.getElementById('scrub')"
                browser.evaluate(f"{scrub}.value = 600; {scrub}.dispatchEvent(new Event('input'))")
                time.sleep(1.0)
                out = Path(os.environ["BT_SORTER_SCREENSHOTS"]) / "replay.png"
                browser.screenshot(out)
    finally:
        replay.send_signal(signal.SIGINT)
        try:
            replay.wait(15)
        except subprocess.TimeoutExpired:
            replay.kill()
            replay.wait(15)


def test_replay_jumps_to_an_alarm(tmp_path: Path) -> None:
    """A run stopped by an alarm (an item stuck in gate 2): the replay lists the alarm,
    jumps to it, shows it from then on only, and ends at the run's final counts."""
    record, summary = tmp_path / "record.jsonl", tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, RUN_PY, "--tree", "trees/sort.yaml", "--items", "3", "--speed", "8",
         "--viz", "none", "--sim-arg=--stuck-item=1", "--record", str(record),
         "--summary", str(summary)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    facts = json.loads(summary.read_text())
    session = Session(read_record(record))
    raised = [k for k, a in enumerate(session.alarms)
              if session.events[a["index"]]["event"] == "alarm_raised"]  # fmt: skip
    assert [session.alarms[k]["reason"] for k in raised] == facts["alarms"]
    session.goto_alarm(raised[0])
    state = session.snapshot(False, 1.0)
    assert state["alarms"] == facts["alarms"]
    assert state["replay"]["event"] == "alarm_raised"
    session.step(-1)
    assert session.snapshot(False, 1.0)["alarms"] == []
    counts = account(session)["counts"]
    assert {k: v for k, v in counts["outcomes"].items() if v} == facts["outcomes"]


# -- a rotated record (issue 22) ----------------------------------------------------------


def _lines(files: list[Path]) -> list[dict]:
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_record_rotates_by_size_without_losing_or_tearing_a_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    record = Record(path, max_bytes=2000)
    record.trace("session_started", 0.0, version=1, tree=[])
    for n in range(500):
        record.trace("edge", n * 0.01, gate=1 + n % 3, blocked=n % 2 == 0, n=n)
    record.close()
    files = record_files(path)
    assert len(files) > 10 and files[-1] == path and files[0].name == "run.jsonl.1"
    assert all(f.stat().st_size <= 2000 for f in files)
    lines = _lines(files)
    assert [e["n"] for e in lines if e["event"] == "edge"] == list(range(500))  # all, in order
    headers = [e for e in lines if e["event"] == "session_started"]
    assert [h.get("continued") for h in headers] == [None, *range(1, len(files))]
    assert all(_lines([f])[0]["event"] == "session_started" for f in files)  # each replays alone
    assert record.written == sum(f.stat().st_size for f in files)
    events = read_record(path)  # the set, as one session: the repeated headers left out
    assert [e["event"] for e in events].count("session_started") == 1
    assert [e["n"] for e in events if e["event"] == "edge"] == list(range(500))


def test_record_keeps_the_newest_files_and_rotates_by_time(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    record = Record(path, max_bytes=2000, keep=2)
    record.trace("session_started", 0.0, version=1, tree=[])
    for n in range(500):
        record.trace("edge", n * 0.01, gate=1, blocked=n % 2 == 0, n=n)
    record.close()
    files = record_files(path)
    assert len(files) == 3  # two rotated, the current one
    kept = [e["n"] for e in _lines(files) if e["event"] == "edge"]
    assert kept == list(range(kept[0], 500))  # a contiguous tail, nothing missing in it
    events = read_record(path)  # the first file kept gives the header
    assert events[0]["event"] == "session_started" and events[0]["continued"] > 1
    timed = Record(tmp_path / "timed.jsonl", rotate_seconds=0.05)
    timed.trace("edge", 0.0, gate=1, blocked=True)
    time.sleep(0.1)
    timed.trace("edge", 0.1, gate=1, blocked=False)
    timed.close()
    assert len(record_files(tmp_path / "timed.jsonl")) == 2
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        Record(tmp_path / "bad.jsonl", max_bytes=0)


def test_a_run_recorded_in_rotated_files_replays_to_its_final_counts(tmp_path: Path) -> None:
    record, summary = record_run(tmp_path, "--record-max-bytes", "30000")
    files = record_files(record)
    assert len(files) >= 3, files
    result = subprocess.run(
        [sys.executable, "-m", "bt_sorter.replay", str(record)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["bins"] == summary["bins"] and counts["resolved"] == summary["resolved"]
    assert counts["fed"] == summary["fed"] == 6
    events = _lines(files)
    fed = [e["item"] for e in events if e["event"] == "item_fed"]
    empty = {e["item"] for e in events if e["event"] == "feed_empty"}  # the stack ran out
    resolved = [e["item"] for e in events if e["event"] == "item_resolved"]
    assert sorted(set(fed) - empty) == sorted(resolved) == list(range(1, 7))
