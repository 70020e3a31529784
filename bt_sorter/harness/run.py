"""Run one scenario through the real controller in virtual time, and judge it.

:func:`run_scenario` builds the controller exactly as ``run.py`` does (the config file
through :func:`bt_sorter.config.load_config`, :func:`bt_sorter.app.make_context`,
:func:`bt_sorter.trees.build.load_tree`, the model/route check), puts it on a
:class:`~bt_sorter.harness.world.World`, and runs the real runner until it stops. Then
the oracles (:func:`judge`) compare what the controller did with what the line did:

- **wrong bin**: an item in a rod's bin that is not its label's. An item the classifier
  itself misnamed, pushed where that answer routes, is a *vision error*, counted apart;
- **unexplained**: an item fed but with no ``item_resolved`` in the record, or resolved
  other than sorted without a reason;
- **account**: the controller's per-bin counts against the line's (a push it believes
  in that did not sweep the item);
- **false alarm**: an alarm on a healthy line; **missed alarm**: a stuck item or stalled
  belt the controller did not stop for;
- **unforced bin 1** on a healthy line: an item whose label routes to a rod and whose
  picture the classifier named right with confidence, sent to bin 1 anyway;
- **throughput** (the pipelined tree on a healthy line): items fed per minute after
  learning, against the controller's own measured limit (a floor);
- **safe stop**: at the end every rod is back and the belt stopped.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bt_sorter import protocol
from bt_sorter.app import make_context, summarise
from bt_sorter.config import find_data, load_config
from bt_sorter.harness.scenario import ALARM_FAULTS, Scenario
from bt_sorter.harness.world import ModelClassifier, OracleClassifier, World, digest
from bt_sorter.record import Record
from bt_sorter.routes import check_classes, classes_of
from bt_sorter.runner import EXIT_ERROR, Runner
from bt_sorter.sim import render
from bt_sorter.sim.core import SimCore
from bt_sorter.sim.line import RodState
from bt_sorter.sim.summary import route_bin
from bt_sorter.trees.build import load_tree
from bt_sorter.vision.classifier import ClassifierWorker

THROUGHPUT_FLOOR = 0.5  # healthy pipelined runs: steady feeds per minute / measured limit
SETTLE_S = 3.0  # line s the world runs after the controller stopped (its last commands land)


@dataclass
class Result:
    """One scenario's run and verdict."""

    scenario: Scenario
    exit_code: int
    stop_reason: str
    items: int
    bins: dict[str, int]  # the line's truth
    correct: int
    wrong_bin: list[dict[str, Any]] = field(default_factory=list)
    vision_errors: int = 0
    outage_swept: int = 0  # swept by a rod whose pull a broker outage lost (see judge)
    unexplained: list[str] = field(default_factory=list)
    account_mismatch: int = 0
    false_alarm: str | None = None
    missed_alarm: str | None = None
    unforced_bin1: list[int] = field(default_factory=list)
    throughput: float | None = None  # steady rate / measured limit (pipelined, healthy)
    unsafe_stop: str | None = None
    alarms: list[str] = field(default_factory=list)
    line_seconds: float = 0.0
    cpu_seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """What this run got wrong (empty: it passed every oracle)."""
        out = [f"item {w['item']} ({w['label']}) in bin {w['bin']}" for w in self.wrong_bin]
        out += [f"unexplained: {u}" for u in self.unexplained]
        if self.scenario.healthy:
            if self.account_mismatch:
                out.append(f"controller's bins differ from the line's by {self.account_mismatch}")
            if self.false_alarm:
                out.append(f"false alarm: {self.false_alarm}")
            if self.unforced_bin1:
                out.append(f"bin 1 without cause: items {self.unforced_bin1}")
            if self.throughput is not None and self.throughput < THROUGHPUT_FLOOR:
                out.append(f"throughput {self.throughput:.0%} of the measured limit")
        if self.missed_alarm:
            out.append(f"missed alarm: {self.missed_alarm}")
        if self.unsafe_stop:
            out.append(f"unsafe stop: {self.unsafe_stop}")
        return out

    def reproducer(self) -> str:
        sc = self.scenario
        extra = " --classifier model" if sc.classifier == "model" else ""
        return f"python -m bt_sorter.harness --scenarios 1 --seed {sc.seed} --tree {sc.tree}{extra}"


def write_config(scenario: Scenario, directory: Path, data: dict[str, Any] | None = None) -> Path:
    """The controller's config file of ``scenario`` (``data``: another one, on its line)."""
    path = directory / f"scenario_{scenario.seed}.yaml"
    header = f"# bt_sorter.harness scenario {scenario.seed}: {scenario.describe()}\n"
    data = scenario.config_data() if data is None else data
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def run_scenario(
    scenario: Scenario,
    *,
    record: Path | None = None,
    ledger: Path | None = None,
    config_data: dict[str, Any] | None = None,
) -> Result:
    """One virtual run of ``scenario``; ``record``/``ledger`` keep the files (else temporary).
    ``config_data``: the controller gets this config instead of the scenario's (the line,
    the network and the judge stay the scenario's)."""
    with tempfile.TemporaryDirectory(prefix="bt_sorter_harness_") as tmp:
        workdir = Path(tmp)
        config = load_config(write_config(scenario, workdir, config_data))
        # the record names the config: the scenario's, not its temporary file's
        config = config.replace(source=f"<harness scenario {scenario.seed}>")
        record_path = record or workdir / "record.jsonl"
        world = World(
            speed=scenario.speed,
            seed=scenario.seed,
            limits=config.limits,
            latency=scenario.latency,
            processing=scenario.processing,
            lateness=scenario.lateness,
            outages=scenario.outages,
        )
        size = config.sim.picture_size
        classes = tuple(config.sim.mix)

        def render_picture(rng: np.random.Generator, item: int, label: str) -> bytes:
            data = render.render_picture(rng, label, size, labels=classes)
            world.truth[digest(data)] = (item, label)
            return data

        core = SimCore(
            config,
            items=scenario.items,
            seed=scenario.seed,
            faults=scenario.faults,
            geometry=scenario.geometry,
            topology=scenario.topology,
            send=world.send_feedback,
            render_picture=render_picture,
        )
        world.core = core
        if ledger is not None:
            core.ledger = ledger.open("w", encoding="utf-8")
        ctx = make_context(config, scenario.speed, None, None, clock=world.clock)
        # A kept record is a whole one (replayable); a batch's keeps the decisions only.
        ctx.record = Record(record_path, traces=record is not None)
        oracles = _classifiers(scenario, config, world)
        ctx.classifiers = {name: ClassifierWorker(o) for name, o in oracles.items()}
        check_classes(config, {k: classes_of(w.classifier) for k, w in ctx.classifiers.items()})
        root = load_tree(find_data(scenario.tree), ctx)
        runner = Runner(root, ctx, world.adapter, viz="none", max_items=scenario.items,
                        handle_signals=False)  # fmt: skip
        world.time_limit = scenario.items * 40.0 + 120.0
        world.stop_hook = lambda: runner.request_stop("harness: line time limit", EXIT_ERROR)
        gate = scenario.topology.gates + 1
        for t in scenario.stray_times:
            if gate <= protocol.MAX_GATES:
                world.send_stray(t, protocol.encode_gate(gate, True))
        try:
            code = runner.run()
            world.run_until(world.scheduler.t + SETTLE_S / scenario.speed)
        finally:
            for worker in ctx.classifiers.values():
                worker.close()
        truth = core.finish(runner.stop_reason or "", scenario.speed)
        if core.ledger is not None:
            core.ledger.close()
        summary = summarise(ctx, runner, truth)
        decisions = _decisions(record_path)
    return judge(scenario, code, summary, core, world, oracles, decisions)


def _classifiers(scenario: Scenario, config: Any, world: World) -> dict[str, OracleClassifier]:
    seed = scenario.seed
    labels = tuple(config.sim.mix)
    out: dict[str, OracleClassifier] = {}
    if scenario.classifier == "model":
        from bt_sorter.vision.backends import make_classifier

        backend = make_classifier("torch", config.classifier, limits=config.limits)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 20]))
        out["primary"] = ModelClassifier(backend, world, scenario.vision, rng)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 20]))
        out["primary"] = OracleClassifier("oracle", world, labels, scenario.vision, rng)
    if scenario.fallback == "hsv":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 21]))
        vision = scenario.fallback_vision or scenario.vision
        out["fallback"] = OracleClassifier("hsv", world, labels, vision, rng)
    return out


def _decisions(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The record's item decisions (fed, resolved, or a feed that put nothing on the belt)."""
    out: dict[str, list[dict[str, Any]]] = {"item_fed": [], "item_resolved": [], "feed_empty": []}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(('{"event": "item_', '{"event": "feed_empty"')):
                event = json.loads(line)
                if event["event"] in out:
                    out[event["event"]].append(event)
    return out


def judge(
    scenario: Scenario,
    code: int,
    summary: dict[str, Any],
    core: SimCore,
    world: World,
    oracles: dict[str, OracleClassifier],
    decisions: dict[str, list[dict[str, Any]]],
) -> Result:
    """Every oracle over one finished run."""
    routes = scenario.routes
    truth = summary["line"]
    alarms = list(summary["alarms"])
    result = Result(
        scenario=scenario,
        exit_code=code,
        stop_reason=str(summary["stop_reason"]),
        items=scenario.items,
        bins=dict(truth["bins"]),
        correct=int(truth["correct"]),
        alarms=alarms,
        line_seconds=world.line_time(),
        summary=summary,
    )
    answers: dict[int, list[str]] = {}  # item -> labels the classifiers gave its picture
    confident: set[int] = set()
    for oracle in oracles.values():
        for key, answer in oracle.answers.items():
            item, label = world.truth[key]
            answers.setdefault(item, []).append(answer.label)
            rod = routes.get(label)
            gate = scenario.topology.gate_of(rod) if rod in scenario.topology.rods else None
            edges = core.line.items[item - 1].gate_edges.get(gate or 0) or [[None, None]]
            cleared = edges[0][1]
            late = cleared is not None and oracle.answered_at[key] > cleared  # no push can follow
            if answer.label == label and answer.confidence >= 0.6 and not answer.doubt and not late:
                confident.add(item)
    for item in core.line.items:
        expected = route_bin(item.label, routes)
        if isinstance(item.bin, int) and item.bin != 1 and item.bin != expected:
            if any(route_bin(label, routes) == item.bin for label in answers.get(item.id, [])):
                result.vision_errors += 1
            elif _left_out_by_outage(world, item.bin, item.end_time):
                result.outage_swept += 1
            else:
                result.wrong_bin.append({"item": item.id, "label": item.label, "bin": item.bin,
                                         "why": item.why})  # fmt: skip
        elif item.bin == 1 and expected != 1 and item.id in confident:
            result.unforced_bin1.append(item.id)
    # Every fed item has its end in the record, and a reason unless sorted.
    resolved = {e["item"]: e for e in decisions["item_resolved"]}
    resolved.update({e["item"]: {**e, "reason": "feed_empty"} for e in decisions["feed_empty"]})
    in_flight = set(summary["in_flight_at_stop"])
    for fed in decisions["item_fed"]:
        end = resolved.get(fed["item"])
        if end is None and fed["item"] not in in_flight:
            result.unexplained.append(f"item {fed['item']} fed, never resolved")
        elif end is not None and end.get("outcome") != "sorted" and not end.get("reason"):
            result.unexplained.append(f"item {fed['item']} {end.get('outcome')} without reason")
    # The controller's account against the line's, rod bins only.
    mine = Counter({k: v for k, v in summary["bins"].items() if k != "1"})
    line_bins = Counter({k: v for k, v in truth["bins"].items() if k.isdigit() and k != "1"})
    result.account_mismatch = sum(((mine - line_bins) + (line_bins - mine)).values())
    alarm_expected = any(kind in ALARM_FAULTS for kind in scenario.fault_kinds)
    if alarms and scenario.healthy:
        result.false_alarm = alarms[-1]
    if alarm_expected and not alarms and _fault_struck(scenario, core):
        result.missed_alarm = f"{','.join(scenario.fault_kinds)} and no alarm ({code})"
    if scenario.healthy:
        if truth["unresolved"] or truth["jammed"]:
            result.unexplained.append(
                f"healthy line: {truth['unresolved']} items left unsorted, "
                f"{truth['jammed']} jammed ({result.stop_reason})"
            )
        if scenario.tree.endswith("sort_pipelined.yaml"):
            result.throughput = _throughput(summary, decisions)
    result.unsafe_stop = _unsafe_stop(core, world)
    return result


def _left_out_by_outage(world: World, rod: int, swept_at: float | None) -> bool:
    """Whether rod ``rod`` was out at ``swept_at`` because of a broker outage: it was out
    when the broker went (its pull could not be sent), or the outage lost the command that
    would have pulled it. No command reaches a line through a dead broker, and the FS
    protocol has no timed push (docs/reliability.md; the line's own stroke timeout is the
    remedy). Such an item is counted apart, not as the controller's wrong bin."""
    if swept_at is None:
        return False
    for outage in world.outages:
        if not outage.start <= swept_at <= outage.end + SETTLE_S:
            continue
        if rod in world.out_at_outage.get(outage.start, set()):
            return True
        for lost_at, command in world.lost_commands:
            pulls = command.action is protocol.Action.PULL and command.rod in (rod, 0)
            if pulls and outage.start <= lost_at <= swept_at:
                return True
    return False


def _fault_struck(scenario: Scenario, core: SimCore) -> bool:
    """Whether the stuck item or the stall actually happened before the run ended."""
    line = core.line
    stuck = scenario.faults.stuck_item is not None and any(i.stuck for i in line.items)
    stall = scenario.faults.stall_belt_at
    stalled = stall is not None and line.time >= stall and bool(line.belt)
    return stuck or stalled


def _throughput(
    summary: dict[str, Any], decisions: dict[str, list[dict[str, Any]]]
) -> float | None:
    """Feeds per minute over the second half of the feeds, against the measured limit."""
    limit = summary["measured_line"].get("limit_items_per_minute")
    feeds = [e["t"] for e in decisions["item_fed"]]
    if not limit or len(feeds) < 8:
        return None
    steady = feeds[len(feeds) // 2 :]
    span = steady[-1] - steady[0]
    if span <= 0:
        return None
    return 60.0 * (len(steady) - 1) / span / float(limit)


def _unsafe_stop(core: SimCore, world: World) -> str | None:
    """Why the line is not safe after the controller's exit (None: rods back, belt off)."""
    if any(o.start <= world.line_time() < o.end for o in world.outages):
        return None  # the broker is down: no command can reach the line (docs/reliability.md)
    out = [r for r, rod in core.line.rods.items() if rod.state is not RodState.RETRACTED]
    if out or core.line.belt_running:
        return f"rods out {out}, belt running {core.line.belt_running}"
    return None
