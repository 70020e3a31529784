"""The MQTT adapter against a real mosquitto: order kept, nothing overwritten, restarts survived."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from peer import Peer, wait_until

from bt_sorter import protocol
from bt_sorter.adapter import AdapterConfigError, MqttAdapter
from bt_sorter.blackboard import Blackboard, ConnectionChanged, Received
from bt_sorter.broker import BrokerProcess, start_broker
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig, TlsConfig


def broker_config(broker: BrokerProcess, **changes: object) -> BrokerConfig:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": f"bt-test-{uuid.uuid4()}",
        "reconnect_min_delay": 0.1,
        "reconnect_max_delay": 0.4,
    }
    values.update(changes)
    return BrokerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def adapter(broker: BrokerProcess) -> Iterator[MqttAdapter]:
    a = MqttAdapter(broker_config(broker), LineClock())
    a.start()
    assert a.wait_connected(5), "adapter did not connect to mosquitto"
    yield a
    a.stop()


def test_two_edges_between_two_ticks_are_two_events(
    broker: BrokerProcess, adapter: MqttAdapter
) -> None:
    line = Peer(broker)
    try:
        line.publish(protocol.encode_gate(2, True))
        line.publish(protocol.encode_gate(2, False))
        assert wait_until(lambda: adapter.messages >= 2)
        bb = Blackboard()
        bad = bb.ingest(adapter.drain())  # one pre-tick for both edges
    finally:
        line.close()
    assert bad == []
    assert bb.connected
    assert [(e.gate, e.blocked) for e in bb.edges] == [(2, True), (2, False)]
    assert bb.edges[0].t <= bb.edges[1].t
    assert bb.gates[2] is False  # the latest state, but the rising edge was not lost


def test_many_edges_in_a_burst_arrive_complete_and_in_order(
    broker: BrokerProcess, adapter: MqttAdapter
) -> None:
    line = Peer(broker)
    sent = [(gate, blocked) for _ in range(50) for gate in (1, 2, 3) for blocked in (True, False)]
    try:
        for gate, blocked in sent:
            line.client.publish(protocol.FEEDBACK_TOPIC, protocol.encode_gate(gate, blocked))
        assert wait_until(lambda: adapter.messages >= len(sent))
    finally:
        line.close()
    got = [
        (ev.event.gate, ev.event.blocked)
        for ev in adapter.drain()
        if isinstance(ev, Received) and isinstance(ev.event, protocol.GateEdge)
    ]
    assert got == sent


def test_bad_payloads_become_bad_input_events_and_good_ones_still_arrive(
    broker: BrokerProcess, adapter: MqttAdapter
) -> None:
    line = Peer(broker)
    try:
        for payload in (b"not json", b'{"first_switch": 3}', b"\xff\xfe", b'{"image": "@@"}'):
            line.publish(payload)
        line.publish(protocol.encode_gate(1, True))
        assert wait_until(lambda: adapter.messages >= 5)
    finally:
        line.close()
    bb = Blackboard()
    bad = bb.ingest(adapter.drain())
    assert len(bad) == 4 and bb.bad_inputs == 4
    assert [(e.gate, e.blocked) for e in bb.edges] == [(1, True)]


def test_commands_and_status_reach_the_broker_on_their_topics(
    broker: BrokerProcess, adapter: MqttAdapter
) -> None:
    line = Peer(broker, protocol.COMMAND_TOPIC, adapter.topics.status)
    try:
        assert adapter.publish(protocol.push(3))
        assert adapter.publish_status("alarm", reason="item 4 stuck")
        assert adapter.flush(2.0)
        assert wait_until(lambda: len(line.received) >= 2)
    finally:
        line.close()
    assert line.payloads(protocol.COMMAND_TOPIC) == [protocol.encode_command(protocol.push(3))]
    (status,) = line.payloads(adapter.topics.status)
    assert b'"event": "alarm"' in status and b"item 4 stuck" in status


def test_adapter_resubscribes_after_the_broker_restarts_on_the_same_port() -> None:
    first = start_broker(kind="mosquitto")
    port = first.port
    adapter = MqttAdapter(broker_config(first), LineClock())
    adapter.start()
    second: BrokerProcess | None = None
    try:
        assert adapter.wait_connected(5)
        first.stop()
        assert wait_until(lambda: not adapter.connected)
        # offline: publishing does not raise, it reports that nothing went out
        assert adapter.publish(protocol.BELT_STOP) is False
        second = start_broker(port=port, kind="mosquitto")
        assert wait_until(lambda: adapter.connects >= 2, timeout=10)
        line = Peer(second)
        try:
            line.publish(protocol.encode_gate(3, True))
            assert wait_until(lambda: adapter.messages >= 1)
        finally:
            line.close()
        events = adapter.drain()
    finally:
        adapter.stop()
        if second is not None:
            second.stop()
        first.stop()
    links = [ev.connected for ev in events if isinstance(ev, ConnectionChanged)]
    assert links == [True, False, True]
    edges = [ev.event for ev in events if isinstance(ev, Received)]
    assert edges == [protocol.GateEdge(3, True)]


def test_adapter_that_cannot_reach_a_broker_reports_offline_without_raising() -> None:
    from bt_sorter.broker import free_port

    config = BrokerConfig(port=free_port(), client_id=f"bt-test-{uuid.uuid4()}")
    adapter = MqttAdapter(config, LineClock())
    adapter.start()
    try:
        assert adapter.wait_connected(0.3) is False
        assert adapter.publish(protocol.ALL_PULL) is False
        assert adapter.drain() == []
    finally:
        adapter.stop()


def test_username_and_password_are_used_against_a_password_protected_broker(
    tmp_path: object,
) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    tool = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    if tool is None:
        pytest.fail("mosquitto_passwd is not installed (it ships with mosquitto)")
    passwd = Path(str(tmp_path)) / "passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "line", "s3cret"], check=True)
    passwd.chmod(0o600)
    # running as root, mosquitto drops to its own user, which cannot read pytest's tmp_path
    root_conf = "user root\n" if os.geteuid() == 0 else ""
    with start_broker(kind="mosquitto", password_file=passwd, extra_conf=root_conf) as broker:
        good = MqttAdapter(broker_config(broker, username="line", password="s3cret"), LineClock())
        bad = MqttAdapter(broker_config(broker, username="line", password="wrong"), LineClock())
        good.start()
        bad.start()
        try:
            assert good.wait_connected(5)
            assert bad.wait_connected(0.5) is False
        finally:
            good.stop()
            bad.stop()


def test_tls_with_a_missing_ca_file_is_a_clear_config_error(tmp_path: object) -> None:
    tls = TlsConfig(enabled=True, ca_certs=f"{tmp_path}/missing-ca.pem")
    with pytest.raises(AdapterConfigError, match=r"broker\.tls"):
        MqttAdapter(BrokerConfig(tls=tls), LineClock())
