"""What differs between POSIX and Windows for this project's processes, in one place.

- :func:`peak_rss_mib`: a process's peak memory (``resource`` is POSIX only).
- :func:`stop_signals`: the signals that ask a process of ours to stop. Windows delivers no
  SIGTERM between processes; a process started in a group of its own gets
  ``CTRL_BREAK_EVENT``, which Python sees as SIGBREAK.
- :func:`child_kwargs` and :func:`stop_signal`: how a parent starts a child it will stop
  gently (Windows: ``CREATE_NEW_PROCESS_GROUP``, so ``CTRL_BREAK_EVENT`` reaches that
  child alone) and the signal it sends (POSIX: SIGTERM, as ever).

Every function that depends on the platform takes it as ``platform`` (default
``sys.platform``), so the Windows branches are exercised on any machine.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

WINDOWS = "win32"
# subprocess.CREATE_NEW_PROCESS_GROUP and signal.CTRL_BREAK_EVENT exist only on Windows;
# their values are fixed by the Win32 API.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CTRL_BREAK_EVENT = 1


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    POSIX: ``getrusage`` (``ru_maxrss`` is KiB on Linux, bytes on macOS). Without
    ``resource`` (Windows): psutil's peak working set, or the current RSS (a floor of the
    peak) where psutil reports no peak.
    """
    try:
        import resource
    except ImportError:
        import psutil

        memory = psutil.Process().memory_info()
        return float(getattr(memory, "peak_wset", memory.rss)) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def stop_signal_names(platform: str = sys.platform) -> tuple[str, ...]:
    """Names of the signals that ask a process to stop on ``platform``."""
    if platform == WINDOWS:
        return ("SIGINT", "SIGTERM", "SIGBREAK")  # SIGBREAK: CTRL_BREAK_EVENT from a parent
    return ("SIGINT", "SIGTERM")


def stop_signals(platform: str = sys.platform) -> list[signal.Signals]:
    """The stop signals of :func:`stop_signal_names` this interpreter has."""
    names = stop_signal_names(platform)
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def child_kwargs(platform: str = sys.platform, *, posix_session: bool = False) -> dict[str, Any]:
    """``subprocess.Popen`` arguments for a child that :func:`stop_signal` will stop.

    Windows: a process group of its own, the only way ``CTRL_BREAK_EVENT`` reaches one
    child (and the console's Ctrl-C does not; the parent stops it). POSIX: nothing, so the
    child stays in the terminal's group and gets its Ctrl-C too, unless ``posix_session``
    (a session of its own, for a child whose helpers are ended as one group).
    """
    if platform == WINDOWS:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True} if posix_session else {}


def stop_signal(platform: str = sys.platform) -> int:
    """The signal a parent sends to ask a child started with :func:`child_kwargs` to stop."""
    return CTRL_BREAK_EVENT if platform == WINDOWS else int(signal.SIGTERM)
