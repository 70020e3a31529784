"""The matcher: which item in flight a gate edge or a picture belongs to.

Items cannot overtake each other, so every gate, and the camera, sees them in feed
order. With one item on the belt the order of events is all there is to know: its
picture, then gate 1 blocked and clear, gate 2, ... the last gate. With several, a gate's next
edge belongs to the oldest item that has not made it yet and has reached the gate
upstream, and the line model's windows (once measured, and only while several items are
on the belt) decide only what order cannot:

- a blocked edge while the gate holds an item: a duplicate or a flicker if it comes
  sooner than that item's passage, else the next item's (the clear edge was lost);
- a clear edge sooner than the item's passage: taken (the rod's window lies downstream,
  so the push still meets the item) but not learned from;
- an edge earlier than its candidate's window: a stray, ignored;
- an edge later than its candidate's window for leaving the gate: the candidate
  passed unseen (both edges lost), and the edge belongs to the item behind it.

A feed not seen yet (no picture, no edge) may have put nothing on the belt (issue 15):
it leaves a picture or a gate 1 edge to the next feed when that one fits it better, so
an empty feed does not shift every later item's events one item back.

Evidence is never thrown away because it disagrees with a prior: before a quantity is
measured there is no window, only order. A matched event sets the item's times and
``anchor`` and is recorded (``gate_edge``, ``picture_received``); an unmatched one is
counted in ``unmatched_edges`` and recorded, and the item it came nearest is no longer
``clean`` (its times do not teach the line model).

Reads: ``items``, ``line``, ``gates``. Writes: the items' positions and times,
``blocked_gates`` (a gate an item cleared is free), ``last_evidence_at``,
``missed_since_evidence``, ``empty_feeds_in_a_row``, ``feeder_misses``,
``unmatched_edges``, ``missed_pushes``.

A pushed item is resolved as sorted at once, and watched a while (``items.pushed``): a
blocked edge at the gate downstream of its rod that only it can have made, in its window,
is held for it (``edge_held``), and its clear edge there a whole passage later shows the
push missed (issue 20; a gate that clears early is the item swept off mid-gate,
``pushed_item_swept``: on a line whose gates are closer than an item's length the head
reaches the next gate before the rod has swept). It is back in flight, its later edges
its own, and it rides on to bin 1 with the reason (``push_missed`` in the record,
``missed_pushes`` in the summary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bt_sorter.blackboard import Edge, Item
from bt_sorter.item_story import note_feeder_missed, note_missing, note_push_missed, since_feed
from bt_sorter.linemodel import quantities
from bt_sorter.linemodel.bounds import SHORTEST_PASSAGE_S
from bt_sorter.linemodel.windows import REL_TOL, SPREAD_K

if TYPE_CHECKING:
    from bt_sorter.behaviours.base import Context


class Matcher:
    """Gives this tick's edges and pictures to the items in flight."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.bb = ctx.bb
        line = ctx.bb.line
        self.odometer, self.estimates = line.odometer, line.estimates
        self.windows, self.latency = line.windows, line.latency
        self._held: dict[int, tuple[Item, Edge]] = {}  # pushed item -> its blocked edge after

    # -- edges -----------------------------------------------------------------------

    def edge(self, edge: Edge) -> Item | None:
        """The item ``edge`` belongs to (its position and times updated), or None."""
        if (pushed := self._pushed_here(edge)) is not None:
            # Only its whole passage here proves the push missed: an item whose head reaches
            # the next gate while its tail may still be in the window can yet be swept (the
            # gate then clears early). Its blocked edge waits for its clear edge.
            self._held[pushed.id] = (pushed, edge)
            self.ctx.record.write("edge_held", edge.t, item=pushed.id, gate=edge.gate)
            return pushed
        if not edge.blocked and (held := self._held_at(edge)) is not None:
            item, blocked = held
            if self.odometer.between(blocked.t, edge.t) < self._shortest_passage(edge.gate):
                self.ctx.record.write("pushed_item_swept", edge.t, item=item.id, gate=edge.gate)
                return item  # it left the gate early: swept off the belt, as pushed
            note_push_missed(self.ctx, item, edge.t, f"passed gate {edge.gate}")
            self._blocked(blocked, None)  # its own: every other item was checked away
        occupant = next((i for i in self.bb.items if i.entered == edge.gate > i.cleared), None)
        item = self._blocked(edge, occupant) if edge.blocked else self._clear(edge, occupant)
        if item is None:
            self.bb.unmatched_edges += 1
            for near in (occupant, self._last_to_leave(edge.gate)):
                if near is not None:
                    near.clean = False  # a stray edge near it: its times may be off
            self.ctx.record.write("edge_unmatched", edge.t, gate=edge.gate,
                                  blocked=edge.blocked)  # fmt: skip
        return item

    # -- pushed items seen again (issue 20) -------------------------------------------

    def _pushed_here(self, edge: Edge) -> Item | None:
        """A pushed item this edge shows still on the belt, or None.

        An item pushed as it cleared gate k is off the belt before gate k+1. A blocked
        edge at k+1 is its own (the push missed) when only it can be there: every item fed
        before it has left k+1, none behind it has reached k+1, the edge falls in its
        measured window (from its clear edge at k; not merely before its deadline), and
        the item behind, when it has reached gate k, is not nearer. A clear edge alone
        (its blocked edge lost, a duplicate, a flicker) proves nothing; unmeasured, there
        is no window: nothing is proved.
        """
        if not edge.blocked or not self.bb.items.pushed:
            return None
        self._forget_pushed(edge.t)
        name = quantities.blocked(edge.gate)
        for item in self.bb.items.pushed:
            if item.push_gate + 1 != edge.gate or self.windows.predict(name, item.anchor) is None:
                continue
            low, high = self.windows.window(name, item.anchor)
            if not low <= since_feed(self.ctx, item, edge.t) <= high:
                continue
            flight = list(self.bb.items)
            if any(i.id < item.id and i.cleared < edge.gate for i in flight):
                continue  # an item ahead has not left the gate: the edge may be its
            if any(i.id > item.id and i.entered >= edge.gate for i in flight):
                continue  # an item behind is already there: this one cannot come after it
            behind = next((i for i in flight if i.id > item.id), None)
            reached = behind is not None and behind.entered >= item.push_gate
            if reached and self._nearer(name, edge.t, behind, item):
                continue
            return item
        return None

    def _held_at(self, edge: Edge) -> tuple[Item, Edge] | None:
        """The pushed item whose blocked edge at ``edge``'s gate is held, taken off hold."""
        for key, (item, blocked) in list(self._held.items()):
            if blocked.gate == edge.gate:
                del self._held[key]
                return item, blocked
        return None

    def _forget_pushed(self, t: float) -> None:
        """Stop watching pushed items whose window at the gate downstream has passed by
        ``t`` (here, not every tick: the watch is bounded, and edges are few)."""
        pushed = self.bb.items.pushed
        for item in list(pushed):
            leave = quantities.clear(item.push_gate + 1)
            if since_feed(self.ctx, item, t) > self.windows.deadline(leave, item.anchor):
                pushed.remove(item)

    # -- matching ----------------------------------------------------------------------

    def _blocked(self, edge: Edge, occupant: Item | None) -> Item | None:
        gate = edge.gate
        if occupant is not None:
            inside = self.odometer.between(occupant.blocked_at.get(gate, edge.t), edge.t)
            # Issue 15: an occupant only presumed in the gate (the watchdogs noted its
            # blocked edge missing: it came bunched with the item ahead) has no edge this
            # one could duplicate; the edge is the next item's.
            seen_in = gate in occupant.blocked_at
            if seen_in and inside < self._shortest_passage(gate):
                return None  # a duplicate, or a flicker re-blocking: the item is still there
            follower = self._candidate(edge, after=occupant)
            if follower is None or not self._fits(follower, edge):
                return None
            self._left_unseen(occupant, gate, blocked_seen=True)
            return self._enter(follower, edge)
        item = self._candidate(edge)
        if item is None or not self._fits(item, edge):
            return None
        return self._enter(item, edge)

    def _clear(self, edge: Edge, occupant: Item | None) -> Item | None:
        gate = edge.gate
        if occupant is not None:
            # Its own clear edge, taken even when it comes too soon (a flicker in the middle
            # of the item, or a late blocked edge bunched with it): the rod's window lies
            # downstream of the gate, so a push now still meets the item. Too soon to learn.
            inside = self.odometer.between(occupant.blocked_at.get(gate, edge.t), edge.t)
            if inside < self._shortest_passage(gate):
                occupant.clean = False
            return self._leave(occupant, edge)
        item = self._candidate(edge)
        if item is None or not self._fits(item, edge, strict=True):
            return None  # a duplicate clear edge, a flicker's last one, or a stray
        note_missing(self.ctx, item, gate, blocked=True)
        return self._leave(item, edge)

    def _last_to_leave(self, gate: int) -> Item | None:
        """The item in flight that most recently cleared ``gate``."""
        left = [i for i in self.bb.items if gate in i.cleared_at]
        return max(left, key=lambda i: i.cleared_at[gate], default=None)

    def _shortest_passage(self, gate: int) -> float:
        """Belt s an item surely spends in a gate: below it, a change is a glitch."""
        passage = self.estimates.passage_time(gate)
        if passage is None:  # unmeasured: half the shortest passage in the target range
            return SHORTEST_PASSAGE_S / 2
        return passage * (1 - REL_TOL) - self.latency.margin

    def _candidate(self, edge: Edge, after: Item | None = None) -> Item | None:
        """The oldest item that has not made this edge yet and can have reached the gate.

        An item passes gate k-1 before gate k; one that is overdue even for leaving
        gate k (both of its edges there lost) is marked as passed, and the next one is
        the candidate.
        """
        gate = edge.gate
        skipping = after is not None
        for item in self.bb.items:
            if skipping:
                skipping = item is not after
                continue
            done = item.entered >= gate if edge.blocked else item.cleared >= gate
            if done:
                continue
            if not item.seen and self._later_feed_fits(item, edge):
                continue  # issue 15: an empty feed, it seems: the edge is a later item's
            if item.entered < gate - 1:  # not even seen going into the gate upstream
                if not self._alone_and_due(item, edge):
                    return None
                for upstream in range(item.cleared + 1, gate):  # their messages were lost
                    self._left_unseen(item, upstream, blocked_seen=item.entered == upstream)
            leave = quantities.clear(gate)
            if since_feed(self.ctx, item, edge.t) > self.windows.deadline(leave, item.anchor):
                if self.windows.predict(leave, item.anchor) is None:
                    return None  # unmeasured: order only, and the order says this one
                self._left_unseen(item, gate, blocked_seen=item.entered == gate)
                continue
            if self._behind_fits_better(item, edge):
                self._left_unseen(item, gate, blocked_seen=item.entered == gate)
                continue
            return item
        return None

    def _later_feed_fits(self, item: Item, edge: Edge) -> bool:
        """Issue 15: whether ``item``, never seen (no picture, no edge: perhaps a feed that
        put nothing on the belt), leaves this edge to the next item fed after it that has
        not made it: that one is seen (its picture) and the edge fits it better
        (:meth:`_nearer`). ``item`` is left as it is: the watchdogs call it an
        empty feed at its deadline, or its own events show it. Order alone would give
        the next item's events to the empty feed, and every later item's one back."""
        name = quantities.blocked(edge.gate) if edge.blocked else quantities.clear(edge.gate)
        items = list(self.bb.items)
        behind = items[items.index(item) + 1 :]
        later = next((i for i in behind if (i.entered if edge.blocked else i.cleared) < edge.gate),
                     None)  # fmt: skip
        if later is None or not later.seen:
            return False
        if edge.gate > 1 and item.entered < edge.gate - 1:
            return True  # not even seen going into the gate upstream, unlike the later one
        return self._nearer(name, edge.t, later, item)

    def _nearer(self, name: str, t: float, later: Item, item: Item) -> bool:
        """Whether an event ``name`` at ``t`` fits ``later`` and is nearer its prediction
        than ``item``'s (both from their own feed and latest gate edge).

        Events are stamped when they arrive, so a late one is common (a large picture on
        a busy machine: a second of line time at --speed 9) and an early one is not: for
        ``later`` the event may come no earlier than the prediction less the measured
        jitter (four spreads) and the latency margin, and no later than its window.
        """
        windows = self.windows
        theirs, mine = windows.predict(name, later.anchor), windows.predict(name, item.anchor)
        if theirs is None or mine is None:
            return False  # unmeasured: order decides
        high = windows.window(name, later.anchor)[1]
        low = theirs - SPREAD_K * self.estimates.spread(name) - self.latency.margin
        at_later, at_item = since_feed(self.ctx, later, t), since_feed(self.ctx, item, t)
        return low <= at_later <= high and abs(at_later - theirs) < abs(at_item - mine)

    def _behind_fits_better(self, item: Item, edge: Edge) -> bool:
        """Issue 15: whether ``item``, unseen at the gate upstream (it came bunched with
        the item ahead, or its messages were lost), gives this edge to the item behind
        it: that one was seen at the gate upstream, and the edge is nearer its
        prediction. Order alone would hand every later edge one item back, and the shift
        would run on through the items after it."""
        gate = edge.gate
        if gate == 1 or gate - 1 in item.evidence:
            return False
        items = list(self.bb.items)
        behind = items[items.index(item) + 1 :]
        if not behind or gate - 1 not in behind[0].evidence:
            return False
        name = quantities.blocked(gate) if edge.blocked else quantities.clear(gate)
        mine = self.windows.predict(name, item.anchor)
        theirs = self.windows.predict(name, behind[0].anchor)
        if mine is None or theirs is None:
            return False
        miss_mine = abs(since_feed(self.ctx, item, edge.t) - mine)
        return abs(since_feed(self.ctx, behind[0], edge.t) - theirs) < miss_mine

    def _alone(self, item: Item) -> bool:
        """Whether ``item`` is the only one in flight still before the last gate's end:
        then the order of events is all there is, and no window is applied."""
        last = self.bb.topology.last_gate
        return all(i is item or i.cleared >= last for i in self.bb.items)

    def _alone_and_due(self, item: Item, edge: Edge) -> bool:
        """Whether ``item``, unseen at the gates upstream of this edge's, makes it anyway:
        it is alone on the belt (no other item can) and the edge falls within its
        measured window for it (a stray does not). Without this, an item whose upstream
        messages were all lost would leave every later edge unmatched, and the quiet
        belt would read as a stalled one."""
        name = quantities.blocked(edge.gate) if edge.blocked else quantities.clear(edge.gate)
        if not self._alone(item) or self.windows.predict(name, item.anchor) is None:
            return False
        at = since_feed(self.ctx, item, edge.t)
        earliest = self.windows.window(name, item.anchor)[0]
        return earliest <= at <= self.windows.deadline(name, item.anchor)

    def _fits(self, item: Item, edge: Edge, strict: bool = False) -> bool:
        """False when the edge comes before the item's window for it (a stray), unless the
        item is alone on the belt (then order alone decides). ``strict``: a clear edge
        whose blocked edge nobody saw is judged by the window even then."""
        if self._alone(item) and not strict:
            return True
        name = quantities.blocked(edge.gate) if edge.blocked else quantities.clear(edge.gate)
        earliest = self.windows.window(name, item.anchor)[0]
        return since_feed(self.ctx, item, edge.t) >= earliest

    def _enter(self, item: Item, edge: Edge) -> Item:
        if item.entered < edge.gate - 1 or item.cleared < edge.gate - 1:
            note_missing(self.ctx, item, edge.gate - 1, blocked=item.entered < edge.gate - 1)
        item.entered, item.cleared = edge.gate, edge.gate - 1
        item.blocked_at[edge.gate] = edge.t
        self._matched(item, edge, quantities.blocked(edge.gate))
        return item

    def _leave(self, item: Item, edge: Edge) -> Item:
        item.entered = item.cleared = edge.gate
        item.cleared_at[edge.gate] = edge.t
        self.bb.blocked_gates.pop(edge.gate, None)
        self._matched(item, edge, quantities.clear(edge.gate))
        return item

    def _matched(self, item: Item, edge: Edge, name: str) -> None:
        at = since_feed(self.ctx, item, edge.t)
        item.anchor = (name, at)
        item.evidence.add(edge.gate)
        item.missed = 0
        self.seen(item, edge.t)
        self.ctx.record.write("gate_edge", edge.t, item=item.id, gate=edge.gate,
                              blocked=edge.blocked, since_feed=round(at, 4))  # fmt: skip

    def _left_unseen(self, item: Item, gate: int, blocked_seen: bool) -> None:
        """``item`` has left ``gate`` without its edge(s) there: note them missing."""
        if not blocked_seen:
            note_missing(self.ctx, item, gate, blocked=True)
        note_missing(self.ctx, item, gate, blocked=False)
        item.entered = item.cleared = gate

    # -- pictures ----------------------------------------------------------------------

    def picture(self, t: float, data: bytes) -> Item | None:
        """The item a picture belongs to: the oldest without one that has not left gate 1
        and whose window it fits; an item it is too late for lost its own picture. An
        item not seen yet leaves it to the next one waiting when the picture fits that
        one better (issue 15: the earlier feed may have been empty)."""
        waiting = [i for i in self.bb.items if i.picture is None and i.cleared < 1]
        for index, item in enumerate(waiting):
            at = since_feed(self.ctx, item, t)
            earliest = self.windows.window(quantities.PICTURE)[0]
            latest = self.windows.deadline(quantities.PICTURE)
            if at < earliest and not self._alone(item):
                break  # too early even for the oldest: a duplicate or a stray
            if at > latest and item.entered == 0:
                continue  # this one's picture went missing; the item behind may fit
            if self._picture_is_later(item, waiting[index + 1 :], t, overdue=at > latest):
                continue
            item.picture, item.picture_at = data, t
            if item.anchor is None:
                item.anchor = (quantities.PICTURE, at)
            self.seen(item, t)
            self.ctx.record.write("picture_received", t, item=item.id, bytes=len(data),
                                  since_feed=round(at, 4))  # fmt: skip
            return item
        self.ctx.record.write("picture_unmatched", t, bytes=len(data))
        return None

    def _picture_is_later(
        self, item: Item, waiting: list[Item], t: float, overdue: bool = False
    ) -> bool:
        """Issue 15: whether ``item``, not seen yet, leaves the picture at ``t`` to the
        next item waiting for one (not at gate 1 yet), which it fits better.

        Issue 20 (seed 1225): so does an item seen at gate 1 whose own picture went
        missing (a corrupt one), when the picture is past its deadline (``overdue``):
        taken, it was the next item's, that item took the one after it, and every later
        item carried its follower's label into a wrong bin."""
        later = waiting[0] if waiting else None
        if later is None or (item.seen and not overdue) or later.entered > 0:
            return False
        if not self._nearer(quantities.PICTURE, t, later, item):
            return False
        self.ctx.record.write("picture_passed_on", t, item=item.id, to=later.id)
        return True

    def seen(self, item: Item, t: float) -> None:
        """Evidence that ``item`` is on the belt: the line is moving, and the empty feeds
        before it were the feeder's misses, not an empty stack (issue 15)."""
        empty = self.bb.empty_feeds_in_a_row
        if not item.seen and empty and item.id > self.bb.last_empty_feed:
            note_feeder_missed(self.ctx, empty, item)
        item.seen, self.bb.last_evidence_at, self.bb.empty_feeds_in_a_row = True, t, 0
        self.bb.stretched_empty_in_a_row = 0
        self.bb.missed_since_evidence = 0
