"""``python -m bt_sorter.plant``: many lines and classifier workers on one MQTT 5 broker.

    python -m bt_sorter.plant status --broker HOST:PORT [--wait S] [--json] [--topic FILTER]
    python -m bt_sorter.plant sim --broker HOST:PORT --lines N [--prefix line] [--items N]
                                  [--speed X] [--seed S] [--config FILE] [--out DIR]

``status`` lists every line on the broker from its retained status (state, counts, last
alarm, throughput) and every classifier worker from its retained presence; it looks at
``+/status``, ``+/+/status``, ``bt_sorter/status`` and ``bt_sorter/workers/+``, and at each
``--topic`` filter given (a line whose status topic is named outright). ``sim`` starts N
simulated lines (one simulator process each) named ``<prefix>1`` .. ``<prefix>N``, so their
topics are ``line1/aa``, ``line1/bb``, ... and waits for them; each line's controller is
``run.py --broker HOST:PORT --topic-prefix lineK``. The plant needs MQTT 5 (classifier
workers use shared subscriptions and request/response properties): pointed at a broker that
speaks 3.1.1 only, such as the embedded amqtt broker, both commands say so and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import log as logs
from bt_sorter import protocol
from bt_sorter.argtypes import non_negative_int, positive_float, positive_int
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.vision.mqtt_backend import CONNECT_TIMEOUT, connect_v5, mqtt5_refusal

log = logs.get_logger("bt_sorter.plant")


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair; ValueError when it is not one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--broker must be HOST:PORT, got {address!r}")
    return host, int(port)


def read_plant(
    host: str, port: int, wait: float = 1.0, extra: Sequence[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """The retained line statuses and worker presences on the broker.

    Subscribes to :data:`protocol.PLANT_STATUS_FILTERS` and the ``extra`` topic filters (not
    to everything: a plant's pictures would flood in), keeps the retained messages that are
    a line status or a worker presence, and returns ``wait`` seconds after the subscription
    was granted (brokers send retained messages right after the SUBACK). ClassifyError when
    the broker cannot be reached or speaks MQTT 3.1.1 only.
    """
    lines: dict[str, dict[str, Any]] = {}
    workers: dict[str, dict[str, Any]] = {}
    ready = threading.Event()
    refusal: list[str] = []
    lock = threading.Lock()

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            refusal.append(mqtt5_refusal(host, port, reason))
            ready.set()
            return
        filters = [*protocol.PLANT_STATUS_FILTERS, *extra]
        client.subscribe([(topic, 0) for topic in filters])

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        ready.set()

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not ready.is_set():
            refusal.append(mqtt5_refusal(host, port, reason))
            ready.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.retain or not msg.payload:
            return
        line = protocol.parse_line_status(msg.payload)
        with lock:
            if not isinstance(line, protocol.BadInput):
                lines[msg.topic] = {"topic": msg.topic, **line}
                return
            worker = protocol.parse_worker_status(msg.payload)
            if not isinstance(worker, protocol.BadInput):
                workers[msg.topic] = {"topic": msg.topic, **worker}

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bt_sorter-plant-{time.time_ns() % 10**9}",
        protocol=mqtt.MQTTv5,
    )  # fmt: skip
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_disconnect, client.on_message = on_disconnect, on_message
    connect_v5(client, host, port, "plant status")
    client.loop_start()
    try:
        if not ready.wait(CONNECT_TIMEOUT) or refusal:
            raise ClassifyError(refusal[0] if refusal else mqtt5_refusal(host, port, ""))
        time.sleep(wait)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return {
            "lines": [lines[k] for k in sorted(lines)],
            "workers": [workers[k] for k in sorted(workers)],
        }


def format_plant(plant: dict[str, list[dict[str, Any]]], now: float | None = None) -> str:
    """The plant as a table an operator reads: one row per line, then the workers."""
    now = time.time() if now is None else now
    rows = [("line", "state", "fed", "sorted", "bin 1", "lost", "in flight", "items/min",
             "age s", "alarm")]  # fmt: skip
    for line in plant["lines"]:
        counts = line.get("counts", {})
        rate = line.get("items_per_minute")
        wall = line.get("wall_time")
        rows.append(
            (
                str(line.get("line") or line["topic"]),
                str(line.get("state")),
                str(counts.get("fed", "-")),
                str(counts.get("sorted", "-")),
                str(counts.get("rejected", "-")),
                str(counts.get("lost", "-")),
                str(counts.get("in_flight", "-")),
                f"{rate:.2f}" if isinstance(rate, int | float) else "-",
                f"{now - wall:.0f}" if isinstance(wall, int | float) else "-",
                str(line.get("alarm") or line.get("reason") or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
           for row in rows]  # fmt: skip
    if not plant["lines"]:
        out.append("(no line has published a status on this broker)")
    out.append("")
    out.append(f"classifier workers: {len(plant['workers'])}")
    for worker in plant["workers"]:
        counts = worker.get("counts", {})
        out.append(
            f"  {worker['worker']}  group {worker.get('group')}  backend {worker.get('backend')}"
            f"  answered {counts.get('answered', 0)}  refused {counts.get('refused', 0)}"
        )
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    host, port = split_address(args.broker)
    plant = read_plant(host, port, args.wait, args.topic)
    print(json.dumps(plant, indent=2) if args.json else format_plant(plant))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """Start N simulated lines on the broker and wait for them all; a summary per line."""
    from bt_sorter.sim.process import start_simulator

    refusal = mqtt5_problem(*split_address(args.broker))
    if refusal:
        raise ClassifyError(refusal)
    out = args.out
    sims = {}
    try:
        for k in range(1, args.lines + 1):
            name = f"{args.prefix}{k}"
            sims[name] = start_simulator(
                args.broker,
                summary=out / f"{name}.summary.json",
                config=args.config,
                items=args.items,
                seed=None if args.seed is None else args.seed + k,
                speed=args.speed,
                ledger=out / f"{name}.ledger.jsonl",
                topic_prefix=name,
            )
            topics = protocol.line_topics(name)
            ready = {"event": "line_ready", "line": name, "topics": [topics.commands,
                     topics.feedback, topics.status]}  # fmt: skip
            print(json.dumps(ready), flush=True)
        results = {name: sim.wait() for name, sim in sims.items()}
    finally:
        for sim in sims.values():
            sim.stop()
    for name, summary in results.items():
        keys = ("items", "correct", "missorted", "jammed", "lost")
        print(json.dumps({"line": name, **{k: summary.get(k) for k in keys}}), flush=True)
    return 0


def mqtt5_problem(host: str, port: int) -> str | None:
    """Why the plant cannot use this broker (unreachable, MQTT 3.1.1 only), or None."""
    try:
        read_plant(host, port, wait=0.0)
    except ClassifyError as exc:
        return str(exc)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.plant", description="Lines and classifier workers on one broker."
    )
    parser.add_argument("--log-level", default="warning", help="structlog level (default warning)")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="list every line and worker on the broker")
    status.add_argument("--broker", required=True, metavar="HOST:PORT")
    status.add_argument("--wait", type=positive_float, default=1.0,
                        help="s to collect retained statuses")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--topic", action="append", default=[], metavar="FILTER",
                        help="also look here (a line with a status topic of its own)")  # fmt: skip
    sim = commands.add_parser("sim", help="start N simulated lines on the broker")
    sim.add_argument("--broker", required=True, metavar="HOST:PORT")
    sim.add_argument("--lines", type=positive_int, required=True, help="how many lines")
    sim.add_argument("--prefix", default="line", help="line names: PREFIX1..PREFIXN (line)")
    sim.add_argument("--items", type=non_negative_int,
                     help="items per line (default config sim.items)")  # fmt: skip
    sim.add_argument("--speed", type=positive_float, help="time-lapse (default config sim.speed)")
    sim.add_argument("--seed", type=non_negative_int, help="line k uses seed S+k")
    sim.add_argument("--config", type=Path, help="line config (default config/default.yaml)")
    sim.add_argument("--out", type=Path, default=Path("plant_out"), help="ledgers and summaries")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        return cmd_status(args) if args.command == "status" else cmd_sim(args)
    except (ClassifyError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
