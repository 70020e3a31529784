"""The blackboard: everything the tree knows about the line, and the items in flight.

Only the runner writes line facts here, in the pre-tick, from the adapter's events
(:meth:`Blackboard.ingest`); leaves read them and update the items they own. Items
cannot overtake each other on a belt, so in-flight items are a FIFO in feed order
(:class:`ItemFifo`); the matcher (:mod:`bt_sorter.matcher`) gives every gate edge and
picture to the item whose turn it is. What the controller has learned of the line (its
timings, the belt odometer) is ``line``, a :class:`bt_sorter.linemodel.model.LineModel`; the
line's shape (gates, classifying rods, which gate fires which rod) is its ``topology``
(:class:`bt_sorter.topology.Topology`, from config), also ``Blackboard.topology``.
Several items in flight are the normal case, not an extension.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bt_sorter import protocol
from bt_sorter.linemodel.bounds import SHORTEST_PASSAGE_S
from bt_sorter.linemodel.model import LineModel
from bt_sorter.topology import FS, Topology
from bt_sorter.vision.classifier import Prediction

# A gate message repeating the gate's state this soon (line s) after its last change is
# the same message again: no item passes a gate in under SHORTEST_PASSAGE_S.
REPEAT_S = SHORTEST_PASSAGE_S / 2
# Pushed items watched for a missed push at the gate downstream of their rod (issue 20).
PUSHED_WATCHED = 16


class Outcome(enum.StrEnum):
    """How an item's story ended, from the controller's side."""

    SORTED = "sorted"  # its rod was pushed at its edge
    REJECTED = "rejected"  # sent on to the belt end (bin 1), with a reason
    LOST = "lost"  # the controller can no longer say where it is, with a reason


@dataclass(frozen=True, slots=True)
class Received:
    """One feedback event as the adapter received it, stamped with line time."""

    t: float
    event: protocol.Feedback


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """The adapter's link to the broker went up or down."""

    t: float
    connected: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Dropped:
    """The adapter's queue was full: these events (kind -> count) were dropped unread."""

    t: float
    counts: dict[str, int]


Event = Received | ConnectionChanged | Dropped


@dataclass(frozen=True, slots=True)
class Edge:
    """A gate edge of this tick."""

    gate: int
    blocked: bool
    t: float


@dataclass(eq=False)
class Item:
    """One fed item and every decision about it.

    Position along the line is counted in gate edges: ``entered`` is how many gates it
    has started to block, ``cleared`` how many it has left behind; ``zone`` =
    entered + cleared runs 0 (before gate 1), 1 (at gate 1), 2 (between gates 1
    and 2) ... 2N (past the last gate N). Its observed times (line time) are ``picture_at``,
    ``blocked_at`` and ``cleared_at``; ``anchor`` is its latest event as the line model
    names it, in belt seconds since its feed (what its next events are predicted from).
    """

    id: int
    fed_at: float
    picture: bytes | None = None
    picture_at: float | None = None
    failed_picture: bytes | None = None  # the picture every classifier failed on
    prediction: Prediction | None = None
    label: str | None = None  # decided label; "unknown" for a weak or missing answer
    rod: int | None = None  # its classifying rod; None = ride on to bin 1 (once decided)
    decided: bool = False  # label and rod are final
    reject_reason: str = ""  # why it rides to bin 1, when it does
    entered: int = 0
    cleared: int = 0
    blocked_at: dict[int, float] = field(default_factory=dict)  # gate -> rising edge time
    cleared_at: dict[int, float] = field(default_factory=dict)  # gate -> falling edge time
    evidence: set[int] = field(default_factory=set)  # gates with an edge matched to it
    anchor: tuple[str, float] | None = None  # (quantity, belt s since feed) of its latest event
    missed: int = 0  # its expected events that did not come since its latest one
    clean: bool = True  # no stray edge near it: its times may teach the line model
    seen: bool = False  # a picture or an edge has shown it is really on the belt
    stretched: bool = False  # fed with a feeder stroke lengthened after an empty feed
    pushed_at: float | None = None
    uncertain: bool = False  # its position stopped being knowable
    outcome: Outcome | None = None
    outcome_reason: str = ""
    resolved_at: float | None = None
    topology: Topology = field(default=FS, repr=False)  # the line it rides on

    @property
    def zone(self) -> int:
        return self.entered + self.cleared

    @property
    def push_gate(self) -> int:
        """The gate whose falling edge triggers this item's rod (the last gate when it has
        none: past it, nothing but the belt end)."""
        return self.topology.gate_of(self.rod) if self.rod else self.topology.last_gate


# Issue 22: a resolved item leaves the blackboard; only the newest few are kept whole.
RECENT = 16  # resolved items kept whole (newest): the page, the neighbour checks
PICTURES_KEPT = 8  # of those, the newest keep their pictures (the page's thumbnails)
TIMES_KEPT = 1024  # resolve times kept for the throughput chart (it takes them at 10 Hz)


class Resolved:
    """The resolved items of a run, in bounded memory: exact counts for the whole run (per
    outcome, per bin, per reason; ``doubted``: sent to bin 1 because vision doubted the
    picture, issue 24), the newest :data:`RECENT` items themselves, and the latest resolve
    times.

    Nothing refers to an older resolved item: the matcher and the leaves work on the
    items in flight, and the neighbour checks (:func:`bt_sorter.item_story.identity_doubt`, a
    picture offered again) look at the last eight. Only the newest :data:`PICTURES_KEPT`
    keep their picture (the page shows them); the record has every picture already.
    ``len()`` is the number resolved in all.
    """

    def __init__(self) -> None:
        self.total = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.bins: collections.Counter[int] = collections.Counter()  # bin -> items (not lost)
        self.reasons: collections.Counter[str] = collections.Counter()  # not sorted: why
        self.doubted = 0  # to bin 1 because vision doubted the picture (Prediction.doubt)
        self.first_fed_at: float | None = None  # the earliest feed of a resolved item
        self._recent: collections.deque[Item] = collections.deque(maxlen=RECENT)
        self.times: collections.deque[float] = collections.deque(maxlen=TIMES_KEPT)

    def add(self, item: Item) -> None:
        """Count ``item`` (its outcome set) and keep it among the newest."""
        outcome = item.outcome
        self.total += 1
        self.outcomes[str(outcome)] += 1
        if (bin_ := bin_of(item)) is not None:
            self.bins[bin_] += 1
        if outcome is not Outcome.SORTED:
            self.reasons[item.outcome_reason] += 1
        self.doubted += doubted(item)
        if self.first_fed_at is None or item.fed_at < self.first_fed_at:
            self.first_fed_at = item.fed_at
        self.times.append(item.resolved_at if item.resolved_at is not None else 0.0)
        item.failed_picture = None  # no classifier will try it again
        self._recent.append(item)
        if len(self._recent) > PICTURES_KEPT:
            self._recent[-PICTURES_KEPT - 1].picture = None  # off the page

    def remove(self, item: Item) -> None:
        """Take back a resolved item (a push that turned out to have missed, issue 20): off
        the counts, the newest and the chart, as if it had not been resolved."""
        self.total -= 1
        self.outcomes[str(item.outcome)] -= 1
        if (bin_ := bin_of(item)) is not None:
            self.bins[bin_] -= 1
        if item.outcome is not Outcome.SORTED:
            self.reasons[item.outcome_reason] -= 1
        self.doubted -= doubted(item)
        if item in self._recent:
            self._recent.remove(item)
        if item.resolved_at is not None and item.resolved_at in self.times:
            self.times.remove(item.resolved_at)
        self.outcomes, self.bins, self.reasons = +self.outcomes, +self.bins, +self.reasons

    def find(self, item_id: int) -> Item | None:
        """The resolved item ``item_id`` if it is among the newest kept, else None."""
        return next((i for i in self._recent if i.id == item_id), None)

    def __contains__(self, item: object) -> bool:
        return item in self._recent

    def recent(self, n: int = RECENT) -> list[Item]:
        """The newest ``n`` (at most :data:`RECENT`) resolved items, oldest first."""
        if n <= 0:
            return []
        return list(self._recent)[-n:]

    def __len__(self) -> int:
        return self.total

    def __bool__(self) -> bool:
        return self.total > 0


def doubted(item: Item) -> bool:
    """Whether a resolved item went to bin 1 because vision doubted its picture."""
    return item.outcome is Outcome.REJECTED and bool(item.prediction and item.prediction.doubt)


def bin_of(item: Item) -> int | None:
    """The bin a resolved item went to: its rod's when sorted, bin 1 when rejected, None
    when lost (the controller cannot say)."""
    if item.outcome is Outcome.SORTED:
        return item.rod
    return None if item.outcome is Outcome.LOST else 1


class ItemFifo:
    """Items in flight, oldest first; resolved items leave it for ``done``
    (:class:`Resolved`: counts and the newest few).

    Items pushed at a gate before the last are also kept ``pushed`` for a while (the
    newest :data:`PUSHED_WATCHED`): until their window at the gate downstream has passed,
    their edges there would show that the push missed (issue 20, :meth:`reopen`).
    """

    def __init__(self, topology: Topology = FS) -> None:
        self.topology = topology
        self._items: collections.deque[Item] = collections.deque()
        self.done = Resolved()
        self.pushed: collections.deque[Item] = collections.deque(maxlen=PUSHED_WATCHED)
        self.empty_feeds = 0  # feeds that put nothing on the belt, in all
        self._next_id = 1

    def feed(self, t: float) -> Item:
        item = Item(self._next_id, fed_at=t, topology=self.topology)
        self._next_id += 1
        self._items.append(item)
        return item

    def resolve(self, item: Item, outcome: Outcome, reason: str, t: float) -> None:
        item.outcome, item.outcome_reason, item.resolved_at = outcome, reason, t
        self._items.remove(item)
        self.done.add(item)
        if outcome is Outcome.SORTED and item.push_gate < self.topology.last_gate:
            self.pushed.append(item)

    def reopen(self, item: Item) -> None:
        """Issue 20: a pushed item showed on the belt after its push (at the gate
        downstream, or at a gate config lacks): the push missed, it is still on the
        belt. Back in flight, in feed order, its outcome open again (and off the counts)."""
        self.done.remove(item)
        if item in self.pushed:
            self.pushed.remove(item)
        item.outcome, item.outcome_reason, item.resolved_at = None, "", None
        at = next((n for n, i in enumerate(self._items) if i.id > item.id), len(self._items))
        self._items.insert(at, item)

    def discard(self, item: Item) -> None:
        """Forget a feed that never put an item on the belt (nothing was ever seen)."""
        self._items.remove(item)
        self.empty_feeds += 1

    def __iter__(self) -> Iterator[Item]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return any(i is item for i in self._items)

    @property
    def fed(self) -> int:
        """Items that really went on the belt: feeds less the empty ones."""
        return self._next_id - 1 - self.empty_feeds

    def oldest(self) -> Item | None:
        return self._items[0] if self._items else None

    def newest(self) -> Item | None:
        return self._items[-1] if self._items else None


@dataclass
class Blackboard:
    """Line facts (written in the pre-tick) and the in-flight items (written by leaves).

    The line's shape is ``line.topology`` (build it as ``Blackboard(line=LineModel(...,
    topology=config.topology))``); the gate and rod tables below start from it.
    """

    now: float = 0.0
    tick: int = 0
    connected: bool = False
    gates: dict[int, bool] = field(default_factory=dict)  # gate -> blocked (every gate)
    edges: list[Edge] = field(default_factory=list)  # this tick's edges, in arrival order
    pictures: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    # The last pictures received, matched or not: a picture slot freed by a picture that
    # would not decode is offered these again (see Classify).
    recent_pictures: collections.deque[tuple[float, bytes]] = field(
        default_factory=lambda: collections.deque(maxlen=8)
    )
    bad_inputs: int = 0
    received: dict[str, int] = field(default_factory=dict)  # kind -> events, in all
    dropped: dict[str, int] = field(default_factory=dict)  # kind -> dropped by the adapter
    items: ItemFifo = field(default_factory=ItemFifo)  # takes the line's topology
    belt_running: bool = False
    line: LineModel = field(default_factory=LineModel)
    rods_out: dict[int, bool] = field(default_factory=dict)  # rod -> out (every rod)
    rod_pushed_at: dict[int, float] = field(default_factory=dict)  # rod -> when it went out
    gate_changed_at: dict[int, float] = field(default_factory=dict)
    last_evidence_at: float = 0.0  # a picture or an edge matched to an item
    missed_since_evidence: int = 0  # expected edges that did not come since then
    late_items: int = 0  # items whose next event is late (not yet missing) this tick
    blocked_gates: dict[int, int] = field(default_factory=dict)  # gate -> item stuck at it
    ever_connected: bool = False
    resynced_at: float | None = None  # when the broker last came back
    outbox: list[protocol.Command] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    fault: str = ""  # the last fault a condition reported (for the alarm)
    stack_empty: bool = False
    empty_feeds_in_a_row: int = 0  # feeds in a row that put nothing on the belt
    # ... of them, those fed with a lengthened stroke: only these can show an empty stack
    stretched_empty_in_a_row: int = 0
    # Issue 15: empty feeds that a later feed's item showed were the feeder's, not the stack's
    feeder_misses: int = 0
    last_empty_feed: int = 0  # the id of the newest feed called empty
    last_label: str | None = None
    unmatched_edges: int = 0
    repeated_edges: int = 0  # gate messages that repeated the gate's state at once
    # Edges of gates the topology does not have (gate -> count), all of them; this tick's
    # (judged by bt_sorter.shape); those judged noise; and the passages of items through
    # them that fit (gate -> count, since the doubt began). While ``shape_doubt`` is set
    # (the line may have more gates than config declares) nothing is pushed (bin 1).
    undeclared_gates: dict[int, int] = field(default_factory=dict)
    undeclared_edges: list[Edge] = field(default_factory=list)
    stray_gate_edges: int = 0
    undeclared_passages: dict[int, int] = field(default_factory=dict)
    shape_doubt: str = ""
    missed_pushes: int = 0  # items pushed that then showed at the gate downstream (issue 20)

    def __post_init__(self) -> None:
        topology = self.topology
        self.items.topology = topology
        self.gates = self.gates or dict.fromkeys(topology.gate_numbers, False)
        self.gate_changed_at = self.gate_changed_at or dict.fromkeys(topology.gate_numbers, 0.0)
        self.rods_out = self.rods_out or dict.fromkeys(topology.all_rods, False)

    @property
    def topology(self) -> Topology:
        """The line's gates and rods (config ``topology:``), as the line model holds it."""
        return self.line.topology

    def ingest(self, events: Iterable[Event]) -> list[protocol.BadInput]:
        """The pre-tick: apply queued events in arrival order; return the bad inputs."""
        self.edges, self.undeclared_edges = [], []
        bad: list[protocol.BadInput] = []
        for ev in events:
            if isinstance(ev, Dropped):
                for kind, count in ev.counts.items():
                    self.dropped[kind] = self.dropped.get(kind, 0) + count
                continue
            if isinstance(ev, ConnectionChanged):
                if ev.connected and not self.connected and self.ever_connected:
                    self._resync(ev.t)
                self.connected = ev.connected
                self.ever_connected |= ev.connected
                continue
            event = ev.event
            kind = protocol.kind_of(event)
            self.received[kind] = self.received.get(kind, 0) + 1
            if isinstance(event, protocol.GateEdge) and event.gate not in self.gates:
                self.bad_inputs += 1
                self.undeclared_gates[event.gate] = self.undeclared_gates.get(event.gate, 0) + 1
                self.undeclared_edges.append(Edge(event.gate, event.blocked, ev.t))
                bad.append(protocol.BadInput(f"this line has no gate {event.gate}"))
            elif isinstance(event, protocol.GateEdge) and self._repeats(event, ev.t):
                self.repeated_edges += 1  # the same message again (a duplicate): no edge
            elif isinstance(event, protocol.GateEdge):
                self.gates[event.gate] = event.blocked
                self.gate_changed_at[event.gate] = ev.t
                self.edges.append(Edge(event.gate, event.blocked, ev.t))
            elif isinstance(event, protocol.Picture):
                self.pictures.append((ev.t, event.data))
                self.recent_pictures.append((ev.t, event.data))
            else:
                self.bad_inputs += 1
                bad.append(event)
        return bad

    def _repeats(self, event: protocol.GateEdge, t: float) -> bool:
        """Whether ``event`` repeats the gate's state within :data:`REPEAT_S` of its last
        change: a duplicated message, not an edge. A state repeated later is kept: its
        opposite edge was lost (an item's blocked edge dropped, then its clear edge)."""
        repeated = self.gates[event.gate] == event.blocked
        return repeated and t - self.gate_changed_at[event.gate] < REPEAT_S

    def _resync(self, t: float) -> None:
        """Back online: what happened while offline is unknown, not evidence of a fault.

        Gate states are unknown (taken as clear until their next edge); the silence and
        the edges missed while offline do not count towards a stalled belt or a stuck
        item. Items whose edges were missed are resolved by tracking as usual. The belt
        and rod commands are sent again.
        """
        self.gates = dict.fromkeys(self.topology.gate_numbers, False)
        self.gate_changed_at = dict.fromkeys(self.topology.gate_numbers, t)
        self.blocked_gates.clear()
        self.last_evidence_at, self.missed_since_evidence = t, 0
        self.resynced_at = t
        # Commands sent while offline were lost: say again what the line should be doing.
        # A rod believed retracted is pulled again; one believed out is left to its leaf.
        self.outbox.append(protocol.BELT_RUN if self.belt_running else protocol.BELT_STOP)
        rods = self.topology.all_rods
        retracted = [rod for rod in rods if not self.rods_out[rod]]
        pulls = (
            [protocol.ALL_PULL] if len(retracted) == len(rods) else map(protocol.pull, retracted)
        )
        self.outbox.extend(pulls)

    def command(self, command: protocol.Command) -> None:
        """Request a command; the runner publishes the outbox after the tick."""
        self.outbox.append(command)
        if command.action in (protocol.Action.PUSH, protocol.Action.PULL):
            out = command.action is protocol.Action.PUSH
            for rod in self.topology.all_rods if command.rod == 0 else (command.rod or 0,):
                self.rods_out[rod] = out
                if out:
                    self.rod_pushed_at[rod] = self.now
        else:
            self.belt_running = command.action is protocol.Action.BELT_RUN
            self.line.odometer.set(self.now, self.belt_running)

    def take_outbox(self) -> list[protocol.Command]:
        out, self.outbox = self.outbox, []
        return out
