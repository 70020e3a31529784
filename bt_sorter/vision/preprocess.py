"""Picture decoding and the one preprocessing path shared by training, inference and the service.

:func:`decode_picture` is the only place encoded bytes become pixels: the header is checked
against the configured limits first (a pixel bomb is refused before it is decoded), and the
pixels being decoded at once in a process are bounded.

:func:`preprocess` is the only place a picture becomes a network input: BGR→RGB, resize to the
model's input size, ImageNet mean/std normalisation, CHW ``float32``. The input size and the
class index come from the checkpoint's metadata or ``class_indices.json``, never from here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from bt_sorter.config import Limits
from bt_sorter.vision.classifier import BadPictureError, ClassifyError
from bt_sorter.vision.picture_header import check_picture

DEFAULT_LIMITS = Limits()

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODE_WAIT = 10.0  # s a decode may wait for the process's decode budget


class _DecodeBudget:
    """Pixels being decoded at once in this process, so concurrent decodes cannot add up.

    Each decode takes its header's pixel count before ``cv2.imdecode`` and gives it back
    after; one that would go over the limit waits (on a worker thread, never a tick).
    """

    def __init__(self) -> None:
        self._in_use = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def take(self, pixels: int, limit: int) -> Iterator[None]:
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_use + pixels <= limit, DECODE_WAIT):
                raise ClassifyError(f"decoder busy: {self._in_use} pixels being decoded")
            self._in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= pixels
                self._changed.notify_all()


_BUDGET = _DecodeBudget()
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 4 * 1024 * 1024


def _give_big_buffers_back() -> None:
    """Make glibc serve allocations over 4 MiB (decoded pictures) with mmap, always.

    By default glibc raises its mmap threshold each time a large block is freed, after
    which decoded pictures come from per-thread heaps that keep the memory once it is
    freed: 32 concurrent 8 MP pictures left 460 MB resident although the decode budget
    held only two at a time. A fixed threshold gives each picture back when it is freed.
    Network activations at the model's input sizes stay under it. Elsewhere: nothing.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


_give_big_buffers_back()


@contextlib.contextmanager
def decoded(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Iterator[np.ndarray]:
    """The decoded picture, counted against the process's decode budget while it is used.

    Use it where a full-size picture is reduced at once (``with decoded(data) as image:
    return preprocess(image, size)``), so pictures waiting for the model are small ones.
    Checks and errors as :func:`decode_picture`.
    """
    header = check_picture(data, limits)
    buffer = np.frombuffer(data, dtype=np.uint8)
    with _BUDGET.take(header.pixels, limits.decode_pixels):
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise BadPictureError(f"{header}: bytes do not decode as a picture")
        if image.shape[:2] != (header.height, header.width):
            raise BadPictureError(f"{header} decoded as {image.shape[1]}x{image.shape[0]}")
        yield image


def decode_picture(data: bytes, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode JPEG/PNG/BMP bytes into a BGR ``uint8`` array of shape (H, W, 3).

    The header is checked against ``limits`` first (:func:`check_picture`): a picture over
    them, or of any other format, is refused before a pixel is decoded. Raises
    :class:`BadPictureError` with a reason for anything that is not a whole picture, and
    ClassifyError when the process's decode budget stays full for ``DECODE_WAIT`` s.
    """
    with decoded(data, limits) as image:
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


def picture_to_input(data: bytes, input_size: int, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Encoded picture bytes straight to a CHW network input (decode + preprocess).

    The full-size picture counts against the decode budget until it has been reduced.
    """
    with decoded(data, limits) as image:
        return preprocess(image, input_size)


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
