"""The simulator as a separate process on a real broker, driven by a scripted controller."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedRun, run_sequential

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess, start_broker
from bt_sorter.config import load_config
from bt_sorter.sim.geometry import geometry_of
from bt_sorter.sim.line import draw_labels
from bt_sorter.sim.process import start_simulator
from bt_sorter.sim.summary import route_bin
from bt_sorter.vision.preprocess import decode_picture

CONFIG = load_config()
ROUTES = CONFIG.sorting.routes
SORT_SPEED = 10.0  # the sequential push window is 0.9 line s: 90 ms of wall time here


@dataclass
class Outcome:
    summary: dict[str, Any]
    ledger: list[dict[str, Any]]
    run: ScriptedRun
    labels: list[str]


def sorted_run(broker: str, tmp: Path, items: int, seed: int, speed: float = SORT_SPEED) -> Outcome:
    """The simulator plus the sequential client that knows the true labels (tests only)."""
    labels = draw_labels(items, seed, CONFIG.sim.mix)
    sim = start_simulator(
        broker,
        summary=tmp / "summary.json",
        ledger=tmp / "ledger.jsonl",
        items=items,
        seed=seed,
        speed=speed,
    )
    with sim:
        run = run_sequential(
            broker,
            items=items,
            labels=labels,
            routes=ROUTES,
            speed=speed,
            timings=CONFIG.timings,
            geometry=geometry_of(CONFIG),
        )
        summary = sim.wait(timeout=30)
    return Outcome(summary, read_ledger(tmp / "ledger.jsonl"), run, labels)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text("utf-8").splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One 20-item sequential run on mosquitto, shared by the checks below."""
    with start_broker(kind="mosquitto") as broker:
        yield sorted_run(broker.address, tmp_path_factory.mktemp("twenty"), items=20, seed=7)


@pytest.mark.slow
def test_sequential_client_sorts_20_items_into_their_bins(twenty: Outcome) -> None:
    assert twenty.summary["exit_code"] == 0
    assert twenty.summary["ended_because"] == "line_empty_and_belt_stopped"
    assert twenty.summary["correct"] == 20
    assert [r["bin"] for r in twenty.ledger] == [route_bin(x, ROUTES) for x in twenty.labels]
    assert {r["why"] for r in twenty.ledger} <= {f"swept by rod {r}" for r in (2, 3, 4)}
    assert len(set(twenty.labels)) == 3


@pytest.mark.slow
def test_every_published_picture_decodes(twenty: Outcome) -> None:
    pictures = [e for e in twenty.run.events() if isinstance(e, protocol.Picture)]
    assert len(pictures) == 20
    for picture in pictures:
        assert decode_picture(picture.data).shape == (256, 256, 3)


@pytest.mark.slow
def test_ledger_and_summary_agree(twenty: Outcome) -> None:
    summary, ledger = twenty.summary, twenty.ledger
    assert [r["id"] for r in ledger] == list(range(1, 21))
    assert [r["label"] for r in ledger] == twenty.labels
    for label, by_bin in summary["label_by_bin"].items():
        for where, count in by_bin.items():
            assert count == sum(1 for r in ledger if r["label"] == label and str(r["bin"]) == where)
    for record in ledger:
        assert record["feed_time"] < record["picture_time"] < record["end_time"]
        last_gate = route_bin(record["label"], ROUTES) - 1
        rising, falling = record["gate_edges"][str(last_gate)][0]
        assert rising < falling <= record["end_time"]
    edges = [e for e in twenty.run.events() if isinstance(e, protocol.GateEdge)]
    assert (
        len(edges)
        == summary["gate_edges_generated"]
        == sum(2 * len(r["gate_edges"]) for r in ledger)
    )
    assert summary["throughput_per_min"] == pytest.approx(
        20 / ((summary["last_exit_time"] - summary["first_feed_time"]) / 60), rel=1e-3
    )


def test_sequential_client_sorts_on_amqtt(amqtt_broker: BrokerProcess, tmp_path: Path) -> None:
    outcome = sorted_run(amqtt_broker.address, tmp_path, items=4, seed=11)
    assert outcome.summary["correct"] == 4
    assert [r["bin"] for r in outcome.ledger] == [route_bin(x, ROUTES) for x in outcome.labels]


BAD_COMMANDS = [
    b"not json at all",
    b'{"rod_control": "fifth_push"}',
    b'{"conveyor": 1}',
    b'{"conveyor": "run", "rod_control": "first_push"}',
    b"\xff\xfe",
    b"[]",
]


def test_bad_commands_are_counted_and_ignored(broker: BrokerProcess, tmp_path: Path) -> None:
    from scripted import SequentialClient

    labels = draw_labels(2, 5, CONFIG.sim.mix)
    with start_simulator(
        broker.address, summary=tmp_path / "s.json", items=2, seed=5, speed=SORT_SPEED
    ) as sim:
        with SequentialClient(
            broker.address, items=2, labels=labels, routes=ROUTES, speed=SORT_SPEED
        ) as client:
            for payload in BAD_COMMANDS:
                client.send_raw(payload)
            client.run()
        summary = sim.wait(timeout=30)
    assert summary["bad_commands"] == len(BAD_COMMANDS)
    assert summary["correct"] == 2 and summary["exit_code"] == 0


def test_sigterm_writes_summary_and_exits_cleanly(broker: BrokerProcess, tmp_path: Path) -> None:
    sim = start_simulator(broker.address, summary=tmp_path / "s.json", items=3, speed=5)
    summary = sim.stop()
    assert summary is not None
    assert summary["exit_code"] == 0 and summary["ended_because"] == "stopped"
    assert summary["not_fed"] == 3


def test_silent_controller_ends_the_run(broker: BrokerProcess, tmp_path: Path) -> None:
    sim = start_simulator(
        broker.address,
        summary=tmp_path / "s.json",
        items=2,
        speed=20,
        extra_args=["--silence-timeout", "4"],
    )
    summary = sim.wait(timeout=20)
    assert summary["ended_because"] == "controller_silent"
    assert summary["line_time"] >= 4


def test_render_subcommand_writes_decodable_pictures_per_class(tmp_path: Path) -> None:
    out = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "bt_sorter.sim", "render", "--n", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for label in ("ripe", "half_ripe", "raw"):
        files = sorted((out / label).glob("*.jpg"))
        assert len(files) == 2
        assert decode_picture(files[0].read_bytes()).shape == (256, 256, 3)


def test_out_of_range_fault_rate_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bt_sorter.sim", "--drop-rate", "2", "--broker", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "argument --drop-rate: must be at most 1, got '2'" in done.stderr


def test_line_ends_after_lingering_with_the_belt_left_running(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    from scripted import SequentialClient

    sim = start_simulator(
        broker.address, summary=tmp_path / "s.json", items=1, speed=20, extra_args=["--linger", "3"]
    )
    with sim, SequentialClient(broker.address, items=1, labels=None, routes={}, speed=20) as client:
        client.send(protocol.BELT_RUN)
        client.feed()
        summary = sim.wait(timeout=20)
    assert summary["ended_because"] == "line_empty_and_lingered"
    assert summary["bins"]["1"] == 1
    assert summary["line_time"] >= summary["last_exit_time"] + 3
