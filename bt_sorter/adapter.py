"""The MQTT adapter: paho's network thread on one side, a queue of typed events on the other.

The adapter never touches the tree. paho's thread parses every feedback payload with
:func:`bt_sorter.protocol.parse_feedback` and appends each event, stamped with line time,
to a thread-safe queue; nothing is overwritten, so two edges between two ticks stay two
events in arrival order. Connects and disconnects become :class:`ConnectionChanged`
events in the same queue. The runner drains the queue before each tick
(:meth:`MqttAdapter.drain`) and publishes the commands the tree requested
(:meth:`MqttAdapter.publish`). paho reconnects with backoff; the feedback topic is
subscribed again on every connect, so a restarted broker (which forgot the session)
still delivers.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bt_sorter import protocol
from bt_sorter.blackboard import ConnectionChanged, Event, Received
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig
from bt_sorter.log import get_logger

log = get_logger("bt_sorter.adapter")


class AdapterConfigError(ValueError):
    """The broker settings cannot be used (e.g. a TLS file that does not load)."""


class MqttAdapter:
    """One paho client: connects, reconnects, queues feedback events, publishes commands."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: LineClock,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.host = host or config.host
        self.port = port or config.port
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._state_lock = threading.Lock()
        self._online = False  # last state put in the queue
        self._last_info: mqtt.MQTTMessageInfo | None = None
        self._started = False
        self._stopping = False
        self.connects = 0  # successful connects so far (1 + reconnects)
        self.messages = 0  # feedback payloads received
        self.unsent = 0  # commands that could not be handed to the network
        self.refusals: list[str] = []  # the broker's reasons for refusing a connect
        self.failed_connects = 0  # attempts that failed or closed before the broker accepted
        self._subscribe_mid: int | None = None

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=config.clean_session,
            protocol=mqtt.MQTTv311,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls.enabled:
            tls = config.tls
            try:
                client.tls_set(ca_certs=tls.ca_certs, certfile=tls.certfile, keyfile=tls.keyfile)
            except (OSError, ValueError) as exc:
                raise AdapterConfigError(f"broker.tls: {exc}") from exc
            client.tls_insecure_set(tls.insecure)
        # paho's backoff doubles from min to max; it accepts fractions of a second.
        client.reconnect_delay_set(
            min_delay=config.reconnect_min_delay,  # type: ignore[arg-type]
            max_delay=config.reconnect_max_delay,  # type: ignore[arg-type]
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho's network thread); returns at once."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        log.info("broker_connecting", host=self.host, port=self.port, client=self.config.client_id)
        self._client.connect_async(self.host, self.port, keepalive=self.config.keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed (feedback sent from now on arrives), False if
        ``timeout`` seconds pass first."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect and stop paho's thread."""
        if not self._started:
            return
        self._started = False
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> MqttAdapter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the runner's side ---------------------------------------------------------------

    def drain(self) -> list[Event]:
        """Everything queued since the last call, in arrival order; never blocks."""
        out: list[Event] = []
        try:
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            return out

    def publish(self, command: protocol.Command) -> bool:
        """Publish ``command`` on the command topic (QoS 0); False when it could not go out."""
        return self._publish(protocol.COMMAND_TOPIC, protocol.encode_command(command), str(command))

    def publish_status(self, event: str, **facts: Any) -> bool:
        """Publish ``{"event": event, **facts}`` as JSON on the status topic (QoS 0)."""
        body = json.dumps({"event": event, "t": round(self.clock.now(), 3), **facts}, default=str)
        return self._publish(self.config.status_topic, body.encode(), event)

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until the last published message has been written to the socket."""
        info = self._last_info
        if info is None:
            return True
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def _publish(self, topic: str, payload: bytes, what: str) -> bool:
        if not self._connected.is_set():
            self.unsent += 1
            log.warning("publish_skipped_offline", topic=topic, message=what)
            return False
        info = self._client.publish(topic, payload, qos=0)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.unsent += 1
            log.warning("publish_failed", topic=topic, message=what, rc=mqtt.error_string(info.rc))
            return False
        self._last_info = info
        return True

    # -- paho's thread -----------------------------------------------------------------

    def _set_online(self, online: bool, reason: str) -> None:
        with self._state_lock:
            if online == self._online:
                return
            self._online = online
            self._events.put(ConnectionChanged(self.clock.now(), online, reason))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker_refused", host=self.host, port=self.port, reason=str(reason_code))
            self.refusals.append(str(reason_code))
            return
        # Subscribe on every connect: a restarted broker has forgotten the session.
        result, mid = client.subscribe(protocol.FEEDBACK_TOPIC, qos=0)
        self._subscribe_mid = mid
        self.connects += 1
        log.info(
            "broker_connected",
            host=self.host,
            port=self.port,
            session_present=flags.session_present,
            connects=self.connects,
            subscribed=result == MQTTErrorCode.MQTT_ERR_SUCCESS,
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        # Online once the broker has acknowledged the feedback subscription: from then on
        # nothing the line sends is missed for want of it.
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("subscription_refused", topic=protocol.FEEDBACK_TOPIC, reasons=refused)
        self._connected.set()
        self._set_online(True, "connected")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: Any,
        properties: Any,
    ) -> None:
        reason = str(reason_code)
        if not self._connected.is_set() and not self._stopping:
            self.failed_connects += 1  # the link closed before the broker accepted us
        self._connected.clear()
        if self._stopping:
            log.info("broker_disconnected", host=self.host, port=self.port, reason=reason)
        elif self._online:
            log.warning("broker_lost", host=self.host, port=self.port, reason=reason)
        self._set_online(False, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.failed_connects += 1
        log.warning("broker_connect_failed", host=self.host, port=self.port)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != protocol.FEEDBACK_TOPIC:
            return
        self.messages += 1
        t = self.clock.now()
        for event in protocol.parse_feedback(msg.payload):
            self._events.put(Received(t, event))
