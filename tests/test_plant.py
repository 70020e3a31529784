"""A plant: several lines on one mosquitto, classified by workers from one shared subscription.

Real parts only: mosquitto, simulator processes speaking MQTT, run.py as a subprocess, the
shipped model in worker processes, rendered JPEGs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from peer import wait_until

from bt_sorter import protocol
from bt_sorter.broker import BrokerProcess
from bt_sorter.config import load_config
from bt_sorter.plant import read_plant
from bt_sorter.sim import render
from bt_sorter.sim.process import start_simulator
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.vision.mqtt_backend import MqttClassifier
from bt_sorter.vision.worker import WorkerProcess, start_worker
from bt_sorter.yamlio import SpecError

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = str(ROOT / "run.py")
PIPELINED = str(ROOT / "trees" / "sort_pipelined.yaml")


# -- topics ------------------------------------------------------------------------------


def test_default_topics_are_the_fs_scenes_exactly() -> None:
    topics = load_config().broker.topics.resolve()
    assert (topics.commands, topics.feedback) == ("aa", "bb")
    assert topics.status == "bt_sorter/status"


def test_a_prefix_gives_the_lines_own_topics(tmp_path: Path) -> None:
    path = tmp_path / "line3.yaml"
    path.write_text("broker:\n  topics:\n    prefix: line3\n", encoding="utf-8")
    topics = load_config(path).broker.topics.resolve()
    assert (topics.commands, topics.feedback, topics.status) == (
        "line3/aa",
        "line3/bb",
        "line3/status",
    )


@pytest.mark.parametrize("prefix", ["line+", "#", "$SYS", "line3/"])
def test_a_prefix_that_is_no_topic_name_is_refused_naming_the_file(
    prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"broker:\n  topics:\n    prefix: '{prefix}'\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: broker\.topics"):
        load_config(path)


# -- workers -------------------------------------------------------------------------------


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    return tmp_path / "workers"


@pytest.fixture
def one_worker(broker: BrokerProcess, worker_dir: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(
        broker.address, "solo", worker_dir, "--max-picture", "200000", "--window", "0.05"
    )
    yield worker
    worker.stop()


def _request(
    broker: BrokerProcess, payload: bytes, reply_topic: str | None, correlation: bytes
) -> dict[str, Any] | None:
    """Publish one raw request; the answer JSON with its correlation checked, None if none."""
    answers: list[tuple[bytes, bytes | None]] = []
    got = threading.Event()
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4()}", protocol=mqtt.MQTTv5
    )

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        answers.append((msg.payload, getattr(msg.properties, "CorrelationData", None)))
        got.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe("test/replies/#", qos=1)
        assert subscribed.wait(10)
        props = Properties(PacketTypes.PUBLISH)
        if reply_topic is not None:
            props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        client.publish(protocol.CLASSIFY_REQUEST_TOPIC, payload, qos=1, properties=props)
        if not got.wait(30 if reply_topic else 2):
            return None
    finally:
        client.disconnect()
        client.loop_stop()
    body, echoed = answers[0]
    assert echoed == correlation
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_bad_requests_get_an_error_answer_and_the_worker_keeps_answering(
    broker: BrokerProcess, one_worker: WorkerProcess
) -> None:
    answer = _request(broker, b"not a picture", "test/replies/a", b"c1")
    assert answer is not None and answer["code"] == 1 and answer["results"] == []
    assert "not a JPEG, PNG or BMP picture" in answer["error"]  # refused from its header
    truncated = render.render_picture(np.random.default_rng(3), "raw", 256)[:-600]
    answer = _request(broker, truncated, "test/replies/b", b"c2")
    assert answer is not None and answer["code"] == 1 and "truncated" in answer["error"]
    answer = _request(broker, b"\xff\xd8\xff" + b"x" * 300_000, "test/replies/c", b"c3")
    assert answer is not None and answer["code"] == 1 and "over the limit" in answer["error"]
    assert _request(broker, b"no reply topic", None, b"c4") is None  # nobody to answer to
    picture = render.render_picture(np.random.default_rng(4), "half_ripe", 256)
    answer = _request(broker, picture, "test/replies/d", b"c5")
    assert answer is not None and answer["code"] == 0, answer
    assert answer["results"][0]["label"] == "half_ripe" and answer["worker"] == "solo"
    assert one_worker.alive()
    summary = one_worker.stop()
    assert summary is not None
    assert summary["counts"] == {"received": 5, "refused": 3, "unanswerable": 1, "answered": 1}


def test_requests_that_arrive_together_are_classified_in_one_batch(
    broker: BrokerProcess, one_worker: WorkerProcess
) -> None:
    rng = np.random.default_rng(6)
    labels = ["ripe", "half_ripe", "raw"] * 2
    pictures = [render.render_picture(rng, label, 256) for label in labels]
    classifier = MqttClassifier(broker.host, broker.port, f"t-{uuid.uuid4()}", reply_timeout=30)
    try:
        futures = [classifier.submit(picture) for picture in pictures]
        answers = [future.result(timeout=60) for future in futures]
    finally:
        classifier.close()
    assert [a.label for a in answers] == labels
    assert {a.backend for a in answers} == {"mqtt:solo"}
    summary = one_worker.stop()
    assert summary is not None and summary["counts"]["answered"] == len(labels)
    assert max(int(size) for size in summary["batch_sizes"]) > 1, summary["batch_sizes"]


def test_a_request_no_worker_answers_fails_after_the_reply_timeout(broker: BrokerProcess) -> None:
    classifier = MqttClassifier(broker.host, broker.port, f"t-{uuid.uuid4()}", reply_timeout=0.3)
    try:
        future = classifier.submit(render.render_picture(np.random.default_rng(5), "ripe", 256))
        assert wait_until(future.done, timeout=5.0)
        with pytest.raises(ClassifyError, match="no worker answered"):
            future.result()
    finally:
        classifier.close()


def test_plant_mode_says_clearly_that_amqtt_speaks_mqtt_3_only(
    amqtt_broker: BrokerProcess,
) -> None:
    with pytest.raises(ClassifyError, match=r"speaks MQTT 3\.1\.1 only"):
        MqttClassifier(amqtt_broker.host, amqtt_broker.port, "t-amqtt", reply_timeout=1.0)
    status = subprocess.run(
        [sys.executable, "-m", "bt_sorter.plant", "status", "--broker", amqtt_broker.address],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert status.returncode == 2
    assert "speaks MQTT 3.1.1 only" in status.stderr and "amqtt" in status.stderr


# -- two lines, two workers, one killed ---------------------------------------------------------


def _controller(broker: str, name: str, config: Path, out: Path, speed: float) -> subprocess.Popen:
    args = ["--tree", PIPELINED, "--config", str(config), "--broker", broker]
    args += ["--topic-prefix", name, "--speed", str(speed), "--viz", "none"]
    args += ["--record", str(out / f"{name}.record.jsonl"), "--summary", str(out / f"{name}.json")]
    log = (out / f"{name}.log").open("w", encoding="utf-8")
    return subprocess.Popen([sys.executable, RUN_PY, *args], cwd=ROOT, stdout=log, stderr=log)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _unanswered(out: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The controllers' requests that no worker answered in time."""
    return [
        e
        for n in names
        for e in _records(out / f"{n}.record.jsonl")
        if e["event"] == "classify_failed" and "no worker answered" in e["error"]
    ]


def _mqtt_answers(out: Path, name: str, worker: str) -> int:
    events = _records(out / f"{name}.record.jsonl")
    return sum(1 for e in events if e["event"] == "item_classified" and e["backend"] == worker)


@pytest.mark.slow
def test_two_lines_sort_side_by_side_on_two_shared_workers_and_survive_losing_one(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    items, speed = 10, 2.0  # speed 2: a loaded CI machine's stalls cost little belt
    config = tmp_path / "plant.yaml"
    config.write_text("classifier:\n  backend: mqtt\n", encoding="utf-8")
    workers = [start_worker(broker.address, w, tmp_path) for w in ("w1", "w2")]
    names = ("line1", "line2")
    sims = {
        name: start_simulator(
            broker.address,
            summary=tmp_path / f"{name}.sim.json",
            items=items,
            seed=10 + k,
            speed=speed,
            ledger=tmp_path / f"{name}.ledger.jsonl",
            topic_prefix=name,
        )
        for k, name in enumerate(names)
    }
    controllers = {n: _controller(broker.address, n, config, tmp_path, speed) for n in names}
    try:
        # The broker spreads the requests of both lines over both workers of the one group...
        def answered(worker: str) -> int:
            return sum(_mqtt_answers(tmp_path, n, f"mqtt:{worker}") for n in names)

        assert wait_until(lambda: answered("w1") >= 2 and answered("w2") >= 2, timeout=120), (
            "both workers should answer"
        )
        answered_before = {n: _mqtt_answers(tmp_path, n, "mqtt:w2") for n in names}
        # ...then w1 hangs with requests in hand (the broker still hands it its share), and is
        # killed once a controller has given up on one of them: that request is lost for good.
        os.kill(workers[0].pid, signal.SIGSTOP)
        assert wait_until(lambda: bool(_unanswered(tmp_path, names)), timeout=120)
        workers[0].kill()
        for process in controllers.values():
            assert process.wait(timeout=240) == 0
        truths = {n: sims[n].wait(timeout=120) for n in names}
    finally:
        for process in controllers.values():
            if process.poll() is None:
                process.kill()
        for sim in sims.values():
            sim.stop()
        for worker in workers:
            if worker.alive():
                worker.stop()
    for name in names:
        truth, ledger = truths[name], _ledger(tmp_path / f"{name}.ledger.jsonl")
        events = _records(tmp_path / f"{name}.record.jsonl")
        resolved = {e["item"]: e for e in events if e["event"] == "item_resolved"}
        assert truth["items"] == items and truth["jammed"] == 0 and truth["lost"] == 0, truth
        routes = {"ripe": 2, "half_ripe": 3, "raw": 4}
        elsewhere = [i for i in ledger if i["bin"] != routes[i["label"]]]
        assert elsewhere == [], f"{name}: not in their own bins {elsewhere}"  # every one
        assert all(resolved[i["id"]]["outcome"] == "sorted" for i in ledger), resolved
        # the surviving worker carried on after the kill
        assert _mqtt_answers(tmp_path, name, "mqtt:w2") > answered_before[name]
    lost_requests = _unanswered(tmp_path, names)
    assert lost_requests, "w1 should have died with a request in hand"
    for request in lost_requests:  # each such item was answered by the retry or the fallback
        name = next(n for n in names if request in _records(tmp_path / f"{n}.record.jsonl"))
        events = _records(tmp_path / f"{name}.record.jsonl")
        (decided,) = [
            e for e in events if e["event"] == "item_classified" and e["item"] == request["item"]
        ]
        assert decided["backend"] in ("mqtt:w2", "hsv"), decided
    status = subprocess.run(
        [sys.executable, "-m", "bt_sorter.plant", "status", "--broker", broker.address, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    plant = json.loads(status.stdout)
    lines = {line["line"]: line for line in plant["lines"]}
    assert {lines[n]["state"] for n in names} == {"stopped"}
    assert all(lines[n]["counts"]["resolved"] == items for n in names)
    assert [w["worker"] for w in plant["workers"]] == []  # w1's will, w2's clean exit


def test_run_py_refuses_a_topic_prefix_that_is_no_topic_name() -> None:
    done = subprocess.run(
        [sys.executable, RUN_PY, "--tree", PIPELINED, "--check", "--topic-prefix", "line+"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--topic-prefix" in done.stderr and "wildcards" in done.stderr


def test_plant_status_shows_a_running_line_and_then_offline_when_its_controller_dies(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "hsv.yaml"
    config.write_text("classifier:\n  backend: hsv\n", encoding="utf-8")
    args = ["--tree", PIPELINED, "--config", str(config), "--broker", broker.address]
    args += ["--topic-prefix", "line9", "--viz", "none"]
    controller = subprocess.Popen(
        [sys.executable, RUN_PY, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def state() -> str | None:
            lines = read_plant(broker.host, broker.port, wait=0.2)["lines"]
            return next((line["state"] for line in lines if line["line"] == "line9"), None)

        assert wait_until(lambda: state() == "running", timeout=60)
        controller.kill()  # no DISCONNECT: the broker publishes the controller's will
        assert wait_until(lambda: state() == "offline", timeout=30)
    finally:
        controller.kill()
        controller.wait(10)


def test_a_request_that_waited_past_its_expiry_is_dropped_not_classified() -> None:
    from bt_sorter.vision.hsv import HsvClassifier
    from bt_sorter.vision.worker import Request, Worker

    worker = Worker(HsvClassifier(), "127.0.0.1", 1, worker_id="backlog")
    picture = render.render_picture(np.random.default_rng(8), "raw", 256)
    now = time.monotonic()
    stale = Request(picture, "test/replies/x", b"old", now - 2.0, expires=now - 1.0)
    fresh = Request(picture, "test/replies/y", b"new", now, expires=now + 1.0)
    worker._answer_batch([stale, fresh])  # what serve() does with a gathered batch
    assert worker.summary()["counts"] == {"expired": 1, "answered": 1}
