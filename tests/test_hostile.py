"""Hostile inputs: pixel bombs, broken pictures, oversized payloads and floods on bb.

Real parts throughout: mosquitto, the simulator as its own process, run.py as a
subprocess, the service as a subprocess, real decoding. Memory is read from the kernel's
high-water mark (``VmHWM``) of the process that would have decoded the bomb.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import py_trees
import pytest
from contexts import measured_line, running_context
from hostile import (
    HostilePublisher,
    Send,
    broken_png,
    iccp_flood,
    jpeg_bomb,
    png_bomb,
)
from hypothesis import given
from hypothesis import strategies as st
from peer import Peer, wait_until
from PIL import Image

from bt_sorter import protocol
from bt_sorter.adapter import MqttAdapter
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Received
from bt_sorter.broker import BrokerProcess, free_port, stop_process
from bt_sorter.clock import LineClock
from bt_sorter.config import BrokerConfig, Limits, load_config
from bt_sorter.sim.process import start_simulator
from bt_sorter.sim.render import render_picture
from bt_sorter.trees.build import load_tree
from bt_sorter.vision.classifier import BadPictureError, ClassifierWorker, Prediction
from bt_sorter.vision.hsv import HsvClassifier
from bt_sorter.vision.picture_header import (
    HEADER_BYTES,
    PNG_TEXT_BYTES,
    check_picture,
    read_header,
)
from bt_sorter.vision.preprocess import decode_picture
from bt_sorter.yamlio import SpecError

Status = py_trees.common.Status

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def vm_hwm(pid: int) -> int:
    """The kernel's peak resident set size of ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


_DECODE_BOMBS = """
import json, resource
from hostile import jpeg_bomb, png_bomb
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.preprocess import decode_picture
bombs = [png_bomb(20000), jpeg_bomb(20000), jpeg_bomb(4097), b"GIF89a" + bytes(64)]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = hwm()
reasons = []
for bomb in bombs:
    try:
        decode_picture(bomb)
        reasons.append("decoded")
    except BadPictureError as exc:
        reasons.append(str(exc))
print(json.dumps({"reasons": reasons, "grew": hwm() - before}))
"""


def test_pixel_bombs_are_refused_from_their_header_before_any_pixel_is_decoded() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_BOMBS], cwd=ROOT / "tests",  # hostile.py is a test helper
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    png, jpeg, one_over, gif = result["reasons"]
    # Pillow's own guard refuses these (400 MP is over twice Image.MAX_IMAGE_PIXELS)
    assert "400000000 pixels" in png and "not decoded" in png
    assert "400000000 pixels" in jpeg and "not decoded" in jpeg
    assert "JPEG of 4097x4097" in one_over and "limit of 4096" in one_over
    assert "not a JPEG, PNG or BMP" in gif
    # decoding either bomb costs 400 MB (grey) to 1.2 GB (BGR): it never started
    assert result["grew"] < 50 * MB, result


def _post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.loads(response.read()))


@pytest.mark.slow
def test_service_refuses_concurrent_bombs_without_its_memory_growing() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "bt_sorter.vision.serve", "--port", str(port), "--threads", "1"]
    service = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=120), "service did not start"
        idle = vm_hwm(service.pid)
        bombs = [png_bomb(20000), jpeg_bomb(20000)] * 4
        with concurrent.futures.ThreadPoolExecutor(len(bombs)) as pool:
            answers = list(pool.map(lambda b: _post(f"{base}/aisim_tf_pre", b), bombs))
        peak = vm_hwm(service.pid)
    finally:
        stop_process(service, 10.0)
    for answer in answers:
        assert answer["code"] == 1 and answer["results"] == []
        assert "400000000 pixels" in answer["error"] and "not decoded" in answer["error"]
    assert peak < 1.5 * idle, (peak / MB, idle / MB)


def test_oversized_payload_is_refused_before_it_is_parsed(broker: BrokerProcess) -> None:
    limits = Limits(payload_bytes=10_000)
    config = BrokerConfig(host=broker.host, port=broker.port, client_id="ctl-oversized")
    adapter = MqttAdapter(config, LineClock(), limits=limits)
    adapter.start()
    peer = Peer(broker)
    try:
        assert adapter.wait_connected(10)
        small = protocol.encode_picture(broken_png(16))
        assert len(small) < 10_000
        peer.publish(protocol.encode_picture(png_bomb(20000)))  # 519 KB of base64
        peer.publish(small)
        events: list[Received] = []
        assert wait_until(
            lambda: (
                events.extend(e for e in adapter.drain() if isinstance(e, Received))
                or len(events) >= 2
            ),
            timeout=10,
        )
    finally:
        peer.close()
        adapter.stop()
    refused, passed = (e.event for e in events)
    assert isinstance(refused, protocol.BadInput)
    assert refused.reason.startswith("payload over the limit") and "limit 10000" in refused.reason
    assert isinstance(passed, protocol.Picture)  # a header check passes it; decoding will not


def run_controller(
    broker: BrokerProcess,
    tmp_path: Path,
    items: int,
    speed: float,
    plan: list[tuple[float, Send]],
    config_text: str = "",
) -> tuple[int, dict[str, Any], dict[str, Any], HostilePublisher, list[dict[str, Any]]]:
    """trees/sort.yaml against the simulator, with a hostile publisher; exit, summaries, record."""
    config = tmp_path / "line.yaml"
    config.write_text(config_text or "{}\n")
    summary, record = tmp_path / "summary.json", tmp_path / "record.jsonl"
    hostile = HostilePublisher(broker.host, broker.port, speed, plan)
    sim = start_simulator(
        broker.address, summary=tmp_path / "sim.json", items=items, seed=2, speed=speed
    )
    try:
        cmd = [
            sys.executable, "run.py", "--tree", "trees/sort.yaml", "--broker", broker.address,
            "--config", str(config), "--speed", str(speed), "--max-items", str(items),
            "--viz", "none", "--summary", str(summary), "--record", str(record),
        ]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        truth = sim.stop(timeout=10.0) or {}
    finally:
        hostile.close()
        sim.stop()
    assert summary.exists(), done.stderr[-3000:]
    events = [json.loads(line) for line in record.read_text().splitlines()]
    return done.returncode, json.loads(summary.read_text()), truth, hostile, events


@pytest.mark.slow
def test_bombs_and_a_broken_picture_before_the_genuine_one_do_not_lose_the_item(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    plan = [
        (1.9, protocol.encode_picture(png_bomb(20000))),
        (2.1, protocol.encode_picture(jpeg_bomb(20000))),
        (2.35, protocol.encode_picture(broken_png(256))),  # passes the header, fails to decode
    ]
    code, summary, truth, hostile, record = run_controller(broker, tmp_path, 2, 2.0, plan)
    assert code == 0, summary
    assert hostile.feeds == 2
    assert truth["correct"] == 2 and truth["missorted"] == 0, truth
    assert summary["outcomes"] == {"sorted": 2}
    assert summary["bad_inputs"] >= 4  # the bombs: refused in the adapter, never an item's
    dropped = [e for e in record if e["event"] == "picture_dropped"]
    assert [e["item"] for e in dropped] == [1, 2]  # the broken picture took, then freed, the slot


@pytest.mark.slow
def test_a_flood_on_bb_is_dropped_counted_and_stops_the_line_with_an_alarm(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    edges = [protocol.encode_gate(1 + i % 3, i % 2 == 0) for i in range(6)]
    junk = [b"{not json", protocol.encode_picture(jpeg_bomb(20000))]
    flood = [(edges + junk)[i % 8] for i in range(3000)]
    flooded = threading.Event()

    def send_flood(client: mqtt.Client) -> None:  # after the first feed only
        if not flooded.is_set():
            flooded.set()
            for payload in flood:
                client.publish(protocol.FEEDBACK_TOPIC, payload)

    code, summary, truth, hostile, record = run_controller(
        broker, tmp_path, 3, 1.0, [(0.5, send_flood)], "limits:\n  queue_events: 20\n"
    )
    assert flooded.is_set()
    assert code == 3, summary
    assert summary["dropped"].get("gate_edge", 0) > 0, summary["dropped"]
    assert "cannot be trusted" in summary["alarms"][0], summary["alarms"]
    assert any(e["event"] == "inputs_distrusted" for e in record)
    assert hostile.commands[-2:] == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert truth["missorted"] == 0 and truth["jammed"] == 0, truth


class HeldClassifier(HsvClassifier):
    """The HSV rule, answering only once ``release`` is set: the test, not the scheduler,
    says which pictures have arrived before a broken one's answer comes back."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def classify(self, data: bytes) -> Prediction:
        if not self.release.wait(timeout=10.0):
            raise AssertionError("the test never released the classifier")
        return super().classify(data)


def vision_line(tmp_path: Path, classifier: HsvClassifier | None = None) -> tuple[Context, Any]:
    """TrackItems beside trees/label_item.yaml, the HSV rule (or ``classifier``) as the
    classifier, belt running, the built-in line measured."""
    worker = ClassifierWorker(classifier or HsvClassifier())
    ctx = running_context(tmp_path, measured_line(), {"primary": worker})
    (tmp_path / "vision.yaml").write_text(
        "root:\n  parallel: vision\n  policy: success_on_all\n  children:\n"
        f"    - TrackItems: track\n    - include: {ROOT / 'trees' / 'label_item.yaml'}\n"
    )
    return ctx, load_tree(tmp_path / "vision.yaml", ctx)


def drive(
    ctx: Context,
    root: Any,
    arrivals: dict[float, bytes],
    until: Callable[[], bool],
    end: float,
    arrived: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Tick every 0.05 line s from t = 2, pictures arriving at their times (``arrived`` is
    called once the last has); the record."""
    t = 2.0
    while not until() and t < end:
        picture = arrivals.pop(round(t, 2), None)
        ctx.bb.ingest([Received(t, protocol.Picture(picture))] if picture else [])
        if picture and not arrivals:
            arrived()
        ctx.bb.now = t
        root.tick_once()
        time.sleep(0.01)  # the classifier works on its own thread
        t += 0.05
    ctx.classifiers["primary"].close()
    path = ctx.record.path
    assert path is not None
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_genuine_picture_that_came_while_a_broken_one_held_the_slot_still_labels_the_item(
    tmp_path: Path,
) -> None:
    release = threading.Event()  # the broken picture's answer comes after the genuine one
    ctx, root = vision_line(tmp_path, HeldClassifier(release))
    item = ctx.bb.items.feed(0.0)
    genuine = render_picture(np.random.default_rng(3), "raw")
    arrivals = {2.5: broken_png(256), 2.55: genuine}  # both in the item's picture window
    record = drive(ctx, root, arrivals, lambda: item.decided, 4.0, release.set)
    dropped = [e for e in record if e["event"] == "picture_dropped"]
    assert [(e["item"], e["offered_again"]) for e in dropped] == [(1, 1)]
    assert item.picture is genuine
    assert (item.label, item.rod) == ("raw", 4)


def test_a_broken_picture_does_not_make_an_empty_feed_look_like_an_item(tmp_path: Path) -> None:
    ctx, root = vision_line(tmp_path)
    ctx.bb.items.feed(0.0)  # rod 1 pushed, but the stack was empty
    record = drive(ctx, root, {2.5: broken_png(256)}, lambda: not len(ctx.bb.items), 9.0)
    assert [e["event"] for e in record if e["event"] in ("picture_dropped", "feed_empty")] == [
        "picture_dropped",
        "feed_empty",
    ]
    assert ctx.bb.items.empty_feeds == 1


def test_a_limit_that_cannot_work_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text("limits:\n  picture_pixels: 20000000\n  decode_pixels: 1000\n")
    with pytest.raises(SpecError, match=r"line\.yaml:2: limits\.decode_pixels must be at least"):
        load_config(config)


def test_inputs_are_trusted_at_a_lines_pace_and_not_under_a_flood_of_edges(
    tmp_path: Path,
) -> None:
    ctx, _ = vision_line(tmp_path)
    ctx.classifiers["primary"].close()
    (tmp_path / "trust.yaml").write_text("root:\n  InputsTrusted: inputs are trustworthy\n")
    root = load_tree(tmp_path / "trust.yaml", ctx)
    edge = Received(0.0, protocol.GateEdge(1, True))
    for tick in range(1000):  # 20 line seconds at 50 Hz, 6 edges a second: a busy line
        ctx.bb.ingest([edge] if tick % 8 == 0 else [])
        ctx.bb.now = tick / 50
        root.tick_once()
        assert root.status == Status.RUNNING, root.feedback_message
    ctx.bb.ingest([edge] * 150)  # a flood: 150 edges between two ticks
    ctx.bb.now += 0.02
    root.tick_once()
    assert root.status == Status.FAILURE
    count, rest = root.feedback_message.split(" ", 1)
    assert int(count) >= 150  # the flood, and the line's own edges of the last 5 s
    assert rest == "gate edges in 5 s, more than a line makes (20/s): inputs cannot be trusted"
    assert ctx.bb.fault == root.feedback_message


@pytest.mark.parametrize(
    ("suffix", "flags"),
    [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".bmp", [])],
)
def test_the_header_gives_the_size_the_decoder_finds(suffix: str, flags: list[int]) -> None:
    image = np.zeros((123, 321, 3), np.uint8)
    data = cv2.imencode(suffix, image, flags)[1].tobytes()
    header = read_header(data)
    assert (header.width, header.height) == (321, 123)
    assert decode_picture(data).shape == (123, 321, 3)


def _png_ihdr(body: bytes) -> bytes:
    """A PNG signature and an ``IHDR`` chunk holding ``body`` (13 bytes when sound)."""
    crc = zlib.crc32(b"IHDR" + body).to_bytes(4, "big")
    return b"\x89PNG\r\n\x1a\n" + len(body).to_bytes(4, "big") + b"IHDR" + body + crc


def _bmp_header(width: int = 10, height: int = 10, compression: int = 0) -> bytes:
    """A BMP file header and a 40-byte info header of a 24-bit picture, no pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, compression, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty picture"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "header is broken"),
        (b"\xff\xd8\xff\xda\x00\x08", "unreadable picture header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "unreadable picture header"),
        (b"\xff\xd8\x00\x00", "header is broken"),
        (b"II*\x00" + bytes(16), "not a JPEG, PNG or BMP"),
        (_png_ihdr(bytes(5)), "unreadable picture header.*IHDR"),  # Pillow: ValueError
        (_bmp_header(compression=99), "unreadable picture header.*compression"),  # OSError
        (iccp_flood(), "unreadable picture header"),  # 4 MB of ICC profiles before the pixels
    ],
)
def test_a_header_that_cannot_be_read_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadPictureError, match=reason):
        check_picture(data, Limits())


def _genuine(fmt: str, **extra: Any) -> bytes:
    """A 321 x 123 picture written by Pillow in ``fmt`` with ``extra`` save options."""
    buffer = io.BytesIO()
    Image.new("RGB", (321, 123), (200, 120, 40)).save(buffer, fmt, **extra)
    return buffer.getvalue()


def test_headers_up_to_the_bounds_are_read_and_past_them_refused() -> None:
    """Pillow reads at most HEADER_BYTES, and a PNG's profiles inflate to PNG_TEXT_BYTES."""
    icc = _genuine("PNG", icc_profile=bytes(3144))  # an sRGB profile's size
    exif = _genuine("JPEG", exif=b"Exif\x00\x00" + bytes(10_000))  # a camera's APP1
    for data in (icc, exif, iccp_flood(HEADER_BYTES, PNG_TEXT_BYTES)):
        header = check_picture(data, Limits())
        assert (header.width, header.height) == (321, 123) or str(header) == "PNG of 64x64"
    assert decode_picture(icc).shape == decode_picture(exif).shape == (123, 321, 3)
    for data in (iccp_flood(2 * HEADER_BYTES, PNG_TEXT_BYTES), iccp_flood(HEADER_BYTES)):
        with pytest.raises(BadPictureError, match="unreadable picture header"):
            check_picture(data, Limits())


_GENUINE = [
    cv2.imencode(s, np.full((40, 50, 3), 90, np.uint8))[1].tobytes()
    for s in (".png", ".jpg", ".bmp")
]


@given(
    st.sampled_from(_GENUINE),
    st.integers(0, 4000),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
)
def test_damaged_pictures_give_a_header_or_a_bad_picture_error(
    genuine: bytes, cut: int, changes: list[tuple[int, int]]
) -> None:
    """Whatever Pillow trips on in untrusted bytes is a BadPictureError, nothing else."""
    data = bytearray(genuine[: max(1, len(genuine) - cut)])
    for at, value in changes:
        data[at % len(data)] = value
    with contextlib.suppress(BadPictureError):  # anything else fails the test
        check_picture(bytes(data), Limits())


_DISTINCT_SIZES = """
import io, struct, sys
import PIL.Image
from bt_sorter.config import Limits
from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.picture_header import check_picture
info = lambda h: struct.pack("<IiiHHIIiiII", 40, 10000, h, 1, 24, 0, 0, 0, 0, 0, 0)
for height in range(9000, 9200):  # 90 to 92 MP: over Image.MAX_IMAGE_PIXELS, under twice
    try:
        check_picture(b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info(height), Limits())
    except BadPictureError:
        pass
print(len(getattr(PIL.Image, "__warningregistry__", {})))
"""


def test_a_stream_of_distinct_large_sizes_leaves_no_warning_trail() -> None:
    """Pillow warns once per distinct size over its limit; unfiltered, each size stays in
    the warnings registry: an attacker's stream would grow it (and stderr) without bound."""
    done = subprocess.run(
        [sys.executable, "-c", _DISTINCT_SIZES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert int(done.stdout) <= 1  # the registry's version key at most


def test_pictures_are_decoded_in_one_place() -> None:
    """Every decode goes through decode_picture, so the header check covers it."""
    decoders = ("imdecode(", "imread(", "Image.open(", "decode_image(", "decode_jpeg(")
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "bt_sorter").rglob("*.py")
        if path.name != "preprocess.py"
        for name in decoders
        if name in path.read_text()
    ]
    # Pillow's open reads the header only; the pixels are decoded when asked for
    assert found == ["bt_sorter/vision/picture_header.py: Image.open("]
    header_reader = (ROOT / "bt_sorter/vision/picture_header.py").read_text()
    for pixels in (".load(", ".convert(", ".getdata(", ".tobytes(", "asarray(", "array("):
        assert pixels not in header_reader
