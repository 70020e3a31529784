"""The classifying rods: push an item's rod on the right edge, retract, or let it ride."""

from __future__ import annotations

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context, Leaf, Param, register
from bt_sorter.blackboard import Item, Outcome
from bt_sorter.item_story import identity_doubt, resolve_item
from bt_sorter.linemodel import quantities
from bt_sorter.linemodel.windows import SPREAD_K
from bt_sorter.watchdogs import blockage_doubt

Status = py_trees.common.Status


def check_rod(ctx: Context, rod: int) -> None:
    """A tree's ``rod:`` must be 0 (the item's own) or a classifying rod of the line."""
    rods = ctx.bb.topology.classifying_rods
    if rod != 0 and rod not in rods:
        raise ValueError(f"rod {rod} is not a classifying rod of this line (rods "
                         f"{', '.join(map(str, rods))}: {ctx.bb.topology.describe()})")  # fmt: skip


@register
class ItemHasRod(Leaf):
    """SUCCESS if the current item (the newest fed) is decided and has a rod, else FAILURE.

    reads: items. writes: nothing.
    """

    def update(self) -> Status:
        item = self.bb.items.newest()
        ok = item is not None and item.decided and item.rod is not None and not item.uncertain
        return Status.SUCCESS if ok else Status.FAILURE


@register
class PushRod(Leaf):
    """Extend an item's rod on the clear edge of the gate that fires it (config ``topology:``).

    ``rod: 0`` serves the current item (the newest fed) and its own rod; ``rod: k`` (a
    classifying rod of the line) serves the oldest item routed to that rod. RUNNING
    until the edge; SUCCESS when the push is requested (the item is recorded as
    sorted); FAILURE when the item cannot be pushed safely (its edge went missing, or
    the item cleared its gate more than ``max_delay`` ago: the edge's own lateness
    counts, judged by the item's passage; or the line's shape is in doubt,
    :mod:`bt_sorter.shape`; or another item may be held in the window behind a blocked
    gate downstream, :func:`bt_sorter.watchdogs.blockage_doubt`).

    reads: items, line, now, shape_doubt, gates. writes: the item's push and outcome; the
    rod command.
    """

    params = (
        Param("rod", int, "classifying rod to extend; 0 = the newest item's own rod", 0),
        Param("max_delay", float, "latest push after the item cleared its gate, line "
              "seconds; default: the line model's (3/4 of the item's passage there)", None),
    )  # fmt: skip
    rod: int
    max_delay: float | None

    def __init__(self, name: str, ctx: Context, **values: object) -> None:
        super().__init__(name, ctx, **values)
        check_rod(ctx, self.rod)

    def initialise(self) -> None:
        self.item: Item | None = None

    def _select(self) -> Item | None:
        if self.rod == 0:
            return self.bb.items.newest()
        eligible = (
            i for i in self.bb.items
            if i.decided and i.rod == self.rod and i.pushed_at is None and not i.uncertain
        )  # fmt: skip
        return next(eligible, None)

    def update(self) -> Status:
        self.item = self.item or self._select()
        item = self.item
        if item is None:
            return Status.RUNNING
        if item.outcome is not None or item.uncertain or item.rod is None:
            return Status.FAILURE
        if item.cleared < item.push_gate:
            return Status.RUNNING
        edge_at = item.cleared_at.get(item.push_gate)
        if edge_at is None or self._lateness(item, edge_at) > self._max_delay(item):
            item.uncertain = True
            item.reject_reason = f"rod {item.rod} could not be pushed on its edge"
            return Status.FAILURE
        if (doubt := identity_doubt(self.ctx, item)) is not None:  # issue 15
            item.uncertain, item.reject_reason = True, f"not pushed: {doubt}"
            return Status.FAILURE
        if self.bb.shape_doubt:  # issue 20: its rod's gate may not be the one config says
            item.uncertain, item.reject_reason = True, self.bb.shape_doubt
            return Status.FAILURE
        if (doubt := blockage_doubt(self.ctx, item)) is not None:  # issue 20
            item.uncertain, item.reject_reason = True, f"not pushed: {doubt}"
            self.ctx.record.write("push_withheld", self.bb.now, rod=item.rod, item=item.id,
                                  reason=doubt)  # fmt: skip
            return Status.FAILURE
        self.bb.command(protocol.push(item.rod))
        item.pushed_at = self.bb.now
        self.ctx.record.write(
            "rod_extended",
            self.bb.now,
            rod=item.rod,
            item=item.id,
            label=item.label,
            confidence=item.prediction.confidence if item.prediction else None,
            after_edge=round(self.bb.now - edge_at, 4),
        )
        resolve_item(
            self.ctx, item, self.bb.now, Outcome.SORTED, f"pushed by rod {item.rod}", item.rod
        )
        return Status.SUCCESS

    def _lateness(self, item: Item, edge_at: float) -> float:
        """How late (line s) the push would be after the item really cleared its gate.

        The time since the edge arrived, plus how much longer than the line model's
        passage (beyond its spread) the item seemed to take to pass the gate: that much
        the clear message itself came late (a busy line), and the item has moved on."""
        gate, model = item.push_gate, self.bb.line
        expected = model.estimates.passage_time(gate)
        late = 0.0
        if expected is not None and gate in item.blocked_at:
            seemed = model.odometer.between(item.blocked_at[gate], edge_at)
            spread = SPREAD_K * model.estimates.spread(quantities.passage(gate))
            late = max(0.0, seemed - expected - spread)
        return self.bb.now - edge_at + late

    def _max_delay(self, item: Item) -> float:
        """The line model's latest push after the clear edge (a share of the passage)."""
        if self.max_delay is not None:
            return self.max_delay
        gate = item.push_gate
        own = None
        if gate in item.blocked_at and gate in item.cleared_at:
            own = self.bb.line.odometer.between(item.blocked_at[gate], item.cleared_at[gate])
        return self.bb.line.spacing.max_push_delay(gate, own)


@register
class RetractRod(Leaf):
    """Retract a classifying rod ``hold`` s after it went out; SUCCESS ``back`` s later.

    ``rod: 0`` retracts every classifying rod that is out. SUCCESS at once if none is.
    Its hold and back times tell the line model how long a rod is out (feed spacing).

    reads: rods_out, rod_pushed_at, now. writes: rod commands; line.spacing.rod_out.
    """

    params = (
        Param("rod", int, "classifying rod to retract; 0 = whichever are out", 0),
        Param("hold", float, "seconds the rod stays out; default timings.push_hold", None),
        Param("back", float, "seconds until it counts as back; default timings.push_back", None),
    )
    rod: int
    hold: float | None
    back: float | None

    def __init__(self, name: str, ctx: Context, **values: object) -> None:
        super().__init__(name, ctx, **values)
        check_rod(ctx, self.rod)
        timings = self.ctx.config.timings
        self.hold_s = timings.push_hold if self.hold is None else self.hold
        self.back_s = timings.push_back if self.back is None else self.back
        ctx.bb.line.spacing.note_rod_out(self.hold_s + self.back_s)

    def initialise(self) -> None:
        rods = self.bb.topology.classifying_rods if self.rod == 0 else (self.rod,)
        self.rods = [r for r in rods if self.bb.rods_out[r]]
        self.pulled_at: float | None = None

    def update(self) -> Status:
        if self.pulled_at is None:
            if not self.rods:
                return Status.SUCCESS
            out_since = max(self.bb.rod_pushed_at.get(r, 0.0) for r in self.rods)
            if self.elapsed_since(out_since) < self.hold_s:
                return Status.RUNNING
            for rod in self.rods:
                self.bb.command(protocol.pull(rod))
                self.ctx.record.write("rod_retracted", self.bb.now, rod=rod)
            self.pulled_at = self.bb.now
        return (
            Status.SUCCESS
            if self.elapsed_since(self.pulled_at) >= self.back_s
            else (Status.RUNNING)
        )

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.pulled_at is None:
            for rod in self.rods:
                self.bb.command(protocol.pull(rod))


@register
class WaitItemLeft(Leaf):
    """RUNNING until the current item (the newest fed) is past the last rod, or gone.

    Past the last gate nothing can happen to it but the fall into bin 1 (the course
    controller feeds the next item then); the watchdogs close its record once it has
    surely fallen off the end.

    reads: items. writes: nothing.
    """

    def initialise(self) -> None:
        self.item = self.bb.items.newest()

    def update(self) -> Status:
        item = self.item
        last = self.bb.topology.last_gate
        if item is None or item.cleared >= last or item not in self.bb.items:  # past/gone
            return Status.SUCCESS
        return Status.RUNNING


@register
class WaitLineClear(Leaf):
    """RUNNING while any item is in flight; SUCCESS once every fed item is resolved.

    reads: items. writes: nothing.
    """

    def update(self) -> Status:
        return Status.RUNNING if len(self.bb.items) else Status.SUCCESS
