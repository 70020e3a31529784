"""Each fault knob of the simulator produces its fault, counted and seen on the broker."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peer import Peer
from scripted import ScriptedRun, run_sequential

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess
from bt_sorter.config import load_config
from bt_sorter.sim.geometry import geometry_of
from bt_sorter.sim.process import start_simulator
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.preprocess import decode_picture

CONFIG = load_config()
SPEED = 20.0  # nothing is pushed: items ride to the belt end, timing is not critical


@dataclass
class FaultRun:
    summary: dict[str, Any]
    ledger: list[dict[str, Any]]
    run: ScriptedRun

    def pictures(self) -> list[bytes]:
        return [e.data for e in self.run.events() if isinstance(e, protocol.Picture)]

    def edges(self) -> list[protocol.GateEdge]:
        return [e for e in self.run.events() if isinstance(e, protocol.GateEdge)]

    def bad(self) -> list[protocol.BadInput]:
        return [e for e in self.run.events() if isinstance(e, protocol.BadInput)]


def feed_with_faults(broker: str, tmp: Path, items: int, *flags: str) -> FaultRun:
    """Feed ``items`` items that ride to the belt end, with the simulator's fault ``flags``."""
    with start_simulator(
        broker,
        summary=tmp / "summary.json",
        ledger=tmp / "ledger.jsonl",
        items=items,
        seed=3,
        speed=SPEED,
        extra_args=["--silence-timeout", "25", *flags],
    ) as sim:
        run = run_sequential(
            broker, items=items, labels=None, routes={}, speed=SPEED, edge_timeout=20.0
        )
        summary = sim.wait(timeout=30)
    lines = (tmp / "ledger.jsonl").read_text("utf-8").splitlines()
    return FaultRun(summary, [json.loads(line) for line in lines], run)


def sent_without_wire_faults(summary: dict[str, Any]) -> int:
    return summary["gate_edges_generated"] + summary["pictures_generated"]


def test_no_faults_by_default(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 2)
    assert all(count == 0 for count in result.summary["faults"].values())
    assert len(result.run.received) == result.summary["messages_sent"] == 2 * 7
    assert result.summary["bins"]["1"] == 2 and not result.bad()


def test_drop_rate_loses_messages(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 3, "--drop-rate", "0.4")
    dropped = result.summary["faults"]["dropped"]
    assert dropped > 0
    assert len(result.run.received) == sent_without_wire_faults(result.summary) - dropped


def test_duplicate_rate_sends_messages_twice(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 3, "--duplicate-rate", "0.4")
    duplicated = result.summary["faults"]["duplicated"]
    received = result.run.received
    repeats = sum(1 for a, b in itertools.pairwise(received) if a == b)
    assert duplicated > 0 and repeats == duplicated
    assert len(received) == sent_without_wire_faults(result.summary) + duplicated


def test_malformed_rate_adds_bad_payloads(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 3, "--malformed-rate", "0.5")
    malformed = result.summary["faults"]["malformed"]
    assert malformed > 0 and len(result.bad()) == malformed
    assert result.summary["bins"]["1"] == 3


def test_corrupt_pictures_do_not_decode(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 3, "--corrupt-picture-rate", "1")
    assert result.summary["faults"]["corrupt_pictures"] == 3
    pictures = result.pictures()
    assert len(pictures) == 3
    for data in pictures:
        assert data.startswith(b"\xff\xd8\xff")
        with pytest.raises(BadPictureError):
            decode_picture(data)
    assert [r["picture_fault"] for r in result.ledger] == ["corrupt"] * 3


def test_missing_pictures_are_never_sent(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 2, "--missing-picture-rate", "1")
    assert result.summary["faults"]["missing_pictures"] == 2
    assert result.pictures() == []
    assert all(r["picture_time"] is None for r in result.ledger)


def test_flicker_adds_a_clear_blocked_pair_while_blocked(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    result = feed_with_faults(broker.address, tmp_path, 1, "--flicker-rate", "1")
    assert result.summary["faults"]["flickers"] == 3
    for gate in (1, 2, 3):
        edges = [e.blocked for e in result.edges() if e.gate == gate]
        assert edges == [True, False, True, False]


def test_stuck_item_blocks_gate_2_for_good(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 2, "--stuck-item", "1")
    assert result.summary["faults"]["stuck_items"] == 1
    assert result.summary["ended_because"] == "controller_silent"
    assert [r["bin"] for r in result.ledger] == ["stuck", "on_belt"]
    gate_2 = [e.blocked for e in result.edges() if e.gate == 2]
    assert gate_2 == [True]
    assert not [e for e in result.edges() if e.gate == 3]


def test_stalled_belt_stops_every_item(broker: BrokerProcess, tmp_path: Path) -> None:
    result = feed_with_faults(broker.address, tmp_path, 1, "--stall-belt-at", "6")
    assert result.summary["faults"]["belt_stalls"] == 1
    assert [r["bin"] for r in result.ledger] == ["on_belt"]
    assert [e.gate for e in result.edges()] == []  # stalled before reaching gate 1


def test_belt_drift_makes_gate_intervals_grow_on_the_broker(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    speed = 10.0  # line s = 10 x wall s: the intervals below are 0.6 and 0.75 wall s
    geo = geometry_of(CONFIG)
    # item 1 clears gate 3 at about 13.5 line s, item 2 lands at about 14.0: drift between
    drift_at, factor = 13.8, 0.8
    peer = Peer(broker, protocol.FEEDBACK_TOPIC)
    try:
        with start_simulator(
            broker.address,
            summary=tmp_path / "summary.json",
            items=2,
            seed=3,
            speed=speed,
            extra_args=["--silence-timeout", "25", "--belt-drift", f"{drift_at}:{factor}"],
        ) as sim:
            run_sequential(
                broker.address,
                items=2,
                labels=None,
                routes={},
                speed=speed,
                geometry=dataclasses.replace(geo, belt_speed=geo.belt_speed * factor),
            )
            summary = sim.wait(timeout=30)
        timed = peer.timed(protocol.FEEDBACK_TOPIC)
    finally:
        peer.close()

    def clears(gate: int) -> list[float]:
        return [
            at for at, p in timed if protocol.parse_feedback(p) == [protocol.GateEdge(gate, False)]
        ]

    intervals = [(c3 - c1) * speed for c1, c3 in zip(clears(1), clears(3), strict=True)]
    travel = (geo.gate_positions[2] - geo.gate_positions[0]) / geo.belt_speed
    assert summary["faults"]["belt_drifts"] == 1
    assert len(intervals) == 2
    assert intervals[0] == pytest.approx(travel, rel=0.1)  # before the drift: 6 line s
    assert intervals[1] == pytest.approx(travel / factor, rel=0.1)  # after: 7.5 line s
