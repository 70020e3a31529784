"""An item's story in line-model terms: its times since its feed, what went wrong on its
way, and how it ends.

Shared by the matcher, the watchdogs and the leaves: :func:`since_feed` puts a line time
on the item's own clock (belt seconds since its feed), :func:`observed_times` lists what
its events showed of the line, the ``note_*`` and ``doubt_*`` functions record what went
wrong (a missing edge, a feeder or push miss, a push in doubt), :func:`identity_doubt`
says when its events may be two items', and :func:`resolve_item` closes its record,
teaching the line model from it when it was unambiguous. (Not to be confused with
:class:`bt_sorter.blackboard.Item`, the item itself, or ``bb.items``, those in flight.)
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from bt_sorter.blackboard import Item, Outcome
from bt_sorter.linemodel import quantities

if TYPE_CHECKING:
    from bt_sorter.behaviours.base import Context


def since_feed(ctx: Context, item: Item, t: float) -> float:
    """Belt-running seconds from ``item``'s feed command to line time ``t``."""
    return ctx.bb.line.odometer.between(item.fed_at, t)


def observed_times(ctx: Context, item: Item) -> dict[str, float]:
    """The line-model quantities ``item``'s matched events measured (belt s)."""
    out: dict[str, float] = {}
    if item.picture_at is not None:
        out[quantities.PICTURE] = since_feed(ctx, item, item.picture_at)
    for gate, at in item.blocked_at.items():
        out[quantities.blocked(gate)] = since_feed(ctx, item, at)
    for gate, at in item.cleared_at.items():
        out[quantities.clear(gate)] = since_feed(ctx, item, at)
        if gate in item.blocked_at:
            out[quantities.passage(gate)] = ctx.bb.line.odometer.between(item.blocked_at[gate], at)
    return out


def note_missing(ctx: Context, item: Item, gate: int, blocked: bool) -> None:
    """One of ``item``'s edges did not come: its times there are unknown (it no longer
    teaches the line model); a missing clear edge at its push gate means its rod cannot
    be pushed on it (bin 1, with the reason)."""
    item.clean = False
    pending = item.rod is not None and item.pushed_at is None
    if not blocked and gate == item.push_gate and pending:
        item.uncertain = True
        item.reject_reason = f"clear edge of gate {gate} missing: not pushed"
    # Issue 15: no edge of its own at an upstream gate (bunched with the item ahead, or both
    # messages lost) while others are on the belt: which item is which downstream rests on
    # order alone, and its edges may be the next item's. Not pushed (bin 1).
    unseen_upstream = not blocked and gate < item.push_gate and gate not in item.blocked_at
    may_push = item.pushed_at is None and (item.rod is not None or not item.decided)
    if unseen_upstream and may_push and len(ctx.bb.items) > 1:
        item.uncertain = True
        item.reject_reason = f"no edge of its own at gate {gate}: not pushed"
    ctx.record.write("edge_missing", ctx.bb.now, item=item.id, gate=gate, blocked=blocked)


def note_feeder_missed(ctx: Context, feeds: int, later: Item) -> None:
    """``feeds`` feeds called empty while a later one (``later``) put an item on the belt: the
    stack was not empty, the feeder missed (issue 15: rod 1 pulled back before its stroke
    was done, or not back far enough to take the next item). Counted in
    ``feeder_misses`` (the feeding leaves lengthen their cycle on every empty feed)."""
    ctx.bb.feeder_misses += feeds
    ctx.record.write("feeder_missed", ctx.bb.now, feeds=feeds, later=later.id,
                     misses=ctx.bb.feeder_misses)  # fmt: skip


def note_push_missed(ctx: Context, item: Item, t: float, seen: str) -> None:
    """Issue 20: ``item``, pushed and resolved as sorted, showed on the belt after its push
    (``seen``: where). The push missed: it is in flight again (its later edges are its
    own, not the item behind's) and rides on to bin 1 with the reason; counted in
    ``missed_pushes``, recorded ``push_missed``."""
    ctx.bb.items.reopen(item)
    item.uncertain, item.clean = True, False
    item.reject_reason = (f"push missed: rod {item.rod} pushed as it cleared gate "
                          f"{item.push_gate}, but it {seen}")  # fmt: skip
    ctx.bb.missed_pushes += 1
    ctx.record.write("push_missed", t, item=item.id, rod=item.rod, seen=seen,
                     pushed_at=item.pushed_at, missed=ctx.bb.missed_pushes)  # fmt: skip


def doubt_push(ctx: Context, item: Item, t: float, gate: int) -> None:
    """Issue 20: ``item``, pushed and resolved as sorted, was the only item that can have
    passed ``gate``, a gate config lacks, after its push. Its push may have missed, or its
    rod (which may stand past that gate: the line is not the declared one) may have taken
    it: where it went is unknown. Lost, with the reason (record ``push_in_doubt``)."""
    pushed_at, rod = item.push_gate, item.rod
    ctx.bb.items.reopen(item)
    ctx.record.write("push_in_doubt", t, item=item.id, rod=rod, gate=gate)
    reason = (f"pushed by rod {rod} as it cleared gate {pushed_at}, then it passed gate "
              f"{gate}, which config lacks: its bin is unknown")  # fmt: skip
    resolve_item(ctx, item, t, Outcome.LOST, reason)


def resolve_item(
    ctx: Context, item: Item, t: float, outcome: Outcome, reason: str, bin_: int | None = None
) -> None:
    """End an item's story: out of the FIFO, into the record. Rejected items go to bin 1.

    An item that reached its end cleanly (sorted or rejected, no stray edge near it)
    teaches the line model its times; a configured prior they contradict is recorded
    as ``geometry_mismatch``.
    """
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
    if outcome is not Outcome.LOST and item.clean:
        times = observed_times(ctx, item)
        if times:
            for mismatch in ctx.bb.line.learning.learn(times):
                ctx.record.write("geometry_mismatch", t, item=item.id, **mismatch)
            if outliers := ctx.bb.line.learning.last_outliers:  # issue 15: not learned
                ctx.record.write("line_sample_rejected", t, item=item.id, outliers=outliers)
            else:
                ctx.record.write("line_learned", t, item=item.id,
                                 **{k: round(v, 4) for k, v in times.items()})  # fmt: skip


def identity_doubt(ctx: Context, item: Item) -> str | None:
    """Why ``item``'s events may be two items' (issue 15), or None when they agree.

    Items cannot overtake, and the belt carries them all at one speed, so an event of
    the item fed ``s`` belt seconds before or after ``item`` comes ``s`` earlier or later
    than ``item``'s own would. The gap between two of its events (picture, gate edges)
    is a property of the line (the model's median gap, stretched by its pace); a gap off
    by half the feed spacing to its nearest neighbour or more means one of the two is the
    neighbour's: a feed that put nothing on the belt, a lost or merged edge, a late
    picture taken by the wrong item. Then its label and its push edge may not belong to
    the same item: it is not pushed (bin 1, with this reason).
    """
    odometer, estimates = ctx.bb.line.odometer, ctx.bb.line.estimates
    feeds = [i.fed_at for i in (*ctx.bb.items.done.recent(8), *ctx.bb.items) if i is not item]
    gaps = [abs(odometer.between(min(f, item.fed_at), max(f, item.fed_at))) for f in feeds]
    if not gaps:
        return None  # alone on the belt: every event is its own
    half_spacing = min(gaps) / 2
    observed = observed_times(ctx, item)
    names = [n for n in estimates.chain if n in observed and estimates.expected(n) is not None]
    for a, b in itertools.pairwise(names):
        expected = (estimates.expected(b) or 0.0) - (estimates.expected(a) or 0.0)
        off = abs(observed[b] - observed[a] - expected * estimates.pace)
        if off >= half_spacing:
            return f"{a} and {b} are {off:.2f} s off their gap: may be two items' events"
    return None
