"""What a replay needs, written to the record as the tree runs (``--record``).

In the spirit of BehaviorTree.CPP's file logger: the tree's shape once
(``session_started``: nodes in pre-order with parent, name and kind, and the line's
stations), then ``node_status`` for every transition of every node (node index,
old -> new status, line time), and the line's own events with their times: ``edge``
(gate, blocked) as they arrived, ``command`` (what the controller published) and
``picture`` (the item's picture, base64, once per item), ``safe_stop`` (the stop begins;
the halted tree's transitions follow it). The decisions the leaves write
(``item_fed``, ``item_classified``, ``item_resolved``, ``alarm_raised``, ...) complete it.

A transition is seen when its node is ticked (the runner hands every ticked node to
:meth:`Trace.visit`) and, for nodes stopped without a tick, by a walk after the tick.
Nothing is done when the record has no file.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import py_trees
from py_trees.behaviour import Behaviour
from py_trees.common import Status

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context

STATUS_NAME = {s: s.value for s in Status}
RECORD_VERSION = 1


def walk(root: Behaviour) -> Iterator[tuple[Behaviour, Behaviour | None, str]]:
    """Every node in pre-order, with its parent and its role (child, or a guard's condition)."""
    stack: list[tuple[Behaviour, Behaviour | None, str]] = [(root, None, "child")]
    while stack:
        node, parent, role = stack.pop()
        yield node, parent, role
        below = [(c, node, "child") for c in node.children]
        condition = getattr(node, "condition_node", None)
        if isinstance(condition, Behaviour):
            below.insert(0, (condition, node, "condition"))
        stack.extend(reversed(below))


def node_shape(node: Behaviour) -> str:
    """composite, decorator or leaf."""
    if isinstance(node, py_trees.composites.Composite):
        return "composite"
    if isinstance(node, py_trees.decorators.Decorator):
        return "decorator"
    return "leaf"


def tree_shape(root: Behaviour) -> list[dict[str, Any]]:
    """The nodes in pre-order: id (their index), parent id, name, kind, shape, role."""
    index: dict[int, int] = {}
    out: list[dict[str, Any]] = []
    for i, (node, parent, role) in enumerate(walk(root)):
        index[id(node)] = i
        out.append(
            {
                "id": i,
                "parent": index[id(parent)] if parent is not None else None,
                "name": node.name,
                "kind": type(node).__name__,
                "shape": node_shape(node),
                "role": role,
            }
        )
    return out


class Trace:
    """Writes the tree's shape, node status transitions, edges, commands and pictures."""

    def __init__(self, root: Behaviour, ctx: Context) -> None:
        self.ctx = ctx
        self.enabled = ctx.record.enabled
        self.nodes = [node for node, _, _ in walk(root)]
        self._index = {id(node): i for i, node in enumerate(self.nodes)}
        self._last = [node.status for node in self.nodes]
        self._pictured: set[int] = set()
        if self.enabled:
            config = ctx.config
            ctx.record.trace(
                "session_started",
                ctx.bb.now,
                version=RECORD_VERSION,
                tree=tree_shape(root),
                config=str(config.source) if config.source else None,
                line=dataclasses.asdict(config.line) if config.line is not None else None,
                routes=dict(config.sorting.routes),
                topology={
                    "gates": config.topology.gates,
                    "rod_gates": list(config.topology.rod_gates),
                },
            )

    def visit(self, node: Behaviour) -> None:
        """A node was just ticked: record its transition, if it made one."""
        if self.enabled:
            i = self._index.get(id(node))
            if i is not None:
                self._check(i, node.status)

    def after_tick(self, commands: Iterable[protocol.Command]) -> None:
        """After the tick: nodes stopped without a tick, this tick's edges, commands, pictures."""
        if not self.enabled:
            return
        bb, record = self.ctx.bb, self.ctx.record
        for edge in bb.edges:
            record.trace("edge", edge.t, gate=edge.gate, blocked=edge.blocked)
        self.commands(commands)
        in_flight: set[int] = set()
        for item in bb.items:
            in_flight.add(item.id)
            if item.picture is not None and item.id not in self._pictured:
                self._pictured.add(item.id)
                data = base64.b64encode(item.picture).decode("ascii")
                record.trace("picture", item.picture_at or bb.now, item=item.id, jpeg=data)
        self._pictured &= in_flight  # issue 22: a resolved item's id is not kept

    def stopping(self, reason: str | None) -> None:
        """The safe stop begins. It halts the tree at the last tick's line time, so this
        line is what tells the halted tree's transitions (after it) from the tick's."""
        if self.enabled:
            self.ctx.record.trace("safe_stop", self.ctx.bb.now, reason=reason)

    def commands(self, commands: Iterable[protocol.Command]) -> None:
        """Commands published (also the safe stop's), and any status the stop changed."""
        if not self.enabled:
            return
        for i, node in enumerate(self.nodes):
            self._check(i, node.status)
        for command in commands:
            action = command.action.value
            self.ctx.record.trace("command", self.ctx.bb.now, action=action, rod=command.rod)

    def _check(self, i: int, status: Status) -> None:
        old = self._last[i]
        if status is not old:
            self._last[i] = status
            self.ctx.record.trace(
                "node_status",
                self.ctx.bb.now,
                node=i,
                old=STATUS_NAME[old],
                new=STATUS_NAME[status],
            )
