"""``[HOST:]PORT`` options of the servers a run may start (the live page, Groot2's monitor)."""

from __future__ import annotations

import ipaddress


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port); the host defaults to loopback. ValueError names
    ``option`` (e.g. ``--web``) when ``text`` is not one."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} must be [HOST:]PORT, got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
