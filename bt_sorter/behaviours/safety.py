"""Safety: notice a line that has stopped moving, abort safely, raise the alarm."""

from __future__ import annotations

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Leaf, Param, register
from bt_sorter.blackboard import Outcome
from bt_sorter.item_story import resolve_item

Status = py_trees.common.Status


@register
class LineHealthy(Leaf):
    """RUNNING while the line moves as it should; FAILURE (with the reason) when it does not.

    Faults, from what the watchdogs noticed: a gate that stays blocked while an item is
    stuck in it or held back by it (``blocked_gates``), or ``min_missed`` expected edges
    missing with no evidence at all for longer than the line model's quiet bound (three times
    the longest gap between an item's events; a generous bound while unmeasured) while
    the belt runs: a stalled belt. A single lost message is neither.

    reads: belt_running, blocked_gates, last_evidence_at, missed_since_evidence, line.
    writes: fault.
    """

    params = (
        Param("max_quiet", float, "seconds without any evidence; default: from the line "
              "model", None),
        Param("min_missed", int, "expected edges missing since the last evidence", 2),
    )  # fmt: skip
    max_quiet: float | None
    min_missed: int

    def update(self) -> Status:
        if not self.bb.belt_running:
            return Status.RUNNING
        for gate, item in self.bb.blocked_gates.items():
            return self._fault(f"gate {gate} stays blocked; item {item} is stuck in it or "
                               "held back by what is")  # fmt: skip
        max_quiet = self.max_quiet or self.bb.line.windows.quiet_bound()
        quiet = self.bb.line.odometer.between(self.bb.last_evidence_at, self.bb.now)
        missed = self.bb.missed_since_evidence
        if missed >= self.min_missed and quiet > max_quiet:
            return self._fault(f"no sensor evidence for {quiet:.1f} s, {missed} expected edges "
                               "missing: belt stalled")  # fmt: skip
        return Status.RUNNING

    def _fault(self, reason: str) -> Status:
        self.feedback_message = reason
        self.bb.fault = reason
        self.ctx.record.write("line_fault", self.bb.now, reason=reason)
        return Status.FAILURE


@register
class RetractAllRods(Leaf):
    """Retract every rod (one all-rods command). SUCCESS at once.

    reads: nothing. writes: the all-rods command.
    """

    def update(self) -> Status:
        self.bb.command(protocol.ALL_PULL)
        return Status.SUCCESS


@register
class RaiseAlarm(Leaf):
    """Raise the alarm: the run stops safely with the abort exit code. SUCCESS.

    The reason is the last fault a condition reported, else ``reason``. Items still in
    flight are recorded as lost, with the reason.

    reads: fault, items. writes: alarms, the items' outcomes.
    """

    params = (Param("reason", str, "what to say when no fault was reported", "line aborted"),)
    reason: str

    def update(self) -> Status:
        reason = self.bb.fault or self.reason
        self.bb.alarms.append(reason)
        self.ctx.record.write("alarm_raised", self.bb.now, reason=reason)
        for item in self.bb.items:  # nothing will move them on: account for them now
            resolve_item(self.ctx, item, self.bb.now, Outcome.LOST,
                         f"on the line when it stopped: {reason}")  # fmt: skip
        return Status.SUCCESS


@register
class StackEmpty(Leaf):
    """SUCCESS once ``empty_feeds`` feeds in a row put nothing on the belt, each fed with
    the feeder's stroke lengthened after an earlier empty feed, else FAILURE.

    A feed made with the configured stroke may be the feeder's miss (issue 15); the
    feeding leaf lengthens the stroke once a feed has come up empty, and only feeds made
    that way judge the stack (a pipelined tree may feed twice before the first empty feed
    is known: two misses in a row must not end the run with items on the stack). On
    SUCCESS the stack is taken as empty (the run may end normally).

    reads: stretched_empty_in_a_row. writes: stack_empty.
    """

    params = (Param("empty_feeds", int, "empty feeds in a row that mean the stack is empty", 2),)
    empty_feeds: int

    def update(self) -> Status:
        if self.bb.stretched_empty_in_a_row < self.empty_feeds:
            return Status.FAILURE
        if not self.bb.stack_empty:
            self.bb.stack_empty = True
            self.ctx.record.write(
                "stack_empty",
                self.bb.now,
                empty_feeds=self.bb.empty_feeds_in_a_row,
                stretched=self.bb.stretched_empty_in_a_row,
            )
        return Status.SUCCESS
