"""Picture decoding and the one preprocessing path shared by training, inference and the service.

:func:`preprocess` is the only place a picture becomes a network input: BGR→RGB, resize to the
model's input size, ImageNet mean/std normalisation, CHW ``float32``. The input size and the
class index come from the checkpoint's metadata or ``class_indices.json``, never from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bt_sorter.vision.classifier import BadPictureError

MAX_PICTURE_PIXELS = 40_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_JPEG_TAIL = 512  # the end marker must sit this close to the end (trailing padding allowed)


def decode_picture(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes into a BGR ``uint8`` array of shape (H, W, 3).

    Raises :class:`BadPictureError` with a reason for anything that is not a whole picture.
    """
    if not data:
        raise BadPictureError("empty picture")
    if data[:2] == _JPEG_START and _JPEG_END not in data[-_JPEG_TAIL:]:
        raise BadPictureError("truncated JPEG: no end-of-image marker")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise BadPictureError("bytes do not decode as a picture")
    if image.shape[0] * image.shape[1] > MAX_PICTURE_PIXELS:
        raise BadPictureError(f"picture of {image.shape[1]}x{image.shape[0]} is too large")
    return image


_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32) * 255.0
_INV_STD = 1.0 / (np.array(IMAGENET_STD, dtype=np.float32) * 255.0)


def preprocess(image_bgr: np.ndarray, input_size: int) -> np.ndarray:
    """A BGR ``uint8`` picture as a normalised RGB CHW ``float32`` array of side ``input_size``."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise BadPictureError(f"expected an HxWx3 picture, got shape {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    shrink = h > input_size or w > input_size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (input_size, input_size), interpolation=interp)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)
    normalised = (rgb - _MEAN) * _INV_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess_batch(images_bgr: Sequence[np.ndarray], input_size: int) -> np.ndarray:
    """Several BGR pictures as one (N, 3, S, S) ``float32`` batch."""
    if not images_bgr:
        return np.zeros((0, 3, input_size, input_size), dtype=np.float32)
    return np.stack([preprocess(image, input_size) for image in images_bgr])


def picture_to_input(data: bytes, input_size: int) -> np.ndarray:
    """Encoded picture bytes straight to a CHW network input (decode + preprocess)."""
    return preprocess(decode_picture(data), input_size)


def load_class_indices(path: Path) -> list[str]:
    """Labels by class index from a course-style ``class_indices.json`` (``{"0": "ripe", ...}``).

    Raises ``ValueError`` if the keys are not exactly ``"0".."N-1"`` or a label is not a string.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f'{path}: expected a JSON object mapping "0".. to labels')
    expected = {str(i) for i in range(len(raw))}
    if set(raw) != expected:
        raise ValueError(f'{path}: keys must be "0".."{len(raw) - 1}", got {sorted(raw)}')
    labels = [raw[str(i)] for i in range(len(raw))]
    if not all(isinstance(label, str) and label for label in labels):
        raise ValueError(f"{path}: every label must be a non-empty string")
    return labels


def write_class_indices(path: Path, labels: Sequence[str]) -> None:
    """Write labels as a course-style ``class_indices.json``."""
    mapping = {str(i): label for i, label in enumerate(labels)}
    Path(path).write_text(json.dumps(mapping, indent=2) + "\n", encoding="utf-8")
