"""Groot2 interop: every tree in trees/ goes to BehaviorTree.CPP v4 XML and back unchanged,
an XML tree runs with run.py, and errors in XML name file and line."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bt_sorter.behaviours.base import REGISTRY
from bt_sorter.trace import tree_shape
from bt_sorter.trees.build import check_tree, load_tree
from bt_sorter.trees.cli import export_xml
from bt_sorter.trees.groot import import_xml
from bt_sorter.trees.vocabulary import FOR_EACH_ROD, INCLUDE, KINDS, params_of
from bt_sorter.yamlio import load_file

ROOT = Path(__file__).resolve().parent.parent
TREES = sorted((ROOT / "trees").glob("*.yaml"))  # every tree, including ones added later


def canonical(path: Path) -> Any:
    """A tree file as plain data: every node's kind, name, parameters (defaults filled in)
    and children; includes as the canonical data of the file they include."""
    data = load_file(path)
    return {"description": data.get("description"), "root": _node(data["root"], path)}


def _node(spec: dict[str, Any], file: Path) -> Any:
    key = next(k for k in spec if k in KINDS or k in REGISTRY or k in (INCLUDE, FOR_EACH_ROD))
    if key == INCLUDE:
        return {"include": canonical(file.parent / spec[INCLUDE]), "name": spec.get("name")}
    params = {p.name: spec.get(p.name, p.default) for p in params_of(key)}
    out: dict[str, Any] = {"kind": key, "name": spec[key], "params": params}
    for structural in ("children", "child", "condition"):
        if structural in spec:
            value = spec[structural]
            out[structural] = (
                [_node(c, file) for c in value] if isinstance(value, list) else _node(value, file)
            )
    return out


def test_trees_folder_has_trees() -> None:
    assert len(TREES) >= 6


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_tree_round_trips_through_groot_xml(tree: Path, tmp_path: Path) -> None:
    """YAML -> XML -> YAML gives the same tree; the XML itself builds the same tree."""
    xml = tmp_path / f"{tree.stem}.xml"
    xml.write_text(export_xml(tree), encoding="utf-8")
    written = import_xml(xml, tmp_path / "back" / tree.name)
    assert written[0] == tmp_path / "back" / tree.name
    assert canonical(written[0]) == canonical(tree)
    built = tree_shape(check_tree(tree))
    assert tree_shape(check_tree(xml)) == built
    assert tree_shape(check_tree(written[0])) == built


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_export_is_btcpp_v4_with_every_leaf_declared(tree: Path) -> None:
    """<root BTCPP_format="4">, a BehaviorTree per file, every leaf in TreeNodesModel with
    its declared parameters as input ports."""
    root = ET.fromstring(export_xml(tree))
    assert root.tag == "root" and root.get("BTCPP_format") == "4"
    ids = [bt.get("ID") for bt in root.findall("BehaviorTree")]
    assert root.get("main_tree_to_execute") == tree.stem == ids[0]
    assert {st.get("ID") for st in root.iter("SubTree")} <= set(ids)
    model = {m.get("ID"): m for m in root.find("TreeNodesModel")}
    leaves = {e.tag for bt in root.findall("BehaviorTree") for e in bt.iter() if e.tag in REGISTRY}
    assert leaves
    for leaf in leaves:
        assert leaf in model, f"{leaf} not declared"
        ports = [p.get("name") for p in model[leaf].findall("input_port")]
        assert ports == [p.name for p in REGISTRY[leaf].params]


def test_model_describes_each_leaf_in_whole_sentences() -> None:
    """Groot2 shows a leaf's description from the model: its docstring's first paragraph,
    whole, even where it runs over several lines (TrackItems', StackEmpty's)."""
    root = ET.fromstring(export_xml(ROOT / "trees" / "sort_pipelined.yaml"))
    model = {m.get("ID"): m.findtext("description") for m in root.find("TreeNodesModel")}
    assert model["TrackItems"].startswith("Match this tick's gate edges and pictures to the ")
    assert model["TrackItems"].endswith(" a stray edge is counted and ignored.")
    assert model["StackEmpty"].endswith(" lengthened after an earlier empty feed, else FAILURE.")
    for tag, text in model.items():
        if tag in REGISTRY:
            assert text.endswith(".") and "\n" not in text, (tag, text)


def run_py(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_xml_tree_runs_with_run_py(tmp_path: Path) -> None:
    """A tree exported for Groot2 sorts the built-in line like its YAML."""
    xml = tmp_path / "sort.xml"
    xml.write_text(export_xml(ROOT / "trees" / "sort_pipelined.yaml"), encoding="utf-8")
    summary = tmp_path / "summary.json"
    result = run_py("--tree", str(xml), "--items", "4", "--speed", "8", "--viz", "none",
                    "--summary", str(summary))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(summary.read_text())
    assert facts["outcomes"] == {"sorted": 4}
    assert facts["line"]["correct"] == 4


GROOT_EDITED = """<?xml version="1.0"?>
<root BTCPP_format="4" main_tree_to_execute="main">
  <BehaviorTree ID="main">
    <Sequence name="go">
      <StartBelt name="start belt"/>
      <Wait name="settle" secnds="2"/>
    </Sequence>
  </BehaviorTree>
</root>
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GROOT_EDITED, 6, "node 'settle' (Wait): unknown parameter 'secnds' (did you mean "
                          "'seconds'?)"),
        (GROOT_EDITED.replace('secnds="2"', 'seconds="soon"'), 6,
         "node 'settle' (Wait): parameter 'seconds' must be float, got 'soon'"),
        (GROOT_EDITED.replace("<Wait", "<Wiat"), 6,
         "node 'settle': unknown node kind 'Wiat' (did you mean 'Wait'?)"),
        (GROOT_EDITED.replace("</Sequence>", ""), 8, "XML syntax error: mismatched tag"),
        (GROOT_EDITED.replace('"4"', '"3"'), 2, "expected <root BTCPP_format=\"4\">"),
        (GROOT_EDITED.replace('<StartBelt name="start belt"/>', '<SubTree ID="nowhere"/>'), 5,
         "SubTree 'nowhere': no BehaviorTree with that ID"),
        ('<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaa">]>\n<root/>', 2,
         "DTDs and entity declarations are not allowed"),
    ],
    ids=["unknown-port", "bad-type", "unknown-node", "syntax", "format", "subtree", "dtd"],
)  # fmt: skip
def test_xml_errors_name_file_and_line(text: str, line: int, message: str, tmp_path: Path) -> None:
    """run.py --check on a broken XML tree: exit 2, the file, the line and what is wrong."""
    bad = tmp_path / "edited.xml"
    bad.write_text(text, encoding="utf-8")
    result = run_py("--tree", str(bad), "--check", timeout=60)
    assert result.returncode == 2
    assert f"{bad}:{line}: {message}" in result.stderr, result.stderr


def test_xml_check_prints_the_tree(tmp_path: Path) -> None:
    """A tree as Groot2 saves it (its _uid / _fullpath metadata) checks and prints."""
    good = tmp_path / "edited.xml"
    text = GROOT_EDITED.replace("secnds", "seconds").replace('name="go"', 'name="go" _uid="3"')
    good.write_text(text, encoding="utf-8")
    result = run_py("--tree", str(good), "--check", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "settle" in result.stdout and f"tree {good}: ok" in result.stdout


def test_trees_command_exports_and_imports(tmp_path: Path) -> None:
    """python -m bt_sorter.trees export / import, as the README shows them."""
    xml, back = tmp_path / "sort.xml", tmp_path / "back" / "sort.yaml"
    for args in (
        ("export", "trees/sort.yaml", "-o", str(xml)),
        ("import", str(xml), "-o", str(back)),
    ):
        result = subprocess.run([sys.executable, "-m", "bt_sorter.trees", *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert canonical(back) == canonical(ROOT / "trees" / "sort.yaml")
    result = subprocess.run([sys.executable, "-m", "bt_sorter.trees", "export", "nowhere.yaml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "nowhere.yaml" in result.stderr


def test_for_each_rod_goes_to_groot_as_a_control_and_serves_any_line(tmp_path: Path) -> None:
    """The pipelined tree's per-rod branch is exported as written (a ForEachRod control,
    {rod}/{gate} kept), so the XML builds one branch per rod of whatever line it runs on."""
    from bt_sorter.behaviours.base import Context
    from bt_sorter.blackboard import Blackboard
    from bt_sorter.clock import LineClock
    from bt_sorter.config import load_config
    from bt_sorter.linemodel.model import LineModel
    from bt_sorter.record import Record
    from bt_sorter.topology import Topology

    xml = tmp_path / "sort_pipelined.xml"
    xml.write_text(export_xml(ROOT / "trees" / "sort_pipelined.yaml"), encoding="utf-8")
    root = ET.parse(xml).getroot()
    (each,) = root.iter("ForEachRod")
    assert [e.get("rod") for e in each.iter() if e.tag in ("PushRod", "RetractRod")] == [
        "{rod}",
        "{rod}",
    ]
    five = Topology(gates=4, rod_gates=(1, 2, 3, 4))
    ctx = Context(bb=Blackboard(line=LineModel(topology=five)),
                  config=load_config().replace(topology=five), clock=LineClock(),
                  record=Record(None))  # fmt: skip
    names = [line["name"] for line in tree_shape(load_tree(xml, ctx))]
    assert [n for n in names if n.startswith("push rod")] == [
        f"push rod {rod} when its item clears gate {rod - 1}" for rod in (2, 3, 4, 5)
    ]
