"""Hostile pictures for the tests and ``bench/hostile.py``: pixel bombs and broken files.

Everything here is what an anonymous publisher on a line's broker could send on ``bb``
(or POST to the classification service): small on the wire, expensive or useless once
decoded.

* :func:`png_bomb`: a real PNG of ``side`` x ``side`` black grey pixels, deflated to a few
  hundred kilobytes (20000 x 20000 decodes to 400 MB grey, 1.2 GB as BGR);
* :func:`jpeg_bomb`: a small real JPEG whose frame header claims ``side`` x ``side``;
  a decoder allocates (and fills) the whole frame before noticing the data is short;
* :func:`broken_png`: a picture whose header is fine and whose pixel data is not: it
  passes a header check and fails to decode;
* :func:`truncated_jpeg`: a genuine JPEG cut in half;
* :func:`iccp_flood`: a small PNG whose header carries thousands of compressed ICC
  profiles, each inflating to a megabyte: cheap to send, slow for a header reader that
  inflates them (Pillow does, chunk by chunk, until the pixel data);
* :func:`segment_flood`: a genuine JPEG with a flood of empty segments before its frame
  header: a header reader walks each one (the hand-written one did, to the end);
* :class:`HostilePublisher`: a client on the line's broker that publishes such things on
  ``bb`` at set times after each feed command it sees on ``aa``.
"""

from __future__ import annotations

import functools
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol

_SOF0 = b"\xff\xc0"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@functools.cache
def png_bomb(side: int = 20000) -> bytes:
    """A valid greyscale PNG of ``side`` x ``side`` zero pixels (about 400 KB at 20000)."""
    rows = 1000
    block = (b"\x00" * (side + 1)) * rows  # filter byte + one grey byte per pixel
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(block) for _ in range(side // rows)]
    parts.append(deflate.compress((b"\x00" * (side + 1)) * (side % rows)))
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


@functools.cache
def jpeg_bomb(side: int = 20000) -> bytes:
    """A small JPEG whose start-of-frame claims ``side`` x ``side`` pixels."""
    _ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.index(_SOF0)
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)  # height, width
    return bytes(data)


def broken_png(side: int = 256) -> bytes:
    """A PNG with a sound ``side`` x ``side`` header and pixel data that is not deflate."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    garbage = bytes(range(256)) * 16
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", garbage)
        + _chunk(b"IEND", b"")
    )


def truncated_jpeg(genuine: bytes) -> bytes:
    """The first half of a genuine JPEG (no end-of-image marker)."""
    return genuine[: len(genuine) // 2]


@functools.cache
def iccp_flood(size: int = 4 * 1024 * 1024, inflated: int = 1024 * 1024, side: int = 64) -> bytes:
    """A PNG of ``side`` x ``side`` of at most ``size`` bytes, nearly all ``iCCP`` chunks
    (each inflating to ``inflated`` bytes)."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    profile = _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(inflated), 9))
    pixels = _chunk(b"IDAT", zlib.compress(bytes((side + 1) * side))) + _chunk(b"IEND", b"")
    count = (size - 8 - len(header) - len(pixels)) // len(profile)
    return b"\x89PNG\r\n\x1a\n" + header + profile * count + pixels


def segment_flood(genuine: bytes, size: int = 4 * 1024 * 1024) -> bytes:
    """``genuine`` (a JPEG) grown to about ``size`` bytes by empty APP15 segments after SOI."""
    empty = b"\xff\xef\x00\x02"
    return genuine[:2] + empty * ((size - len(genuine)) // len(empty)) + genuine[2:]


Send = bytes | Callable[[mqtt.Client], None]


class HostilePublisher:
    """A client on the line's broker that publishes on bb whenever the controller feeds.

    ``plan`` lists (line seconds after each feed command, a payload or a function that
    publishes with the client). On the default line the genuine picture of an item fed at
    T comes at about T + 2.75 s, and the controller takes pictures for it from T + 1.6 s:
    offsets in between arrive before the genuine picture, inside the item's window.
    """

    def __init__(self, host: str, port: int, speed: float, plan: Sequence[tuple[float, Send]]):
        self.speed, self.plan = speed, list(plan)
        self.feeds = 0
        self.commands: list[protocol.Command] = []
        self._timers: list[threading.Timer] = []
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{uuid.uuid4()}")
        client.on_connect = lambda c, *_: c.subscribe(protocol.COMMAND_TOPIC)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.connect(host, port)
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(10.0):
            self.close()
            raise RuntimeError(f"hostile client could not subscribe on {host}:{port}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        command = protocol.parse_command(msg.payload)
        if not isinstance(command, protocol.Command):
            return
        self.commands.append(command)
        if command == protocol.push(1):
            self.feeds += 1
            for delay, send in self.plan:
                timer = threading.Timer(delay / self.speed, self._send, (send,))
                timer.daemon = True
                timer.start()
                self._timers.append(timer)

    def _send(self, send: Send) -> None:
        if isinstance(send, bytes):
            self.client.publish(protocol.FEEDBACK_TOPIC, send)
        else:
            send(self.client)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.client.disconnect()
        self.client.loop_stop()
