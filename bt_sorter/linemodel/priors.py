"""The configured ``line:`` as a prior: expected times to confirm, or to report as wrong.

The configured ``line:`` (:class:`bt_sorter.config.LineConfig`) is turned into expected
times (:func:`prior_times`); it counts towards "measured" only once a measurement has
confirmed it (within :data:`PRIOR_TOLERANCE`). When the median of the first
:data:`PRIOR_CHECK_SAMPLES` measurements still disagrees, it is reported as a
``geometry_mismatch`` (quantity, configured, measured) and the prior is dropped: the
measurement wins.
"""

from __future__ import annotations

import statistics
from typing import Any

from bt_sorter.config import LineConfig
from bt_sorter.linemodel.estimates import Estimate
from bt_sorter.linemodel.quantities import PICTURE, blocked, clear, passage
from bt_sorter.linemodel.windows import SPREAD_K

PRIOR_TOLERANCE = 0.1  # a prior is confirmed when the first measurement is this close
PRIOR_WEIGHT = 2  # a confirmed prior counts as this many items towards "measured"
PRIOR_CHECK_SAMPLES = 3  # a prior no sample has confirmed is judged on this many


def prior_times(prior: LineConfig | None) -> dict[str, float]:
    """Expected times from a configured ``line:``: its times, else its metres."""
    if prior is None:
        return {}
    times: dict[str, float] = {}
    if prior.picture is not None:
        times[PICTURE] = prior.picture.median
    for gate, gt in enumerate(prior.gates, start=1):
        if gt.blocked is not None:
            times[blocked(gate)] = gt.blocked.median
        if gt.clear is not None:
            times[clear(gate)] = gt.clear.median
        if gt.blocked is not None and gt.clear is not None:
            times[passage(gate)] = gt.clear.median - gt.blocked.median
    speed, length = prior.belt_speed, prior.item_length
    if speed is None or length is None or speed <= 0:
        return times
    landed = prior.feeder_stroke_time or 0.0  # the item lands when rod 1 is out
    if prior.camera_position is not None:
        delay = prior.camera_delay or 0.0
        times.setdefault(PICTURE, landed + (prior.camera_position - length / 2) / speed + delay)
    for gate, position in enumerate(prior.gate_positions or (), start=1):
        times.setdefault(blocked(gate), landed + (position - length) / speed)
        times.setdefault(clear(gate), landed + position / speed)
        times.setdefault(passage(gate), length / speed)
    return times


class Prior:
    """The configured ``line:`` (``config``, None when there is none), its expected
    :attr:`times` not yet contradicted, those :attr:`confirmed`, and the
    :attr:`mismatches` found."""

    def __init__(self, config: LineConfig | None) -> None:
        self.config = config
        self.times = prior_times(config)
        self.confirmed: set[str] = set()
        self.mismatches: list[dict[str, Any]] = []

    def weight(self, name: str) -> int:
        """What a quantity's prior counts towards "measured": :data:`PRIOR_WEIGHT` items
        once confirmed, else nothing."""
        return PRIOR_WEIGHT if name in self.confirmed else 0

    def check(
        self, name: str, value: float, estimate: Estimate, tick: float
    ) -> dict[str, Any] | None:
        """Confirm a configured time by the first close sample (``value``, not yet in
        ``estimate``); call it a mismatch once the median of :data:`PRIOR_CHECK_SAMPLES`
        samples still disagrees."""
        configured = self.times.get(name)
        if configured is None or name in self.confirmed:
            return None
        # The latency margin is a worst case, not a typical delay: it stays out of this.
        tolerance = PRIOR_TOLERANCE * configured + SPREAD_K * estimate.spread + 2 * tick
        if abs(value - configured) <= tolerance:
            self.confirmed.add(name)
            return None
        samples = [*estimate.samples, value][-PRIOR_CHECK_SAMPLES:]
        if len(samples) < PRIOR_CHECK_SAMPLES:
            return None
        measured = statistics.median(samples)
        if abs(measured - configured) <= tolerance:
            self.confirmed.add(name)
            return None
        del self.times[name]  # the measurement wins
        mismatch = {"quantity": name, "configured": round(configured, 4),
                    "measured": round(measured, 4)}  # fmt: skip
        self.mismatches.append(mismatch)
        return mismatch
