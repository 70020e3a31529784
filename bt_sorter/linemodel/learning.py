"""Learning: taking resolved items' times into the estimates, outliers out, shifts followed.

An item whose times fall outside the model's own windows is not learned (its events may
be another item's: a feed that put nothing on the belt, issue 15); :data:`SHIFT_ITEMS`
such items in a row that agree with each other (within :data:`SHIFT_AGREE` of their
median pace), each within the windows once stretched by its pace, are a line that
changed, and are learned, when the time between each one's first and last gate edge
shows the same pace (a belt changes both; events one item late change only the times
from the feed). Every learned time is checked against the prior
(:class:`bt_sorter.linemodel.priors.Prior`). :meth:`Learning.measured` says when enough
has been learned to pipeline.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

from bt_sorter.linemodel.estimates import PACE_LIMITS, Estimates
from bt_sorter.linemodel.latency import Latency
from bt_sorter.linemodel.priors import Prior
from bt_sorter.linemodel.quantities import PICTURE, blocked, clear
from bt_sorter.linemodel.windows import REL_TOL, SPREAD_K, Windows

SHIFT_ITEMS = 3
SHIFT_AGREE = 0.1


class Learning:
    """Takes unambiguous items' times into the estimates; counts those taken and rejected."""

    def __init__(
        self, estimates: Estimates, prior: Prior, windows: Windows, latency: Latency
    ) -> None:
        self.estimates, self.prior, self.windows, self.latency = estimates, prior, windows, latency
        self.items_learned = 0
        self.items_rejected = 0  # items whose times were outliers (issue 15)
        self.last_outliers: dict[str, dict[str, float]] = {}  # the last learn()'s, if rejected
        self._rejected: deque[dict[str, float]] = deque(maxlen=SHIFT_ITEMS)  # in a row

    def learn(self, observed: dict[str, float]) -> list[dict[str, Any]]:
        """Take one unambiguous item's times; the ``geometry_mismatch`` facts it showed.

        An item with a time outside the model's window for it (:meth:`outliers`) is not
        learned: :attr:`last_outliers` says which and :attr:`items_rejected` counts it
        (issue 15: one wrong sample in a short window moves the medians and the spacing).
        :data:`SHIFT_ITEMS` rejected items in a row whose paces agree, and whose times all
        fit the windows once stretched by that pace and by the pace of their own gate
        edges' span (:meth:`_span_pace`), are a line that changed (a belt slower by more
        than the windows allow): they are all learned.
        """
        outliers = self.outliers(observed)
        self.last_outliers = outliers
        if not outliers:
            self._rejected.clear()
            return self._take(observed)
        self.items_rejected += 1
        pace = self._pace(observed)
        low, high = PACE_LIMITS
        trusted = self.items_learned >= SHIFT_ITEMS  # else the first items may be the odd ones
        if pace is None or (trusted and not low <= pace <= high):
            self._rejected.clear()  # no belt changes that much: not a drift
            return []
        if trusted and not self._paced(observed, pace):
            # Issue 20 (seed 1225): a belt that changed speed stretches every time alike;
            # one time off on its own (the next item's picture, taken item after item)
            # is not the line changing, and learning it would make the shift look right.
            self._rejected.clear()
            return []
        span = self._span_pace(observed)
        if trusted and (span is None or not self._paced(observed, span)):
            # Seed 103145: it stretches the time between an item's own gate edges as well.
            # The next item's gate edges taken item after item (one's pair at gate 1 lost)
            # are a feed interval late from the feed and spaced as ever; learned as a
            # slower belt, the shift fit the windows and no push guard doubted it.
            self._rejected.clear()
            return []
        self._rejected.append(observed)
        paces = [self._pace(o) or 0.0 for o in self._rejected]
        middle = statistics.median(paces)
        agree = all(abs(p - middle) <= SHIFT_AGREE * middle for p in paces)
        if len(self._rejected) < SHIFT_ITEMS or not agree:
            return []
        self.last_outliers = {}  # a shift: the line changed, follow it
        taken = list(self._rejected)
        self._rejected.clear()
        return [m for times in taken for m in self._take(times)]

    def outliers(self, observed: dict[str, float]) -> dict[str, dict[str, float]]:
        """The quantities of ``observed`` outside the model's window for them (no anchor:
        from the feed), once the model has a sample of that quantity; ``value``, ``low``
        and ``high`` of each (belt s)."""
        out = {}
        for name, value in observed.items():
            if self.estimates[name].n == 0:
                continue
            low, high = self.windows.window(name)
            if not low <= value <= high:
                out[name] = {"value": round(value, 4), "low": round(low, 4),
                             "high": round(high, 4)}  # fmt: skip
        return out

    def _paced(self, observed: dict[str, float], pace: float) -> bool:
        """Whether ``observed`` falls within the model's windows once every prediction is
        stretched by ``pace`` (the item's own): what a belt that changed speed shows."""
        for name, value in observed.items():
            expected = self.estimates.expected(name)
            if expected is None or self.estimates[name].n == 0:
                continue
            predicted = expected * pace
            spread = self.estimates.spread(name)
            tolerance = SPREAD_K * spread + REL_TOL * predicted + self.latency.margin
            if abs(value - predicted) > tolerance:
                return False
        return True

    def _span_pace(self, observed: dict[str, float]) -> float | None:
        """An item's time from its first gate edge to its last over the model's: the pace
        of the belt alone (no feed, no camera in it), or None without two such edges."""
        edges = [n for n in self.estimates.chain if n != PICTURE and n in observed]
        if len(edges) < 2:
            return None
        first, last = self.estimates.expected(edges[0]), self.estimates.expected(edges[-1])
        if first is None or last is None or last <= first:
            return None
        return (observed[edges[-1]] - observed[edges[0]]) / (last - first)

    def _pace(self, observed: dict[str, float]) -> float | None:
        """An item's times over the model's medians (the median of the ratios)."""
        paces = [
            value / expected
            for name, value in observed.items()
            if not name.endswith("passage") and (expected := self.estimates.expected(name))
        ]
        return statistics.median(paces) if paces else None

    def _take(self, observed: dict[str, float]) -> list[dict[str, Any]]:
        pace = self._pace(observed)
        tick = self.latency.tick
        checks = (self.prior.check(n, v, self.estimates[n], tick) for n, v in observed.items())
        mismatches = [m for m in checks if m]
        for name, value in observed.items():
            self.estimates[name].add(value)
        if pace is not None:
            low, high = PACE_LIMITS
            self.estimates.pace = min(high, max(low, pace))
        self.items_learned += 1
        return mismatches

    # -- what is known -------------------------------------------------------------

    def support(self, name: str) -> int:
        """Samples of a quantity, plus the prior's weight once confirmed
        (:meth:`bt_sorter.linemodel.priors.Prior.weight`)."""
        return self.estimates[name].n + self.prior.weight(name)

    def measured(self, items: int, through: int | None = None) -> bool:
        """True once the picture and gate 1 have ``items`` samples, every later gate up to
        ``through`` (the last gate by default) one.

        Items taken by the first rod never reach the gates after it, so those need only one
        sample: the passage is the same at every gate, and the matcher keeps order there.
        ``through``: the last gate an item must pass to be sorted (the gate of the last rod
        some label routes to, :meth:`bt_sorter.topology.Topology.reach`). Past it only items
        bound for bin 1 ride, and no push depends on their edges: a line whose routes send
        nothing to bin 1 never shows those gates an item, and waiting for them would feed
        one item at a time for ever (issue 20, seed 1000). Their events keep the bounds no
        line in the target range can trip until an item shows them.
        """
        first = (PICTURE, blocked(1), clear(1))
        if any(self.support(name) < items for name in first):
            return False
        topology = self.estimates.topology
        last = topology.last_gate if through is None else through
        rest = [q for g in topology.gate_numbers[1:last] for q in (blocked(g), clear(g))]
        return all(self.support(n) >= 1 for n in rest)
