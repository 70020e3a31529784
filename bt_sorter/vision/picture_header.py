"""What a picture claims to be, read from its header without decoding a pixel.

A PNG of 20000 x 20000 black pixels is a few hundred kilobytes on the wire and 1.2 GB
once decoded. :func:`check_picture` reads the format and the dimensions with Pillow's
header read (``Image.open`` parses the header and decodes nothing until asked) and
refuses, with :class:`BadPictureError` naming the dimensions, anything over the
configured limits, anything whose header cannot be read, and every other format.

Pillow's header read is bounded here, because it runs on paho's network thread for every
picture from the line: Pillow only sees the first :data:`HEADER_BYTES` of a picture (it
walks every PNG chunk and JPEG segment before the pixel data, and a PNG can carry
thousands of small compressed ``iCCP`` chunks that each inflate to a megabyte: 15 s for a
4 MB picture unbounded), and a PNG's compressed text and ICC profile may inflate to at
most :data:`PNG_TEXT_BYTES` (Pillow's own ``MAX_TEXT_CHUNK``/``MAX_TEXT_MEMORY`` knobs).
Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``) stays on behind the configured
limits: above twice it Pillow refuses the picture itself, with the pixel count.
``bench/picture_header.py`` prints what a check costs, genuine and hostile.

:func:`bt_sorter.vision.preprocess.decode_picture` calls it before ``cv2.imdecode``;
the MQTT adapter calls it on every picture from the line, so a refused picture is bad
input and never an item's picture.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from bt_sorter.config import Limits
from bt_sorter.vision.classifier import BadPictureError

HEADER_BYTES = 16 * 1024  # what Pillow may read of a picture to find its header
PNG_TEXT_BYTES = 4 * 1024  # a PNG's compressed text or ICC profile, inflated (sRGB: 3 KB)
FORMATS = ("PNG", "JPEG", "BMP")
JPEG_END = b"\xff\xd9"
JPEG_TAIL = 512  # the end marker must sit this close to the end (trailing padding allowed)

PngImagePlugin.MAX_TEXT_CHUNK = PNG_TEXT_BYTES
PngImagePlugin.MAX_TEXT_MEMORY = PNG_TEXT_BYTES
# Between Image.MAX_IMAGE_PIXELS and twice it Pillow only warns, once per distinct size:
# the configured limits refuse those pictures anyway, and an attacker's stream of distinct
# sizes would grow the warnings registry without bound.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True, slots=True)
class PictureHeader:
    """The format and dimensions a picture's header declares."""

    format: str  # "PNG", "JPEG" or "BMP"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def __str__(self) -> str:
        return f"{self.format} of {self.width}x{self.height}"


def read_header(data: bytes) -> PictureHeader:
    """The declared format and size; :class:`BadPictureError` when they cannot be read."""
    if not data:
        raise BadPictureError("empty picture")
    try:
        with Image.open(io.BytesIO(data[:HEADER_BYTES]), formats=FORMATS) as image:
            width, height = image.size
            kind = "JPEG" if image.format == "MPO" else str(image.format)  # MPO: JPEG + index
    except Image.DecompressionBombError as exc:
        raise BadPictureError(f"{exc} (header, not decoded)") from None
    except UnidentifiedImageError:
        raise BadPictureError(
            f"not a JPEG, PNG or BMP picture, or its header is broken (starts {data[:8]!r})"
        ) from None
    except Exception as exc:  # untrusted bytes: whatever Pillow trips on, the picture is bad
        raise BadPictureError(
            f"unreadable picture header within its first {HEADER_BYTES} bytes: {exc}"
        ) from None
    return PictureHeader(kind, width, height)


def check_picture(data: bytes, limits: Limits) -> PictureHeader:
    """The header of ``data`` if it is within ``limits``, else :class:`BadPictureError`.

    The reason names the header's dimensions and the limit they break.
    """
    header = read_header(data)
    if header.width <= 0 or header.height <= 0:
        raise BadPictureError(f"{header}: a side of zero")
    if max(header.width, header.height) > limits.picture_side:
        raise BadPictureError(
            f"{header}: a side over the limit of {limits.picture_side} (header, not decoded)"
        )
    if header.pixels > limits.picture_pixels:
        raise BadPictureError(
            f"{header} is {header.pixels} pixels, over the limit of {limits.picture_pixels} "
            "(header, not decoded)"
        )
    if header.format == "JPEG" and JPEG_END not in data[-JPEG_TAIL:]:
        raise BadPictureError(f"truncated {header}: no end-of-image marker")
    return header
