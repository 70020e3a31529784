"""Feeding: rod 1 pushes the next item from the stack onto the belt."""

from __future__ import annotations

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Leaf, Param, register
from bt_sorter.behaviours.tracking import tail_position

Status = py_trees.common.Status


@register
class FeedItem(Leaf):
    """Feed one item: rod 1 out, hold, back. The item gets its id when rod 1 goes out.

    RUNNING while rod 1 is out and until it counts as back; SUCCESS then. Pre-empted
    while out, it retracts rod 1.
    """

    params = (
        Param("hold", float, "seconds rod 1 stays out; default timings.feed_hold", None),
        Param("back", float, "seconds after retracting until rod 1 counts as back", None),
    )
    hold: float | None
    back: float | None

    def initialise(self) -> None:
        timings = self.ctx.config.timings
        self.hold_s = self.hold if self.hold is not None else timings.feed_hold
        self.back_s = self.back if self.back is not None else timings.feed_back
        self.bb.command(protocol.push(1))
        self.item = self.bb.items.feed(self.bb.now)
        self.pulled_at: float | None = None
        self.ctx.record.write("item_fed", self.bb.now, item=self.item.id)

    def update(self) -> Status:
        if self.pulled_at is None:
            if self.elapsed_since(self.item.fed_at) < self.hold_s:
                return Status.RUNNING
            self.bb.command(protocol.pull(1))
            self.pulled_at = self.bb.now
        if self.elapsed_since(self.pulled_at) < self.back_s:
            return Status.RUNNING
        return Status.SUCCESS

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.bb.rods_out[1]:
            self.bb.command(protocol.pull(1))


@register
class FeedIsSafe(Leaf):
    """SUCCESS when a new item may be fed without a jam or a double sweep, else RUNNING.

    Safe means: rod 1 is back; the newest item will be far enough ahead when the new
    one lands (Config.min_item_spacing, from belt speed, rod window and rod timing,
    plus ``margin`` metres); at most ``max_in_flight`` items are on the belt; and no
    expected edge is missing since the last evidence (the belt may have stalled).
    """

    params = (
        Param("margin", float, "extra spacing in metres on top of the computed minimum", 0.02),
        Param("max_in_flight", int, "most items on the belt at once", 12),
    )
    margin: float
    max_in_flight: int

    def update(self) -> Status:
        if self.bb.rods_out[1] or len(self.bb.items) >= self.max_in_flight:
            return Status.RUNNING
        if self.bb.missed_since_evidence:  # the belt may have stalled: do not feed onto it
            return Status.RUNNING
        newest = self.bb.items.newest()
        if newest is None:
            return Status.SUCCESS
        config = self.ctx.config
        lands_at = self.bb.now + config.line.feeder_stroke_time
        # The new item lands with its tail at 0, so the heads are the newest item's tail apart.
        gap = tail_position(self.ctx, newest, lands_at)
        needed = max(config.min_item_spacing(), config.line.feed_zone)
        return Status.SUCCESS if gap >= needed + self.margin else Status.RUNNING
