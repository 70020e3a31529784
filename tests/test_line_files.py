"""The simulator's own lines: config/lines/*.yaml, ``--line``, and the belt-drift knob's CLI.

Each line file must be a line the course's rule sorts on (push a rod on the clear edge of
the gate that fires it: rod k+1 on gate k's on the FS scene's shape): checked statically
(:func:`course_rule_problems`) and by running the course's sequential script, which knows
the true labels, against the simulator on that line. Lines of another shape (a
``topology:`` section) get the same, with a config of their shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from line_runs import ALL_LINE_FILES, LINE_FILES, ROOT, SHAPED_LINE_FILES, speed_for
from scripted import run_sequential

from bt_sorter.broker import BrokerProcess, free_port
from bt_sorter.config import load_config
from bt_sorter.sim.geometry import geometry_of, load_line
from bt_sorter.sim.line import course_rule_problems, draw_labels
from bt_sorter.sim.process import start_simulator
from bt_sorter.sim.summary import route_bin

CONFIG = load_config()


def test_line_files_are_sortable_lines_in_the_target_range() -> None:
    assert len(LINE_FILES) >= 3 and len(SHAPED_LINE_FILES) >= 2
    for path in ALL_LINE_FILES:
        geo, topology = load_line(path)
        assert 0.05 <= geo.belt_speed <= 0.5, path
        assert 0.03 <= geo.item_length <= 0.15, path
        assert course_rule_problems(geo, topology=topology) == [], path
        assert geo != geometry_of(CONFIG), f"{path} is the built-in line"
        assert path.read_text("utf-8").startswith("# "), f"{path}: no header comment"


def test_course_rule_problems_finds_a_rod_window_the_rule_misses() -> None:
    import dataclasses

    geo = geometry_of(CONFIG)
    assert course_rule_problems(geo) == []
    late = dataclasses.replace(geo, rod_offset=0.12)  # window 0.08..0.16 m past the gate
    assert any("not yet in rod 2's window" in p for p in course_rule_problems(late))
    fast = dataclasses.replace(geo, belt_speed=0.5)  # out of the window in 0.18 s
    assert any("leaves rod 2's window" in p for p in course_rule_problems(fast))


@pytest.mark.slow
@pytest.mark.parametrize("line", LINE_FILES, ids=[path.stem for path in LINE_FILES])
def test_course_rule_sorts_every_item_on_the_line_file(
    line: Path, broker: BrokerProcess, tmp_path: Path
) -> None:
    geo = load_line(line).geometry
    items, seed = 3, 1  # raw, ripe, half_ripe: every rod once
    labels = draw_labels(items, seed, CONFIG.sim.mix)
    speed = speed_for(line)
    ledger_path = tmp_path / "ledger.jsonl"
    with start_simulator(
        broker.address, summary=tmp_path / "summary.json", line=line, items=items, seed=seed,
        speed=speed, ledger=ledger_path,
    ) as sim:  # fmt: skip
        run = run_sequential(
            broker.address, items=items, labels=labels, routes=CONFIG.sorting.routes,
            speed=speed, timings=CONFIG.timings, geometry=geo,
        )  # fmt: skip
        summary = sim.wait(timeout=60)

    ledger = sorted(
        (json.loads(x) for x in ledger_path.read_text().splitlines()), key=lambda r: r["id"]
    )
    assert not run.missed_items
    outcome = [(r["id"], r["label"], r["bin"], r["why"], r["end_time"]) for r in ledger]
    assert summary["correct"] == items and summary["missorted"] == 0, outcome
    assert [r["bin"] for r in ledger] == [route_bin(x, CONFIG.sorting.routes) for x in labels]
    first = ledger[0]  # raw: rides past all three gates, at the line file's speed
    for gate, position in enumerate(geo.gate_positions, start=1):
        blocked, clear = first["gate_edges"][str(gate)][0]
        assert blocked == pytest.approx(
            first["feed_time"] + (position - geo.item_length) / geo.belt_speed
        )
        assert clear == pytest.approx(first["feed_time"] + position / geo.belt_speed)


# five_bins: the three labels the renderer draws to rods 3..5 (rods 2..5 each once in
# tests/test_sim_line.py); tracking_gate: the FS routes, rods 2..4 past gates 2..4
SHAPED_ROUTES = {
    "five_bins": {"ripe": 3, "half_ripe": 4, "raw": 5},
    "tracking_gate": {"ripe": 2, "half_ripe": 3, "raw": 4},
}
NO_SUCH_RODS = [b'{"rod_control": "sixth_push"}', b'{"rod_control": "twelfth_pull"}']


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stem", "given_as"), [("five_bins", "line_file"), ("tracking_gate", "config")]
)
def test_course_rule_sorts_every_item_on_a_line_of_another_shape(
    stem: str, given_as: str, broker: BrokerProcess, tmp_path: Path
) -> None:
    """The simulator takes the shape from ``--line FILE`` or, without one, from the config's
    ``topology:`` and ``line:``; commands to rods the line lacks are counted, nothing else."""
    from scripted import SequentialClient

    line = ROOT / "config" / "lines" / f"{stem}.yaml"
    geo, topology = load_line(line)
    routes = SHAPED_ROUTES[stem]
    sections = yaml.safe_load(line.read_text("utf-8"))
    config = {"topology": sections["topology"], "sorting": {"routes": routes}}
    if given_as == "config":
        config["line"] = sections["line"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), "utf-8")
    items, seed = 3, 1  # raw, ripe, half_ripe: every route once
    labels = draw_labels(items, seed, CONFIG.sim.mix)
    speed, ledger_path = speed_for(line), tmp_path / "ledger.jsonl"
    with start_simulator(
        broker.address, summary=tmp_path / "summary.json", config=config_path,
        line=line if given_as == "line_file" else None, items=items, seed=seed, speed=speed,
        ledger=ledger_path,
    ) as sim:  # fmt: skip
        with SequentialClient(
            broker.address, items=items, labels=labels, routes=routes, speed=speed,
            timings=CONFIG.timings, geometry=geo, topology=topology,
        ) as client:  # fmt: skip
            for payload in NO_SUCH_RODS:
                client.send_raw(payload)
            run = client.run()  # ends with all_pull
        summary = sim.wait(timeout=60)

    ledger = sorted(
        (json.loads(x) for x in ledger_path.read_text().splitlines()), key=lambda r: r["id"]
    )
    assert not run.missed_items
    assert summary["correct"] == items and summary["missorted"] == 0, ledger
    assert [r["bin"] for r in ledger] == [routes[x] for x in labels]
    assert summary["bad_commands"] == len(NO_SUCH_RODS)
    rods = [str(r) for r in topology.classifying_rods]
    assert [b for b in summary["bins"] if b.isdigit()] == ["1", *rods]
    first = ledger[0]  # raw: past every gate to the last rod, at the line's own speed
    assert sorted(first["gate_edges"]) == [str(g) for g in topology.gate_numbers]
    for gate, position in enumerate(geo.gate_positions, start=1):
        _, clear = first["gate_edges"][str(gate)][0]
        assert clear == pytest.approx(first["feed_time"] + position / geo.belt_speed)


def sim_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bt_sorter.sim", "run", "--broker", f"127.0.0.1:{free_port()}",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_simulator_warns_of_a_line_the_course_rule_cannot_sort(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("line:\n  rod_offset: 0.12\n")  # rod windows start 8 cm past each gate
    done = sim_cli("--line", str(path))
    assert "line_breaks_course_rule" in done.stderr
    assert "not yet in rod 2's window" in done.stderr


def test_line_file_with_more_than_a_line_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("line:\n  belt_speed: 0.2\nsorting:\n  confidence_threshold: 0.5\n")
    done = sim_cli("--line", str(path))
    assert done.returncode == 2
    assert f"{path}:3: a line file holds line: and at most topology: (found sorting)" in done.stderr


def test_invalid_line_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("line:\n  belt_speed: 0.2\n  gate_positions: [0.5, 0.4, 1.1]\n")
    done = sim_cli("--line", str(path))
    assert done.returncode == 2
    assert f"{path}:" in done.stderr and "gate_positions must increase" in done.stderr


@pytest.mark.parametrize("value", ["5", "x:0.8", "10:0", "10:-1"])
def test_bad_belt_drift_is_a_clear_error(value: str) -> None:
    done = sim_cli(f"--belt-drift={value}")
    assert done.returncode == 2
    assert "--belt-drift" in done.stderr and "Traceback" not in done.stderr


def test_run_py_refuses_line_on_an_external_line() -> None:
    line = str(LINE_FILES[0])
    done = subprocess.run(
        [sys.executable, "run.py", "--tree", "trees/sort.yaml", "--broker",
         f"127.0.0.1:{free_port()}", "--line", line],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--line gives the built-in simulator its line" in done.stderr


def test_line_file_whose_gates_disagree_with_its_topology_names_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(
        "# four gates declared, three placed\ntopology:\n  gates: 4\n  rod_gates: [1, 2, 3, 4]\n"
        "line:\n  belt_speed: 0.2\n  gate_positions: [0.5, 0.8, 1.1]\n"
    )
    done = sim_cli("--line", str(path))
    assert done.returncode == 2
    assert f"{path}:7: line.gate_positions: 3 positions, but the line has 4 gates" in done.stderr


def test_a_label_the_simulator_cannot_draw_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sim:\n  mix:\n    ripe: 1\n    banana: 1\n    raw: 0\n")
    done = sim_cli("--config", str(path), "--items", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:4: sim.mix: the simulator cannot draw banana" in done.stderr
