"""The belt, and waiting in line time."""

from __future__ import annotations

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Leaf, Param, register

Status = py_trees.common.Status


@register
class StartBelt(Leaf):
    """Start the belt. SUCCESS at once (the command is requested this tick).

    reads: belt_running. writes: the belt command (and the line model's odometer).
    """

    def update(self) -> Status:
        if not self.bb.belt_running:
            self.bb.command(protocol.BELT_RUN)
            self.ctx.record.write("belt_started", self.bb.now)
        return Status.SUCCESS


@register
class StopBelt(Leaf):
    """Stop the belt. SUCCESS at once.

    reads: belt_running. writes: the belt command (and the line model's odometer).
    """

    def update(self) -> Status:
        if self.bb.belt_running:
            self.bb.command(protocol.BELT_STOP)
            self.ctx.record.write("belt_stopped", self.bb.now)
        return Status.SUCCESS


@register
class Wait(Leaf):
    """RUNNING for ``seconds`` of line time after it starts, then SUCCESS.

    reads: now. writes: nothing.
    """

    params = (Param("seconds", float, "how long to wait, in line seconds"),)
    seconds: float

    def initialise(self) -> None:
        self.started = self.bb.now

    def update(self) -> Status:
        if self.elapsed_since(self.started) >= self.seconds:
            return Status.SUCCESS
        return Status.RUNNING
