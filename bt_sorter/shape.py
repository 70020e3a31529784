"""Whether the line has more gates than config declares: judged on evidence, never on one
message (issue 20).

An edge of a gate the configured topology lacks is bad input either way. On its own it
proves nothing: a garbage payload (``{"fourth_switch": true}``), a duplicate, another
publisher's message. What a real extra gate makes is an item's **passage**: a blocked edge
and then a clear edge of that gate, as long apart as items take to pass the declared
gates (the line model's measured passages, within their tolerance), at a time an item is
on the belt past the last declared gate (the undeclared gate's number is higher, so it
lies downstream). Each such passage is evidence; anything else (a lone edge, edges while
no item can be there, a pair that does not fit) is noise: counted in
``stray_gate_edges``, recorded (``gate_edge_stray``, with the reason), and sorting goes on.

The first passage puts the line's shape in doubt (``shape_doubt``; record
``topology_mismatch``): from then on nothing is pushed, every item reaching its rod's gate
rides to bin 1 with the reason, so no rod fires at a gate that may not be its own.
An item pushed a moment ago that is the only one that can have made a passage is
resolved again as lost (``push_in_doubt``): its push may have missed, or its rod may
stand past that gate; its bin is unknown, and the account does not claim it.
``InputsTrusted`` raises the alarm once ``undeclared_passages`` (2 by default) passages
came with no lapse between. The doubt lapses (record ``topology_doubt_lapsed``; pushing
resumes, the count restarts) once :data:`LAPSE_ITEMS` items rode past the last declared
gate to the belt end with no passage after they left it: a real extra gate would have
shown them.

Reads: ``undeclared_edges``, ``items``, ``line``. Writes: ``stray_gate_edges``,
``undeclared_passages``, ``shape_doubt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bt_sorter.blackboard import REPEAT_S, Edge, Item, Outcome
from bt_sorter.item_story import doubt_push, since_feed
from bt_sorter.linemodel import quantities
from bt_sorter.linemodel.bounds import LONGEST_ITEM, SHORTEST_PASSAGE_S, SLOWEST_BELT
from bt_sorter.linemodel.windows import REL_TOL

if TYPE_CHECKING:
    from bt_sorter.behaviours.base import Context

LAPSE_ITEMS = 2  # items past the last gate with no passage: the doubt was noise
RECENT = 8  # resolved items that may still be on the belt (a push may have missed)


class ShapeWatch:
    """Judges this tick's edges of undeclared gates; keeps or lifts the shape doubt."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.bb = ctx.bb
        line = ctx.bb.line
        self.odometer, self.estimates = line.odometer, line.estimates
        self.windows, self.latency = line.windows, line.latency
        self.pending: dict[int, float] = {}  # undeclared gate -> its lone blocked edge's time
        self.last_passage_at = 0.0
        self.clean_runs = 0  # items to the belt end with no passage since the doubt began
        self.last_run_id = 0  # the newest item judged so

    def check(self) -> None:
        for edge in self.bb.undeclared_edges:
            self._edge(edge)
        if not self.pending and not self.bb.shape_doubt:
            return  # the usual tick: nothing to judge
        longest = self._passage_bounds()[1]
        for gate, at in list(self.pending.items()):
            if self.odometer.between(at, self.bb.now) > longest:
                del self.pending[gate]
                self._stray(Edge(gate, True, at), "no clear edge followed it")
        self._runs()

    def _edge(self, edge: Edge) -> None:
        gate = edge.gate
        if edge.blocked:
            before = self.pending.get(gate)
            if before is not None and edge.t - before < REPEAT_S:
                self._stray(edge, "the same message again")
                return
            if before is not None:
                self._stray(Edge(gate, True, before), "no clear edge followed it")
            self.pending[gate] = edge.t
            return
        blocked_at = self.pending.pop(gate, None)
        if blocked_at is None:
            self._stray(edge, "no blocked edge before it")
            return
        passage = self.odometer.between(blocked_at, edge.t)
        low, high = self._passage_bounds()
        carriers = self._carriers(blocked_at)
        if not low <= passage <= high:
            why = f"{passage:.3f} s between its edges, no item's passage ({low:.3f}..{high:.3f} s)"
        elif not carriers:
            why = "no item on the belt past the last declared gate"
        else:
            self._passage(gate, blocked_at, edge.t, passage, carriers)
            return
        self._stray(Edge(gate, True, blocked_at), why)
        self._stray(edge, why)

    def _passage_bounds(self) -> tuple[float, float]:
        """Belt s an item's passage through a gate may take: the declared gates' measured
        passages within their tolerance, else the target range's."""
        gates = self.bb.topology.gate_numbers
        passages = [p for g in gates if (p := self.estimates.passage_time(g)) is not None]
        if not passages:
            longest = LONGEST_ITEM / SLOWEST_BELT
            return SHORTEST_PASSAGE_S, longest
        margin = self.latency.margin
        low = min(passages) * (1 - REL_TOL) - margin
        return low, max(passages) * (1 + REL_TOL) + margin

    def _carriers(self, t: float) -> list[Item]:
        """The items that may be past the last declared gate and still on the belt at
        ``t``: fed long enough ago to have reached that gate, not so long ago that they
        have surely fallen off the end (pushed ones too: a push may have missed)."""
        last = self.bb.topology.last_gate
        run_out = self.windows.run_out([])
        out = []
        for item in (*self.bb.items.done.recent(RECENT), *self.bb.items):
            earliest = self.windows.window(quantities.blocked(last), item.anchor)[0]
            latest = self.windows.deadline(quantities.clear(last), item.anchor) + run_out
            if item.seen and earliest <= since_feed(self.ctx, item, t) <= latest:
                out.append(item)
        return out

    def _passage(
        self, gate: int, blocked_at: float, t: float, passage: float, items: list[Item]
    ) -> None:
        bb = self.bb
        bb.undeclared_passages[gate] = bb.undeclared_passages.get(gate, 0) + 1
        self.last_passage_at, self.clean_runs = t, 0
        self.ctx.record.write("undeclared_passage", t, gate=gate, blocked_at=round(blocked_at, 4),
                              passage=round(passage, 4), items=[i.id for i in items],
                              passages=sum(bb.undeclared_passages.values()))  # fmt: skip
        if len(items) == 1 and items[0].outcome is Outcome.SORTED:
            doubt_push(self.ctx, items[0], t, gate)  # only it can have passed there
        if bb.shape_doubt:
            return
        bb.shape_doubt = (
            f"the line seems to have more gates than config.topology declares (an item "
            f"passed gate {gate}; declared: {bb.topology.describe()}): not pushed"
        )
        self.ctx.record.write("topology_mismatch", t, gates=sorted(bb.undeclared_passages),
                              declared=bb.topology.describe())  # fmt: skip

    def _stray(self, edge: Edge, why: str) -> None:
        self.bb.stray_gate_edges += 1
        self.ctx.record.write("gate_edge_stray", edge.t, gate=edge.gate, blocked=edge.blocked,
                              reason=why)  # fmt: skip

    def _runs(self) -> None:
        """Count items that rode past the last declared gate to the belt end after the
        latest passage and showed nothing at an undeclared gate; lift the doubt after
        :data:`LAPSE_ITEMS` of them."""
        if not self.bb.shape_doubt:
            return
        last = self.bb.topology.last_gate
        for item in self.bb.items.done.recent(RECENT):
            if item.id <= self.last_run_id or item.outcome is not Outcome.REJECTED:
                continue
            left = item.cleared_at.get(last)
            if left is not None and left > self.last_passage_at:
                self.last_run_id = item.id
                self.clean_runs += 1
        if self.clean_runs >= LAPSE_ITEMS:
            self.ctx.record.write("topology_doubt_lapsed", self.bb.now, items=self.clean_runs,
                                  passages=sum(self.bb.undeclared_passages.values()))  # fmt: skip
            self.bb.shape_doubt = ""
            self.bb.undeclared_passages.clear()
            self.clean_runs = 0
