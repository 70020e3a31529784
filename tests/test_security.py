"""Security basics: trees, configs and weights cannot run code; TLS to the broker; the
example broker config (config/mosquitto/) keeps everyone but the line off the feedback topic."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import torch
from peer import wait_until

from bt_sorter import protocol
from bt_sorter.adapter import MqttAdapter
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Received
from bt_sorter.broker import free_port, mosquitto_path, start_broker, stop_process, wait_for_port
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig, ClassifierConfig, TlsConfig, load_config
from bt_sorter.record import Record
from bt_sorter.trees.build import load_tree
from bt_sorter.vision.backends import make_classifier
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.yamlio import SpecError

ROOT = Path(__file__).resolve().parent.parent


def _ctx() -> Context:
    return Context(Blackboard(), load_config(), LineClock(1.0), Record(None))


def test_a_tree_file_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    tree = tmp_path / "evil.yaml"
    tree.write_text(f'root: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match=r"evil\.yaml:1"):
        load_tree(tree, _ctx())
    assert not marker.exists()


def test_a_config_file_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f'broker: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match=r"evil\.yaml:1"):
        load_config(config)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_weights_that_would_run_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    model = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload(marker)}, model)
    with pytest.raises(ClassifyError):
        make_classifier("torch", ClassifierConfig(model=str(model)), tmp_path)
    assert not marker.exists()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_files() -> Iterator[Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl.

    In a world-readable folder: mosquitto started as root reads them as its own user.
    """
    folder = Path(tempfile.mkdtemp(prefix="bt_sorter_tls_"))
    folder.chmod(0o755)
    try:
        yield _make_certificates(folder)
    finally:
        shutil.rmtree(folder)


def _make_certificates(tmp_path: Path) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
             cwd=tmp_path)  # fmt: skip
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    return tmp_path


def _wait_for(adapter: MqttAdapter, seconds: float = 5.0) -> list[object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = [e for e in adapter.drain() if isinstance(e, Received)]
        if events:
            return events
        time.sleep(0.05)
    return []


def test_controller_talks_to_a_tls_broker_with_the_ca_from_config(tls_files: Path) -> None:
    conf = (
        f"cafile {tls_files / 'ca.pem'}\ncertfile {tls_files / 'server.pem'}\n"
        f"keyfile {tls_files / 'server.key'}\n"
    )
    with start_broker(kind="mosquitto", extra_conf=conf) as broker:
        tls = TlsConfig(enabled=True, ca_certs=str(tls_files / "ca.pem"))
        config = BrokerConfig(host="127.0.0.1", port=broker.port, tls=tls, client_id="ctl")
        with MqttAdapter(config, LineClock()) as controller:
            controller.start()
            assert controller.wait_connected(10.0)
            line = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="line")
            line.tls_set(ca_certs=str(tls_files / "ca.pem"))
            line.connect("127.0.0.1", broker.port)
            line.loop_start()
            line.publish(protocol.FEEDBACK_TOPIC, protocol.encode_gate(1, True)).wait_for_publish(5)
            events = _wait_for(controller)
            line.loop_stop()
            line.disconnect()
        assert [e.event for e in events] == [protocol.GateEdge(1, True)]  # type: ignore[attr-defined]

        plain = BrokerConfig(host="127.0.0.1", port=broker.port, client_id="plain")
        with MqttAdapter(plain, LineClock()) as refused:
            refused.start()
            # the TLS listener closes a plain connection: an attempt seen failing, not a timeout
            assert wait_until(lambda: refused.failed_connects >= 1, timeout=30)
            assert not refused.connected


def _example_broker(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """mosquitto with config/mosquitto/bt_sorter.conf, its paths and port pointed at the test's."""
    example = ROOT / "config" / "mosquitto"
    shutil.copy(example / "bt_sorter.acl", folder / "acl")
    tool = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    assert tool is not None, "mosquitto_passwd ships with mosquitto"
    (folder / "passwd").touch()
    for user in ("line", "controller", "operator"):
        subprocess.run([tool, "-b", str(folder / "passwd"), user, f"{user}-pw"], check=True)
    for name in ("acl", "passwd"):
        (folder / name).chmod(0o644)  # mosquitto started as root reads them as its own user
    conf = (example / "bt_sorter.conf").read_text()
    assert "listener 8883 0.0.0.0\n" in conf
    conf = conf.replace("/etc/mosquitto/bt_sorter", str(folder))
    conf = conf.replace("listener 8883 0.0.0.0", f"listener {port} 127.0.0.1")
    (folder / "bt_sorter.conf").write_text(conf)
    broker = subprocess.Popen(
        [mosquitto_path() or "mosquitto", "-c", str(folder / "bt_sorter.conf")]
    )
    assert wait_for_port("127.0.0.1", port), "mosquitto did not start with the example config"
    return broker


def _client(folder: Path, port: int, user: str | None, password: str | None = None) -> mqtt.Client:
    """A TLS paho client logged in as ``user``; raises when the broker refuses it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-test")
    client.tls_set(ca_certs=str(folder / "ca.pem"))
    if user is not None:
        client.username_pw_set(user, password or f"{user}-pw")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_example_broker_config_lets_only_the_line_publish_feedback(tls_files: Path) -> None:
    port = free_port()
    broker = _example_broker(tls_files, port)
    try:
        tls = TlsConfig(enabled=True, ca_certs=str(tls_files / "ca.pem"))
        config = BrokerConfig(host="127.0.0.1", port=port, tls=tls, client_id="ctl",
                              username="controller", password="controller-pw")  # fmt: skip
        with MqttAdapter(config, LineClock()) as controller:
            assert controller.wait_connected(10.0)  # connected and subscribed
            operator = _client(tls_files, port, "operator")
            line = _client(tls_files, port, "line")
            try:
                # an authenticated user without the right to write bb: the broker drops it
                fake = operator.publish(protocol.FEEDBACK_TOPIC, protocol.encode_gate(2, True), 1)
                fake.wait_for_publish(5)
                # the controller cannot feed itself fake evidence either
                controller._client.publish(protocol.FEEDBACK_TOPIC, protocol.encode_gate(3, True))
                line.publish(protocol.FEEDBACK_TOPIC, protocol.encode_gate(1, True), 1)
                events = _wait_for(controller)
                time.sleep(0.3)
                events += [e for e in controller.drain() if isinstance(e, Received)]
            finally:
                for client in (operator, line):
                    client.loop_stop()
                    client.disconnect()
        assert [e.event for e in events] == [protocol.GateEdge(1, True)]  # type: ignore[attr-defined]

        for user, password in ((None, None), ("line", "wrong")):  # anonymous, bad password
            refused = MqttAdapter(
                BrokerConfig(host="127.0.0.1", port=port, tls=tls, client_id="intruder",
                             username=user, password=password),
                LineClock(),
            )  # fmt: skip
            with refused:
                refused.start()
                # the broker's answer: refused with a reason, not a timeout
                assert wait_until(lambda r=refused: bool(r.refusals), timeout=30)
                assert not refused.connected
    finally:
        stop_process(broker, 5.0)
