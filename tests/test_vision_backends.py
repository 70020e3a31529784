"""The shipped model sorts rendered tomatoes; course checkpoints load; the factory builds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bt_sorter.config import ClassifierConfig
from bt_sorter.sim.render import LABELS, render_picture
from bt_sorter.vision.backends import make_classifier
from bt_sorter.vision.classifier import BadPictureError, ClassifyError
from bt_sorter.vision.http_backend import HttpClassifier
from bt_sorter.vision.preprocess import load_class_indices, picture_to_input
from bt_sorter.vision.resnet import resnet18
from bt_sorter.vision.torch_backend import TorchClassifier, load_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"


@pytest.fixture(scope="module")
def shipped() -> TorchClassifier:
    return TorchClassifier(MODEL, threads=2)


def test_shipped_model_sorts_unseen_rendered_tomatoes(shipped: TorchClassifier) -> None:
    per_class = 12
    correct = 0
    for k, label in enumerate(LABELS):
        for i in range(per_class):
            picture = render_picture(np.random.default_rng([4242, k, i]), label, size=256)
            prediction = shipped.classify(picture)
            assert 0.0 <= prediction.confidence <= 1.0
            correct += prediction.label == label
    assert correct / (per_class * len(LABELS)) >= 0.95


def test_shipped_model_fits_the_size_limit_and_matches_its_class_index() -> None:
    assert MODEL.stat().st_size <= 25 * 1024 * 1024
    model, info = load_model(MODEL)
    assert info.arch == "resnet18"
    assert list(info.classes) == load_class_indices(MODEL.with_name("class_indices.json"))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_shipped_model_refuses_a_broken_picture(shipped: TorchClassifier) -> None:
    picture = render_picture(np.random.default_rng(1), "raw")
    with pytest.raises(BadPictureError):
        shipped.classify(picture[:-300])


def test_course_bare_state_dict_with_class_indices_loads_at_224(tmp_path: Path) -> None:
    torch.manual_seed(0)
    course = resnet18(num_classes=3).eval()
    torch.save(course.state_dict(), tmp_path / "best.pth")
    labels = {"0": "half_ripe", "1": "raw", "2": "ripe"}
    (tmp_path / "class_indices.json").write_text(json.dumps(labels))
    classifier = TorchClassifier(tmp_path / "best.pth", threads=1)
    assert classifier.info.input_size == 224
    picture = render_picture(np.random.default_rng(3), "ripe")
    with torch.inference_mode():
        logits = course(torch.from_numpy(picture_to_input(picture, 224))[None])
    probs = torch.softmax(logits, 1)[0]
    prediction = classifier.classify(picture)
    assert prediction.label == labels[str(int(probs.argmax()))]
    assert prediction.confidence == pytest.approx(float(probs.max()), abs=1e-5)


def test_bare_state_dict_without_class_index_is_a_clear_error(tmp_path: Path) -> None:
    torch.save(resnet18(num_classes=3).state_dict(), tmp_path / "best.pth")
    with pytest.raises(ClassifyError, match=r"class_indices\.json"):
        TorchClassifier(tmp_path / "best.pth")


def test_class_index_that_disagrees_with_fc_is_refused(tmp_path: Path) -> None:
    torch.save(resnet18(num_classes=3).state_dict(), tmp_path / "best.pth")
    (tmp_path / "class_indices.json").write_text(json.dumps({"0": "a", "1": "b"}))
    with pytest.raises(ClassifyError, match="fc has 3"):
        TorchClassifier(tmp_path / "best.pth")


def test_missing_or_non_checkpoint_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClassifyError, match="does not exist"):
        TorchClassifier(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ClassifyError, match=r"junk\.pth"):
        TorchClassifier(tmp_path / "junk.pth")


def test_factory_builds_torch_from_the_configured_relative_path() -> None:
    classifier = make_classifier("torch", ClassifierConfig(), ROOT)
    assert classifier.name == "torch"
    picture = render_picture(np.random.default_rng([7, 0]), "raw")
    assert classifier.classify(picture).label in LABELS


def test_factory_builds_http_and_refuses_unknown_names() -> None:
    classifier = make_classifier("http", ClassifierConfig(url="http://127.0.0.1:9/x"), ROOT)
    assert isinstance(classifier, HttpClassifier)
    with pytest.raises(ValueError, match="unknown classifier backend"):
        make_classifier("magic", ClassifierConfig(), ROOT)


def test_factory_builds_the_hsv_fallback_that_needs_no_weights() -> None:
    classifier = make_classifier("hsv", ClassifierConfig(model="models/absent.pth"), ROOT)
    assert classifier.name == "hsv"
    picture = render_picture(np.random.default_rng([8, 0]), "ripe")
    assert classifier.classify(picture).label in LABELS
