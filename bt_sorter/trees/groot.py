"""Groot2 interop: tree files as BehaviorTree.CPP v4 XML, and back to YAML.

``python -m bt_sorter.trees export trees/sort.yaml -o sort.xml`` writes
``<root BTCPP_format="4">`` with one ``<BehaviorTree ID=...>`` per file (the file and each
file it includes, as ``<SubTree ID=...>``) and a ``<TreeNodesModel>`` that declares every
node the trees use that BehaviorTree.CPP does not know, with its ports from the ``Param``
declarations, so Groot2 opens it as a tree it can edit. ``import X.xml -o X.yaml`` writes
the YAML back (one file per ``BehaviorTree``); ``run.py --tree X.xml`` and ``--check`` read
the XML directly through :func:`load_xml`, with the same checks and ``file:line`` errors.

Where a BehaviorTree.CPP built-in means exactly what our node means, the built-in is used:
a sequence that resumes at its running child is ``Sequence``, one that restarts every
tick ``ReactiveSequence``; a selector likewise ``Fallback`` / ``ReactiveFallback``;
``retry`` is ``RetryUntilSuccessful`` (num_attempts), ``repeat`` is ``Repeat``
(num_cycles), ``inverter`` ``Inverter``, ``failure_is_success`` ``ForceSuccess``,
``success_is_failure`` ``ForceFailure``. The rest are declared nodes of our own:
``PolicyParallel`` (py_trees' parallel policies), ``LineTimeout`` (line seconds),
``OneShot``, ``EternalGuard`` (children: the condition, then the guarded node) and the
other status converters. Lists (``selected``) are ``;``-separated, as BehaviorTree.CPP
writes vectors. ``for_each_rod`` (one branch per classifying rod of the line's topology)
is exported as it is written, not expanded: a declared control node ``ForEachRod`` with
one child, whose names and ports keep ``{rod}`` / ``{gate}``, which BehaviorTree.CPP
reads as blackboard entries (the ones ``ForEachRod`` sets for each rod in turn), so the
XML serves every line the YAML does. Every optional port has a ``default`` in the model (an empty
one where ours means "not set", which the import reads back as not set): BehaviorTree.CPP
requires a port without one on every instance. A tree file's ``description`` is a comment first
in its BehaviorTree (the schema has no attribute for it); Groot2's ``_fullpath`` /
``_uid`` are ignored.

The XML is read with expat, DTDs and entities refused (no entity expansion), keeping
the line of every element for the errors.
"""

from __future__ import annotations

import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_origin
from xml.parsers import expat

import yaml

from bt_sorter.behaviours.base import REGISTRY, Param, summary
from bt_sorter.coerce import WrongTypeError, convert
from bt_sorter.trees.vocabulary import FOR_EACH_ROD, KINDS, kind_key
from bt_sorter.yamlio import Located, LocatedList, SpecError, load_file, read_spec_text

BTCPP_FORMAT = "4"
LIST_SEP = ";"
DESCRIPTION = "description: "  # a tree file's description: a comment first in its BehaviorTree
METADATA = {"_fullpath", "_uid", "_autoremap"}  # what Groot2 / BehaviorTree.CPP may add

# Our kind -> (XML tag, {our parameter: its port}); sequence and selector pick by memory.
MEMORY_TAGS = {
    ("sequence", True): "Sequence",
    ("sequence", False): "ReactiveSequence",
    ("selector", True): "Fallback",
    ("selector", False): "ReactiveFallback",
}
TAGS: dict[str, tuple[str, dict[str, str]]] = {
    "parallel": ("PolicyParallel", {}),
    "retry": ("RetryUntilSuccessful", {"num_failures": "num_attempts"}),
    "repeat": ("Repeat", {"num_success": "num_cycles"}),
    "timeout": ("LineTimeout", {}),
    "one_shot": ("OneShot", {}),
    "eternal_guard": ("EternalGuard", {}),
    "inverter": ("Inverter", {}),
    "failure_is_success": ("ForceSuccess", {}),
    "success_is_failure": ("ForceFailure", {}),
    "failure_is_running": ("FailureIsRunning", {}),
    "running_is_failure": ("RunningIsFailure", {}),
    "running_is_success": ("RunningIsSuccess", {}),
    "success_is_running": ("SuccessIsRunning", {}),
}
BUILTIN_TAGS = {*MEMORY_TAGS.values(), "RetryUntilSuccessful", "Repeat", "Inverter",
                "ForceSuccess", "ForceFailure", "SubTree"}  # fmt: skip
# BehaviorTree.CPP's own nodes' ports that have no default there (set on every instance)
BUILTIN_REQUIRED = {"RetryUntilSuccessful": ("num_attempts",), "Repeat": ("num_cycles",)}
KIND_OF_TAG = {tag: kind for kind, (tag, _) in TAGS.items()}
MEMORY_OF_TAG = {tag: (kind, memory) for (kind, memory), tag in MEMORY_TAGS.items()}
SUBTREE = "SubTree"
FOR_EACH_ROD_TAG = "ForEachRod"
FOR_EACH_ROD_DOC = (
    "ticks its child once per classifying rod of the line (config topology:), with the "
    "blackboard entries {rod} and {gate} (the gate that fires it) set for each"
)


# --- YAML -> XML ------------------------------------------------------------------------------


def _xml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        parts = [_xml_value(v, where) for v in value]
        if any(LIST_SEP in p for p in parts):
            raise SpecError(f"{where}: a list item contains {LIST_SEP!r}; XML cannot hold it")
        return LIST_SEP.join(parts)
    return str(value)


def _port_type(param: Param) -> str:
    if get_origin(param.type) is Literal:
        return "std::string"
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    names = {bool: "bool", int: "int", float: "double", str: "std::string", list: "std::string"}
    return "/".join(names.get(t, "std::string") for t in types)


def _port_doc(param: Param) -> str:
    if get_origin(param.type) is Literal:
        return f"{param.doc} (one of {param.type_name()})"
    if param.type is list:
        return f"{param.doc} ({LIST_SEP}-separated)"
    return param.doc


@dataclass
class _Exporter:
    """Builds the XML of one tree file and every file it includes."""

    trees: dict[str, ET.Element] = field(default_factory=dict)  # ID -> <BehaviorTree>
    ids: dict[Path, str] = field(default_factory=dict)
    used: dict[str, tuple[str, tuple[Param, ...], dict[str, str]]] = field(default_factory=dict)

    def tree(self, path: Path) -> str:
        """The ID of ``path``'s BehaviorTree, converting the file on first use."""
        resolved = path.resolve()
        if resolved in self.ids:
            return self.ids[resolved]
        tree_id, n = path.stem, 2
        while tree_id in self.trees:
            tree_id, n = f"{path.stem}_{n}", n + 1
        self.ids[resolved] = tree_id
        element = ET.Element("BehaviorTree", {"ID": tree_id})
        self.trees[tree_id] = element
        data = load_file(path)
        if isinstance(data, dict) and isinstance(data.get("description"), str):
            # JSON text, with "--" (not allowed in a comment) spelled "-\u002d"
            text = json.dumps(data["description"], ensure_ascii=False).replace("--", "-\\u002d")
            element.append(ET.Comment(f" {DESCRIPTION}{text} "))
        element.append(self.node(data["root"], path))
        return tree_id

    def node(self, spec: Located, file: Path) -> ET.Element:
        key = kind_key(spec)
        name = spec[key]
        if key == "include":
            attrs = {"ID": self.tree(file.parent / name)}
            if spec.get("name") is not None:
                attrs["name"] = spec["name"]
            return ET.Element(SUBTREE, attrs)
        if key == FOR_EACH_ROD:
            self.used[FOR_EACH_ROD_TAG] = ("Control", (), {})
            element = ET.Element(FOR_EACH_ROD_TAG, {"name": name})
            element.append(self.node(spec["child"], file))
            return element
        element = self.element(spec, key, name, file)
        if key == "eternal_guard":
            element.append(self.node(spec["condition"], file))
            element.append(self.node(spec["child"], file))
        elif "children" in spec:
            element.extend(self.node(child, file) for child in spec["children"])
        elif "child" in spec:
            element.append(self.node(spec["child"], file))
        return element

    def value(self, value: Any) -> Any:
        """A parameter's value as written (the running tree's exporter replaces {rod})."""
        return value

    def element(self, spec: Located, key: str, name: str, file: Path) -> ET.Element:
        """One node's element, its tag and ports, without children; its model is noted."""
        params = KINDS[key].params if key in KINDS else REGISTRY[key].params
        ports: dict[str, str] = {}
        if key in ("sequence", "selector"):
            memory = spec.get("memory", next(p.default for p in params if p.name == "memory"))
            tag, skip = MEMORY_TAGS[(key, bool(memory))], {"memory"}
        elif key in TAGS:
            tag, ports = TAGS[key]
            skip = set()
        else:
            tag, skip = key, set()
        element = ET.Element(tag, {"name": name})
        for p in params:
            if p.name in spec and p.name not in skip:
                where = f"{file}:{spec.line_of(p.name)}: node {name!r}"
                value = self.value(spec[p.name])
                element.set(ports.get(p.name, p.name), _xml_value(value, where))
            elif ports.get(p.name) in BUILTIN_REQUIRED.get(tag, ()):  # our default, said
                element.set(ports[p.name], _xml_value(p.default, f"{file}: node {name!r}"))
        if tag not in BUILTIN_TAGS:
            shown = tuple(p for p in params if p.name not in skip)
            self.used[tag] = (self._category(key), shown, ports)
        return element

    @staticmethod
    def _category(key: str) -> str:
        if key == "eternal_guard" or (key in KINDS and KINDS[key].shape == "composite"):
            return "Control"
        if key in KINDS:
            return "Decorator"
        return "Condition" if getattr(REGISTRY[key], "condition", False) else "Action"

    def model(self) -> ET.Element:
        model = ET.Element("TreeNodesModel")
        for tag in sorted(self.used):
            category, params, ports = self.used[tag]
            element = ET.SubElement(model, category, {"ID": tag})
            for p in params:
                attrs = {"name": ports.get(p.name, p.name), "type": _port_type(p)}
                if not p.required:  # BehaviorTree.CPP: a port without a default is required
                    attrs["default"] = "" if p.default is None else _xml_value(p.default, tag)
                port = ET.SubElement(element, "input_port", attrs)
                port.text = _port_doc(p)
            doc = self._doc(tag)
            if doc:
                ET.SubElement(element, "description").text = doc
        return model

    @staticmethod
    def _doc(tag: str) -> str:
        if tag == FOR_EACH_ROD_TAG:
            return FOR_EACH_ROD_DOC
        if tag in REGISTRY:
            return summary(REGISTRY[tag])
        kind = KIND_OF_TAG.get(tag)
        return str(KINDS[kind].doc) if kind else ""


def xml_of(path: str | Path) -> str:
    """The BehaviorTree.CPP v4 XML of the tree file ``path``, which must be checked
    (:func:`bt_sorter.trees.cli.export_xml` checks it first)."""
    path = Path(path)
    exporter = _Exporter()
    main = exporter.tree(path)
    root = ET.Element("root", {"BTCPP_format": BTCPP_FORMAT, "main_tree_to_execute": main})
    root.extend(exporter.trees.values())
    root.append(exporter.model())
    ET.indent(root, space="  ")
    header = f"<!-- exported from {path.name} by bt_sorter (python -m bt_sorter.trees export) -->"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{header}\n{ET.tostring(root, "unicode")}\n'


# --- XML -> specs -----------------------------------------------------------------------------


@dataclass
class _Element:
    tag: str
    attrib: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def parse_xml(text: str, file: str) -> _Element:
    """Parse XML text into elements with their lines; no DTD, no entities."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    top: list[_Element] = []

    def refuse(*_: Any) -> None:
        raise SpecError("DTDs and entity declarations are not allowed", file,
                        parser.CurrentLineNumber)  # fmt: skip

    def start(tag: str, attrib: dict[str, str]) -> None:
        element = _Element(tag, dict(attrib), parser.CurrentLineNumber)
        (stack[-1].children if stack else top).append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def comment(text: str) -> None:
        if stack:
            stack[-1].comments.append(text.strip())

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CommentHandler = comment
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        message = expat.errors.messages[exc.code] if exc.code else str(exc)
        raise SpecError(f"XML syntax error: {message}", file, exc.lineno) from None
    except RecursionError:
        raise SpecError("XML is nested too deeply", file) from None
    return top[0]


def _typed(param: Param, text: str) -> Any:
    """An attribute's text as the parameter's type (left as text if it is none: the loader
    then reports the wrong type with file and line)."""
    try:
        return convert(param.type, text, text=True, sep=LIST_SEP)
    except WrongTypeError:
        return text


def _located(file: str, line: int, items: list[tuple[str, Any]]) -> Located:
    spec = Located(items)
    spec.file, spec.line = file, line
    spec.key_lines = dict.fromkeys(spec, line)
    return spec


SubtreeFn = Callable[[_Element, str | None], Located]


class _Reader:
    """Turns one XML document into tree specs the YAML loader's builder understands."""

    def __init__(self, root: _Element, file: str) -> None:
        self.file = file
        if root.tag != "root":
            raise SpecError(f"the document element must be <root>, got <{root.tag}>", file,
                            root.line)  # fmt: skip
        fmt = root.attrib.get("BTCPP_format")
        if fmt != BTCPP_FORMAT:
            raise SpecError(f'expected <root BTCPP_format="4">, got {fmt!r}', file, root.line)
        self.trees: dict[str, _Element] = {}
        for child in root.children:
            if child.tag == "TreeNodesModel":
                continue
            if child.tag != "BehaviorTree":
                raise SpecError(f"unsupported element <{child.tag}> in <root> (only "
                                "BehaviorTree and TreeNodesModel)", file, child.line)  # fmt: skip
            tree_id = child.attrib.get("ID")
            if not tree_id:
                raise SpecError("<BehaviorTree> without an ID", file, child.line)
            if tree_id in self.trees:
                raise SpecError(f"two BehaviorTrees with ID {tree_id!r}", file, child.line)
            if len(child.children) != 1:
                raise SpecError(f"BehaviorTree {tree_id!r} must hold exactly one node, "
                                f"holds {len(child.children)}", file, child.line)  # fmt: skip
            self.trees[tree_id] = child
        main = root.attrib.get("main_tree_to_execute")
        if main is None:
            if len(self.trees) != 1:
                raise SpecError("several BehaviorTrees and no main_tree_to_execute", file,
                                root.line)  # fmt: skip
            main = next(iter(self.trees))
        if main not in self.trees:
            raise SpecError(f"main_tree_to_execute {main!r}: no BehaviorTree with that ID",
                            file, root.line)  # fmt: skip
        self.main = main

    def tree_file(self, tree_id: str, subtree: SubtreeFn) -> Located:
        """A tree's top level ({root:, description:}) with SubTrees made by ``subtree``."""
        element = self.trees[tree_id]
        items: list[tuple[str, Any]] = []
        described = [c for c in element.comments if c.startswith(DESCRIPTION)]
        if described:
            text = described[0][len(DESCRIPTION) :]
            with contextlib.suppress(ValueError):  # else written by hand: the text as is
                text = json.loads(text) if text.startswith('"') else text
            items.append(("description", text))
        items.append(("root", self.node(element.children[0], subtree)))
        return _located(self.file, element.line, items)

    def node(self, element: _Element, subtree: SubtreeFn) -> Located:
        attrs = {k: v for k, v in element.attrib.items() if k not in METADATA}
        name = attrs.pop("name", element.tag)
        if element.tag == SUBTREE:
            if "ID" not in attrs:
                raise SpecError("<SubTree> without an ID", self.file, element.line)
            tree_id = attrs.pop("ID")
            if tree_id not in self.trees:
                raise SpecError(f"SubTree {tree_id!r}: no BehaviorTree with that ID", self.file,
                                element.line)  # fmt: skip
            if attrs:
                raise SpecError(f"SubTree {tree_id!r}: port remapping ({', '.join(attrs)}) is "
                                "not supported", self.file, element.line)  # fmt: skip
            if element.children:
                raise SpecError(f"SubTree {tree_id!r} takes no children", self.file, element.line)
            return subtree(element, element.attrib.get("name"))
        if element.tag == FOR_EACH_ROD_TAG:
            return self.for_each_rod(element, name, attrs, subtree)
        ports: dict[str, str] = {}
        items: list[tuple[str, Any]]
        if element.tag in MEMORY_OF_TAG:
            key, memory = MEMORY_OF_TAG[element.tag]
            items = [(key, name)]
            default = next(p.default for p in KINDS[key].params if p.name == "memory")
            if "memory" not in attrs and memory != default:  # py_trees' parser writes memory=
                items.append(("memory", memory))
        elif element.tag in KIND_OF_TAG:
            key = KIND_OF_TAG[element.tag]
            ports = {port: ours for ours, port in TAGS[key][1].items()}
            items = [(key, name)]
        else:  # a leaf (or an unknown kind: the builder says so, with a hint)
            key = element.tag
            items = [(key, name)]
        params = {p.name: p for p in (KINDS[key].params if key in KINDS else
                                      REGISTRY[key].params if key in REGISTRY else ())}  # fmt: skip
        for attr, text in attrs.items():
            ours = ports.get(attr, attr)
            if text == "" and ours in params and params[ours].default is None:
                continue  # the model's default="" (Groot2 fills it in): not set
            items.append((ours, _typed(params[ours], text) if ours in params else text))
        children = [self.node(c, subtree) for c in element.children]
        kind = KINDS.get(key)
        if kind is not None and kind.shape == "composite":
            listed = LocatedList(children)
            listed.file, listed.line = self.file, element.line
            listed.item_lines = [c.line for c in element.children]
            items.append(("children", listed))
        elif key == "eternal_guard":
            if len(children) != 2:
                message = "needs two children, the condition then the guarded node"
                raise SpecError(f"node {name!r} (EternalGuard): {message}", self.file, element.line)
            items += [("condition", children[0]), ("child", children[1])]
        elif kind is not None:
            if len(children) != 1:
                raise SpecError(f"node {name!r} ({element.tag}): a decorator needs exactly one "
                                f"child, has {len(children)}", self.file, element.line)  # fmt: skip
            items.append(("child", children[0]))
        elif children:
            raise SpecError(f"node {name!r} ({element.tag}): a leaf takes no children",
                            self.file, element.line)  # fmt: skip
        return _located(self.file, element.line, items)

    def for_each_rod(
        self, element: _Element, name: str, attrs: dict[str, str], subtree: SubtreeFn
    ) -> Located:
        if attrs:
            raise SpecError(f"node {name!r} ({FOR_EACH_ROD_TAG}): no ports, got "
                            f"{', '.join(attrs)}", self.file, element.line)  # fmt: skip
        if len(element.children) != 1:
            raise SpecError(f"node {name!r} ({FOR_EACH_ROD_TAG}): needs exactly one child, "
                            f"has {len(element.children)}", self.file, element.line)  # fmt: skip
        child = self.node(element.children[0], subtree)
        return _located(self.file, element.line, [(FOR_EACH_ROD, name), ("child", child)])


def read_xml(path: str | Path) -> _Reader:
    """Parse a BehaviorTree.CPP v4 XML file (SpecError with file:line on any problem)."""
    return _Reader(parse_xml(read_spec_text(path), str(path)), str(path))


def load_xml(path: str | Path) -> Located:
    """The main tree of an XML file as the loader's data, each SubTree inlined in place."""
    reader = read_xml(path)
    stack: list[str] = []

    def inline(element: _Element, name: str | None) -> Located:
        tree_id = element.attrib["ID"]
        if tree_id in stack:
            chain = " -> ".join([*stack, tree_id])
            raise SpecError(f"SubTree cycle {chain}", reader.file, element.line)
        stack.append(tree_id)
        spec = reader.tree_file(tree_id, inline)["root"]
        stack.pop()
        if name is not None:
            kind = next(iter(spec))  # the kind key comes first
            spec[kind] = name
        return spec

    stack.append(reader.main)
    return reader.tree_file(reader.main, inline)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def import_xml(path: str | Path, out: str | Path) -> list[Path]:
    """Write the XML's trees as YAML: the main tree to ``out``, each other BehaviorTree to
    ``<ID>.yaml`` beside it, SubTrees as includes. Returns the files written."""
    reader = read_xml(path)
    out = Path(out)
    names = {tree_id: out.name if tree_id == reader.main else f"{tree_id}.yaml"
             for tree_id in reader.trees}  # fmt: skip

    def include(element: _Element, name: str | None) -> Located:
        items: list[tuple[str, Any]] = [("include", names[element.attrib["ID"]])]
        if name is not None:
            items.append(("name", name))
        return _located(reader.file, element.line, items)

    written = []
    out.parent.mkdir(parents=True, exist_ok=True)
    for tree_id, file_name in names.items():
        data = _plain(reader.tree_file(tree_id, include))
        target = out.parent / file_name
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        target.write_text(f"# imported from {Path(path).name} (BehaviorTree {tree_id})\n{text}",
                          encoding="utf-8")  # fmt: skip
        written.append(target)
    return written
