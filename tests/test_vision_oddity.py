"""Pictures unlike any trained picture: the frame check, the logit floor, the rule's wiring
into the classifier's answer, the out-of-distribution renderer, and the risk-coverage rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from bt_sorter.sim.render import ALL_DOMAINS, HELDOUT_DOMAINS, ODD_KINDS, render_item, render_odd
from bt_sorter.vision.calibrate import fit_min_logit, write_temperature
from bt_sorter.vision.classifier import UNKNOWN, Prediction, apply_threshold
from bt_sorter.vision.evaluate import choose_threshold, threshold_table
from bt_sorter.vision.oddity import UNLIKE, picture_doubt
from bt_sorter.vision.preprocess import preprocess
from bt_sorter.vision.torch_backend import TorchClassifier, load_model

MODEL = Path(__file__).resolve().parents[1] / "models" / "resnet18_tomato.pth"


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_one_fruit_in_any_domain_is_a_usable_frame(domain: str) -> None:
    for seed in range(6):
        label = ("ripe", "half_ripe", "raw")[seed % 3]
        image = render_item(np.random.default_rng([seed, 5]), label, 128, domain)
        assert picture_doubt(preprocess(image, 96)) == "", (domain, seed)


def test_black_and_washed_out_frames_are_doubted_by_their_statistics() -> None:
    for seed in range(8):
        black = render_odd(np.random.default_rng([seed, 1]), "black", 128)
        washed = render_odd(np.random.default_rng([seed, 2]), "washed", 128)
        assert picture_doubt(preprocess(black, 96)) == "black frame"
        assert picture_doubt(preprocess(washed, 96)) == "washed-out frame"


def test_every_odd_kind_renders_and_an_unknown_kind_is_refused() -> None:
    for kind in ODD_KINDS:
        image = render_odd(np.random.default_rng(3), kind, 64, HELDOUT_DOMAINS[0])
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown kind"):
        render_odd(np.random.default_rng(3), "banana")


def test_the_logit_floor_is_the_share_quantile_of_the_largest_logits() -> None:
    logits = np.array([[float(i), 0.0, -1.0] for i in range(1, 101)])
    assert fit_min_logit(logits, 0.05) == pytest.approx(5.95)
    with pytest.raises(ValueError):
        fit_min_logit(logits, 0.6)


def test_the_classifier_doubts_a_black_frame_and_what_its_floor_says_no_class_explains(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.pth"
    shutil.copy(MODEL, model)
    fruit = _jpeg(render_item(np.random.default_rng(4), "ripe", 128))
    black = _jpeg(render_odd(np.random.default_rng(4), "black", 128))
    write_temperature(model, load_model(model)[1].temperature, min_logit=-50.0)
    classifier = TorchClassifier(model)
    assert classifier.classify(fruit).doubt == ""
    assert classifier.classify(black).doubt == "black frame"
    write_temperature(model, load_model(model)[1].temperature, min_logit=50.0)
    doubted = TorchClassifier(model).classify(fruit)
    assert doubted.doubt == UNLIKE and doubted.label == "ripe"  # the best guess is kept
    assert apply_threshold(doubted, 0.0).label == UNKNOWN  # never acted on


def test_a_doubted_answer_is_unknown_at_any_threshold_and_a_plain_one_only_when_weak() -> None:
    assert apply_threshold(Prediction("ripe", 0.99, "torch", "empty"), 0.5).label == UNKNOWN
    assert apply_threshold(Prediction("ripe", 0.99, "torch"), 0.5).label == "ripe"
    assert apply_threshold(Prediction("ripe", 0.4, "torch"), 0.5).label == UNKNOWN


def test_risk_coverage_never_acts_on_doubted_pictures_and_the_rule_picks_the_lowest_safe_one() -> (
    None
):
    conf, right = [0.99, 0.97, 0.92, 0.85, 0.99], [True, True, True, False, False]
    rows = {r["threshold"]: r for r in threshold_table(conf, right, doubted=[0, 0, 0, 0, 1])}
    assert rows[0.5]["answered"] == pytest.approx(0.8) and rows[0.5]["wrong"] == 1
    assert rows[0.9]["wrong"] == 0 and rows[0.9]["answered"] == pytest.approx(0.6)
    other = threshold_table([0.99, 0.96, 0.9], [True, False, True])
    rule = choose_threshold({"a": threshold_table(conf, right, doubted=[0, 0, 0, 0, 1]),
                             "b": other}, target_risk=0.0, min_acted=0.5)  # fmt: skip
    assert rule["threshold"] == 0.97 and rule["worst_risk"] == 0.0
    assert rule["least_acted"] == pytest.approx(1 / 3) and not rule["meets_acted"]
    assert (
        choose_threshold({"b": [r | {"wrong_among_answered": 1.0} for r in other]})["threshold"]
        is None
    )


def test_a_veil_of_glare_over_a_readable_fruit_is_a_washed_out_frame() -> None:
    for seed in range(6):
        fruit = render_item(np.random.default_rng([seed, 8]), "ripe", 128)
        veiled = (fruit * 0.4 + 245.0 * 0.6).astype(np.uint8)  # contrast kept, shadow gone
        assert picture_doubt(preprocess(fruit, 96)) == ""
        assert picture_doubt(preprocess(veiled, 96)) == "washed-out frame", seed
