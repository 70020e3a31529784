"""``run.py``: load config and tree, start (or connect to) the line, tick, summarise.

Without ``--broker`` or ``--config`` it runs the built-in line: a local broker
(mosquitto if installed, else amqtt) and the simulator, each in a process of its own,
with ``--items`` items. With ``--broker HOST:PORT`` or ``--config FILE`` it drives an
external line (the FS scene at 127.0.0.1:21883) and starts neither.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bt_sorter import log as logs
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard, Odometer, Outcome
from bt_sorter.clock import LineClock
from bt_sorter.config import DEFAULT_CONFIG, Config, find_data, load_config
from bt_sorter.record import Record
from bt_sorter.runner import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, Runner
from bt_sorter.trees import load_tree, node_catalogue
from bt_sorter.vision.classifier import ClassifierWorker, ClassifyError
from bt_sorter.yamlio import SpecError

log = logs.get_logger("bt_sorter.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="Run a behaviour-tree sorting controller on a line over MQTT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Nodes a tree file may use:\n\n" + node_catalogue(),
    )
    add = parser.add_argument
    add("--tree", required=True, type=Path, help="tree file (YAML), e.g. trees/sort.yaml")
    add("--config", type=Path, help="line config (default config/default.yaml); implies an "
        "external line unless --builtin")  # fmt: skip
    add("--broker", metavar="HOST:PORT", help="drive the external line on this broker")
    add("--builtin", action="store_true", help="run the built-in simulated line even with --config")
    add("--items", type=int, help="built-in line: items on the stack (default config sim.items)")
    add("--seed", type=int, help="built-in line: seed of the stack's mix (default config sim.seed)")
    add("--speed", type=float, help="line runs this many times faster than real time "
        "(built-in default config sim.speed, external 1)")  # fmt: skip
    add("--max-items", type=int, help="stop once this many items are resolved")
    add("--summary", type=Path, help="write the end-of-run summary as JSON here")
    add("--record", type=Path, help="append-only JSON-lines record of every decision")
    add("--ledger", type=Path, help="built-in line: the simulator's per-item ledger")
    add("--check", action="store_true", help="validate tree and config, load the classifiers "
        "(model included), print the tree, exit")  # fmt: skip
    add("--viz", choices=("ascii", "unicode", "none"), default="ascii", help="live tree view")
    add("--label", help="the label to file collected pictures under (trees/collect.yaml)")
    add("--broker-kind", choices=("mosquitto", "amqtt"), help="built-in line's broker "
        "(default: mosquitto if installed, else amqtt)")  # fmt: skip
    add("--sim-arg", action="append", default=[], metavar="ARG",
        help="extra simulator argument, e.g. --sim-arg=--drop-rate=0.05")  # fmt: skip
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def make_context(config: Config, speed: float, record: Path | None, label: str | None) -> Context:
    """A fresh blackboard and record for one run (no classifiers yet)."""
    return Context(
        bb=Blackboard(odometer=Odometer(config.line.belt_speed)),
        config=config,
        clock=LineClock(speed),
        record=Record(record),
        options={"label": label},
    )


def make_classifiers(config: Config) -> dict[str, ClassifierWorker]:
    """The primary back end from config, and the fallback (HSV) unless config says reject."""
    from bt_sorter.vision.backends import make_classifier

    workers = {"primary": ClassifierWorker(make_classifier(config.classifier.backend,
                                                           config.classifier))}  # fmt: skip
    if config.classifier.fallback == "hsv" and config.classifier.backend != "hsv":
        workers["fallback"] = ClassifierWorker(make_classifier("hsv", config.classifier))
    return workers


@contextlib.contextmanager
def builtin_line(
    args: argparse.Namespace, config: Config, speed: float, workdir: Path
) -> Iterator[tuple[str, Any]]:
    """Start a broker and the simulator; yield (broker address, simulator process)."""
    from bt_sorter.broker import start_broker
    from bt_sorter.sim.process import start_simulator

    with start_broker(kind=args.broker_kind) as broker:
        log.info("broker_started", kind=broker.kind, address=broker.address)
        sim = start_simulator(
            broker.address,
            summary=workdir / "sim_summary.json",
            config=args.config,
            items=args.items or config.sim.items,
            seed=args.seed if args.seed is not None else config.sim.seed,
            speed=speed,
            ledger=args.ledger,
            extra_args=args.sim_arg,
        )
        try:
            yield broker.address, sim
        finally:
            sim.stop(timeout=10.0)


def summarise(ctx: Context, runner: Runner, truth: dict[str, Any] | None) -> dict[str, Any]:
    """The controller's account of the run, plus the simulator's truth when there is one."""
    done = ctx.bb.items.done
    outcomes = Counter(str(item.outcome) for item in done)
    bins = Counter(
        str(item.rod if item.outcome is Outcome.SORTED else 1)
        for item in done
        if item.outcome is not Outcome.LOST
    )
    reasons = Counter(item.outcome_reason for item in done if item.outcome is not Outcome.SORTED)
    summary: dict[str, Any] = {
        "stop_reason": runner.stop_reason,
        "exit_code": runner.exit_code,
        "fed": ctx.bb.items.fed,
        "resolved": len(done),
        "in_flight_at_stop": [item.id for item in ctx.bb.items],
        "outcomes": dict(outcomes),
        "bins": dict(sorted(bins.items())),
        "reasons": dict(reasons),
        "empty_feeds": ctx.bb.items.empty_feeds,
        "bad_inputs": ctx.bb.bad_inputs,
        "unmatched_edges": ctx.bb.unmatched_edges,
        "alarms": list(ctx.bb.alarms),
        "line_time_s": round(ctx.bb.now, 2),
        "ticks": runner.stats(),
    }
    if truth is not None:
        summary["line"] = truth
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"stopped: {summary['stop_reason']} (exit {summary['exit_code']})",
        f"controller: fed {summary['fed']}, resolved {summary['resolved']}, "
        f"outcomes {summary['outcomes']}, bins {summary['bins']}",
    ]
    if summary["alarms"]:
        lines.append(f"alarms: {'; '.join(summary['alarms'])}")
    truth = summary.get("line")
    if truth:
        lines.append(
            "line (simulator's truth): "
            + ", ".join(
                f"{key} {truth[key]}"
                for key in ("items", "correct", "missorted", "jammed", "lost")
                if key in truth
            )
        )
        if truth.get("bins") is not None:
            lines.append(f"  per bin {truth['bins']}")
        throughput = truth.get("throughput") or {}
        if throughput.get("items_per_minute") is not None:
            lines.append(
                f"  throughput {throughput['items_per_minute']:.2f} items/min of line time"
            )
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """run.py. Ctrl-C or SIGTERM before the runner starts (loading, starting the line) ends
    the run with exit 130 and nothing moved; from then on the runner stops the line safely."""
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a parent may have ignored it
        signal.signal(sig, _interrupt)
    try:
        return _main(args)
    except KeyboardInterrupt:
        log.warning("interrupted_before_start")
        return EXIT_INTERRUPTED


# Options that only the built-in line (broker + simulator started by run.py) can use.
BUILTIN_ONLY = ("items", "seed", "ledger", "sim_arg", "broker_kind")


def _main(args: argparse.Namespace) -> int:
    external = (args.broker is not None or args.config is not None) and not args.builtin
    if external:
        given = [f"--{name.replace('_', '-')}" for name in BUILTIN_ONLY if getattr(args, name)]
        if given:
            print(f"error: {', '.join(given)}: for the built-in line only, but this run drives "
                  "an external line (--broker/--config): drop them, or add --builtin to "
                  "simulate the line", file=sys.stderr)  # fmt: skip
            return EXIT_INVALID
    try:
        config = load_config(args.config or DEFAULT_CONFIG)
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            if not host or not port.isdigit():
                raise SpecError(f"--broker must be HOST:PORT, got {args.broker!r}")
            config = config.replace(broker=dataclasses.replace(config.broker, host=host,
                                                               port=int(port)))  # fmt: skip
        speed = args.speed or (1.0 if external else config.sim.speed)
        ctx = make_context(config, speed, args.record, args.label)
        root = load_tree(find_data(args.tree), ctx)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:  # --check loads the classifiers too: a missing or broken model fails it the same way
        ctx.classifiers = make_classifiers(config)
    except (ClassifyError, ValueError, OSError) as exc:
        print(f"error: classifier {config.classifier.backend!r}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.check:
        from bt_sorter.view import tree_text

        for worker in ctx.classifiers.values():
            worker.close()
        print(tree_text(root, "unicode" if args.viz == "unicode" else "ascii"))
        backends = ", ".join(f"{k} {w.classifier.name}" for k, w in ctx.classifiers.items())
        print(f"classifiers: {backends}: loaded")
        print(f"config {config.source}: ok; tree {args.tree}: ok")
        return 0
    try:
        return _run(args, ctx, root, external, speed)
    finally:
        for worker in ctx.classifiers.values():
            worker.close()


def _run(args: argparse.Namespace, ctx: Context, root: Any, external: bool, speed: float) -> int:
    from bt_sorter.adapter import MqttAdapter

    config = ctx.config
    with contextlib.ExitStack() as stack:
        sim = None
        host, port = config.broker.host, config.broker.port
        max_items = args.max_items
        if not external:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bt_sorter_")))
            address, sim = stack.enter_context(builtin_line(args, config, speed, workdir))
            host, _, port_text = address.rpartition(":")
            port = int(port_text)
            max_items = max_items or args.items or config.sim.items
        adapter = MqttAdapter(config.broker, ctx.clock, host=host, port=port)
        adapter.start()  # connects in the background; the runner holds the tree until then
        stack.callback(adapter.stop)
        runner = Runner(root, ctx, adapter, viz=args.viz, max_items=max_items)
        code = runner.run()
        truth = None
        if sim is not None:
            try:
                truth = sim.wait(timeout=60.0 / speed + 30.0)
            except Exception as exc:  # the run's result stands without the simulator's account
                log.error("simulator_summary_missing", error=repr(exc))
        summary = summarise(ctx, runner, truth)
    print(format_summary(summary))
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return code if code is not None else EXIT_ERROR
