"""Test helpers: a plain paho client in the line's place on the test broker, and polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``cond`` every 10 ms until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Peer:
    """A plain paho client on the broker: plays the line, records what it receives."""

    def __init__(self, broker: BrokerProcess, *topics: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.arrived: list[float] = []  # time.monotonic() of each message in ``received``
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"peer-{uuid.uuid4()}")
        ready = threading.Event()
        pending: set[int] = set()

        def on_connect(client: mqtt.Client, *_: object) -> None:
            with self._lock:
                for topic in topics:
                    pending.add(client.subscribe(topic)[1])
                if not pending:
                    ready.set()

        def on_subscribe(client: mqtt.Client, userdata: object, mid: int, *_: object) -> None:
            with self._lock:  # ready once the broker has acknowledged every subscription
                pending.discard(mid)
                if not pending:
                    ready.set()

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.received.append((msg.topic, msg.payload))
                self.arrived.append(time.monotonic())

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_subscribe = on_subscribe
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(30), "the peer's subscriptions were not acknowledged"

    def publish(self, payload: bytes, topic: str = protocol.FEEDBACK_TOPIC) -> None:
        self.client.publish(topic, payload).wait_for_publish(2)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.received if t == topic]

    def timed(self, topic: str) -> list[tuple[float, bytes]]:
        """(monotonic arrival time, payload) of each message on ``topic``, in order."""
        with self._lock:
            pairs = zip(self.arrived, self.received, strict=True)
            return [(at, p) for at, (t, p) in pairs if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
