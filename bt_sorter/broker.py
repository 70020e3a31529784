"""Start a local MQTT broker in its own process: Debian's mosquitto, else amqtt.

The built-in line (``run.py`` without ``--broker``) and the tests need a broker on
loopback. :func:`start_broker` prefers a ``mosquitto`` binary (on PATH; on Windows also
where its installer puts it, ``%ProgramFiles%\\mosquitto\\mosquitto.exe``) and falls back
to amqtt (pure Python, installed by pip) run as ``python -m bt_sorter.broker``, in a
process of its own so it never competes with the controller's interpreter.

Run directly: ``python -m bt_sorter.broker --port 21883`` serves amqtt on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bt_sorter.argtypes import port_number
from bt_sorter.portable import WINDOWS, child_kwargs, stop_signal, stop_signals

BrokerKind = Literal["mosquitto", "amqtt"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def mosquitto_path(
    platform: str = sys.platform, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The mosquitto binary: from PATH, else where the platform's package puts it.

    POSIX: Debian's /usr/sbin. Windows: the installer's ``%ProgramFiles%\\mosquitto``
    (and the 32-bit ``%ProgramFiles(x86)%``), which it does not add to PATH.
    """
    found = shutil.which("mosquitto", path=environ.get("PATH"))
    if found or platform != WINDOWS:
        return found or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    for folder in ("ProgramFiles", "ProgramFiles(x86)"):
        if environ.get(folder):
            exe = Path(environ[folder], "mosquitto", "mosquitto.exe")
            if exe.is_file():
                return str(exe)
    return None


def default_kind(
    platform: str = sys.platform, environ: Mapping[str, str] = os.environ
) -> BrokerKind:
    """mosquitto when :func:`mosquitto_path` finds it, else amqtt."""
    return "mosquitto" if mosquitto_path(platform, environ) else "amqtt"


def stop_process(
    process: subprocess.Popen[Any],
    timeout: float,
    *,
    own_group: bool = False,
    platform: str = sys.platform,
) -> None:
    """Ask ``process`` to stop, wait ``timeout`` s for it; kill it if it does not go.

    POSIX: SIGTERM. Windows delivers no SIGTERM between processes: a child started with
    :func:`bt_sorter.portable.child_kwargs` (``own_group``) gets ``CTRL_BREAK_EVENT``, which
    its SIGBREAK handler takes as a stop; any other is terminated at once (TerminateProcess).
    """
    if process.poll() is None:
        if platform == WINDOWS and not own_group:
            process.terminate()
        else:
            try:
                process.send_signal(stop_signal(platform))
            except OSError:  # Windows: no console to send the event through
                process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclass
class BrokerProcess:
    """A running broker process on 127.0.0.1:``port``."""

    kind: BrokerKind
    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker and wait for it; kill it if it does not go."""
        stop_process(self.process, timeout, own_group=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(
    port: int | None = None,
    kind: BrokerKind | None = None,
    host: str = "127.0.0.1",
    password_file: str | Path | None = None,
    extra_conf: str = "",
) -> BrokerProcess:
    """Start a broker on ``host:port`` (a free port when None) and wait until it listens.

    ``kind=None`` prefers mosquitto when it is installed. ``password_file`` (a
    mosquitto_passwd file) turns anonymous access off; mosquitto only.
    """
    port = port or free_port(host)
    kind = kind or default_kind()
    tmp = tempfile.TemporaryDirectory(prefix=f"bt_sorter_{kind}_")
    workdir = Path(tmp.name)
    log = (workdir / "broker.log").open("wb")
    if kind == "mosquitto":
        binary = mosquitto_path()
        if binary is None:
            tmp.cleanup()
            raise RuntimeError("mosquitto is not installed (apt-get install -y mosquitto)")
        auth = (
            f"allow_anonymous false\npassword_file {password_file}\n"
            if password_file
            else "allow_anonymous true\n"
        )
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {host}\n{auth}persistence false\n{extra_conf}\n", encoding="utf-8"
        )
        cmd = [binary, "-c", str(conf)]
    else:
        if password_file:
            tmp.cleanup()
            raise ValueError("password files are supported with mosquitto only")
        cmd = [sys.executable, "-m", "bt_sorter.broker", "--host", host, "--port", str(port)]
    process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, **child_kwargs()
    )
    log.close()
    broker = BrokerProcess(kind, host, port, process, workdir, tmp)
    if not wait_for_port(host, port, timeout=20.0) or not broker.alive():
        text = (workdir / "broker.log").read_text(errors="replace")[-2000:]
        broker.stop()
        raise RuntimeError(f"{kind} did not start on {host}:{port}: {text}")
    return broker


async def _serve_amqtt(host: str, port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals():
        if sys.platform == WINDOWS:  # the Windows event loops have no add_signal_handler
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        else:
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.broker", description="Serve an amqtt MQTT broker."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=port_number, default=21883, help="TCP port (default 21883)")
    args = parser.parse_args(argv)
    asyncio.run(_serve_amqtt(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
