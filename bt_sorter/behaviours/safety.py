"""Safety: notice a line that has stopped moving, abort safely, raise the alarm."""

from __future__ import annotations

import itertools

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Leaf, Param, register

Status = py_trees.common.Status


@register
class LineHealthy(Leaf):
    """RUNNING while the line moves as it should; FAILURE (with the reason) when it does not.

    Faults: a gate blocked for longer than ``max_block`` seconds (a stuck item), or
    items in flight that have been seen but no sensor evidence at all for ``max_quiet``
    seconds while the belt runs (a stalled belt). Defaults follow from the geometry.
    """

    params = (
        Param(
            "max_block", float, "longest a gate may stay blocked, seconds; 0 = 4 item passages", 0.0
        ),
        Param(
            "max_quiet",
            float,
            "longest without any evidence, seconds; 0 = 2 gate-to-gate travels",
            0.0,
        ),
    )
    max_block: float
    max_quiet: float

    def update(self) -> Status:
        line = self.ctx.config.line
        if not self.bb.belt_running:
            return Status.RUNNING
        max_block = self.max_block or 4 * line.item_length / line.belt_speed
        for gate, blocked in self.bb.gates.items():
            since = self.bb.gate_changed_at[gate]
            if blocked and self.bb.now - since > max_block:
                return self._fault(
                    f"gate {gate} blocked for {self.bb.now - since:.1f} s: item stuck"
                )
        points = (0.0, line.camera_position, *line.gate_positions, line.belt_length)
        widest = max(b - a for a, b in itertools.pairwise(points))
        max_quiet = self.max_quiet or 2 * (widest + line.item_length) / line.belt_speed
        seen = [item for item in self.bb.items if item.seen]
        quiet = self.bb.now - self.bb.last_evidence_at
        if seen and quiet > max_quiet:
            return self._fault(
                f"no sensor evidence for {quiet:.1f} s with {len(seen)} items: belt stalled"
            )
        return Status.RUNNING

    def _fault(self, reason: str) -> Status:
        self.feedback_message = reason
        self.bb.fault = reason
        self.ctx.record.write("line_fault", self.bb.now, reason=reason)
        return Status.FAILURE


@register
class RetractAllRods(Leaf):
    """Retract every rod (one all-rods command). SUCCESS at once."""

    def update(self) -> Status:
        self.bb.command(protocol.ALL_PULL)
        return Status.SUCCESS


@register
class RaiseAlarm(Leaf):
    """Raise the alarm: the run stops safely with the abort exit code. SUCCESS.

    The reason is the last fault a condition reported, else ``reason``.
    """

    params = (Param("reason", str, "what to say when no fault was reported", "line aborted"),)
    reason: str

    def update(self) -> Status:
        reason = self.bb.fault or self.reason
        self.bb.alarms.append(reason)
        self.ctx.record.write("alarm_raised", self.bb.now, reason=reason)
        return Status.SUCCESS


@register
class StackEmpty(Leaf):
    """SUCCESS once ``empty_feeds`` feeds in a row put nothing on the belt, else FAILURE.

    On SUCCESS the stack is taken as empty (the run may end normally).
    """

    params = (Param("empty_feeds", int, "empty feeds in a row that mean the stack is empty", 2),)
    empty_feeds: int

    def update(self) -> Status:
        if self.bb.empty_feeds < self.empty_feeds:
            return Status.FAILURE
        if not self.bb.stack_empty:
            self.bb.stack_empty = True
            self.ctx.record.write("stack_empty", self.bb.now, empty_feeds=self.bb.empty_feeds)
        return Status.SUCCESS
