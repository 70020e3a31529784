"""What the page draws, from a real blackboard: items in order along the line, each at its
gate while it blocks it and never past the next gate before its edge; items per minute."""

from __future__ import annotations

from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Outcome
from bt_sorter.clock import LineClock
from bt_sorter.config import Config, load_config
from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.priors import prior_times
from bt_sorter.record import Record
from bt_sorter.web.state import Throughput, line_view


def context() -> Context:
    config = Config()
    model = LineModel()
    model.learning.learn(prior_times(load_config().line))  # the built-in line, measured once
    return Context(bb=Blackboard(line=model), config=config, clock=LineClock(),
                   record=Record())  # fmt: skip


def test_items_are_drawn_in_belt_order_between_their_stations() -> None:
    ctx = context()
    bb = ctx.bb
    far, at_gate, fresh = bb.items.feed(0.0), bb.items.feed(4.0), bb.items.feed(9.0)
    far.entered = far.cleared = 2  # past gate 2, cleared it at t = 9
    far.cleared_at[2] = 9.0
    at_gate.entered, at_gate.cleared = 1, 0  # blocking gate 1
    bb.now = 10.0
    bb.gates[1] = True
    view = line_view(ctx)
    xs = {s.get("gate"): s["x"] for s in view["stations"] if s["kind"] == "gate"}
    by_id = {i["id"]: i for i in view["items"]}
    assert by_id[at_gate.id]["x"] == xs[1]  # drawn at the gate it blocks
    assert xs[2] < by_id[far.id]["x"] < xs[3]  # between the gate it cleared and the next
    assert 0.0 <= by_id[fresh.id]["x"] < xs[1]
    assert by_id[fresh.id]["x"] < by_id[at_gate.id]["x"] < by_id[far.id]["x"]
    bb.now = 1000.0  # long overdue: still short of the next gate until its edge comes
    assert xs[2] < line_view(ctx)["items"][0]["x"] < xs[3]
    gate1 = next(s for s in view["stations"] if s.get("gate") == 1)
    assert gate1["blocked"] is True and gate1["rod"] == 2


def test_items_per_minute_counts_the_last_line_minute() -> None:
    ctx = context()
    for t in (10.0, 20.0, 30.0, 100.0):
        item = ctx.bb.items.feed(t - 5)
        ctx.bb.items.resolve(item, Outcome.SORTED, "pushed", t)
    ctx.bb.now = 120.0
    series = dict(Throughput().update(ctx))
    assert series[60.0] == 3.0  # three in the minute up to t = 60
    assert series[120.0] == 1.0  # only the one at t = 100 in (60, 120]
