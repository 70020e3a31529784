"""Groot2's monitor protocol (issue 21), read by a client this project did not write:
btview's ``Groot2Client`` (PyPI ``btview``), attached to a real run (run.py on the built-in
line: a real mosquitto, the simulator as its own process, the real model), its tree and
statuses held against the run's ``--record`` at the same line time; the same against a
replay of that record; and the server against malformed requests, clients that go away
mid-request, and ten clients at once.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from btview.client import ConnectionError_, Groot2Client
from btview.model import NodeStatus, TreeModel
from btview.protocol.groot2 import ProtocolError

from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard
from bt_sorter.broker import free_port
from bt_sorter.clock import LineClock
from bt_sorter.config import Config
from bt_sorter.groot2 import NO_HOOKS, NO_RECORDING, Groot2Server, GrootError, monitor_tree
from bt_sorter.record import Record
from bt_sorter.trees.build import load_tree

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = str(ROOT / "run.py")
TREE = "trees/sort_pipelined.yaml"
MAIN = "sort_pipelined"  # the main tree's ID: its blackboard's name
RECORD_STATUS = {"INVALID": NodeStatus.IDLE, "RUNNING": NodeStatus.RUNNING,
                 "SUCCESS": NodeStatus.SUCCESS, "FAILURE": NodeStatus.FAILURE}  # fmt: skip


def attach(port: int, timeout: float = 60.0) -> tuple[Groot2Client, TreeModel]:
    """A btview client and the tree it read, once the server answers."""
    client = Groot2Client("127.0.0.1", port, timeout_ms=1000)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client, client.fetch_tree()
        except ConnectionError_:
            if time.monotonic() > deadline:
                raise


def tree_nodes(tree: TreeModel) -> list[Any]:
    """btview's nodes in pre-order (SubTree nodes expanded in place, as it shows them)."""
    return list(tree.walk())


def fold(events: list[dict[str, Any]], t: float, *, stopped: bool = True) -> list[str]:
    """The record's status of every node (its ids) after every event at line time <= t;
    without the safe stop's transitions unless ``stopped``: the stop halts the tree at the
    last tick's line time, after the record's ``safe_stop`` line."""
    header = events[0]
    status = ["INVALID"] * len(header["tree"])
    end = len(events)
    if not stopped:
        end = next(i for i, e in enumerate(events) if e["event"] == "safe_stop")
    for e in events[:end]:
        if e["event"] == "node_status" and e["t"] <= t:
            status[e["node"]] = e["new"]
    return status


def record_of(nodes: list[Any]) -> dict[int, int]:
    """uid -> record node id: btview's nodes in order, a SubTree showing the node after it."""
    out, i = {}, 0
    for node in nodes:
        out[node.uid] = i
        if node.registration != "SubTree":
            i += 1
    return out


@dataclass
class Sample:
    line_time: float
    tick: int
    statuses: dict[int, NodeStatus]
    board: dict[str, Any]


@dataclass
class LiveRun:
    tree: TreeModel
    uuid: str
    samples: list[Sample]
    record: Path
    summary: dict[str, Any]
    others: list[int] = field(default_factory=list)  # polls answered, per other client
    # errors of requests sent while the server still answered the sampling client
    other_errors: list[str] = field(default_factory=list)


def poll_states(client: Groot2Client) -> dict[int, NodeStatus]:
    result = client.poll()
    assert result is not None
    return {uid: state.status for uid, state in result.statuses.items()}


def other_client(
    port: int, stop: threading.Event, polls: list[int], errors: list[tuple[float, str]]
) -> None:
    """One of nine more clients: the tree once, then statuses and the blackboard at 20 Hz,
    until told or until the server is gone (an error, with when its request was sent)."""
    client = Groot2Client("127.0.0.1", port, timeout_ms=2000)
    k = len(polls)
    polls.append(0)
    sent = time.monotonic()
    try:
        client.fetch_tree()
        while not stop.wait(0.05):
            sent = time.monotonic()
            poll_states(client)
            client.fetch_blackboard([MAIN])
            polls[k] += 1
    except Exception as exc:  # the test reads these
        errors.append((sent, repr(exc)))
    finally:
        client.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    folder = tmp_path_factory.mktemp("groot2")
    port = free_port()
    record, summary = folder / "record.jsonl", folder / "summary.json"
    run = subprocess.Popen(
        [sys.executable, RUN_PY, "--tree", TREE, "--groot", str(port), "--items", "8",
         "--speed", "3", "--viz", "none", "--record", str(record), "--summary", str(summary)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stop = threading.Event()
    polls: list[int] = []
    errors: list[tuple[float, str]] = []
    others = [threading.Thread(target=other_client, args=(port, stop, polls, errors),
                               daemon=True) for _ in range(9)]  # fmt: skip
    client = None
    try:
        client, tree = attach(port)
        for thread in others:
            thread.start()
        samples = []
        answered = time.monotonic()
        while run.poll() is None:
            try:
                before = (client.fetch_blackboard([MAIN]) or {}).get(MAIN)
                statuses = poll_states(client)
                after = (client.fetch_blackboard([MAIN]) or {}).get(MAIN)
            except ConnectionError_:
                break  # the run ended between two requests
            answered = time.monotonic()
            # statuses and board are published together: one tick on both sides of the
            # statuses means no publish came between, so they are that tick's
            if before and after and before["tick"] == after["tick"]:
                samples.append(Sample(before["line_time"], before["tick"], statuses, before))
            time.sleep(0.05)
        stop.set()
        for thread in others:
            thread.join(10.0)
        _, err = run.communicate(timeout=120)
        assert run.returncode in (0, 3), err[-2000:]  # 3: a loaded machine's stuck alarm
        uuid = client.tree_uuid
        early = [e for sent, e in errors if sent < answered - 0.5]  # the server was up then
        yield LiveRun(tree, uuid, samples, record, json.loads(summary.read_text()), polls, early)
    finally:
        stop.set()
        if client is not None:
            client.close()
        if run.poll() is None:
            run.kill()
            run.wait()


def read_events(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_btview_reads_the_running_tree_the_record_describes(live: LiveRun) -> None:
    events = read_events(live.record)
    shape = events[0]["tree"]
    nodes = tree_nodes(live.tree)
    plain = [n for n in nodes if n.registration != "SubTree"]
    assert [n.name for n in plain] == [s["name"] for s in shape]
    assert [n.uid for n in nodes] == list(range(1, len(nodes) + 1))  # BT.CPP's numbering
    # for_each_rod expanded to the line's rods: one branch each, with its own names
    assert [n.name for n in plain if n.name.startswith("push rod")] == [
        "push rod 2 when its item clears gate 1",
        "push rod 3 when its item clears gate 2",
        "push rod 4 when its item clears gate 3",
    ]
    kinds = {n.name: n.registration for n in plain}
    assert kinds["feeding"] == "Sequence" and kinds["sorting line"] == "ReactiveFallback"
    assert kinds["feed item"] == "FeedItem" and kinds["vision"] == "Repeat"
    subtrees = [n for n in nodes if n.registration == "SubTree"]
    assert [s.subtree_id for s in subtrees] == ["label_item", "classify"]
    assert subtrees[0].path == "label_item::22" and subtrees[1].path.startswith("label_item::22/")
    assert len(live.uuid) == 32 and int(live.uuid[12], 16) == 4  # a version-4 UUID


def test_btview_statuses_agree_with_the_record_at_the_same_line_time(live: LiveRun) -> None:
    events = read_events(live.record)
    nodes = tree_nodes(live.tree)
    ids = record_of(nodes)
    assert len(live.samples) >= 20, len(live.samples)
    seen = set()
    for sample in live.samples:
        recorded = fold(events, sample.line_time, stopped=sample.board["stopped"])
        for uid, status in sample.statuses.items():
            near = [e for e in events if e["event"] == "node_status" and e["node"] == ids[uid]
                    and abs(e["t"] - sample.line_time) < 0.5]  # fmt: skip
            assert status == RECORD_STATUS[recorded[ids[uid]]], (sample, uid, near)
        assert set(sample.statuses) == set(ids)
        seen.add(tuple(sorted(sample.statuses.items())))
    assert len(seen) >= 5  # the tree moved while it was watched
    running = [s for s in live.samples if s.statuses[1] == NodeStatus.RUNNING]
    assert len(running) >= 10


def test_the_blackboard_shows_items_counts_label_and_the_line_model(live: LiveRun) -> None:
    boards = [s.board for s in live.samples]
    flight = [item for b in boards for item in b["items_in_flight"]]
    assert flight and {"id", "zone", "label", "rod"} <= set(flight[0])
    assert any(item["label"] in ("ripe", "half_ripe", "raw") for item in flight)
    assert any(b["last_label"] in ("ripe", "half_ripe", "raw") for b in boards)
    assert max(b["counts"]["resolved"] for b in boards) >= 4
    assert any(b["line_model"]["safe_spacing_s"] for b in boards)  # learned while watched
    ticks = [s.tick for s in live.samples]
    assert ticks == sorted(ticks)


def test_nine_more_clients_polling_at_20_hz_are_all_answered(live: LiveRun) -> None:
    assert live.other_errors == []
    assert len(live.others) == 9 and min(live.others) >= 50, live.others


def test_replay_serves_the_record_to_btview(live: LiveRun) -> None:
    port = free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.replay", str(live.record), "--groot", str(port),
         "--speed", "1000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = None
    try:
        client, tree = attach(port)
        events = read_events(live.record)
        names = [n.name for n in tree_nodes(tree)]
        assert names == [s["name"] for s in events[0]["tree"]]  # the record's shape
        deadline = time.monotonic() + 30
        while True:  # at 1000x the replay reaches its end within a second or two
            board = client.fetch_blackboard([live.record.stem]) or {}
            counts = board.get(live.record.stem, {}).get("counts", {})
            if counts.get("resolved") == live.summary["resolved"]:
                break
            assert time.monotonic() < deadline, board
            time.sleep(0.2)
        assert counts["bins"] == live.summary["bins"]
        end = fold(events, float("inf"))
        statuses = poll_states(client)
        assert len(statuses) == len(end)
        for uid, status in statuses.items():
            assert status == RECORD_STATUS[end[uid - 1]]
    finally:
        if client is not None:
            client.close()
        replay.terminate()
        replay.wait(10)


# --- the server alone ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Groot2Server]:
    ctx = Context(bb=Blackboard(), config=Config(), clock=LineClock(), record=Record())
    root = load_tree(TREE, ctx)
    served = Groot2Server("127.0.0.1", 0, monitor_tree(TREE, root, ctx.bb.topology))
    served.start()
    yield served
    served.stop()


def request(port: int, *frames: bytes, timeout_ms: int = 2000) -> list[bytes]:
    """One raw request (frames as given) on a fresh REQ socket."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send_multipart(list(frames))
        return sock.recv_multipart()
    finally:
        sock.close(linger=0)


def header(kind: str, request_id: int = 0x01020304, protocol: int = 2) -> bytes:
    return struct.pack("<BBI", protocol, ord(kind), request_id)


def test_replies_echo_the_request_and_carry_the_tree_uuid(server: Groot2Server) -> None:
    reply = request(server.port, header("S", 0xDEADBEEF))
    assert reply[0][:6] == header("S", 0xDEADBEEF) and len(reply[0]) == 22
    assert len(reply[1]) == 3 * 52 and reply[1][:3] == b"\x01\x00\x00"  # uid 1, idle
    assert request(server.port, header("T"))[0][6:] == reply[0][6:]  # one tree, one uuid
    board = msgpack.unpackb(request(server.port, header("B"), b"sort_pipelined;nope")[1])
    assert list(board) == ["sort_pipelined"]


def test_malformed_requests_get_an_error_reply_and_the_server_goes_on(
    server: Groot2Server,
) -> None:
    cases = [
        ((b"\x02S\x00",), "wrong request header"),
        ((header("S") + b"x",), "wrong request header"),
        ((header("S", protocol=9),), "protocol 9 not supported"),
        ((header("B"),), "must be 2 parts message"),
        ((header("B"), b"\xff\xfe"), "UTF-8"),
        ((header("Z"),), "Request not recognized"),
        ((header("I"), b'{"uid": 3, "position": 0}'), NO_HOOKS),
        ((header("U"), b"{}"), NO_HOOKS),
        ((header("R"), b"{}"), NO_HOOKS),
        ((header("r"), b"start"), NO_RECORDING),
        ((header("t"),), NO_RECORDING),
    ]
    for frames, message in cases:
        reply = request(server.port, *frames)
        assert reply[0] == b"error" and message in reply[1].decode(), (frames, reply)
    # what Groot2 sends on attaching and leaving: answered (no hook is ever installed)
    assert request(server.port, header("D"))[1] == b"[]"
    assert len(request(server.port, header("A"))) == 1
    # a client that did not write this server reads it, and sees the error as one
    client, tree = attach(server.port, timeout=5)
    try:
        assert len(tree_nodes(tree)) == 52
        with pytest.raises(ProtocolError, match="must be 2 parts"):
            client._exchange(ord("B"))  # btview's own framing, without the names frame
        assert len(poll_states(client)) == 52
    finally:
        client.close()
    assert server.errors == len(cases) + 1


def test_clients_that_leave_mid_request_do_not_hurt_the_server(server: Groot2Server) -> None:
    context = zmq.Context.instance()
    for _ in range(20):  # asks, then goes before the reply
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        sock.send(header("T"))
        sock.close(linger=0)
    for payload in (b"\xff\x00\x00", b"GET / HTTP/1.1\r\n\r\n", b"\xff" + bytes(8) + b"\x7f"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
            raw.sendall(payload)  # half a ZMTP greeting, or not ZMTP at all, then gone
    big = context.socket(zmq.REQ)  # a request over the size limit: dropped by ZeroMQ
    big.setsockopt(zmq.LINGER, 0)
    big.connect(f"tcp://127.0.0.1:{server.port}")
    big.send_multipart([header("B"), b"x" * 100_000])
    big.close(linger=0)
    client, tree = attach(server.port, timeout=5)
    try:
        assert len(tree_nodes(tree)) == 52 and len(poll_states(client)) == 52
    finally:
        client.close()


def test_ten_clients_at_once(server: Groot2Server) -> None:
    results: list[tuple[str, int]] = []
    errors: list[str] = []

    def one() -> None:
        client = Groot2Client("127.0.0.1", server.port, timeout_ms=3000)
        try:
            n = len(tree_nodes(client.fetch_tree()))
            for _ in range(40):
                assert len(poll_states(client)) == n
                client.fetch_blackboard([MAIN])
            results.append((client.tree_uuid, n))
        except Exception as exc:  # read below
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(results) == 10
    assert len(set(results)) == 1 and results[0][1] == 52


def test_off_loopback_needs_an_allow_list_and_the_list_is_enforced() -> None:
    ctx = Context(bb=Blackboard(), config=Config(), clock=LineClock(), record=Record())
    tree = monitor_tree(TREE, load_tree(TREE, ctx), ctx.bb.topology)
    with pytest.raises(GrootError, match="no authentication"):
        Groot2Server("0.0.0.0", 0, tree, allow=[])
    shut = Groot2Server("127.0.0.1", 0, tree, allow=["10.11.12.13"])  # not us
    shut.start()
    try:
        with pytest.raises(zmq.Again):
            request(shut.port, header("T"), timeout_ms=1000)
    finally:
        shut.stop()
    open_ = Groot2Server("127.0.0.1", 0, tree, allow=["127.0.0.1"])
    open_.start()
    try:
        assert request(open_.port, header("T"))[1].startswith(b"<root")
    finally:
        open_.stop()


def test_replay_given_the_tree_file_serves_the_live_lines_xml(live: LiveRun) -> None:
    port = free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.replay", str(live.record), "--groot", str(port),
         "--tree", TREE, "--speed", "1000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = None
    try:
        client, tree = attach(port)

        def shape(t: TreeModel) -> list[tuple[Any, ...]]:
            return [(n.uid, n.registration, n.name, n.path, n.ports) for n in tree_nodes(t)]

        assert shape(tree) == shape(live.tree)
        events = read_events(live.record)
        ids = record_of(tree_nodes(tree))
        end = fold(events, float("inf"))
        deadline = time.monotonic() + 30
        while True:  # at 1000x the replay reaches its end within a second or two
            board = (client.fetch_blackboard([MAIN]) or {}).get(MAIN, {})
            if board.get("counts", {}).get("resolved") == live.summary["resolved"]:
                break
            assert time.monotonic() < deadline, board
            time.sleep(0.2)
        statuses = client.poll()
        assert statuses is not None and len(statuses.statuses) == len(ids)
        for uid, state in statuses.statuses.items():
            assert state.status == RECORD_STATUS[end[ids[uid]]]
            assert (
                state.previous is not None
                or end[ids[uid]] != "INVALID"
                or all(e["node"] != ids[uid] for e in events if e["event"] == "node_status")
            )  # idle after having run: BT.CPP's 10 + its last status
    finally:
        if client is not None:
            client.close()
        replay.terminate()
        replay.wait(10)


def test_replay_refuses_a_tree_file_the_record_did_not_run(live: LiveRun) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bt_sorter.replay", str(live.record), "--groot", "0",
         "--tree", "trees/sort.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "not the tree this record ran" in result.stderr
