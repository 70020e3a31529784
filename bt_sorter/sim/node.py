"""The simulator's MQTT side: commands in, line physics stepped, feedback out.

:class:`SimNode` connects a paho client (callback API v2, QoS 0), subscribes to the
command topic, and once the broker has acknowledged the subscription starts line time
and prints one ready line on stdout (``{"event": "sim_ready", ...}``). The main thread
then steps :class:`bt_sorter.sim.line.Line` at about 200 Hz (sleeping to a deadline):
each command is applied at the line time it arrived, and each line event is published
at its own line time through the fault injector. The run ends by itself (see
:meth:`SimNode.end_reason`) or on :meth:`SimNode.request_stop`; then the ledger and the
summary are written.
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import paho.mqtt.client as mqtt

from bt_sorter import protocol
from bt_sorter.clock import LineClock
from bt_sorter.config import Config, FaultConfig, LineGeometry, config_error
from bt_sorter.log import get_logger
from bt_sorter.sim import render
from bt_sorter.sim.faults import FLICKER_OFFSETS, FaultInjector
from bt_sorter.sim.line import (
    GateChanged,
    Item,
    ItemResolved,
    Line,
    LineEvent,
    PictureDue,
    draw_labels,
)
from bt_sorter.sim.summary import summarise
from bt_sorter.topology import FS, Topology

log = get_logger("bt_sorter.sim")

STEP_HZ = 200.0
CONNECT_TIMEOUT = 15.0  # wall s to connect and subscribe


@dataclass
class SimOptions:
    """One simulator run (the CLI's values)."""

    host: str
    port: int
    items: int
    seed: int
    speed: float
    faults: FaultConfig
    geometry: LineGeometry  # the physical line (a line file's, or the config's line:)
    topology: Topology = FS  # its gates and rods (a line file's, or the config's topology:)
    ledger: Path | None = None
    summary: Path | None = None
    linger: float = 10.0  # line s after the last item left, with the belt still running
    silence_timeout: float = 60.0  # line s without a command
    client_id: str = field(default_factory=lambda: f"bt_sorter_sim_{time.time_ns() % 10**9}")
    topics: protocol.Topics = protocol.FS_TOPICS  # the line's topics (broker.topics)


def check_mix(config: Config) -> None:
    """Every label the stack may hold (a positive weight in ``sim.mix``) must be one the
    renderer draws; otherwise a :class:`SpecError` naming the config's file and line."""
    mix = config.sim.mix
    unknown = sorted(label for label, weight in mix.items() if weight > 0)
    unknown = [label for label in unknown if label not in render.ALL_LABELS]
    if unknown:
        raise config_error(
            config,
            f"sim.mix: the simulator cannot draw {', '.join(unknown)} (it draws "
            f"{', '.join(render.ALL_LABELS)}); give it weight 0 or leave it out",
            "sim",
            "mix",
            unknown[0],
        )


@dataclass(order=True)
class _Outgoing:
    due: float
    seq: int
    kind: str = field(compare=False)  # "gate" | "picture"
    payload: bytes = field(compare=False)


class SimNode:
    """A simulated line on an MQTT broker."""

    def __init__(self, config: Config, options: SimOptions) -> None:
        self.config = config
        self.options = options
        check_mix(config)
        labels = draw_labels(options.items, options.seed, config.sim.mix)
        self.classes = tuple(config.sim.mix)  # the renderer's label set: overripe if mixed in
        faults = options.faults
        self.line = Line(
            options.geometry,
            labels,
            topology=options.topology,
            stuck_item=faults.stuck_item,
            stall_at=faults.stall_belt_at,
            drift_at=faults.belt_drift_at,
            drift_factor=faults.belt_drift_factor,
        )
        self.injector = FaultInjector(faults, options.seed)
        self.picture_rng = np.random.default_rng(np.random.SeedSequence([options.seed, 1]))
        self.clock = LineClock(options.speed)
        self.commands: queue.Queue[tuple[float, protocol.Command]] = queue.Queue()
        self.stats: Counter[str] = Counter()
        self.outbox: list[_Outgoing] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._last_command = 0.0
        self._picture_faults: dict[int, str] = {}
        self._jpegs: dict[int, bytes] = {}  # item id -> its picture, rendered ahead
        self._ledger: IO[str] | None = None
        self._started = (time.monotonic(), time.process_time())
        self.client = self._make_client()

    # ------------------------------------------------------------------ MQTT
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.options.client_id, clean_session=True
        )
        client.reconnect_delay_set(min_delay=0.1, max_delay=2.0)  # back soon after a restart
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker_refused", reason=str(reason))
            return
        log.info("broker_connected", broker=f"{self.options.host}:{self.options.port}")
        if not self._subscribed.is_set():  # first connection: line time starts now
            self.clock = LineClock(self.options.speed)
        client.subscribe(self.options.topics.commands, qos=0)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        if all(not code.is_failure for code in codes):
            self._subscribed.set()
        else:
            log.error("subscription_refused", topic=self.options.topics.commands)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._stop.is_set():
            log.warning("broker_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        at = self.clock.now()
        command = protocol.parse_command(message.payload)
        if isinstance(command, protocol.BadInput):
            self.stats["bad_commands"] += 1
            log.warning("command_rejected", reason=command.reason, excerpt=command.excerpt)
            return
        if command.rod and command.rod not in self.line.rods:
            self.stats["bad_commands"] += 1
            rods = self.options.topology.all_rods
            log.warning("command_rejected", reason=f"this line has no rod {command.rod}", rods=rods)
            return
        self.commands.put((at, command))

    def connect(self) -> None:
        """Connect and subscribe; line time starts when the broker accepted the connection."""
        self.client.connect(self.options.host, self.options.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT):
            self.client.loop_stop()
            raise ConnectionError(
                f"no subscription on {self.options.host}:{self.options.port} "
                f"within {CONNECT_TIMEOUT:.0f} s"
            )

    # ------------------------------------------------------------------ running
    def request_stop(self) -> None:
        """Ask the main loop to end (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Step the line until it ends; write ledger and summary; the summary."""
        self._open_ledger()
        self._started = (time.monotonic(), time.process_time())
        period = 1.0 / STEP_HZ
        deadline = time.monotonic()
        reason = "stopped"
        try:
            while not self._stop.is_set():
                now = self.clock.now()
                self._step(now)
                ended = self.end_reason(now)
                if ended:
                    reason = ended
                    break
                deadline = max(deadline + period, time.monotonic())
                self._stop.wait(deadline - time.monotonic())
            return self._finish(reason)
        finally:
            self._stop.set()
            self.client.disconnect()
            self.client.loop_stop()
            if self._ledger is not None:
                self._ledger.close()

    def _step(self, now: float) -> None:
        while True:
            try:
                at, command = self.commands.get_nowait()
            except queue.Empty:
                break
            at = max(at, self.line.time)
            self._last_command = at
            self.stats["commands"] += 1
            self._handle(self.line.apply(command, at))
        self._handle(self.line.advance(max(now, self.line.time)))
        self._render_ahead()
        self._send_due(self.line.time)

    def end_reason(self, now: float) -> str | None:
        """Why the run ends now, or None: all items through, or the controller went silent."""
        line = self.line
        if line.done and not self.outbox:
            since = line.last_end_time if line.last_end_time is not None else 0.0
            if not line.belt_running:
                return "line_empty_and_belt_stopped"
            if now - since >= self.options.linger:
                return "line_empty_and_lingered"
        if now - self._last_command >= self.options.silence_timeout:
            return "controller_silent"
        return None

    # ------------------------------------------------------------------ events
    def _handle(self, events: list[LineEvent]) -> None:
        for event in events:
            if isinstance(event, GateChanged):
                self._queue(event.time, "gate", protocol.encode_gate(event.gate, event.blocked))
                if event.blocked and self.injector.flicker():
                    off, on = FLICKER_OFFSETS
                    self._queue(event.time + off, "gate", protocol.encode_gate(event.gate, False))
                    self._queue(event.time + on, "gate", protocol.encode_gate(event.gate, True))
            elif isinstance(event, PictureDue):
                self._picture(event)
            elif isinstance(event, ItemResolved):
                item = self.line.items[event.item - 1]
                log.info(
                    "item_resolved", item=item.id, label=item.label, bin=item.bin, why=item.why
                )
                self._write_ledger(item)

    def _render_ahead(self) -> None:
        """Render each item's picture once it is on the belt, so that it goes out when due
        (rendering takes milliseconds: at speed 10 that is a tenth of a line second)."""
        for item in self.line.belt:
            if item.id not in self._jpegs and item.camera_time is None:
                size = self.config.sim.picture_size
                self._jpegs[item.id] = render.render_picture(
                    self.picture_rng, item.label, size, labels=self.classes
                )

    def _picture(self, event: PictureDue) -> None:
        jpeg = self._jpegs.pop(event.item, None)
        if jpeg is None:  # photographed in the step it was fed
            size = self.config.sim.picture_size
            jpeg = render.render_picture(self.picture_rng, event.label, size, labels=self.classes)
        sent = self.injector.picture(jpeg)
        if sent is None:
            self._picture_faults[event.item] = "missing"
            self.line.items[event.item - 1].picture_time = None
            return
        if sent is not jpeg:
            self._picture_faults[event.item] = "corrupt"
        self._queue(event.time, "picture", protocol.encode_picture(sent))

    def _queue(self, due: float, kind: str, payload: bytes) -> None:
        heapq.heappush(self.outbox, _Outgoing(due, next(self._seq), kind, payload))

    def _send_due(self, now: float) -> None:
        while self.outbox and self.outbox[0].due <= now:
            message = heapq.heappop(self.outbox)
            self.stats[f"{message.kind}s_generated"] += 1
            for payload in self.injector.deliver(message.payload):
                self.client.publish(self.options.topics.feedback, payload, qos=0)
                self.stats["messages_sent"] += 1

    # ------------------------------------------------------------------ records
    def _open_ledger(self) -> None:
        if self.options.ledger is not None:
            self.options.ledger.parent.mkdir(parents=True, exist_ok=True)
            self._ledger = self.options.ledger.open("w", encoding="utf-8")

    def _write_ledger(self, item: Item) -> None:
        if self._ledger is None:
            return
        record = item.record()
        record["picture_fault"] = self._picture_faults.get(item.id)
        self._ledger.write(json.dumps(record) + "\n")
        self._ledger.flush()

    def _finish(self, reason: str) -> dict[str, Any]:
        at = self.line.time
        for item in self.line.finish(at):
            self._write_ledger(item)
        summary = summarise(
            self.line,
            self.config.sorting.routes,
            stats=self.stats,
            faults=self._fault_counts(),
            ended_because=reason,
            speed=self.options.speed,
            seed=self.options.seed,
        )
        summary["process"] = self._process_cost()
        log.info("simulator_ended", reason=reason, line_time=round(at, 3))
        if self.options.summary is not None:
            self.options.summary.parent.mkdir(parents=True, exist_ok=True)
            self.options.summary.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        return summary

    def _process_cost(self) -> dict[str, float]:
        """CPU and memory this process used while the line ran (for bench/sim.py)."""
        from bt_sorter.portable import peak_rss_mib  # resource is POSIX only

        wall0, cpu0 = self._started
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        return {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_percent_of_one_core": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }

    def _fault_counts(self) -> dict[str, int]:
        counts = {
            name: 0
            for name in (
                "dropped",
                "duplicated",
                "malformed",
                "corrupt_pictures",
                "missing_pictures",
                "flickers",
            )
        }
        counts.update(self.injector.counts)
        counts["stuck_items"] = sum(1 for item in self.line.items if item.stuck)
        stall = self.options.faults.stall_belt_at
        counts["belt_stalls"] = int(stall is not None and self.line.time >= stall)
        drift = self.options.faults.belt_drift_at
        counts["belt_drifts"] = int(drift is not None and self.line.time >= drift)
        return counts
