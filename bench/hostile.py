"""Hostile inputs: what pixel bombs, broken pictures, oversized payloads and floods cost.

Run: ``python bench/hostile.py`` (``--parts service,controller``, ``--code DIR`` to run the
service and the controller from another source tree, e.g. an older commit unpacked with
``git archive``, for a before/after comparison). Everything runs as separate processes
on loopback, as a user runs it; memory is the kernel's high-water mark (``VmHWM``) of the
process under attack.

Service (``python -m bt_sorter.vision.serve``, a fresh process per case): idle peak RSS
after one genuine request, then the case's requests all at once (``--concurrency``
threads), then one genuine picture again to show it still answers.

Controller (``run.py --broker`` with ``trees/sort.yaml`` against the simulator, a fresh
broker per case; a hostile client on the broker publishes on ``bb`` at set times after
each feed command it sees, inside the item's picture window and before its genuine
picture): peak RSS against the clean run's, items the line put in the wrong bin or lost,
tick rate. The bad-input flood runs at speed 1 (50 Hz) and is stopped with SIGINT when
the flood ends, so the tick figures cover the flood; the evidence flood (gate edges and
pictures) must stop the line: exit 3, alarm, rods back, belt stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from controller import RssSampler, _vm_hwm

from bt_sorter import protocol
from bt_sorter.broker import free_port, start_broker, stop_process
from bt_sorter.sim.process import start_simulator
from bt_sorter.sim.render import render_picture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-only helpers
from hostile import (
    HostilePublisher,
    Send,
    broken_png,
    jpeg_bomb,
    png_bomb,
    truncated_jpeg,
)

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
BOMB_SIDE = 20000
SMALL_QUEUE = 20  # events: a queue that a flood overruns between two ticks


def genuine(seed: int = 0, label: str = "ripe") -> bytes:
    return render_picture(np.random.default_rng(seed), label)


def oversized(size: int) -> bytes:
    """A picture payload of ``size`` bytes: a genuine JPEG padded after its end marker."""
    return genuine() + b"\0" * size


# -- the service -------------------------------------------------------------------------


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code)}


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError) as exc:
        return 0, {"error": f"no answer: {exc}"}


def service_case(code: Path, name: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """A fresh service: idle peak RSS, then ``bodies`` at ``concurrency``, then a genuine one."""
    port = free_port()
    cmd = [sys.executable, "-m", "bt_sorter.vision.serve", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(
        cmd, cwd=code, env=_env(code), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/aisim_tf_pre"
    try:
        deadline = time.monotonic() + 120
        while _post(url, genuine())[0] != 200:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"service did not start (exit {proc.poll()})")
            time.sleep(0.2)
        idle = _vm_hwm(proc.pid)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(lambda body: _post(url, body), bodies))
        took = time.monotonic() - started
        peak = _vm_hwm(proc.pid)
        status, after = _post(url, genuine(1, "raw"))
        alive = proc.poll() is None and status == 200 and after.get("code") == 0
    finally:
        stop_process(proc, 10.0)
    kinds = Counter(_answer_kind(status, body) for status, body in answers)
    return {
        "case": name,
        "requests": len(bodies),
        "answers": ", ".join(f"{k} ×{n}" for k, n in kinds.most_common()),
        "idle_mb": idle / MB,
        "peak_mb": peak / MB,
        "ratio": peak / idle if idle else float("nan"),
        "took_s": took,
        "alive": alive,
        "killed": proc.returncode not in (0, -signal.SIGTERM) and not alive,
    }


_REASONS = ("not decoded", "too large", "do not decode", "truncated", "not a JPEG",
            "over the limit", "empty body", "decoder busy")  # fmt: skip


def _answer_kind(status: int, body: dict[str, Any]) -> str:
    """``HTTP 413``, ``code 0``, ``code 1 (header, not decoded)``, ``no answer``, ..."""
    if status == 0:
        return "no answer"
    if status != 200:
        return f"HTTP {status}"
    if body.get("code") == 0:
        return "code 0"
    error = str(body.get("error", ""))
    reason = next((r for r in _REASONS if r in error), error[-30:])
    return f"code 1 ({'header, not decoded' if reason == 'not decoded' else reason})"


def service_cases(args: argparse.Namespace) -> list[tuple[str, list[bytes], int]]:
    png, jpeg = png_bomb(BOMB_SIDE), jpeg_bomb(BOMB_SIDE)
    cases = [
        ("4 PNG bombs 20000x20000 at once (issue 16)", [png] * 4, 4),
        ("16 PNG bombs 20000x20000 at once (issue 16)", [png] * 16, 16),
    ]
    if args.repro_only:
        return cases
    n = args.concurrency
    broken = [truncated_jpeg(genuine(i)) for i in range(n // 2)] + [broken_png()] * (n - n // 2)
    near_limit = jpeg_bomb(2828)  # 8.0 MP, just under the default limit: decoded, in turn
    junk = [b"", b"not a picture", png, jpeg, truncated_jpeg(genuine()), broken_png()]
    return [
        *cases,
        (f"{n} bombs at once: {n // 2} PNG + {n - n // 2} JPEG", [png, jpeg] * (n // 2), n),
        (f"{n} truncated + corrupt pictures at once", broken, n),
        (f"{n} corrupt 8 MP JPEGs at once (under the limit)", [near_limit] * n, n),
        (f"{n} oversized bodies (9 MB) at once", [oversized(9 * MB)] * n, n),
        (f"flood: {args.flood_requests} junk requests, {n} at a time",
         [junk[i % len(junk)] for i in range(args.flood_requests)], n),
    ]  # fmt: skip


# -- the controller ----------------------------------------------------------------------


def controller_case(
    args: argparse.Namespace,
    workdir: Path,
    name: str,
    plan: list[tuple[float, Send]],
    *,
    speed: float,
    items: int,
    seconds: float | None = None,
    start_flood: Callable[[mqtt.Client], dict[str, Any]] | None = None,
    config: str = "",
) -> dict[str, Any]:
    """One sorting run with a hostile publisher; with ``seconds``, SIGINT after that long.

    ``config`` is the text of a line config (default: ``config/default.yaml``).
    """
    tag = name.split(":")[0].replace(" ", "_")
    summary_path, log_path = workdir / f"{tag}.json", workdir / f"{tag}.log"
    extra = []
    if config:
        (workdir / f"{tag}.yaml").write_text(config)
        extra = ["--config", str(workdir / f"{tag}.yaml")]
    flood: dict[str, Any] = {}
    with start_broker(kind="mosquitto") as broker:
        sim = start_simulator(
            broker.address, summary=workdir / f"{tag}_sim.json", items=items, seed=args.seed,
            speed=speed,
        )  # fmt: skip
        hostile = HostilePublisher(broker.host, broker.port, speed, plan)
        cmd = [
            sys.executable, str(args.code / "run.py"), "--tree", "trees/sort.yaml",
            "--broker", broker.address, "--speed", str(speed), "--max-items", str(items),
            "--viz", "none", "--summary", str(summary_path), *extra,
        ]  # fmt: skip
        with sim, log_path.open("w") as log:
            proc = subprocess.Popen(cmd, cwd=args.code, env=_env(args.code), stdout=log,
                                    stderr=subprocess.PIPE, text=True)  # fmt: skip
            sampler = RssSampler(proc.pid, every=0.05)
            ticking = threading.Event()

            def read() -> None:
                assert proc.stderr is not None
                for line in proc.stderr:
                    log.write(line)
                    if '"runner_started"' in line:
                        ticking.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                if start_flood is not None:
                    ticking.wait(120)
                    flood = start_flood(hostile.client)
                if seconds is not None:
                    try:
                        proc.wait(timeout=seconds)
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=120 + items * 60 / speed)
            finally:
                sampler.stop()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                reader.join(5)
                hostile.close()
            truth = sim.stop(timeout=10.0) or {}
    if not summary_path.exists():
        raise RuntimeError(f"{name}: no summary (exit {code}); see {log_path}")
    summary = json.loads(summary_path.read_text())
    commands = hostile.commands
    stop = commands[-2:] == [protocol.ALL_PULL, protocol.BELT_STOP]
    return {
        "case": name,
        "exit": code,
        "summary": summary,
        "truth": truth,
        "hwm_mb": sampler.peak_hwm / MB,
        "feeds": hostile.feeds,
        "safe_stop": stop,
        "flood": flood,
    }


def flood_sender(payloads: list[bytes], per_second: int, seconds: float) -> Callable[..., Any]:
    """Publish ``payloads`` round robin at ``per_second`` for ``seconds``; returns the counts."""

    def start(client: mqtt.Client) -> dict[str, Any]:
        sent, started = 0, time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * per_second) + 1
            while sent < due:
                client.publish(protocol.FEEDBACK_TOPIC, payloads[sent % len(payloads)])
                sent += 1
            time.sleep(0.001)
        took = time.monotonic() - started
        return {"sent": sent, "seconds": took, "rate": sent / took}

    return start


class FirstFeeds:
    """Publish ``send`` after the first ``feeds`` feed commands only; keeps what it returns."""

    def __init__(self, send: Send, feeds: int = 1) -> None:
        self.send, self.left = send, feeds
        self.result: Any = None

    def __call__(self, client: mqtt.Client) -> None:
        if self.left > 0:
            self.left -= 1
            if isinstance(self.send, bytes):
                client.publish(protocol.FEEDBACK_TOPIC, self.send)
            else:
                self.result = self.send(client)


def controller_cases(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """The clean run first (the reference), then every case whose name matches ``--only``."""
    png, jpeg = png_bomb(BOMB_SIDE), jpeg_bomb(BOMB_SIDE)
    pic = protocol.encode_picture
    n, rate, seconds = args.concurrency, args.flood_rate, args.flood_seconds
    sorting = {"speed": args.speed, "items": args.items}
    realtime = {"speed": 1.0, "items": args.items}

    def burst(client: mqtt.Client) -> None:
        for i in range(n):
            client.publish(protocol.FEEDBACK_TOPIC, pic(png if i % 2 == 0 else jpeg))

    # mostly small junk that is all bad input, every kind of refused picture among it
    # (1 % PNG bombs, 0.5 MB each); a picture that passes its header is a picture, not junk
    small = [b"{not json", pic(jpeg), pic(truncated_jpeg(genuine())), b'{"image": 7}',
             b'{"nothing": true}', pic(b"GIF89a" + bytes(64))]  # fmt: skip
    junk = [pic(png), *(small[i % len(small)] for i in range(99))]
    edges = [protocol.encode_gate(1 + i % 3, i % 2 == 0) for i in range(6)]
    mixed = [*edges, pic(genuine(3)), *edges, pic(jpeg)]
    evidence = FirstFeeds(flood_sender(mixed, rate, 1.0))
    evidence_small_queue = FirstFeeds(flood_sender(mixed, rate, 1.0))
    cases: list[tuple[str, list[tuple[float, Send]], dict[str, Any]]] = [
        ("12 PNG bombs before genuine pictures (issue 16)",
         [(1.9, FirstFeeds(pic(png), 6)), (2.3, FirstFeeds(pic(png), 6))], sorting),
        (f"{n} bombs + truncated + corrupt + oversized before every genuine picture",
         [(1.8, burst), (2.1, pic(truncated_jpeg(genuine(7)))), (2.2, pic(broken_png())),
          (2.3, pic(oversized(5 * MB)))], sorting),
        (f"clean at speed 1, {seconds + 0.5:g} s (reference for the floods)", [],
         {**realtime, "seconds": seconds + 0.5}),
        (f"bad-input flood: {rate}/s for {seconds:g} s at speed 1", [],
         {**realtime, "seconds": seconds + 0.5,
          "start_flood": flood_sender(junk, rate, seconds)}),
        ('one stray {"fourth_switch": true} as the first item passes gate 3 (issue 20)',
         [(11.8, FirstFeeds(protocol.encode_gate(4, True)))], sorting),
        ('a stray {"fourth_switch": true} 3 s after every feed (issue 20)',
         [(3.0, protocol.encode_gate(4, True))], sorting),
        (f"evidence flood: {rate} gate edges + pictures in 1 s at speed 1",
         [(1.0, evidence)], realtime),
        (f"evidence flood as above, queue of {SMALL_QUEUE} events (limits.queue_events)",
         [(1.0, evidence_small_queue)],
         {**realtime, "config": f"limits:\n  queue_events: {SMALL_QUEUE}\n"}),
    ]  # fmt: skip
    if args.repro_only:
        cases = cases[:1]
    runs = [controller_case(args, workdir, "clean: no hostile input", [], **sorting)]
    for name, plan, kwargs in cases:
        if args.only and args.only not in name:
            continue
        runs.append(controller_case(args, workdir, name, plan, **kwargs))
        if plan and isinstance(plan[0][1], FirstFeeds) and plan[0][1].result:
            runs[-1]["flood"] = plan[0][1].result
        print(f"controller: {name}: exit {runs[-1]['exit']}", file=sys.stderr, flush=True)
    return runs


# -- output ------------------------------------------------------------------------------


def service_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| case | requests | answers | idle peak RSS | peak RSS | × idle | took "
           "| still answers |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        out.append(
            f"| {r['case']} | {r['requests']} | {r['answers']} | {r['idle_mb']:.0f} MiB | "
            f"{r['peak_mb']:.0f} MiB | {r['ratio']:.2f} | {r['took_s']:.1f} s | "
            f"{'yes' if r['alive'] else 'NO'} |"
        )
    return out


def controller_table(runs: list[dict[str, Any]]) -> list[str]:
    idle = runs[0]["hwm_mb"]
    out = ["| case | exit | fed | correct | missorted | bin 1 | lost | peak RSS | × clean "
           "| bad inputs | dropped | tick rate | overruns | alarm |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        s, t, ticks = r["summary"], r["truth"], r["summary"].get("ticks", {})
        bins = t.get("bins") or {}
        out.append(
            f"| {r['case']} | {r['exit']} | {t.get('items', 0) - t.get('not_fed', 0)} | "
            f"{t.get('correct')} | "
            f"{t.get('missorted')} | {bins.get('1', bins.get(1, 0))} | {t.get('lost')} | "
            f"{r['hwm_mb']:.0f} MiB | {r['hwm_mb'] / idle:.2f} | {s.get('bad_inputs')} | "
            f"{s.get('dropped', {})} | {ticks.get('tick_hz_achieved')} of "
            f"{ticks.get('tick_hz_set')} Hz | {ticks.get('overruns')} | "
            f"{'; '.join(s.get('alarms', [])) or '-'} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/hostile.py", description=__doc__)
    add = parser.add_argument
    add("--parts", default="service,controller", help="service, controller or both")
    add("--code", type=Path, default=ROOT, help="source tree to run service and controller from")
    add("--repro-only", action="store_true", help="only issue 16's two reproductions")
    add("--concurrency", type=int, default=32, help="requests / bombs at once")
    add("--flood-requests", type=int, default=2000, help="requests in the service's flood")
    add("--flood-rate", type=int, default=10000, help="bb messages per second in a flood")
    add("--flood-seconds", type=float, default=5.0, help="length of the bad-input flood")
    add("--items", type=int, default=10)
    add("--speed", type=float, default=4.0)
    add("--seed", type=int, default=1)
    add("--only", help="only the cases whose name contains this (and the clean reference)")
    add("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    args.code = args.code.resolve()
    parts = set(args.parts.split(","))
    figures: dict[str, Any] = {"code": str(args.code)}
    if "service" in parts:
        rows = []
        for name, bodies, concurrency in service_cases(args):
            if args.only and args.only not in name:
                continue
            rows.append(service_case(args.code, name, bodies, concurrency))
            print(f"service: {rows[-1]}", file=sys.stderr, flush=True)
        figures["service"] = rows
        print("\n".join(["Service (python -m bt_sorter.vision.serve):", *service_table(rows)]))
    if "controller" in parts:
        with tempfile.TemporaryDirectory(prefix="bt_hostile_") as tmp:
            runs = controller_cases(args, Path(tmp))
        figures["controller"] = runs
        print(f"\nController (run.py --tree trees/sort.yaml, {args.items} items; speed "
              f"{args.speed:g}, floods at speed 1):")  # fmt: skip
        print("\n".join(controller_table(runs)))
        for r in runs:
            if r["flood"]:
                f = r["flood"]
                print(f"  {r['case']}: sent {f['sent']} in {f['seconds']:.2f} s "
                      f"({f['rate']:.0f}/s); rods back then belt stopped at the end: "
                      f"{r['safe_stop']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
