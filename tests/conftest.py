"""Shared fixtures: real brokers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bt_sorter.broker import BrokerProcess, mosquitto_path, start_broker


@pytest.fixture
def broker() -> Iterator[BrokerProcess]:
    """Debian's mosquitto on a free 127.0.0.1 port, stopped after the test."""
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
    with start_broker(kind="mosquitto") as process:
        yield process


@pytest.fixture
def amqtt_broker() -> Iterator[BrokerProcess]:
    """amqtt (pip only) in its own process on a free 127.0.0.1 port."""
    with start_broker(kind="amqtt") as process:
        yield process
