"""Tracking: where each item in flight is, from gate edges, pictures and the belt's travel.

Items cannot overtake each other, and the belt moves at a known speed while it runs,
so each item has an estimated position: the odometer since it landed, moved forward by
any edge that shows it further along. Every edge is given to the oldest item that can
have caused it, and only if the estimate agrees within a window (``early``/``late``
metres): an edge that fits no item (a flicker, a duplicate, a stray) is counted and
ignored, and an edge that never came is noticed when the estimate has gone well past
the gate. An item whose push edge went missing is marked ``uncertain`` and is never
pushed.
"""

from __future__ import annotations

import py_trees

from bt_sorter.behaviours.base import Context, Leaf, Param, register
from bt_sorter.blackboard import Edge, Item, Outcome

Status = py_trees.common.Status


def tail_position(ctx: Context, item: Item, t: float) -> float:
    """Estimated position (m from the feeder) of ``item``'s upstream end at line time ``t``.

    From when it landed (rod 1's stroke after the feed command), moved forward by any
    edge that showed it further along.
    """
    odometer = ctx.bb.odometer
    if item.anchor is not None:
        since, position = item.anchor
        return position + odometer.travel(t) - odometer.travel(since)
    landed = item.fed_at + ctx.config.line.feeder_stroke_time
    return odometer.travel(t) - odometer.travel(landed) if t > landed else 0.0


@register
class TrackItems(Leaf):
    """Match this tick's gate edges and pictures to the items in flight. Always RUNNING.

    Resolves an item nobody pushed as rejected (bin 1) once it has fallen off the belt
    end, forgets a feed that showed nothing by the time it should have reached gate 1,
    and marks items whose edges went missing.
    """

    params = (
        Param("early", float, "metres an edge may come before the estimate says", 0.02),
        Param("late", float, "metres an edge may come after the estimate says (messages "
              "are only ever late)", 0.06),
        Param("feed_slack", float, "extra metres either way before an item's first edge "
              "(its feed time is known to a tick or two)", 0.04),
    )  # fmt: skip
    early: float
    late: float
    feed_slack: float

    def _window(self, item: Item) -> tuple[float, float]:
        """How far (m) an edge may be early and late for this item."""
        slack = 0.0 if item.anchor is not None else self.feed_slack
        return self.early + slack, self.late + slack

    def _fits(self, item: Item, edge: Edge) -> bool:
        early, late = self._window(item)
        return -early <= self._offset(item, edge) <= late

    def update(self) -> Status:
        for edge in self.bb.edges:
            if not self._match_edge(edge):
                self.bb.unmatched_edges += 1
                self.ctx.record.write(
                    "edge_unmatched",
                    edge.t,
                    gate=edge.gate,
                    blocked=edge.blocked,
                    offsets=[round(self._offset(i, edge), 3) for i in self.bb.items],
                )
        while self.bb.pictures:
            self._match_picture(*self.bb.pictures.popleft())
        for item in self.bb.items:
            self._check_missed(item)
        return Status.RUNNING

    def _offset(self, item: Item, edge: Edge) -> float:
        """How far (m) the item's estimated end is past the gate at the edge's time.

        Positive: the estimate is ahead, the edge came late.
        """
        line = self.ctx.config.line
        end = tail_position(self.ctx, item, edge.t) + (line.item_length if edge.blocked else 0)
        return end - line.gate_positions[edge.gate - 1]

    def _match_edge(self, edge: Edge) -> bool:
        for item in self.bb.items:
            fits = self._fits(item, edge)
            if edge.blocked and item.entered < edge.gate and fits:
                item.entered, item.cleared = edge.gate, edge.gate - 1
            elif not edge.blocked and item.cleared < edge.gate and fits:
                item.entered = item.cleared = edge.gate
                item.cleared_at[edge.gate] = edge.t
                self.bb.blocked_gates.pop(edge.gate, None)
            else:
                continue
            self._seen(item, edge.t)
            item.evidence.add(edge.gate)
            item.missed = 0
            self.ctx.record.write(
                "gate_edge",
                edge.t,
                item=item.id,
                gate=edge.gate,
                blocked=edge.blocked,
                offset=round(self._offset(item, edge), 4),
            )
            # A message is only ever late, so the edge says the item is at least this far:
            # move the estimate forward to it, never back.
            line = self.ctx.config.line
            at_least = line.gate_positions[edge.gate - 1] - (line.item_length * edge.blocked)
            item.anchor = (edge.t, max(at_least, tail_position(self.ctx, item, edge.t)))
            return True
        return False

    def _match_picture(self, t: float, data: bytes) -> None:
        line = self.ctx.config.line
        centre_at = line.camera_position - line.item_length / 2
        taken = t - line.camera_delay
        for item in self.bb.items:
            position = tail_position(self.ctx, item, taken)
            early, late = self._window(item)
            half = line.item_length / 2
            if item.picture is None and -early - half <= position - centre_at <= late + half:
                item.picture, item.picture_at = data, t
                self._seen(item, t)
                self.ctx.record.write("picture_received", t, item=item.id, bytes=len(data))
                return
        self.ctx.record.write("picture_unmatched", t, bytes=len(data))

    def _seen(self, item: Item, t: float) -> None:
        item.seen, self.bb.last_evidence_at, self.bb.empty_feeds_in_a_row = True, t, 0
        self.bb.missed_since_evidence = 0

    def _offline_blind(self, item: Item, late: float) -> bool:
        """Whether ``item``'s overdue evidence may have been lost while the broker was away.

        True for an item fed before the broker came back, for as long as an edge it made
        while we were offline could still be overdue now.
        """
        back = self.bb.resynced_at
        if back is None or item.fed_at >= back:
            return False
        return self.bb.now - back <= late / self.ctx.config.line.belt_speed or not item.seen

    def _check_missed(self, item: Item) -> None:
        """Notice edges that never came: the estimate is well past a gate not yet cleared."""
        line = self.ctx.config.line
        late = self._window(item)[1] + line.item_length
        tail = tail_position(self.ctx, item, self.bb.now)
        offline = self._offline_blind(item, late)
        if not item.seen:
            if tail <= line.gate_positions[0] + late:
                return
            if offline:  # its messages may have been lost with the broker
                reason = "never seen: fed before the broker was lost"
                resolve_item(self.ctx, item, self.bb.now, Outcome.LOST, reason)
            elif not self.bb.missed_since_evidence:  # else the belt may have stalled under it
                self.bb.items.discard(item)
                self.bb.empty_feeds_in_a_row += 1
                self.ctx.record.write("feed_empty", self.bb.now, item=item.id)
            return
        for gate in range(item.cleared + 1, 4):
            if tail <= line.gate_positions[gate - 1] + late:
                break
            if item.entered < gate and self.bb.gates[gate]:
                # Neither edge came while the gate read blocked all along: something sits
                # in the gate and this item never got there. One lost edge cannot do that.
                self.bb.blocked_gates[gate] = item.id
            item.missed += 1 if item.entered == gate else 2
            last = max(item.evidence, default=0)
            inside = last if last and last not in item.cleared_at else 0  # seen going in only
            if item.missed >= 3 and inside and self.bb.gates[inside]:
                # Its last edge took it into a gate that still reads blocked, and three edges
                # after that never came: it is stuck in that gate.
                self.bb.blocked_gates[inside] = item.id
            item.entered = item.cleared = gate
            if not offline:  # an edge lost with the broker is no sign of a stalled belt
                self.bb.missed_since_evidence += 1
            if gate == item.push_gate and item.rod is not None and item.pushed_at is None:
                item.uncertain = True
                item.reject_reason = f"clear edge of gate {gate} missing: not pushed"
            self.ctx.record.write("edge_missing", self.bb.now, item=item.id, gate=gate)
        if tail > line.belt_length + late:
            if 3 in item.evidence:
                resolve_item(self.ctx, item, self.bb.now, Outcome.REJECTED, "rode to the belt end")
            else:
                last = max(item.evidence, default=0)
                reason = f"not seen after gate {last}; estimated past the belt end"
                resolve_item(self.ctx, item, self.bb.now, Outcome.LOST, reason)


def resolve_item(
    ctx: Context, item: Item, t: float, outcome: Outcome, reason: str, bin_: int | None = None
) -> None:
    """End an item's story: out of the FIFO, into the record. Rejected items go to bin 1."""
    if outcome is Outcome.REJECTED:
        reason, bin_ = item.reject_reason or reason, 1
    ctx.bb.items.resolve(item, outcome, reason, t)
    ctx.record.write(
        "item_resolved",
        t,
        item=item.id,
        outcome=str(outcome),
        bin=bin_,
        reason=reason,
        label=item.label,
        confidence=item.prediction.confidence if item.prediction else None,
    )
