"""The controller end to end: run.py, a real broker, the simulator process, the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from line_runs import ROOT, run_line

from bt_sorter.vision.preprocess import decode_picture


@pytest.mark.slow
@pytest.mark.parametrize("broker_kind", ["mosquitto", "amqtt"])
def test_sequential_tree_sorts_30_items_without_a_missort(tmp_path: Path, broker_kind: str) -> None:
    code, summary = run_line(
        tmp_path, "--tree", "trees/sort.yaml", "--items", "30", "--seed", "3", "--speed", "10",
        "--broker-kind", broker_kind,
    )  # fmt: skip
    line = summary["line"]
    assert code == 0
    assert summary["stop_reason"] == "max_items_resolved"
    assert line["items"] == 30
    assert line["correct"] == 30, line
    assert line["missorted"] == 0
    assert line["lost"] == 0
    assert line["jammed"] == 0
    assert summary["outcomes"] == {"sorted": 30}


def test_collection_tree_saves_every_picture_under_the_label(tmp_path: Path) -> None:
    tree = (ROOT / "trees" / "collect.yaml").read_text()
    folder = tmp_path / "collected"
    tree = tree.replace("folder: data/collected", f"folder: {folder}")
    (tmp_path / "collect.yaml").write_text(tree)
    code, summary = run_line(
        tmp_path, "--tree", str(tmp_path / "collect.yaml"), "--items", "4", "--speed", "10",
        "--label", "raw",
    )  # fmt: skip
    assert code == 0
    saved = sorted((folder / "raw").iterdir())
    assert len(saved) == 4
    for path in saved:
        decode_picture(path.read_bytes())
    assert summary["line"]["bins"]["1"] == 4  # nothing sorted while collecting
