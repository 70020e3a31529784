"""Seeded scenarios: a line, a config a user could write, a network, a classifier, faults.

:func:`draw` turns one seed into one :class:`Scenario`, so a seed is a whole reproducer.
What is drawn:

- the topology: 2 to 8 gates, any increasing set of them firing rods (tracking gates,
  a rod per gate, one rod), or the FS scene's shape; routes from the three labels to some
  of the rods (unused rods happen), a label without a rod rejected on purpose;
- the line: belt speed, item length, camera, gates, rod windows, strokes, camera delay,
  drawn until the course's rule (:func:`bt_sorter.sim.line.course_rule_problems`) allows
  it, or, for one scenario in ten, until it does not (there the right outcome is bin 1
  with a reason or an alarm, never a wrong bin);
- the controller's timings (a feeder back-stroke shorter than the feeder's travel
  included), whether the config tells the controller the line (``line:`` metres);
- the speed (a wall second is ``speed`` line seconds: the network's and the classifier's
  delays grow with it), at most the speed at which an item stays in its rod's window for
  :data:`PUSH_WALL_S` of wall time after its clear edge (as the real-time tests chose);
- the faults: none (a healthy line, about a third), or one or two of the simulator's
  (drop, duplicate, malformed, corrupt and missing pictures, flicker, stuck item, stalled
  belt, belt drift) and the harness's own (stray messages of a gate the line lacks, a
  broker outage, machine hiccups);
- the classifier's injected failures, weak and wrong answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bt_sorter.config import FaultConfig
from bt_sorter.harness.world import Delay, Outage, VisionModel
from bt_sorter.sim.geometry import LineGeometry
from bt_sorter.sim.line import course_rule_problems
from bt_sorter.topology import FS, Topology

TREES = ("trees/sort.yaml", "trees/sort_pipelined.yaml")
LABELS = ("half_ripe", "raw", "ripe")
PUSH_WALL_S = 0.1  # wall s an item stays in its rod's window after its clear edge, at least
MAX_SPEED = 10.0
OUTSIDE_SHARE = 0.1  # scenarios on a line the course's rule does not allow

# Faults that make the line unhealthy: items may go to bin 1 (with a reason), an alarm
# may stop the line; never a wrong bin.
WIRE_FAULTS = ("drop", "duplicate", "malformed", "corrupt", "missing", "flicker")
PHYSICAL_FAULTS = ("stuck", "stall", "drift")
HARNESS_FAULTS = ("stray_gate", "outage", "hiccups")
ALARM_FAULTS = ("stuck", "stall")  # the line cannot go on: the right end is the alarm


@dataclass(frozen=True)
class Scenario:
    """Everything one virtual run needs; :func:`draw` makes it from a seed."""

    seed: int
    tree: str
    items: int
    topology: Topology
    geometry: LineGeometry
    routes: dict[str, int]
    reject: tuple[str, ...]
    timings: dict[str, float]
    told_line: bool  # the config's line: gives the controller the metres
    speed: float
    faults: FaultConfig = field(default_factory=FaultConfig)
    fault_kinds: tuple[str, ...] = ()
    stray_times: tuple[float, ...] = ()  # line s: a stray edge of a gate the line lacks
    outages: tuple[Outage, ...] = ()
    latency: Delay = field(default_factory=Delay)
    processing: Delay = field(default_factory=lambda: Delay(0.0003, 0.0003))
    lateness: Delay = field(default_factory=lambda: Delay(0.00005, 0.0001))
    vision: VisionModel = field(default_factory=VisionModel)
    fallback: str = "hsv"  # "hsv": a second (oracle) classifier; "reject": none
    fallback_vision: VisionModel | None = None  # the fallback's, if not ``vision``
    rule_problems: tuple[str, ...] = ()  # why the course's rule cannot sort this line
    classifier: str = "oracle"  # or "model": the shipped ResNet on rendered pictures

    @property
    def healthy(self) -> bool:
        """No fault on the line, the wire or the machine, and a line the rule allows."""
        return not self.fault_kinds and not self.rule_problems

    def describe(self) -> str:
        faults = ",".join(self.fault_kinds) or "healthy"
        outside = " OUTSIDE-RULE" if self.rule_problems else ""
        return (
            f"seed {self.seed} {self.tree} items {self.items} {self.topology.describe()} "
            f"speed x{self.speed:g} {faults}{outside}"
        )

    def config_data(self) -> dict[str, Any]:
        """The controller's config file, as a user would write it."""
        data: dict[str, Any] = {
            "topology": {"gates": self.topology.gates, "rod_gates": list(self.topology.rod_gates)},
            "timings": dict(self.timings),
            "sorting": {"routes": dict(self.routes), "confidence_threshold": 0.6},
            "classifier": {"backend": "hsv", "fallback": self.fallback},
            "sim": {"items": self.items, "seed": self.seed, "picture_size": 32},
        }
        if self.reject:
            data["sorting"]["reject"] = list(self.reject)
        if self.classifier == "model":
            data["classifier"] = {
                "backend": "torch",
                "model": "models/resnet18_tomato.pth",
                "device": "cpu",
                "threads": 1,
                "fallback": self.fallback,
            }
            data["sim"]["picture_size"] = 96
        if self.told_line:
            data["line"] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self.geometry).items()
            }
        return data


def _round(x: float, places: int = 3) -> float:
    return round(float(x), places)


def draw_topology(rng: np.random.Generator) -> Topology:
    if rng.random() < 0.3:
        return FS
    gates = int(rng.integers(2, 9))
    rods = int(rng.integers(1, gates + 1))
    rod_gates = sorted(int(g) + 1 for g in rng.choice(gates, size=rods, replace=False))
    return Topology(gates=gates, rod_gates=tuple(rod_gates))


def draw_geometry(rng: np.random.Generator, topology: Topology) -> LineGeometry:
    """One line of ``topology``'s shape, its parts in plausible ranges."""
    speed = _round(rng.uniform(0.05, 0.3))
    length = _round(rng.uniform(0.03, 0.15))
    feed_zone = _round(length * rng.uniform(1.05, 1.6))
    camera = _round(feed_zone + length / 2 + rng.uniform(0.02, 0.25))
    window = _round(rng.uniform(0.04, 0.16))
    offset = _round(window / 2 + rng.uniform(0.0, length * 0.9))
    reach = offset + window / 2
    first = camera + length + speed * rng.uniform(1.1, 2.5)
    pitch = reach + rng.uniform(0.0, 0.3)
    positions = tuple(_round(first + k * pitch) for k in range(topology.gates))
    return LineGeometry(
        belt_speed=speed,
        item_length=length,
        feed_zone=feed_zone,
        camera_position=camera,
        gate_positions=positions,
        rod_offset=offset,
        rod_window=window,
        belt_length=_round(positions[-1] + reach + rng.uniform(0.0, 0.3)),
        rod_stroke_time=_round(rng.uniform(0.1, 0.3)),
        feeder_stroke_time=_round(rng.uniform(0.3, 0.7)),
        camera_delay=_round(rng.uniform(0.02, 0.1)),
    )


def window_speed(geo: LineGeometry, topology: Topology) -> float:
    """The highest speed at which an item stays :data:`PUSH_WALL_S` of wall time in its
    rod's window after clearing the rod's gate (the narrowest rod)."""
    reach = min(
        geo.rod_window_of(rod, topology)[1] - geo.gate_positions[topology.gate_of(rod) - 1]
        for rod in topology.classifying_rods
    )
    return reach / geo.belt_speed / PUSH_WALL_S


def draw_routes(
    rng: np.random.Generator, topology: Topology
) -> tuple[dict[str, int], tuple[str, ...]]:
    rods = list(topology.classifying_rods)
    labels = list(LABELS)
    rng.shuffle(labels)
    routed = min(len(rods), len(labels))
    if routed > 1 and rng.random() < 0.15:
        routed -= 1  # a label the line sends to bin 1 on purpose
    chosen = sorted(int(r) for r in rng.choice(rods, size=routed, replace=False))
    order = list(chosen)
    rng.shuffle(order)
    routes = {label: rod for label, rod in zip(labels[:routed], order, strict=True)}
    return dict(sorted(routes.items())), tuple(sorted(labels[routed:]))


def draw_faults(
    rng: np.random.Generator, items: int
) -> tuple[tuple[str, ...], FaultConfig, tuple[float, ...], tuple[Outage, ...], Delay]:
    """The scenario's fault kinds and their settings (none: a healthy line)."""
    lateness = Delay(0.00005, 0.0001)
    if rng.random() < 0.35:
        return (), FaultConfig(), (), (), lateness
    pool = [*WIRE_FAULTS, *PHYSICAL_FAULTS, *HARNESS_FAULTS]
    kinds = tuple(sorted(str(k) for k in rng.choice(pool, size=int(rng.integers(1, 3)),
                                                     replace=False)))  # fmt: skip
    values: dict[str, Any] = {}
    stray: tuple[float, ...] = ()
    outages: tuple[Outage, ...] = ()
    horizon = items * 3.0  # line s in which most of a run happens
    rates = {"drop": "drop_rate", "duplicate": "duplicate_rate", "malformed": "malformed_rate",
             "corrupt": "corrupt_picture_rate", "missing": "missing_picture_rate",
             "flicker": "flicker_rate"}  # fmt: skip
    for kind in kinds:
        if kind in rates:
            values[rates[kind]] = _round(rng.uniform(0.01, 0.08))
        elif kind == "stuck":
            values["stuck_item"] = int(rng.integers(2, items + 1))
        elif kind == "stall":
            values["stall_belt_at"] = _round(rng.uniform(15.0, horizon))
        elif kind == "drift":
            values["belt_drift_at"] = _round(rng.uniform(10.0, horizon))
            values["belt_drift_factor"] = _round(rng.uniform(0.75, 1.25))
        elif kind == "stray_gate":
            count = int(rng.integers(1, 4))
            stray = tuple(sorted(_round(rng.uniform(3.0, horizon)) for _ in range(count)))
        elif kind == "outage":
            start = _round(rng.uniform(8.0, horizon))
            outages = (Outage(start, _round(start + rng.uniform(0.3, 4.0))),)
        elif kind == "hiccups":
            lateness = Delay(0.00005, 0.0001, 0.002, (0.02, 0.15))
    return kinds, FaultConfig(**values), stray, outages, lateness


def draw(seed: int, tree: str | None = None, classifier: str = "oracle") -> Scenario:
    """The scenario of ``seed`` (``tree``: this tree instead of a drawn one)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 100]))
    drawn = TREES[int(rng.integers(len(TREES)))]  # drawn always: the rest is the same with --tree
    tree = tree or drawn
    topology = draw_topology(rng)
    outside = rng.random() < OUTSIDE_SHARE
    for _ in range(500):
        geometry = draw_geometry(rng, topology)
        problems = course_rule_problems(geometry, topology=topology)
        if bool(problems) == outside:
            break
    items = int(rng.integers(15, 31))
    routes, reject = draw_routes(rng, topology)
    feeder = geometry.feeder_stroke_time
    timings = {
        "feed_hold": _round(rng.uniform(feeder + 0.1, max(feeder + 0.2, 1.5)), 2),
        "feed_back": _round(rng.uniform(0.3, 1.0), 2),
        "push_hold": _round(rng.uniform(max(0.4, geometry.rod_stroke_time), 1.0), 2),
        "push_back": _round(rng.uniform(max(0.3, geometry.rod_stroke_time), 1.0), 2),
    }
    top = min(MAX_SPEED, window_speed(geometry, topology))
    speed = _round(rng.uniform(1.0, max(1.0, top)), 1)
    kinds, faults, stray, outages, lateness = draw_faults(rng, items)
    vision = VisionModel()
    if rng.random() < 0.7:
        vision = VisionModel(
            fail_rate=_round(rng.uniform(0.0, 0.08)),
            weak_rate=_round(rng.uniform(0.0, 0.08)),
            wrong_rate=_round(rng.uniform(0.0, 0.04)),
        )
    return Scenario(
        seed=seed,
        tree=tree,
        items=items,
        topology=topology,
        geometry=geometry,
        routes=routes,
        reject=reject,
        timings=timings,
        told_line=bool(rng.random() < 0.3),
        speed=speed,
        faults=faults,
        fault_kinds=kinds,
        stray_times=stray,
        outages=outages,
        latency=Delay(0.0005, 0.0005, 0.01, (0.002, 0.01)),
        lateness=lateness,
        vision=vision,
        fallback="hsv" if rng.random() < 0.7 else "reject",
        rule_problems=tuple(problems),
        classifier=classifier,
    )
