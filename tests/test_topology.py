"""The line's topology: its checks, config errors naming file and line, unknown gates."""

from __future__ import annotations

from pathlib import Path

import pytest

from bt_sorter import protocol
from bt_sorter.blackboard import Blackboard, Received
from bt_sorter.config import load_config
from bt_sorter.topology import FS, Topology
from bt_sorter.yamlio import SpecError


def test_the_fs_scene_is_the_default() -> None:
    assert FS.problems() == []
    assert FS.classifying_rods == (2, 3, 4)
    assert FS.all_rods == (1, 2, 3, 4)
    assert [FS.gate_of(r) for r in FS.classifying_rods] == [1, 2, 3]
    assert load_config().topology == FS


def test_a_gate_may_only_track() -> None:
    line = Topology(gates=4, rod_gates=(2, 3, 4))
    assert line.problems() == []
    assert line.rod_at(1) is None
    assert line.rod_at(2) == 2
    assert line.rods == {2: 2, 3: 3, 4: 4}


@pytest.mark.parametrize(
    ("topology", "problem"),
    [
        (Topology(gates=0, rod_gates=()), "gates must be 1.."),
        (Topology(gates=2, rod_gates=()), "at least one classifying rod"),
        (Topology(gates=2, rod_gates=(1, 3)), "rod 3 is fired by gate 3"),
        (Topology(gates=3, rod_gates=(2, 2)), "a gate fires at most one rod"),
        (Topology(gates=3, rod_gates=(2, 1)), "rods must follow the belt"),
        (Topology(gates=11, rod_gates=(*range(1, 12), 11)), "at most 11"),
    ],
)
def test_impossible_lines_say_why(topology: Topology, problem: str) -> None:
    assert any(problem in p for p in topology.problems()), topology.problems()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(text)
    return path


def test_a_route_to_a_rod_the_line_lacks_names_file_and_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "sorting:\n  routes:\n    ripe: 2\n    raw: 5\n")
    with pytest.raises(SpecError) as caught:
        load_config(path)
    assert f"{path}:4:" in str(caught.value)
    assert "rod 5" in str(caught.value)


def test_a_bad_topology_names_file_and_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "# a line\ntopology:\n  gates: 2\n  rod_gates: [1, 3]\n")
    with pytest.raises(SpecError) as caught:
        load_config(path)
    assert f"{path}:4:" in str(caught.value)
    assert "gate 3" in str(caught.value)


def test_a_five_bin_line_loads(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "topology:\n  gates: 4\n  rod_gates: [1, 2, 3, 4]\n"
        "sorting:\n  routes: {ripe: 2, half_ripe: 3, raw: 4, overripe: 5}\n",
    )
    config = load_config(path)
    assert config.topology.classifying_rods == (2, 3, 4, 5)
    assert config.sorting.routes["overripe"] == 5


def test_the_wire_names_extend_the_fs_pattern() -> None:
    assert protocol.encode_command(protocol.push(5)) == b'{"rod_control": "fifth_push"}'
    assert protocol.parse_command(b'{"rod_control": "sixth_pull"}') == protocol.pull(6)
    assert protocol.parse_feedback(b'{"fourth_switch": true}') == [protocol.GateEdge(4, True)]


def test_an_edge_of_a_gate_the_line_lacks_is_bad_input() -> None:
    bb = Blackboard()
    bad = bb.ingest([Received(1.0, protocol.GateEdge(4, True))])
    assert [b.reason for b in bad] == ["this line has no gate 4"]
    assert 4 not in bb.gates and bb.edges == []
