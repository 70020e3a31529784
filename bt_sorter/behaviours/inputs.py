"""Whether the line's evidence can still be trusted: nothing lost unread, no impossible rates."""

from __future__ import annotations

import collections

import py_trees

from bt_sorter.behaviours.base import Leaf, Param, register

Status = py_trees.common.Status


@register
class InputsTrusted(Leaf):
    """RUNNING while the feedback can be trusted; FAILURE (with the reason) once it cannot.

    It cannot when the adapter dropped gate edges unread (its queue was full: tracking
    has lost evidence it never saw), or when gate edges or pictures arrive faster than a
    line can make them, averaged over ``window`` line seconds (a flood on the feedback
    topic: someone else is publishing there), or when ``undeclared_passages`` items were
    seen passing gates the config's topology lacks (the line has more gates than config
    declares: tracking by gate would push at the wrong gates; :mod:`bt_sorter.shape`
    judges the edges, a stray one is noise). Bad input alone (refused pictures,
    malformed payloads, stray edges) is counted, not distrusted.
    reads: dropped, received, undeclared_passages; writes: fault.
    """

    params = (
        Param("max_dropped_edges", int, "gate edges the adapter may drop unread", 0),
        Param("max_edge_rate", float, "gate edges per line second, all gates together", 20.0),
        Param("max_picture_rate", float, "pictures per line second", 5.0),
        Param("window", float, "line seconds the rates are averaged over", 5.0),
        Param("undeclared_passages", int, "items seen passing gates the config's topology "
              "lacks that prove the line is not the declared one", 2),
    )  # fmt: skip
    max_dropped_edges: int
    max_edge_rate: float
    max_picture_rate: float
    window: float
    undeclared_passages: int

    def initialise(self) -> None:
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def update(self) -> Status:
        bb = self.bb
        dropped = bb.dropped.get("gate_edge", 0)
        if dropped > self.max_dropped_edges:
            return self._fault(f"{dropped} gate edges dropped unread (controller's input queue "
                               "full): tracking cannot be trusted")  # fmt: skip
        passages = sum(bb.undeclared_passages.values())
        if passages >= self.undeclared_passages:
            gates = ", ".join(map(str, sorted(bb.undeclared_passages)))
            return self._fault(f"the line has more gates than config.topology declares: "
                               f"{passages} items passed gate {gates} (declared "
                               f"{bb.topology.describe()})")  # fmt: skip
        edges, pictures = bb.received.get("gate_edge", 0), bb.received.get("picture", 0)
        self.samples.append((bb.now, edges, pictures))
        while len(self.samples) > 1 and self.samples[1][0] <= bb.now - self.window:
            self.samples.popleft()
        _, edges_before, pictures_before = self.samples[0]
        for what, count, rate in (
            ("gate edges", edges - edges_before, self.max_edge_rate),
            ("pictures", pictures - pictures_before, self.max_picture_rate),
        ):
            if count > rate * self.window:
                return self._fault(f"{count} {what} in {self.window:g} s, more than a line makes "
                                   f"({rate:g}/s): inputs cannot be trusted")  # fmt: skip
        return Status.RUNNING

    def _fault(self, reason: str) -> Status:
        self.feedback_message = reason
        self.bb.fault = reason
        self.ctx.record.write("inputs_distrusted", self.bb.now, reason=reason)
        return Status.FAILURE
