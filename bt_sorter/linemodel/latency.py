"""The latency margins: how far an event's time, or a command's effect, may be off.

Message and command latency is wall time (so ``--speed X`` makes it X times longer in
line time); the controller's own decision delay is measured by the runner (issue 15).
:attr:`Latency.margin` widens the windows and the prior check,
:attr:`Latency.command_margin` the feed spacing.
"""

from __future__ import annotations

import bisect
from collections import deque

LATENCY_WALL_S = 0.05  # wall seconds a message and a command may add on the network
# Issue 15: the controller's own delay, from the tick an event could first be seen to the
# commands of the tick that acts on it being published, is measured by the runner (tick
# lateness + tick duration, in line time) and kept over the last DELAY_WINDOW ticks; the
# margin allows DELAY_QUANTILE of them (a slower tick is rarer than a lost message).
DELAY_WINDOW = 500  # ticks: 10 s of line time at 50 Hz
DELAY_QUANTILE = 0.99


class Latency:
    """The tick, the speed, the measured decision delay and the margins they give."""

    def __init__(self, tick: float = 0.02, speed: float = 1.0) -> None:
        self.tick, self.speed = tick, speed
        self._delays: deque[float] = deque(maxlen=DELAY_WINDOW)  # line s, from the runner
        self._ranked: list[float] = []  # the same delays, sorted
        self.decision_delay = tick  # until the runner has measured one

    def note_delay(self, seconds: float) -> None:
        """One tick's delay (line s) from its due time to its commands being published.

        Sets :attr:`decision_delay`: a tick period (an event may arrive just after a tick
        read its inbox) plus the :data:`DELAY_QUANTILE` of the measured tick delays
        (issue 15); one tick period before the first measurement.
        """
        if len(self._delays) == self._delays.maxlen:
            del self._ranked[bisect.bisect_left(self._ranked, self._delays[0])]
        delay = max(0.0, seconds)
        self._delays.append(delay)
        bisect.insort(self._ranked, delay)
        ranked = self._ranked
        self.decision_delay = self.tick + ranked[int(DELAY_QUANTILE * (len(ranked) - 1))]

    @property
    def margin(self) -> float:
        """Line s an event's time may be off (windows, priors): the network
        (:data:`LATENCY_WALL_S` of wall time) and a tick either way. Events are stamped
        when they arrive, so a late tick does not move them."""
        return LATENCY_WALL_S * self.speed + 2 * self.tick

    @property
    def command_margin(self) -> float:
        """Line s a rod's effect may lag behind the event it answers (issue 15): the
        network both ways and the controller's measured decision delay, twice (the tick
        that pushes, then the tick that pulls)."""
        return LATENCY_WALL_S * self.speed + 2 * self.decision_delay
