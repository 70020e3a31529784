"""The append-only record: one JSON line per decision about an item, flushed per line.

A killed controller leaves a consistent file: every line is whole, and the last
``item_resolved`` of each item says how its story ended.

Besides the decisions (:meth:`Record.write`, also logged), the record carries what a
replay needs (:meth:`Record.trace`, file only, see ``bt_sorter/trace.py``): the tree's
shape once, every node status transition, every gate edge and every command, each with
its line time. :attr:`Record.recent` keeps the latest decisions for the live page.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from bt_sorter.log import get_logger


class Record:
    """Writes events to a JSON-lines file (when given a path) and to structlog.

    The file may rotate (issue 22): once it holds ``max_bytes`` or has been open
    ``rotate_seconds`` (wall), it is renamed ``<path>.<n>`` (n = 1, 2, ... in the order
    written) and a fresh ``path`` is started, between two whole lines, so no line is lost
    or torn. Each fresh file starts with the session's ``session_started`` line again
    (``"continued": <n>``), so it replays on its own once older ones are gone; ``keep``
    bounds how many rotated files stay (the oldest go first; None keeps them all).
    :func:`record_files` lists a rotated set in order (``bt_sorter.replay`` reads it).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_bytes: int | None = None,
        rotate_seconds: float | None = None,
        keep: int | None = None,
        traces: bool = True,
    ) -> None:
        """``traces``: False keeps only the decisions in the file (no node transitions,
        edges, commands, pictures: not replayable; the deterministic simulation's batches)."""
        for name, value in (("max_bytes", max_bytes), ("rotate_seconds", rotate_seconds),
                            ("keep", keep)):  # fmt: skip
            if value is not None and value <= 0:
                raise ValueError(f"record {name} must be positive, got {value}")
        self.path = Path(path) if path else None
        self.max_bytes, self.rotate_seconds, self.keep = max_bytes, rotate_seconds, keep
        self.traces = traces
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._log = get_logger("bt_sorter.record")
        self.recent: deque[dict[str, Any]] = deque(maxlen=100)  # latest decisions, for views
        self.written = 0  # bytes written to the file(s) by this record, in all
        self.rotations = 0
        self._header: dict[str, Any] | None = None  # the session_started line, for each file
        self._size = 0  # bytes in the current file
        self._opened_at = time.monotonic()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def write(self, event: str, t: float, **facts: Any) -> None:
        """Append ``event`` at line time ``t`` with its facts, and log it."""
        self._log.info(event, t=round(t, 3), **facts)
        self.recent.append({"event": event, "t": round(t, 3), **facts})
        self._append(event, t, facts)

    @property
    def enabled(self) -> bool:
        """Whether traces go to a file (a trace costs nothing when they do not)."""
        return self._file is not None and self.traces

    def trace(self, event: str, t: float, **facts: Any) -> None:
        """Append ``event`` at line time ``t`` to the file only (not logged)."""
        if self.traces:
            self._append(event, t, facts)

    def _append(self, event: str, t: float, facts: dict[str, Any]) -> None:
        if self._file is None:
            return
        body = {"event": event, "t": round(t, 4), **facts}
        line = json.dumps(body, default=str) + "\n"  # ASCII: one character is one byte
        with self._lock:
            if self._file is None:
                return
            if event == "session_started" and self._header is None:
                self._header = body
            elif self._due(len(line)):
                self._rotate(t)
            self._put(line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    # -- rotation ------------------------------------------------------------------------

    def _open(self) -> None:
        assert self.path is not None
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._opened_at = time.monotonic()

    def _put(self, line: str) -> None:
        assert self._file is not None
        self._file.write(line)
        self._file.flush()
        self._size += len(line)
        self.written += len(line)

    def _due(self, incoming: int) -> bool:
        if self._size == 0:
            return False  # an empty file takes the line, however long
        too_big = self.max_bytes is not None and self._size + incoming > self.max_bytes
        aged = self.rotate_seconds is not None
        aged = aged and time.monotonic() - self._opened_at >= (self.rotate_seconds or 0.0)
        return too_big or aged

    def _rotate(self, t: float) -> None:
        """Close the file, rename it to the next number, start a fresh one (its first line
        the session's header again), drop the oldest beyond ``keep``. Under the lock."""
        assert self.path is not None and self._file is not None
        files = record_files(self.path)[:-1]
        number = _number(files[-1]) + 1 if files else 1
        self._file.close()
        try:
            self.path.rename(self.path.with_name(f"{self.path.name}.{number}"))
        except OSError as exc:  # keep writing where we were: a line lost is worse
            self._log.error("record_rotate_failed", path=str(self.path), error=str(exc))
            self._open()
            self._opened_at = time.monotonic()
            return
        self._open()
        self.rotations += 1
        if self._header is not None:
            header = {**self._header, "t": round(t, 4), "continued": number}
            self._put(json.dumps(header, default=str) + "\n")
        if self.keep is not None:
            for old in [*files, self.path.with_name(f"{self.path.name}.{number}")][: -self.keep]:
                try:
                    old.unlink()
                except OSError as exc:
                    self._log.error("record_prune_failed", path=str(old), error=str(exc))


def _number(path: Path) -> int:
    return int(path.name.rpartition(".")[2])


def record_files(path: str | Path) -> list[Path]:
    """The files of the record at ``path``, oldest first: its rotated files
    ``<path>.<n>`` in number order, then ``path`` itself (when it is there)."""
    path = Path(path)
    rotated = [
        p
        for p in path.parent.glob(f"{path.name}.*")
        if p.name.rpartition(".")[2].isdigit() and p.name.rpartition(".")[0] == path.name
    ]
    rotated.sort(key=_number)
    return [*rotated, path] if path.exists() else rotated
