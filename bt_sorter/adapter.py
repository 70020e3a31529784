"""The MQTT adapter: paho's network thread on one side, a queue of typed events on the other.

The adapter never touches the tree. paho's thread parses every feedback payload with
:func:`bt_sorter.protocol.parse_feedback` and appends each event, stamped with line time,
to a thread-safe queue; nothing is overwritten, so two edges between two ticks stay two
events in arrival order. Connects and disconnects become :class:`ConnectionChanged`
events in the same queue. The runner drains the queue before each tick
(:meth:`MqttAdapter.drain`) and publishes the commands the tree requested
(:meth:`MqttAdapter.publish`). paho reconnects with backoff; the feedback topic is
subscribed again on every connect, so a restarted broker (which forgot the session)
still delivers. The topics are the config's ``broker.topics`` (the FS scene's ``aa``/``bb``
unless the line has a prefix); the line's retained status goes to its status topic, and
the broker publishes an ``offline`` status in the controller's place if it vanishes.

What a message may cost is bounded (``config.limits``): a payload over
``payload_bytes`` is refused before it is parsed, every picture's header is checked
before it is queued (a pixel bomb becomes bad input here, in paho's thread, and never
reaches the blackboard), and the queue holds at most ``queue_events`` events and
``queue_bytes`` of pictures. What does not fit is dropped, counted by kind, logged, and
reported to the blackboard as a :class:`Dropped` event at the next drain.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bt_sorter import protocol
from bt_sorter.blackboard import ConnectionChanged, Dropped, Event, Received
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig, Limits
from bt_sorter.log import get_logger
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.picture_header import check_picture

log = get_logger("bt_sorter.adapter")


class AdapterConfigError(ValueError):
    """The broker settings cannot be used (e.g. a TLS file that does not load)."""


class EventQueue:
    """The adapter's queue: bounded by events and by picture bytes, never blocking.

    A feedback event that does not fit is dropped and counted by kind; connection
    changes always fit. :meth:`drain` hands over the drops since the last drain as one
    :class:`Dropped` event after the events.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events, self.max_bytes = max_events, max_bytes
        self._lock = threading.Lock()
        self._events: collections.deque[Event] = collections.deque()
        self._bytes = 0
        self._dropped: collections.Counter[str] = collections.Counter()  # since the last drain
        self.dropped: collections.Counter[str] = collections.Counter()  # in all
        self._logged_at = -1e9

    def put(self, event: Event) -> bool:
        """Queue ``event``; False (and counted) when it was dropped."""
        size = 0
        if isinstance(event, Received) and isinstance(event.event, protocol.Picture):
            size = len(event.event.data)
        with self._lock:
            full = len(self._events) >= self.max_events or self._bytes + size > self.max_bytes
            if isinstance(event, Received) and full:
                kind = protocol.kind_of(event.event)
                self._dropped[kind] += 1
                self.dropped[kind] += 1
                now = time.monotonic()
                if now - self._logged_at >= 1.0:  # a flood must not flood the log too
                    self._logged_at = now
                    log.warning("feedback_dropped", queue_full=len(self._events),
                                queued_bytes=self._bytes, dropped=dict(self.dropped))  # fmt: skip
                return False
            self._events.append(event)
            self._bytes += size
            return True

    def drain(self, t: float) -> list[Event]:
        """Everything queued, in arrival order, then a :class:`Dropped` if any were dropped."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
            self._bytes = 0
            dropped, self._dropped = dict(self._dropped), collections.Counter()
        if dropped:
            out.append(Dropped(t, dropped))
        return out


class MqttAdapter:
    """One paho client: connects, reconnects, queues feedback events, publishes commands."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: LineClock,
        host: str | None = None,
        port: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.host = host or config.host
        self.port = port or config.port
        self.topics = config.topics.resolve()
        self.limits = limits or Limits()
        self._events = EventQueue(self.limits.queue_events, self.limits.queue_bytes)
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
        offline = protocol.encode_line_status(
            "offline", line=config.topics.line_name(), counts={}, reason="controller vanished"
        )
        client.will_set(self.topics.status, offline, qos=1, retain=True)
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
        return self._events.drain(self.clock.now())

    def publish(self, command: protocol.Command) -> bool:
        """Publish ``command`` on the command topic (QoS 0); False when it could not go out."""
        return self._publish(self.topics.commands, protocol.encode_command(command), str(command))

    def publish_status(self, event: str, **facts: Any) -> bool:
        """Publish ``{"event": event, **facts}`` as JSON on the status topic (QoS 0)."""
        body = json.dumps({"event": event, "t": round(self.clock.now(), 3), **facts}, default=str)
        return self._publish(self.topics.status, body.encode(), event)

    def publish_line_status(self, payload: bytes) -> bool:
        """Publish the line's retained status (:func:`protocol.encode_line_status`), QoS 1."""
        return self._publish(self.topics.status, payload, "line_status", qos=1, retain=True)

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

    def _publish(
        self, topic: str, payload: bytes, what: str, qos: int = 0, retain: bool = False
    ) -> bool:
        if not self._connected.is_set():
            self.unsent += 1
            log.warning("publish_skipped_offline", topic=topic, message=what)
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
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
        result, mid = client.subscribe(self.topics.feedback, qos=0)
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
        if msg.topic != self.topics.feedback:
            return
        self.messages += 1
        queue_feedback(self._events, msg.payload, self.clock.now(), self.limits)


def queue_feedback(events: EventQueue, payload: bytes, t: float, limits: Limits) -> None:
    """Parse one feedback payload that arrived at line time ``t`` and queue its events
    (the adapter's side of every transport: paho's thread, or the deterministic
    simulation's network)."""
    for event in protocol.parse_feedback(payload, limits.payload_bytes):
        events.put(Received(t, admit(event, limits)))


def admit(event: protocol.Feedback, limits: Limits) -> protocol.Feedback:
    """A picture whose header breaks the limits becomes bad input, here and undecoded."""
    if isinstance(event, protocol.Picture):
        try:
            check_picture(event.data, limits)
        except BadPictureError as exc:
            return protocol.BadInput(f"picture refused: {exc}")
    return event
