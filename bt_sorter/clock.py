"""Line time: wall time multiplied by the run's speed factor.

``--speed X`` makes the line run X times faster than real time. Every configured
duration is in line seconds; a program compares them against :meth:`LineClock.now`
and sleeps with :meth:`LineClock.wall`, so every duration divides by X.
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
        return (time.monotonic() - self._origin) * self.speed

    def wall(self, line_seconds: float) -> float:
        """The wall-clock seconds that ``line_seconds`` of line time take."""
        return line_seconds / self.speed
