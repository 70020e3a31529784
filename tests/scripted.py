"""A scripted stand-in for the course's sequential controller, for tests and benches.

It follows docs/line-protocol.md "The reference controller's behaviour": belt on, wait,
feed one item, wait for the falling edge of the gate just upstream of the item's rod,
push that rod, retract it, feed the next. It has no classifier: it is *given* the true
labels (read from the simulator's seed; for tests only). Unlike the course controller it
keeps every message in a queue, so no edge is lost between two polls.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from bt_sorter import protocol
from bt_sorter.clock import LineClock
from bt_sorter.config import Timings
from bt_sorter.sim.geometry import LineGeometry
from bt_sorter.topology import FS, Topology

EDGE_TIMEOUT = 40.0  # line s to wait for an item's gate edge before giving up on it


@dataclass
class ScriptedRun:
    """What a scripted run saw and did."""

    received: list[bytes] = field(default_factory=list)  # every bb payload, in order
    sent: list[protocol.Command] = field(default_factory=list)
    missed_items: list[int] = field(default_factory=list)  # 1-based, edge never came

    def events(self) -> list[protocol.Feedback]:
        return [e for payload in self.received for e in protocol.parse_feedback(payload)]


class SequentialClient:
    """One item at a time, pushed on the falling edge of the gate upstream of its rod.

    ``labels[k]`` is the label of the k-th item fed; ``labels=None`` lets every item ride
    to the belt end (a plain feeder for fault tests). ``topology`` says which gate fires
    each rod (the FS scene's by default); a route to a rod it lacks is a ``ValueError``.
    """

    def __init__(
        self,
        broker: str,
        *,
        items: int,
        labels: Sequence[str] | None,
        routes: Mapping[str, int],
        speed: float,
        timings: Timings | None = None,
        edge_timeout: float = EDGE_TIMEOUT,
        geometry: LineGeometry | None = None,
        topology: Topology = FS,
    ) -> None:
        missing = sorted({rod for rod in routes.values() if rod not in topology.rods})
        if missing:
            raise ValueError(f"routes to rods {missing} this line lacks ({topology.describe()})")
        host, _, port = broker.rpartition(":")
        self.host, self.port = host, int(port)
        self.items = items
        self.labels = labels
        self.routes = routes
        self.timings = timings or Timings()
        self.edge_timeout = edge_timeout
        self.geometry = geometry or LineGeometry.for_gates(topology.gates)
        self.topology = topology
        self.clock = LineClock(speed)
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.result = ScriptedRun()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"scripted_{time.time_ns() % 10**9}"
        )
        self.client.on_connect = lambda c, *_: c.subscribe(protocol.FEEDBACK_TOPIC, qos=0)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.inbox.put(message.payload)

    def connect(self, timeout: float = 10.0) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise ConnectionError(f"scripted client got no subscription on {self.host}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> SequentialClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the script
    def run(self) -> ScriptedRun:
        """Sort every item, then retract all rods and stop the belt."""
        t = self.timings
        self.send(protocol.BELT_RUN)
        self.sleep(t.belt_start_wait)
        for k in range(self.items):
            self.feed()
            label = self.labels[k] if self.labels is not None else None
            rod = self.routes.get(label) if label is not None else None
            gate = self.topology.gate_of(rod) if rod else self.topology.last_gate
            if not self.wait_for_edge(gate, blocked=False):
                self.result.missed_items.append(k + 1)
                continue
            if rod:
                self.send(protocol.push(rod))
                self.sleep(t.push_hold)
                self.send(protocol.pull(rod))
                self.sleep(t.push_back)
        if self.items and not rod:
            self.sleep(self.time_to_belt_end())
        self.send(protocol.ALL_PULL)
        self.sleep(t.stop_wait)
        self.send(protocol.BELT_STOP)
        self.drain()
        return self.result

    def time_to_belt_end(self) -> float:
        """Line s from an item clearing the last gate until it has fallen off the belt end."""
        geo = self.geometry
        travel = geo.belt_length - geo.gate_positions[-1] + geo.item_length / 2
        return travel / geo.belt_speed + 0.5

    def feed(self) -> None:
        self.send(protocol.push(1))
        self.sleep(self.timings.feed_hold)
        self.send(protocol.pull(1))
        self.sleep(self.timings.feed_back)

    def send(self, command: protocol.Command) -> None:
        self.client.publish(protocol.COMMAND_TOPIC, protocol.encode_command(command), qos=0)
        self.result.sent.append(command)

    def send_raw(self, payload: bytes) -> None:
        """Publish any payload on the command topic (for bad-input tests)."""
        self.client.publish(protocol.COMMAND_TOPIC, payload, qos=0)

    def sleep(self, line_seconds: float) -> None:
        time.sleep(self.clock.wall(line_seconds))

    def wait_for_edge(self, gate: int, blocked: bool) -> bool:
        """Consume messages until gate ``gate`` reports ``blocked``; False on timeout."""
        deadline = time.monotonic() + self.clock.wall(self.edge_timeout)
        while (left := deadline - time.monotonic()) > 0:
            try:
                payload = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            self.result.received.append(payload)
            for event in protocol.parse_feedback(payload):
                if isinstance(event, protocol.GateEdge) and event == protocol.GateEdge(
                    gate, blocked
                ):
                    return True
        return False

    def drain(self, quiet: float = 0.3) -> None:
        """Collect what is still arriving until ``quiet`` wall seconds pass without a message."""
        while True:
            try:
                self.result.received.append(self.inbox.get(timeout=quiet))
            except queue.Empty:
                return


def run_sequential(broker: str, **kwargs: Any) -> ScriptedRun:
    """Connect, run the sequential script, disconnect."""
    with SequentialClient(broker, **kwargs) as client:
        return client.run()
