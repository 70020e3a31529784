"""A plain paho client on the test broker in the line's place: plays it, records what it hears."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess


class Peer:
    """A plain paho client on the broker: plays the line, records what it receives."""

    def __init__(self, broker: BrokerProcess, *topics: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"peer-{uuid.uuid4()}")
        ready = threading.Event()

        def on_connect(client: mqtt.Client, *_: object) -> None:
            for topic in topics:
                client.subscribe(topic)
            ready.set()

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.received.append((msg.topic, msg.payload))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(5)
        time.sleep(0.05)  # let the SUBACK land before the test publishes

    def publish(self, payload: bytes, topic: str = protocol.FEEDBACK_TOPIC) -> None:
        self.client.publish(topic, payload).wait_for_publish(2)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.received if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
