"""The exported XML against BehaviorTree.CPP's own rules (issue 21), derived here from its
source rather than from our exporter:

- a port declared without a ``default`` in ``<TreeNodesModel>`` is ``use="required"`` in
  the schema ``writeTreeXSD()`` derives, and ``XMLParser`` fills only ports that have one:
  such a port must be set on every instance;
- an instance may set only ports its model declares (``XMLParser`` refuses the others);
- a node's path is its tree's path plus its name (``config.path = prefix_path +
  instance_name``): two nodes of one tree with one name share a path, and BT.CPP's
  ``TreeObserver`` and Groot2 refuse or confuse them.

BehaviorTree.CPP's own nodes that the export uses, with the ports they declare there
(``src/controls/*.cpp``, ``src/decorators/*.cpp``): the ones without a default.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard
from bt_sorter.clock import LineClock
from bt_sorter.config import Config
from bt_sorter.record import Record
from bt_sorter.trees.build import load_tree
from bt_sorter.trees.cli import export_xml
from bt_sorter.yamlio import SpecError

TREES = sorted(Path("trees").glob("*.yaml"))
# BT.CPP 4: the built-ins' ports {name: has a default}
BUILTIN_PORTS: dict[str, dict[str, bool]] = {
    "Sequence": {},
    "ReactiveSequence": {},
    "Fallback": {},
    "ReactiveFallback": {},
    "Inverter": {},
    "ForceSuccess": {},
    "ForceFailure": {},
    "RetryUntilSuccessful": {"num_attempts": False},  # retry_node.h: InputPort<int>, no default
    "Repeat": {"num_cycles": False},  # repeat_node.h: InputPort<int>, no default
}
NOT_PORTS = {"name", "ID", "_uid", "_fullpath", "_autoremap"}


def models(root: ET.Element) -> dict[str, dict[str, bool]]:
    """``<TreeNodesModel>``: each declared node's ports, and whether each has a default."""
    out = dict(BUILTIN_PORTS)
    for model in root.iter("TreeNodesModel"):
        for entry in model:
            ports = {}
            for port in entry:
                if port.tag in ("input_port", "output_port", "inout_port"):
                    ports[port.attrib["name"]] = "default" in port.attrib
            out[entry.attrib["ID"]] = ports
    return out


def btcpp_problems(xml: str) -> list[str]:
    """What BehaviorTree.CPP would refuse in this document (its rules, restated)."""
    root = ET.fromstring(xml)
    known = models(root)
    problems = []
    for tree in root.iter("BehaviorTree"):
        paths: dict[str, str] = {}
        for node in tree.iter():
            if node is tree or not isinstance(node.tag, str):
                continue
            if node.tag == "SubTree":
                continue  # its path is its own subtree's
            if node.tag not in known:
                problems.append(f"{tree.get('ID')}: <{node.tag}> is not declared")
                continue
            name = node.get("name", node.tag)
            if name in paths:
                problems.append(f"{tree.get('ID')}: two nodes named {name!r} share a path")
            paths[name] = node.tag
            ports = known[node.tag]
            for port, has_default in ports.items():
                if not has_default and port not in node.attrib:
                    problems.append(f"{tree.get('ID')}: {name!r} ({node.tag}) leaves the "
                                    f"required port {port!r} unset")  # fmt: skip
            for attr in node.attrib:
                if attr not in NOT_PORTS and attr not in ports:
                    problems.append(f"{tree.get('ID')}: {name!r} ({node.tag}) sets the "
                                    f"undeclared port {attr!r}")  # fmt: skip
    return problems


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_every_exported_tree_passes_btcpp_port_and_path_rules(tree: Path) -> None:
    assert btcpp_problems(export_xml(tree)) == []


def test_the_rules_catch_what_btcpp_refuses() -> None:
    """The checker itself: each rule found in a mutated copy of a real export."""
    xml = export_xml("trees/sort_pipelined.yaml")
    assert btcpp_problems(xml) == []
    unset = xml.replace('<input_port name="max_quiet" type="double" default=""',
                        '<input_port name="max_quiet" type="double"')  # fmt: skip
    assert unset != xml
    assert any("required port 'max_quiet'" in p for p in btcpp_problems(unset))
    typo = xml.replace('empty_feeds="2"', 'empty_feed="2"')
    assert typo != xml and any("undeclared port 'empty_feed'" in p for p in btcpp_problems(typo))
    twin = xml.replace('name="feed item when safe"', 'name="feed item"')
    assert twin != xml and any("share a path" in p for p in btcpp_problems(twin))


def _ctx() -> Context:
    return Context(bb=Blackboard(), config=Config(), clock=LineClock(), record=Record())


def test_two_nodes_with_one_name_in_a_tree_file_are_refused_with_file_line_node(
    tmp_path: Path,
) -> None:
    path = tmp_path / "twins.yaml"
    path.write_text(
        "root:\n"
        "  sequence: top\n"
        "  children:\n"
        "    - StartBelt: go\n"
        "    - FeedItem: feed item\n"
        "    - FeedItem: feed item\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as err:
        load_tree(path, _ctx())
    assert err.value.file == str(path) and err.value.line == 6
    assert "node 'feed item' (FeedItem)" in str(err.value)
    assert "already used at line 5" in str(err.value)


def test_each_rods_branch_needs_its_own_name(tmp_path: Path) -> None:
    """for_each_rod builds its child once per rod: without {rod} in a name, the running
    tree has that name once per rod."""
    text = (
        "root:\n"
        "  parallel: rods\n"
        "  policy: success_on_all\n"
        "  children:\n"
        "    - for_each_rod: every rod\n"
        "      child:\n"
        "        PushRod: push\n"
        '        rod: "{rod}"\n'
    )
    path = tmp_path / "rods.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=r"node 'push' .*already used at line 7"):
        load_tree(path, _ctx())
    path.write_text(text.replace("PushRod: push", "PushRod: push {rod}"), encoding="utf-8")
    root = load_tree(path, _ctx())
    assert [c.name for c in root.children] == ["push 2", "push 3", "push 4"]


def test_a_port_groot2_filled_with_its_empty_default_reads_back_as_unset(tmp_path: Path) -> None:
    xml = export_xml("trees/one_item.yaml").replace(
        '<FeedItem name="feed item"', '<FeedItem name="feed item" hold="" back=""'
    )
    assert 'hold=""' in xml
    path = tmp_path / "filled.xml"
    path.write_text(xml, encoding="utf-8")
    root = load_tree(path, _ctx())
    feed = next(n for n in root.iterate() if n.name == "feed item")
    assert feed.hold is None and feed.back is None
