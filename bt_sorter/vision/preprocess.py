"""Picture decoding and the one preprocessing path shared by training, inference and the service."""

from __future__ import annotations

import cv2
import numpy as np

from bt_sorter.vision.classifier import BadPictureError

MAX_PICTURE_PIXELS = 40_000_000


def decode_picture(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes into a BGR ``uint8`` array of shape (H, W, 3).

    Raises :class:`BadPictureError` with a reason for anything that is not a whole picture.
    """
    if not data:
        raise BadPictureError("empty picture")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise BadPictureError("bytes do not decode as a picture")
    if image.shape[0] * image.shape[1] > MAX_PICTURE_PIXELS:
        raise BadPictureError(f"picture of {image.shape[1]}x{image.shape[0]} is too large")
    return image
