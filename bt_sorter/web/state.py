"""What the page shows, as plain values: the tree's shape and statuses, the line, the counts.

Everything the page draws comes from here, built from a :class:`Context` (live, in the
tick thread; replay builds a context of its own from the record). Building a snapshot is
cheap (a walk over the nodes, a few small lists; pictures are passed by reference, not
copied or encoded): serialising and pushing it is the web thread's job.

:func:`line_view` is the one function that decides where things sit on the drawn line.
It draws the line schematically from the order of its stations (feeder, camera, gates,
rods, belt end) and places each item in flight between stations from its zone (gate
edges) and the time since its latest edge; the expected travel time between stations
comes from :func:`segment_seconds`, the one place to point at a learned line model.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from typing import Any

from py_trees.behaviour import Behaviour
from py_trees.common import Status

from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Item, Outcome, bin_of
from bt_sorter.linemodel import quantities
from bt_sorter.trace import tree_shape, walk
from bt_sorter.vision.classifier import NO_CONFIDENT_LABEL

__all__ = ["line_view", "segment_seconds", "snapshot", "tree_shape", "walk"]

STATUS_CHAR = {Status.RUNNING: "R", Status.SUCCESS: "S", Status.FAILURE: "F", Status.INVALID: "-"}
THUMBNAILS = 8  # pictures shown, newest first
EVENTS = 30  # latest record events shown
THROUGHPUT_POINTS = 60  # points on that chart
WINDOW = 60.0  # line seconds: items per minute over the last minute


def statuses(nodes: list[Behaviour]) -> str:
    """One character per node (pre-order): R running, S success, F failure, - not ticked."""
    return "".join(STATUS_CHAR[n.status] for n in nodes)


# --- the line ---------------------------------------------------------------------------


def segment_seconds(ctx: Context) -> list[float]:
    """Expected belt-running seconds between consecutive stations of :func:`stations`.

    From the learned line model (feed → picture → each gate's blocked edge → the belt
    end); a stretch not measured yet is drawn as long as the longest known one.
    """
    model = ctx.bb.line
    times = [0.0, model.estimates.expected(quantities.PICTURE)]
    gates = ctx.bb.topology.gate_numbers
    times += [model.estimates.expected(quantities.blocked(gate)) for gate in gates]
    last = model.estimates.expected(quantities.clear(gates[-1]))
    times.append(None if last is None else last + model.windows.run_out([]))
    known = [
        b - a for a, b in itertools.pairwise(times) if a is not None and b is not None and b > a
    ]
    fallback = max(known, default=1.0)
    out = []
    for a, b in itertools.pairwise(times):
        out.append(b - a if a is not None and b is not None and b > a else fallback)
    return [max(1e-3, x) for x in out]


def stations(ctx: Context) -> list[dict[str, Any]]:
    """Feeder, camera, gate 1..n (each with the rod its clear edge fires, None for a gate
    that only tracks), belt end: the line's topology (config ``topology:``)."""
    topology = ctx.bb.topology
    out: list[dict[str, Any]] = [{"kind": "feeder", "rod": 1}, {"kind": "camera"}]
    out += [{"kind": "gate", "gate": k, "rod": topology.rod_at(k)} for k in topology.gate_numbers]
    out.append({"kind": "end", "bin": 1})
    return out


def _item_x(ctx: Context, item: Item, seconds: list[float], xs: list[float]) -> float:
    """Where along the drawing (0 feeder .. 1 belt end) ``item`` probably is now.

    At a gate while it blocks it; otherwise past the station of its latest edge (the
    feeder for zone 0) by the time since then over the expected travel time, never
    reaching the next gate before its edge does.
    """
    zone, now = item.zone, ctx.bb.now
    if zone % 2 == 1:  # blocking gate k (station 1 + k)
        return xs[1 + (zone + 1) // 2]
    if zone == 0:  # fed, not yet at gate 1: feeder -> camera -> gate 1
        first, last, start = 0, 1, item.fed_at
    else:  # cleared gate k: gate k -> the next station
        k = zone // 2
        first = last = 1 + k
        start = item.cleared_at.get(k, now)
    span = sum(seconds[first : last + 1])
    travelled = min(0.95 * span, max(0.0, now - start))
    i = first
    while i < last and travelled > seconds[i]:
        travelled -= seconds[i]
        i += 1
    return xs[i] + min(1.0, travelled / seconds[i]) * (xs[i + 1] - xs[i])


def line_view(ctx: Context) -> dict[str, Any]:
    """The line as drawn: stations at evenly spaced x (0..1), their states, items in flight."""
    bb = ctx.bb
    seconds = segment_seconds(ctx)
    marks = stations(ctx)
    xs = [i / (len(marks) - 1) for i in range(len(marks))]
    for mark, x in zip(marks, xs, strict=True):
        mark["x"] = round(x, 4)
        if "gate" in mark:
            mark["blocked"] = bool(bb.gates.get(mark["gate"], False))
        if mark.get("rod") is not None:
            mark["out"] = bool(bb.rods_out.get(mark["rod"], False))
    items = []
    for item in bb.items:
        pred = item.prediction
        items.append(
            {
                "id": item.id,
                "x": round(_item_x(ctx, item, seconds, xs), 4),
                "zone": item.zone,
                "label": item.label,
                "confidence": round(pred.confidence, 3) if pred else None,
                "rod": item.rod,
                "uncertain": item.uncertain,
            }
        )
    return {"belt": bb.belt_running, "stations": marks, "items": items}


# --- the snapshot -------------------------------------------------------------------------


def counts(ctx: Context) -> dict[str, Any]:
    """Fed, outcomes and bins of the resolved items, and the items vision sent to bin 1
    (doubted, no confident label), counted as they resolved: the same cost at item 100,000
    as at item 100."""
    done = ctx.bb.items.done
    return {
        "fed": ctx.bb.items.fed,
        "resolved": len(done),
        "in_flight": len(ctx.bb.items),
        "outcomes": {o.value: done.outcomes.get(o.value, 0) for o in Outcome},
        "bins": dict(sorted((str(b), n) for b, n in done.bins.items())),
        "doubted": done.doubted,  # issue 24: to bin 1, vision doubted the picture
        "no_confident_label": done.reasons.get(NO_CONFIDENT_LABEL, 0),
    }


def thumbnails(ctx: Context) -> list[dict[str, Any]]:
    """The newest pictures (newest first) with label, confidence and where the item went.

    ``picture`` is the encoded picture itself (bytes, not copied); the web thread serves it.
    """
    bb = ctx.bb
    out: list[dict[str, Any]] = []
    for item in [*reversed(list(bb.items)), *reversed(bb.items.done.recent(THUMBNAILS))]:
        if item.picture is None:
            continue
        pred = item.prediction
        out.append(
            {
                "id": item.id,
                "label": item.label,
                "confidence": round(pred.confidence, 3) if pred else None,
                "rod": item.rod,
                "outcome": str(item.outcome) if item.outcome else None,
                "bin": bin_of(item) if item.outcome else None,
                "picture": item.picture,
            }
        )
        if len(out) >= THUMBNAILS:
            break
    return out


def per_minute(times: Iterable[float], t: float) -> float:
    """Items resolved in the line minute up to ``t`` (of ``times``), per minute."""
    n = sum(1 for x in times if t - WINDOW < x <= t)
    return round(n * 60.0 / min(WINDOW, max(t, 1.0)), 2)


class Throughput:
    """The items-per-minute chart over the whole run, in bounded memory (issue 22).

    Points lie on a grid from line time 0 (``step`` apart), each the exact rate over
    the line minute before it; when there are more than twice :data:`THROUGHPUT_POINTS`,
    every other one goes and the step doubles, so the chart always spans the run with
    THROUGHPUT_POINTS to twice as many points, plus one for now. It takes the resolve
    times of the items resolved since its last update from ``done.times`` and keeps
    only the last minute's.
    """

    def __init__(self) -> None:
        self.times: collections.deque[float] = collections.deque()  # the last minute's
        self.seen = 0  # resolved items taken into ``times``
        self.step = 1.0  # line s between grid points
        self.points: list[tuple[float, float]] = []  # (grid time, items/min), from 0

    def update(self, ctx: Context) -> list[tuple[float, float]]:
        done, now = ctx.bb.items.done, ctx.bb.now
        new = min(len(done) - self.seen, len(done.times))
        if new > 0:
            self.times.extend(sorted(itertools.islice(reversed(done.times), new)))
        self.seen = len(done)
        while len(self.points) * self.step <= now:
            t = len(self.points) * self.step
            self.points.append((round(t, 2), per_minute(self.times, t)))
            if len(self.points) > 2 * THROUGHPUT_POINTS:
                self.points, self.step = self.points[::2], self.step * 2
        while self.times and self.times[0] <= now - WINDOW:
            self.times.popleft()
        last = self.points[-1][0] if self.points else -1.0
        tail = [(round(now, 2), per_minute(self.times, now))] if now > last else []
        return [*self.points, *tail]


def snapshot(
    ctx: Context, status: str, events: list[dict[str, Any]], chart: Throughput
) -> dict[str, Any]:
    """Everything the page shows at this moment (plain values; pictures as bytes).

    ``status`` is :func:`statuses` of the tree's nodes (or a replay's reconstruction);
    ``chart`` is the caller's :class:`Throughput`, kept between snapshots.
    """
    bb = ctx.bb
    return {
        "t": round(bb.now, 3),
        "tick": bb.tick,
        "connected": bb.connected,
        "status": status,
        "line": line_view(ctx),
        "counts": counts(ctx),
        "thumbnails": thumbnails(ctx),
        "throughput": chart.update(ctx),
        "alarms": list(bb.alarms),
        "bad_inputs": bb.bad_inputs,
        "events": events[-EVENTS:],
    }
