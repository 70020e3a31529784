"""Play a recorded session back: ``python -m bt_sorter.replay RECORD [--web PORT] [--groot PORT]``.

The record (``run.py --record``) holds the tree's shape, every node status transition,
every gate edge and command and every decision about every item, each with its line
time (``bt_sorter/trace.py``). :class:`Session` folds those lines into a context like the
controller's (blackboard, items, gates, rods, node statuses) up to any moment, so the
live page draws a replay with the same code (:func:`bt_sorter.web.state.snapshot`).

With ``--web`` the page gets a bar of controls: play / pause, speed, scrub through time,
step event by event, jump to an item or an alarm. With ``--groot`` Groot2 (or btview)
attaches to the replay as to a live line (``bt_sorter.groot2``; the tree from the record's
shape: names, node kinds, uid = the record's node id + 1). Without either, the session's
final account is printed. A record cut short by a crash replays up to its last whole line.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import json
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bt_sorter import protocol
from bt_sorter.argtypes import positive_float
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Item, Outcome
from bt_sorter.clock import LineClock
from bt_sorter.config import METRE_KEYS, Config, LineConfig, SortingConfig
from bt_sorter.linemodel.model import LineModel
from bt_sorter.record import Record, record_files
from bt_sorter.topology import Topology
from bt_sorter.vision.classifier import Prediction
from bt_sorter.web.state import Throughput, counts, snapshot

STATUS_CHAR = {"RUNNING": "R", "SUCCESS": "S", "FAILURE": "F", "INVALID": "-"}
TRACE_ONLY = {"session_started", "node_status", "edge", "command", "picture"}  # not "events"
STEP_SKIPS = {"node_status", "picture"}  # stepping goes from line event to line event
ALARMS = {"alarm_raised", "line_fault"}


class RecordError(ValueError):
    """The file is not a record a replay can use."""


def read_record(path: str | Path) -> list[dict[str, Any]]:
    """The record's events in file order; a torn last line (a crash) is left out.

    A rotated record (``run.py --record-max-bytes``/``--record-rotate-seconds``) is read
    as its whole set, oldest file first (:func:`bt_sorter.record.record_files`); the
    ``session_started`` line each later file repeats is dropped when an earlier file has
    given it (the oldest file kept gives it when the first ones are gone).
    """
    files = record_files(path)
    if not files:
        raise RecordError(f"{path}: cannot read: no such file (nor rotated {Path(path).name}.N)")
    events: list[dict[str, Any]] = []
    for file in files:
        for event in _read_file(file):
            if event["event"] == "session_started" and event.get("continued") and events:
                continue
            events.append(event)
    if not any(e["event"] == "session_started" for e in events):
        raise RecordError(f"{path}: no session_started line (recorded before replay existed?)")
    return events


def _read_file(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except ValueError:
            if number == len(lines):  # the line being written when it stopped
                break
            raise RecordError(f"{path}:{number}: not a JSON line") from None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            event["t"] = float(event.get("t", 0.0))
            events.append(event)
    return events


def _context(header: dict[str, Any]) -> Context:
    line = {k: tuple(v) if isinstance(v, list) else v
            for k, v in (header.get("line") or {}).items() if k in METRE_KEYS}  # fmt: skip
    prior = LineConfig(**line) if line else None  # the metres the run was told, if any
    shape = header.get("topology") or {}  # a record without one is the FS scene's
    topology = Topology(int(shape.get("gates", 3)), tuple(shape.get("rod_gates", (1, 2, 3))))
    config = Config(line=prior, topology=topology,
                    sorting=SortingConfig(routes=dict(header.get("routes") or {})))  # fmt: skip
    return Context(
        bb=Blackboard(line=LineModel(prior, topology=topology)),
        config=config,
        clock=LineClock(),
        record=Record(),
    )


class Session:
    """A recorded session, folded into a context up to any event (:meth:`goto`)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        start = next(i for i, e in enumerate(events) if e["event"] == "session_started")
        self.header = events[start]
        self.events = events[start:]
        self.tree: list[dict[str, Any]] = list(self.header.get("tree") or [])
        self.tmax: list[float] = []
        latest = -float("inf")
        for event in self.events:
            latest = max(latest, event["t"])
            self.tmax.append(latest)
        self.t0, self.t1 = self.tmax[0], self.tmax[-1]
        self.alarms = [
            {"index": i, "t": e["t"], "reason": e.get("reason", "")}
            for i, e in enumerate(self.events)
            if e["event"] in ALARMS
        ]
        self.fed_at = {e["item"]: i for i, e in enumerate(self.events) if e["event"] == "item_fed"}
        self._reset()

    def _reset(self) -> None:
        self.ctx = _context(self.header)
        self.status = ["-"] * len(self.tree)
        self.last_run = [""] * len(self.tree)  # each node's last status other than INVALID
        self.recent: deque[dict[str, Any]] = deque(maxlen=100)
        self.items: dict[int, Item] = {}
        self.chart = Throughput()
        self.pos = 0  # events applied: events[:pos]
        self.t = self.t0

    # -- moving through the session ----------------------------------------------------------

    def goto(self, index: int) -> None:
        """The state right after event ``index`` (clamped to the session)."""
        index = max(0, min(len(self.events) - 1, index))
        if index + 1 < self.pos:
            self._reset()
        while self.pos <= index:
            self._apply(self.events[self.pos])
            self.pos += 1
        self.t = self.tmax[index]
        self.ctx.bb.now = self.t

    def seek(self, t: float) -> None:
        """The state at line time ``t``: every event up to it applied."""
        index = bisect.bisect_right(self.tmax, t) - 1
        self.goto(max(index, 0))
        self.t = min(max(t, self.t0), self.t1)
        self.ctx.bb.now = self.t

    def step(self, n: int) -> None:
        """``n`` line events on (back when negative), skipping node transitions."""
        index = self.pos - 1
        for _ in range(abs(n)):
            index += 1 if n > 0 else -1
            while 0 < index < len(self.events) - 1 and self.events[index]["event"] in STEP_SKIPS:
                index += 1 if n > 0 else -1
        self.goto(index)

    def goto_item(self, item: int) -> None:
        """Where ``item`` was fed."""
        if item not in self.fed_at:
            raise KeyError(f"item {item} is not in this record")
        self.goto(self.fed_at[item])

    def goto_alarm(self, k: int) -> None:
        self.goto(self.alarms[k]["index"])

    def end(self) -> None:
        self.goto(len(self.events) - 1)

    # -- folding ---------------------------------------------------------------------------

    def _apply(self, e: dict[str, Any]) -> None:
        bb, kind, t = self.ctx.bb, e["event"], e["t"]
        bb.now = max(bb.now, t)
        number = e.get("item")
        item = None
        if isinstance(number, int):  # in flight, or among the newest resolved (a push missed)
            item = self.items.get(number) or bb.items.done.find(number)
        if kind == "node_status":
            if 0 <= e.get("node", -1) < len(self.status):
                self.status[e["node"]] = STATUS_CHAR.get(e.get("new"), "-")
                ran = e.get("new") if e.get("new") != "INVALID" else e.get("old")
                if ran in ("RUNNING", "SUCCESS", "FAILURE"):
                    self.last_run[e["node"]] = ran
        elif kind == "edge":
            bb.gates[e["gate"]] = bool(e["blocked"])
        elif kind == "command":
            action = protocol.Action(e["action"])
            bb.now = t
            bb.command(protocol.Command(action, e.get("rod")))
            bb.take_outbox()
        elif kind == "item_fed":
            item = bb.items.feed(t)
            item.id = e["item"]
            self.items[item.id] = item
        elif item is None:
            pass
        elif kind == "picture":
            item.picture, item.picture_at = base64.b64decode(e["jpeg"]), t
        elif kind == "item_classified":
            item.label, item.rod, item.decided = e.get("label"), e.get("rod"), True
            if e.get("confidence") is not None:
                item.prediction = Prediction(str(e.get("label")), float(e["confidence"]),
                                             str(e.get("backend")),
                                             str(e.get("doubt", "")))  # fmt: skip
            bb.last_label = item.label
        elif kind == "gate_edge":
            gate = e["gate"]
            item.entered, item.cleared = (gate, gate - 1) if e["blocked"] else (gate, gate)
            if not e["blocked"]:
                item.cleared_at[gate] = t
            item.anchor = (t, 0.0)
        elif kind == "edge_missing":
            item.uncertain = True
        elif kind == "feed_empty" and item in bb.items:
            bb.items.discard(item)
        elif kind in ("push_missed", "push_in_doubt") and item in bb.items.done:
            bb.items.reopen(item)  # issue 20: back in flight; its item_resolved follows
        elif kind == "item_resolved" and item in bb.items:
            if e.get("outcome") == Outcome.SORTED and e.get("bin"):
                item.rod = e["bin"]
            bb.items.resolve(item, Outcome(e["outcome"]), e.get("reason", ""), t)
            del self.items[item.id]  # issue 22: a resolved item is not looked up again
            self.chart.update(self.ctx)  # the chart takes every resolve, however far a seek
        if kind == "alarm_raised":
            bb.alarms.append(e.get("reason", ""))
        if kind not in TRACE_ONLY:
            self.recent.append(e)

    # -- what the page gets ------------------------------------------------------------------

    def snapshot(self, playing: bool, speed: float) -> dict[str, Any]:
        state = snapshot(self.ctx, "".join(self.status), list(self.recent), self.chart)
        last = self.events[self.pos - 1] if self.pos else None
        state["replay"] = {
            "t0": self.t0,
            "t1": self.t1,
            "t": self.t,
            "playing": playing,
            "speed": speed,
            "index": self.pos - 1,
            "n": len(self.events),
            "event": last["event"] if last else None,
            "alarms": [{"t": a["t"], "reason": a["reason"]} for a in self.alarms],
        }
        return state


class Player:
    """Plays a session to the page: a thread moves the clock, the page's commands steer it."""

    def __init__(self, session: Session, server: Any, speed: float = 1.0, fps: float = 10.0):
        self.session, self.server = session, server
        self.speed, self.playing = speed, True
        self.interval = 1.0 / fps
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bt_sorter-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            with self._lock:
                if self.playing:
                    self.session.seek(self.session.t + (now - last) * self.speed)
                    if self.session.t >= self.session.t1:
                        self.session.end()
                        self.playing = False
                self._publish()
            last = now

    def _publish(self) -> None:
        self.server.publish(self.session.snapshot(self.playing, self.speed))

    def command(self, cmd: dict[str, Any]) -> None:
        """A control from the page: play, pause, speed, seek, step, item, alarm."""
        s = self.session
        with self._lock:
            name = cmd.get("cmd")
            if name == "play":
                if s.t >= s.t1:
                    s.goto(0)
                self.playing = True
            elif name == "pause":
                self.playing = False
            elif name == "speed":
                self.speed = max(0.01, min(1000.0, float(cmd["x"])))
            elif name == "seek":
                s.seek(float(cmd["t"]))
            elif name == "step":
                self.playing = False
                s.step(int(cmd.get("n", 1)))
            elif name == "item":
                self.playing = False
                s.goto_item(int(cmd["id"]))
            elif name == "alarm":
                self.playing = False
                s.goto_alarm(int(cmd["index"]))
            elif name == "end":
                self.playing = False
                s.end()
            self._publish()


def account(session: Session) -> dict[str, Any]:
    """The session's final account (what the page shows at its end)."""
    session.end()
    return {
        "line_time_s": round(session.t1 - session.t0, 2),
        "events": len(session.events),
        "node_transitions": sum(e["event"] == "node_status" for e in session.events),
        "counts": counts(session.ctx),
        "alarms": [a["reason"] for a in session.alarms],
    }


def groot_tree(session: Session, tree: Path | None, record: Path) -> Any:
    """What Groot2 is served: the run's tree file as the live line served it (built on the
    record's line, checked node for node against the record), else the record's shape."""
    from bt_sorter.groot2 import GrootError, monitor_tree, record_tree
    from bt_sorter.trees.build import load_tree
    from bt_sorter.web.state import walk

    if tree is None:
        return record_tree(session.tree, record.stem)
    ctx = _context(session.header)
    root = load_tree(tree, ctx)
    names = [node.name for node, _, _ in walk(root)]
    if names != [node["name"] for node in session.tree]:
        raise GrootError(f"--tree {tree}: not the tree this record ran")
    return monitor_tree(tree, root, ctx.bb.topology)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.replay",
        description="Play a recorded session (run.py --record) back in the live page.",
    )
    parser.add_argument("record", type=Path, help="the JSON-lines record of a run (rotated: "
                        "the name given to --record; its RECORD.N files are read too)")  # fmt: skip
    parser.add_argument("--web", metavar="[HOST:]PORT", help="serve the replay page here")
    parser.add_argument("--speed", type=positive_float, default=1.0, help="line seconds per second")
    parser.add_argument("--paused", action="store_true", help="start paused at the beginning")
    parser.add_argument("--groot", metavar="[HOST:]PORT", help="serve the replay to Groot2 / "
                        "btview (its monitor protocol, docs/groot.md)")  # fmt: skip
    parser.add_argument("--tree", type=Path, help="--groot: the tree file the run used, to "
                        "serve the very XML the live line served (checked against the "
                        "record); without it, the record's tree shape (no ports)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        session = Session(read_record(args.record))
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.web and not args.groot:
        print(json.dumps(account(session), indent=2))
        return 0
    from bt_sorter.groot2 import Groot2Server, GrootError, GrootReplay, Publishers
    from bt_sorter.web.server import WebError, WebServer, parse_address
    from bt_sorter.yamlio import SpecError

    hello = {"mode": "replay", "title": str(args.record), "tree": session.tree}
    with contextlib.ExitStack() as stack:
        try:
            server = groot = None
            if args.web:
                host, port = parse_address(args.web)
                server = WebServer(host, port, hello)
            if args.groot:
                from bt_sorter.groot2 import parse_address as groot_address

                host, port = groot_address(args.groot)
                groot = Groot2Server(host, port, groot_tree(session, args.tree, args.record))
                groot.start()
                stack.callback(groot.stop)
            feed = GrootReplay(groot, session) if groot is not None else None
            player = Player(session, Publishers(server, feed), speed=args.speed)
            player.playing = not args.paused
            if server is not None:
                server.on_command = player.command
                server.start()
                stack.callback(server.stop)
        except (WebError, GrootError, SpecError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        where = [f"page {server.url}"] if server is not None else []
        where += [f"Groot2 {groot.address}"] if groot is not None else []
        print(f"replay of {args.record}: {', '.join(where)} (Ctrl-C to stop)", flush=True)
        player.start()
        stack.callback(player.stop)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
