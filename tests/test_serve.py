"""The classification service answers the course's API, refuses bad bodies, pairs answers
with their pictures while batching them, and reports health and Prometheus metrics."""

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

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bt_sorter.broker import free_port, stop_process, wait_for_port
from bt_sorter.sim.render import LABELS, render_picture, render_ripeness
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.vision.http_backend import HttpClassifier
from bt_sorter.vision.serve import BODY_SLACK, PREDICT_PATH
from bt_sorter.vision.torch_backend import TorchClassifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"
MAX_BODY = 256 * 1024


class Served:
    """Where the service under test answers."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """The service as a user runs it (waitress offers no public way to stop a server in a
    thread). A 50 ms batching window, so requests sent together really share passes."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.vision.serve", "--model", str(MODEL),
         "--port", str(port), "--max-body", str(MAX_BODY), "--threads", "2",
         "--device", "cpu", "--max-wait-ms", "50"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, timeout=60), "service did not start"
        yield Served(port)
    finally:
        stop_process(process, 10.0)


@pytest.fixture(scope="module")
def local() -> TorchClassifier:
    return TorchClassifier(MODEL, threads=2)


def _pictures(n: int, seed: int) -> list[bytes]:
    return [
        render_picture(np.random.default_rng([seed, i]), LABELS[i % 3], size=256) for i in range(n)
    ]


def _borderline_pictures(n: int) -> list[bytes]:
    """Fruit close to a class threshold: each picture gets a confidence of its own."""
    pictures = []
    for i in range(n):
        ripeness = (0.24, 0.36, 0.64, 0.76)[i % 4] + (i // 4) * 0.002
        image = render_ripeness(np.random.default_rng([55, i]), ripeness, size=128)
        pictures.append(cv2.imencode(".jpg", image)[1].tobytes())
    return pictures


def _post(srv: Served, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*srv.address, timeout=30)
    try:
        conn.request("POST", PREDICT_PATH, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_real_picture_gets_the_same_label_as_the_in_process_model(
    server: Served, local: TorchClassifier
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
    server: Served, body: bytes, reason: str
) -> None:
    _, answer = _post(server, body)
    assert answer == {"results": [], "code": 1, "error": answer["error"]}
    assert reason in answer["error"]


def test_truncated_picture_gets_code_1(server: Served) -> None:
    picture = _pictures(1, seed=102)[0]
    _, answer = _post(server, picture[: len(picture) // 3])
    assert answer["code"] == 1 and answer["results"] == []


def _announce(srv: Served, length: int) -> tuple[int, bytes]:
    """POST headers announcing ``length`` body bytes, and no body: the answer."""
    conn = http.client.HTTPConnection(*srv.address, timeout=5)
    try:
        conn.putrequest("POST", PREDICT_PATH)
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_over_limit_body_is_refused_without_being_read(server: Served) -> None:
    # Announce a gigabyte and send nothing: a server that tried to read it would hang.
    # Waitress refuses it itself (plain text: its error page is not public API).
    status, _ = _announce(server, 10**9)
    assert status == 413


def test_body_just_over_the_limit_is_refused_in_the_courses_json(server: Served) -> None:
    status, answer = _post(server, b"\xff" * (MAX_BODY + 1))
    assert status == 413
    assert answer == {"results": [], "code": 1, "error": answer["error"]}
    assert f"over the limit of {MAX_BODY} bytes" in answer["error"]


def test_body_a_little_over_the_limit_is_refused_in_json_and_further_over_unread(
    server: Served,
) -> None:
    """Waitress buffers a body before the app sees it: at most BODY_SLACK over the limit."""
    status, answer = _post(server, b"\xff" * (MAX_BODY + BODY_SLACK))
    assert status == 413 and answer["code"] == 1 and "over the limit" in answer["error"]
    status, body = _announce(server, MAX_BODY + BODY_SLACK + 1)  # nothing sent: unread
    assert status == 413 and b"exceeds" in body


def _get(srv: Served, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        conn.close()


def _metrics(srv: Served) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. 'classify_requests_total{outcome=ok}'."""
    status, content_type, text = _get(srv, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_32_concurrent_clients_each_get_their_own_answer_from_shared_batches(
    server: Served, local: TorchClassifier
) -> None:
    pictures = _borderline_pictures(32)
    expected = [local.classify(p) for p in pictures]
    assert len({(w.label, round(w.confidence, 4)) for w in expected}) > 24  # they really differ
    before = _metrics(server)
    barrier = threading.Barrier(32)

    def client(picture: bytes) -> dict:
        barrier.wait()  # all 32 requests leave at once
        return _post(server, picture)[1]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(client, pictures))
    for answer, want in zip(answers, expected, strict=True):
        assert answer["code"] == 0
        assert answer["results"][0]["label"] == want.label
        assert answer["results"][0]["confidence"] == pytest.approx(want.confidence, abs=1e-4)
    after = _metrics(server)
    passes = after["classify_batch_size_count"] - before["classify_batch_size_count"]
    pictures_run = after["classify_batch_size_sum"] - before["classify_batch_size_sum"]
    assert pictures_run == 32
    assert passes < 32  # some requests shared a forward pass


def test_metrics_count_requests_by_outcome_and_latency(server: Served) -> None:
    before = _metrics(server)
    _post(server, _pictures(1, seed=108)[0])
    _post(server, b"not a picture")
    after = _metrics(server)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew("classify_requests_total{outcome=ok}") == 1
    assert grew("classify_requests_total{outcome=bad_picture}") == 1
    assert grew("classify_request_seconds_count") == 1
    assert (
        after["classify_request_seconds_bucket{le=+Inf}"] == after["classify_request_seconds_count"]
    )


def test_the_course_client_code_works_unchanged(server: Served) -> None:
    # The course's client, as written there: requests.post(url, data=picture bytes).
    url = f"http://{server.address[0]}:{server.address[1]}/aisim_tf_pre"
    picture = _pictures(1, seed=109)[0]
    response = requests.post(url, data=picture, timeout=30)
    result = response.json()
    assert result["code"] == 0 and result["error"] == ""
    assert result["results"][0]["label"] in LABELS
    assert 0.0 < result["results"][0]["confidence"] <= 1.0
    bad = requests.post(url, data=b"no picture here", timeout=30).json()
    assert bad["code"] == 1 and bad["results"] == [] and "not a picture" in bad["error"]


def test_unknown_path_gets_a_json_404(server: Served) -> None:
    status, content_type, text = _get(server, "/nowhere")
    assert status == 404 and content_type.startswith("application/json")
    assert json.loads(text)["code"] == 1


def test_health_names_the_model_and_its_classes(server: Served) -> None:
    status, _, text = _get(server, "/health")
    health = json.loads(text)
    assert status == 200
    assert health["status"] == "ok"
    assert sorted(health["classes"]) == sorted(LABELS)
    assert health["device"] == "cpu"
    assert health["temperature"] == TorchClassifier(MODEL).info.temperature
    assert health["threshold"] == TorchClassifier(MODEL).threshold == 0.85  # its rule's


def test_http_classifier_against_the_real_service_matches_in_process(
    server: Served, local: TorchClassifier
) -> None:
    host, port = server.address
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


def test_service_cli_binds_loopback_answers_and_stops_cleanly_on_sigterm() -> None:
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
        process.terminate()
        assert process.wait(timeout=30) == 0
        assert process.stdout is not None
        assert b"service_stopped" in process.stdout.read()
    finally:
        process.kill()
        process.wait(timeout=10)


def test_service_cli_applies_its_configs_limits(tmp_path: Path) -> None:
    """Issue 22: ``--config``'s ``limits:`` bound what the service decodes and reads."""
    config = tmp_path / "small.yaml"
    limits = "  picture_side: 200\n  picture_pixels: 40000\n  decode_pixels: 40000\n"
    config.write_text(f"limits:\n{limits}  payload_bytes: 60000\n", encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.vision.serve", "--model", str(MODEL),
         "--port", str(port), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30)
        url = f"http://127.0.0.1:{port}{PREDICT_PATH}"
        big = render_picture(np.random.default_rng(108), "ripe", size=256)  # 256 px a side
        answer = requests.post(url, data=big, timeout=30).json()
        assert answer["code"] == 1 and "over the limit of 200" in answer["error"], answer
        small = render_picture(np.random.default_rng(109), "ripe", size=128)
        answer = requests.post(url, data=small, timeout=30).json()
        assert answer["code"] == 0 and answer["results"][0]["label"] == "ripe", answer
        refused = requests.post(url, data=b"\xff\xd8\xff" + b"x" * 60_000, timeout=30)
        assert refused.status_code == 413 and "60000 bytes" in refused.json()["error"]
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["limits"]["picture_side"] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
