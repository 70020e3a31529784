"""The live page as an operator sees it: run.py --web on the built-in line, a real headless
Chromium (Debian's ``chromium``) reading what the page shows while the line sorts.

Without chromium these tests are skipped, unless ``BT_SORTER_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs it): then a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from doubting import THRESHOLD, doubting_model
from headless import Chromium
from page import needs_browser, page_facts, wait_http

from bt_sorter.broker import free_port
from bt_sorter.vision.classifier import NO_CONFIDENT_LABEL
from bt_sorter.vision.oddity import UNLIKE
from bt_sorter.web.server import WebServer

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = str(ROOT / "run.py")


def start_run(port: int, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, RUN_PY, "--tree", "trees/sort_pipelined.yaml", "--web", str(port),
         "--viz", "none", "--record", str(tmp_path / "record.jsonl"),
         "--summary", str(tmp_path / "summary.json"), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


LABELS = ("ripe", "half_ripe", "raw")
READY = (
    "document.getElementById('link').textContent === 'connected'"
    " && document.querySelectorAll('#tree .node').length > 20"
    " && document.querySelectorAll('#line [data-gate]').length > 0"
)


def binned_thumbnail(facts: dict) -> bool:
    """A picture shown (loaded) with its label and the bin its item went to."""
    return any(
        t["width"] > 0 and t["label"] in LABELS and "bin" in t["where"] for t in facts["thumbs"]
    )


@needs_browser
def test_live_page_shows_the_line_sorting(tmp_path: Path) -> None:
    """Counts advance, nodes change status, thumbnails carry labels, the line is drawn,
    updates come at least 5 a second, and the final counts are the run's."""
    port = free_port()
    run = start_run(port, tmp_path, "--items", "12", "--speed", "3")
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        with Chromium(f"http://127.0.0.1:{port}/") as browser:
            browser.wait_for(READY)
            first = page_facts(browser)
            assert first["mode"] == "LIVE"
            assert first["gates"] == 3 and first["rods"] == 4  # gates 1..3, rods 1..4
            statuses: dict[str, set[str]] = {}
            labelled_in_flight: set[int] = set()
            facts = first
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                facts = page_facts(browser)
                for name, status in facts["nodes"]:
                    statuses.setdefault(name, set()).add(status)
                labelled_in_flight.update(i for i, label in facts["items"] if label in LABELS)
                advanced = facts["resolved"] >= first["resolved"] + 3
                if advanced and binned_thumbnail(facts) and facts["rate"] >= 5:
                    break
                time.sleep(0.25)
            assert facts["resolved"] >= first["resolved"] + 3, facts  # counts advance
            assert facts["rate"] >= 5, facts  # pushed at least 5 times a second
            assert binned_thumbnail(facts), facts["thumbs"]
            assert "R" in statuses["feed item"] and len(statuses["feed item"]) >= 2, statuses
            assert labelled_in_flight, "no item drawn on the line with its label"
            assert facts["events"] > 0
            if os.environ.get("BT_SORTER_SCREENSHOTS"):  # docs/: the page mid-run
                browser.screenshot(Path(os.environ["BT_SORTER_SCREENSHOTS"]) / "live.png")
            run.wait(timeout=180)
            summary = json.loads((tmp_path / "summary.json").read_text())
            browser.wait_for(  # the page keeps the run's final state after it ended
                f"Number(document.getElementById('count-resolved').textContent) === "
                f"{summary['resolved']}",
                timeout=10,
            )
            facts = page_facts(browser)
            assert {k: v for k, v in facts["bins"].items() if v} == summary["bins"], facts
            assert facts["sorted"] == summary["outcomes"].get("sorted", 0)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(30)
    assert run.returncode == 0, run.stderr.read() if run.stderr else ""


def test_web_off_loopback_needs_a_token(tmp_path: Path) -> None:
    """A non-loopback address without a token is refused before anything moves (exit 2)."""
    env = {k: v for k, v in os.environ.items() if k != "BT_SORTER_WEB_TOKEN"}
    result = subprocess.run(
        [sys.executable, RUN_PY, "--tree", "trees/sort.yaml", "--web", "0.0.0.0:0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs a token" in result.stderr


def test_page_answers_only_to_its_token() -> None:
    """With a token, the page, its websocket and pictures need ?token=...; assets do not."""
    server = WebServer("127.0.0.1", 0, {"mode": "live", "tree": []}, token="s3cret")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/", timeout=5)
        assert refused.value.code == 403
        with urllib.request.urlopen(base + "/?token=s3cret", timeout=5) as page:
            assert b"bt_sorter" in page.read()
        with urllib.request.urlopen(base + "/static/app.js", timeout=5) as asset:
            assert asset.status == 200
    finally:
        server.stop()


def test_page_loads_nothing_from_the_internet() -> None:
    """Every script, stylesheet and image the page names is served by the package."""
    static = ROOT / "bt_sorter" / "web" / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert "http://" not in text.replace('"http://www.w3.org/2000/svg"', "")
        assert "https://" not in text and "//cdn" not in text


@needs_browser
def test_the_page_counts_the_items_vision_sent_to_bin_1_doubted_or_unsure(tmp_path: Path) -> None:
    """Issue 24: with a model that doubts about half the line's pictures and is unsure of
    some others, the page shows both counts of bin 1, each the run's own (the summary's and
    the record's). The config names no threshold: the run acts on the model's own."""
    model = doubting_model(tmp_path / "model")
    config = tmp_path / "line.yaml"
    config.write_text(f"classifier:\n  model: {model}\n", encoding="utf-8")
    port = free_port()
    run = start_run(port, tmp_path, "--config", str(config), "--builtin", "--items", "12",
                    "--speed", "4")  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        with Chromium(f"http://127.0.0.1:{port}/") as browser:
            browser.wait_for(READY)
            out, err = run.communicate(timeout=240)
            assert run.returncode == 0, err
            summary = json.loads((tmp_path / "summary.json").read_text())
            browser.wait_for(
                f"Number(document.getElementById('count-resolved').textContent) === "
                f"{summary['resolved']}",
                timeout=10,
            )
            shown = json.loads(browser.evaluate(
                "JSON.stringify([document.getElementById('count-doubted').textContent,"
                " document.getElementById('count-no-confident').textContent])"))  # fmt: skip
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(30)
    records = [json.loads(line) for line in (tmp_path / "record.jsonl").open()]
    resolved = [r for r in records if r["event"] == "item_resolved"]
    doubted = [r for r in resolved if r["bin"] == 1 and r["reason"] == UNLIKE]
    unsure = [r for r in resolved if r["bin"] == 1 and r["reason"] == NO_CONFIDENT_LABEL]
    assert doubted and unsure, summary["reasons"]
    # every other item sorted, into its own label's bin: a run that sent all to bin 1 fails
    routes = {"ripe": 2, "half_ripe": 3, "raw": 4}
    sorted_items = [r for r in resolved if r not in doubted and r not in unsure]
    assert sorted_items and all(r["bin"] == routes[r["label"]] for r in sorted_items), resolved
    assert summary["confidence_threshold"] == THRESHOLD  # the model's, not the default 0.6
    assert summary["doubted"] == len(doubted)
    assert summary["no_confident_label"] == len(unsure)
    assert shown == [str(len(doubted)), str(len(unsure))]
    assert (f"vision sent to bin 1: {len(doubted)} doubted (picture unlike any trained one), "
            f"{len(unsure)} with no confident label (confidence threshold {THRESHOLD})"
            ) in out  # fmt: skip
    replay = subprocess.run(
        [sys.executable, "-m", "bt_sorter.replay", str(tmp_path / "record.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    counts = json.loads(replay.stdout)["counts"]  # a replay counts the same from the record
    assert (counts["doubted"], counts["no_confident_label"]) == (len(doubted), len(unsure))
