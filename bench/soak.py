"""Soak: a long run of the real processes, and whether memory, cost per tick and files stay flat.

Runs ``run.py`` (the controller, which starts the broker and the simulator of the built-in
line as processes of their own) with the live page (``--web``) and a rotating record
(``--record-max-bytes``, ``--record-keep``); a headless chromium keeps the page open for
the first ``--page-share`` of the items, then closes it. The controller's retained line
status (about once a wall second) gives its counts, the p99 of its tick period and of a
page snapshot over the last second; its resident memory is read from /proc through psutil.

Printed at 10 % of the items and at 100 % (each figure the median over ``--window``
statuses: the first ones past 10 %, the last ones before the end), and the ratio or the
difference of the two: resident memory (MB; also from 50 %, once the controller's
fixed-size buffers of tick periods are full), tick period p99 (ms), snapshot p99 (ms), the
record's bytes on disk, bytes per item in the record. Every status sample is saved as
``statuses.json`` in the work folder. Targets (issue 22):
memory at the end within 5 MB of the value at item 300 (3,000 items), tick period p99 and
snapshot cost within 10 %.

    nice -n 10 python bench/soak.py --items 3000 --speed 10

``--worker-burst N`` soaks a classifier worker instead: one worker process (the shipped
model, its default queue bound) on mosquitto, N requests published at once (rendered
pictures), and it prints how many were answered, refused as busy, or got nothing, with
the worker's resident memory before, at its peak during the burst, and after. The broker is
told to hold the burst (``max_queued_messages``): with mosquitto's default of 1000 queued
messages per client it drops the rest before they reach the worker (and logs it).

    nice -n 10 python bench/soak.py --worker-burst 10000
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' headless Chromium

from headless import Chromium, find_chromium  # noqa: E402

from bt_sorter import protocol  # noqa: E402
from bt_sorter.broker import free_port, start_broker  # noqa: E402
from bt_sorter.record import record_files  # noqa: E402

STATUS_TOPIC = protocol.line_topics(None).status  # the built-in line's (no prefix)


class Watch:
    """The controller's retained statuses, each with its resident memory and the record's size."""

    def __init__(self, pid: int, record: Path) -> None:
        self.process = psutil.Process(pid)
        self.record = record
        self.samples: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        status = protocol.parse_line_status(msg.payload)
        if isinstance(status, protocol.BadInput) or status.get("state") != "running":
            return
        try:
            rss = self.process.memory_info().rss
        except psutil.Error:
            return
        files = record_files(self.record)
        sample = {
            "resolved": int(status["counts"].get("resolved", 0)),
            "rss_mb": rss / 1e6,
            "tick_p99_ms": status.get("tick_period_p99_ms"),
            "snapshot_p99_ms": status.get("snapshot_p99_ms"),
            "record_on_disk": sum(f.stat().st_size for f in files if f.exists()),
            "record_files": len(files),
        }
        with self.lock:
            self.samples.append(sample)


def broker_address(log: Path, process: subprocess.Popen[bytes], timeout: float) -> str:
    """The built-in broker's HOST:PORT, from the controller's ``broker_started`` log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text("utf-8", errors="replace").splitlines():
            if "broker_started" in line:
                found = re.search(r"127\.0\.0\.1:\d+", line)
                if found:
                    return found.group(0)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"the controller did not start its broker: {log.read_text()[-2000:]}")


def record_cost(files: list[Path]) -> tuple[int, int, int]:
    """Bytes on disk, items resolved in them, bytes of their ``picture`` lines."""
    size = items = pictures = 0
    for file in files:
        with file.open("rb") as f:
            for line in f:
                size += len(line)
                if b'"event": "item_resolved"' in line:
                    items += 1
                elif line.startswith(b'{"event": "picture"'):
                    pictures += len(line)
    return size, items, pictures


def median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def worker_burst(count: int, args: list[str]) -> int:
    """A burst of ``count`` requests at one worker: answers, refusals, its memory."""
    import numpy as np

    from bt_sorter.sim.render import LABELS, render_picture
    from bt_sorter.vision.worker import burst, start_worker

    rng = np.random.default_rng(22)
    pictures = [render_picture(rng, label, 256) for label in LABELS for _ in range(4)]
    # mosquitto drops what a client's queue cannot hold (max_queued_messages, 1000 by
    # default): the broker's bound, not the worker's; here it holds the burst.
    conf = f"max_queued_messages {count + 1000}\n"
    with (
        start_broker(kind="mosquitto", extra_conf=conf) as broker,
        tempfile.TemporaryDirectory() as logs,
    ):
        worker = start_worker(broker.address, "soak", Path(logs), *args)
        process = psutil.Process(worker.pid)
        before = process.memory_info().rss
        peak, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak.append(process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            answers = burst(broker.host, broker.port, pictures, count, timeout=300)
        finally:
            took = time.monotonic() - started
            stop.set()
            sampler.join()
            after = process.memory_info().rss
            summary = worker.stop()
    answered = sum(1 for a in answers.values() if a.get("code") == 0)
    busy = sum(1 for a in answers.values() if a.get("code") == 1 and "busy" in a["error"])
    other = len(answers) - answered - busy
    print(f"command: bench/soak.py --worker-burst {count} {' '.join(args)}")
    print(f"{count} requests at once, {took:.1f} s: {answered} answered, {busy} refused busy, "
          f"{other} refused otherwise, {count - len(answers)} without a reply")  # fmt: skip
    print(
        f"worker resident memory: {before / 1e6:.1f} MB before, {max(peak) / 1e6:.1f} MB "
        f"at its peak (+{(max(peak) - before) / 1e6:.1f} MB), {after / 1e6:.1f} MB after"
    )
    print(
        f"worker's own counts: {summary['counts'] if summary else 'none (it died)'}; "
        f"peak RSS it saw itself {summary['peak_rss_mib'] if summary else '-'} MiB"
    )
    return 0 if len(answers) == count else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tree", default="trees/sort_pipelined.yaml")
    parser.add_argument("--window", type=int, default=15, help="statuses per figure (median)")
    parser.add_argument("--page-share", type=float, default=0.6,
                        help="share of the items with the page open in chromium")  # fmt: skip
    parser.add_argument("--record-max-bytes", type=int, default=16_000_000)
    parser.add_argument("--record-keep", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the record and logs here")
    parser.add_argument("--worker-burst", type=int, metavar="N",
                        help="soak one classifier worker with N requests at once")  # fmt: skip
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="extra worker argument, e.g. --worker-arg=--max-queue=16")  # fmt: skip
    args = parser.parse_args()
    if args.worker_burst:
        return worker_burst(args.worker_burst, args.worker_arg)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bt_sorter_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    record, log = workdir / "run.jsonl", workdir / "controller.log"
    web_port = free_port()
    cmd = [
        sys.executable, "run.py", "--tree", args.tree, "--items", str(args.items),
        "--speed", str(args.speed), "--seed", str(args.seed), "--viz", "none",
        "--web", f"127.0.0.1:{web_port}", "--record", str(record),
        "--record-max-bytes", str(args.record_max_bytes), "--record-keep", str(args.record_keep),
        "--summary", str(workdir / "summary.json"),
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("wb") as err:
        controller = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    watch = Watch(controller.pid, record)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bt_sorter-soak")
    browser: Chromium | None = None
    try:
        host, _, port = broker_address(log, controller, 60.0).rpartition(":")
        client.on_message = watch.on_message
        client.on_connect = lambda c, *_: c.subscribe(STATUS_TOPIC, qos=1)
        client.connect(host, int(port))
        client.loop_start()
        if find_chromium() is not None and args.page_share > 0:
            browser = Chromium(f"http://127.0.0.1:{web_port}/")
        else:
            print("chromium is not installed: the page is served, no browser opens it")
        while controller.poll() is None:
            time.sleep(1.0)
            with watch.lock:
                resolved = watch.samples[-1]["resolved"] if watch.samples else 0
            if browser is not None and resolved >= args.page_share * args.items:
                browser.close()
                browser = None
                print(f"page closed at item {resolved}", flush=True)
    finally:
        if browser is not None:
            browser.close()
        client.loop_stop()
        client.disconnect()
        if controller.poll() is None:
            controller.terminate()
            controller.wait(30)
    wall = time.monotonic() - started
    summary = json.loads((workdir / "summary.json").read_text())
    samples = watch.samples
    mark = args.items // 10
    early = [s for s in samples if s["resolved"] >= mark][: args.window]
    late = samples[-args.window :]
    at_mark = early[0] if early else None
    files = record_files(record)
    on_disk, items, pictures = record_cost(files)
    print(f"command: {' '.join(cmd[1:])}")
    print(f"exit {controller.returncode}, {wall:.0f} s wall, {len(samples)} statuses; "
          f"outcomes {summary.get('outcomes')}, bins {summary.get('bins')}; "
          f"line (simulator): {summary.get('line', {}).get('correct')} correct, "
          f"{summary.get('line', {}).get('missorted')} missorted")  # fmt: skip
    if at_mark is None or not late:
        print("too few statuses to compare")
        return 1
    (workdir / "statuses.json").write_text(json.dumps(samples), encoding="utf-8")
    half = next((s for s in samples if s["resolved"] >= args.items // 2), late[-1])
    rows = [
        ("resident memory (MB)", at_mark["rss_mb"], late[-1]["rss_mb"], "diff"),
        (f"resident memory from item {half['resolved']} (MB)", half["rss_mb"],
         late[-1]["rss_mb"], "diff"),
        ("tick period p99 (ms)", median(early, "tick_p99_ms"), median(late, "tick_p99_ms"),
         "ratio"),
        ("page snapshot p99 (ms)", median(early, "snapshot_p99_ms"),
         median(late, "snapshot_p99_ms"), "ratio"),
        ("record on disk (MB)", at_mark["record_on_disk"] / 1e6,
         late[-1]["record_on_disk"] / 1e6, "ratio"),
    ]  # fmt: skip
    print(f"\n| figure | at item {at_mark['resolved']} (10 %) | at item {late[-1]['resolved']} "
          "(100 %) | end vs 10 % |")  # fmt: skip
    print("|---|---|---|---|")
    for name, first, last, how in rows:
        if first is None or last is None:
            print(f"| {name} | {first} | {last} | - |")
            continue
        change = f"{last - first:+.2f} MB" if how == "diff" else f"{last / first:.3f}×"
        print(f"| {name} | {first:.3f} | {last:.3f} | {change} |")
    print(f"\nrecord: {len(files)} files on disk, {on_disk / 1e6:.2f} MB (rotated at "
          f"{args.record_max_bytes / 1e6:.0f} MB, the newest {args.record_keep} rotated kept); "
          f"they hold {items} resolved items: {on_disk / max(1, items):.0f} bytes per item, "
          f"{pictures / max(1, items):.0f} of them the picture line")  # fmt: skip
    print(f"workdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
