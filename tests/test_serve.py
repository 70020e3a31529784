"""The classification service answers the course's API, refuses bad bodies, and pairs answers."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bt_sorter.broker import free_port, wait_for_port
from bt_sorter.sim.render import LABELS, render_picture
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.vision.http_backend import HttpClassifier
from bt_sorter.vision.serve import PREDICT_PATH, ClassifyServer, make_server
from bt_sorter.vision.torch_backend import TorchClassifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[ClassifyServer]:
    srv = make_server(MODEL, port=0, max_body=MAX_BODY, threads=2)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture(scope="module")
def local() -> TorchClassifier:
    return TorchClassifier(MODEL, threads=2)


def _pictures(n: int, seed: int) -> list[bytes]:
    return [
        render_picture(np.random.default_rng([seed, i]), LABELS[i % 3], size=256) for i in range(n)
    ]


def _post(
    srv: ClassifyServer, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    try:
        conn.request("POST", PREDICT_PATH, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_real_picture_gets_the_same_label_as_the_in_process_model(
    server: ClassifyServer, local: TorchClassifier
) -> None:
    picture = _pictures(1, seed=101)[0]
    status, answer = _post(server, picture)
    expected = local.classify(picture)
    assert status == 200
    assert answer["code"] == 0 and answer["error"] == ""
    assert answer["results"][0]["label"] == expected.label
    assert answer["results"][0]["confidence"] == pytest.approx(expected.confidence, abs=1e-5)


@pytest.mark.parametrize(
    ("body", "reason"), [(b"definitely not a jpeg", "not a picture"), (b"", "empty")]
)
def test_garbage_or_empty_body_gets_code_1_with_a_reason(
    server: ClassifyServer, body: bytes, reason: str
) -> None:
    _, answer = _post(server, body)
    assert answer == {"results": [], "code": 1, "error": answer["error"]}
    assert reason in answer["error"]


def test_truncated_picture_gets_code_1(server: ClassifyServer) -> None:
    picture = _pictures(1, seed=102)[0]
    _, answer = _post(server, picture[: len(picture) // 3])
    assert answer["code"] == 1 and answer["results"] == []


def test_over_limit_body_is_refused_without_being_read(server: ClassifyServer) -> None:
    # Announce a gigabyte and send nothing: a server that tried to read it would hang.
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    try:
        conn.putrequest("POST", PREDICT_PATH)
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["code"] == 1
    finally:
        conn.close()


def test_body_just_over_the_limit_is_refused(server: ClassifyServer) -> None:
    status, answer = _post(server, b"\xff" * (MAX_BODY + 1))
    assert status == 413
    assert "limit" in answer["error"]


def test_eight_concurrent_requests_each_get_their_own_answer(
    server: ClassifyServer, local: TorchClassifier
) -> None:
    pictures = _pictures(8, seed=103)
    expected = [local.classify(p) for p in pictures]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: _post(server, p)[1], pictures))
    for answer, want in zip(answers, expected, strict=True):
        assert answer["code"] == 0
        assert answer["results"][0]["label"] == want.label
        assert answer["results"][0]["confidence"] == pytest.approx(want.confidence, abs=1e-5)
    assert len({round(w.confidence, 6) for w in expected}) > 1  # the pictures really differ


def test_health_names_the_model_and_its_classes(server: ClassifyServer) -> None:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.request("GET", "/health")
    health = json.loads(conn.getresponse().read())
    conn.close()
    assert health["status"] == "ok"
    assert sorted(health["classes"]) == sorted(LABELS)


def test_http_classifier_against_the_real_service_matches_in_process(
    server: ClassifyServer, local: TorchClassifier
) -> None:
    host, port = server.server_address[:2]
    client = HttpClassifier(f"http://{host}:{port}{PREDICT_PATH}", timeout=10)
    for picture in _pictures(3, seed=104):
        got, want = client.classify(picture), local.classify(picture)
        assert (got.label, got.backend) == (want.label, "http")
        assert got.confidence == pytest.approx(want.confidence, abs=1e-5)
    with pytest.raises(ClassifyError, match="not a picture"):
        client.classify(b"garbage")


def test_http_classifier_reports_an_unreachable_service_as_classify_error() -> None:
    client = HttpClassifier(f"http://127.0.0.1:{free_port()}{PREDICT_PATH}", timeout=1)
    with pytest.raises(ClassifyError, match="unreachable"):
        client.classify(_pictures(1, seed=105)[0])


def test_http_classifier_reports_a_silent_service_as_a_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = HttpClassifier(f"http://127.0.0.1:{port}{PREDICT_PATH}", timeout=0.3)
        with pytest.raises(ClassifyError, match="timed out"):
            client.classify(_pictures(1, seed=107)[0])


def test_service_cli_binds_loopback_and_answers() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bt_sorter.vision.serve",
            "--model",
            str(MODEL),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30)
        client = HttpClassifier(f"http://127.0.0.1:{port}{PREDICT_PATH}", timeout=10)
        assert client.classify(_pictures(1, seed=106)[0]).label in LABELS
    finally:
        process.terminate()
        process.wait(timeout=10)
