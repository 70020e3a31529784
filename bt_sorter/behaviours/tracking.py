"""Tracking leaves: match the line's events to the items, watch for what never came,
and say whether the line has been measured.

The work lives in three modules, one question each: :mod:`bt_sorter.matcher` (which
item an event belongs to), :mod:`bt_sorter.watchdogs` (what is overdue: missing edges,
empty feeds, stuck items, items past the belt end) and :mod:`bt_sorter.linemodel` (the
line's learned timings, which both consult).
"""

from __future__ import annotations

import py_trees

from bt_sorter.behaviours.base import Context, Leaf, Param, register
from bt_sorter.items import doubt_shape
from bt_sorter.matcher import Matcher
from bt_sorter.watchdogs import Watchdogs

Status = py_trees.common.Status

__all__ = ["LineMeasured", "TrackItems"]


@register
class TrackItems(Leaf):
    """Match this tick's gate edges and pictures to the items in flight, then run the
    watchdogs over them. Always RUNNING. An edge of a gate the line's topology lacks
    puts the line's shape in doubt: from then on nothing is pushed (bin 1).

    reads: edges, pictures, items, line, gates, undeclared_gates. writes: the items'
    positions, times and outcomes, unmatched_edges, blocked_gates, the evidence counters
    (see the matcher and the watchdogs), shape_doubt.
    """

    def __init__(self, name: str, ctx: Context, **values: object) -> None:
        super().__init__(name, ctx, **values)
        self.matcher = Matcher(ctx)
        self.watchdogs = Watchdogs(ctx)

    def update(self) -> Status:
        if self.bb.undeclared_gates and not self.bb.shape_doubt:
            doubt_shape(self.ctx)
        for edge in self.bb.edges:
            self.matcher.edge(edge)
        while self.bb.pictures:
            self.matcher.picture(*self.bb.pictures.popleft())
        self.watchdogs.check()
        return Status.RUNNING


@register
class LineMeasured(Leaf):
    """SUCCESS once the line model knows the line well enough to pipeline, else FAILURE.

    Measured: the picture and gate 1's edges from ``items`` unambiguous items (a
    confirmed configured prior counts for some), and every other gate's edges at least
    once, up to the gate of the last rod some label routes to (config ``sorting.routes``):
    only items bound for bin 1 pass the gates after it. reads: line.
    """

    params = (Param("items", int, "unambiguous items the picture and gate 1 need", 3),)
    items: int

    def update(self) -> Status:
        line = self.bb.line
        through = line.topology.reach(self.ctx.config.sorting.routes.values())
        if line.measured(self.items, through):
            return Status.SUCCESS
        self.feedback_message = f"learning: {self.bb.line.items_learned} items measured"
        return Status.FAILURE
