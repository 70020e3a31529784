"""The windows and deadlines the matcher and the watchdogs ask for.

A window is a prediction (belt s since the feed) ± :data:`SPREAD_K` spreads ±
:data:`REL_TOL` of the predicted span ± the latency margin; a deadline lies a window's
tolerance further on (a late message is more likely than a lost one). Before a quantity
is measured, the bounds are those no line in the target range can trip
(:mod:`bt_sorter.linemodel.bounds`). Also here: when an item has surely fallen off the
belt end (:meth:`Windows.run_out`) and how long a quiet belt may be before it has stalled
(:meth:`Windows.quiet_bound`).
"""

from __future__ import annotations

import itertools

from bt_sorter.linemodel.bounds import UNMEASURED_PASSAGE_S, UNMEASURED_REACH_S
from bt_sorter.linemodel.estimates import PACE_LIMITS, Estimates
from bt_sorter.linemodel.latency import Latency
from bt_sorter.linemodel.quantities import PICTURE, blocked

SPREAD_K = 4.0  # a window reaches this many spreads either side of the prediction
REL_TOL = 0.3  # and this share of the predicted span: a belt may drift by 20 %
RUN_OUT_FACTOR = 1.5  # the belt end lies at most this many gate spacings past gate 3
STALL_GAPS = 3  # no evidence for this many of an item's longest gaps: the belt has stalled
STALL_WALL_S = 1.0  # ... and for at least this long in wall time (a busy machine's hiccup)


def gate_anchor(anchor: tuple[str, float] | None) -> tuple[str, float] | None:
    """The anchor a prediction may start from: a gate edge, not the picture.

    The picture's time carries the camera's delay and a large message's transport, so
    one late picture (a busy machine at --speed 8) would shift and narrow every window
    after it; a gate edge says where the item's head or tail is (issue 15).
    """
    return None if anchor is None or anchor[0] == PICTURE else anchor


class Windows:
    """Predictions, windows and deadlines from the estimates and the latency margin."""

    def __init__(self, estimates: Estimates, latency: Latency) -> None:
        self.estimates, self.latency = estimates, latency

    def predict(self, name: str, anchor: tuple[str, float] | None = None) -> float | None:
        """When (belt s since the feed) an item's ``name`` event is due, or None if unknown.

        From the item's own latest event (``anchor``: its name and time) when there is
        one, stretched by the item's pace; else the median stretched by the model's pace.
        """
        expected = self.estimates.expected(name)
        if expected is None:
            return None
        anchor = gate_anchor(anchor)
        if anchor is not None:
            anchor_name, anchor_at = anchor
            anchor_expected = self.estimates.expected(anchor_name)
            if anchor_expected:
                low, high = PACE_LIMITS
                pace = min(high, max(low, anchor_at / anchor_expected))
                return anchor_at + (expected - anchor_expected) * pace
        return expected * self.estimates.pace

    def window(self, name: str, anchor: tuple[str, float] | None = None) -> tuple[float, float]:
        """Earliest and latest belt s since the feed for the event; unbounded if unknown."""
        predicted = self.predict(name, anchor)
        if predicted is None:
            return 0.0, self.unmeasured_deadline(name, anchor)
        anchor = gate_anchor(anchor)
        span = abs(predicted - (anchor[1] if anchor else 0.0))
        tolerance = SPREAD_K * self.estimates.spread(name) + REL_TOL * span + self.latency.margin
        return predicted - tolerance, predicted + tolerance

    def deadline(self, name: str, anchor: tuple[str, float] | None = None) -> float:
        """Belt s since the feed after which the event is overdue: twice the window's
        tolerance past the prediction (a late message is more likely than a lost one)."""
        earliest, latest = self.window(name, anchor)
        if self.predict(name, anchor) is None:
            return latest
        return latest + (latest - earliest) / 2

    def unmeasured_deadline(self, name: str, anchor: tuple[str, float] | None) -> float:
        """A bound no line in the target range can trip: for a clear edge after its own
        blocked edge, twice the slowest passage; for anything else the slowest reach."""
        since = anchor[1] if anchor else 0.0
        gate_of_anchor = anchor[0].split(".")[0] if anchor else None
        if name.endswith("clear") and gate_of_anchor == name.split(".")[0]:
            return since + UNMEASURED_PASSAGE_S
        return since + UNMEASURED_REACH_S

    def run_out(self, own: list[float]) -> float:
        """Belt s from the last gate's clear edge until an item has surely fallen off the end.

        No sensor sees the belt end; it is taken to lie at most :data:`RUN_OUT_FACTOR`
        gate spacings past the last gate (``own``: the item's own gate-to-gate times, used
        while the model has none).
        """
        estimates = self.estimates
        heads = [estimates.expected(blocked(g)) for g in estimates.topology.gate_numbers]
        segments = [
            b - a for a, b in itertools.pairwise(heads) if a is not None and b is not None
        ] or own
        if not segments:
            return UNMEASURED_REACH_S
        return RUN_OUT_FACTOR * max(segments) * estimates.pace + self.latency.margin

    def quiet_bound(self) -> float:
        """Belt s without any evidence that, with edges missing, means a stalled belt:
        :data:`STALL_GAPS` times the longest gap between two consecutive events of an
        item, and no less than :data:`STALL_WALL_S` of wall time (a busy machine may hold
        a process back for a while; ``--speed`` makes that longer in line time)."""
        times = [self.estimates.expected(name) for name in self.estimates.chain]
        if any(t is None for t in times):
            return UNMEASURED_REACH_S
        known = [0.0, *(t for t in times if t is not None)]
        gaps = [b - a for a, b in itertools.pairwise(known)]
        pace, latency = self.estimates.pace, self.latency
        return max(STALL_GAPS * max(gaps) * pace, STALL_WALL_S * latency.speed) + latency.margin
