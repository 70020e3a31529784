"""The controller end to end: run.py, a real broker, the simulator process, the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from line_runs import run_line

from bt_sorter.vision.preprocess import decode_picture


@pytest.mark.slow
@pytest.mark.parametrize("broker_kind", ["mosquitto", "amqtt"])
def test_sequential_tree_sorts_every_item_into_its_own_bin(
    tmp_path: Path, broker_kind: str
) -> None:
    items = 9
    code, summary = run_line(
        tmp_path, "--tree", "trees/sort.yaml", "--items", str(items), "--seed", "3",
        "--speed", "5", "--broker-kind", broker_kind,
    )  # fmt: skip
    line = summary["line"]
    assert code == 0, summary
    assert line["items"] == items and line["correct"] == items, line  # each in its own bin
    assert line["bins"]["1"] == 0 and line["lost"] == line["jammed"] == 0, line
    assert summary["outcomes"] == {"sorted": items}, summary


def test_collection_tree_saves_every_picture_under_the_label_in_the_working_folder(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code, summary = run_line(
        tmp_path, "--tree", "trees/collect.yaml", "--items", "4", "--speed", "5",
        "--label", "raw", cwd=work,
    )  # fmt: skip
    assert code == 0
    saved = sorted((work / "data" / "collected" / "raw").iterdir())  # folder: data/collected
    assert len(saved) == summary["reasons"].get("collected", 0) == 4, summary  # every one
    for path in saved:
        decode_picture(path.read_bytes())
    assert summary["line"]["bins"]["1"] == 4  # nothing sorted while collecting
