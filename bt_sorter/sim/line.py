"""The physics of the simulated sorting line: pure Python, no MQTT, explicit line time.

Positions are metres from the feed point along the belt (:class:`LineGeometry`). An item
occupies ``[tail, tail + item_length]``. :meth:`Line.advance` moves the line to a given
line time event by event: it computes the exact moment of the next thing that can happen
(an item edge reaching a gate, a rod window, the camera or the belt end; a rod finishing
its stroke; a picture falling due; the belt stalling or changing speed) and settles the
line there, so gate edges carry exact times however coarse the caller's steps are.

The line has the gates and classifying rods its :class:`~bt_sorter.topology.Topology`
declares (the FS scene's by default): rod k's window sits ``rod_offset`` past the gate whose
clear edge fires it, an item no rod takes falls off the belt end into bin 1.

Moving items are judged a hair downstream of where they are (``_EPS``): at the instant an
item's head reaches a gate the gate counts as blocked, and at the instant its tail reaches
it, as clear.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bt_sorter.protocol import Action, Command
from bt_sorter.sim.geometry import LineGeometry
from bt_sorter.topology import FEEDER, FS, Topology

_EPS = 1e-9  # m: how far downstream a moving item is judged
JAM = "jam"
STUCK = "stuck"
ON_BELT = "on_belt"
NOT_FED = "not_fed"
Bin = int | str  # 1 or a classifying rod's, or JAM; STUCK / ON_BELT / NOT_FED only at the end


def draw_labels(count: int, seed: int, mix: dict[str, float]) -> list[str]:
    """The labels of a stack of ``count`` items, seeded, weighted by ``mix``."""
    labels = sorted(mix)
    weights = np.array([mix[label] for label in labels], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"mix weights must be non-negative with a positive sum: {mix}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    return [str(x) for x in rng.choice(labels, size=count, p=weights / weights.sum())]


REACTION = 0.3  # line s a controller may take from a gate's clear edge to its push
CLASSIFY_TIME = 1.0  # line s a controller may take from a picture to its label


def course_rule_problems(
    geo: LineGeometry,
    reaction: float = REACTION,
    classify: float = CLASSIFY_TIME,
    topology: Topology = FS,
) -> list[str]:
    """What keeps the course's rule from sorting on this line (empty: it sorts).

    The rule (docs/line-protocol.md): push a rod on the clear edge of the gate that fires
    it (``topology``; on the FS scene rod k+1 on gate k's). It sorts when each rod's window
    lies just downstream of its gate (the item is in the window when its tail clears the
    gate, and stays there ``reaction`` line seconds), ends before the next gate, and the
    picture arrives before gate 1 is blocked, ``classify`` line seconds before gate 1's
    clear edge at the latest. The item is out of the feed zone once photographed, so
    feeding after the last item's picture never jams.
    """
    problems: list[str] = []
    speed, length = geo.belt_speed, geo.item_length
    if len(geo.gate_positions) != topology.gates:
        return [f"{len(geo.gate_positions)} gate positions for {topology.gates} gates"]
    for rod in topology.classifying_rods:
        gate = topology.gate_of(rod)
        position = geo.gate_positions[gate - 1]
        start, end = geo.rod_window_of(rod, topology)
        if start < position:
            problems.append(f"rod {rod}'s window starts upstream of gate {gate}")
        if start >= position + length:
            problems.append(f"an item clearing gate {gate} is not yet in rod {rod}'s window")
        if (end - position) / speed < reaction:
            problems.append(
                f"an item leaves rod {rod}'s window {(end - position) / speed:.2f} s after "
                f"clearing gate {gate}, under {reaction} s"
            )
        downstream = geo.gate_positions[gate] if gate < topology.gates else geo.belt_length
        if end > downstream:
            where = f"gate {gate + 1}" if gate < topology.gates else "the belt end"
            problems.append(f"rod {rod}'s window reaches {where}")
    photographed = geo.camera_position - length / 2 + speed * geo.camera_delay
    gate_1 = geo.gate_positions[0]
    if geo.camera_position - length / 2 <= geo.feed_zone:
        problems.append("an item is photographed while still in the feed zone")
    if photographed >= gate_1 - length:
        problems.append("the picture comes after the item blocks gate 1")
    if (gate_1 - photographed) / speed < classify:
        problems.append(f"the picture comes less than {classify} s before gate 1 clears")
    return problems


class RodState(enum.Enum):
    """Where a rod is in its stroke."""

    RETRACTED = "retracted"
    EXTENDING = "extending"
    EXTENDED = "extended"
    RETRACTING = "retracting"


@dataclass
class Rod:
    """A rod that moves between retracted (0) and extended (1) over ``stroke_time``."""

    number: int
    stroke_time: float
    position: float = 0.0
    target: float = 0.0

    @property
    def state(self) -> RodState:
        if self.position == self.target:
            return RodState.EXTENDED if self.target else RodState.RETRACTED
        return RodState.EXTENDING if self.target else RodState.RETRACTING

    @property
    def sweeping(self) -> bool:
        """True while extending or extended (retracting does not sweep)."""
        return self.target == 1.0

    def time_to_rest(self) -> float:
        return abs(self.target - self.position) * self.stroke_time

    def move(self, dt: float) -> bool:
        """Move for ``dt`` seconds; True when this completes an extension."""
        if self.position == self.target:
            return False
        if dt >= self.time_to_rest() - 1e-12:
            self.position = self.target
            return self.target == 1.0
        step = dt / self.stroke_time
        self.position += step if self.target > self.position else -step
        return False


@dataclass
class Item:
    """One item: from the stack, on the belt, then in a bin."""

    id: int
    label: str
    tail: float = 0.0
    feed_time: float | None = None
    camera_time: float | None = None
    picture_time: float | None = None
    gate_edges: dict[int, list[list[float | None]]] = field(default_factory=dict)
    bin: Bin | None = None
    why: str = ""
    end_time: float | None = None
    stuck: bool = False
    moving: bool = False

    def record(self) -> dict[str, object]:
        """The item's ledger line."""
        return {
            "id": self.id,
            "label": self.label,
            "feed_time": _round(self.feed_time),
            "camera_time": _round(self.camera_time),
            "picture_time": _round(self.picture_time),
            "gate_edges": {
                str(g): [[_round(a), _round(b)] for a, b in edges]
                for g, edges in sorted(self.gate_edges.items())
            },
            "bin": self.bin,
            "why": self.why,
            "end_time": _round(self.end_time),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class GateChanged:
    """Gate ``gate`` became blocked or clear at line time ``time``."""

    time: float
    gate: int
    blocked: bool


@dataclass(frozen=True)
class PictureDue:
    """The camera's picture of ``item`` is due for sending at ``time``."""

    time: float
    item: int
    label: str


@dataclass(frozen=True)
class ItemResolved:
    """``item`` left the line into ``bin`` (1, a classifying rod's, or ``"jam"``) at ``time``."""

    time: float
    item: int
    bin: Bin
    why: str


LineEvent = GateChanged | PictureDue | ItemResolved


class Line:
    """The simulated line at one moment of line time; advance it with :meth:`advance`."""

    def __init__(
        self,
        geometry: LineGeometry,
        labels: Sequence[str],
        *,
        topology: Topology = FS,
        stuck_item: int | None = None,
        stall_at: float | None = None,
        drift_at: float | None = None,
        drift_factor: float = 1.0,
    ) -> None:
        if len(geometry.gate_positions) != topology.gates:
            raise ValueError(
                f"the line has {topology.gates} gates ({topology.describe()}) but "
                f"{len(geometry.gate_positions)} gate positions"
            )
        self.geo = geometry
        self.topology = topology
        self.time = 0.0
        self.items = [Item(i + 1, label) for i, label in enumerate(labels)]
        self.stack = list(self.items)
        self.belt: list[Item] = []  # downstream first
        self.belt_running = False
        self.stuck_item = stuck_item
        self.stall_at = stall_at
        self.drift_at = drift_at
        self.drift_factor = drift_factor
        self.rods = {FEEDER: Rod(FEEDER, geometry.feeder_stroke_time)}
        for r in topology.classifying_rods:
            self.rods[r] = Rod(r, geometry.rod_stroke_time)
        self.gate_blocked = [False] * topology.gates
        self.stuck_gate = min(2, topology.gates)  # where a stuck item sticks (gate 2)
        self._pictures: list[PictureDue] = []
        self._events: list[LineEvent] = []
        self._feed_due = False
        self._open_edges: dict[tuple[int, int], Item] = {}  # (item id, gate) -> blocking item
        self.last_end_time: float | None = None
        self.first_feed_time: float | None = None
        half = geometry.item_length / 2
        marks = [*geometry.gate_positions, geometry.camera_position - half]
        marks += [geometry.belt_length - half, geometry.gate_positions[self.stuck_gate - 1] - half]
        for r in topology.classifying_rods:
            marks += list(geometry.rod_window_of(r, topology))
        self._tail_marks = sorted(set(marks))  # tail positions at which something can change
        self._calm_until = -1.0  # line time before which nothing can change (see advance)
        # a change found early: a moving item is judged _EPS downstream, a picture 1e-12 s
        fastest = geometry.belt_speed * max(1.0, drift_factor)
        self._calm_margin = 4 * _EPS / fastest + 1e-9

    # ------------------------------------------------------------------ queries
    @property
    def belt_moving(self) -> bool:
        """True when the belt runs and has not stalled."""
        stalled = self.stall_at is not None and self.time >= self.stall_at
        return self.belt_running and not stalled

    @property
    def belt_speed(self) -> float:
        """The belt's speed now (m/s while running): the geometry's, times the drift once due."""
        drifted = self.drift_at is not None and self.time >= self.drift_at
        return self.geo.belt_speed * (self.drift_factor if drifted else 1.0)

    @property
    def done(self) -> bool:
        """True once the stack is empty, the belt is clear and every picture went out."""
        return not self.stack and not self.belt and not self._pictures

    def rod_state(self, rod: int) -> RodState:
        return self.rods[rod].state

    # ------------------------------------------------------------------ inputs
    def apply(self, command: Command, at: float) -> list[LineEvent]:
        """Advance to ``at`` and carry out ``command`` there; the events up to then.

        ``all_push``/``all_pull`` move every rod of this line; a rod it does not have is a
        ``ValueError`` (before anything moves)."""
        if command.rod and command.rod not in self.rods:
            raise ValueError(f"this line has no rod {command.rod} (rods {self.topology.all_rods})")
        events = self.advance(at)
        if command.action is Action.BELT_RUN:
            self.belt_running = True
        elif command.action is Action.BELT_STOP:
            self.belt_running = False
        else:
            target = 1.0 if command.action is Action.PUSH else 0.0
            rods = list(self.rods) if command.rod == 0 else [command.rod or 0]
            for r in rods:
                self.rods[r].target = target
        self._calm_until = -1.0  # the command may start a change
        self._settle()
        return events + self._take_events()

    def advance(self, until: float) -> list[LineEvent]:
        """Move the line to line time ``until``; the events that happened on the way.

        Nothing can happen before the next change (:meth:`_time_to_next_change`), so a
        step that ends clearly before the last computed one only moves the items: the
        same moves as a full step, without the search and the settling that would find
        nothing (the harness's controller ticks many times between two changes)."""
        if self.time < until < self._calm_until:
            self._move(until - self.time)
            self.time = until
            return self._take_events()
        while self.time < until:
            step = min(until - self.time, self._time_to_next_change())
            self._move(step)
            self.time = until if step == until - self.time else self.time + step
            self._settle()
        # what the next step's search would find first, as long as nothing else acts
        self._calm_until = self.time + self._time_to_next_change() - self._calm_margin
        return self._take_events()

    def finish(self, at: float) -> list[Item]:
        """End the run at ``at``: mark what is left (stuck, on the belt, in the stack)."""
        self.advance(at)
        for item in self.belt:
            item.bin = STUCK if item.stuck else ON_BELT
            stuck = f"stuck at gate {self.stuck_gate}"
            item.why = stuck if item.stuck else "still on the belt at the end"
        for item in self.stack:
            item.bin = NOT_FED
            item.why = "never fed"
        left = self.belt + self.stack
        self.belt, self.stack = [], []
        return left

    # ------------------------------------------------------------------ stepping
    def _time_to_next_change(self) -> float:
        times = [r.time_to_rest() for r in self.rods.values() if r.time_to_rest() > 1e-12]
        times += [p.time - self.time for p in self._pictures]
        for at in (self.stall_at, self.drift_at):
            if at is not None and at > self.time:
                times.append(at - self.time)
        if self.belt_moving:
            speed = self.belt_speed
            length = self.geo.item_length
            ahead: Item | None = None
            for item in self.belt:
                if item.moving:
                    distance = self._next_mark(item.tail, length)
                    if ahead is not None and not ahead.moving:
                        gap = ahead.tail - (item.tail + length)
                        if gap > _EPS:
                            distance = min(distance, gap)
                    times.append(distance / speed)
                ahead = item
        return max(1e-12, min(times, default=float("inf")))

    def _next_mark(self, tail: float, length: float) -> float:
        """Distance to the next tail position at which the item's tail or head meets a mark."""
        best = float("inf")
        for mark in self._tail_marks:
            for offset in (0.0, length):  # the tail reaches the mark, or the head does
                distance = mark - offset - tail
                if _EPS < distance < best:
                    best = distance
        return best

    def _move(self, dt: float) -> None:
        if dt <= 0:
            return
        for rod in self.rods.values():
            if rod.move(dt) and rod.number == 1:
                self._feed_due = True
        distance = self.belt_speed * dt
        ahead: Item | None = None
        for item in self.belt:
            if item.moving:
                item.tail += distance
                if ahead is not None and not ahead.moving:
                    limit = ahead.tail - self.geo.item_length
                    item.tail = min(item.tail, limit)
            ahead = item

    def _settle(self) -> None:
        """Carry out everything that happens at the current instant."""
        if self._feed_due:
            self._feed_due = False
            self._feed()
        self._update_motion()
        self._sweep()
        self._photograph()
        self._drop_off_end()
        self._update_gates()
        self._send_due_pictures()

    def _feed(self) -> None:
        if not self.stack:
            return
        item = self.stack.pop(0)
        item.feed_time = self.time
        item.tail = 0.0
        if self.first_feed_time is None:
            self.first_feed_time = self.time
        in_zone = [other for other in self.belt if other.tail <= self.geo.feed_zone + _EPS]
        if in_zone:
            for other in in_zone:
                self.belt.remove(other)
                self._resolve(other, JAM, "fed onto while in the feed zone")
            self._resolve(item, JAM, "collided while feeding")
            return
        self.belt.append(item)

    def _update_motion(self) -> None:
        """Decide which items move from now on (downstream first)."""
        moving = self.belt_moving
        ahead: Item | None = None
        for item in self.belt:
            centre = self._tail(item) + self.geo.item_length / 2
            stuck_at = self.geo.gate_positions[self.stuck_gate - 1]
            if item.id == self.stuck_item and centre >= stuck_at:
                item.stuck = True
            held = (
                ahead is not None
                and not ahead.moving
                and item.tail + self.geo.item_length >= ahead.tail - _EPS
            )
            item.moving = moving and not item.stuck and not held
            ahead = item

    def _tail(self, item: Item) -> float:
        """Where the item is judged to be: a hair downstream while it moves."""
        return item.tail + _EPS if item.moving else item.tail

    def _overlaps(self, item: Item, start: float, end: float) -> bool:
        tail = self._tail(item)
        head = tail + self.geo.item_length
        if item.moving:
            return tail < end and head > start
        return tail <= end and head >= start

    def _sweep(self) -> None:
        for r in self.topology.classifying_rods:
            if not self.rods[r].sweeping:
                continue
            start, end = self.geo.rod_window_of(r, self.topology)
            for item in list(self.belt):
                if not item.stuck and self._overlaps(item, start, end):
                    self.belt.remove(item)
                    self._resolve(item, r, f"swept by rod {r}")

    def _photograph(self) -> None:
        half = self.geo.item_length / 2
        for item in self.belt:
            if item.camera_time is None and self._tail(item) + half > self.geo.camera_position:
                item.camera_time = self.time
                due = self.time + self.geo.camera_delay
                self._pictures.append(PictureDue(due, item.id, item.label))

    def _drop_off_end(self) -> None:
        half = self.geo.item_length / 2
        for item in list(self.belt):
            if self._tail(item) + half > self.geo.belt_length:
                self.belt.remove(item)
                self._resolve(item, 1, "fell off the belt end")

    def _update_gates(self) -> None:
        for index, position in enumerate(self.geo.gate_positions):
            gate = index + 1
            blockers = {i.id for i in self.belt if self._overlaps(i, position, position)}
            for key, item in list(self._open_edges.items()):
                if key[1] == gate and key[0] not in blockers:
                    item.gate_edges[gate][-1][1] = self.time
                    del self._open_edges[key]
            for item in self.belt:
                if item.id in blockers and (item.id, gate) not in self._open_edges:
                    item.gate_edges.setdefault(gate, []).append([self.time, None])
                    self._open_edges[item.id, gate] = item
            blocked = bool(blockers)
            if blocked != self.gate_blocked[index]:
                self.gate_blocked[index] = blocked
                self._events.append(GateChanged(self.time, gate, blocked))

    def _send_due_pictures(self) -> None:
        due = [p for p in self._pictures if p.time <= self.time + 1e-12]
        for picture in due:
            self._pictures.remove(picture)
            self.items[picture.item - 1].picture_time = self.time
            self._events.append(picture)

    def _resolve(self, item: Item, where: Bin, why: str) -> None:
        item.bin, item.why, item.end_time = where, why, self.time
        self.last_end_time = self.time
        self._events.append(ItemResolved(self.time, item.id, where, why))

    def _take_events(self) -> list[LineEvent]:
        events, self._events = self._events, []
        return events
