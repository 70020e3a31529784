"""Feeding: rod 1 pushes the next item from the stack onto the belt."""

from __future__ import annotations

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context, Leaf, Param, register

Status = py_trees.common.Status

# Issue 15: a feed that put nothing on the belt may be the feeder's miss (rod 1 pulled
# before its stroke was done, or not back far enough to take the next item; a later
# feed's item shows it was: ``feeder_misses``) as well as an empty stack: each empty feed
# lengthens the leaf's hold and back by this factor, up to FEED_STRETCH_MAX times the
# configured ones (``feeder_cycle_lengthened``), so the feeds that judge the stack empty
# are made with a longer stroke. The line model takes the longer cycle (for the limit)
# once a miss shows it was needed, not for the empty feeds at the end of the stack.
FEED_STRETCH = 1.25
FEED_STRETCH_MAX = 2.0


@register
class FeedItem(Leaf):
    """Feed one item: rod 1 out, hold, back. The item gets its id when rod 1 goes out.

    RUNNING while rod 1 is out and until it counts as back; SUCCESS then. Pre-empted
    while out, it retracts rod 1. Its cycle (hold + back) tells the line model the
    feeder's pace. When a feed has come up empty since its last one (the feeder may have
    missed), it lengthens hold and back by :data:`FEED_STRETCH` first, to at most
    :data:`FEED_STRETCH_MAX` times the configured; once the feeder has missed, the line
    model takes the longer cycle.

    reads: now, rods_out, items (their empty feeds), feeder_misses. writes: items (a new
    item), rod 1 commands; line.spacing.feeder_cycle.
    """

    params = (
        Param("hold", float, "seconds rod 1 stays out; default timings.feed_hold", None),
        Param("back", float, "seconds after retracting until rod 1 counts as back", None),
    )
    hold: float | None
    back: float | None

    def __init__(self, name: str, ctx: Context, **values: object) -> None:
        super().__init__(name, ctx, **values)
        timings = self.ctx.config.timings
        self.hold_s = self.hold if self.hold is not None else timings.feed_hold
        self.back_s = self.back if self.back is not None else timings.feed_back
        ctx.bb.line.spacing.note_feeder_cycle(self.hold_s + self.back_s)
        self.configured = self.hold_s, self.back_s
        self.empty = 0  # the empty feeds this leaf has answered
        self.misses = 0  # the feeder misses whose cycle the line model has been told

    def initialise(self) -> None:
        if self.bb.items.empty_feeds > self.empty:
            self.empty = self.bb.items.empty_feeds
            self._lengthen()
        if self.bb.feeder_misses > self.misses:  # the longer cycle is the feeder's from now
            self.misses = self.bb.feeder_misses
            self.bb.line.spacing.note_feeder_cycle(self.hold_s + self.back_s)
        self.bb.command(protocol.push(1))
        self.item = self.bb.items.feed(self.bb.now)
        self.item.stretched = self.hold_s > self.configured[0]
        self.pulled_at: float | None = None
        # Issue 15: the least feed interval the spacing rule allowed at this feed (the
        # feeder cycle or the safe spacing; none while learning), for bench/line.py.
        rule = self.bb.line.spacing
        spacing = rule.safe_spacing()
        least = None if spacing is None else round(max(spacing, rule.feeder_cycle), 4)
        self.ctx.record.write("item_fed", self.bb.now, item=self.item.id, least_interval=least)

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

    def _lengthen(self) -> None:
        """Answer an empty feed: a longer hold and back, within the bound."""
        hold, back = (min(now * FEED_STRETCH, configured * FEED_STRETCH_MAX)
                      for now, configured in zip((self.hold_s, self.back_s), self.configured,
                                                 strict=True))  # fmt: skip
        at_limit = (hold, back) == (self.hold_s, self.back_s)
        self.hold_s, self.back_s = hold, back
        self.ctx.record.write("feeder_cycle_lengthened", self.bb.now, hold=round(hold, 4),
                              back=round(back, 4), empty_feeds=self.empty,
                              feeder_misses=self.bb.feeder_misses, at_limit=at_limit)  # fmt: skip


@register
class FeedIsSafe(Leaf):
    """SUCCESS when a new item may be fed without a double sweep, else RUNNING.

    Safe means: rod 1 is back; at most ``max_in_flight`` items are on the belt; no
    expected event is late or missing (the belt may be stalling: feeding onto it would
    jam the feeder); and
    the belt has run the line model's safe spacing since the newest feed (every rod
    pushed for the item ahead is back before this one reaches its gate; see
    docs/line-model.md). RUNNING while the line model cannot give a spacing: a tree
    feeds one item at a time until ``LineMeasured`` says so.

    reads: rods_out, items, missed_since_evidence, late_items, line. writes: nothing.
    """

    params = (Param("max_in_flight", int, "most items on the belt at once", 12),)
    max_in_flight: int

    def update(self) -> Status:
        if self.bb.rods_out[1] or len(self.bb.items) >= self.max_in_flight:
            return Status.RUNNING
        if self.bb.missed_since_evidence or self.bb.late_items:  # the belt may have stalled
            return Status.RUNNING
        newest = self.bb.items.newest()
        if newest is None:
            return Status.SUCCESS
        spacing = self.bb.line.spacing.safe_spacing()
        if spacing is None:
            self.feedback_message = "line not measured: no spacing yet"
            return Status.RUNNING
        since = self.bb.line.odometer.between(newest.fed_at, self.bb.now)
        return Status.SUCCESS if since >= spacing else Status.RUNNING
