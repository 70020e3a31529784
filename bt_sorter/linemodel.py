"""The line model: the line's timings, learned from its events while it sorts.

Nobody hands the controller a line's geometry (the FS scene publishes none), so it
measures the line from the items it sorts. Every time here is in **seconds of belt
running since an item's feed command**: the :class:`Odometer` counts only the time the
belt was commanded to run, so belt stops stay out of the figures. What it learns:

- ``picture``: feed → the item's picture arriving;
- ``gateK.blocked`` / ``gateK.clear``: feed → gate K's blocked edge (the item's head
  reaches it) and clear edge (its tail leaves it);
- ``gateK.passage``: blocked → clear at gate K (the item's length over the belt speed).

for every gate K of the line's topology (:class:`bt_sorter.topology.Topology`, config
``topology:``; the FS scene's three by default): :attr:`LineModel.chain` is the order an
item's events come in, :attr:`LineModel.quantities` every one learned.

Each is a sliding window of the last :data:`WINDOW` samples from unambiguous items
(matched by order, with no stray edge near them): median, spread (the median absolute
deviation scaled to a standard deviation) and the sample count. A belt that slows by
20 % moves the median within ``WINDOW // 2 + 1`` items; until then :attr:`pace` (the
latest item's times over the medians) stretches the predictions.

The configured ``line:`` (:class:`bt_sorter.config.LineConfig`) is a prior: turned into
expected times, it counts towards "measured" only once a measurement has confirmed it
(within :data:`PRIOR_TOLERANCE`). When the median of the first
:data:`PRIOR_CHECK_SAMPLES` measurements still disagrees, it is reported as a
``geometry_mismatch`` (quantity, configured, measured) and the prior is dropped: the
measurement wins. Before a quantity is measured, the watchdogs judge it against
generous bounds that no line in the target range can trip (:data:`UNMEASURED_REACH_S`,
:data:`UNMEASURED_PASSAGE_S`).

Every controller use of the line goes through this model: the odometer, the matcher's
windows, the watchdogs' deadlines, the push delay, the feed spacing and the limit.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bt_sorter.config import LineConfig
from bt_sorter.topology import FS, Topology

# The target range (issue 9): belts 0.05-0.5 m/s, items 3-15 cm, any layout in feed order.
SLOWEST_BELT = 0.05  # m/s
FASTEST_BELT = 0.5  # m/s
LONGEST_ITEM = 0.15  # m
SHORTEST_ITEM = 0.03  # m
LONGEST_REACH = 3.0  # m from the feeder to the last gate (an assumption, stated in docs/)
UNMEASURED_REACH_S = LONGEST_REACH / SLOWEST_BELT  # 60 s: the slowest feed → any event
UNMEASURED_PASSAGE_S = 2 * LONGEST_ITEM / SLOWEST_BELT  # 6 s: twice the slowest passage
SHORTEST_PASSAGE_S = SHORTEST_ITEM / FASTEST_BELT  # 0.06 s

WINDOW = 7  # samples per estimate: the last seven unambiguous items
MAD_TO_SIGMA = 1.4826  # median absolute deviation → standard deviation (normal data)
SPREAD_K = 4.0  # a window reaches this many spreads either side of the prediction
REL_TOL = 0.3  # and this share of the predicted span: a belt may drift by 20 %
PRIOR_TOLERANCE = 0.1  # a prior is confirmed when the first measurement is this close
PRIOR_WEIGHT = 2  # a confirmed prior counts as this many items towards "measured"
PRIOR_CHECK_SAMPLES = 3  # a prior no sample has confirmed is judged on this many
LATENCY_WALL_S = 0.05  # wall seconds a message and a command may add on the network
# Issue 15: the controller's own delay, from the tick an event could first be seen to the
# commands of the tick that acts on it being published, is measured by the runner (tick
# lateness + tick duration, in line time) and kept over the last DELAY_WINDOW ticks; the
# margin allows DELAY_QUANTILE of them (a slower tick is rarer than a lost message).
DELAY_WINDOW = 500  # ticks: 10 s of line time at 50 Hz
DELAY_QUANTILE = 0.99
PACE_LIMITS = (0.5, 2.0)  # an item's pace outside these is an outlier, not a drift
# Issue 15: an item whose times fall outside the model's own windows is not learned (its
# events may be another item's: a feed that put nothing on the belt); SHIFT_ITEMS such
# items in a row that agree with each other (within SHIFT_AGREE of their median pace), each
# within the windows once stretched by its pace, are a line that changed, and are learned.
SHIFT_ITEMS = 3
SHIFT_AGREE = 0.1
RUN_OUT_FACTOR = 1.5  # the belt end lies at most this many gate spacings past gate 3
# How far past its gate (in the item's own passages) a late push still meets the item: the
# sweep window lies downstream of the gate and must overlap an item that has just cleared
# it; three quarters of an item length is assumed (the built-in line's reaches 1.5).
PUSH_REACH = 0.75
STALL_GAPS = 3  # no evidence for this many of an item's longest gaps: the belt has stalled
STALL_WALL_S = 1.0  # ... and for at least this long in wall time (a busy machine's hiccup)

PICTURE = "picture"


def blocked(gate: int) -> str:
    return f"gate{gate}.blocked"


def clear(gate: int) -> str:
    return f"gate{gate}.clear"


def passage(gate: int) -> str:
    return f"gate{gate}.passage"


def gate_of(name: str) -> int:
    """The gate a gate quantity is about (``gate2.clear`` → 2)."""
    return int(name.removeprefix("gate").split(".")[0])


def gate_anchor(anchor: tuple[str, float] | None) -> tuple[str, float] | None:
    """The anchor a prediction may start from: a gate edge, not the picture.

    The picture's time carries the camera's delay and a large message's transport, so
    one late picture (a busy machine at --speed 8) would shift and narrow every window
    after it; a gate edge says where the item's head or tail is (issue 15).
    """
    return None if anchor is None or anchor[0] == PICTURE else anchor


def chain(topology: Topology) -> tuple[str, ...]:
    """An item's events in the order they come: picture, then each gate blocked, clear."""
    return (PICTURE, *(q for g in topology.gate_numbers for q in (blocked(g), clear(g))))


def quantities(topology: Topology) -> tuple[str, ...]:
    """Every quantity learned on a line: its chain, then each gate's passage."""
    return (*chain(topology), *(passage(g) for g in topology.gate_numbers))


class Odometer:
    """Seconds of belt running, from the belt commands the controller sent."""

    def __init__(self) -> None:
        self._changes: list[tuple[float, bool]] = []  # (time, running), in time order

    def set(self, t: float, running: bool) -> None:
        if not self._changes or self._changes[-1][1] != running:
            self._changes.append((t, running))

    def travel(self, t: float) -> float:
        """Belt-running seconds from the first command up to line time ``t``."""
        total, since = 0.0, None
        for when, running in self._changes:
            if when > t:
                break
            if since is not None:
                total += when - since
            since = when if running else None
        if since is not None:
            total += t - since
        return total

    def between(self, t0: float, t1: float) -> float:
        """Belt-running seconds from line time ``t0`` to ``t1``."""
        return self.travel(t1) - self.travel(t0)


@dataclass
class Estimate:
    """A sliding window of samples of one quantity: median, spread, count.

    Median and spread are computed once per new sample (they are read every tick)."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    total: int = 0  # samples ever taken
    _median: float | None = field(default=None, repr=False, compare=False)
    _spread: float = field(default=0.0, repr=False, compare=False)

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.total += 1
        mid = statistics.median(self.samples)
        self._median = mid
        self._spread = (
            MAD_TO_SIGMA * statistics.median(abs(x - mid) for x in self.samples)
            if len(self.samples) >= 2
            else 0.0
        )

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float | None:
        return self._median

    @property
    def spread(self) -> float:
        return self._spread

    def report(self) -> dict[str, Any]:
        median = self.median
        return {
            "median": None if median is None else round(median, 4),
            "spread": round(self.spread, 4),
            "n": self.total,
        }


def prior_times(prior: LineConfig | None) -> dict[str, float]:
    """Expected times from a configured ``line:``: its times, else its metres."""
    if prior is None:
        return {}
    times: dict[str, float] = {}
    if prior.picture is not None:
        times[PICTURE] = prior.picture.median
    for gate, gt in enumerate(prior.gates, start=1):
        if gt.blocked is not None:
            times[blocked(gate)] = gt.blocked.median
        if gt.clear is not None:
            times[clear(gate)] = gt.clear.median
        if gt.blocked is not None and gt.clear is not None:
            times[passage(gate)] = gt.clear.median - gt.blocked.median
    speed, length = prior.belt_speed, prior.item_length
    if speed is None or length is None or speed <= 0:
        return times
    landed = prior.feeder_stroke_time or 0.0  # the item lands when rod 1 is out
    if prior.camera_position is not None:
        delay = prior.camera_delay or 0.0
        times.setdefault(PICTURE, landed + (prior.camera_position - length / 2) / speed + delay)
    for gate, position in enumerate(prior.gate_positions or (), start=1):
        times.setdefault(blocked(gate), landed + (position - length) / speed)
        times.setdefault(clear(gate), landed + position / speed)
        times.setdefault(passage(gate), length / speed)
    return times


class LineModel:
    """What the controller knows of the line's timings, with their confidence."""

    def __init__(
        self,
        prior: LineConfig | None = None,
        *,
        tick: float = 0.02,
        speed: float = 1.0,
        feeder_cycle: float = 2.5,
        rod_out: float = 2.0,
        topology: Topology = FS,
        routed: Iterable[int] | None = None,
    ) -> None:
        self.topology = topology
        # The gates whose rods fire: those some label routes to (config sorting.routes);
        # an unrouted rod never pushes, so it sets no spacing. Every rod's by default.
        rods = topology.rods if routed is None else [r for r in routed if r in topology.rods]
        self.push_gates = sorted({topology.rods[rod] for rod in rods})
        self.chain, self.quantities = chain(topology), quantities(topology)
        self.odometer = Odometer()
        self.estimates = {name: Estimate() for name in self.quantities}
        self.prior = prior
        self.prior_times = prior_times(prior)
        self.confirmed: set[str] = set()
        self.mismatches: list[dict[str, Any]] = []
        # Message and command latency (wall time, so --speed X makes it X times longer in
        # line time) and the controller's decision delay either way (see :attr:`margin`).
        self.tick, self.speed = tick, speed
        self._delays: deque[float] = deque(maxlen=DELAY_WINDOW)  # line s, from the runner
        self._ranked: list[float] = []  # the same delays, sorted
        self.decision_delay = tick  # until the runner has measured one
        self._feeder_cycles: list[float] = []  # feed command → rod 1 back, per feeding leaf
        self._rod_outs: list[float] = []  # push → rod back, per rod leaf of the tree
        self._default_feeder_cycle, self._default_rod_out = feeder_cycle, rod_out
        self.pace = 1.0
        self.items_learned = 0
        self.items_rejected = 0  # items whose times were outliers (issue 15)
        self.last_outliers: dict[str, dict[str, float]] = {}  # the last learn()'s, if rejected
        self._rejected: deque[dict[str, float]] = deque(maxlen=SHIFT_ITEMS)  # in a row

    def note_feeder_cycle(self, seconds: float) -> None:
        """A feeding leaf's cycle: rod 1 out and back (the feeder's pace)."""
        self._feeder_cycles.append(seconds)

    def note_rod_out(self, seconds: float) -> None:
        """A rod leaf's push → back time; spacing allows for the longest."""
        self._rod_outs.append(seconds)

    def note_delay(self, seconds: float) -> None:
        """One tick's delay (line s) from its due time to its commands being published.

        Sets :attr:`decision_delay`: a tick period (an event may arrive just after a tick
        read its inbox) plus the :data:`DELAY_QUANTILE` of the measured tick delays
        (issue 15); one tick period before the first measurement.
        """
        if len(self._delays) == self._delays.maxlen:
            del self._ranked[bisect.bisect_left(self._ranked, self._delays[0])]
        delay = max(0.0, seconds)
        self._delays.append(delay)
        bisect.insort(self._ranked, delay)
        ranked = self._ranked
        self.decision_delay = self.tick + ranked[int(DELAY_QUANTILE * (len(ranked) - 1))]

    @property
    def margin(self) -> float:
        """Line s an event's time may be off (windows, priors): the network
        (:data:`LATENCY_WALL_S` of wall time) and a tick either way. Events are stamped
        when they arrive, so a late tick does not move them."""
        return LATENCY_WALL_S * self.speed + 2 * self.tick

    @property
    def command_margin(self) -> float:
        """Line s a rod's effect may lag behind the event it answers (issue 15): the
        network both ways and the controller's measured decision delay, twice (the tick
        that pushes, then the tick that pulls)."""
        return LATENCY_WALL_S * self.speed + 2 * self.decision_delay

    @property
    def feeder_cycle(self) -> float:
        return max(self._feeder_cycles, default=self._default_feeder_cycle)

    @property
    def rod_out(self) -> float:
        return max(self._rod_outs, default=self._default_rod_out)

    # -- learning ------------------------------------------------------------------

    def learn(self, observed: dict[str, float]) -> list[dict[str, Any]]:
        """Take one unambiguous item's times; the ``geometry_mismatch`` facts it showed.

        An item with a time outside the model's window for it (:meth:`outliers`) is not
        learned: :attr:`last_outliers` says which and :attr:`items_rejected` counts it
        (issue 15: one wrong sample in a short window moves the medians and the spacing).
        :data:`SHIFT_ITEMS` rejected items in a row whose paces agree, and whose times all
        fit the windows once stretched by that pace, are a line that changed (a belt
        slower by more than the windows allow): they are all learned.
        """
        outliers = self.outliers(observed)
        self.last_outliers = outliers
        if not outliers:
            self._rejected.clear()
            return self._take(observed)
        self.items_rejected += 1
        pace = self._pace(observed)
        low, high = PACE_LIMITS
        trusted = self.items_learned >= SHIFT_ITEMS  # else the first items may be the odd ones
        if pace is None or (trusted and not low <= pace <= high):
            self._rejected.clear()  # no belt changes that much: not a drift
            return []
        if trusted and not self._paced(observed, pace):
            # Issue 20 (seed 1225): a belt that changed speed stretches every time alike;
            # one time off on its own (the next item's picture, taken item after item)
            # is not the line changing, and learning it would make the shift look right.
            self._rejected.clear()
            return []
        self._rejected.append(observed)
        paces = [self._pace(o) or 0.0 for o in self._rejected]
        middle = statistics.median(paces)
        agree = all(abs(p - middle) <= SHIFT_AGREE * middle for p in paces)
        if len(self._rejected) < SHIFT_ITEMS or not agree:
            return []
        self.last_outliers = {}  # a shift: the line changed, follow it
        taken = list(self._rejected)
        self._rejected.clear()
        return [m for times in taken for m in self._take(times)]

    def outliers(self, observed: dict[str, float]) -> dict[str, dict[str, float]]:
        """The quantities of ``observed`` outside the model's window for them (no anchor:
        from the feed), once the model has a sample of that quantity; ``value``, ``low``
        and ``high`` of each (belt s)."""
        out = {}
        for name, value in observed.items():
            if self.estimates[name].n == 0:
                continue
            low, high = self.window(name)
            if not low <= value <= high:
                out[name] = {"value": round(value, 4), "low": round(low, 4),
                             "high": round(high, 4)}  # fmt: skip
        return out

    def _paced(self, observed: dict[str, float], pace: float) -> bool:
        """Whether ``observed`` falls within the model's windows once every prediction is
        stretched by ``pace`` (the item's own): what a belt that changed speed shows."""
        for name, value in observed.items():
            expected = self.expected(name)
            if expected is None or self.estimates[name].n == 0:
                continue
            predicted = expected * pace
            tolerance = SPREAD_K * self.spread(name) + REL_TOL * predicted + self.margin
            if abs(value - predicted) > tolerance:
                return False
        return True

    def _pace(self, observed: dict[str, float]) -> float | None:
        """An item's times over the model's medians (the median of the ratios)."""
        paces = [
            value / expected
            for name, value in observed.items()
            if not name.endswith("passage") and (expected := self.expected(name))
        ]
        return statistics.median(paces) if paces else None

    def _take(self, observed: dict[str, float]) -> list[dict[str, Any]]:
        pace = self._pace(observed)
        mismatches = [m for m in (self._check_prior(n, v) for n, v in observed.items()) if m]
        for name, value in observed.items():
            self.estimates[name].add(value)
        if pace is not None:
            low, high = PACE_LIMITS
            self.pace = min(high, max(low, pace))
        self.items_learned += 1
        return mismatches

    def _check_prior(self, name: str, value: float) -> dict[str, Any] | None:
        """Confirm a configured time by the first close sample; call it a mismatch once the
        median of :data:`PRIOR_CHECK_SAMPLES` samples still disagrees."""
        configured = self.prior_times.get(name)
        if configured is None or name in self.confirmed:
            return None
        # The latency margin is a worst case, not a typical delay: it stays out of this.
        tolerance = PRIOR_TOLERANCE * configured + SPREAD_K * self.spread(name) + 2 * self.tick
        if abs(value - configured) <= tolerance:
            self.confirmed.add(name)
            return None
        samples = [*self.estimates[name].samples, value][-PRIOR_CHECK_SAMPLES:]
        if len(samples) < PRIOR_CHECK_SAMPLES:
            return None
        measured = statistics.median(samples)
        if abs(measured - configured) <= tolerance:
            self.confirmed.add(name)
            return None
        del self.prior_times[name]  # the measurement wins
        mismatch = {"quantity": name, "configured": round(configured, 4),
                    "measured": round(measured, 4)}  # fmt: skip
        self.mismatches.append(mismatch)
        return mismatch

    # -- what is known -------------------------------------------------------------

    def expected(self, name: str) -> float | None:
        """The median of a quantity; a passage not measured at its gate, from the others."""
        median = self.estimates[name].median
        if median is None and name.endswith("passage"):
            pooled = [
                x for g in self.topology.gate_numbers for x in self.estimates[passage(g)].samples
            ]
            median = statistics.median(pooled) if pooled else None
        return median

    def spread(self, name: str) -> float:
        return self.estimates[name].spread

    def support(self, name: str) -> int:
        """Samples of a quantity, plus :data:`PRIOR_WEIGHT` for a confirmed prior."""
        return self.estimates[name].n + (PRIOR_WEIGHT if name in self.confirmed else 0)

    def measured(self, items: int, through: int | None = None) -> bool:
        """True once the picture and gate 1 have ``items`` samples, every later gate up to
        ``through`` (the last gate by default) one.

        Items taken by the first rod never reach the gates after it, so those need only one
        sample: the passage is the same at every gate, and the matcher keeps order there.
        ``through``: the last gate an item must pass to be sorted (the gate of the last rod
        some label routes to, :meth:`bt_sorter.topology.Topology.reach`). Past it only items
        bound for bin 1 ride, and no push depends on their edges: a line whose routes send
        nothing to bin 1 never shows those gates an item, and waiting for them would feed
        one item at a time for ever (issue 20, seed 1000). Their events keep the bounds no
        line in the target range can trip until an item shows them.
        """
        first = (PICTURE, blocked(1), clear(1))
        if any(self.support(name) < items for name in first):
            return False
        last = self.topology.last_gate if through is None else through
        rest = [q for g in self.topology.gate_numbers[1:last] for q in (blocked(g), clear(g))]
        return all(self.support(n) >= 1 for n in rest)

    # -- predictions -----------------------------------------------------------------

    def predict(self, name: str, anchor: tuple[str, float] | None = None) -> float | None:
        """When (belt s since the feed) an item's ``name`` event is due, or None if unknown.

        From the item's own latest event (``anchor``: its name and time) when there is
        one, stretched by the item's pace; else the median stretched by the model's pace.
        """
        expected = self.expected(name)
        if expected is None:
            return None
        anchor = gate_anchor(anchor)
        if anchor is not None:
            anchor_name, anchor_at = anchor
            anchor_expected = self.expected(anchor_name)
            if anchor_expected:
                low, high = PACE_LIMITS
                pace = min(high, max(low, anchor_at / anchor_expected))
                return anchor_at + (expected - anchor_expected) * pace
        return expected * self.pace

    def window(self, name: str, anchor: tuple[str, float] | None = None) -> tuple[float, float]:
        """Earliest and latest belt s since the feed for the event; unbounded if unknown."""
        predicted = self.predict(name, anchor)
        if predicted is None:
            return 0.0, self.unmeasured_deadline(name, anchor)
        anchor = gate_anchor(anchor)
        span = abs(predicted - (anchor[1] if anchor else 0.0))
        tolerance = SPREAD_K * self.spread(name) + REL_TOL * span + self.margin
        return predicted - tolerance, predicted + tolerance

    def deadline(self, name: str, anchor: tuple[str, float] | None = None) -> float:
        """Belt s since the feed after which the event is overdue: twice the window's
        tolerance past the prediction (a late message is more likely than a lost one)."""
        earliest, latest = self.window(name, anchor)
        if self.predict(name, anchor) is None:
            return latest
        return latest + (latest - earliest) / 2

    def unmeasured_deadline(self, name: str, anchor: tuple[str, float] | None) -> float:
        """A bound no line in the target range can trip: for a clear edge after its own
        blocked edge, twice the slowest passage; for anything else the slowest reach."""
        since = anchor[1] if anchor else 0.0
        gate_of_anchor = anchor[0].split(".")[0] if anchor else None
        if name.endswith("clear") and gate_of_anchor == name.split(".")[0]:
            return since + UNMEASURED_PASSAGE_S
        return since + UNMEASURED_REACH_S

    def passage_time(self, gate: int) -> float | None:
        """The time an item takes to pass gate ``gate`` (its own length), if known."""
        return self.expected(passage(gate))

    def max_push_delay(self, gate: int, own: float | None = None) -> float:
        """Latest push (line s) after an item cleared ``gate`` that still meets it:
        :data:`PUSH_REACH` of its passage there (the model's, else ``own``, the item's own,
        else the shortest in the target range), never under two ticks."""
        passage = self.passage_time(gate) or own or SHORTEST_PASSAGE_S
        return max(PUSH_REACH * passage, self.tick * 2)

    def run_out(self, own: list[float]) -> float:
        """Belt s from the last gate's clear edge until an item has surely fallen off the end.

        No sensor sees the belt end; it is taken to lie at most :data:`RUN_OUT_FACTOR`
        gate spacings past the last gate (``own``: the item's own gate-to-gate times, used
        while the model has none).
        """
        heads = [self.expected(blocked(g)) for g in self.topology.gate_numbers]
        segments = [
            b - a for a, b in itertools.pairwise(heads) if a is not None and b is not None
        ] or own
        if not segments:
            return UNMEASURED_REACH_S
        return RUN_OUT_FACTOR * max(segments) * self.pace + self.margin

    def quiet_bound(self) -> float:
        """Belt s without any evidence that, with edges missing, means a stalled belt:
        :data:`STALL_GAPS` times the longest gap between two consecutive events of an
        item, and no less than :data:`STALL_WALL_S` of wall time (a busy machine may hold
        a process back for a while; ``--speed`` makes that longer in line time)."""
        times = [self.expected(name) for name in self.chain]
        if any(t is None for t in times):
            return UNMEASURED_REACH_S
        known = [0.0, *(t for t in times if t is not None)]
        gaps = [b - a for a, b in itertools.pairwise(known)]
        return max(STALL_GAPS * max(gaps) * self.pace, STALL_WALL_S * self.speed) + self.margin

    # -- spacing and the limit ---------------------------------------------------------

    def safe_spacing(self) -> float | None:
        """Least belt s between two feeds that keeps every rod off the item behind.

        Rod k goes out on the clear edge of its gate g (``topology.gate_of(k)``) of the item
        ahead, as late as :meth:`max_push_delay` after it, and is back ``rod_out`` later;
        the item behind must not reach gate g (the sweep window lies downstream of it)
        before then: passage at gate g + the latest push + rod out, plus the spreads and
        the command margin, over every gate that fires a rod some label routes to (a gate
        that only tracks fires none, nor does an unrouted rod's). And the other way round:
        the item ahead must have left the window before the push for this one
        (:meth:`leaves_window`). None while a passage is unknown. See docs/line-model.md.
        """
        needs, aheads = [], []
        for gate in self.push_gates:
            time = self.passage_time(gate)
            ahead = self.leaves_window(gate)
            if time is None or ahead is None:
                return None
            spread = max(self.spread(passage(gate)), self.spread(blocked(gate)))
            stretched = time * max(1.0, self.pace)
            needs.append(stretched + self.max_push_delay(gate) + SPREAD_K * spread)
            aheads.append(ahead)
        if not needs:
            return 0.0  # no rod fires: nothing to space but the feeder's own cycle
        behind = max(needs) + self.rod_out  # the item behind stays off a push for this one
        return max(behind, max(aheads)) + self.command_margin

    def leaves_window(self, gate: int) -> float | None:
        """Belt s from an item's clear edge at ``gate`` until it is surely past any window
        the rod that ``gate`` fires may sweep (issue 20): the push for the item behind comes
        on that item's clear edge at ``gate``, and no sensor sees where the window ends. By
        the course's rule it ends before the next gate: the item's clear edge there; past
        the last gate (or a next gate no item has reached yet), the belt end
        (:meth:`run_out`). None until the item's clear edge at ``gate`` is known."""
        here = self.expected(clear(gate))
        if here is None:
            return None
        following = self.expected(clear(gate + 1)) if gate < self.topology.last_gate else None
        if following is None:
            return self.run_out([])
        gap = (following - here) * max(1.0, self.pace)
        return gap + SPREAD_K * max(self.spread(clear(gate)), self.spread(clear(gate + 1)))

    def limit_per_minute(self) -> float | None:
        """The line's physical limit: the feeder cycle or the safe spacing, the slower."""
        spacing = self.safe_spacing()
        if spacing is None:
            return None
        return 60.0 / max(self.feeder_cycle, spacing)

    # -- reports -----------------------------------------------------------------------

    def lengths(self) -> dict[str, float]:
        """Metres, where a length is known: the configured item length gives belt speed
        and the gate spacings (unless a passage contradicted the configured geometry:
        then the length may be what is wrong)."""
        length = self.prior.item_length if self.prior is not None else None
        passage_time = self.passage_time(1)
        contradicted = any(m["quantity"].endswith("passage") for m in self.mismatches)
        if length is None or not passage_time or contradicted:
            return {}
        speed = length / passage_time
        out = {"item_length_m": length, "belt_speed_m_s": round(speed, 4)}
        for gate in self.topology.gate_numbers[1:]:
            a, b = self.expected(blocked(gate - 1)), self.expected(blocked(gate))
            if a is not None and b is not None:
                out[f"gate{gate - 1}_to_gate{gate}_m"] = round((b - a) * speed, 4)
        return out

    def report(self) -> dict[str, Any]:
        """The run summary's ``measured_line`` section."""
        spacing, limit = self.safe_spacing(), self.limit_per_minute()
        return {
            "unit": "seconds of belt running since the feed command",
            "items_learned": self.items_learned,
            "items_rejected": self.items_rejected,  # issue 15: outliers, not learned
            "quantities": {name: self.estimates[name].report() for name in self.quantities},
            "confirmed_prior": sorted(self.confirmed),
            "geometry_mismatches": list(self.mismatches),
            "safe_spacing_s": None if spacing is None else round(spacing, 4),
            "feeder_cycle_s": round(self.feeder_cycle, 4),
            "decision_delay_s": round(self.decision_delay, 4),  # issue 15: the margin's inputs
            "margin_s": round(self.command_margin, 4),
            "limit_items_per_minute": None if limit is None else round(limit, 3),
            **self.lengths(),
        }

    def line_section(self) -> dict[str, Any]:
        """A config ``line:`` section holding what was measured (``run.py --calibrate``)."""

        def timing(name: str) -> dict[str, Any] | None:
            est = self.estimates[name]
            if est.median is None:
                return None
            return {"median": round(est.median, 4), "spread": round(est.spread, 4),
                    "n": est.total}  # fmt: skip

        section: dict[str, Any] = {}
        if (picture := timing(PICTURE)) is not None:
            section["picture"] = picture
        gates = [
            {k: v for k, v in (("blocked", timing(blocked(g))), ("clear", timing(clear(g))))
             if v is not None}
            for g in self.topology.gate_numbers
        ]  # fmt: skip
        if any(gates):
            section["gates"] = gates
        if self.prior is not None and self.prior.item_length is not None:
            section["item_length"] = self.prior.item_length
            if "belt_speed_m_s" in (lengths := self.lengths()):
                section["belt_speed"] = lengths["belt_speed_m_s"]
        return section
