"""What the picture header check costs: genuine pictures, bombs, broken and hostile headers.

Run: ``python bench/picture_header.py`` (``--repeat N``; ``--module FILE`` to time the
``check_picture`` of another ``picture_header.py``, e.g. the hand-written parser before
Pillow: ``git show e63c38f:bt_sorter/vision/picture_header.py > /tmp/old_header.py``).

The check runs on paho's network thread for every picture from the line and before every
decode, so it must stay cheap whatever the bytes: each case prints the median and the
95th percentile of ``--repeat`` checks in microseconds, what the check answered, and beside the
genuine pictures what decoding them costs (``decode_picture``), for scale. Memory: the
process's ``VmHWM`` before and after all the checks (the bombs would cost 400 MB to
1.2 GB decoded).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bt_sorter.config import Limits
from bt_sorter.sim.render import render_picture
from bt_sorter.vision import picture_header
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.preprocess import decode_picture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-only helpers
from hostile import (
    broken_png,
    iccp_flood,
    jpeg_bomb,
    png_bomb,
    segment_flood,
    truncated_jpeg,
)

Check = Callable[[bytes, Limits], object]


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cases() -> dict[str, bytes]:
    """The pictures to check, genuine first."""
    rng = np.random.default_rng(7)
    photo = cv2.imdecode(np.frombuffer(render_picture(rng, "ripe", 256), np.uint8), 1)
    genuine = {
        f"genuine {fmt} 256x256": cv2.imencode(fmt, photo)[1].tobytes()
        for fmt in (".jpg", ".png", ".bmp")
    }
    big = cv2.resize(photo, (2048, 2048))
    genuine["genuine .jpg 2048x2048"] = cv2.imencode(".jpg", big)[1].tobytes()
    return genuine | {
        "PNG bomb 20000x20000": png_bomb(20000),
        "JPEG bomb 20000x20000": jpeg_bomb(20000),
        "JPEG bomb 4097x4097": jpeg_bomb(4097),
        "broken PNG (sound header)": broken_png(),
        "truncated JPEG": truncated_jpeg(genuine["genuine .jpg 256x256"]),
        "not a picture (GIF)": b"GIF89a" + bytes(64),
        "iCCP flood 4 MB (1 MB each)": iccp_flood(),
        "iCCP flood 16 KB (4 KB each)": iccp_flood(16 * 1024, 4 * 1024),
        "iCCP flood 64 KB (64 KB each)": iccp_flood(64 * 1024, 64 * 1024),
        "JPEG segment flood 16 KB": segment_flood(genuine["genuine .jpg 256x256"], 16 * 1024),
        "JPEG segment flood 4 MB": segment_flood(genuine["genuine .jpg 256x256"]),
    }


def timed(check: Check, data: bytes, repeat: int) -> tuple[list[float], str]:
    """Seconds of each of ``repeat`` checks (fewer, at least 3, once they took 2 s), and
    the answer of the last."""
    times: list[float] = []
    answer = ""
    while len(times) < repeat and (len(times) < 3 or sum(times) < 2.0):
        start = time.perf_counter()
        try:
            answer = f"ok: {check(data, Limits())}"
        except BadPictureError as exc:
            answer = f"refused: {exc}"
        times.append(time.perf_counter() - start)
    return times, answer


def load_check(module: Path | None) -> Check:
    if module is None:
        return picture_header.check_picture
    spec = importlib.util.spec_from_file_location("other_picture_header", module)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = other  # dataclasses look their module up
    spec.loader.exec_module(other)
    check: Check = other.check_picture
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="checks per case (200)")
    parser.add_argument("--module", type=Path, help="a picture_header.py to time instead")
    args = parser.parse_args(argv)
    check = load_check(args.module)
    pictures = cases()
    check(pictures["genuine .jpg 256x256"], Limits())  # first use loads Pillow's plugins
    before = _vm_hwm_mb()
    print(f"check_picture of {args.module or picture_header.__file__}, {args.repeat} runs each")
    print(f"{'case':32} {'bytes':>9} {'median us':>10} {'p95 us':>9}  answer")
    for name, data in pictures.items():
        times, answer = timed(check, data, args.repeat)
        median = statistics.median(times) * 1e6
        p95 = statistics.quantiles(times, n=20)[-1] * 1e6
        print(f"{name:32} {len(data):9} {median:10.1f} {p95:9.1f}  {answer[:70]}")
        if name.startswith("genuine"):
            decode = timed(decode_picture, data, max(1, args.repeat // 20))[0]
            print(
                f"{'  decode_picture, for scale':32} {'':9} {statistics.median(decode) * 1e6:10.1f}"
            )
    print(f"VmHWM {before:.1f} MB before the checks, {_vm_hwm_mb():.1f} MB after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
