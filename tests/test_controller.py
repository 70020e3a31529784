"""The controller end to end: run.py, a real broker, the simulator process, the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from line_runs import run_line

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
    assert line["items"] == 30
    assert line["lost"] == 0
    assert line["jammed"] == 0
    # Each item sorted into its own bin, or (a picture or an edge too late to act on, as on
    # a loaded machine at --speed 10) rejected to bin 1 with a reason: never pushed into
    # another class's bin. (The simulator's "missorted" counts bin 1 too.) How many are
    # sorted rather than rejected is bench/line.py's figure.
    routes = {"ripe": "2", "half_ripe": "3", "raw": "4"}
    for label, counts in line["label_by_bin"].items():
        wrong = {b: n for b, n in counts.items() if b in ("2", "3", "4") and b != routes[label]}
        assert not any(wrong.values()), (label, counts)
    assert line["correct"] + line["bins"]["1"] == 30, line
    assert summary["outcomes"].get("sorted", 0) == line["correct"] > 0, summary


def test_collection_tree_saves_every_picture_under_the_label_in_the_working_folder(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code, summary = run_line(
        tmp_path, "--tree", "trees/collect.yaml", "--items", "4", "--speed", "10",
        "--label", "raw", cwd=work,
    )  # fmt: skip
    assert code == 0
    saved = sorted((work / "data" / "collected" / "raw").iterdir())  # folder: data/collected
    # every picture that came in time is saved (a loaded machine may miss one: bin 1 all
    # the same, with the reason "no picture to collect")
    reasons = summary["reasons"]
    assert len(saved) == reasons.get("collected", 0) >= 1, summary
    assert len(saved) + reasons.get("no picture to collect", 0) == 4, summary
    for path in saved:
        decode_picture(path.read_bytes())
    assert summary["line"]["bins"]["1"] == 4  # nothing sorted while collecting
