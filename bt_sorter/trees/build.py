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

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from py_trees.behaviour import Behaviour

from bt_sorter.behaviours.base import REGISTRY, Context
from bt_sorter.blackboard import Blackboard
from bt_sorter.clock import LineClock
from bt_sorter.config import Config
from bt_sorter.record import Record
from bt_sorter.trees.groot import load_xml
from bt_sorter.trees.vocabulary import (
    FOR_EACH_ROD,
    INCLUDE,
    KINDS,
    PLACEHOLDER,
    NodeError,
    all_kinds,
    other_keys,
    params_of,
    substitute,
)
from bt_sorter.yamlio import Located, LocatedList, SpecError, load_file, load_text

MAX_DEPTH = 64  # nodes nested deeper than this are a mistake (or a recursive alias)
MAX_NODES = 5000  # more nodes than this are a mistake (or an alias bomb)
TOP_KEYS = ("root", "description")  # the keys a tree file may have at top level


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
        """``value`` with ``{rod}`` / ``{gate}`` replaced (:func:`substitute`); one outside a
        for_each_rod is an error."""
        if self.vars is None:
            plain = substitute(value, None)
            found = PLACEHOLDER.search(str(plain)) if isinstance(plain, str | list) else None
            if found:
                raise spec.error(f"{found.group(0)} in {key!r} is known only "
                                 f"inside '{FOR_EACH_ROD}:' (one branch per rod)", key)  # fmt: skip
            return plain
        return substitute(value, self.vars)

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
        except NodeError as bad:
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
            kinds = [k for k in kinds if not any(k in other_keys(o) for o in kinds if o != k)]
        if len(kinds) == 1:
            return kinds[0]
        if len(kinds) > 1:
            named = " and ".join(repr(k) for k in kinds)
            raise spec.error(
                f"two node kinds {named} in one node (a node has exactly one)", kinds[1]
            )
        words = {w for k in all_kinds() for w in other_keys(k)}
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
        hint = _hint(first, all_kinds()) or " (run.py --help lists the kinds)"
        raise spec.error(f"{label}unknown node kind {first!r}{hint}", first)

    def check_params(self, spec: Located, key: str, label: str) -> dict[str, Any]:
        params = params_of(key)
        allowed = other_keys(key)
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
            raise NodeError("needs a 'children:' list of nodes")
        items = spec["children"]
        if not isinstance(items, LocatedList):
            raise NodeError(f"'children' must be a list of nodes, got {_short(items)}", "children")
        if not items:
            raise NodeError("'children' is empty; give at least one node", "children")
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
            raise NodeError(f"needs a '{key}:' node")
        value = spec[key]
        if isinstance(value, list):
            raise NodeError(f"'{key}' takes one node, not a list (wrap them in a sequence)", key)
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
        return builder.tree_file(load_xml(path), str(path), 0)
    return builder.tree_file(load_file(path), str(path), 0)


def check_tree(path: str | Path) -> Behaviour:
    """Build the tree in ``path`` against a scratch context (default config, no record)."""
    return load_tree(path, Context(bb=Blackboard(), config=Config(), clock=LineClock(),
                                   record=Record()))  # fmt: skip
