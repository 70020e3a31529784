"""The command line of tree files: ``run.py --help``'s catalogue of nodes, and
``python -m bt_sorter.trees export|import`` (Groot2's BehaviorTree.CPP v4 XML), each
checking the tree before it converts it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bt_sorter.behaviours.base import REGISTRY, describe
from bt_sorter.trees.build import check_tree
from bt_sorter.trees.groot import import_xml, xml_of
from bt_sorter.trees.vocabulary import FOR_EACH_ROD, KINDS
from bt_sorter.yamlio import SpecError


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


def export_xml(path: str | Path) -> str:
    """The BehaviorTree.CPP v4 XML of the tree file ``path`` (checked first: a SpecError)."""
    check_tree(path)
    return xml_of(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m bt_sorter.trees export|import``."""
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.trees",
        description="Convert tree files between YAML and Groot2's BehaviorTree.CPP v4 XML.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="YAML tree (and its includes) -> one XML file")
    exp.add_argument("tree", type=Path)
    exp.add_argument("-o", "--output", type=Path, help="XML file (default: stdout)")
    imp = sub.add_parser("import", help="XML -> YAML (one file per BehaviorTree)")
    imp.add_argument("xml", type=Path)
    imp.add_argument("-o", "--output", type=Path, required=True, help="main YAML file")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            text = export_xml(args.tree)
            if args.output is None:
                sys.stdout.write(text)
            else:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(text, encoding="utf-8")
                print(f"wrote {args.output}")
        else:
            check_tree(args.xml)
            for path in import_xml(args.xml, args.output):
                print(f"wrote {path}")
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
