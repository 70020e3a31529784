"""YAML tree files → py_trees trees, checked against the code before anything moves.

A tree file is data (safe YAML, no code)::

    root:
      sequence: sort the line        # node kind → node name
      memory: true                   # the kind's own parameters
      children:
        - StartBelt: start belt      # a registered leaf → its name
        - Wait: let the belt settle
          seconds: 2.0               # leaf parameters, checked against Leaf.params
        - include: push_subtree.yaml # a subtree file, relative to this one
          name: push for label       # optional: rename its root

Each node mapping has exactly one kind key: a composite, a decorator (py_trees.decorators),
a leaf from :data:`REGISTRY`, ``include``, or (in a ``children:`` list) ``for_each_rod``.
Composites and decorators declare their parameters with :class:`Param`, like leaves, so
validation and ``run.py --help`` are uniform. Node names are unique within a tree file
(each rod's branch of a ``for_each_rod`` too: give its names ``{rod}``): BehaviorTree.CPP
and Groot2 key a node by its path in the tree. Every problem is a :class:`SpecError`
naming file, line and node.

A tree serves whatever line config declares (``topology:``, :mod:`bt_sorter.topology`)
through ``for_each_rod``: in a ``children:`` list, its ``child:`` is built once per
classifying rod of the line, in belt order, with ``{rod}`` and ``{gate}`` (the gate whose
clear edge fires that rod) replaced in node names and parameter values. Plain text
replacement, no expressions: a value that is exactly ``{rod}`` or ``{gate}`` becomes that
number, anything else stays text::

    - parallel: rods
      policy: success_on_all
      children:
        - for_each_rod: one branch per classifying rod
          child:
            repeat: rod {rod}
            num_success: -1
            child:
              PushRod: push rod {rod} when its item clears gate {gate}
              rod: "{rod}"
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import py_trees
from py_trees.behaviour import Behaviour
from py_trees.common import OneShotPolicy, ParallelPolicy, Status

import bt_sorter.behaviours  # noqa: F401  (registers the leaves)
from bt_sorter.behaviours.base import REGISTRY, Context, Param, describe
from bt_sorter.blackboard import Blackboard
from bt_sorter.yamlio import Located, LocatedList, SpecError, load_file, load_text

MAX_DEPTH = 64  # nodes nested deeper than this are a mistake (or a recursive alias)
MAX_NODES = 5000  # more nodes than this are a mistake (or an alias bomb)
TOP_KEYS = ("root", "description")  # the keys a tree file may have at top level


class _Bad(Exception):  # noqa: N818  (internal: becomes a SpecError)
    """A problem with one node, raised by a kind's builder; ``key`` says which line."""

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
        raise _Bad("'selected' applies only to policy success_on_selected", "selected")
    policy: ParallelPolicy.Base
    if policy_name == "success_on_all":
        policy = ParallelPolicy.SuccessOnAll(synchronise=sync)
    elif policy_name == "success_on_one":
        if sync:
            raise _Bad("'synchronise' does not apply to policy success_on_one", "synchronise")
        policy = ParallelPolicy.SuccessOnOne()
    else:
        if not selected:
            raise _Bad("policy success_on_selected needs 'selected: [child names]'", "policy")
        by_name: dict[str, Behaviour] = {}
        for child in children:
            if child.name in by_name:
                raise _Bad(f"two children named {child.name!r}; 'selected' needs unique names")
            by_name[child.name] = child
        chosen = []
        for item in selected:
            if not isinstance(item, str) or item not in by_name:
                raise _Bad(f"selected {item!r} is not a child's name (children: "
                           f"{', '.join(repr(n) for n in by_name)})", "selected")  # fmt: skip
            chosen.append(by_name[item])
        policy = ParallelPolicy.SuccessOnSelected(chosen, synchronise=sync)
    return py_trees.composites.Parallel(name, policy=policy, children=children)


# --- decorators ---------------------------------------------------------------------------


def _retry(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    if v["num_failures"] < 1:
        raise _Bad(f"num_failures must be at least 1, got {v['num_failures']}", "num_failures")
    return py_trees.decorators.Retry(name, child, num_failures=v["num_failures"])


def _repeat(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    n = v["num_success"]
    if n < 1 and n != -1:
        raise _Bad(f"num_success must be at least 1, or -1 for forever; got {n}", "num_success")
    return py_trees.decorators.Repeat(name, child, num_success=n)


def _timeout(name: str, v: dict[str, Any], child: Behaviour, ctx: Context) -> Behaviour:
    seconds = v["seconds"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise _Bad(f"seconds must be a positive number, got {seconds}", "seconds")
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


def _all_kinds() -> list[str]:
    return [*KINDS, INCLUDE, FOR_EACH_ROD, *REGISTRY]


def _params_of(key: str) -> tuple[Param, ...]:
    if key in KINDS:
        return KINDS[key].params
    if key == INCLUDE:
        return _INCLUDE_PARAMS
    if key == FOR_EACH_ROD:
        return ()
    return REGISTRY[key].params


def _other_keys(key: str) -> set[str]:
    """Keys besides its kind key that a node of kind ``key`` may have."""
    structural = KINDS[key].structural if key in KINDS else ()
    if key == FOR_EACH_ROD:
        structural = ("child",)
    return {p.name for p in _params_of(key)} | set(structural)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class _Builder:
    """Builds one tree; counts nodes and keeps the stack of included files for cycles."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.count = 0
        self.files: list[Path] = []
        self.vars: dict[str, int] | None = None  # {rod, gate} inside a for_each_rod
        # names in use in each tree file being built (BehaviorTree.CPP's paths): name -> line
        self.names: list[dict[str, int]] = []

    def subst(self, value: Any, spec: Located, key: str) -> Any:
        """``value`` with ``{rod}`` / ``{gate}`` replaced (inside a for_each_rod): a value
        that is exactly one of them becomes its number; text and lists are replaced in.
        YAML reads an unquoted ``{rod}`` as a mapping ``{rod: null}``: taken as meant."""
        if isinstance(value, dict) and len(value) == 1 and None in value.values():
            word = next(iter(value))
            value = f"{{{word}}}" if word in ("rod", "gate") else value
        if isinstance(value, list):
            return [self.subst(v, spec, key) for v in value]
        if not isinstance(value, str) or not PLACEHOLDER.search(value):
            return value
        if self.vars is None:
            found = PLACEHOLDER.search(value)
            raise spec.error(f"{found.group(0) if found else value} in {key!r} is known only "
                             f"inside '{FOR_EACH_ROD}:' (one branch per rod)", key)  # fmt: skip
        names = self.vars
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return names[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(names[m.group(1)]), value)

    def tree_file(self, data: Any, file: str, depth: int) -> Behaviour:
        if data is None:
            raise SpecError("the file is empty; a tree file needs a 'root:' node", file)
        if not isinstance(data, Located):
            raise SpecError(
                f"a tree file is a mapping with a 'root:' node, got {_short(data)}",
                file,
                getattr(data, "line", None),
            )
        for key in data:
            if key not in TOP_KEYS:
                raise data.error(
                    f"unknown top-level key {key!r}{_hint(key, TOP_KEYS)} (known: root, "
                    "description)",
                    key,
                )
        if "root" not in data:
            raise data.error("missing the 'root:' node")
        if "description" in data and not isinstance(data["description"], str):
            raise data.error("'description' must be text", "description")
        self.names.append({})
        try:
            return self.node(data["root"], file, data.line_of("root"), depth)
        finally:
            self.names.pop()

    def node(self, spec: Any, file: str, line: int, depth: int) -> Behaviour:
        if depth > MAX_DEPTH:
            raise SpecError(f"the tree is nested deeper than {MAX_DEPTH} levels", file, line)
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(f"the tree has more than {MAX_NODES} nodes", file, line)
        if not isinstance(spec, Located):
            raise SpecError(
                "a node must be a mapping such as 'sequence: <name>' or '<Leaf>: <name>', "
                f"got {_short(spec)}",
                file,
                getattr(spec, "line", line),
            )
        key = self.kind_key(spec)
        if key == INCLUDE:
            return self.include(spec, depth)
        if key == FOR_EACH_ROD:
            where = f"'{FOR_EACH_ROD}:' ({_short(spec[key])})"
            raise spec.error(f"{where} belongs in a 'children:' list: it expands into one "
                             "child per rod", key)  # fmt: skip
        name = self.subst(spec[key], spec, key)
        if not isinstance(name, str) or not name.strip():
            raise spec.error(f"node ({key}): the name must be text, got {_short(name)}", key)
        label = f"node {name!r} ({key})"
        self.unique(spec, key, name, label)
        values = self.check_params(spec, key, label)
        try:
            if key not in KINDS:
                return self.leaf(spec, key, name, values, label)
            kind = KINDS[key]
            if kind.shape == "composite":
                children = self.children(spec, label, depth)
                return kind.build(name, values, children, self.ctx)
            child = self.one(spec, "child", label, depth)
            if kind.extra:
                extras = [self.one(spec, k, label, depth) for k in kind.extra]
                return kind.build(name, values, child, self.ctx, *extras)
            return kind.build(name, values, child, self.ctx)
        except _Bad as bad:
            raise spec.error(f"{label}: {bad}", bad.key) from None

    def unique(self, spec: Located, key: str, name: str, label: str) -> None:
        """Names are unique within a tree file (each rod's branch has its own {rod}):
        BehaviorTree.CPP, its TreeObserver and Groot2 key a node by its path in the tree."""
        used = self.names[-1] if self.names else {}
        if name in used:
            raise spec.error(f"{label}: the name is already used at line {used[name]} of this "
                             "tree; node names must be unique within a tree (BehaviorTree.CPP "
                             "and Groot2 key nodes by their path)", key)  # fmt: skip
        used[name] = spec.line_of(key)

    def kind_key(self, spec: Located) -> str:
        if not spec:
            raise spec.error("empty node: expected a kind key such as 'sequence: <name>'")
        kinds = [k for k in spec if k in KINDS or k in REGISTRY or k in (INCLUDE, FOR_EACH_ROD)]
        if len(kinds) > 1:  # a leaf parameter may share a decorator's key ("timeout")
            kinds = [k for k in kinds if not any(k in _other_keys(o) for o in kinds if o != k)]
        if len(kinds) == 1:
            return kinds[0]
        if len(kinds) > 1:
            named = " and ".join(repr(k) for k in kinds)
            raise spec.error(
                f"two node kinds {named} in one node (a node has exactly one)", kinds[1]
            )
        words = {w for k in _all_kinds() for w in _other_keys(k)}
        unknown = [k for k in spec if k not in words]
        if not unknown:
            found = ", ".join(repr(k) for k in spec)
            raise spec.error(
                f"node without a kind (found only {found}); start it with a kind such as "
                "'sequence: <name>' or '<Leaf>: <name>'"
            )
        first = unknown[0]
        name = spec[first]
        label = f"node {name!r}: " if isinstance(name, str) else ""
        hint = _hint(first, _all_kinds()) or " (run.py --help lists the kinds)"
        raise spec.error(f"{label}unknown node kind {first!r}{hint}", first)

    def check_params(self, spec: Located, key: str, label: str) -> dict[str, Any]:
        params = _params_of(key)
        allowed = _other_keys(key)
        for other in spec:
            if other != key and other not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise spec.error(
                    f"{label}: unknown parameter {other!r}{_hint(other, sorted(allowed))} "
                    f"(known: {known})",
                    other,
                )
        values: dict[str, Any] = {}
        for p in params:
            if p.name in spec:
                try:
                    values[p.name] = p.check(self.subst(spec[p.name], spec, p.name))
                except ValueError as exc:
                    raise spec.error(f"{label}: parameter {p.name!r} {exc}", p.name) from None
            elif p.required:
                raise spec.error(
                    f"{label}: missing required parameter {p.name!r} ({p.type_name()}: {p.doc})"
                )
            else:
                values[p.name] = p.default
        return values

    def leaf(
        self, spec: Located, key: str, name: str, values: dict[str, Any], label: str
    ) -> Behaviour:
        given = {k: v for k, v in values.items() if k in spec}
        try:
            return REGISTRY[key](name, self.ctx, **given)
        except SpecError:
            raise
        except Exception as exc:  # a leaf's own checks (ranges, labels): still file and line
            raise spec.error(f"{label}: {type(exc).__name__}: {exc}") from None

    def children(self, spec: Located, label: str, depth: int) -> list[Behaviour]:
        if "children" not in spec:
            raise _Bad("needs a 'children:' list of nodes")
        items = spec["children"]
        if not isinstance(items, LocatedList):
            raise _Bad(f"'children' must be a list of nodes, got {_short(items)}", "children")
        if not items:
            raise _Bad("'children' is empty; give at least one node", "children")
        out: list[Behaviour] = []
        for item, line in zip(items, items.item_lines, strict=True):
            if isinstance(item, Located) and FOR_EACH_ROD in item:
                out += self.for_each_rod(item, depth + 1)
            else:
                out.append(self.node(item, items.file, line, depth + 1))
        return out

    def for_each_rod(self, spec: Located, depth: int) -> list[Behaviour]:
        """``child:`` built once per classifying rod of the line's topology, in belt order,
        with ``{rod}`` and ``{gate}`` (the gate whose clear edge fires it) replaced."""
        what = spec[FOR_EACH_ROD]
        if not isinstance(what, str) or not what.strip():
            raise spec.error(f"{FOR_EACH_ROD}: give it a description (text), got "
                             f"{_short(what)}", FOR_EACH_ROD)  # fmt: skip
        label = f"{FOR_EACH_ROD} {what!r}"
        self.check_params(spec, FOR_EACH_ROD, label)
        if self.vars is not None:
            raise spec.error(f"{label}: inside another {FOR_EACH_ROD} ({{rod}} would be "
                             "ambiguous)", FOR_EACH_ROD)  # fmt: skip
        if "child" not in spec or isinstance(spec["child"], list):
            raise spec.error(f"{label}: needs one 'child:' node (built once per rod)")
        topology = self.ctx.bb.topology
        built = []
        try:
            for rod in topology.classifying_rods:
                self.vars = {"rod": rod, "gate": topology.gate_of(rod)}
                built.append(self.node(spec["child"], spec.file, spec.line_of("child"), depth))
        finally:
            self.vars = None
        return built

    def one(self, spec: Located, key: str, label: str, depth: int) -> Behaviour:
        if key not in spec:
            raise _Bad(f"needs a '{key}:' node")
        value = spec[key]
        if isinstance(value, list):
            raise _Bad(f"'{key}' takes one node, not a list (wrap them in a sequence)", key)
        return self.node(value, spec.file, spec.line_of(key), depth + 1)

    def include(self, spec: Located, depth: int) -> Behaviour:
        rel = spec[INCLUDE]
        if not isinstance(rel, str) or not rel.strip():
            raise spec.error(f"include: the file must be a path, got {_short(rel)}", INCLUDE)
        label = f"include {rel!r}"
        values = self.check_params(spec, INCLUDE, label)
        path = Path(spec.file).parent / rel
        try:
            resolved = path.resolve()
            found = resolved.is_file()
        except (OSError, ValueError, RuntimeError) as exc:
            raise spec.error(f"{label}: bad path {str(path)!r}: {exc}", INCLUDE) from None
        if not found:
            raise spec.error(f"{label}: no such file {str(path)!r}", INCLUDE)
        if resolved in self.files:
            chain = " -> ".join(p.name for p in [*self.files, resolved])
            raise spec.error(f"{label}: include cycle {chain}", INCLUDE)
        try:
            text = resolved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise spec.error(f"{label}: cannot read {str(path)!r}: {reason}", INCLUDE) from None
        self.files.append(resolved)
        root = self.tree_file(load_text(text, path), str(path), depth + 1)
        self.files.pop()
        if values["name"] is not None:
            if not values["name"].strip():
                raise spec.error(f"{label}: 'name' must not be empty", "name")
            root.name = values["name"]
        return root


def load_tree(path: str | Path, ctx: Context) -> Behaviour:
    """Read, check and build the tree in ``path`` (YAML, or Groot2's XML,
    ``bt_sorter.trees.groot``); every problem is a SpecError."""
    builder = _Builder(ctx)
    try:
        builder.files.append(Path(path).resolve())
    except (OSError, ValueError, RuntimeError) as exc:
        raise SpecError(f"bad path: {exc}", path) from None
    if Path(path).suffix.lower() == ".xml":
        from bt_sorter.trees.groot import load_xml

        return builder.tree_file(load_xml(path), str(path), 0)
    return builder.tree_file(load_file(path), str(path), 0)


def check_tree(path: str | Path) -> Behaviour:
    """Build the tree in ``path`` against a scratch context (default config, no record)."""
    from bt_sorter.blackboard import Blackboard
    from bt_sorter.clock import LineClock
    from bt_sorter.config import Config
    from bt_sorter.record import Record

    return load_tree(path, Context(bb=Blackboard(), config=Config(), clock=LineClock(),
                                   record=Record()))  # fmt: skip


def node_catalogue() -> str:
    """Help text: the composites, decorators, include and every registered leaf."""
    out = ["Composites (a 'children:' list of nodes):"]
    out += [
        "  " + k.describe().replace("\n", "\n  ") for k in KINDS.values() if k.shape == "composite"
    ]
    out.append("")
    out.append("Decorators (one 'child:' node):")
    out += [
        "  " + k.describe().replace("\n", "\n  ") for k in KINDS.values() if k.shape == "decorator"
    ]
    out.append("")
    out.append("Subtrees:")
    out.append("  include: <file.yaml> (path relative to the including file; it has a 'root:')")
    out.append("      name (str, optional): new name for the included root")
    out.append(f"  {FOR_EACH_ROD}: <description> (in a 'children:' list; child: node): the "
               "child once per classifying rod of config topology:, with {rod} and {gate} "
               "(the gate that fires it) replaced in names and parameters")  # fmt: skip
    out.append("")
    out.append("Leaves (by class name; parameters as sibling keys):")
    if not REGISTRY:
        out.append("  (none registered)")
    out += ["  " + describe(REGISTRY[n]).replace("\n", "\n  ") for n in sorted(REGISTRY)]
    return "\n".join(out)
