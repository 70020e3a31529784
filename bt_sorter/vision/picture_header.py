"""What a picture claims to be, read from its header without decoding a pixel.

A PNG of 20000 x 20000 black pixels is a few hundred kilobytes on the wire and 1.2 GB
once decoded. :func:`check_picture` reads the format and the dimensions from the bytes
(PNG: the ``IHDR`` chunk; JPEG: the first start-of-frame marker; BMP: the info header)
and refuses, with :class:`BadPictureError` naming the dimensions, anything over the
configured limits, anything whose header cannot be read, and every other format. It is
pure Python over at most the header bytes, so a refusal costs microseconds and no memory.

:func:`bt_sorter.vision.preprocess.decode_picture` calls it before ``cv2.imdecode``;
the MQTT adapter calls it on every picture from the line, so a refused picture is bad
input and never an item's picture.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bt_sorter.config import Limits
from bt_sorter.vision.classifier import BadPictureError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
JPEG_TAIL = 512  # the end marker must sit this close to the end (trailing padding allowed)
BMP_SIGNATURE = b"BM"
# Start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn stand alone
_START_OF_SCAN = 0xDA


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
    if data.startswith(PNG_SIGNATURE):
        return _png(data)
    if data.startswith(JPEG_START):
        return _jpeg(data)
    if data.startswith(BMP_SIGNATURE):
        return _bmp(data)
    raise BadPictureError(f"not a JPEG, PNG or BMP picture (starts {data[:8]!r})")


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


def _png(data: bytes) -> PictureHeader:
    # signature, then the first chunk must be IHDR: length 13, width, height (big-endian).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise BadPictureError("PNG without an IHDR chunk first")
    width, height = struct.unpack(">II", data[16:24])
    return PictureHeader("PNG", width, height)


def _jpeg(data: bytes) -> PictureHeader:
    """Walk the marker segments up to the first start-of-frame; the scan must not come first."""
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise BadPictureError(f"JPEG marker expected at byte {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in _NO_LENGTH:
            continue
        if marker == _START_OF_SCAN or marker == JPEG_END[1]:
            raise BadPictureError("JPEG without a frame header before its data")
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            raise BadPictureError(f"JPEG segment of length {length} at byte {i}")
        if marker in _SOF:
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return PictureHeader("JPEG", width, height)
        i += length
    raise BadPictureError("JPEG header ends before its frame header")


def _bmp(data: bytes) -> PictureHeader:
    if len(data) < 26:
        raise BadPictureError("BMP header is cut short")
    (info_size,) = struct.unpack("<I", data[14:18])
    if info_size == 12:  # OS/2 core header: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return PictureHeader("BMP", width, abs(height))  # negative height: stored top-down
