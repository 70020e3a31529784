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
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from bt_sorter import log as logs
from bt_sorter.argtypes import non_negative_int, positive_float, positive_int
from bt_sorter.behaviours.base import Context
from bt_sorter.blackboard import Blackboard
from bt_sorter.clock import LineClock
from bt_sorter.config import DEFAULT_CONFIG, Config, find_data, load_config
from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.priors import prior_times
from bt_sorter.linemodel.report import line_section, summary_section
from bt_sorter.portable import WINDOWS, stop_signals
from bt_sorter.record import Record
from bt_sorter.routes import check_classes, classes_of, settle_threshold, threshold_of
from bt_sorter.runner import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, Runner
from bt_sorter.sim.geometry import check_line
from bt_sorter.sim.process import SimulatorError
from bt_sorter.trees.build import load_tree
from bt_sorter.trees.cli import node_catalogue
from bt_sorter.vision.classifier import NO_CONFIDENT_LABEL, ClassifierWorker, ClassifyError
from bt_sorter.vision.shelf import PictureShelf
from bt_sorter.yamlio import SpecError

CALIBRATE_ITEMS = 5
CALIBRATE_TREE = Path("trees/calibrate.yaml")  # found like every data path: find_data
log = logs.get_logger("bt_sorter.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="Run a behaviour-tree sorting controller on a line over MQTT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Nodes a tree file may use:\n\n" + node_catalogue(),
    )
    add = parser.add_argument
    add("--tree", type=Path, help="tree file (YAML), e.g. trees/sort.yaml (required unless "
        "--calibrate)")  # fmt: skip
    add("--config", type=Path, help="line config (default config/default.yaml); implies an "
        "external line unless --builtin")  # fmt: skip
    add("--broker", metavar="HOST:PORT", help="drive the external line on this broker")
    add("--topic-prefix", metavar="PREFIX", help="the line's topics on a shared broker: "
        "PREFIX/aa, PREFIX/bb, PREFIX/status (default: config broker.topics)")  # fmt: skip
    add("--builtin", action="store_true", help="run the built-in simulated line even with --config")
    add("--items", type=positive_int, help="built-in line: items on the stack (default config "
        "sim.items)")  # fmt: skip
    add("--line", type=Path, help="built-in line: the simulator's physical line from this line "
        "file (config/lines/*.yaml); the controller still gets only --config")  # fmt: skip
    add("--seed", type=non_negative_int, help="built-in line: seed of the stack's mix (default "
        "config sim.seed)")  # fmt: skip
    add("--speed", type=positive_float, help="line runs this many times faster than real time "
        "(built-in default config sim.speed, external 1)")  # fmt: skip
    add("--max-items", type=positive_int, help="stop once this many items are resolved")
    add("--summary", type=Path, help="write the end-of-run summary as JSON here")
    add("--record", type=Path, help="append-only JSON-lines record of every decision")
    add("--record-max-bytes", type=positive_int, metavar="N", help="rotate the record once its "
        "file holds N bytes: it becomes RECORD.1, .2, ... (the replay reads the set)")  # fmt: skip
    add("--record-rotate-seconds", type=positive_float, metavar="S", help="rotate the record "
        "every S wall seconds")  # fmt: skip
    add("--record-keep", type=positive_int, metavar="K", help="keep only the newest K rotated "
        "record files (default: all)")  # fmt: skip
    add("--ledger", type=Path, help="built-in line: the simulator's per-item ledger")
    add("--check", action="store_true", help="validate tree and config, load the classifiers "
        "(model included), print the tree, exit")  # fmt: skip
    add("--viz", choices=("ascii", "unicode", "none"), default="ascii", help="live tree view")
    add("--label", help="the label to file collected pictures under (trees/collect.yaml)")
    add("--broker-kind", choices=("mosquitto", "amqtt"), help="built-in line's broker "
        "(default: mosquitto if installed, else amqtt)")  # fmt: skip
    add("--sim-arg", action="append", default=[], metavar="ARG",
        help="extra simulator argument, e.g. --sim-arg=--drop-rate=0.05")  # fmt: skip
    add("--web", metavar="[HOST:]PORT", help="serve the live page here (loopback unless HOST "
        "is given; another address needs BT_SORTER_WEB_TOKEN)")  # fmt: skip
    add("--groot", metavar="[HOST:]PORT", help="serve the running tree to Groot2 / btview "
        "(its monitor protocol, docs/groot.md; loopback unless HOST is given; another "
        "address needs BT_SORTER_GROOT_ALLOW)")  # fmt: skip
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add("--calibrate", type=positive_int, nargs="?", const=CALIBRATE_ITEMS, metavar="K",
        help=f"measure the line: sort K items one at a time (default {CALIBRATE_ITEMS}) with "
        "trees/calibrate.yaml and write --out")  # fmt: skip
    add("--out", type=Path, help="--calibrate: the config file to write (the --config given, "
        "with the measured line: section)")  # fmt: skip
    return parser


def with_topic_prefix(config: Config, prefix: str) -> Config:
    """``config`` for the line named ``prefix`` on a shared broker; SpecError if not a name."""
    topics = dataclasses.replace(config.broker.topics, prefix=prefix)
    try:
        topics.resolve()
    except ValueError as exc:
        raise SpecError(f"--topic-prefix: {exc}") from None
    client_id = f"{config.broker.client_id}-{prefix}"  # one client id per line on the broker
    return config.replace(
        broker=dataclasses.replace(config.broker, topics=topics, client_id=client_id)
    )


def make_context(
    config: Config,
    speed: float,
    record: Path | None,
    label: str | None,
    clock: LineClock | None = None,
    rotation: dict[str, Any] | None = None,
) -> Context:
    """A fresh blackboard and record for one run (no classifiers yet); ``clock`` is a wall
    clock at ``speed`` unless given (the deterministic simulation gives a virtual one);
    ``rotation`` is :class:`Record`'s max_bytes, rotate_seconds and keep."""
    timings = config.timings
    model = LineModel(
        config.line,
        tick=1.0 / timings.tick_hz,
        speed=speed,
        feeder_cycle=timings.feeder_cycle(),
        rod_out=timings.push_hold + timings.push_back,
        topology=config.topology,
        routed=config.sorting.routes.values(),
    )
    session = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # names this run's kept files
    return Context(
        bb=Blackboard(line=model),
        config=config,
        clock=clock or LineClock(speed),
        record=Record(record, **(rotation or {})),
        options={"label": label, "session": session},
    )


def keep_doubted(ctx: Context) -> PictureShelf | None:
    """The shelf for the pictures vision sends to bin 1 (``classifier.keep_doubted``; a
    relative folder is under the working folder), or None when the config keeps none."""
    classifier = ctx.config.classifier
    if classifier.keep_doubted is None:
        return None

    def say(event: str, facts: dict[str, Any]) -> None:
        ctx.record.write(event, ctx.bb.now, **facts)

    return PictureShelf(Path(classifier.keep_doubted), max_files=classifier.keep_doubted_max,
                        say=say, what="doubted")  # fmt: skip


def make_classifiers(config: Config, speed: float = 1.0) -> dict[str, ClassifierWorker]:
    """The primary back end from config, and the fallback (HSV) unless config says reject."""
    from bt_sorter.vision.backends import make_classifier

    broker = config.broker
    primary = make_classifier(
        config.classifier.backend,
        config.classifier,
        line_broker=f"{broker.host}:{broker.port}",
        client_id=broker.client_id,
        speed=speed,
        limits=config.limits,
    )
    workers = {"primary": ClassifierWorker(primary)}
    if config.classifier.fallback == "hsv" and config.classifier.backend != "hsv":
        fallback = make_classifier("hsv", config.classifier, limits=config.limits)
        workers["fallback"] = ClassifierWorker(fallback)
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
            line=args.line,
            items=args.items if args.items is not None else config.sim.items,
            seed=args.seed if args.seed is not None else config.sim.seed,
            speed=speed,
            ledger=args.ledger,
            topic_prefix=config.broker.topics.prefix,
            extra_args=args.sim_arg,
        )
        try:
            yield broker.address, sim
        finally:
            sim.stop(timeout=10.0)


def summarise(ctx: Context, runner: Runner, truth: dict[str, Any] | None) -> dict[str, Any]:
    """The controller's account of the run, plus the simulator's truth when there is one."""
    done = ctx.bb.items.done  # counts kept as items resolved (issue 22)
    summary: dict[str, Any] = {
        "stop_reason": runner.stop_reason,
        "exit_code": runner.exit_code,
        "topology": ctx.bb.topology.describe(),
        "fed": ctx.bb.items.fed,
        "resolved": len(done),
        "in_flight_at_stop": [item.id for item in ctx.bb.items],
        "outcomes": dict(done.outcomes),
        "bins": dict(sorted((str(b), n) for b, n in done.bins.items())),
        "reasons": dict(done.reasons),
        # issue 24: to bin 1 because vision doubted the picture, or had no confident label
        "doubted": done.doubted,
        "no_confident_label": done.reasons.get(NO_CONFIDENT_LABEL, 0),
        "confidence_threshold": ctx.config.sorting.threshold,
        "empty_feeds": ctx.bb.items.empty_feeds,
        "feeder_misses": ctx.bb.feeder_misses,  # issue 15: empty feeds with items behind
        "bad_inputs": ctx.bb.bad_inputs,
        "dropped": dict(ctx.bb.dropped),
        "unmatched_edges": ctx.bb.unmatched_edges,
        "repeated_edges": ctx.bb.repeated_edges,
        "stray_gate_edges": ctx.bb.stray_gate_edges,  # issue 20: undeclared gates, noise
        "missed_pushes": ctx.bb.missed_pushes,  # issue 20: pushed, then seen downstream
        "alarms": list(ctx.bb.alarms),
        "line_time_s": round(ctx.bb.now, 2),
        "measured_line": summary_section(ctx.bb.line),
        "ticks": runner.stats(),
    }
    if ctx.doubted is not None:
        summary["kept_doubted"] = ctx.doubted.stats()
    if truth is not None:
        summary["line"] = truth
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"stopped: {summary['stop_reason']} (exit {summary['exit_code']})",
        f"controller: fed {summary['fed']}, resolved {summary['resolved']}, "
        f"outcomes {summary['outcomes']}, bins {summary['bins']}",
        f"topology: {summary['topology']}",
    ]
    lines.append(
        f"vision sent to bin 1: {summary['doubted']} doubted (picture unlike any "
        f"trained one), {summary['no_confident_label']} with no confident label (confidence "
        f"threshold {summary['confidence_threshold']})"
    )
    if kept := summary.get("kept_doubted"):
        lines.append(f"kept {kept['kept']} of their pictures for labelling in {kept['folder']}"
                     + (f" ({kept['dropped']} not kept, {kept['failed']} failed to write)"
                        if kept["dropped"] or kept["failed"] else ""))  # fmt: skip
    if summary["alarms"]:
        lines.append(f"alarms: {'; '.join(summary['alarms'])}")
    if summary.get("feeder_misses"):  # issue 15
        lines.append(f"feeder missed {summary['feeder_misses']} feeds (its cycle was lengthened)")
    if summary["bad_inputs"] or summary["dropped"]:
        lines.append(f"bad inputs {summary['bad_inputs']}, dropped unread {summary['dropped']}")
    if summary.get("missed_pushes"):  # issue 20
        lines.append(f"missed pushes {summary['missed_pushes']} (pushed, then seen downstream: "
                     "counted in bin 1)")  # fmt: skip
    if summary.get("stray_gate_edges"):  # issue 20
        lines.append(f"stray edges of undeclared gates {summary['stray_gate_edges']} (ignored)")
    lines.append(format_measured_line(summary["measured_line"]))
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


def format_measured_line(measured: dict[str, Any]) -> str:
    """The learned line, one quantity a line: median ± spread (samples)."""
    lines = [f"measured line ({measured['unit']}), {measured['items_learned']} items:"]
    for name, q in measured["quantities"].items():
        if q["median"] is not None:
            lines.append(f"  {name:14} {q['median']:8.3f} s ± {q['spread']:.3f} (n {q['n']})")
    for mismatch in measured["geometry_mismatches"]:
        lines.append(f"  geometry_mismatch {mismatch['quantity']}: configured "
                     f"{mismatch['configured']} s, measured {mismatch['measured']} s")  # fmt: skip
    if measured["limit_items_per_minute"] is not None:
        lines.append(f"  safe spacing {measured['safe_spacing_s']} s, feeder cycle "
                     f"{measured['feeder_cycle_s']} s: limit "
                     f"{measured['limit_items_per_minute']} items/min; margin "
                     f"{measured['margin_s']} s (decision delay "
                     f"{measured['decision_delay_s']} s)")  # fmt: skip
    lengths = {k: v for k, v in measured.items() if k.endswith("_m") or k.endswith("_m_s")}
    if lengths:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
    return "\n".join(lines)


def write_calibrated(source: Path | None, line: dict[str, Any], out: Path) -> None:
    """Write ``source`` (a config file, or nothing) with ``line:`` replaced by ``line``."""
    data: dict[str, Any] = {}
    if source is not None:
        data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    data["line"] = line
    header = (
        f"# Written by run.py --calibrate from {source or 'the defaults'}.\n"
        "# line: what was measured, in seconds of belt running since the feed command\n"
        "# (median, spread, samples); the controller takes it as a prior to confirm.\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def describe_line(config: Config) -> str:
    """``--check``: what the config says of the line, as the controller will take it."""
    expected = prior_times(config.line)
    if not expected:
        return "line: not configured; the controller learns it from the first items"
    lines = ["line (a prior, used once measurement confirms it; belt s since the feed):"]
    lines += [f"  {name:14} {value:8.3f} s" for name, value in expected.items()]
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """run.py. Ctrl-C or SIGTERM (Windows: Ctrl-Break too) before the runner starts (loading,
    starting the line) ends the run with exit 130 and nothing moved; from then on the runner
    stops the line safely."""
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    for sig in stop_signals():  # SIGINT too: a parent may have ignored it
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
    if args.calibrate is not None:
        if args.out is None:
            print("error: --calibrate needs --out FILE", file=sys.stderr)
            return EXIT_INVALID
        args.tree = args.tree or CALIBRATE_TREE
        args.max_items = args.calibrate
        args.items = args.items if args.items is not None else args.calibrate  # the stack
    if args.tree is None:
        print("error: --tree is required (e.g. --tree trees/sort.yaml)", file=sys.stderr)
        return EXIT_INVALID
    try:
        config = load_config(args.config or DEFAULT_CONFIG)
        check_line(config)  # its line: section is also the built-in simulator's line
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            if not host or not port.isdigit():
                raise SpecError(f"--broker must be HOST:PORT, got {args.broker!r}")
            config = config.replace(broker=dataclasses.replace(config.broker, host=host,
                                                               port=int(port)))  # fmt: skip
        if external and args.line is not None:
            raise SpecError("--line gives the built-in simulator its line; an external line "
                            "has its own (drop --line, or add --builtin)")  # fmt: skip
        if args.topic_prefix is not None:
            config = with_topic_prefix(config, args.topic_prefix)
        speed = args.speed if args.speed is not None else 1.0 if external else config.sim.speed
        rotation = {"max_bytes": args.record_max_bytes, "keep": args.record_keep,
                    "rotate_seconds": args.record_rotate_seconds}  # fmt: skip
        if args.record is None and any(v is not None for v in rotation.values()):
            raise SpecError("--record-max-bytes/--record-rotate-seconds/--record-keep "
                            "need --record FILE")  # fmt: skip
        try:
            ctx = make_context(config, speed, args.record, args.label, rotation=rotation)
        except ValueError as exc:
            raise SpecError(f"--record: {exc}") from None
        root = load_tree(find_data(args.tree), ctx)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if config.classifier.backend == "mqtt" and not external and config.classifier.broker is None:
        print("error: classifier 'mqtt' on the built-in line needs classifier.broker HOST:PORT "
              "(the built-in broker's port is chosen at start)", file=sys.stderr)  # fmt: skip
        return EXIT_INVALID
    try:  # --check loads the classifiers too: a missing or broken model fails it the same way
        ctx.classifiers = make_classifiers(config, speed)
    except (ClassifyError, ValueError, OSError) as exc:
        print(f"error: classifier {config.classifier.backend!r}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:  # the classes the classifiers answer against sorting.routes (bt_sorter.routes)
        classes = {k: classes_of(w.classifier) for k, w in ctx.classifiers.items()}
        route_report = check_classes(config, classes)
        model_threshold = threshold_of(ctx.classifiers["primary"].classifier)
        config, threshold_line, below = settle_threshold(config, model_threshold)
        ctx.config = config
        route_report.append(threshold_line)
        if below:
            log.warning("threshold_below_the_models", detail=threshold_line)
    except SpecError as exc:
        for worker in ctx.classifiers.values():
            worker.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.check:
        from bt_sorter.view import tree_text

        for worker in ctx.classifiers.values():
            worker.close()
        print(tree_text(root, "unicode" if args.viz == "unicode" else "ascii"))
        print(f"topology: {config.topology.describe()}")
        print(describe_line(config))
        backends = ", ".join(f"{k} {w.classifier.name}" for k, w in ctx.classifiers.items())
        print(f"classifiers: {backends}: loaded")
        print("\n".join(route_report))
        print(f"config {config.source}: ok; tree {args.tree}: ok")
        return 0
    try:
        return _run(args, ctx, root, external, speed)
    except SimulatorError as exc:  # the built-in line did not start: nothing moved
        print(f"error: built-in simulator: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        for worker in ctx.classifiers.values():
            worker.close()


def _run(args: argparse.Namespace, ctx: Context, root: Any, external: bool, speed: float) -> int:
    from bt_sorter.adapter import MqttAdapter

    config = ctx.config
    with contextlib.ExitStack() as stack:
        ctx.doubted = keep_doubted(ctx)
        if ctx.doubted is not None:
            stack.callback(ctx.doubted.close)
        web = None
        if args.web:
            from bt_sorter.web.live import start_live
            from bt_sorter.web.server import WebError

            try:
                web = start_live(args.web, root, ctx, title=str(args.tree))
            except WebError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INVALID
            stack.callback(web.server.stop)
        groot = None
        if args.groot:
            from bt_sorter.groot2 import GrootError, Observers, start_groot

            try:
                groot = start_groot(args.groot, find_data(args.tree), root, ctx)
            except GrootError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INVALID
            stack.callback(groot.server.stop)
        sim = None
        host, port = config.broker.host, config.broker.port
        max_items = args.max_items
        if not external:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bt_sorter_")))
            address, sim = stack.enter_context(builtin_line(args, config, speed, workdir))
            host, _, port_text = address.rpartition(":")
            port = int(port_text)
            max_items = max_items or args.items or config.sim.items
        adapter = MqttAdapter(config.broker, ctx.clock, host=host, port=port, limits=config.limits)
        adapter.start()  # connects in the background; the runner holds the tree until then
        stack.callback(adapter.stop)
        observer = web if groot is None else Observers(web, groot)  # the runner's one slot
        runner = Runner(root, ctx, adapter, viz=args.viz, max_items=max_items, web=observer)
        code = runner.run()
        if ctx.doubted is not None:
            ctx.doubted.close()  # what it was given is on disk before the summary counts it
        truth = None
        if sim is not None and code == EXIT_INTERRUPTED and sys.platform == WINDOWS:
            truth = sim.stop()  # its own process group: the console's Ctrl-C did not reach it
        elif sim is not None:
            try:
                truth = sim.wait(timeout=60.0 / speed + 30.0)
            except Exception as exc:  # the run's result stands without the simulator's account
                log.error("simulator_summary_missing", error=repr(exc))
        summary = summarise(ctx, runner, truth)
    print(format_summary(summary))
    if args.calibrate is not None and code == 0:
        write_calibrated(args.config, line_section(ctx.bb.line), args.out)
        print(f"calibrated line written to {args.out}")
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return code if code is not None else EXIT_ERROR
