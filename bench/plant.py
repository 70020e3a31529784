"""A plant on one mosquitto: N simulated lines, W classifier workers, pipelined trees.

For each line count n = 1 .. --lines, starts n simulators (topic prefixes line1..linen) and n
controllers (``run.py --topic-prefix lineK``, classifier back end ``mqtt``) against the same
W workers (one shared subscription), and prints per-line throughput (items/min of line time,
the simulator's count) against the lone line of the same invocation, classification latency
p50/p99 (request to answer, as seen on the broker), CPU per process (psutil), missorts and
bin-1 rejects from the simulators' ledgers. The largest n whose every line holds >= 95 % of
the lone line's throughput with 0 missorts is the answer to "how many lines does this
machine hold". Last, a run with --lines lines in which one worker is killed (SIGKILL) after a
third of the items were classified: requests it took with it, and what became of each item.

    nice -n 10 python bench/plant.py --lines 4 --workers 2 --items 20 --speed 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol
from bt_sorter.broker import start_broker, stop_process
from bt_sorter.config import load_config
from bt_sorter.sim.process import start_simulator
from bt_sorter.vision.worker import WorkerProcess, start_worker

ROOT = Path(__file__).resolve().parent.parent
TREE = "trees/sort_pipelined.yaml"
HOLD = 0.95  # share of the lone line's throughput a line must keep


class Sniffer:
    """Sees every classify request and answer on the broker; latency by correlation data."""

    def __init__(self, host: str, port: int) -> None:
        self._sent: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.requests = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe("bt_sorter/classify/#")
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = self._on_message
        client.connect(host, port)
        client.loop_start()
        assert ready.wait(10)
        self._client = client

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation is None:
            return
        with self._lock:
            if msg.topic == protocol.CLASSIFY_REQUEST_TOPIC:
                self.requests += 1
                self._sent[correlation] = now
            elif correlation in self._sent:
                self.latencies.append(now - self._sent.pop(correlation))

    def take(self) -> tuple[int, list[float]]:
        """Requests and latencies (s) since the last call."""
        with self._lock:
            out = self.requests, self.latencies
            self.requests, self.latencies, self._sent = 0, [], {}
            return out

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class CpuMeter:
    """CPU seconds of processes by role, sampled with psutil until they exit."""

    samples: dict[int, tuple[str, float]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, pids: dict[int, str]) -> threading.Thread:
        procs = {pid: psutil.Process(pid) for pid in pids}
        for pid in pids:
            self.started[pid] = time.monotonic()
            self.samples[pid] = (pids[pid], 0.0)

        def sample() -> None:
            base = {pid: _cpu(p) for pid, p in procs.items()}
            while not self._stop.wait(0.25):
                for pid, proc in procs.items():
                    now = _cpu(proc)
                    if now is not None and base[pid] is not None:
                        self.samples[pid] = (pids[pid], now - base[pid])

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        return thread

    def stop(self) -> dict[str, dict[str, float]]:
        """Per role: processes, CPU % of one core per process (mean) over the watched span."""
        self._stop.set()
        wall = {pid: time.monotonic() - t for pid, t in self.started.items()}
        roles: dict[str, list[float]] = {}
        seconds: Counter[str] = Counter()
        for pid, (role, cpu) in self.samples.items():
            roles.setdefault(role, []).append(100.0 * cpu / wall[pid])
            seconds[role] += cpu
        return {
            role: {
                "processes": len(v),
                "cpu_percent_each": round(statistics.fmean(v), 1),
                "cpu_s_total": round(seconds[role], 2),
            }
            for role, v in sorted(roles.items())
        }


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def run_lines(
    n: int,
    broker: str,
    workers: list[WorkerProcess],
    broker_pid: int,
    args: argparse.Namespace,
    out: Path,
    sniffer: Sniffer,
    kill: str | None = None,
) -> dict[str, Any]:
    """n lines side by side on the broker; their figures."""
    config = out / "plant.yaml"
    config.write_text("classifier:\n  backend: mqtt\n", encoding="utf-8")
    run_dir = out / f"{n}_lines{'_' + kill if kill else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [f"line{k}" for k in range(1, n + 1)]
    sniffer.take()
    sims = {
        name: start_simulator(
            broker,
            summary=run_dir / f"{name}.sim.json",
            items=args.items,
            seed=args.seed + k,
            speed=args.speed,
            ledger=run_dir / f"{name}.ledger.jsonl",
            topic_prefix=name,
        )
        for k, name in enumerate(names)
    }
    controllers = {}
    for name in names:
        cmd = [
            sys.executable, "run.py", "--tree", TREE, "--config", str(config), "--broker", broker,
            "--topic-prefix", name, "--speed", str(args.speed), "--viz", "none",
            "--log-level", "warning", "--summary", str(run_dir / f"{name}.json"),
            "--record", str(run_dir / f"{name}.record.jsonl"),
        ]  # fmt: skip
        log = (run_dir / f"{name}.log").open("w", encoding="utf-8")
        controllers[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
    pids = {p.pid: "controller" for p in controllers.values()}
    pids.update({s.pid: "simulator" for s in sims.values()})
    pids.update({w.pid: "worker" for w in workers if w.alive()})
    pids[broker_pid] = "mosquitto"
    meter = CpuMeter()
    meter.watch(pids)
    try:
        return _measure(n, names, run_dir, sims, controllers, workers, args, meter, sniffer, kill)
    finally:  # Ctrl-C or a failure: leave no line running
        for process in controllers.values():
            stop_process(process, 10.0)
        for sim in sims.values():
            sim.stop()


def _measure(
    n: int,
    names: list[str],
    run_dir: Path,
    sims: dict[str, Any],
    controllers: dict[str, subprocess.Popen[bytes]],
    workers: list[WorkerProcess],
    args: argparse.Namespace,
    meter: CpuMeter,
    sniffer: Sniffer,
    kill: str | None,
) -> dict[str, Any]:
    """Wait for the lines (killing a worker on the way when asked); their figures."""
    started = time.monotonic()
    killed = None
    if kill:
        victim = workers[0]
        target = max(1, n * args.items // 3)
        records = [run_dir / f"{m}.record.jsonl" for m in names]
        running = lambda: any(p.poll() is None for p in controllers.values())  # noqa: E731
        _wait(lambda: sum(_count(r, '"backend": "mqtt:') for r in records) >= target
              or not running())  # fmt: skip
        if kill == "hang":  # alive but silent: the broker still hands it its share
            os.kill(victim.pid, signal.SIGSTOP)
            _wait(lambda: sum(_count(r, "no worker answered") for r in records) > 0
                  or not running())  # fmt: skip
        victim.kill()
        killed = {"worker": victim.id, "mode": kill, "after_items_classified": target}
    for process in controllers.values():
        process.wait(timeout=600)
    truths = {name: sims[name].wait(timeout=120) for name in names}
    wall = time.monotonic() - started
    cpu = meter.stop()
    requests, latencies = sniffer.take()
    lines = {name: _line_figures(run_dir, name, truths[name]) for name in names}
    answered_pictures = len(latencies)
    return {
        "lines": n,
        "per_line": lines,
        "wall_s": round(wall, 1),
        "requests": requests,
        "answers": answered_pictures,
        "latency_p50_ms": _pct(latencies, 50),
        "latency_p99_ms": _pct(latencies, 99),
        "cpu": cpu,
        "killed": killed,
    }


def _wait(condition: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _count(record: Path, text: str) -> int:
    if not record.exists():
        return 0
    return record.read_text("utf-8").count(text)


def _line_figures(run_dir: Path, name: str, truth: dict[str, Any]) -> dict[str, Any]:
    routes = load_config().sorting.routes
    ledger = [json.loads(x) for x in (run_dir / f"{name}.ledger.jsonl").read_text().splitlines()]
    # a missort is an item swept into a bin that is not its label's (bin 1 is a reject)
    missorted = sum(
        1
        for i in ledger
        if isinstance(i["bin"], int) and i["bin"] > 1 and i["bin"] != routes.get(i["label"], 1)
    )
    record = [
        json.loads(x)
        for x in (run_dir / f"{name}.record.jsonl").read_text().splitlines()
        if x.endswith("}")
    ]
    backends = Counter(
        (e["backend"] or "none").split(":")[0] for e in record if e["event"] == "item_classified"
    )
    unanswered = sum(
        1
        for e in record
        if e["event"] == "classify_failed" and "no worker answered" in e.get("error", "")
    )
    reasons = Counter(
        e["reason"] for e in record if e["event"] == "item_resolved" and e["outcome"] != "sorted"
    )
    return {
        "items": truth["items"],
        "items_per_min": truth.get("throughput_per_min") or 0.0,
        "correct": truth["correct"],
        "missorted": missorted,
        "bin1": sum(1 for i in ledger if i["bin"] == 1),
        "lost": truth["lost"] + truth["jammed"],
        "not_fed": truth.get("not_fed", 0),
        "alarms": _alarms(run_dir / f"{name}.json"),
        "messages_sent": truth.get("messages_sent", 0),
        "line_time_s": (truth.get("last_exit_time") or 0) - (truth.get("first_feed_time") or 0),
        "classified_by": dict(backends),
        "requests_unanswered": unanswered,
        "bin1_reasons": dict(reasons),
    }


def _alarms(summary: Path) -> list[str]:
    try:
        return list(json.loads(summary.read_text("utf-8")).get("alarms", []))
    except (OSError, ValueError):
        return ["no controller summary"]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 1)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=3, help="most lines side by side")
    parser.add_argument("--workers", type=int, default=2, help="classifier workers")
    parser.add_argument("--items", type=int, default=20, help="items per line")
    parser.add_argument("--speed", type=float, default=8.0, help="time-lapse of every line")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-kill", action="store_true", help="skip the killed-worker run")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument("--keep", type=Path, help="keep logs, ledgers and records here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with &
    signal.signal(signal.SIGTERM, _interrupt)
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench_plant_") as tmp,
        start_broker(kind="mosquitto") as broker,
    ):
        out = args.keep or Path(tmp)
        workers = [
            start_worker(broker.address, f"w{k}", out, "--threads", "1")
            for k in range(1, args.workers + 1)
        ]
        sniffer = Sniffer(broker.host, broker.port)
        try:
            for n in range(1, args.lines + 1):
                results.append(run_lines(n, broker.address, workers, broker.process.pid, args,
                                         out, sniffer))  # fmt: skip
                print_run(results[-1], sys.stderr)
            for mode in () if args.no_kill or args.workers < 2 else ("kill", "hang"):
                if not workers[0].alive():  # the victim of the last run: a fresh one
                    workers[0] = start_worker(broker.address, f"w1{mode}", out, "--threads", "1")
                results.append(run_lines(args.lines, broker.address, workers,
                                         broker.process.pid, args, out, sniffer,
                                         kill=mode))  # fmt: skip
        finally:
            sniffer.close()
            for worker in workers:
                if worker.alive():
                    stop_process(worker.process, 10.0)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def print_run(run: dict[str, Any], stream: Any) -> None:
    """One line of progress while the sweep runs."""
    rates = [line["items_per_min"] for line in run["per_line"].values()]
    print(f"{run['lines']} lines: items/min {rates} latency p50 {run['latency_p50_ms']} ms "
          f"p99 {run['latency_p99_ms']} ms", file=stream, flush=True)  # fmt: skip


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    sweep = [r for r in results if not r["killed"]]
    lone_rate = next(iter(sweep[0]["per_line"].values()))["items_per_min"]
    print(f"plant: {args.workers} workers, {args.items} items per line, speed {args.speed}, "
          f"tree {TREE}; lone line {lone_rate:.2f} items/min")  # fmt: skip
    print()
    print(
        "| lines | items/min per line (min / mean) | vs lone line (min) | missorted | bin 1 "
        "| lost / not fed | classify p50 / p99 ms | unanswered "
        "| CPU % each: controller / simulator / worker / mosquitto |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    held = 0
    for run in sweep:
        lines = list(run["per_line"].values())
        rates = [line["items_per_min"] for line in lines]
        worst = min(rates) / lone_rate if lone_rate else 0.0
        missorted = sum(line["missorted"] for line in lines)
        if worst >= HOLD and missorted == 0 and held == run["lines"] - 1:
            held = run["lines"]
        cpu = run["cpu"]
        print(
            f"| {run['lines']} | {min(rates):.2f} / {statistics.fmean(rates):.2f} | {worst:.1%} "
            f"| {missorted} | {sum(line['bin1'] for line in lines)} "
            f"| {sum(line['lost'] for line in lines)} / {sum(line['not_fed'] for line in lines)} "
            f"| {run['latency_p50_ms']} / {run['latency_p99_ms']} "
            f"| {sum(line['requests_unanswered'] for line in lines)} "
            f"| {' / '.join(str(cpu.get(r, {}).get('cpu_percent_each', '-')) for r in ('controller', 'simulator', 'worker', 'mosquitto'))} |"  # noqa: E501
        )
    for run in sweep:
        for name, line in run["per_line"].items():
            if line["alarms"] or line["missorted"]:
                print(f"{run['lines']} lines, {name}: missorted {line['missorted']}, "
                      f"alarms {line['alarms']}, bin 1 {line['bin1_reasons']}")  # fmt: skip
    print()
    print(f"largest number of lines held at >= {HOLD:.0%} of the lone line with 0 missorts: {held}")
    for run in results:
        if not run["killed"]:
            continue
        lines = run["per_line"]
        print()
        how = "hung (SIGSTOP) until a request went unanswered, then killed" if run["killed"][
            "mode"] == "hang" else "killed (SIGKILL)"  # fmt: skip
        print(f"worker {run['killed']['worker']} {how} after "
              f"{run['killed']['after_items_classified']} items were classified, "
              f"{run['lines']} lines:")  # fmt: skip
        for name, line in lines.items():
            print(f"  {name}: items {line['items']}, correct {line['correct']}, missorted "
                  f"{line['missorted']}, bin 1 {line['bin1']} {line['bin1_reasons'] or ''}, lost "
                  f"{line['lost']}, not fed {line['not_fed']}; requests unanswered "
                  f"{line['requests_unanswered']}, "
                  f"classified by {line['classified_by']}")  # fmt: skip
    lone = sweep[0]
    if lone["answers"]:
        worker_s = lone["cpu"].get("worker", {}).get("cpu_s_total", 0.0)
        print()
        per_picture = 1000 * worker_s / lone["answers"]
        print(f"worker CPU per picture (lone line, batches as they came): "
              f"{per_picture:.1f} ms over {lone['answers']} pictures")  # fmt: skip
    per_line = sweep[0]["per_line"]["line1"]
    if per_line["line_time_s"]:
        rate = per_line["messages_sent"] / (per_line["line_time_s"] / args.speed)
        print()
        print(f"lone line: {rate:.0f} feedback messages/s at speed {args.speed} "
              f"({rate / args.speed:.1f}/s at speed 1)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
