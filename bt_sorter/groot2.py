"""Groot2's monitor protocol, as BehaviorTree.CPP's ``Groot2Publisher`` serves it.

``run.py --groot [HOST:]PORT`` and ``python -m bt_sorter.replay RECORD --groot PORT``
answer Groot2 (or any client of that protocol, e.g. ``btview``) on a ZeroMQ REP socket.
The wire format is BT.CPP's (``include/behaviortree_cpp/loggers/groot2_protocol.h``,
``src/loggers/groot2_publisher.cpp``):

- a request is multipart; its first frame is 6 bytes: protocol id (2), request type (one
  ASCII byte), a little-endian ``uint32`` request id. A reply's first frame echoes them
  and adds the tree's 16-byte UUID (random per server, version 4); an error reply is the
  two frames ``error``, message;
- ``T`` (full tree): the XML of the tree *as it runs* (``WriteTreeToXML``'s shape:
  one ``<BehaviorTree ID= _fullpath=>`` per tree instance, the main one first with an
  empty path, each included file's as a ``<SubTree>`` node with its path; every node
  with ``_uid``, numbered 1, 2, ... in creation order (pre-order, a SubTree before its
  tree's nodes), ``for_each_rod`` expanded to the line's rods), then ``TreeNodesModel``;
- ``S`` (statuses): 3 bytes per node, ``uint16`` uid (little-endian) and a status:
  0 idle, 1 running, 2 success, 3 failure, 10 + the last status for a node that ran and
  is idle again (BT.CPP's ``IDLE_FROM_*``). py_trees' INVALID is idle;
- ``B`` (blackboard): a second frame of ``;``-separated blackboard names (the main tree's
  ID, a subtree's path); the reply is MessagePack of ``{name: {key: value}}``. This tree
  has one blackboard: it is served under the main tree's ID (a subtree's answer is empty;
  no names at all asks for every one);
  its keys are what an engineer reads (items in flight with zone and label, counts, last
  label, the line model's summary, alarms), not the whole py_trees blackboard.
- Hooks, breakpoints and recording (``I``, ``R``, ``U``, ``r``, ``t``) get an error reply:
  this is a monitor of a line in motion, the tree is never paused by a client (``D``
  answers ``[]``, ``A`` and ``X`` succeed: no hook is ever installed). The PUB socket BT.CPP
  binds on PORT+1 (breakpoint notices) is therefore not bound.

The tick never waits for a client: :class:`GrootFeed` (the runner's observer) builds a
status buffer and a blackboard dict when one is due and hands them over by one reference
swap; the server's thread answers from the latest pair. Groot2's protocol has no
authentication: the server binds to loopback unless a host is given, and then only with an
allow-list of client addresses (``BT_SORTER_GROOT_ALLOW``, checked by ZeroMQ's ZAP) -- see
docs/groot.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import struct
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq
from py_trees.behaviour import Behaviour
from py_trees.common import Status

from bt_sorter import address
from bt_sorter.behaviours.base import Context
from bt_sorter.log import get_logger
from bt_sorter.topology import Topology
from bt_sorter.trace import walk
from bt_sorter.trees.groot import BTCPP_FORMAT, BUILTIN_TAGS, SUBTREE, _Exporter, load_xml
from bt_sorter.trees.vocabulary import FOR_EACH_ROD, INCLUDE, kind_key, substitute
from bt_sorter.yamlio import Located, SpecError, load_file

log = get_logger("bt_sorter.groot2")

PROTOCOL_ID = 2
HEADER = struct.Struct("<BBI")  # protocol, type, request id
DEFAULT_PORT = 1667
ALLOW_ENV = "BT_SORTER_GROOT_ALLOW"
MAX_REQUEST = 64 * 1024  # bytes: larger messages are dropped by ZeroMQ (no request is this big)

FULLTREE, STATUS, BLACKBOARD = ord("T"), ord("S"), ord("B")
HOOK_INSERT, HOOK_REMOVE, BREAKPOINT_UNLOCK = ord("I"), ord("R"), ord("U")
HOOKS_DUMP, REMOVE_ALL_HOOKS, DISABLE_ALL_HOOKS = ord("D"), ord("A"), ord("X")
TOGGLE_RECORDING, GET_TRANSITIONS = ord("r"), ord("t")

IDLE, RUNNING, SUCCESS, FAILURE = 0, 1, 2, 3
IDLE_FROM = 10  # BT.CPP: an idle node that ran reports 10 + its last status
CODE = {Status.INVALID: IDLE, Status.RUNNING: RUNNING, Status.SUCCESS: SUCCESS,
        Status.FAILURE: FAILURE}  # fmt: skip
CODE_OF_NAME = {s.value: c for s, c in CODE.items()}  # the record's names

NO_HOOKS = ("hooks and breakpoints are not supported: bt_sorter serves Groot2 as a monitor of "
            "a line in motion, and no client may pause or replace its nodes")  # fmt: skip
NO_RECORDING = ("recording is not supported here: record a run with run.py --record and "
                "play it with python -m bt_sorter.replay RECORD --groot PORT")  # fmt: skip


class GrootError(Exception):
    """The monitor cannot serve as asked (address, port, tree)."""


# --- the tree as it runs --------------------------------------------------------------------


@dataclass
class MonitorTree:
    """The running tree as Groot2 sees it: its XML, which py_trees node each uid shows (its
    index in :func:`bt_sorter.trace.walk`'s order, the record's node ids), and the
    blackboard names (the main tree's ID first)."""

    xml: str
    mirror: list[int]  # uid - 1 -> node index
    blackboards: list[str]

    @property
    def uids(self) -> range:
        return range(1, len(self.mirror) + 1)


class _Running(_Exporter):
    """The exporter's elements for the tree as built: rods expanded, one BehaviorTree per
    included instance, uids in BT.CPP's creation order."""

    def __init__(self, topology: Topology) -> None:
        super().__init__()
        self.topology = topology
        self.vars: dict[str, int] | None = None
        self.blocks: list[ET.Element] = []
        self.order: list[ET.Element] = []  # by uid

    def value(self, value: Any) -> Any:
        return substitute(value, self.vars)

    def block(self, data: Any, file: Path, fullpath: str) -> None:
        element = ET.Element("BehaviorTree", {"ID": file.stem, "_fullpath": fullpath})
        self.blocks.append(element)
        element.append(self.run_node(data["root"], file, fullpath))

    def numbered(self, element: ET.Element) -> ET.Element:
        self.order.append(element)
        element.set("_uid", str(len(self.order)))
        return element

    def run_node(self, spec: Located, file: Path, path: str) -> ET.Element:
        key = kind_key(spec)
        if key == INCLUDE:
            target = file.parent / spec[INCLUDE]
            element = self.numbered(ET.Element(SUBTREE, {"ID": target.stem}))
            name = spec.get("name")
            own = name if name is not None else f"{target.stem}::{element.get('_uid')}"
            fullpath = f"{path}/{own}" if path else own
            element.set("_fullpath", fullpath)
            if name is not None:
                element.set("name", name)
            self.block(load_file(target), target, fullpath)
            return element
        if key == FOR_EACH_ROD:
            raise SpecError(f"'{FOR_EACH_ROD}' outside a children: list", spec.file, spec.line)
        element = self.numbered(self.element(spec, key, str(self.value(spec[key])), file))
        if key == "eternal_guard":
            element.append(self.run_node(spec["condition"], file, path))
            element.append(self.run_node(spec["child"], file, path))
        elif "children" in spec:
            for child in spec["children"]:
                if FOR_EACH_ROD in child:
                    for rod in self.topology.classifying_rods:
                        self.vars = {"rod": rod, "gate": self.topology.gate_of(rod)}
                        try:
                            element.append(self.run_node(child["child"], file, path))
                        finally:
                            self.vars = None
                else:
                    element.append(self.run_node(child, file, path))
        elif "child" in spec:
            element.append(self.run_node(spec["child"], file, path))
        return element


def monitor_tree(path: str | Path, root: Behaviour, topology: Topology) -> MonitorTree:
    """The running tree's XML for Groot2, from the tree file ``path`` that built ``root``
    on a line of ``topology``; a GrootError if the two do not agree node for node."""
    path = Path(path)
    data = load_xml(path) if path.suffix.lower() == ".xml" else load_file(path)
    running = _Running(topology)
    running.block(data, path, "")
    nodes = [node for node, _, _ in walk(root)]
    mirror: list[int] = []
    i, rename = 0, None
    for element in running.order:
        if i >= len(nodes):
            raise GrootError(f"{path}: the file has more nodes than the running tree")
        if element.tag == SUBTREE:
            mirror.append(i)  # it shows its tree's root
            rename = element.get("name")
            continue
        expected = rename if rename is not None else element.get("name")
        if nodes[i].name != expected:
            raise GrootError(f"{path}: node {i} runs as {nodes[i].name!r}, the file has "
                             f"{expected!r}")  # fmt: skip
        mirror.append(i)
        i, rename = i + 1, None
    if i != len(nodes):
        raise GrootError(f"{path}: the running tree has {len(nodes)} nodes, the file {i}")
    xml = ET.Element("root", {"BTCPP_format": BTCPP_FORMAT, "main_tree_to_execute": path.stem})
    xml.extend(running.blocks)
    xml.append(running.model())
    ET.indent(xml, space="  ")
    names = [path.stem, *(b.get("_fullpath", "") for b in running.blocks[1:])]
    return MonitorTree(ET.tostring(xml, "unicode"), mirror, names)


def status_buffer(tree: MonitorTree, codes: Sequence[int]) -> bytes:
    """BT.CPP's status reply: (uid uint16 LE, status byte) per node; ``codes`` by node index."""
    out = bytearray(3 * len(tree.mirror))
    for uid, node in zip(tree.uids, tree.mirror, strict=True):
        k = 3 * (uid - 1)
        out[k], out[k + 1], out[k + 2] = uid & 0xFF, uid >> 8, codes[node]
    return bytes(out)


# --- the blackboard an engineer reads -------------------------------------------------------


def board(ctx: Context) -> dict[str, Any]:
    """The blackboard keys shown in Groot2 (plain values)."""
    from bt_sorter.web.state import counts

    bb, model = ctx.bb, ctx.bb.line
    items = []
    for item in bb.items:
        pred = item.prediction
        items.append(
            {
                "id": item.id,
                "zone": item.zone,
                "label": item.label,
                "confidence": round(pred.confidence, 3) if pred else None,
                "rod": item.rod,
                "uncertain": item.uncertain,
            }
        )
    spacing, limit = model.spacing.safe_spacing(), model.spacing.limit_per_minute()
    times = {name: model.estimates.expected(name) for name in model.estimates.names}
    return {
        "tick": bb.tick,
        "line_time": round(bb.now, 4),  # as the record writes it
        "stopped": False,  # the monitor's last snapshot, of the tree the safe stop halted
        "connected": bb.connected,
        "belt_running": bb.belt_running,
        "items_in_flight": items,
        "counts": counts(ctx),
        "last_label": bb.last_label,
        "alarm": bb.alarms[-1] if bb.alarms else "",
        "alarms": list(bb.alarms),
        "fault": bb.fault,
        "gates_blocked": {str(g): b for g, b in bb.gates.items()},
        "rods_out": {str(r): o for r, o in bb.rods_out.items()},
        "line_model": {
            "items_learned": model.learning.items_learned,
            "measured": {k: round(v, 4) for k, v in times.items() if v is not None},
            "safe_spacing_s": None if spacing is None else round(spacing, 4),
            "feeder_cycle_s": round(model.spacing.feeder_cycle, 4),
            "limit_items_per_minute": None if limit is None else round(limit, 3),
        },
    }


# --- the server -----------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); loopback unless a host is given."""
    try:
        return address.parse_address(text, "--groot")
    except ValueError as exc:
        raise GrootError(str(exc)) from None


def allow_list(text: str | None) -> list[str]:
    """``BT_SORTER_GROOT_ALLOW``: client IP addresses, comma-separated; GrootError if one
    is not an address."""
    out = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                out.append(str(ipaddress.ip_address(part.strip())))
            except ValueError:
                raise GrootError(f"{ALLOW_ENV}: {part.strip()!r} is not an IP address") from None
    return out


def error_reply(message: str) -> list[bytes]:
    return [b"error", message.encode("utf-8")]


class Groot2Server:
    """Answers Groot2's requests on its own thread, from the latest published state."""

    def __init__(
        self,
        host: str,
        port: int,
        tree: MonitorTree,
        *,
        allow: Sequence[str] | None = None,
    ) -> None:
        allow = list(allow) if allow is not None else allow_list(os.environ.get(ALLOW_ENV))
        if not address.is_loopback(host) and not allow:
            raise GrootError(f"--groot {host}:{port} is off loopback and Groot2's protocol has "
                             f"no authentication: set {ALLOW_ENV} to the client addresses "
                             "allowed (docs/groot.md)")  # fmt: skip
        self.host, self.port, self.tree, self.allow = host, port, tree, allow
        uuid = bytearray(secrets.token_bytes(16))  # as BT.CPP's CreateRandomUUID
        uuid[6] = (uuid[6] & 0x4F) | 0x40
        uuid[8] = (uuid[8] & 0xBF) | 0x80
        self.uuid = bytes(uuid)
        self.xml = tree.xml.encode("utf-8")
        idle = [IDLE] * (max(tree.mirror, default=-1) + 1)
        self._latest: tuple[bytes, dict[str, Any]] = (status_buffer(tree, idle), {})
        self._packed: tuple[int, bytes] = (0, b"")  # id() of the board packed, its bytes
        self.requests = 0
        self.errors = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bt_sorter-groot2", daemon=True)

    # -- from the tick thread ------------------------------------------------------------

    def publish(self, status: bytes, board: dict[str, Any]) -> None:
        """The latest statuses and blackboard: one reference, swapped (never waits)."""
        self._latest = (status, board)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Bind (GrootError if it cannot) and serve on a thread."""
        self._thread.start()
        self._ready.wait(10.0)
        if self._failed is not None:
            raise GrootError(f"--groot {self.host}:{self.port}: {self._failed}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _run(self) -> None:
        context = zmq.Context()
        auth = None
        try:
            socket = context.socket(zmq.REP)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST)
            socket.setsockopt(zmq.SNDTIMEO, 1000)  # as BT.CPP's
            socket.setsockopt(zmq.RCVTIMEO, 100)  # to see a stop (BT.CPP's: 100 ms too)
            if self.allow:
                from zmq.auth.thread import ThreadAuthenticator

                auth = ThreadAuthenticator(context)
                auth.start()
                auth.allow(*self.allow)
                socket.setsockopt(zmq.ZAP_DOMAIN, b"groot2")
            host = f"[{self.host}]" if ":" in self.host else self.host
            if ":" in self.host:
                socket.setsockopt(zmq.IPV6, 1)
            if self.port == 0:
                socket.bind(f"tcp://{host}:*")
                self.port = int(socket.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2])
            else:
                socket.bind(f"tcp://{host}:{self.port}")
        except (zmq.ZMQError, OSError) as exc:
            self._failed = exc
            self._ready.set()
            if auth is not None:
                auth.stop()
            context.destroy(linger=0)
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    frames = socket.recv_multipart()
                except zmq.Again:
                    continue
                reply = self.answer(frames)
                with contextlib.suppress(zmq.ZMQError):  # a client gone: its reply is dropped
                    socket.send_multipart(reply)
        finally:
            socket.close(linger=0)
            if auth is not None:
                auth.stop()
            context.term()

    # -- one request ---------------------------------------------------------------------

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The reply frames to one request (an error reply for anything malformed)."""
        self.requests += 1
        reply = self._answer(frames)
        if reply[0] == b"error":
            self.errors += 1
        return reply

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if not frames or len(frames[0]) != HEADER.size:
            return error_reply("wrong request header")
        protocol, kind, request_id = HEADER.unpack(frames[0])
        if protocol != PROTOCOL_ID:
            return error_reply(f"protocol {protocol} not supported (this server speaks "
                               f"{PROTOCOL_ID})")  # fmt: skip
        header = HEADER.pack(PROTOCOL_ID, kind, request_id) + self.uuid
        if kind == FULLTREE:
            return [header, self.xml]
        if kind == STATUS:
            return [header, self._latest[0]]
        if kind == BLACKBOARD:
            if len(frames) != 2:
                return error_reply("must be 2 parts message")
            try:
                names = frames[1].decode("utf-8").split(";")
            except UnicodeDecodeError:
                return error_reply("blackboard names must be UTF-8")
            return [header, self._blackboards(names)]
        if kind == HOOKS_DUMP:
            return [header, b"[]"]
        if kind in (REMOVE_ALL_HOOKS, DISABLE_ALL_HOOKS):
            return [header]
        if kind in (HOOK_INSERT, HOOK_REMOVE, BREAKPOINT_UNLOCK):
            return error_reply(NO_HOOKS)
        if kind in (TOGGLE_RECORDING, GET_TRANSITIONS):
            return error_reply(NO_RECORDING)
        return error_reply("Request not recognized")

    def _blackboards(self, names: list[str]) -> bytes:
        main, board = self.tree.blackboards[0], self._latest[1]
        if names == [""]:  # no names (btview's default): every blackboard, BT.CPP sends nil
            names = self.tree.blackboards
        out: dict[str, Any] = {}
        for name in names:
            if name == main:
                out[name] = board
            elif name in self.tree.blackboards:
                out[name] = {}  # one blackboard, the main tree's
        if list(out) == [main]:  # the common request: packed once per published board
            key, packed = self._packed
            if key != id(board):
                packed = msgpack.packb(out, use_bin_type=True)
                self._packed = (id(board), packed)
            return packed
        return msgpack.packb(out, use_bin_type=True)


# --- the runner's observer ------------------------------------------------------------------


class GrootFeed:
    """Feeds the server from the tick thread: each tick notes every node's last status
    (for BT.CPP's idle-after-status codes); at most ``rate_hz`` times a second it builds the
    status buffer and the blackboard and hands them over."""

    def __init__(
        self, server: Groot2Server, root: Behaviour, ctx: Context, *, rate_hz: float = 20.0
    ) -> None:
        self.server, self.ctx = server, ctx
        self.nodes = [node for node, _, _ in walk(root)]
        self.last = [IDLE] * len(self.nodes)  # the last status other than idle, as a code
        self.interval = 1.0 / rate_hz
        self._next = 0.0
        self.costs: deque[float] = deque(maxlen=100_000)

    def codes(self) -> list[int]:
        out = []
        for i, node in enumerate(self.nodes):
            code = CODE[node.status]
            if code != IDLE:
                self.last[i] = code
                out.append(code)
            else:
                out.append(IDLE_FROM + self.last[i] if self.last[i] else IDLE)
        return out

    def update(self, force: bool = False, *, stopped: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            for i, node in enumerate(self.nodes):
                if node.status is not Status.INVALID:
                    self.last[i] = CODE[node.status]
            return
        self._next = now + self.interval
        shown = board(self.ctx) | {"stopped": stopped}
        self.server.publish(status_buffer(self.server.tree, self.codes()), shown)
        self.costs.append(time.monotonic() - now)

    def close(self) -> None:
        # the safe stop halted the tree after the last tick, at that tick's line time and
        # number: "stopped" tells a client this snapshot is the halted tree
        self.update(force=True, stopped=True)
        costs = sorted(self.costs)
        log.info(
            "groot2_stats",
            snapshots=len(costs),
            tick_cost_p50_ms=round(costs[len(costs) // 2] * 1000, 3),
            tick_cost_p99_ms=round(costs[int(len(costs) * 0.99)] * 1000, 3),
            requests=self.server.requests,
            error_replies=self.server.errors,
        )


class Observers:
    """Several observers in the runner's one ``web`` slot, each fed in turn."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def update(self, force: bool = False) -> None:
        for observer in self.observers:
            observer.update(force)

    def close(self) -> None:
        for observer in self.observers:
            observer.close()


def start_groot(address: str, path: str | Path, root: Behaviour, ctx: Context) -> GrootFeed:
    """Serve the running tree to Groot2 on ``[HOST:]PORT``; GrootError if it cannot."""
    host, port = parse_address(address)
    server = Groot2Server(host, port, monitor_tree(path, root, ctx.bb.topology))
    server.start()
    return GrootFeed(server, root, ctx)


# --- a replay into the same server ----------------------------------------------------------

# py_trees' classes in a record's tree shape -> the tags the exporter writes (bt_sorter.trees.groot)
RECORD_TAGS = {
    "Sequence": "Sequence",
    "Selector": "Fallback",
    "Parallel": "PolicyParallel",
    "Retry": "RetryUntilSuccessful",
    "Repeat": "Repeat",
    "Timeout": "LineTimeout",
    "OneShot": "OneShot",
    "Guard": "EternalGuard",
    "Inverter": "Inverter",
    "FailureIsSuccess": "ForceSuccess",
    "SuccessIsFailure": "ForceFailure",
    "FailureIsRunning": "FailureIsRunning",
    "RunningIsFailure": "RunningIsFailure",
    "RunningIsSuccess": "RunningIsSuccess",
    "SuccessIsRunning": "SuccessIsRunning",
}
CATEGORY = {"composite": "Control", "decorator": "Decorator", "leaf": "Action"}


def record_tree(shape: list[dict[str, Any]], tree_id: str = "recorded") -> MonitorTree:
    """A monitor tree from a record's tree shape (names, classes, parents; no ports: the
    record keeps none), uid = node id + 1, includes inlined into one BehaviorTree."""
    elements: list[ET.Element] = []
    used: dict[str, str] = {}
    top = ET.Element("BehaviorTree", {"ID": tree_id, "_fullpath": ""})
    for node in shape:
        tag = RECORD_TAGS.get(node["kind"], node["kind"])
        if tag not in BUILTIN_TAGS:
            used[tag] = CATEGORY.get(node.get("shape", "leaf"), "Action")
        element = ET.Element(tag, {"name": node["name"], "_uid": str(node["id"] + 1)})
        parent = node.get("parent")
        (top if parent is None else elements[parent]).append(element)
        elements.append(element)
    model = ET.Element("TreeNodesModel")
    for tag in sorted(used):
        ET.SubElement(model, used[tag], {"ID": tag})
    xml = ET.Element("root", {"BTCPP_format": BTCPP_FORMAT, "main_tree_to_execute": tree_id})
    xml.extend([top, model])
    ET.indent(xml, space="  ")
    return MonitorTree(ET.tostring(xml, "unicode"), list(range(len(shape))), [tree_id])


REPLAY_CODE = {"R": RUNNING, "S": SUCCESS, "F": FAILURE, "-": IDLE}


class GrootReplay:
    """Takes a replay's snapshots (as the page does) into the Groot2 server; a node idle
    after having run shows its last status as BT.CPP does, from the record's transitions
    (``session.last_run``: a replay jumps over many at a time)."""

    def __init__(self, server: Groot2Server, session: Any) -> None:
        self.server, self.session = server, session

    def publish(self, snapshot: dict[str, Any]) -> None:
        codes = []
        for char, ran in zip(snapshot["status"], self.session.last_run, strict=True):
            code = REPLAY_CODE.get(char, IDLE)
            if code == IDLE and ran:
                code = IDLE_FROM + CODE_OF_NAME[ran]
            codes.append(code)
        self.server.publish(status_buffer(self.server.tree, codes), board(self.session.ctx))


class Publishers:
    """Several receivers of the replay's snapshots (the page's server, Groot2's)."""

    def __init__(self, *publishers: Any) -> None:
        self.publishers = [p for p in publishers if p is not None]

    def publish(self, snapshot: dict[str, Any]) -> None:
        for publisher in self.publishers:
            publisher.publish(snapshot)
