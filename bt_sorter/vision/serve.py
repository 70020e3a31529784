"""The course-compatible classification service: Flask served by waitress, with micro-batching.

    python -m bt_sorter.vision.serve [--model PATH] [--host 127.0.0.1] [--port 8088]
        [--device auto|cpu|cuda] [--max-body BYTES] [--max-batch 16] [--max-wait-ms 10]
        [--http-threads 16] [--threads 2]

``POST /aisim_tf_pre``: the request body is the raw encoded picture; the answer is
``{"results": [{"label", "confidence"}], "code": 0, "error": ""}``, or code 1 with empty
results and the reason when the body is empty or not a picture. A body over ``--max-body``
is refused with HTTP 413 and the same JSON (its ``Content-Length`` is checked before the
app reads it) up to ``BODY_SLACK`` over it; waitress itself refuses a body further over
(a plain-text 413, before reading a byte), so no request makes it buffer much more than a
valid one. ``--config``'s ``limits:`` apply
(issue 22): a picture's side and pixels from its header before decoding, the pixels being
decoded at once (``decode_pixels``), and ``payload_bytes`` as the default ``--max-body``.
``GET /health`` says which model answers (and the limits); ``GET /metrics`` gives
requests, errors, latency and batch sizes in Prometheus text.

A doubted answer (the picture is unlike any the model was trained for, one of
:data:`bt_sorter.vision.oddity.DOUBTS`) has ``"doubt": "<reason>"`` in its result too
(:func:`bt_sorter.protocol.classify_result`); a course client reads label and confidence only.

Each request is decoded and preprocessed on its own waitress thread (through
:func:`bt_sorter.vision.preprocess.picture_to_input`, the project's one decoder); the forward
pass goes through a :class:`~bt_sorter.vision.batcher.MicroBatcher`, so requests that arrive
together are classified in one pass and each gets the result of its own picture back.
Waitress is a production WSGI server in pure Python (runs on Linux and Windows alike);
the service uses its public API only (``create_server``, ``run``, ``close``).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

import waitress
from flask import Flask, Response, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from werkzeug.exceptions import HTTPException

from bt_sorter.argtypes import non_negative_float, port_number, positive_int
from bt_sorter.config import Limits
from bt_sorter.log import configure, get_logger
from bt_sorter.portable import stop_signals
from bt_sorter.protocol import classify_result
from bt_sorter.vision.batcher import MicroBatcher
from bt_sorter.vision.classifier import BadPictureError, ClassifyError, Prediction
from bt_sorter.vision.device import DEVICE_CHOICES
from bt_sorter.vision.preprocess import DEFAULT_LIMITS, picture_to_input
from bt_sorter.vision.torch_backend import TorchClassifier

PREDICT_PATH = "/aisim_tf_pre"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
DEFAULT_PORT = 8088
DEFAULT_MAX_BODY = 8 * 1024 * 1024
BODY_SLACK = 64 * 1024  # bytes over --max-body answered in JSON; further over: waitress, unread
DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAIT = 0.010  # s a forming batch may wait for requests it expects (bench: 2-5 ms short)
DEFAULT_HTTP_THREADS = 16
ANSWER_TIMEOUT = 30.0  # s a request waits for its batch before it is answered with an error
CHANNEL_TIMEOUT = 30  # s a client may stay silent mid-request
ROOT = Path(__file__).resolve().parents[2]

log = get_logger(__name__)


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "classify_requests", "Classification requests by outcome (ok, bad_picture, error)",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "classify_request_seconds", "Time from body received to answer ready",
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "classify_batch_size", "Pictures per forward pass",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=self.registry,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "classify_batch_seconds", "Forward pass time per batch",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
            registry=self.registry,
        )  # fmt: skip

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class ClassifyService:
    """A :class:`TorchClassifier` behind a micro-batcher: ``classify`` from many threads."""

    def __init__(
        self,
        classifier: TorchClassifier,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
        health: dict[str, Any] | None = None,
    ) -> None:
        self.classifier = classifier
        self.metrics = ServiceMetrics()
        self.batcher: MicroBatcher[Any, Prediction] = MicroBatcher(
            classifier.predict_inputs, max_batch, max_wait, name="classify-batch",
            on_batch=self.metrics.observe_batch,
        )  # fmt: skip
        info = classifier.info
        self.health = {
            "status": "ok",
            "backend": classifier.name,
            "arch": info.arch,
            "input_size": info.input_size,
            "classes": list(info.labels),  # what an answer can be (no reject class)
            "temperature": info.temperature,
            "threshold": info.threshold,  # the model's rule's; the line's config may name its own
            "device": str(classifier.plan.device),
            "max_batch": max_batch,
            "max_wait_ms": max_wait * 1000.0,
            "limits": dataclasses.asdict(classifier.limits),
            **(health or {}),
        }

    def classify(self, data: bytes) -> Prediction:
        """Label one encoded picture; BadPictureError for bytes that are not one."""
        with self.batcher.reserve() as slot:  # a batch forming now waits for this picture
            inputs = picture_to_input(data, self.classifier.info.input_size, self.classifier.limits)
            future = slot.submit(inputs)
        return future.result(timeout=ANSWER_TIMEOUT)

    def close(self) -> None:
        self.batcher.close()
        self.classifier.close()


def _answer(status: int, code: int, error: str, results: list[dict[str, Any]]) -> Response:
    response = jsonify({"results": results, "code": code, "error": error})
    response.status_code = status
    return response


def create_app(service: ClassifyService, max_body: int = DEFAULT_MAX_BODY) -> Flask:
    """The Flask application of the course's API over ``service``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body  # Flask's own check, whatever server runs it
    metrics = service.metrics

    def refuse(status: int, reason: str, outcome: str) -> Response:
        metrics.requests.labels(outcome).inc()
        log.info("request_refused", path=request.path, status=status, reason=reason)
        return _answer(status, 1, reason, [])

    @app.post(PREDICT_PATH)
    def predict() -> Response:
        data = request.get_data(cache=False)
        start = time.perf_counter()
        if not data:
            return refuse(200, "empty body: expected picture bytes", "bad_picture")
        try:
            prediction = service.classify(data)
        except BadPictureError as exc:
            return refuse(200, f"not a picture: {exc}", "bad_picture")
        except ClassifyError as exc:
            return refuse(200, f"classification failed: {exc}", "error")
        except Exception as exc:  # a model fault must not take the service down
            log.exception("classification_crashed")
            return refuse(500, f"internal error: {exc!r}", "error")
        metrics.latency.observe(time.perf_counter() - start)
        metrics.requests.labels("ok").inc()
        result = classify_result(prediction.label, prediction.confidence, prediction.doubt)
        return _answer(200, 0, "", [result])

    @app.get(HEALTH_PATH)
    def health() -> Response:
        return jsonify(service.health)

    @app.get(METRICS_PATH)
    def metrics_text() -> Response:
        return Response(metrics.text(), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            reason = f"body is over the limit of {max_body} bytes"
        else:
            reason = f"{status} {exc.name}: {request.method} {request.path}"
        return _answer(status, 1, reason, [])

    return app


class ClassifyServer:
    """The app on a waitress server: :meth:`serve_forever` on the calling thread, then
    :meth:`close`.

    Waitress has no public way to stop a server from another thread (its maintainers say
    so: Pylons/waitress#343, #372); its ``run`` ends when KeyboardInterrupt or SystemExit
    reaches the serving thread, after letting the running requests finish. So the service
    serves on the main thread and its stop signals raise KeyboardInterrupt there.
    """

    def __init__(
        self,
        service: ClassifyService,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_body: int = DEFAULT_MAX_BODY,
        http_threads: int = DEFAULT_HTTP_THREADS,
    ) -> None:
        self.service = service
        self.app = create_app(service, max_body)
        self._server = waitress.create_server(
            self.app, host=host, port=port, threads=http_threads,
            # waitress refuses a body of max_request_body_size or more before reading it
            max_request_body_size=max_body + BODY_SLACK + 1,
            channel_timeout=CHANNEL_TIMEOUT, ident="bt_sorter", connection_limit=256,
        )  # fmt: skip

    @property
    def address(self) -> tuple[str, int]:
        return str(self._server.effective_host), int(self._server.effective_port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{PREDICT_PATH}"

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt or SystemExit on this thread (Ctrl-C, or a stop
        signal's handler); the requests being answered finish first."""
        self._server.run()

    def close(self) -> None:
        """Close the listening socket, then stop the batcher and the model."""
        self._server.close()
        self.service.close()


def make_server(
    model: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_body: int = DEFAULT_MAX_BODY,
    threads: int = 2,
    device: str = "auto",
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait: float = DEFAULT_MAX_WAIT,
    http_threads: int = DEFAULT_HTTP_THREADS,
    limits: Limits = DEFAULT_LIMITS,
) -> ClassifyServer:
    """A ready server for the checkpoint ``model`` (``serve_forever`` or ``start``);
    ``limits`` bound each picture and the decoding (config ``limits:``).

    Raises ClassifyError when the model does not load or the device is not there.
    """
    classifier = TorchClassifier(model, threads, device, limits)
    service = ClassifyService(classifier, max_batch, max_wait, {"model": str(model)})
    return ClassifyServer(service, host, port, max_body, http_threads)


def main(argv: list[str] | None = None) -> int:
    from bt_sorter.config import load_config

    parser = argparse.ArgumentParser(description="Course-compatible picture classification service")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: config)")
    parser.add_argument("--config", type=Path, default=None, help="config file for the defaults")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback default)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=None,
                        help="auto (CUDA if seen), cpu or cuda; default: config")  # fmt: skip
    parser.add_argument("--max-body", type=positive_int, default=None,
                        help="bytes; default: config limits.payload_bytes")  # fmt: skip
    parser.add_argument("--max-batch", type=positive_int, default=DEFAULT_MAX_BATCH,
                        help="most pictures per forward pass")  # fmt: skip
    parser.add_argument("--max-wait-ms", type=non_negative_float, default=DEFAULT_MAX_WAIT * 1000,
                        help="how long the first request of a batch waits for company")  # fmt: skip
    parser.add_argument("--http-threads", type=positive_int, default=DEFAULT_HTTP_THREADS,
                        help="waitress worker threads (requests decoded at once)")  # fmt: skip
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure(args.log_level)
    config = load_config(args.config)
    classifier_config = config.classifier
    max_body = args.max_body if args.max_body is not None else config.limits.payload_bytes
    model = args.model
    if model is None:
        model = Path(classifier_config.model)
        model = model if model.is_absolute() else ROOT / model
    device = args.device or classifier_config.device
    try:
        server = make_server(
            model, args.host, args.port, max_body, args.threads, device,
            args.max_batch, args.max_wait_ms / 1000.0, args.http_threads, config.limits,
        )  # fmt: skip
    except (ClassifyError, ValueError, OSError) as exc:
        log.error("service_failed_to_start", reason=str(exc))
        return 2
    host, port = server.address
    log.info("service_started", host=host, port=port, model=str(model), max_body=max_body,
             device=server.service.health["device"], max_batch=args.max_batch)  # fmt: skip
    print(f"serving {server.url}", flush=True)
    for sig in stop_signals():  # SIGTERM (SIGBREAK on Windows) stops it as Ctrl-C does
        signal.signal(sig, signal.default_int_handler)
    try:
        server.serve_forever()  # returns once a stop signal's KeyboardInterrupt reached it
    except KeyboardInterrupt:
        pass  # one that came before or after waitress's loop
    finally:
        server.close()
        log.info("service_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
