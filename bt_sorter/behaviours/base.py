"""What every leaf shares: declared parameters, the registry, and the run context.

Each leaf class declares the parameters a tree file may give it, the way
BehaviorTree.CPP nodes declare their ports, so the tree loader checks a file against
the code before anything moves and ``run.py --help`` can list them::

    @register
    class PushRod(Leaf):
        '''Extend a classifying rod ...'''
        params = (Param("rod", int, doc="rod to extend (2..4); 0 = the item's own rod", default=0),)

Durations given to leaves are seconds of line time; leaves compare them with
``ctx.bb.now`` (line time), so ``--speed`` needs no special handling here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, get_args, get_origin

import py_trees

from bt_sorter.blackboard import Blackboard
from bt_sorter.clock import LineClock
from bt_sorter.coerce import WrongTypeError, convert
from bt_sorter.config import Config
from bt_sorter.log import get_logger
from bt_sorter.record import Record
from bt_sorter.vision.classifier import ClassifierWorker
from bt_sorter.vision.shelf import PictureShelf

REQUIRED: Any = object()
STATUSES = frozenset(py_trees.common.Status)


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared parameter: name, type (a type or a Literal), default, meaning."""

    name: str
    type: Any
    doc: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        if get_origin(self.type) is Literal:
            return "|".join(str(a) for a in get_args(self.type))
        if isinstance(self.type, tuple):
            return "|".join(t.__name__ for t in self.type)
        return str(self.type.__name__)

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to the declared type (:func:`bt_sorter.coerce.convert`);
        raise ValueError if it is not one."""
        try:
            return convert(self.type, value)
        except WrongTypeError:
            one_of = "one of " if get_origin(self.type) is Literal else ""
            raise ValueError(f"must be {one_of}{self.type_name()}, got {value!r}") from None


@dataclasses.dataclass
class Context:
    """What leaves may reach: the blackboard, the line config, the record, the classifiers."""

    bb: Blackboard
    config: Config
    clock: LineClock
    record: Record
    classifiers: dict[str, ClassifierWorker] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # run-time values: --label
    # issue 24: pictures vision sent to bin 1, kept for an operator to label (keep_doubted)
    doubted: PictureShelf | None = None


class Leaf(py_trees.behaviour.Behaviour):
    """A leaf of a sorting tree. Subclasses declare ``params`` and read them as attributes."""

    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name=name)
        self.ctx = ctx
        self.bb = ctx.bb
        self.log = get_logger(f"bt_sorter.{type(self).__name__}")
        declared = {p.name: p for p in self.params}
        unknown = set(values) - set(declared)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}")
        for param in self.params:
            if param.name in values:
                setattr(self, param.name, param.check(values[param.name]))
            elif param.required:
                raise TypeError(f"missing required parameter {param.name!r}")
            else:
                setattr(self, param.name, param.default)

    def tick(self) -> Iterator[py_trees.behaviour.Behaviour]:
        """py_trees' ``Behaviour.tick``, step for step, without the debug line it formats
        and the status list it builds on every tick: a leaf ticks some 50 times a line
        second, and the deterministic simulation runs thousands of line hours."""
        if self.status != py_trees.common.Status.RUNNING:
            self.initialise()
        new_status = self.update()
        if new_status not in STATUSES:
            self.logger.error(f"A behaviour returned an invalid status, setting to INVALID "
                              f"[{new_status}][{self.name}]")  # fmt: skip
            new_status = py_trees.common.Status.INVALID
        if new_status != py_trees.common.Status.RUNNING:
            self.stop(new_status)
        self.status = new_status
        yield self

    def elapsed_since(self, t: float) -> float:
        """Line seconds since line time ``t``."""
        return self.bb.now - t


REGISTRY: dict[str, type[Leaf]] = {}


def register(cls: type[Leaf]) -> type[Leaf]:
    """Class decorator: make a leaf available to tree files under its class name."""
    if cls.__name__ in REGISTRY:
        raise ValueError(f"leaf {cls.__name__} registered twice")
    REGISTRY[cls.__name__] = cls
    return cls


def summary(cls: type[Leaf]) -> str:
    """What a leaf does, for ``run.py --help`` and Groot2's node model: the first paragraph
    of its docstring (whole sentences) as one line."""
    words: list[str] = []
    for line in (cls.__doc__ or "").strip().splitlines():
        if not line.strip():
            break
        words += line.split()
    return " ".join(words)


def describe(cls: type[Leaf]) -> str:
    """A ``--help`` style description of a leaf and its parameters."""
    lines = [f"{cls.__name__}: {summary(cls)}"]
    for p in cls.params:
        default = "required" if p.required else f"default {p.default!r}"
        lines.append(f"    {p.name} ({p.type_name()}, {default}): {p.doc}")
    return "\n".join(lines)
