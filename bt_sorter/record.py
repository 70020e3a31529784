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
from collections import deque
from pathlib import Path
from typing import IO, Any

from bt_sorter.log import get_logger


class Record:
    """Writes events to a JSON-lines file (when given a path) and to structlog."""

    def __init__(self, path: str | Path | None = None, *, traces: bool = True) -> None:
        """``traces``: False keeps only the decisions in the file (no node transitions,
        edges, commands, pictures: not replayable; the deterministic simulation's batches)."""
        self.path = Path(path) if path else None
        self.traces = traces
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._log = get_logger("bt_sorter.record")
        self.recent: deque[dict[str, Any]] = deque(maxlen=100)  # latest decisions, for views
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

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
        line = json.dumps({"event": event, "t": round(t, 4), **facts}, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
