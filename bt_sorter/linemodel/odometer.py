"""The belt odometer: the clock every line-model time is counted on.

Every time the line model holds is in **seconds of belt running since an item's feed
command**: the :class:`Odometer` counts only the time the belt was commanded to run, so
belt stops stay out of the figures.
"""

from __future__ import annotations


class Odometer:
    """Seconds of belt running, from the belt commands the controller sent."""

    def __init__(self) -> None:
        self._changes: list[tuple[float, bool]] = []  # (time, running), in time order

    def set(self, t: float, running: bool) -> None:
        if not self._changes or self._changes[-1][1] != running:
            self._changes.append((t, running))

    def travel(self, t: float) -> float:
        """Belt-running seconds from the first command up to line time ``t``."""
        total, since = 0.0, None
        for when, running in self._changes:
            if when > t:
                break
            if since is not None:
                total += when - since
            since = when if running else None
        if since is not None:
            total += t - since
        return total

    def between(self, t0: float, t1: float) -> float:
        """Belt-running seconds from line time ``t0`` to ``t1``."""
        return self.travel(t1) - self.travel(t0)
