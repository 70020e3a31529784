"""A leaf test's world: a blackboard with the belt running, connected, and a line model."""

from __future__ import annotations

from pathlib import Path

import py_trees

from bt_sorter import protocol
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Item, Received
from bt_sorter.clock import LineClock
from bt_sorter.config import load_config
from bt_sorter.linemodel.model import LineModel
from bt_sorter.record import Record
from bt_sorter.topology import Topology
from bt_sorter.trees.build import load_tree
from bt_sorter.vision.classifier import ClassifierWorker


def measured_line() -> LineModel:
    """The built-in line as the controller measures it from three items."""
    model = LineModel(load_config().line)
    for _ in range(3):
        model.learning.learn(dict(model.prior.times))
    return model


def measured_shape(topology: Topology, passage: float = 0.4) -> LineModel:
    """A line of ``topology``'s shape, measured from three items: picture 2.5 s after the
    feed, gate k blocked at 4.5 + 3 (k - 1) s, each passage ``passage`` s."""
    model = LineModel(None, tick=0.02, topology=topology)
    times = {"picture": 2.5}
    for gate in topology.gate_numbers:
        head = 4.5 + 3.0 * (gate - 1)
        times |= {f"gate{gate}.blocked": head, f"gate{gate}.clear": head + passage,
                  f"gate{gate}.passage": passage}  # fmt: skip
    for _ in range(3):
        model.learning.learn(times)
    return model


def running_context(
    tmp_path: Path,
    model: LineModel,
    classifiers: dict[str, ClassifierWorker] | None = None,
    measured: bool = True,
) -> Context:
    """Connected, the belt running (its command taken out), the record under ``tmp_path``.

    ``measured=False`` gives the controller no ``line:`` at all (a line nobody measured).
    The config's topology is the model's (the FS scene's unless the model says otherwise).
    """
    config = load_config() if measured else load_config().replace(line=None)
    config = config.replace(topology=model.topology)
    context = Context(
        bb=Blackboard(line=model),
        config=config,
        clock=LineClock(1.0),
        record=Record(tmp_path / "record.jsonl"),
        classifiers=classifiers or {},
    )
    context.bb.connected = True
    context.bb.command(protocol.BELT_RUN)
    context.bb.take_outbox()
    return context


def tree_from_text(ctx: Context, tmp_path: Path, text: str) -> py_trees.behaviour.Behaviour:
    """The tree ``text`` (YAML) built for ``ctx``, through the real loader and a real file."""
    path = tmp_path / "tree.yaml"
    path.write_text(text)
    return load_tree(path, ctx)


def step(
    ctx: Context, root: py_trees.behaviour.Behaviour, t: float, *edges: tuple[int, bool]
) -> list[protocol.Command]:
    """Advance to line time ``t`` with these gate edges received at ``t``; the commands sent."""
    ctx.bb.ingest([Received(t, protocol.GateEdge(gate, blocked)) for gate, blocked in edges])
    ctx.bb.now = t
    root.tick_once()
    return ctx.bb.take_outbox()


def fed(ctx: Context, t: float, rod: int | None, label: str = "ripe") -> Item:
    """An item fed at ``t`` whose label is decided: ``rod`` (None: no rod, bin 1)."""
    item = ctx.bb.items.feed(t)
    item.label, item.rod, item.decided, item.seen = label, rod, True, True
    return item
