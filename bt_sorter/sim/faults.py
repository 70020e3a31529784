"""Faults the simulator injects into what it sends on the feedback topic (seeded).

The line physics (:mod:`bt_sorter.sim.line`) handles the physical faults, a stuck item and
a stalled belt; this module handles what happens on the wire: dropped and duplicated
messages, extra malformed payloads, corrupt and missing pictures, and gate flicker.
Every injected fault is counted in :attr:`FaultInjector.counts`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from bt_sorter.config import FaultConfig

# Junk that a robust reader must shrug off: not JSON, not UTF-8, wrong types, unknown keys.
_JUNK: tuple[bytes, ...] = (
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'{"first_switch": "maybe"}',
    b'{"second_switch": 2}',
    b'{"image": 42}',
    b'{"image": "%%%not base64%%%"}',
    b'{"mystery_sensor": true}',
    b"{}",
)
FLICKER_OFFSETS = (0.05, 0.1)  # line s after a rising edge: the extra clear, then blocked again


class FaultInjector:
    """Decides, with its own seeded generator, which wire faults happen."""

    def __init__(self, faults: FaultConfig, seed: int) -> None:
        self.faults = faults
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.counts: Counter[str] = Counter()

    def _happens(self, rate: float) -> bool:
        return rate > 0 and float(self.rng.random()) < rate

    def picture(self, jpeg: bytes) -> bytes | None:
        """The picture as sent: the bytes, broken bytes, or None when it goes missing."""
        if self._happens(self.faults.missing_picture_rate):
            self.counts["missing_pictures"] += 1
            return None
        if self._happens(self.faults.corrupt_picture_rate):
            self.counts["corrupt_pictures"] += 1
            return corrupt_jpeg(jpeg, self.rng)
        return jpeg

    def flicker(self) -> bool:
        """True when this gate passage gets an extra clear/blocked pair."""
        if self._happens(self.faults.flicker_rate):
            self.counts["flickers"] += 1
            return True
        return False

    def deliver(self, payload: bytes) -> list[bytes]:
        """What actually goes on the wire for one message: none, one or two copies, plus junk."""
        if self._happens(self.faults.drop_rate):
            self.counts["dropped"] += 1
            sent: list[bytes] = []
        elif self._happens(self.faults.duplicate_rate):
            self.counts["duplicated"] += 1
            sent = [payload, payload]
        else:
            sent = [payload]
        if self._happens(self.faults.malformed_rate):
            self.counts["malformed"] += 1
            sent.append(_JUNK[int(self.rng.integers(len(_JUNK)))])
        return sent


def corrupt_jpeg(jpeg: bytes, rng: np.random.Generator) -> bytes:
    """A JPEG that still starts with the JPEG magic but is cut short and has bytes flipped."""
    keep = max(16, int(len(jpeg) * float(rng.uniform(0.3, 0.7))))
    broken = bytearray(jpeg[:keep])
    for index in rng.integers(4, len(broken), size=max(1, len(broken) // 200)):
        broken[int(index)] ^= 0x5A
    while broken.endswith(b"\xff\xd9") or b"\xff\xd9" in broken[-512:]:
        broken = broken[: broken.rindex(b"\xff\xd9")]  # no end-of-image marker survives
    return bytes(broken)
