"""The belt, and waiting in line time."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context, Leaf, Param, register
from bt_sorter.config import Timings

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


# The config timings a Wait may name (every duration in ``timings:``).
TIMING_NAMES = tuple(f.name for f in dataclasses.fields(Timings) if f.name != "tick_hz")


@register
class Wait(Leaf):
    """RUNNING for a while of line time after it starts, then SUCCESS.

    How long: ``seconds``, or ``timing``, the name of a config timing (``timing:
    belt_start_wait`` waits ``timings.belt_start_wait``); exactly one of the two.

    reads: now. writes: nothing.
    """

    params = (
        Param("seconds", float, "how long to wait, in line seconds", None),
        Param("timing", Literal[TIMING_NAMES], "or: as long as this config timing", None),
    )
    seconds: float | None
    timing: str | None

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name, ctx, **values)
        if (self.seconds is None) == (self.timing is None):
            raise ValueError("give exactly one of 'seconds' and 'timing'")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"seconds must not be negative, got {self.seconds}")

    def initialise(self) -> None:
        self.started = self.bb.now
        self.duration = (
            getattr(self.ctx.config.timings, self.timing) if self.timing else self.seconds
        )

    def update(self) -> Status:
        if self.elapsed_since(self.started) >= self.duration:
            return Status.SUCCESS
        return Status.RUNNING
