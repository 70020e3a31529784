"""Line time: wall time multiplied by the run's speed factor.

``--speed X`` makes the line run X times faster than real time. Every configured
duration is in line seconds; a program compares them against :meth:`LineClock.now`
and sleeps with :meth:`LineClock.wall`, so every duration divides by X.

The clock is also the runner's only source of wall time (:meth:`LineClock.monotonic`,
:meth:`LineClock.sleep`): the deterministic simulation (:mod:`bt_sorter.harness`) hands
the runner a clock whose time is virtual and whose sleep runs the simulated line, the
network and the classifier up to the next deadline, so the real runner loop ticks the
real tree with no wall time passing.
"""

from __future__ import annotations

import time


class LineClock:
    """Monotonic line time in seconds since the clock was made."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        """Line seconds since start."""
        return (self.monotonic() - self._origin) * self.speed

    def wall(self, line_seconds: float) -> float:
        """The wall-clock seconds that ``line_seconds`` of line time take."""
        return line_seconds / self.speed

    def monotonic(self) -> float:
        """Wall seconds from an arbitrary origin (``time.monotonic``)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of wall time pass."""
        if seconds > 0:
            time.sleep(seconds)
