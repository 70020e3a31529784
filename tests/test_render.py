"""The camera-picture renderer: determinism, format, class colours, domains, datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bt_sorter.sim.render import (
    ALL_DOMAINS,
    LABELS,
    MARGIN,
    RAW_MAX,
    RIPE_MIN,
    render_item,
    render_picture,
    ripeness_label,
    sample_ripeness,
    write_dataset,
)
from bt_sorter.vision.preprocess import decode_picture


def _fruit_hue(image: np.ndarray) -> float:
    """Mean hue of the saturated (fruit) pixels, reds wrapped below zero."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hue = hsv[:, :, 0].astype(np.float32)
    fruit = (hsv[:, :, 1] > 90) & (hsv[:, :, 2] > 50) & ((hue < 75) | (hue > 150))
    hues = hue[fruit]
    return float(np.where(hues > 150, hues - 180, hues).mean())


def test_same_seed_gives_the_same_picture_and_another_seed_a_different_one() -> None:
    a = render_picture(np.random.default_rng(7), "half_ripe")
    b = render_picture(np.random.default_rng(7), "half_ripe")
    c = render_picture(np.random.default_rng(8), "half_ripe")
    assert a == b
    assert a != c


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_rendered_item_is_a_bgr_uint8_square_of_the_requested_size(size: int, domain: str) -> None:
    image = render_item(np.random.default_rng(1), "ripe", size=size, domain=domain)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8
    assert image.std() > 5  # a picture, not a blank frame


@pytest.mark.parametrize("domain", ["train", "shifted"])
@pytest.mark.parametrize("label", LABELS)
def test_every_rendered_jpeg_decodes_to_the_rendered_size(label: str, domain: str) -> None:
    for seed in range(4):
        data = render_picture(np.random.default_rng(seed), label, size=128, domain=domain)
        assert data[:2] == b"\xff\xd8"
        assert decode_picture(data).shape == (128, 128, 3)


def test_classes_separate_by_mean_fruit_hue_red_below_orange_below_green() -> None:
    hues = {
        label: [_fruit_hue(render_item(np.random.default_rng([3, i]), label)) for i in range(15)]
        for label in LABELS
    }
    assert max(hues["ripe"]) < min(hues["half_ripe"])
    assert max(hues["half_ripe"]) < min(hues["raw"])


def test_sampled_ripeness_keeps_its_class_and_a_margin_from_every_threshold() -> None:
    rng = np.random.default_rng(11)
    for label in LABELS:
        values = np.array([sample_ripeness(rng, label) for _ in range(2000)])
        assert all(ripeness_label(r) == label for r in values)
        distance = np.minimum(np.abs(values - RAW_MAX), np.abs(values - RIPE_MIN))
        assert distance.min() >= MARGIN
        borderline = float(np.mean(distance < MARGIN + 0.0601))
        assert 0.06 < borderline < 0.2  # a real share of near-boundary fruit


def test_shifted_domain_belts_fall_outside_the_training_brightness_or_colour() -> None:
    def ring(image: np.ndarray) -> np.ndarray:
        return np.median(np.concatenate([image[:12].reshape(-1, 3), image[-12:].reshape(-1, 3)]), 0)

    train = np.array([ring(render_item(np.random.default_rng([1, i]), "raw")) for i in range(40)])
    shifted = np.array(
        [
            ring(render_item(np.random.default_rng([2, i]), "raw", domain="shifted"))
            for i in range(40)
        ]
    )
    grey_t, grey_s = train.mean(1), shifted.mean(1)
    chroma_t = train.max(1) - train.min(1)
    chroma_s = shifted.max(1) - shifted.min(1)
    outside = (grey_s < grey_t.min()) | (grey_s > grey_t.max()) | (chroma_s > chroma_t.max())
    assert outside.mean() > 0.5


def test_wide_domain_belts_span_the_training_and_the_shifted_ones() -> None:
    def ring(image: np.ndarray) -> np.ndarray:
        return np.median(np.concatenate([image[:12].reshape(-1, 3), image[-12:].reshape(-1, 3)]), 0)

    def belts(domain: str) -> np.ndarray:
        rng = [np.random.default_rng([4, i]) for i in range(60)]
        return np.array([ring(render_item(r, "raw", size=96, domain=domain)) for r in rng])

    train, wide = belts("train"), belts("wide")
    chroma_t = (train.max(1) - train.min(1)).max()
    chroma_w = wide.max(1) - wide.min(1)
    assert (chroma_w > chroma_t).mean() > 0.3  # coloured belts
    assert wide.mean(1).min() < train.mean(1).min()  # darker than any training belt
    assert wide.mean(1).max() > train.mean(1).max()  # and lighter


def test_unknown_label_domain_or_size_is_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="label"):
        render_item(rng, "rotten")
    with pytest.raises(ValueError, match="domain"):
        render_item(rng, "ripe", domain="night")
    with pytest.raises(ValueError, match="size"):
        render_item(rng, "ripe", size=8)


def test_write_dataset_writes_one_folder_per_class_with_n_pictures(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path / "a", n=3, seed=5, size=64)
    assert counts == {label: 3 for label in LABELS}
    for label in LABELS:
        files = sorted((tmp_path / "a" / label).glob("*.jpg"))
        assert [f.name for f in files] == [f"{label}_{i}.jpg" for i in range(3)]
        for f in files:
            assert decode_picture(f.read_bytes()).shape == (64, 64, 3)
    write_dataset(tmp_path / "b", n=3, seed=5, size=64)
    same = (tmp_path / "b" / "raw" / "raw_2.jpg").read_bytes()
    assert same == (tmp_path / "a" / "raw" / "raw_2.jpg").read_bytes()
