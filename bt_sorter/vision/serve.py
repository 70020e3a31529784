"""The course-compatible classification service: ``POST /aisim_tf_pre`` and ``GET /health``.

    python -m bt_sorter.vision.serve [--model PATH] [--host 127.0.0.1] [--port 8088]
                                     [--max-body BYTES] [--threads N]

The request body is the raw encoded picture; the answer is
``{"results": [{"label", "confidence"}], "code": 0, "error": ""}``, or code 1 with empty
results and the reason when the body is empty or not a picture. A body over ``--max-body``
is refused with HTTP 413 before it is read. Each request is answered on its own thread from
its own data (no shared queues); the model itself is called under a lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bt_sorter.log import configure, get_logger
from bt_sorter.vision.classifier import BadPictureError, Classifier, ClassifyError

PREDICT_PATH = "/aisim_tf_pre"
HEALTH_PATH = "/health"
DEFAULT_PORT = 8088
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # most bytes of a refused body read (and dropped)
DRAIN_TIMEOUT = 0.5  # s to wait for more of a refused body
ROOT = Path(__file__).resolve().parents[2]

log = get_logger(__name__)


class ClassifyServer(ThreadingHTTPServer):
    """A threading HTTP server that carries its classifier and body limit."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        classifier: Classifier,
        max_body: int = DEFAULT_MAX_BODY,
        health: dict[str, Any] | None = None,
    ) -> None:
        self.classifier = classifier
        self.max_body = max_body
        self.health = {"status": "ok", "backend": classifier.name, **(health or {})}
        super().__init__(address, ClassifyHandler)


class ClassifyHandler(BaseHTTPRequestHandler):
    """One request: read the bounded body, classify it, answer JSON."""

    server: ClassifyServer
    timeout = 15.0  # s a client may take to send its request
    protocol_version = "HTTP/1.1"

    def _answer(self, status: HTTPStatus, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: HTTPStatus, reason: str, close: bool = False) -> None:
        log.info("request_refused", path=self.path, status=int(status), reason=reason)
        self._answer(status, {"results": [], "code": 1, "error": reason}, close)

    def _discard(self, length: int) -> None:
        """Read and drop a bounded part of a refused body so the client sees the answer.

        Closing a socket with unread data resets the connection, and a client still sending
        would lose the 413. At most :data:`DRAIN_LIMIT` bytes are read, with a short timeout.
        """
        self.wfile.flush()
        left = min(length, DRAIN_LIMIT)
        self.connection.settimeout(DRAIN_TIMEOUT)
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._answer(HTTPStatus.OK, self.server.health)
        else:
            self._refuse(HTTPStatus.NOT_FOUND, f"no such path {self.path}")

    def do_POST(self) -> None:
        if self.path != PREDICT_PATH:
            self._refuse(HTTPStatus.NOT_FOUND, f"no such path {self.path}", close=True)
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted", True)
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required", close=True)
            return
        if length < 0:
            self._refuse(HTTPStatus.BAD_REQUEST, "negative Content-Length", close=True)
            return
        if length > self.server.max_body:
            reason = f"body of {length} bytes is over the limit of {self.server.max_body}"
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, reason, close=True)
            self._discard(length)
            return
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            self._refuse(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length", True)
            return
        if not data:
            self._refuse(HTTPStatus.OK, "empty body: expected picture bytes")
            return
        try:
            prediction = self.server.classifier.classify(data)
        except BadPictureError as exc:
            self._refuse(HTTPStatus.OK, f"not a picture: {exc}")
            return
        except ClassifyError as exc:
            self._refuse(HTTPStatus.OK, f"classification failed: {exc}")
            return
        except Exception as exc:  # a model fault must not take the service down
            log.exception("classification_crashed")
            self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {exc}")
            return
        result = {"label": prediction.label, "confidence": round(prediction.confidence, 6)}
        self._answer(HTTPStatus.OK, {"results": [result], "code": 0, "error": ""})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("request_handled", client=self.client_address[0], line=format % args)


def make_server(
    model: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_body: int = DEFAULT_MAX_BODY,
    threads: int = 2,
) -> ClassifyServer:
    """A ready-to-serve server for the checkpoint ``model`` (call ``serve_forever``)."""
    from bt_sorter.vision.torch_backend import TorchClassifier

    classifier = TorchClassifier(model, threads)
    health = {
        "model": str(model),
        "arch": classifier.info.arch,
        "input_size": classifier.info.input_size,
        "classes": list(classifier.info.classes),
    }
    return ClassifyServer((host, port), classifier, max_body, health)


def main(argv: list[str] | None = None) -> int:
    from bt_sorter.config import load_config

    parser = argparse.ArgumentParser(description="Course-compatible picture classification service")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: config)")
    parser.add_argument("--config", type=Path, default=None, help="config file for the default")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback default)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure(args.log_level)
    model = args.model
    if model is None:
        model = Path(load_config(args.config).classifier.model)
        model = model if model.is_absolute() else ROOT / model
    try:
        server = make_server(model, args.host, args.port, args.max_body, args.threads)
    except (ClassifyError, OSError) as exc:
        log.error("service_failed_to_start", reason=str(exc))
        return 2
    host, port = server.server_address[:2]
    log.info("service_started", host=host, port=port, model=str(model), max_body=args.max_body)
    print(f"serving http://{host}:{port}{PREDICT_PATH}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.info("service_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
