"""The HSV colour fallback: accuracy on fresh renders, confidence, labels, bad pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bt_sorter.sim.render import LABELS, render_picture, render_ripeness, write_dataset
from bt_sorter.vision.classifier import BadPictureError, Classifier
from bt_sorter.vision.hsv import HsvClassifier, main


def _accuracy(domain: str, per_class: int, seed: int) -> float:
    classifier = HsvClassifier()
    right = 0
    for index, label in enumerate(LABELS):
        for i in range(per_class):
            data = render_picture(np.random.default_rng([seed, index, i]), label, domain=domain)
            right += classifier.classify(data).label == label
    return right / (per_class * len(LABELS))


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_hsv_classifier_is_a_classifier_back_end_named_hsv() -> None:
    classifier = HsvClassifier()
    assert isinstance(classifier, Classifier)
    assert classifier.name == "hsv"
    classifier.close()


def test_hsv_sorts_fresh_training_domain_renders_at_least_90_percent_right() -> None:
    assert _accuracy("train", per_class=60, seed=2024) >= 0.90


def test_hsv_sorts_shifted_lighting_renders_at_least_85_percent_right() -> None:
    assert _accuracy("shifted", per_class=30, seed=2025) >= 0.85


def test_fruit_on_a_class_boundary_gets_lower_confidence_than_a_clear_one() -> None:
    classifier = HsvClassifier()

    def confidence(ripeness: float, seed: int) -> float:
        image = render_ripeness(np.random.default_rng(seed), ripeness)
        return classifier.classify(_jpeg(image)).confidence

    boundary = [confidence(r, s) for s in range(6) for r in (0.30, 0.70)]
    clear = [confidence(r, s) for s in range(6) for r in (0.08, 0.5, 0.92)]
    assert np.mean(boundary) < 0.75
    assert np.mean(clear) > 0.9
    assert all(0.0 <= c <= 1.0 for c in boundary + clear)


def test_labels_given_to_the_constructor_name_the_answers() -> None:
    classifier = HsvClassifier(labels=("red", "turning", "green"))
    data = render_picture(np.random.default_rng(3), "raw")
    assert classifier.classify(data).label == "green"
    with pytest.raises(ValueError):
        HsvClassifier(labels=("a", "b"))


def test_empty_belt_without_fruit_gets_zero_confidence() -> None:
    belt = np.full((128, 128, 3), 110, dtype=np.uint8)
    belt += np.random.default_rng(0).integers(0, 6, belt.shape, dtype=np.uint8)
    assert HsvClassifier().classify(_jpeg(belt)).confidence == 0.0


@pytest.mark.parametrize(
    "data",
    [b"", b"not a picture at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40],
    ids=["empty", "garbage", "jpeg-header-only"],
)
def test_bytes_that_are_not_a_picture_raise_bad_picture_error(data: bytes) -> None:
    with pytest.raises(BadPictureError):
        HsvClassifier().classify(data)


def test_truncated_jpeg_raises_bad_picture_error() -> None:
    data = render_picture(np.random.default_rng(4), "ripe")
    with pytest.raises(BadPictureError):
        HsvClassifier().classify(data[: len(data) // 2])


def test_scoring_command_prints_accuracy_and_confusion_for_a_rendered_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, n=4, seed=9, size=128)
    assert main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy >= 0.75
    assert "pictures 12" in out
    assert main(["--data", str(tmp_path / "nothing")]) == 1
