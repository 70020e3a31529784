"""Shared fixtures: real brokers on free loopback ports; the suite's Hypothesis profile."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from bt_sorter.broker import BrokerProcess, mosquitto_path, start_broker

# The same strategies and assertions everywhere, but nothing that depends on how busy the
# machine is: no deadline and no wall-clock health check (too_slow counts seconds), and in
# CI (CI=true) the same examples every run. Tests may still lower max_examples.
settings.register_profile(
    "bt_sorter",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
    print_blob=True,
)
settings.load_profile("bt_sorter")


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
