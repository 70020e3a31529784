"""The simulator's MQTT side: commands in, line physics stepped, feedback out.

:class:`SimNode` connects a paho client (callback API v2, QoS 0), subscribes to the
command topic, and once the broker has acknowledged the subscription starts line time
and prints one ready line on stdout (``{"event": "sim_ready", ...}``). The main thread
then steps the line (:class:`bt_sorter.sim.core.SimCore`: physics, wire faults,
pictures, ledger) at about 200 Hz (sleeping to a deadline): each command is applied at
the line time it arrived, and each line event is published at its own line time through
the fault injector. The run ends by itself (see :meth:`SimCore.end_reason`) or on
:meth:`SimNode.request_stop`; then the ledger and the summary are written.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bt_sorter import protocol
from bt_sorter.clock import LineClock
from bt_sorter.config import Config, FaultConfig
from bt_sorter.log import get_logger
from bt_sorter.sim.core import SimCore, check_mix
from bt_sorter.sim.geometry import LineGeometry
from bt_sorter.topology import FS, Topology

__all__ = ["STEP_HZ", "SimNode", "SimOptions", "check_mix"]

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


class SimNode:
    """A simulated line on an MQTT broker."""

    def __init__(self, config: Config, options: SimOptions) -> None:
        self.config = config
        self.options = options
        self.core = SimCore(
            config,
            items=options.items,
            seed=options.seed,
            faults=options.faults,
            geometry=options.geometry,
            topology=options.topology,
            send=self._publish,
            linger=options.linger,
            silence_timeout=options.silence_timeout,
        )
        self.line = self.core.line
        self.clock = LineClock(options.speed)
        self.commands: queue.Queue[tuple[float, protocol.Command]] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
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
        command = self.core.parse(message.payload)
        if command is not None:
            self.commands.put((at, command))

    def _publish(self, due: float, payload: bytes) -> None:
        self.client.publish(self.options.topics.feedback, payload, qos=0)

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
        if self.options.ledger is not None:
            self.options.ledger.parent.mkdir(parents=True, exist_ok=True)
            self.core.ledger = self.options.ledger.open("w", encoding="utf-8")
        self._started = (time.monotonic(), time.process_time())
        period = 1.0 / STEP_HZ
        deadline = time.monotonic()
        reason = "stopped"
        try:
            while not self._stop.is_set():
                now = self.clock.now()
                self._step(now)
                ended = self.core.end_reason(now)
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
            if self.core.ledger is not None:
                self.core.ledger.close()

    def _step(self, now: float) -> None:
        while True:
            try:
                at, command = self.commands.get_nowait()
            except queue.Empty:
                break
            self.core.apply(command, at)
        self.core.step(now)

    def _finish(self, reason: str) -> dict[str, Any]:
        summary = self.core.finish(reason, self.options.speed)
        summary["process"] = self._process_cost()
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
