"""Pictures kept on disk without a tick ever waiting (bt_sorter/vision/shelf.py), the
collection mode through it, and the config of the kept pictures (issue 24). Real files, a
real FIFO for a disk that hangs, run.py on the built-in line."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from line_runs import run_line

from bt_sorter.config import load_config
from bt_sorter.sim.render import render_picture
from bt_sorter.vision.shelf import PictureShelf
from bt_sorter.yamlio import SpecError

PICTURE = render_picture(np.random.default_rng(2), "raw", size=64)


class Said:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, facts: dict[str, Any]) -> None:
        self.events.append((event, facts))


def test_pictures_land_in_the_training_layout_with_safe_names(tmp_path: Path) -> None:
    shelf = PictureShelf(tmp_path / "kept")
    path = shelf.offer("half_ripe", "run_item3_unlike any trained picture_0.73", PICTURE)
    shelf.close()
    assert path == tmp_path / "kept" / "half_ripe" / "run_item3_unlike-any-trained-picture_0.73.jpg"
    assert path.read_bytes() == PICTURE and shelf.stats()["kept"] == 1
    with pytest.raises(ValueError, match="positive"):
        PictureShelf(tmp_path, max_files=0)


def test_a_write_that_fails_is_said_once_and_the_shelf_goes_on(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "ripe").write_text("a file where the label's folder should be")
    said = Said()
    shelf = PictureShelf(tmp_path / "kept", say=said, what="doubted")
    for n in range(3):
        assert shelf.offer("ripe", f"r{n}", PICTURE) is not None
    assert shelf.offer("raw", "w0", PICTURE) is not None
    shelf.close()
    assert (shelf.failed, shelf.kept) == (3, 1)
    assert (tmp_path / "kept" / "raw" / "w0.jpg").read_bytes() == PICTURE
    assert [event for event, _ in said.events] == ["doubted_not_kept"]
    assert "cannot write" in said.events[0][1]["reason"]


def test_the_cap_counts_the_files_already_there_and_is_said_once(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "old.jpg").write_bytes(PICTURE)
    said = Said()
    shelf = PictureShelf(tmp_path, max_files=3, say=said, what="doubted")
    taken = [shelf.offer("ripe", f"p{n}", PICTURE) for n in range(6)]
    shelf.close()
    assert [p is not None for p in taken] == [True, True, False, False, False, False]
    assert len(list(tmp_path.glob("*/*"))) == 3 and shelf.full and shelf.dropped == 4
    assert [event for event, _ in said.events] == ["doubted_not_kept"]
    assert "the cap is 3" in said.events[0][1]["reason"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO (POSIX)")
def test_a_hanging_disk_never_blocks_an_offer_it_drops_and_says_so_once(tmp_path: Path) -> None:
    """The first picture's file is a FIFO nobody reads: its write hangs like a dead disk.
    Offers still return at once; past the queue they are dropped, said once."""
    (tmp_path / "ripe").mkdir()
    os.mkfifo(tmp_path / "ripe" / "stuck.jpg")
    said = Said()
    shelf = PictureShelf(tmp_path, queue_size=2, say=said)
    taken: list[Path | None] = []
    offers = threading.Thread(
        target=lambda: taken.extend(shelf.offer("ripe", f"p{n}", PICTURE) for n in range(6))
    )
    shelf.offer("ripe", "stuck", PICTURE)
    offers.start()
    offers.join(10)
    assert not offers.is_alive(), "an offer waited for the disk"
    assert sum(p is not None for p in taken) <= 3 and taken[-1] is None, taken
    assert [event for event, _ in said.events] == ["pictures_not_kept"]
    assert "writer is behind" in said.events[0][1]["reason"]
    with (tmp_path / "ripe" / "stuck.jpg").open("rb") as fifo:  # the disk comes back
        shelf.close()
        assert fifo.read() == PICTURE
    assert (tmp_path / "ripe" / "p0.jpg").read_bytes() == PICTURE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  keep_doubted_max: 0\n", r"line\.yaml:3: .*keep_doubted_max must be a positive"),
        ("  keep_doubted_max: many\n", r"line\.yaml:3: .*keep_doubted_max must be an integer"),
        ("  keep_doubted: ''\n", r"line\.yaml:3: .*keep_doubted must name a folder"),
        ("  keep_doubted: [a]\n", r"line\.yaml:3: .*keep_doubted must be"),
    ],
)
def test_a_bad_keep_doubted_value_names_the_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("classifier:\n  backend: hsv\n" + text, encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_config(path)


def test_keep_doubted_is_off_unless_the_config_names_a_folder(tmp_path: Path) -> None:
    assert load_config().classifier.keep_doubted is None
    path = tmp_path / "line.yaml"
    path.write_text("classifier:\n  keep_doubted: data/doubted\n", encoding="utf-8")
    classifier = load_config(path).classifier
    assert (classifier.keep_doubted, classifier.keep_doubted_max) == ("data/doubted", 2000)


def test_collection_mode_says_once_that_it_cannot_write_and_goes_on(tmp_path: Path) -> None:
    """The collect tree writes through the same shelf: a label folder it cannot create is
    said once in the record; every item still rides to bin 1 and the run ends well."""
    work = tmp_path / "work"
    (work / "data" / "collected").mkdir(parents=True)
    (work / "data" / "collected" / "raw").write_text("in the way")
    record = tmp_path / "record.jsonl"
    code, summary = run_line(
        tmp_path, "--tree", "trees/collect.yaml", "--items", "3", "--speed", "5",
        "--label", "raw", "--record", str(record), cwd=work,
    )  # fmt: skip
    assert code == 0 and summary["reasons"].get("collected") == 3, summary
    events = [json.loads(line) for line in record.open(encoding="utf-8")]
    said = [e for e in events if e["event"] == "collected_not_kept"]
    assert len(said) == 1 and "cannot write" in said[0]["reason"], said
    assert summary["line"]["bins"]["1"] == 3
