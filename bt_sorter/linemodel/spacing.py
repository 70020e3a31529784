"""Push delay, safe feed spacing and the line's limit (see docs/line-model.md).

How late a push may come after an item cleared its gate and still meet it
(:meth:`Spacing.max_push_delay`), the least belt time between two feeds that keeps every
rod off the item behind (:meth:`Spacing.safe_spacing`), and the items per minute that
allows with the feeder's own cycle (:meth:`Spacing.limit_per_minute`). The feeding and rod
leaves tell it their cycles (:meth:`Spacing.note_feeder_cycle`, :meth:`Spacing.note_rod_out`).
"""

from __future__ import annotations

from collections.abc import Iterable

from bt_sorter.linemodel.bounds import SHORTEST_PASSAGE_S
from bt_sorter.linemodel.estimates import Estimates
from bt_sorter.linemodel.latency import Latency
from bt_sorter.linemodel.quantities import blocked, clear, passage
from bt_sorter.linemodel.windows import SPREAD_K, Windows

# How far past its gate (in the item's own passages) a late push still meets the item: the
# sweep window lies downstream of the gate and must overlap an item that has just cleared
# it; three quarters of an item length is assumed (the built-in line's reaches 1.5).
PUSH_REACH = 0.75


class Spacing:
    """The push delay, the feed spacing and the limit, from the estimates and the leaves'
    cycles (``feeder_cycle``, ``rod_out``: the defaults until a leaf notes its own)."""

    def __init__(
        self,
        estimates: Estimates,
        windows: Windows,
        latency: Latency,
        *,
        feeder_cycle: float = 2.5,
        rod_out: float = 2.0,
        routed: Iterable[int] | None = None,
    ) -> None:
        self.estimates, self.windows, self.latency = estimates, windows, latency
        # The gates whose rods fire: those some label routes to (config sorting.routes);
        # an unrouted rod never pushes, so it sets no spacing. Every rod's by default.
        topology = estimates.topology
        rods = topology.rods if routed is None else [r for r in routed if r in topology.rods]
        self.push_gates = sorted({topology.rods[rod] for rod in rods})
        self._feeder_cycles: list[float] = []  # feed command → rod 1 back, per feeding leaf
        self._rod_outs: list[float] = []  # push → rod back, per rod leaf of the tree
        self._default_feeder_cycle, self._default_rod_out = feeder_cycle, rod_out

    def note_feeder_cycle(self, seconds: float) -> None:
        """A feeding leaf's cycle: rod 1 out and back (the feeder's pace)."""
        self._feeder_cycles.append(seconds)

    def note_rod_out(self, seconds: float) -> None:
        """A rod leaf's push → back time; spacing allows for the longest."""
        self._rod_outs.append(seconds)

    @property
    def feeder_cycle(self) -> float:
        return max(self._feeder_cycles, default=self._default_feeder_cycle)

    @property
    def rod_out(self) -> float:
        return max(self._rod_outs, default=self._default_rod_out)

    def max_push_delay(self, gate: int, own: float | None = None) -> float:
        """Latest push (line s) after an item cleared ``gate`` that still meets it:
        :data:`PUSH_REACH` of its passage there (the model's, else ``own``, the item's own,
        else the shortest in the target range), never under two ticks."""
        passage = self.estimates.passage_time(gate) or own or SHORTEST_PASSAGE_S
        return max(PUSH_REACH * passage, self.latency.tick * 2)

    def safe_spacing(self) -> float | None:
        """Least belt s between two feeds that keeps every rod off the item behind.

        Rod k goes out on the clear edge of its gate g (``topology.gate_of(k)``) of the item
        ahead, as late as :meth:`max_push_delay` after it, and is back ``rod_out`` later;
        the item behind must not reach gate g (the sweep window lies downstream of it)
        before then: passage at gate g + the latest push + rod out, plus the spreads and
        the command margin, over every gate that fires a rod some label routes to (a gate
        that only tracks fires none, nor does an unrouted rod's). And the other way round:
        the item ahead must have left the window before the push for this one
        (:meth:`leaves_window`). None while a passage is unknown. See docs/line-model.md.
        """
        estimates = self.estimates
        needs, aheads = [], []
        for gate in self.push_gates:
            time = estimates.passage_time(gate)
            ahead = self.leaves_window(gate)
            if time is None or ahead is None:
                return None
            spread = max(estimates.spread(passage(gate)), estimates.spread(blocked(gate)))
            stretched = time * max(1.0, estimates.pace)
            needs.append(stretched + self.max_push_delay(gate) + SPREAD_K * spread)
            aheads.append(ahead)
        if not needs:
            return 0.0  # no rod fires: nothing to space but the feeder's own cycle
        behind = max(needs) + self.rod_out  # the item behind stays off a push for this one
        return max(behind, max(aheads)) + self.latency.command_margin

    def leaves_window(self, gate: int) -> float | None:
        """Belt s from an item's clear edge at ``gate`` until it is surely past any window
        the rod that ``gate`` fires may sweep (issue 20): the push for the item behind comes
        on that item's clear edge at ``gate``, and no sensor sees where the window ends. By
        the course's rule it ends before the next gate: the item's clear edge there; past
        the last gate (or a next gate no item has reached yet), the belt end
        (:meth:`bt_sorter.linemodel.windows.Windows.run_out`). None until the item's clear
        edge at ``gate`` is known."""
        estimates = self.estimates
        here = estimates.expected(clear(gate))
        if here is None:
            return None
        last = estimates.topology.last_gate
        following = estimates.expected(clear(gate + 1)) if gate < last else None
        if following is None:
            return self.windows.run_out([])
        gap = (following - here) * max(1.0, estimates.pace)
        return gap + SPREAD_K * max(
            estimates.spread(clear(gate)), estimates.spread(clear(gate + 1))
        )

    def limit_per_minute(self) -> float | None:
        """The line's physical limit: the feeder cycle or the safe spacing, the slower."""
        spacing = self.safe_spacing()
        if spacing is None:
            return None
        return 60.0 / max(self.feeder_cycle, spacing)
