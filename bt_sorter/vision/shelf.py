"""Pictures to disk in the training layout, ``<folder>/<label>/<name>``, never in a tick.

Collection mode (``SavePicture``, trees/collect.yaml) and the pictures the line keeps for an
operator to label (``classifier.keep_doubted``: those vision sent to bin 1) both go through
a :class:`PictureShelf`: :meth:`~PictureShelf.offer` only puts the picture on a bounded
queue (it never waits: a full queue drops the picture and counts it), and one writer thread
of the shelf's own writes the files. The folder is what ``python -m bt_sorter.vision.train
--data`` reads (one sub-folder per class).

``max_files`` bounds the files in the folder, those already there when the shelf opened
included (a line restarted every day does not grow it past the cap): past it the shelf
stops keeping and says so once (a picture whose write failed still counts: the bound holds).
A write that fails (disk full, permission denied) is said once too, and counted; the shelf
goes on trying the next pictures, and nothing a write does reaches the controller. What
the shelf says goes to ``say(event, facts)`` (the run's record), or to the log.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bt_sorter.log import get_logger

QUEUE_PICTURES = 64  # pictures waiting for the writer (a camera's burst); more are dropped
CLOSE_TIMEOUT = 10.0  # wall s close() waits for the writer to finish what it was given

log = get_logger("bt_sorter.vision.shelf")

Say = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class _Picture:
    label: str
    name: str
    data: bytes


def picture_suffix(data: bytes) -> str:
    """``.png`` for a PNG, else ``.jpg`` (what the line's cameras send)."""
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def safe_part(text: str) -> str:
    """``text`` as one file or folder name: letters, digits, ``-``, ``_`` and ``.`` (not
    leading) only; ``unlike any trained picture`` becomes ``unlike-any-trained-picture``."""
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return out.lstrip(".-").rstrip("-") or "_"


class PictureShelf:
    """Writes pictures under ``folder`` on a thread of its own, from a bounded queue."""

    def __init__(
        self,
        folder: Path,
        *,
        max_files: int | None = None,
        queue_size: int = QUEUE_PICTURES,
        say: Say | None = None,
        what: str = "pictures",
    ) -> None:
        if max_files is not None and max_files <= 0:
            raise ValueError(f"max_files must be positive, got {max_files}")
        self.folder = Path(folder).absolute()
        self.max_files = max_files
        self.what = what
        self.kept = 0  # files written by this shelf
        self.dropped = 0  # offered while the queue was full, or the shelf full or closed
        self.failed = 0  # writes that raised (disk full, permission denied, ...)
        self.full = False  # the folder holds max_files: nothing more is kept
        self._say = say
        self._said: set[str] = set()
        # files in the folder, those already there included (counted once, here: the shelf
        # is made before the run starts; collection mode's has no cap and counts nothing)
        self._files = self._count_files() if max_files is not None else 0
        self._queue: queue.Queue[_Picture | None] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._thread = threading.Thread(target=self._write_all, name=f"shelf-{what}", daemon=True)
        self._thread.start()

    def offer(self, label: str, name: str, data: bytes) -> Path | None:
        """Hand over one picture for ``<folder>/<label>/<name>``; where it will be, or None
        when it is not taken (the shelf is full or closed, or its queue is). Never blocks."""
        if self.max_files is not None and self._files >= self.max_files and not self.full:
            self.full = True
            self._once("full", f"{self.what}_not_kept", folder=str(self.folder),
                       reason=f"the folder holds {self._files} files, the cap is "
                       f"{self.max_files}: no more are kept")  # fmt: skip
        if self.full or self._closed:
            self.dropped += 1
            return None
        picture = _Picture(safe_part(label), safe_part(name) + picture_suffix(data), data)
        try:
            self._queue.put_nowait(picture)
        except queue.Full:
            self.dropped += 1
            self._once("busy", f"{self.what}_not_kept", folder=str(self.folder),
                       reason=f"the writer is behind ({self._queue.maxsize} pictures waiting); "
                       "pictures are dropped while it catches up")  # fmt: skip
            return None
        self._files += 1
        return self.folder / picture.label / picture.name

    def stats(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "kept": self.kept,
            "dropped": self.dropped,
            "failed": self.failed,
            "full": self.full,
        }

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what was handed over (up to ``timeout`` wall s), then stop the writer."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("shelf_not_drained", folder=str(self.folder), waiting=self._queue.qsize())
            return
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------

    def _write_all(self) -> None:
        while (picture := self._queue.get()) is not None:
            path = self.folder / picture.label / picture.name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(picture.data)
            except OSError as exc:
                self.failed += 1
                self._once("failed", f"{self.what}_not_kept", folder=str(self.folder),
                           reason=f"cannot write {path}: {exc}; the line goes on, "
                           "later pictures are tried again")  # fmt: skip
                continue
            self.kept += 1

    def _count_files(self) -> int:
        """Files already in the label folders (what the cap counts)."""
        try:
            folders = [d for d in self.folder.iterdir() if d.is_dir()]
            return sum(1 for d in folders for f in d.iterdir() if f.is_file())
        except OSError:
            return 0  # no folder yet (or none readable: the first write will say why)

    def _once(self, key: str, event: str, **facts: Any) -> None:
        """Say ``event`` the first time ``key`` happens, never again."""
        if key in self._said:
            return
        self._said.add(key)
        if self._say is not None:
            try:
                self._say(event, facts)
                return
            except Exception as exc:  # the record may be closed at the run's end
                log.warning("shelf_say_failed", error=repr(exc))
        log.warning(event, **facts)
