"""The reject class: training pictures that are not one fruit (``render --reject``), and a
network with a ``none`` output answering with the doubt ``not one fruit`` (bin 1)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch

from bt_sorter.sim.__main__ import cmd_render, parse_args
from bt_sorter.sim.render import (
    REJECT_LABEL,
    render_odd,
    render_picture,
    render_reject,
    write_reject_dataset,
)
from bt_sorter.vision.classifier import UNKNOWN, apply_threshold
from bt_sorter.vision.oddity import NOT_ONE_FRUIT
from bt_sorter.vision.resnet import build
from bt_sorter.vision.torch_backend import (
    REJECT_CLASS,
    ModelInfo,
    TorchClassifier,
    load_model,
    save_model,
)

MODEL = Path(__file__).resolve().parents[1] / "models" / "resnet18_tomato.pth"


def test_reject_pictures_are_the_renderers_own_class_folder_and_repeat_by_seed(
    tmp_path: Path,
) -> None:
    assert REJECT_LABEL == REJECT_CLASS  # the folder train reads is the class the backend skips
    assert write_reject_dataset(tmp_path / "a", 6, seed=3, size=64) == {"none": 6}
    write_reject_dataset(tmp_path / "b", 6, seed=3, size=64)
    files = sorted((tmp_path / "a" / "none").glob("*.jpg"))
    assert len(files) == 6

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert [digest(f) for f in files] == [digest(tmp_path / "b" / "none" / f.name) for f in files]
    image = render_reject(np.random.default_rng(7), 64, "train")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_render_refuses_odd_and_reject_together(tmp_path: Path, capsys) -> None:
    # the command itself, not main(): main() points the process's logging at this test's
    # captured stdout, which is closed once the test is over
    args = parse_args(["render", "--odd", "--reject", "--n", "1", "--out", str(tmp_path)])
    assert cmd_render(args) == 2
    assert "name one" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _with_reject_row(tmp_path: Path, bias: float) -> Path:
    """The shipped network with its ``none`` output (added where it has none) set to a zero
    weight row and the bias ``bias``: the reject class always wins (+) or never does (-)."""
    model, info = load_model(MODEL)
    classes = sorted({*info.classes, REJECT_CLASS})
    wide = build(info.arch, len(classes))
    state = model.state_dict()
    weight = torch.zeros(len(classes), state["fc.weight"].shape[1])
    rows = torch.full((len(classes),), float(bias))
    for row, name in enumerate(classes):
        if name != REJECT_CLASS:
            weight[row] = state["fc.weight"][info.classes.index(name)]
            rows[row] = state["fc.bias"][info.classes.index(name)]
    state["fc.weight"], state["fc.bias"] = weight, rows
    wide.load_state_dict(state)
    path = tmp_path / f"reject{bias}.pth"
    save_model(path, wide, ModelInfo(info.arch, info.input_size, tuple(classes),
                                     info.temperature, None))  # fmt: skip
    return path


def test_a_winning_reject_output_is_a_doubt_with_the_best_fruit_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    pictures = [render_picture(rng, label, 128) for label in ("ripe", "half_ripe", "raw")]
    silent = TorchClassifier(_with_reject_row(tmp_path, -100.0))
    loud = TorchClassifier(_with_reject_row(tmp_path, 100.0))
    assert silent.classes == loud.classes == ("half_ripe", "raw", "ripe")  # `none` is no label
    for picture, label in zip(pictures, ("ripe", "half_ripe", "raw"), strict=True):
        quiet = silent.classify(picture)
        assert (quiet.label, quiet.doubt) == (label, "")
        rejected = loud.classify(picture)
        assert rejected.doubt == NOT_ONE_FRUIT and rejected.label == label  # best fruit kept
        assert apply_threshold(rejected, 0.0).label == UNKNOWN


def test_the_shipped_model_sends_what_is_not_one_fruit_to_bin_1_and_sorts_one_fruit() -> None:
    classifier = TorchClassifier(MODEL)
    assert REJECT_CLASS in classifier.info.classes
    empty = two = sorted_ok = 0
    for seed in range(12):
        rng = np.random.default_rng([seed, 31])
        for kind in ("empty", "two"):
            ok, data = cv2.imencode(".jpg", render_odd(rng, kind, 256, "led"))
            assert ok
            answer = classifier.classify(data.tobytes())
            if answer.doubt:  # not one fruit; a bright empty belt may read as washed out
                empty += kind == "empty"
                two += kind == "two"
        label = ("ripe", "half_ripe", "raw")[seed % 3]
        answer = classifier.classify(render_picture(rng, label, 256, "halogen"))
        sorted_ok += answer.label == label and not answer.doubt
    assert empty >= 11 and two >= 10, (empty, two)  # measured: bench/vision_odd.py
    assert sorted_ok >= 11


def test_a_black_frame_keeps_its_own_reason_over_the_reject_class(tmp_path: Path) -> None:
    loud = TorchClassifier(_with_reject_row(tmp_path, 100.0))
    ok, black = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    assert ok
    assert loud.classify(black.tobytes()).doubt == "black frame"
