"""A line that runs for weeks (issue 22): 20,000 items through the real blackboard, its item
FIFO and the controller's own resolve path; what it keeps stays small however many pass,
and the counts, bins, reasons and the throughput chart stay exact."""

from __future__ import annotations

import tracemalloc

import numpy as np

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import PICTURES_KEPT, RECENT, Blackboard, Outcome
from bt_sorter.clock import LineClock
from bt_sorter.config import Config
from bt_sorter.item_story import resolve_item
from bt_sorter.linemodel.model import LineModel
from bt_sorter.record import Record
from bt_sorter.sim.render import LABELS, render_picture
from bt_sorter.view import facts
from bt_sorter.web.state import THROUGHPUT_POINTS, WINDOW, Throughput, counts, snapshot

ITEMS = 20_000
SPACING = 2.5  # line s between two items


def test_a_long_run_keeps_the_blackboard_small_and_its_counts_exact() -> None:
    ctx = Context(bb=Blackboard(line=LineModel()), config=Config(), clock=LineClock(),
                  record=Record())  # fmt: skip
    bb = ctx.bb
    rng = np.random.default_rng(22)
    pictures = [render_picture(rng, label, 256) for label in LABELS]
    chart = Throughput()
    expected_bins: dict[str, int] = {}
    expected_outcomes = dict.fromkeys(("sorted", "rejected", "lost"), 0)
    times = np.zeros(ITEMS)  # every resolve time, allocated before the count starts
    bb.command(protocol.BELT_RUN)  # the belt runs all along: the line model learns
    bb.take_outbox()
    tracemalloc.start()
    try:
        for n in range(ITEMS):
            t = n * SPACING
            item = bb.items.feed(t)
            item.picture = bytes(bytearray(pictures[n % 3]))  # each item's bytes of its own
            item.picture_at, item.label, item.decided = t + 0.5, LABELS[n % 3], True
            bb.now = t + 10.0
            if n % 10 == 9:  # every tenth: no confident label, bin 1
                item.reject_reason = "no confident label"
                resolve_item(ctx, item, bb.now, Outcome.REJECTED, "")
                outcome, bin_ = "rejected", "1"
            elif n % 50 == 7:  # lost on the way
                resolve_item(ctx, item, bb.now, Outcome.LOST, "edge missing")
                outcome, bin_ = "lost", None
            else:
                item.rod = 2 + n % 3
                resolve_item(ctx, item, bb.now, Outcome.SORTED, "pushed", item.rod)
                outcome, bin_ = "sorted", str(item.rod)
            expected_outcomes[outcome] += 1
            if bin_ is not None:
                expected_bins[bin_] = expected_bins.get(bin_, 0) + 1
            times[n] = bb.now
            if n % 50 == 0:  # the page at its 10 Hz would take a snapshot every few items
                snapshot(ctx, "R", list(ctx.record.recent), chart)
            if n == ITEMS // 10:
                at_tenth = tracemalloc.get_traced_memory()[0]
        at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # one picture is ~5 KB: 18,000 more items kept would be some 90 MB more
    assert at_end - at_tenth < 200_000, (at_tenth, at_end)
    done = bb.items.done
    assert len(bb.items) == 0 and len(done) == ITEMS and bb.items.fed == ITEMS
    recent = done.recent()
    assert len(recent) == RECENT and [i.id for i in recent] == list(range(ITEMS - RECENT + 1,
                                                                         ITEMS + 1))  # fmt: skip
    assert [i.picture is not None for i in recent] == [False] * (RECENT - PICTURES_KEPT) + [
        True
    ] * PICTURES_KEPT
    state = counts(ctx)
    assert state["resolved"] == ITEMS and state["outcomes"] == expected_outcomes
    assert state["bins"] == dict(sorted(expected_bins.items()))
    assert dict(done.reasons) == {"no confident label": ITEMS // 10,
                                  "edge missing": expected_outcomes["lost"]}  # fmt: skip
    view = facts(bb)
    assert {k: view[k] for k in expected_outcomes} == expected_outcomes
    # the chart spans the whole run in a bounded number of points, each one exact
    series = chart.update(ctx)
    assert THROUGHPUT_POINTS <= len(series) <= 2 * THROUGHPUT_POINTS + 2
    assert series[0][0] == 0.0 and series[-1][0] == round(bb.now, 2)
    for at, rate in series[1:]:
        n = int(np.count_nonzero((times > at - WINDOW) & (times <= at)))
        assert rate == round(n * 60.0 / min(WINDOW, max(at, 1.0)), 2), (at, rate, n)
    assert len(chart.times) <= WINDOW / SPACING + 1  # only the last minute's resolve times
