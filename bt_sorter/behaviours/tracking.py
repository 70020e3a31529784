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
from bt_sorter.matcher import Matcher
from bt_sorter.shape import ShapeWatch
from bt_sorter.watchdogs import Watchdogs

Status = py_trees.common.Status

__all__ = ["LineMeasured", "TrackItems"]


@register
class TrackItems(Leaf):
    """Match this tick's gate edges and pictures to the items in flight, then run the
    watchdogs over them. Always RUNNING. Edges of a gate the line's topology lacks are
    judged by :mod:`bt_sorter.shape`: an item's passage there puts the line's shape in
    doubt (nothing is pushed while it lasts), a stray edge is counted and ignored.

    reads: edges, pictures, items, line, gates, undeclared_edges. writes: the items'
    positions, times and outcomes, unmatched_edges, blocked_gates, missed_pushes, the
    evidence counters (see the matcher and the watchdogs), stray_gate_edges,
    undeclared_passages, shape_doubt.
    """

    def __init__(self, name: str, ctx: Context, **values: object) -> None:
        super().__init__(name, ctx, **values)
        self.matcher = Matcher(ctx)
        self.watchdogs = Watchdogs(ctx)
        self.shape = ShapeWatch(ctx)

    def update(self) -> Status:
        for edge in self.bb.edges:
            self.matcher.edge(edge)
        while self.bb.pictures:
            self.matcher.picture(*self.bb.pictures.popleft())
        self.watchdogs.check()
        self.shape.check()
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
        if line.learning.measured(self.items, through):
            return Status.SUCCESS
        self.feedback_message = f"learning: {line.learning.items_learned} items measured"
        return Status.FAILURE
