"""Start the simulator as a separate process (``python -m bt_sorter.sim run``) and wait for it.

:func:`start_simulator` returns only once the simulator is connected and subscribed: the
simulator prints one JSON line ``{"event": "sim_ready", ...}`` on stdout at that moment
and the launcher waits for it. Logs go to the simulator's stderr, kept in a file next to
the summary (``<summary>.log``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from bt_sorter.broker import stop_process
from bt_sorter.portable import child_kwargs

READY_EVENT = "sim_ready"


class SimulatorError(RuntimeError):
    """The simulator did not start, or ended without a summary."""


class SimProcess:
    """A running simulator process."""

    def __init__(self, process: subprocess.Popen[str], summary: Path, log_path: Path) -> None:
        self.process = process
        self.summary_path = summary
        self.log_path = log_path
        self.stdout_lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Block until the ready line; raise :class:`SimulatorError` if it never comes."""
        stdout = self.process.stdout
        assert stdout is not None
        found = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(stdout, found), daemon=True)
        self._reader.start()
        if not found.wait(timeout):
            self.stop()
            raise SimulatorError(f"simulator was not ready within {timeout} s: {self.log_tail()}")

    def _read(self, stdout: IO[str], found: threading.Event) -> None:
        for line in stdout:
            self.stdout_lines.append(line)
            if not found.is_set() and line.startswith("{") and READY_EVENT in line:
                found.set()
        if not found.is_set():
            found.set()  # the process ended: let wait_ready look at why

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the simulator to end by itself; its summary JSON."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise SimulatorError(f"simulator still running after {timeout} s") from exc
        return self._summary(code)

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """Ask it to stop (SIGTERM; Windows: CTRL_BREAK_EVENT): it writes ledger and summary.
        Kill it if it hangs. The summary, or None without one."""
        stop_process(self.process, timeout, own_group=True)
        try:
            return self._summary(self.process.returncode)
        except SimulatorError:
            return None

    def _summary(self, code: int) -> dict[str, Any]:
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        if not self.summary_path.exists():
            raise SimulatorError(f"simulator exited {code} without a summary: {self.log_tail()}")
        summary: dict[str, Any] = json.loads(self.summary_path.read_text("utf-8"))
        summary["exit_code"] = code
        return summary

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulator(
    broker: str,
    *,
    summary: Path,
    config: Path | None = None,
    line: Path | None = None,
    items: int | None = None,
    seed: int | None = None,
    speed: float | None = None,
    ledger: Path | None = None,
    topic_prefix: str | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 30.0,
) -> SimProcess:
    """Start ``python -m bt_sorter.sim run`` against ``broker`` (HOST:PORT); ready on return."""
    cmd = [sys.executable, "-m", "bt_sorter.sim", "run", "--broker", broker]
    cmd += ["--summary", str(summary)]
    for flag, value in (
        ("--config", config),
        ("--line", line),
        ("--items", items),
        ("--seed", seed),
        ("--speed", speed),
        ("--ledger", ledger),
        ("--topic-prefix", topic_prefix),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += list(extra_args)
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.unlink(missing_ok=True)
    log_path = summary.with_name(summary.name + ".log")
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, bufsize=1, **child_kwargs()
        )
    sim = SimProcess(process, summary, log_path)
    sim.wait_ready(ready_timeout)
    if not any(READY_EVENT in line for line in sim.stdout_lines):  # stdout closed: it ended
        code = process.wait(ready_timeout)
        raise SimulatorError(f"simulator exited {code} before it was ready: {sim.log_tail()}")
    return sim
