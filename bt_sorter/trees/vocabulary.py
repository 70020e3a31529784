"""The nodes a tree file may name: composites and decorators (:class:`Kind`, :data:`KINDS`)
with their py_trees builders, ``include``, ``for_each_rod``, and the leaves registered in
:data:`bt_sorter.behaviours.base.REGISTRY` (imported here, so they are registered).

What each kind is and which parameters it takes, for the YAML builder
(:mod:`bt_sorter.trees.build`), Groot2's XML (:mod:`bt_sorter.trees.groot`) and
``run.py --help`` (:mod:`bt_sorter.trees.cli`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any, Literal

import py_trees
from py_trees.behaviour import Behaviour
from py_trees.common import OneShotPolicy, ParallelPolicy, Status

import bt_sorter.behaviours  # noqa: F401  (registers the leaves)
from bt_sorter.behaviours.base import REGISTRY, Context, Param
from bt_sorter.blackboard import Blackboard
from bt_sorter.yamlio import Located


class NodeError(Exception):
    """A problem with one node, raised by a kind's builder; ``key`` says which line (the
    builder turns it into a SpecError with file and line)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(frozen=True)
class Kind:
    """A composite or decorator a tree may use: its key, declared parameters and builder."""

    key: str
    shape: Literal["composite", "decorator"]
    doc: str
    params: tuple[Param, ...]
    build: Callable[..., Behaviour]  # (name, values, children|child, ctx[, condition])
    extra: tuple[str, ...] = ()  # structural keys besides children/child

    @property
    def structural(self) -> tuple[str, ...]:
        return ("children",) if self.shape == "composite" else ("child", *self.extra)

    def describe(self) -> str:
        shape = "children: [nodes]" if self.shape == "composite" else "child: node"
        if self.extra:
            shape += ", " + ", ".join(f"{k}: node" for k in self.extra)
        lines = [f"{self.key}: {self.doc} ({shape})"]
        for p in self.params:
            default = "required" if p.required else f"default {p.default!r}"
            lines.append(f"    {p.name} ({p.type_name()}, {default}): {p.doc}")
        return "\n".join(lines)


# --- composites ---------------------------------------------------------------------------


def _sequence(name: str, v: dict[str, Any], children: list[Behaviour], ctx: Context) -> Behaviour:
    return py_trees.composites.Sequence(name, memory=v["memory"], children=children)


def _selector(name: str, v: dict[str, Any], children: list[Behaviour], ctx: Context) -> Behaviour:
    return py_trees.composites.Selector(name, memory=v["memory"], children=children)


def _parallel(name: str, v: dict[str, Any], children: list[Behaviour], ctx: Context) -> Behaviour:
    policy_name, sync, selected = v["policy"], v["synchronise"], v["selected"]
    if selected is not None and policy_name != "success_on_selected":
        raise NodeError("'selected' applies only to policy success_on_selected", "selected")
    policy: ParallelPolicy.Base
    if policy_name == "success_on_all":
        policy = ParallelPolicy.SuccessOnAll(synchronise=sync)
    elif policy_name == "success_on_one":
        if sync:
            raise NodeError("'synchronise' does not apply to policy success_on_one", "synchronise")
        policy = ParallelPolicy.SuccessOnOne()
    else:
        if not selected:
            raise NodeError("policy success_on_selected needs 'selected: [child names]'", "policy")
        by_name: dict[str, Behaviour] = {}
        for child in children:
            if child.name in by_name:
                raise NodeError(f"two children named {child.name!r}; 'selected' needs unique names")
            by_name[child.name] = child
        chosen = []
        for item in selected:
            if not isinstance(item, str) or item not in by_name:
                raise NodeError(f"selected {item!r} is not a child's name (children: "
                           f"{', '.join(repr(n) for n in by_name)})", "selected")  # fmt: skip
            chosen.append(by_name[item])
        policy = ParallelPolicy.SuccessOnSelected(chosen, synchronise=sync)
    return py_trees.composites.Parallel(name, policy=policy, children=children)


# --- decorators ---------------------------------------------------------------------------


def _retry(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    if v["num_failures"] < 1:
        raise NodeError(f"num_failures must be at least 1, got {v['num_failures']}", "num_failures")
    return py_trees.decorators.Retry(name, child, num_failures=v["num_failures"])


def _repeat(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    n = v["num_success"]
    if n < 1 and n != -1:
        message = f"num_success must be at least 1, or -1 for forever; got {n}"
        raise NodeError(message, "num_success")
    return py_trees.decorators.Repeat(name, child, num_success=n)


def _timeout(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    seconds = v["seconds"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise NodeError(f"seconds must be a positive number, got {seconds}", "seconds")
    return LineTimeout(name, child, seconds, ctx.bb)


class LineTimeout(py_trees.decorators.Timeout):
    """py_trees' Timeout, counted in line time (``bb.now``, stamped by the runner each
    tick) instead of wall time: the file speaks line seconds, and a run on a virtual
    clock (the deterministic simulation) times out exactly where a real one would."""

    def __init__(self, name: str, child: Behaviour, seconds: float, bb: Blackboard) -> None:
        super().__init__(name, child, duration=seconds)
        self.bb = bb

    def initialise(self) -> None:
        self.finish_time = self.bb.now + self.duration
        self.feedback_message = ""

    def update(self) -> Status:
        running = self.decorated.status == Status.RUNNING
        if running and self.bb.now > self.finish_time:
            self.feedback_message = "timed out"
            self.decorated.stop(Status.INVALID)
            return Status.FAILURE
        remaining = self.finish_time - self.bb.now
        self.feedback_message = (
            f"line time still ticking ... [remaining: {remaining:.2f} s]"
            if running
            else "child finished before timeout triggered"
        )
        return self.decorated.status


def _one_shot(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    policy = OneShotPolicy[v["policy"].upper()]
    return py_trees.decorators.OneShot(name, child, policy=policy)


class Guard(py_trees.decorators.EternalGuard):
    """EternalGuard whose condition is a behaviour, ticked once before every tick of the child.

    The guard passes while the condition returns SUCCESS; otherwise the child is stopped
    and the guard fails.
    """

    def __init__(self, name: str, child: Behaviour, condition: Behaviour) -> None:
        self.condition_node = condition
        super().__init__(name=name, child=child, condition=self._check)

    def _check(self) -> bool:
        self.condition_node.tick_once()
        status = self.condition_node.status
        if status == Status.RUNNING:  # not a pass: start the check afresh next time
            self.condition_node.stop(Status.INVALID)
        self.feedback_message = f"{self.condition_node.name}: {status.value}"
        return status == Status.SUCCESS

    def setup(self, **kwargs: Any) -> None:
        self.condition_node.setup(**kwargs)

    def shutdown(self) -> None:
        self.condition_node.shutdown()


def _eternal_guard(
    name: str, v: dict[str, Any], child: Behaviour, ctx: Context, condition: Behaviour
) -> Behaviour:
    return Guard(name, child, condition)


def _plain(cls: type[py_trees.decorators.Decorator]) -> Callable[..., Behaviour]:
    def build(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
        return cls(name=name, child=child)

    return build


_CONVERTERS: tuple[tuple[str, type[py_trees.decorators.Decorator], str], ...] = (
    ("inverter", py_trees.decorators.Inverter, "SUCCESS <-> FAILURE, RUNNING stays"),
    ("success_is_failure", py_trees.decorators.SuccessIsFailure, "SUCCESS becomes FAILURE"),
    ("failure_is_success", py_trees.decorators.FailureIsSuccess, "FAILURE becomes SUCCESS"),
    ("failure_is_running", py_trees.decorators.FailureIsRunning, "FAILURE becomes RUNNING"),
    ("running_is_failure", py_trees.decorators.RunningIsFailure, "RUNNING becomes FAILURE"),
    ("running_is_success", py_trees.decorators.RunningIsSuccess, "RUNNING becomes SUCCESS"),
    ("success_is_running", py_trees.decorators.SuccessIsRunning, "SUCCESS becomes RUNNING"),
)

KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("sequence", "composite", "tick children in order; fail at the first failure",
             (Param("memory", bool, "resume at the running child instead of restarting",
                    default=True),), _sequence),
        Kind("selector", "composite", "tick children in order; succeed at the first success",
             (Param("memory", bool, "resume at the running child instead of restarting",
                    default=False),), _selector),
        Kind("parallel", "composite", "tick all children every tick",
             (Param("policy", Literal["success_on_all", "success_on_one", "success_on_selected"],
                    "when the parallel succeeds"),
              Param("synchronise", bool, "skip children that already succeeded", default=False),
              Param("selected", list, "child names for success_on_selected", default=None)),
             _parallel),
        Kind("retry", "decorator", "run the child again after a failure",
             (Param("num_failures", int, "failures allowed before failing (>= 1)"),), _retry),
        Kind("timeout", "decorator", "fail (and stop the child) if it runs too long",
             (Param("seconds", float, "line seconds before the child is stopped"),), _timeout),
        Kind("repeat", "decorator", "run the child again after a success",
             (Param("num_success", int, "successes before succeeding; -1 = forever"),),
             _repeat),
        Kind("one_shot", "decorator", "run the child to completion once, then keep its result",
             (Param("policy", Literal["on_completion", "on_successful_completion"],
                    "which completion counts"),), _one_shot),
        Kind("eternal_guard", "decorator",
             "tick the condition before every tick of the child; stop the child and fail "
             "as soon as the condition is not SUCCESS", (), _eternal_guard, extra=("condition",)),
        *(Kind(key, "decorator", doc, (), _plain(cls)) for key, cls, doc in _CONVERTERS),
    )
}  # fmt: skip

INCLUDE = "include"
_INCLUDE_PARAMS = (Param("name", str, "new name for the included root", default=None),)
FOR_EACH_ROD = "for_each_rod"  # in a children: list, its child once per classifying rod
PLACEHOLDER = re.compile(r"\{(rod|gate)\}")  # what for_each_rod replaces


def substitute(value: Any, names: dict[str, int] | None) -> Any:
    """``value`` with ``{rod}`` / ``{gate}`` replaced from ``names`` (one for_each_rod
    branch): a value that is exactly one of them becomes its number; text and lists are
    replaced in. YAML reads an unquoted ``{rod}`` as a mapping ``{rod: null}``: taken as
    meant. ``names`` None: outside any for_each_rod, the value as written."""
    if isinstance(value, dict) and len(value) == 1 and None in value.values():
        word = next(iter(value))
        value = f"{{{word}}}" if word in ("rod", "gate") else value
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if names is None or not isinstance(value, str):
        return value
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return names[whole.group(1)]
    return PLACEHOLDER.sub(lambda m: str(names[m.group(1)]), value)


def all_kinds() -> list[str]:
    return [*KINDS, INCLUDE, FOR_EACH_ROD, *REGISTRY]


def params_of(key: str) -> tuple[Param, ...]:
    if key in KINDS:
        return KINDS[key].params
    if key == INCLUDE:
        return _INCLUDE_PARAMS
    if key == FOR_EACH_ROD:
        return ()
    return REGISTRY[key].params


def other_keys(key: str) -> set[str]:
    """Keys besides its kind key that a node of kind ``key`` may have."""
    structural = KINDS[key].structural if key in KINDS else ()
    if key == FOR_EACH_ROD:
        structural = ("child",)
    return {p.name for p in params_of(key)} | set(structural)


def kind_key(spec: Located) -> str:
    """The key that names a (checked) node's kind."""
    return next(k for k in spec if k in KINDS or k in REGISTRY or k in (INCLUDE, FOR_EACH_ROD))
