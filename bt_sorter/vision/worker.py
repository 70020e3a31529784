"""``python -m bt_sorter.vision.worker --broker H:P``: one classifier worker of a plant.

    python -m bt_sorter.vision.worker --broker HOST:PORT [--group classifiers]
        [--model models/resnet18_tomato.pth] [--threads 1] [--max-batch 8] [--window 0.005]
        [--max-queue 64] [--max-queue-bytes 67108864]

The worker takes requests from the MQTT 5 shared subscription
``$share/<group>/bt_sorter/classify/request``: the broker hands each request to one member
of the group, so starting another worker (here or on another machine) adds capacity and
stopping one moves its share to the others. A request is the raw encoded picture with the
Response Topic and Correlation Data properties (:mod:`bt_sorter.vision.mqtt_backend`); the
answer is the course's JSON (``{"results": [{"label", "confidence"}], "code", "error"}``,
a doubted result with its ``"doubt"``, :func:`bt_sorter.protocol.classify_result`) plus
``"worker"``, sent to the response topic with the same correlation data.

A request that waited in the worker past its Message Expiry (the broker passes on what is
left of it) is dropped unanswered: its controller has retried or fallen back by then.
Requests that arrive together are classified together: after the first one the worker
gathers whatever else comes within ``--window`` seconds (at most ``--max-batch``) and runs
one forward pass. A bad request (not a picture, too large) gets a code-1 answer with the
reason; one without a usable response topic is logged and counted. Requests waiting in
the worker are bounded (``--max-queue`` requests, ``--max-queue-bytes`` of pictures): one
that finds the queue full is answered at once with code 1 and the reason (``worker ... busy``)
and counted as ``refused_busy``, so a burst costs bounded memory and every request gets
an answer or a refusal; the requester retries or falls back. A busy refusal goes out at
QoS 0: the worker does not hold thousands of them until the broker acknowledges each (one
lost on a broken link is a timeout to its requester, as no answer at all would be).
Nothing a request carries ends the worker. While it runs, its presence is retained on
``bt_sorter/workers/<id>`` (cleared by its will when it dies), for ``bt_sorter.plant status``.
stdout: one ``{"event": "worker_ready", ...}`` line once subscribed, a summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bt_sorter import log as logs
from bt_sorter import protocol
from bt_sorter.argtypes import non_negative_float, positive_int
from bt_sorter.broker import stop_process
from bt_sorter.config import ClassifierConfig
from bt_sorter.portable import child_kwargs, peak_rss_mib, stop_signals
from bt_sorter.vision.classifier import BadPictureError, Classifier, ClassifyError, Prediction
from bt_sorter.vision.mqtt_backend import CONNECT_TIMEOUT, connect_v5, mqtt5_refusal
from bt_sorter.vision.preprocess import decode_picture

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAX_PICTURE = 8 * 1024 * 1024
DEFAULT_MAX_QUEUE = 64  # requests waiting in the worker (8 batches of the default size)
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024  # picture bytes waiting in the worker
BUSY_LOG_EVERY = 5.0  # wall s between two log lines about busy refusals
PRESENCE_EVERY = 5.0  # wall s between two refreshes of the retained presence

log = logs.get_logger("bt_sorter.vision.worker")


@dataclass(frozen=True, slots=True)
class Request:
    """One classification request as it came off the shared subscription."""

    picture: bytes
    reply_topic: str
    correlation: bytes | None
    received: float  # monotonic
    expires: float | None = None  # monotonic; the requester has given up by then


class Worker:
    """One member of the shared group: subscribe, gather, classify in batches, answer."""

    def __init__(
        self,
        classifier: Classifier,
        host: str,
        port: int,
        *,
        group: str = protocol.DEFAULT_WORKER_GROUP,
        worker_id: str | None = None,
        max_batch: int = 8,
        window: float = 0.005,
        max_picture: int = DEFAULT_MAX_PICTURE,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ) -> None:
        if max_queue <= 0 or max_queue_bytes <= 0:
            raise ValueError("the worker's queue must hold at least one request and one byte")
        self.classifier = classifier
        self.host, self.port = host, port
        self.group = group
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.subscription = protocol.shared_subscription(group, protocol.CLASSIFY_REQUEST_TOPIC)
        self.max_batch = max(1, max_batch)
        self.window = max(0.0, window)
        self.max_picture = max_picture
        self.max_queue, self.max_queue_bytes = max_queue, max_queue_bytes
        self.counts: Counter[str] = Counter()
        self.batch_sizes: Counter[int] = Counter()
        self._requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._queue_lock = threading.Lock()
        self._queued = 0  # requests in ``_requests`` (the stop marker not counted)
        self._queued_bytes = 0
        self._busy_logged_at = -1e9
        self._ready = threading.Event()
        self._refusal: str | None = None
        self._stop = False
        self._presence_at = 0.0
        self._started = (time.monotonic(), time.process_time())
        self.presence_topic = protocol.worker_status_topic(self.id)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bt_sorter-worker-{self.id}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        client.will_set(self.presence_topic, b"", qos=1, retain=True)  # gone: clear presence
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle --------------------------------------------------------------------------

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect and join the shared group; ClassifyError saying why when it cannot."""
        connect_v5(self._client, self.host, self.port, "worker")
        self._client.loop_start()
        if not self._ready.wait(timeout) or self._refusal is not None:
            self._client.loop_stop()
            raise ClassifyError(self._refusal or mqtt5_refusal(self.host, self.port, ""))
        log.info("worker_joined", worker=self.id, subscription=self.subscription)

    def request_stop(self) -> None:
        """End :meth:`serve` after the batch in hand (safe from a signal handler)."""
        self._stop = True
        self._requests.put(None)  # SimpleQueue.put is reentrant: fine in a signal handler

    def serve(self) -> dict[str, Any]:
        """Answer requests until :meth:`request_stop`; the worker's summary."""
        try:
            while not self._stop:
                batch = self._gather()
                if batch:
                    self._answer_batch(batch)
                if time.monotonic() - self._presence_at >= PRESENCE_EVERY:
                    self._publish_presence()
        finally:
            self._client.publish(self.presence_topic, b"", qos=1, retain=True)
            self._client.disconnect()
            self._client.loop_stop()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        wall0, cpu0 = self._started
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        return {
            "worker": self.id,
            "group": self.group,
            "counts": dict(self.counts),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "cpu_percent_of_one_core": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }

    # -- batching ---------------------------------------------------------------------------

    def _gather(self) -> list[Request]:
        """The next request (waiting up to PRESENCE_EVERY), and what arrives within the window."""
        try:
            first = self._requests.get(timeout=PRESENCE_EVERY)
        except queue.Empty:
            return []
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self.window
        while len(batch) < self.max_batch:
            try:
                more = self._requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if more is None:
                self._stop = True
                break
            batch.append(more)
        with self._queue_lock:  # out of the queue: room for as many more
            self._queued -= len(batch)
            self._queued_bytes -= sum(len(r.picture) for r in batch)
        return batch

    def _answer_batch(self, batch: list[Request]) -> None:
        """Decode each picture, one forward pass for the good ones, answer every request."""
        now = time.monotonic()
        stale = [r for r in batch if r.expires is not None and r.expires < now]
        if stale:  # queued past their expiry: the controller has retried or fallen back
            self.counts["expired"] += len(stale)
            log.info("requests_expired", count=len(stale))
            batch = [r for r in batch if r not in stale]
        if not batch:
            return
        self.batch_sizes[len(batch)] += 1
        good: list[tuple[Request, Any]] = []
        for request in batch:
            if len(request.picture) > self.max_picture:
                self._refuse(request, f"picture of {len(request.picture)} bytes is over the limit")
                continue
            try:
                good.append((request, decode_picture(request.picture)))
            except BadPictureError as exc:
                self._refuse(request, str(exc))
        if not good:
            return
        try:
            predictions = self._classify([image for _, image in good], [r for r, _ in good])
        except Exception as exc:  # a broken model call must not end the worker
            log.error("batch_failed", error=repr(exc), size=len(good))
            for request, _ in good:
                self._refuse(request, f"worker error: {type(exc).__name__}: {exc}")
            return
        for (request, _), prediction in zip(good, predictions, strict=True):
            self.counts["answered"] += 1
            body = protocol.encode_classify_answer(
                prediction.label, prediction.confidence, doubt=prediction.doubt, worker=self.id
            )
            self._reply(request, body)

    def _classify(self, images: list[Any], requests: Sequence[Request]) -> list[Prediction]:
        batch_call = getattr(self.classifier, "classify_images", None)
        if batch_call is not None:
            return list(batch_call(images))
        return [self.classifier.classify(r.picture) for r in requests]

    def _refuse(self, request: Request, reason: str) -> None:
        self.counts["refused"] += 1
        log.info("request_refused", reason=reason, reply_topic=request.reply_topic)
        self._reply(request, protocol.encode_classify_answer(None, error=reason, worker=self.id))

    def _reply(self, request: Request, body: bytes, qos: int = 1) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if request.correlation is not None:
            props.CorrelationData = request.correlation
        self._client.publish(request.reply_topic, body, qos=qos, properties=props)

    def _publish_presence(self) -> None:
        self._presence_at = time.monotonic()
        body = protocol.encode_worker_status(
            self.id,
            self.group,
            backend=self.classifier.name,
            pid=os.getpid(),
            counts=dict(self.counts),
            wall_time=round(time.time(), 3),
        )
        self._client.publish(self.presence_topic, body, qos=1, retain=True)

    # -- paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refusal = mqtt5_refusal(self.host, self.port, reason)
            self._ready.set()
            return
        client.subscribe(self.subscription, qos=1)  # again on every connect
        self._publish_presence()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        if any(code.is_failure for code in codes):
            self._refusal = (
                f"broker {self.host}:{self.port} refused the shared subscription "
                f"{self.subscription!r} ({', '.join(str(c) for c in codes)})"
            )
        self._ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._ready.is_set():
            self._refusal = mqtt5_refusal(self.host, self.port, reason)
            self._ready.set()
        elif not self._stop:
            log.warning("worker_broker_lost", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.counts["received"] += 1
        reply_topic = getattr(msg.properties, "ResponseTopic", None)
        correlation = getattr(msg.properties, "CorrelationData", None)
        problem = (
            protocol.topic_name_problem(reply_topic)
            if isinstance(reply_topic, str)
            else "no response topic"
        )
        if problem:
            self.counts["unanswerable"] += 1
            log.warning("request_unanswerable", reason=problem, bytes=len(msg.payload))
            return
        assert isinstance(reply_topic, str)
        now = time.monotonic()
        expiry = getattr(msg.properties, "MessageExpiryInterval", None)
        expires = now + expiry if isinstance(expiry, int) else None
        request = Request(bytes(msg.payload), reply_topic, correlation, now, expires)
        with self._queue_lock:
            waiting, size = self._queued, self._queued_bytes
            too_big = waiting > 0 and size + len(request.picture) > self.max_queue_bytes
            full = waiting >= self.max_queue or too_big
            if not full:
                self._queued, self._queued_bytes = waiting + 1, size + len(request.picture)
        if full:
            self._refuse_busy(request, waiting, size)
        else:
            self._requests.put(request)

    def _refuse_busy(self, request: Request, waiting: int, size: int) -> None:
        """The queue is full: answer at once (code 1, the reason) and count it."""
        self.counts["refused_busy"] += 1
        reason = (
            f"worker {self.id} busy: {waiting} requests ({size} bytes) waiting, its queue "
            f"holds {self.max_queue} ({self.max_queue_bytes} bytes): refused, not classified"
        )
        now = time.monotonic()
        if now - self._busy_logged_at >= BUSY_LOG_EVERY:  # no flood of log lines in a burst
            self._busy_logged_at = now
            log.warning("requests_refused_busy", refused=self.counts["refused_busy"],
                        waiting=waiting, bytes=size)  # fmt: skip
        body = protocol.encode_classify_answer(None, error=reason, worker=self.id)
        self._reply(request, body, qos=0)


class WorkerProcess:
    """``python -m bt_sorter.vision.worker`` started by :func:`start_worker` (bench, tests)."""

    def __init__(self, process: subprocess.Popen[str], worker_id: str, log_path: Path) -> None:
        self.process = process
        self.id = worker_id
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker vanishes mid-work, as a crashed machine would."""
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """SIGTERM and wait; the worker's summary (None when it was killed)."""
        stop_process(self.process, timeout, own_group=True)
        out = self.process.stdout.read() if self.process.stdout else ""
        lines = [line for line in out.splitlines() if line.startswith('{"worker"')]
        return json.loads(lines[-1]) if lines else None


def start_worker(
    broker: str, worker_id: str, log_dir: Path, *args: str, ready_timeout: float = 120.0
) -> WorkerProcess:
    """Start a worker on ``broker`` (HOST:PORT); return once it has joined its group."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{worker_id}.log"
    cmd = [sys.executable, "-m", "bt_sorter.vision.worker", "--broker", broker, "--id", worker_id]
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [*cmd, *args],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=ROOT,
            **child_kwargs(),  # Windows: a group of its own, for CTRL_BREAK_EVENT
        )
    assert process.stdout is not None
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(ready_timeout)
    if not ready or '"worker_ready"' not in ready[0]:
        stop_process(process, 5.0, own_group=True)
        tail = log_path.read_text("utf-8", errors="replace")[-1500:]
        raise RuntimeError(f"worker {worker_id} did not join within {ready_timeout} s: {tail}")
    return WorkerProcess(process, worker_id, log_path)


def burst(
    host: str, port: int, pictures: Sequence[bytes], count: int, timeout: float = 120.0
) -> dict[int, dict[str, Any]]:
    """Publish ``count`` requests at once (the pictures in turn), each with its own
    correlation data; the answers by request number (those that came within ``timeout``).

    For the bench and the tests: what a burst of requests gets from the workers.
    """
    answers: dict[int, dict[str, Any]] = {}
    done, subscribed = threading.Event(), threading.Event()
    reply_topic = f"bt_sorter/burst/{os.getpid()}-{time.monotonic_ns()}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bt_sorter-burst-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )  # fmt: skip
    client.max_inflight_messages_set(100)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        number = int(getattr(msg.properties, "CorrelationData", b"-1"))
        answers[number] = json.loads(msg.payload)
        if len(answers) >= count:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe(reply_topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"broker {host}:{port} did not confirm the reply subscription")
        for number in range(count):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = str(number).encode()
            picture = pictures[number % len(pictures)]
            client.publish(protocol.CLASSIFY_REQUEST_TOPIC, picture, qos=1, properties=props)
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return dict(answers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.vision.worker",
        description="A classifier worker: answers classify requests from an MQTT 5 shared "
        "subscription, in batches.",
    )
    add = parser.add_argument
    add("--broker", required=True, metavar="HOST:PORT", help="the plant's MQTT 5 broker")
    add("--group", default=protocol.DEFAULT_WORKER_GROUP, help="shared subscription group")
    add("--backend", choices=("torch", "hsv"), default="torch", help="the model (default torch)")
    add("--model", default=ClassifierConfig.model, help="torch checkpoint")
    add("--threads", type=positive_int, default=1, help="torch intra-op threads (default 1)")
    add("--max-batch", type=positive_int, default=8, help="most pictures in one forward pass")
    add(
        "--window",
        type=non_negative_float,
        default=0.005,
        help="s to gather more requests after the first",
    )
    add(
        "--max-picture",
        type=positive_int,
        default=DEFAULT_MAX_PICTURE,
        help="largest picture, bytes",
    )
    add("--max-queue", type=positive_int, default=DEFAULT_MAX_QUEUE,
        help="requests waiting at most; more are refused at once with a busy answer")  # fmt: skip
    add("--max-queue-bytes", type=positive_int, default=DEFAULT_MAX_QUEUE_BYTES,
        help="picture bytes waiting at most")  # fmt: skip
    add("--id", dest="worker_id", help="worker id (default HOST-PID)")
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    from bt_sorter.vision.backends import make_classifier

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        print(f"error: --broker must be HOST:PORT, got {args.broker!r}", file=sys.stderr)
        return 2
    try:
        config = ClassifierConfig(model=args.model, threads=args.threads)
        classifier = make_classifier(args.backend, config, ROOT)
        worker = Worker(
            classifier, host, int(port), group=args.group, worker_id=args.worker_id,
            max_batch=args.max_batch, window=args.window, max_picture=args.max_picture,
            max_queue=args.max_queue, max_queue_bytes=args.max_queue_bytes,
        )  # fmt: skip
        worker.connect()
    except (ClassifyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for sig in stop_signals():  # SIGINT, SIGTERM; SIGBREAK on Windows
        signal.signal(sig, lambda *_: worker.request_stop())
    ready = {"event": "worker_ready", "worker": worker.id, "subscription": worker.subscription}
    print(json.dumps(ready), flush=True)
    summary = worker.serve()
    print(json.dumps(summary), flush=True)
    classifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
