"""Both trees on lines the controller was not told about (issue 9's "done when").

The built-in simulator gets a line file from ``config/lines/`` (``run.py --line``); the
controller gets a config with no ``line:`` section, or with the built-in line's geometry,
which is wrong for every one of those lines. Either way every item must be sorted
correctly: it is the simulator's truth that counts (its summary and ledger), not the
controller's own account. Also: the FS scene's config loads and passes ``--check``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from line_runs import LINE_FILES, ROOT, Geometry, run_unknown_line, speed_for

from bt_sorter.config import load_config
from bt_sorter.sim.line import draw_labels
from bt_sorter.sim.summary import route_bin

TREES = {"sequential": "trees/sort.yaml", "pipelined": "trees/sort_pipelined.yaml"}
ITEMS = {"sequential": 6, "pipelined": 10}
SEED = 1  # 6 items: 2 of each label; 10 items: 3 ripe, 3 half_ripe, 4 raw
FS_CONFIG = ROOT / "config" / "fs_aisims.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["none", "builtin"], ids=["no_line", "wrong_line"])
@pytest.mark.parametrize("line", LINE_FILES, ids=[path.stem for path in LINE_FILES])
@pytest.mark.parametrize("tree", sorted(TREES))
def test_every_item_is_sorted_on_a_line_the_controller_was_not_told(
    tree: str, line: Path, geometry: Geometry, tmp_path: Path
) -> None:
    items = ITEMS[tree]
    run = run_unknown_line(
        tmp_path, tree=TREES[tree], line=line, geometry=geometry, items=items,
        speed=speed_for(line), seed=SEED,
    )  # fmt: skip

    truth = run.truth
    assert run.code == 0, run.explain()
    assert truth.get("items") == items, run.explain()
    assert truth["missorted"] == 0, run.explain()
    assert truth["correct"] == items, run.explain()
    assert truth["jammed"] == truth["lost"] == truth["not_fed"] == 0, run.explain()
    routes = load_config().sorting.routes
    labels = draw_labels(items, SEED, load_config().sim.mix)
    assert [r["bin"] for r in run.ledger] == [route_bin(x, routes) for x in labels]
    assert run.summary["fed"] == run.summary["resolved"] == items, run.explain()
    assert run.summary["outcomes"] == {"sorted": items}, run.explain()


def test_fs_scene_config_loads_and_passes_check() -> None:
    config = load_config(FS_CONFIG)
    assert config.broker.port == 21883
    for tree in TREES.values():
        done = subprocess.run(
            [sys.executable, "run.py", "--tree", tree, "--config", str(FS_CONFIG), "--check"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"config {FS_CONFIG}: ok" in done.stdout
