"""``python -m bt_sorter.sim [run|render] ...``: the simulated line, or a labelled dataset.

``run`` (the default) serves the line on an MQTT broker until every item has left the
belt or the controller goes silent. Its physical line, where things are and how many gates
and rods it has, comes from ``--line FILE`` (a line file, ``config/lines/*.yaml``: ``line:``
and ``topology:``, the FS scene's shape without one) when given, else from the config's
``line:`` and ``topology:`` sections; the config gives the rest (routes, mix, faults).
stdout gets one ready line (``{"event": "sim_ready", ...}``) once subscribed, and the
summary JSON at the end.
``render`` writes ``--n`` pictures per class to ``--out/<label>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bt_sorter import log as logmod
from bt_sorter.argtypes import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from bt_sorter.config import Config, FaultConfig, load_config
from bt_sorter.portable import stop_signals
from bt_sorter.sim.geometry import check_line, geometry_of, load_line
from bt_sorter.yamlio import SpecError

# CLI flag -> FaultConfig field, with the argparse type of its value
_FAULT_FLAGS: dict[str, Callable[[str], Any]] = {
    "drop_rate": fraction,
    "duplicate_rate": fraction,
    "malformed_rate": fraction,
    "corrupt_picture_rate": fraction,
    "missing_picture_rate": fraction,
    "flicker_rate": fraction,
    "stuck_item": positive_int,
    "stall_belt_at": non_negative_float,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.sim",
        description="A simulated sorting line over MQTT (the FS scene's shape, or a declared one).",
    )
    parser.add_argument("--log-level", default="info", help="structlog level (default info)")
    commands = parser.add_subparsers(dest="command")
    _add_run(commands.add_parser("run", help="serve the line on a broker (default)"))
    _add_render(commands.add_parser("render", help="write a labelled picture dataset"))
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    run.add_argument("--broker", help="HOST:PORT (default: the config's broker)")
    run.add_argument("--topic-prefix", help="the line's topic prefix: PREFIX/aa, PREFIX/bb "
                     "(default: the config's broker.topics)")  # fmt: skip
    run.add_argument("--config", type=Path, help="line config YAML (default config/default.yaml)")
    run.add_argument(
        "--line", type=Path, help="the physical line from this line file (config/lines/*.yaml)"
    )
    run.add_argument("--items", type=non_negative_int, help="items in the stack, 0 for an empty "
                     "one (default: config sim.items)")  # fmt: skip
    run.add_argument("--seed", type=non_negative_int, help="seed of labels, pictures, faults")
    run.add_argument(
        "--speed", type=positive_float, help="line runs this many times faster than real"
    )
    run.add_argument("--ledger", type=Path, help="write one JSON line per item here")
    run.add_argument("--summary", type=Path, help="write the summary JSON here")
    run.add_argument(
        "--linger",
        type=non_negative_float,
        default=10.0,
        help="line s to wait with the belt running (10)",
    )
    run.add_argument("--silence-timeout", type=positive_float, help="line s without a command: end")
    faults = run.add_argument_group("faults (override the config's sim.faults)")
    for name, kind in _FAULT_FLAGS.items():
        faults.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name)
    faults.add_argument(
        "--belt-drift",
        metavar="AT:FACTOR",
        help="at line time AT the belt's speed becomes FACTOR of its speed (0.8: 20 %% slower)",
    )


def _add_render(render: argparse.ArgumentParser) -> None:
    render.add_argument("--n", type=positive_int, required=True, help="pictures per class")
    render.add_argument("--out", type=Path, required=True, help="output folder")
    render.add_argument("--seed", type=non_negative_int, default=1)
    render.add_argument("--size", type=positive_int, default=256, help="picture side in pixels")
    render.add_argument(
        "--domain",
        default="train",
        help="train, shifted, wide, robust (domain randomisation for training); or a domain "
        "held out for judging: halogen, led, green_belt, roma; or sodium, the camera the model "
        "card's learning loop is measured on (bt_sorter.sim.render.ALL_DOMAINS)",
    )
    render.add_argument(
        "--odd",
        action="store_true",
        help="instead: pictures no fruit class fits, one folder per kind (empty, black, washed, "
        "two, object): the out-of-distribution set",
    )
    render.add_argument(
        "--reject",
        action="store_true",
        help="instead: --n training pictures of the reject class in --out/none/ (empty belts, "
        "several fruits, clutter, glare), drawn otherwise than the --odd set",
    )
    render.add_argument(
        "--labels",
        default="ripe,half_ripe,raw",
        help="comma-separated classes to draw (ripe, half_ripe, raw, overripe); default the three",
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    if not argv or argv[0] not in ("run", "render", "-h", "--help"):
        level = argv[:2] if argv[:1] == ["--log-level"] else []
        argv = [*level, "run", *argv[len(level) :]]
    return build_parser().parse_args(argv)


def fault_config(base: FaultConfig, args: argparse.Namespace) -> FaultConfig:
    """The config's faults with every flag given on the command line applied."""
    changes = {n: getattr(args, n) for n in _FAULT_FLAGS if getattr(args, n) is not None}
    if args.belt_drift is not None:
        changes["belt_drift_at"], changes["belt_drift_factor"] = parse_drift(args.belt_drift)
    faults = dataclasses.replace(base, **changes)
    for name, value in dataclasses.asdict(faults).items():
        if name.endswith("_rate") and not 0 <= value <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must be within 0..1, got {value}")
    if faults.stuck_item is not None and faults.stuck_item < 1:
        raise ValueError("--stuck-item must be an item number from 1")
    return faults


def parse_drift(text: str) -> tuple[float, float]:
    """``AT:FACTOR`` -> (line time, speed factor); a clear error for anything else."""
    at_text, _, factor_text = text.partition(":")
    try:
        at, factor = float(at_text), float(factor_text)
    except ValueError:
        raise ValueError(f"--belt-drift must be AT:FACTOR (e.g. 60:0.8), got {text!r}") from None
    if at < 0 or factor <= 0:
        raise ValueError(f"--belt-drift needs AT >= 0 and FACTOR > 0, got {text!r}")
    return at, factor


def run_options(config: Config, args: argparse.Namespace) -> Any:
    from bt_sorter.sim.node import SimOptions

    host, port = config.broker.host, config.broker.port
    if args.broker:
        host, _, port_text = args.broker.rpartition(":")
        if not host or not port_text.isdigit():
            raise ValueError(f"--broker must be HOST:PORT, got {args.broker!r}")
        port = int(port_text)
    speed = args.speed if args.speed is not None else config.sim.speed
    items = args.items if args.items is not None else config.sim.items
    if speed <= 0 or items < 0:
        raise ValueError("--speed must be positive and --items not negative")
    silence = args.silence_timeout
    topics = config.broker.topics
    if args.topic_prefix is not None:
        topics = dataclasses.replace(topics, prefix=args.topic_prefix)
    if args.line is not None:
        geometry, topology = load_line(args.line)
    else:
        geometry, topology = geometry_of(config), config.topology
    return SimOptions(
        host=host,
        port=port,
        items=items,
        seed=args.seed if args.seed is not None else config.sim.seed,
        speed=speed,
        faults=fault_config(config.sim.faults, args),
        geometry=geometry,
        topology=topology,
        ledger=args.ledger,
        summary=args.summary,
        linger=args.linger,
        silence_timeout=silence if silence is not None else config.sim.silence_timeout,
        topics=topics.resolve(),
    )


def cmd_run(args: argparse.Namespace) -> int:
    log = logmod.get_logger("bt_sorter.sim")
    from bt_sorter.sim.line import course_rule_problems
    from bt_sorter.sim.node import SimNode

    config = load_config(args.config)
    check_line(config)
    options = run_options(config, args)
    log.info("sim_line", topology=options.topology.describe(), line_file=args.line)
    for problem in course_rule_problems(options.geometry, topology=options.topology):
        log.warning("line_breaks_course_rule", problem=problem)
    node = SimNode(config, options)
    for sig in stop_signals():  # Windows: SIGBREAK too, the parent's CTRL_BREAK_EVENT
        signal.signal(sig, lambda *_: node.request_stop())
    node.connect()
    ready = {"event": "sim_ready", "broker": f"{options.host}:{options.port}", "pid": os.getpid()}
    print(json.dumps(ready), flush=True)
    summary = node.run()
    print(json.dumps(summary, indent=2), flush=True)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from bt_sorter.sim.render import (
        parse_labels,
        write_dataset,
        write_odd_dataset,
        write_reject_dataset,
    )

    try:
        if args.odd and args.reject:
            raise ValueError("--odd and --reject are two different sets: name one")
        if args.reject:
            counts = write_reject_dataset(args.out, args.n, args.seed, args.size, args.domain)
        elif args.odd:
            counts = write_odd_dataset(args.out, args.n, args.seed, args.size, args.domain)
        else:
            labels = parse_labels(args.labels)
            counts = write_dataset(args.out, args.n, args.seed, args.size, args.domain, labels)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "counts": counts}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logmod.configure(args.log_level)
    log = logmod.get_logger("bt_sorter.sim")
    try:
        return cmd_render(args) if args.command == "render" else cmd_run(args)
    except (SpecError, ValueError, OSError, ConnectionError) as exc:
        log.error("simulator_failed", error=str(exc), kind=type(exc).__name__)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
