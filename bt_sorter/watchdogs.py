"""The watchdogs: what the line should have shown by now and did not.

Every item in flight owes its next event: its picture or first edge while it has not
been seen, then its gate edges in order, then its fall off the belt end. The line model
gives each a deadline: the late end of its window once measured, else a bound no line
in the target range can trip (so a slower line is not a stuck item and a faster one is
not a stalled belt). When a deadline passes:

- an item never seen (no picture, no edge): an empty feed, which may mean the stack is
  empty, or, when an item fed after it has been seen, that the feeder missed (issue 15:
  ``feeder_misses``; not counted towards an empty stack); lost instead if it was fed
  before the broker went away, and left alone while other edges are missing or late (the
  belt may have stalled under it). An item seen only by its edges (its picture missing)
  is seen: never an empty feed. Nor is one while items ahead of it are late;
- a gate edge: noted missing and the item moved past it (a missing clear edge at its
  push gate: it will not be pushed, bin 1); it counts towards a stalled belt, unless it
  may have been lost with the broker;
- :data:`STUCK_AFTER_MISSED` events in a row overdue while the gate the item is in (or
  is held back from) still reads blocked: the item is stuck there (``blocked_gates``);
  one lost message cannot do that;
- past the last gate and its run-out: it has fallen off the belt end (bin 1), or is lost
  with the reason if it was not seen at the last gate.

An item past its event's window but not yet its deadline is counted in ``late_items``:
the belt may be stalling, so feeding holds.

Reads: ``items``, ``line``, ``gates``, ``now``, ``resynced_at``, ``missed_since_evidence``.
Writes: the items' positions and outcomes, ``blocked_gates``, ``missed_since_evidence``,
``late_items``, ``empty_feeds_in_a_row``, ``feeder_misses``, ``last_empty_feed``, the
FIFO's empty feeds.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from bt_sorter.blackboard import Item, Outcome
from bt_sorter.item_story import note_feeder_missed, note_missing, resolve_item, since_feed
from bt_sorter.linemodel import quantities

if TYPE_CHECKING:
    from bt_sorter.behaviours.base import Context

STUCK_AFTER_MISSED = 2  # an item's clear edge and the event after it, both overdue


def blockage_doubt(ctx: Context, item: Item) -> str | None:
    """Why pushing ``item``'s rod now may sweep another item too, or None.

    The rod's window lies past its gate g, before gate g+1. When gate g+1 still reads
    blocked after an item's clear edge there went missing, that item may be stuck in it,
    and an item that left gate g after it and has not shown at gate g+1 may be held
    behind it, in the window (issue 20, seed 1201: rod 2 pushed for the item behind and
    swept the held one into bin 2). One lost clear message looks the same until the next
    event; then the watchdogs tell (stuck: the alarm). Until then the rod is not pushed.
    """
    bb = ctx.bb
    gate = item.push_gate
    after = gate + 1
    if after > bb.topology.last_gate or not bb.gates.get(after):
        return None
    stuck = next((i for i in bb.items
                  if after in i.blocked_at and after not in i.cleared_at and i.cleared >= after),
                 None)  # fmt: skip
    if stuck is None:
        return None
    held = next((i for i in bb.items
                 if i is not item and i.seen and i.cleared >= gate
                 and max(i.evidence, default=0) <= gate),
                None)  # fmt: skip
    if held is None:
        return None
    return (f"gate {after} stays blocked after item {stuck.id}'s clear edge went missing: "
            f"item {held.id} may be held in rod {item.rod}'s window")  # fmt: skip


class Watchdogs:
    """Checks every item in flight against its deadlines."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.bb = ctx.bb
        line = ctx.bb.line
        self.odometer, self.windows, self.latency = line.odometer, line.windows, line.latency
        self.last_gate = ctx.bb.topology.last_gate  # the line's, from config topology:
        self._bunched_noted: set[tuple[int, int]] = set()  # (item, gate) recorded bunched

    def check(self) -> None:
        self.bb.late_items = 0
        items = list(self.bb.items)
        if self.bb.missed_since_evidence and not any(i.seen for i in items):
            # Issue 15: no item seen on the belt is left to confirm a stall or to clear
            # the suspicion (the last item's edge went missing, then it left): it lapses,
            # else an empty feed after it would never be called empty, and feeding would
            # hold for ever.
            self.ctx.record.write("missing_edges_lapsed", self.bb.now,
                                  missed=self.bb.missed_since_evidence)  # fmt: skip
            self.bb.missed_since_evidence = 0
        for item in items:  # the items seen first: whether they are late bears on the rest
            if item.seen:
                self._overdue(item)
        late_ahead = self.bb.late_items
        for item in items:
            if not item.seen:
                self._unseen(item, late_ahead)

    def _offline(self, item: Item) -> bool:
        """Whether ``item``'s missing evidence may have gone with the broker."""
        back = self.bb.resynced_at
        return back is not None and item.fed_at < back

    def _unseen(self, item: Item, late: int) -> None:
        """``late``: items seen on the belt that are behind their time (it may be stalling)."""
        now = since_feed(self.ctx, item, self.bb.now)
        names = (quantities.PICTURE, quantities.blocked(1))
        if now > min(self.windows.window(name)[1] for name in names):
            self.bb.late_items += 1
        if now <= max(self.windows.deadline(name) for name in names):
            return  # either may still come: a lost or broken picture leaves gate 1's edges
        if self._offline(item):
            reason = "never seen: fed before the broker was lost"
            resolve_item(self.ctx, item, self.bb.now, Outcome.LOST, reason)
        elif not self.bb.missed_since_evidence and not late:  # else the belt may have stalled
            later = [i for i in self.bb.items if i.id > item.id and i.seen]
            self.bb.items.discard(item)
            self.bb.last_empty_feed = item.id
            self.ctx.record.write("feed_empty", self.bb.now, item=item.id)
            if later:  # issue 15: a later feed put an item on the belt: the stack was not empty
                note_feeder_missed(self.ctx, 1, later[0])
            else:
                self.bb.empty_feeds_in_a_row += 1
                self.bb.stretched_empty_in_a_row += item.stretched

    def _overdue(self, item: Item) -> None:
        now = since_feed(self.ctx, item, self.bb.now)
        while item.cleared < self.last_gate:
            gate = item.entered if item.entered > item.cleared else item.cleared + 1
            is_blocked = item.entered == item.cleared
            name = quantities.blocked(gate) if is_blocked else quantities.clear(gate)
            if now <= self.windows.deadline(name, item.anchor):
                if now > self.windows.window(name, item.anchor)[1]:
                    self.bb.late_items += 1  # late, not yet missing: feeding holds
                return
            note_missing(self.ctx, item, gate, blocked=is_blocked)
            item.entered, item.cleared = gate, gate - 1 if is_blocked else gate
            item.missed += 1
            if not self._offline(item):
                self.bb.missed_since_evidence += 1
            latest = item.anchor[0] if item.anchor else quantities.PICTURE
            held_at = quantities.gate_of(latest) if latest.endswith("blocked") else gate
            if item.missed >= STUCK_AFTER_MISSED and self.bb.gates[held_at]:
                if self._bunched(item, held_at, now):
                    continue  # the gate's block may be the next item's: not stuck (yet)
                self.bb.blocked_gates[held_at] = item.id
        self._ran_out(item, now)

    def _bunched(self, item: Item, gate: int, now: float) -> bool:
        """Whether ``gate`` reading blocked is explained by an item behind ``item``
        (issue 15): two items fed close together read as one long block, which ends
        when the last of them clears. So a follower whose window for blocking ``gate``
        has opened, and whose deadline for clearing it has not passed, keeps ``item``
        from being called stuck there (``items_bunched`` in the record). A stuck item
        still raises the alarm: the followers' deadlines pass too, and the last of
        them is then held back from the gate by what is (``now``: belt s since
        ``item``'s feed, for the record).

        Only a follower that is on the belt (seen) and was never seen apart from ``item``
        can be bunched with it: items ride at one speed, so a gap seen between them at a
        gate upstream (``item`` cleared it, then the follower blocked it) is there at
        ``gate`` too, unless ``item`` is held (issue 20, seed 1201: a stuck item was
        excused by the item held behind it, and that one by a feed that put nothing on the
        belt; no alarm, and the run ended "stack empty" with gate 2 blocked)."""
        behind = itertools.dropwhile(lambda i: i is not item, self.bb.items)
        next(behind, None)
        for follower in behind:
            if follower.cleared >= gate or not follower.seen or self._apart(item, follower):
                continue
            at = since_feed(self.ctx, follower, self.bb.now)
            opened = at >= self.windows.window(quantities.blocked(gate))[0]
            if opened and at <= self.windows.deadline(quantities.clear(gate), follower.anchor):
                if len(self._bunched_noted) > 64:  # issue 22: forget the resolved items'
                    ids = {i.id for i in self.bb.items}
                    self._bunched_noted = {k for k in self._bunched_noted if k[0] in ids}
                if (item.id, gate) not in self._bunched_noted:
                    self._bunched_noted.add((item.id, gate))
                    self.ctx.record.write("items_bunched", self.bb.now, gate=gate, item=item.id,
                                          behind=follower.id, since_feed=round(now, 4))  # fmt: skip
                return True
        return False

    def _apart(self, item: Item, follower: Item) -> bool:
        """Whether a gate saw a gap between ``item`` and ``follower``: ``item`` cleared it
        and the follower blocked it later by more than the events' margin (a flicker's
        clear and blocked edges come closer than that)."""
        for gate, cleared_at in item.cleared_at.items():
            blocked_at = follower.blocked_at.get(gate)
            if blocked_at is not None:
                gap = self.odometer.between(cleared_at, blocked_at)
                if gap > self.latency.margin:
                    return True
        return False

    def _ran_out(self, item: Item, now: float) -> None:
        """Past the last gate: resolve it once it has surely fallen off the belt end."""
        last_gate = self.last_gate
        last = quantities.clear(last_gate)
        if last_gate in item.cleared_at:
            left = since_feed(self.ctx, item, item.cleared_at[last_gate])
        else:
            left = self.windows.deadline(last, item.anchor)
        at = sorted(since_feed(self.ctx, item, t) for t in item.blocked_at.values())
        own = [b - a for a, b in itertools.pairwise(at)]
        if now <= left + self.windows.run_out(own):
            return
        if last_gate in item.evidence:
            resolve_item(self.ctx, item, self.bb.now, Outcome.REJECTED, "rode to the belt end")
        else:
            last_seen = max(item.evidence, default=0)
            reason = f"not seen after gate {last_seen}; past the belt end by now"
            resolve_item(self.ctx, item, self.bb.now, Outcome.LOST, reason)
