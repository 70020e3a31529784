"""Decoding refuses anything that is not a whole picture; preprocessing is the course's recipe."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bt_sorter.sim.render import render_picture
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.dataset import augment, scan_folder, split_samples
from bt_sorter.vision.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_picture,
    load_class_indices,
    preprocess,
    preprocess_batch,
    write_class_indices,
)


def _jpeg() -> bytes:
    return render_picture(np.random.default_rng(11), "ripe", size=128)


def test_rendered_jpeg_decodes_to_a_bgr_picture() -> None:
    image = decode_picture(_jpeg())
    assert image.shape == (128, 128, 3)
    assert image.dtype == np.uint8


def test_jpeg_cut_in_half_is_refused() -> None:
    data = _jpeg()
    with pytest.raises(BadPictureError):
        decode_picture(data[: len(data) // 2])


def test_jpeg_missing_only_its_end_marker_is_refused_as_truncated() -> None:
    with pytest.raises(BadPictureError, match="truncated"):
        decode_picture(_jpeg()[:-2])


@pytest.mark.parametrize("data", [b"", b"hello, not a picture", b"\x89PNG\r\n\x1a\n" + b"0" * 50])
def test_non_pictures_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(BadPictureError, match=r"\w"):
        decode_picture(data)


def test_png_and_jpeg_of_the_same_scene_preprocess_alike() -> None:
    image = decode_picture(_jpeg())
    ok, png = cv2.imencode(".png", image)
    assert ok
    a = preprocess(image, 64)
    b = preprocess(decode_picture(png.tobytes()), 64)
    assert np.allclose(a, b)


def test_preprocess_converts_bgr_to_rgb_and_normalises_with_imagenet_statistics() -> None:
    red_bgr = np.zeros((50, 80, 3), np.uint8)
    red_bgr[:, :, 2] = 255
    out = preprocess(red_bgr, 32)
    assert out.shape == (3, 32, 32)
    assert out.dtype == np.float32
    rgb = (1.0, 0.0, 0.0)
    expected = [(v - m) / s for v, m, s in zip(rgb, IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert np.allclose(out.reshape(3, -1).mean(axis=1), expected, atol=1e-5)


def test_batch_helper_stacks_the_same_arrays_as_single_calls() -> None:
    pictures = [decode_picture(render_picture(np.random.default_rng(i), "raw", 96)) for i in (1, 2)]
    batch = preprocess_batch(pictures, 48)
    assert batch.shape == (2, 3, 48, 48)
    assert np.array_equal(batch[1], preprocess(pictures[1], 48))


def test_class_index_round_trips_and_bad_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "class_indices.json"
    write_class_indices(path, ["half_ripe", "raw", "ripe"])
    assert load_class_indices(path) == ["half_ripe", "raw", "ripe"]
    path.write_text(json.dumps({"0": "ripe", "2": "raw"}))
    with pytest.raises(ValueError, match="keys"):
        load_class_indices(path)


def test_augmented_picture_keeps_its_size_and_the_fruit_colour() -> None:
    image = decode_picture(render_picture(np.random.default_rng(5), "ripe", 128))
    out = augment(image, np.random.default_rng(0))
    assert out.shape == image.shape
    assert out.dtype == np.uint8
    red_share = lambda im: float((im[:, :, 2] > im[:, :, 1] + 40).mean())  # noqa: E731
    assert red_share(out) > 0.5 * red_share(image) > 0


def test_split_is_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(20):
            (tmp_path / label / f"{i}.jpg").write_bytes(b"x")
    classes, samples = scan_folder(tmp_path)
    assert classes == ["a", "b"]
    train, val = split_samples(samples, 0.25, seed=3)
    again, _ = split_samples(samples, 0.25, seed=3)
    assert train == again
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    assert sorted(s.target for s in val) == [0] * 5 + [1] * 5
