"""A back end that asks classifier workers over MQTT 5 request/response, holding no thread.

Each picture is one request on :data:`bt_sorter.protocol.CLASSIFY_REQUEST_TOPIC`: the raw
encoded picture as payload (as the course's HTTP API takes it), with the MQTT 5 properties
Response Topic (this controller's reply topic) and Correlation Data (a fresh id per
request), and a Message Expiry so a broker drops a request nobody took in time. Workers
(``python -m bt_sorter.vision.worker``) take requests from a shared subscription and answer
with the course's JSON, which :func:`bt_sorter.vision.http_backend._parse_answer` reads
(a doubted answer's ``doubt`` included, so it goes to bin 1 as an in-process one does).

:meth:`MqttClassifier.submit` returns a future at once; paho's thread completes it when the
answer lands, a timer fails it with :class:`ClassifyError` once ``reply_timeout`` (wall s)
passes without one. A worker killed with a request in hand therefore costs one retry: the
tree's retry sends the picture again and another worker answers; the HSV fallback and bin 1
cover the rest. Answers that come after their request gave up are counted and dropped.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import heapq
import json
import math
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bt_sorter import protocol
from bt_sorter.log import get_logger
from bt_sorter.vision.classifier import ClassifyError, Prediction
from bt_sorter.vision.http_backend import _parse_answer

log = get_logger("bt_sorter.vision.mqtt")

CONNECT_TIMEOUT = 10.0  # wall s to connect and subscribe to the reply topic
MQTT3_ONLY = (
    "speaks MQTT 3.1.1 only (it refused an MQTT 5 connection). Classifier workers need MQTT 5 "
    "(request/response properties, shared subscriptions): use mosquitto >= 1.6, EMQX, HiveMQ or "
    "VerneMQ; the embedded amqtt broker (--broker-kind amqtt) cannot serve a plant"
)


def connect_v5(client: mqtt.Client, host: str, port: int, what: str) -> None:
    """Connect ``client`` (MQTT 5) synchronously; ClassifyError saying why when it cannot.

    A broker that speaks 3.1.1 only answers an MQTT 5 CONNECT with "unsupported protocol
    version" or just closes the connection; both are reported as such, clearly.
    """
    try:
        client.connect(host, port, keepalive=30, clean_start=True)
    except (OSError, ValueError) as exc:
        raise ClassifyError(f"{what}: cannot reach broker {host}:{port}: {exc}") from exc


def mqtt5_refusal(host: str, port: int, reason: Any) -> str:
    """The message for a broker that refused or dropped an MQTT 5 CONNECT."""
    text = str(reason)
    if "protocol" in text.lower() or "unacceptable" in text.lower() or not text:
        return f"broker {host}:{port} {MQTT3_ONLY}"
    return f"broker {host}:{port} refused the connection: {text}"


class MqttClassifier:
    """Classifies by asking whichever worker of the shared group takes the request."""

    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        reply_timeout: float,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.host, self.port = host, port
        self.reply_timeout = reply_timeout
        self.reply_topic = protocol.classify_reply_topic(client_id)
        self.sent = 0
        self.answered = 0
        self.timed_out = 0
        self.late_answers = 0
        self._pending: dict[bytes, concurrent.futures.Future[Prediction]] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._changed = threading.Condition()
        self._closed = False
        self._ready = threading.Event()
        self._refusal: str | None = None
        self._connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        connect_v5(client, host, port, "classifier 'mqtt'")
        client.loop_start()
        if not self._ready.wait(connect_timeout) or self._refusal is not None:
            client.loop_stop()
            raise ClassifyError(self._refusal or mqtt5_refusal(host, port, ""))
        self._reaper = threading.Thread(target=self._expire, name="classify-mqtt-timeouts")
        self._reaper.daemon = True
        self._reaper.start()
        log.info("classifier_connected", broker=f"{host}:{port}", reply_topic=self.reply_topic)

    # -- the controller's side -------------------------------------------------------------

    def submit(self, data: bytes) -> concurrent.futures.Future[Prediction]:
        """Send one request; the future holds a Prediction or a ClassifyError. Never blocks."""
        future: concurrent.futures.Future[Prediction] = concurrent.futures.Future()
        if not self._connected.is_set():
            future.set_exception(ClassifyError(f"workers' broker {self.host}:{self.port} offline"))
            return future
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = max(1, math.ceil(self.reply_timeout))
        with self._changed:
            self._pending[correlation] = future
            heapq.heappush(self._deadlines, (time.monotonic() + self.reply_timeout, correlation))
            self._changed.notify()
        future.add_done_callback(lambda _f: self._forget(correlation))
        info = self._client.publish(protocol.CLASSIFY_REQUEST_TOPIC, data, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._fail(correlation, f"request not sent: {mqtt.error_string(info.rc)}")
        else:
            self.sent += 1
        return future

    def classify(self, data: bytes) -> Prediction:
        """Blocking form for tools and tests: wait for :meth:`submit`'s answer."""
        return self.submit(data).result(self.reply_timeout + 1.0)

    def close(self) -> None:
        """Fail what is still pending, disconnect."""
        with self._changed:
            self._closed = True
            pending = list(self._pending)
            self._changed.notify()
        for correlation in pending:
            self._fail(correlation, "classifier closed")
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "timed_out": self.timed_out,
            "late_answers": self.late_answers,
        }

    # -- futures and deadlines -----------------------------------------------------------------

    def _forget(self, correlation: bytes) -> None:
        with self._changed:
            self._pending.pop(correlation, None)

    def _take(self, correlation: bytes) -> concurrent.futures.Future[Prediction] | None:
        with self._changed:
            return self._pending.pop(correlation, None)

    def _fail(self, correlation: bytes, reason: str) -> None:
        future = self._take(correlation)
        if future is not None and future.set_running_or_notify_cancel():
            future.set_exception(ClassifyError(reason))

    def _expire(self) -> None:
        """Fail each request whose reply_timeout has passed (one thread, sleeps to a deadline)."""
        while True:
            with self._changed:
                while not self._closed and not self._deadlines:
                    self._changed.wait()
                if self._closed:
                    return
                due, correlation = self._deadlines[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                heapq.heappop(self._deadlines)
                waiting = correlation in self._pending
            if waiting:
                self.timed_out += 1
                log.warning("classify_no_answer", timeout_s=self.reply_timeout)
                self._fail(correlation, f"no worker answered within {self.reply_timeout:.3g} s")

    # -- paho's thread -----------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refusal = mqtt5_refusal(self.host, self.port, reason)
            log.error("classifier_broker_refused", reason=str(reason))
            self._ready.set()
            return
        client.subscribe(self.reply_topic, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        if any(code.is_failure for code in codes):
            self._refusal = f"broker {self.host}:{self.port} refused the reply subscription"
        else:
            self._connected.set()
        self._ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._ready.is_set():  # dropped during the handshake: a 3.1.1-only broker
            self._refusal = mqtt5_refusal(self.host, self.port, reason)
            self._ready.set()
        elif not self._closed and self._refusal is None:
            log.warning("classifier_broker_lost", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        future = self._take(correlation) if isinstance(correlation, bytes) else None
        if future is None:
            self.late_answers += 1
            return
        if not future.set_running_or_notify_cancel():
            return
        self.answered += 1
        try:
            prediction = _parse_answer(msg.payload, self.name)
        except ClassifyError as exc:
            future.set_exception(exc)
            return
        worker = _worker_of(msg.payload)
        if worker:
            prediction = dataclasses.replace(prediction, backend=f"mqtt:{worker}")
        future.set_result(prediction)


def _worker_of(payload: bytes) -> str | None:
    try:
        worker = json.loads(payload).get("worker")
    except (ValueError, AttributeError):
        return None
    return worker if isinstance(worker, str) else None
