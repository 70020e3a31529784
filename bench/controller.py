"""The controller's figures: tick rate and jitter, idle CPU, edge → command latency, peak RSS.

Run: ``python bench/controller.py`` (options: ``--items``, ``--speed``, ``--seconds``, ...).
Everything runs as separate processes on loopback, as a user runs it. ``--speed X`` also
divides the tick period (50 Hz on a real line is 50·X Hz of wall time), so the figures
"at 50 Hz" come from runs at speed 1:

* real-time run (speed 1, 50 Hz): a broker, the simulator and ``run.py --broker`` sort
  for ``--rate-seconds``, then the controller gets SIGINT; achieved rate and period
  jitter come from the controller's own runner stats (``--summary``).
* latency run (``--items`` at ``--speed``): the same, to the last item. An observer MQTT
  client subscribed to the feedback and command topics timestamps every message on
  arrival from the broker; each push of rod k (2..4) is paired with the latest preceding
  falling edge of gate k-1. The target is one tick period of that run + 5 ms.
* idle run (speed 1): a broker and ``run.py --broker`` with no simulator, so after the
  first feed the tree waits for a picture that never comes; the controller's CPU time is
  sampled with psutil over ``--seconds`` after ``--warmup``, then it gets SIGINT.

Peak RSS is sampled (psutil, every 0.1 s) over both sorting runs, beside the kernel's
``VmHWM`` high-water mark.

``--browsers N`` runs every controller with ``--web`` and attaches N websocket clients to
its live page for the whole run (each parses every snapshot and fetches each new picture,
as the page does), so the same figures show what the live page costs the tick loop.

``--groot-clients N`` runs every controller with ``--groot`` and attaches N Groot2
monitor clients (btview's ``Groot2Client``, a client this project did not write), each
reading the tree once and then the statuses and the blackboard at ``--groot-hz`` (20):
what Groot2 monitoring costs the tick loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol
from bt_sorter.broker import free_port, start_broker
from bt_sorter.config import load_config
from bt_sorter.sim.process import start_simulator
from bt_sorter.topology import FS, Topology

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = ROOT / "run.py"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered)) - 1
    return ordered[max(0, min(len(ordered) - 1, rank))]


class Observer:
    """A paho client on the broker that timestamps feedback and command messages on arrival."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-observer"
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        client.connect(host, port)
        client.loop_start()
        if not self._subscribed.wait(10.0):
            self.close()
            raise RuntimeError(f"observer could not subscribe on {host}:{port}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(protocol.FEEDBACK_TOPIC, 0), (protocol.COMMAND_TOPIC, 0)])

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.monotonic()  # first thing: the arrival time
        with self._lock:
            self.messages.append((t, msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[float, str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Browsers:
    """N websocket clients on a live page, in a thread of their own, until closed."""

    def __init__(self, port: int, n: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.n = n
        self.updates = [0] * n
        self.pictures = [0] * n
        self.first_at: list[float | None] = [None] * n  # first and latest snapshot received
        self.last_at: list[float | None] = [None] * n
        self.attached = [False] * n
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._browser(session, i) for i in range(self.n)))

    async def _browser(self, session: aiohttp.ClientSession, i: int) -> None:
        while not self._stop.is_set():  # the page is not up until the controller is
            try:
                async with session.ws_connect(self.url + "/ws") as ws:
                    self.attached[i] = True
                    await self._read(session, ws, i)
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)

    async def _read(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, i: int
    ) -> None:
        seen: set[int] = set()
        while not self._stop.is_set():
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") != "state":
                continue
            self.updates[i] += 1
            self.last_at[i] = time.monotonic()
            if self.first_at[i] is None:
                self.first_at[i] = self.last_at[i]
            for thumb in data["thumbnails"]:
                if thumb["id"] not in seen:
                    seen.add(thumb["id"])
                    async with session.get(f"{self.url}/picture/{thumb['id']}") as resp:
                        if resp.status == 200:
                            await resp.read()
                            self.pictures[i] += 1

    def close(self) -> dict[str, Any]:
        """Stop; per browser: snapshots per second (first to latest), pictures fetched."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        rates = []
        for i in range(self.n):
            first, last = self.first_at[i], self.last_at[i]
            if first is not None and last is not None and last > first:
                rates.append((self.updates[i] - 1) / (last - first))
        return {
            "browsers": self.n,
            "attached": sum(self.attached),
            "updates_per_s_min": min(rates, default=0.0),
            "updates": sum(self.updates),
            "pictures": sum(self.pictures),
        }


class GrootClients:
    """N Groot2 monitor clients (btview's), each on a thread, polling until closed."""

    def __init__(self, port: int, n: int, board: str, hz: float) -> None:
        self.port, self.n, self.board, self.period = port, n, board, 1.0 / hz
        self.polls = [0] * n
        self.errors: list[tuple[float, str]] = []  # (when the failed request was sent, error)
        self.attached = [False] * n
        self.first_at: list[float | None] = [None] * n
        self.last_at: list[float | None] = [None] * n
        self.reply_ms: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(n)
        ]
        for thread in self._threads:
            thread.start()

    def _client(self, i: int) -> None:
        from btview.client import ConnectionError_, Groot2Client

        client = Groot2Client("127.0.0.1", self.port, timeout_ms=1000)
        try:
            while not self._stop.is_set():  # the server is not up until the controller is
                try:
                    client.fetch_tree()
                    break
                except ConnectionError_:
                    continue
            self.attached[i] = True
            while not self._stop.wait(self.period):
                t0 = time.monotonic()
                try:
                    client.poll()
                    client.fetch_blackboard([self.board])
                except ConnectionError_ as exc:
                    self.errors.append((t0, repr(exc)))
                    continue
                t1 = time.monotonic()
                with self._lock:
                    self.reply_ms.append((t1 - t0) * 1000 / 2)
                self.polls[i] += 1
                self.last_at[i] = t1
                if self.first_at[i] is None:
                    self.first_at[i] = t1
        finally:
            client.close()

    def close(self) -> dict[str, Any]:
        """Stop; polls per second of the slowest client, reply times, errors (of requests
        sent while the server still answered another client: the last request of each
        client as the controller stops is not one)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10.0)
        answering = max((t for t in self.last_at if t is not None), default=0.0)
        rates = []
        for i in range(self.n):
            first, last = self.first_at[i], self.last_at[i]
            if first is not None and last is not None and last > first:
                rates.append((self.polls[i] - 1) / (last - first))
        return {
            "clients": self.n,
            "attached": sum(self.attached),
            "polls_per_s_min": min(rates, default=0.0),
            "polls": sum(self.polls),
            "reply_ms_p50": percentile(self.reply_ms, 50),
            "reply_ms_p99": percentile(self.reply_ms, 99),
            "errors": sum(sent < answering - 0.5 for sent, _ in self.errors),
        }


@dataclass
class Latency:
    """Gate-edge → rod-command latencies (ms) and how many pushes had no edge before them."""

    samples_ms: list[float] = field(default_factory=list)
    pushes: int = 0
    unpaired: int = 0


def edge_to_command(messages: list[tuple[float, str, bytes]], topology: Topology = FS) -> Latency:
    """Pair each push of a classifying rod with the latest falling edge before it of the
    gate that fires it (``topology``, the FS scene's by default: rod k on gate k-1)."""
    out = Latency()
    last_clear: dict[int, float] = {}
    for t, topic, payload in messages:
        if topic == protocol.FEEDBACK_TOPIC:
            for event in protocol.parse_feedback(payload):
                if isinstance(event, protocol.GateEdge) and not event.blocked:
                    last_clear[event.gate] = t
        elif topic == protocol.COMMAND_TOPIC:
            command = protocol.parse_command(payload)
            if not isinstance(command, protocol.Command):
                continue
            if command.action is not protocol.Action.PUSH or command.rod not in topology.rods:
                continue
            out.pushes += 1
            edge = last_clear.get(topology.gate_of(command.rod))
            if edge is None:
                out.unpaired += 1
            else:
                out.samples_ms.append((t - edge) * 1000)
    return out


class RssSampler:
    """Samples the resident memory of a process and its children until stopped."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.every = every
        self.peak_rss = 0
        self.peak_hwm = 0  # the kernel's own high-water mark (VmHWM), Linux only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in tree))
                self.peak_hwm = max(self.peak_hwm, _vm_hwm(self.process.pid))
            except psutil.Error:
                return  # the process ended
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def _vm_hwm(pid: int) -> int:
    """Peak resident set size in bytes from /proc/PID/status; 0 where there is none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def web_args(args: argparse.Namespace) -> tuple[list[str], int | None]:
    """``--web PORT`` for the controller when browsers are to be attached."""
    if not args.browsers:
        return [], None
    port = free_port()
    return ["--web", str(port)], port


def groot_args(args: argparse.Namespace) -> tuple[list[str], int | None]:
    """``--groot PORT`` for the controller when Groot2 clients are to be attached."""
    if not args.groot_clients:
        return [], None
    port = free_port()
    return ["--groot", str(port)], port


def attach_groot(args: argparse.Namespace, port: int | None) -> GrootClients | None:
    if port is None:
        return None
    return GrootClients(port, args.groot_clients, Path(args.tree).stem, args.groot_hz)


def groot_costs(groot: dict[str, Any] | None, log: str) -> None:
    """The controller's own account of what Groot2 cost its ticks, into ``groot``."""
    if groot is not None:
        for line in log.splitlines():
            if '"groot2_stats"' in line:
                groot["tick_cost"] = json.loads(line)


def controller_cmd(tree: Path, address: str, speed: float, *extra: str) -> list[str]:
    return [
        sys.executable, str(RUN_PY), "--tree", str(tree), "--broker", address,
        "--speed", str(speed), "--viz", "none", *extra,
    ]  # fmt: skip


def sorting_run(
    args: argparse.Namespace,
    workdir: Path,
    name: str,
    speed: float,
    items: int,
    seconds: float | None = None,
) -> dict[str, Any]:
    """A real sorting run against the simulator: latency, tick stats, RSS, the line's truth.

    With ``seconds`` the controller gets SIGINT after that long (exit 130 expected);
    without, it runs until ``items`` items are resolved (exit 0 expected).
    """
    summary_path = workdir / f"{name}.json"
    log_path = workdir / f"{name}.log"
    with start_broker(kind=args.broker_kind) as broker:
        observer = Observer(broker.host, broker.port)
        try:
            sim = start_simulator(
                broker.address,
                summary=workdir / f"{name}_sim.json",
                items=items,
                seed=args.seed,
                speed=speed,
            )
            with sim, log_path.open("w") as log:
                web, port = web_args(args)
                groot_arg, groot_port = groot_args(args)
                cmd = controller_cmd(
                    args.tree, broker.address, speed,
                    "--max-items", str(items), "--summary", str(summary_path), *web, *groot_arg,
                )  # fmt: skip
                started = time.monotonic()
                proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT)
                sampler = RssSampler(proc.pid)
                browsers = Browsers(port, args.browsers) if port else None
                clients = attach_groot(args, groot_port)
                try:
                    if seconds is not None:
                        try:
                            proc.wait(timeout=seconds)
                        except subprocess.TimeoutExpired:
                            proc.send_signal(signal.SIGINT)
                    code = proc.wait(timeout=120 + items * 40 / speed)
                finally:
                    sampler.stop()
                    page = browsers.close() if browsers else None
                    groot = clients.close() if clients else None
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                wall = time.monotonic() - started
                truth = sim.stop(timeout=10.0) or {}
        finally:
            observer.close()
        messages = observer.snapshot()
    if page is not None:  # the controller's own account of what the page cost its ticks
        for line in log_path.read_text(errors="replace").splitlines():
            if '"live_page_stats"' in line:
                page["tick_cost"] = json.loads(line)
    groot_costs(groot, log_path.read_text(errors="replace"))
    expected = 130 if seconds is not None else 0
    if code != expected or not summary_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} run exited {code}, expected {expected}:\n{tail}")
    summary = json.loads(summary_path.read_text())
    return {
        "latency": edge_to_command(messages),
        "ticks": summary["ticks"],
        "summary": summary,
        "truth": truth,
        "peak_rss": sampler.peak_rss,
        "peak_hwm": sampler.peak_hwm,
        "wall_s": wall,
        "speed": speed,
        "broker": broker.kind,
        "page": page,
        "groot": groot,
    }


def idle_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """CPU % of one core of the connected controller while it waits with nothing happening."""
    summary_path = workdir / "controller_idle.json"
    log_path = workdir / "controller_idle.log"
    with start_broker(kind=args.broker_kind) as broker:
        observer = Observer(broker.host, broker.port)
        web, port = web_args(args)
        groot_arg, groot_port = groot_args(args)
        cmd = controller_cmd(
            args.tree, broker.address, args.idle_speed, "--summary", str(summary_path), *web,
            *groot_arg,
        )  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        browsers = Browsers(port, args.browsers) if port else None
        clients = attach_groot(args, groot_port)
        started = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if '"runner_started"' in line:
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not started.wait(60.0):
                raise RuntimeError("controller did not start ticking:\n" + "".join(lines[-20:]))
            time.sleep(args.warmup)
            process = psutil.Process(proc.pid)
            cpu0, t0 = _cpu_seconds(process), time.monotonic()
            n0 = len(observer.snapshot())
            time.sleep(args.seconds)
            cpu1, t1 = _cpu_seconds(process), time.monotonic()
            window = observer.snapshot()[n0:]
            alive = proc.poll() is None
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30.0)
        finally:
            page = browsers.close() if browsers else None
            groot = clients.close() if clients else None
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5.0)
            observer.close()
        log_path.write_text("".join(lines))
        groot_costs(groot, "".join(lines))
    if not alive:
        raise RuntimeError(
            f"controller ended inside the idle window (exit {proc.returncode}); "
            "lower --idle-speed or --seconds"
        )
    commands = [
        str(protocol.parse_command(p)) for _, topic, p in window if topic == protocol.COMMAND_TOPIC
    ]
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "cpu_percent": (cpu1 - cpu0) / (t1 - t0) * 100,
        "window_s": t1 - t0,
        "commands_in_window": commands,
        "exit_code": code,
        "ticks": summary.get("ticks", {}),
        "page": page,
        "groot": groot,
    }


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` and its children."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def tick_rows(label: str, ticks: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rate (against the runner's own setting), jitter, lateness and overruns of one run."""
    hz_set = float(ticks.get("tick_hz_set", math.nan))
    achieved = float(ticks.get("tick_hz_achieved", math.nan))
    return [
        (
            f"tick rate, {label}",
            f"{_fmt(achieved)} Hz of {hz_set:g} Hz set ({ticks.get('ticks')} ticks)",
            "within 1% of the setting",
            _ok(abs(achieved - hz_set) <= 0.01 * hz_set),
        ),
        (
            f"  period jitter p50 / p99, {label}",
            f"{_fmt(ticks.get('jitter_p50_ms'))} / {_fmt(ticks.get('jitter_p99_ms'))} ms",
            "",
            "",
        ),
        (
            f"  start lateness p50 / p99, {label}",
            f"{_fmt(ticks.get('late_p50_ms'))} / {_fmt(ticks.get('late_p99_ms'))} ms",
            "",
            "",
        ),
        (
            f"  overruns / longest tick, {label}",
            f"{ticks.get('overruns')} / {_fmt(ticks.get('longest_tick_ms'))} ms",
            "",
            "",
        ),
    ]


def latency_rows(label: str, run: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Edge → command p50/p99 of one run against one of its tick periods + 5 ms."""
    lat: Latency = run["latency"]
    period_ms = 1000.0 / float(run["ticks"]["tick_hz_set"])
    p50, p99 = percentile(lat.samples_ms, 50), percentile(lat.samples_ms, 99)
    if not lat.samples_ms:
        return [(f"edge -> rod command, {label}", f"no paired pushes ({lat.pushes})", "", "")]
    return [
        (
            f"edge -> rod command p50 / p99, {label}",
            f"{p50:.2f} / {p99:.2f} ms (max {max(lat.samples_ms, default=math.nan):.2f}, "
            f"n={len(lat.samples_ms)}, unpaired {lat.unpaired})",
            f"p99 < {period_ms + 5:.1f} ms (tick {period_ms:.1f} + 5)",
            _ok(p99 < period_ms + 5.0 and lat.unpaired == 0),
        )
    ]


def table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """Rows as aligned text columns under a header."""
    header = ("figure", "value", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths).rstrip())
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def describe_run(name: str, run: dict[str, Any]) -> str:
    summary, truth = run["summary"], run["truth"]
    facts = ", ".join(f"{k} {truth.get(k)}" for k in ("items", "correct", "missorted", "lost"))
    return (
        f"{name}: speed {run['speed']:g}, {run['wall_s']:.1f} s wall on {run['broker']}, "
        f"stopped {summary['stop_reason']}; controller resolved {summary['resolved']} "
        f"{summary['outcomes']}; line truth: {facts}; rod pushes {run['latency'].pushes}"
        + describe_page(run.get("page"))
        + describe_groot(run.get("groot"))
    )


def describe_groot(groot: dict[str, Any] | None) -> str:
    if not groot:
        return ""
    return (
        f"; Groot2: {groot['attached']} of {groot['clients']} clients attached, slowest "
        f"{groot['polls_per_s_min']:.1f} polls/s (statuses + blackboard), {groot['polls']} "
        f"polls, reply p50 {groot['reply_ms_p50']:.2f} / p99 {groot['reply_ms_p99']:.2f} ms, "
        f"{groot['errors']} errors"
        + (
            f"; publish cost in the tick thread p50 {cost['tick_cost_p50_ms']} / p99 "
            f"{cost['tick_cost_p99_ms']} ms ({cost['snapshots']} snapshots, "
            f"{cost['requests']} requests answered)"
            if (cost := groot.get("tick_cost"))
            else ""
        )
    )


def describe_page(page: dict[str, Any] | None) -> str:
    if not page:
        return ""
    return (
        f"; live page: {page['attached']} of {page['browsers']} browsers attached, "
        f"slowest {page['updates_per_s_min']:.1f} updates/s, {page['updates']} updates and "
        f"{page['pictures']} pictures sent in all"
        + (
            f"; snapshot cost in the tick thread p50 {cost['tick_cost_p50_ms']} / p99 "
            f"{cost['tick_cost_p99_ms']} / max {cost['tick_cost_max_ms']} ms "
            f"({cost['snapshots']} snapshots)"
            if (cost := page.get("tick_cost"))
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/controller.py",
        description="Controller figures: tick rate/jitter, idle CPU, edge->command latency, RSS.",
    )
    add = parser.add_argument
    add("--tree", type=Path, default=ROOT / "trees" / "sort.yaml", help="tree file")
    add("--items", type=int, default=20, help="items in the latency run (20)")
    add("--speed", type=float, default=4.0, help="latency run's line speed (4)")
    add("--rate-seconds", type=float, default=20.0,
        help="length of the real-time (speed 1, 50 Hz) sorting run, s (20)")  # fmt: skip
    add("--seconds", type=float, default=10.0, help="idle CPU window, s (10)")
    add("--warmup", type=float, default=2.0, help="idle: s after ticking starts (2)")
    add("--idle-speed", type=float, default=1.0, help="idle run's line speed (1)")
    add("--seed", type=int, default=1, help="simulator seed (1)")
    add("--broker-kind", choices=("mosquitto", "amqtt"), default=None)
    add("--browsers", type=int, default=0, help="attach this many websocket clients to each "
        "controller's live page (--web); 0 = no page (0)")  # fmt: skip
    add("--groot-clients", type=int, default=0, help="attach this many Groot2 monitor "
        "clients (btview's) to each controller's --groot server; 0 = none (0)")  # fmt: skip
    add("--groot-hz", type=float, default=20.0, help="each Groot2 client's polls a second (20)")
    add("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    tick_hz = load_config().timings.tick_hz

    with tempfile.TemporaryDirectory(prefix="bench_controller_") as tmp:
        workdir = Path(tmp)
        print(f"real-time run: speed 1 ({tick_hz:g} Hz), {args.rate_seconds:g} s ...", flush=True)
        rate = sorting_run(args, workdir, "realtime", 1.0, 30, seconds=args.rate_seconds)
        print(f"latency run: {args.items} items at speed {args.speed:g} ...", flush=True)
        fast = sorting_run(args, workdir, "latency", args.speed, args.items)
        print(f"idle run: {args.seconds:g} s window at speed {args.idle_speed:g} ...", flush=True)
        idle = idle_run(args, workdir)

    print()
    print(describe_run("real-time run", rate))
    print(describe_run("latency run", fast))
    print(
        f"idle run: commands in the window: {idle['commands_in_window'] or 'none'}"
        + describe_page(idle.get("page"))
        + describe_groot(idle.get("groot"))
    )
    print()
    fast_label = f"speed {args.speed:g}"
    rows = tick_rows("speed 1", rate["ticks"])
    rows += tick_rows(fast_label, fast["ticks"])
    rows += tick_rows("idle", idle["ticks"]) if idle["ticks"] else []
    rows.append(
        (
            "idle CPU, one core",
            f"{idle['cpu_percent']:.2f} % over {idle['window_s']:.1f} s "
            f"at {idle['ticks'].get('tick_hz_set', math.nan):g} Hz",
            "< 5 %",
            _ok(idle["cpu_percent"] < 5.0),
        )
    )
    rows += latency_rows(fast_label, fast)
    rows += latency_rows("speed 1", rate)
    peak_rss = max(rate["peak_rss"], fast["peak_rss"])
    peak_hwm = max(rate["peak_hwm"], fast["peak_hwm"])
    rows.append(
        (
            "peak RSS, controller",
            f"{peak_rss / 2**20:.0f} MiB sampled, {peak_hwm / 2**20:.0f} MiB VmHWM",
            "",
            "",
        )
    )
    print(f"live page: {args.browsers} browsers attached to each run" if args.browsers
          else "live page: off (--browsers 0)")  # fmt: skip
    print(f"Groot2: {args.groot_clients} clients at {args.groot_hz:g} Hz on each run"
          if args.groot_clients else "Groot2: off (--groot-clients 0)")  # fmt: skip
    for line in table(rows):
        print(line)
    if args.json:
        figures = {
            "ticks_speed_1": rate["ticks"],
            "ticks_latency_run": fast["ticks"],
            "ticks_idle": idle["ticks"],
            "idle_cpu_percent": round(idle["cpu_percent"], 3),
            "edge_to_command_ms": {
                name: {
                    "p50": percentile(run["latency"].samples_ms, 50),
                    "p99": percentile(run["latency"].samples_ms, 99),
                    "n": len(run["latency"].samples_ms),
                    "unpaired": run["latency"].unpaired,
                }
                for name, run in (("speed_1", rate), ("latency_run", fast))
            },
            "peak_rss_bytes": peak_rss,
            "peak_hwm_bytes": peak_hwm,
            "browsers": args.browsers,
            "page": {"speed_1": rate["page"], "latency_run": fast["page"], "idle": idle["page"]},
            "groot_clients": args.groot_clients,
            "groot": {
                "speed_1": rate["groot"],
                "latency_run": fast["groot"],
                "idle": idle["groot"],
            },
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
