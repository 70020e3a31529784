"""One run of the real controller against the simulated line, in virtual time.

Nothing here stands in for the controller: the tree file is loaded by
:func:`bt_sorter.trees.build.load_tree` into the real leaves, blackboard, matcher, line model
and watchdogs, and the real :class:`bt_sorter.runner.Runner` ticks it. What is virtual:

- the clock (:class:`VirtualClock`): the runner reads its wall time from it and sleeps
  through it; a sleep runs everything that happens until the next deadline (the line,
  the network, the classifier) and wakes a little late, as an OS does (``lateness``);
- the network (:class:`Link`): each direction of MQTT is a FIFO (QoS 0 over one TCP
  connection keeps order per publisher), a message arrives after a seeded latency with
  jitter and a heavy tail; a broker outage loses what is in flight and tells the adapter;
- the adapter (:class:`VirtualAdapter`): the real adapter's queue and payload parsing
  (:func:`bt_sorter.adapter.queue_feedback`), fed by the link;
- the classifier (:class:`OracleClassifier`): answers after a modelled delay from the
  picture's true label, with injected wrong answers, weak answers and failures, through
  the real :class:`~bt_sorter.vision.classifier.ClassifierWorker`; or the real model on
  rendered pictures (:class:`ModelClassifier`).

The line is the simulator's own core (:class:`bt_sorter.sim.core.SimCore`: physics, wire
faults, pictures, ledger). Everything is drawn from generators seeded by the scenario,
and events at one instant run in the order they were scheduled: the same scenario gives
the same run, byte for byte.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bt_sorter import protocol
from bt_sorter.adapter import EventQueue, queue_feedback
from bt_sorter.blackboard import ConnectionChanged, Event
from bt_sorter.clock import LineClock
from bt_sorter.config import Limits
from bt_sorter.sim.core import SimCore
from bt_sorter.vision.classifier import BadPictureError, Classifier, ClassifyError, Prediction
from bt_sorter.vision.oddity import UNLIKE


def digest(data: bytes) -> bytes:
    """A picture's identity (its bytes' hash)."""
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True)
class Delay:
    """A seeded delay in wall seconds: ``base`` plus an exponential jitter of mean
    ``jitter``, and with probability ``tail_rate`` a spike uniform in ``tail``."""

    base: float = 0.0005
    jitter: float = 0.0005
    tail_rate: float = 0.0
    tail: tuple[float, float] = (0.005, 0.02)

    def draw(self, rng: np.random.Generator) -> float:
        value = self.base + float(rng.exponential(self.jitter)) if self.jitter > 0 else self.base
        if self.tail_rate > 0 and float(rng.random()) < self.tail_rate:
            value += float(rng.uniform(*self.tail))
        return value


class Scheduler:
    """Virtual wall time and the things due in it, run in time order (ties: in the order
    they were scheduled)."""

    def __init__(self) -> None:
        self.t = 0.0  # virtual wall seconds
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(t, self.t), next(self._seq), action))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Callable[[], None]:
        t, _, action = heapq.heappop(self._heap)
        self.t = max(self.t, t)
        return action


class VirtualClock(LineClock):
    """The runner's clock in a virtual run: reading it costs no time, sleeping runs the
    world until the deadline (plus the scheduler's lateness)."""

    def __init__(self, speed: float, world: World) -> None:
        super().__init__(speed)
        self._origin = 0.0
        self.world = world

    def monotonic(self) -> float:
        return self.world.scheduler.t

    def sleep(self, seconds: float) -> None:
        self.world.run_until(self.world.scheduler.t + max(0.0, seconds) + self.world.late())


@dataclass
class Outage:
    """The broker is gone from ``start`` to ``end`` (line seconds)."""

    start: float
    end: float


class VirtualAdapter:
    """The runner's :class:`~bt_sorter.runner.Adapter` on the virtual network."""

    def __init__(self, world: World, limits: Limits) -> None:
        self.world = world
        self.limits = limits
        self.events = EventQueue(limits.queue_events, limits.queue_bytes)
        self.events.put(ConnectionChanged(0.0, True, "connected"))
        self.statuses: list[dict[str, Any]] = []
        self.unsent = 0

    def drain(self) -> list[Event]:
        return self.events.drain(self.world.line_time())

    def publish(self, command: protocol.Command) -> bool:
        if not self.world.online:
            self.unsent += 1
            return False
        self.world.send_command(protocol.encode_command(command))
        return True

    def publish_status(self, event: str, **facts: Any) -> bool:
        self.statuses.append({"event": event, **facts})
        return self.world.online

    def publish_line_status(self, payload: bytes) -> bool:
        return self.world.online

    def flush(self, timeout: float = 1.0) -> bool:
        return True


@dataclass
class VisionModel:
    """How the classifier behaves: its delay (wall s), and the share of answers that are
    failures, weak (below the threshold: unknown, bin 1), confidently wrong, or doubted
    (confident, but the picture is unlike any trained one: bin 1 with that reason)."""

    delay: Delay = field(default_factory=lambda: Delay(0.01, 0.005, 0.02, (0.05, 0.3)))
    fail_rate: float = 0.0
    weak_rate: float = 0.0
    wrong_rate: float = 0.0
    odd_rate: float = 0.0


class OracleClassifier:
    """A classifier back end that knows each rendered picture's true label.

    Answers through futures the world completes after the modelled delay (an
    :class:`~bt_sorter.vision.classifier.AsyncClassifier`). A picture it never rendered
    (a corrupt one) is a :class:`BadPictureError`. ``answers`` keeps what it said of each
    picture, so that a wrong answer acted on is told apart from a tracking error."""

    def __init__(
        self,
        name: str,
        world: World,
        classes: tuple[str, ...],
        model: VisionModel,
        rng: np.random.Generator,
    ) -> None:
        self.name = name
        self.classes = classes
        self.world = world
        self.model = model
        self.rng = rng
        self.answers: dict[bytes, Prediction] = {}
        self.answered_at: dict[bytes, float] = {}  # line s the answer reached the controller

    def classify(self, data: bytes) -> Prediction:
        raise ClassifyError("the oracle answers through submit() only")

    def submit(self, data: bytes) -> concurrent.futures.Future[Prediction]:
        future: concurrent.futures.Future[Prediction] = concurrent.futures.Future()
        outcome = self._answer(data)
        due = self.world.scheduler.t + self.model.delay.draw(self.rng)
        self.answered_at[digest(data)] = due * self.world.speed

        def complete() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the controller gave up on it (an abort cancels what is pending)
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        self.world.scheduler.at(due, complete)
        return future

    def _answer(self, data: bytes) -> Prediction | ClassifyError:
        key = digest(data)
        truth = self.world.truth.get(key)
        if truth is None:
            return BadPictureError("picture does not decode (oracle: not a rendered picture)")
        _, label = truth
        draw = float(self.rng.random())
        model = self.model
        if draw < model.fail_rate:
            return ClassifyError("classifier failed (oracle: injected failure)")
        draw -= model.fail_rate
        if draw < model.weak_rate:
            answer = Prediction(label, float(self.rng.uniform(0.2, 0.55)), self.name)
        elif draw - model.weak_rate < model.wrong_rate:
            others = [c for c in self.classes if c != label]
            wrong = others[int(self.rng.integers(len(others)))] if others else label
            answer = Prediction(wrong, float(self.rng.uniform(0.7, 0.99)), self.name)
        elif draw - model.weak_rate - model.wrong_rate < model.odd_rate:
            confidence = float(self.rng.uniform(0.75, 1.0))
            answer = Prediction(label, confidence, self.name, UNLIKE)
        else:
            answer = Prediction(label, float(self.rng.uniform(0.75, 1.0)), self.name)
        self.answers[key] = answer
        return answer

    def close(self) -> None:
        pass


class ModelClassifier(OracleClassifier):
    """The real back end (the ResNet) on the rendered picture, answering after the
    modelled delay; it runs at once on this thread (its cost is real CPU, not line time)."""

    def __init__(
        self,
        backend: Classifier,
        world: World,
        model: VisionModel,
        rng: np.random.Generator,
    ) -> None:
        classes = tuple(getattr(backend, "classes", ()) or ())
        super().__init__(backend.name, world, classes, model, rng)
        self.backend = backend

    def _answer(self, data: bytes) -> Prediction | ClassifyError:
        try:
            answer = self.backend.classify(data)
        except ClassifyError as exc:
            return exc
        self.answers[digest(data)] = answer
        return answer

    def close(self) -> None:
        self.backend.close()


class World:
    """The line, the network and the clock of one virtual run."""

    def __init__(
        self,
        *,
        speed: float,
        seed: int,
        limits: Limits,
        latency: Delay,
        processing: Delay,
        lateness: Delay,
        outages: tuple[Outage, ...] = (),
    ) -> None:
        self.speed = speed
        self.scheduler = Scheduler()
        self.clock = VirtualClock(speed, self)
        self.latency, self.processing, self.lateness = latency, processing, lateness
        self.outages = outages
        self._rng_net = np.random.default_rng(np.random.SeedSequence([seed, 10]))
        self._rng_late = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        self.truth: dict[bytes, tuple[int, str]] = {}  # picture digest -> (item id, label)
        self.core: SimCore | None = None
        self.adapter = VirtualAdapter(self, limits)
        self._last_feedback = 0.0  # arrival of the last feedback message (FIFO)
        self._last_command = 0.0
        self.online = True
        self.lost_in_outage = 0
        self.lost_commands: list[tuple[float, protocol.Command]] = []  # (line s, command)
        self.out_at_outage: dict[float, set[int]] = {}  # outage start -> rods out then
        self.stop_hook: Callable[[], None] | None = None
        self.time_limit = float("inf")  # line s
        for outage in outages:
            self.scheduler.at(outage.start / speed, lambda o=outage: self._go_offline(o))
            self.scheduler.at(outage.end / speed, self._go_online)

    # -- time --------------------------------------------------------------------------

    def line_time(self) -> float:
        return self.scheduler.t * self.speed

    def late(self) -> float:
        """How late the runner wakes from a sleep (wall s): the machine's scheduler."""
        return self.lateness.draw(self._rng_late)

    def run_until(self, t: float) -> None:
        """Run everything due up to virtual wall time ``t``, the line stepped to each."""
        core = self.core
        assert core is not None
        scheduler = self.scheduler
        while (due := scheduler.next_time()) is not None and due <= t:
            core.step(due * self.speed)  # may schedule arrivals before ``due``: re-read
            scheduler.pop()()
        scheduler.t = max(scheduler.t, t)
        core.step(scheduler.t * self.speed)
        if self.line_time() > self.time_limit and self.stop_hook is not None:
            self.stop_hook()

    # -- the network -------------------------------------------------------------------

    def _in_outage(self, line_t: float) -> bool:
        return any(o.start <= line_t < o.end for o in self.outages)

    def send_feedback(self, due: float, payload: bytes) -> None:
        """The line published ``payload`` at line time ``due``: it arrives in order."""
        sent = due / self.speed
        if self._in_outage(due):
            self.lost_in_outage += 1
            return
        arrival = max(self._last_feedback, sent + self.latency.draw(self._rng_net))
        self._last_feedback = arrival
        self.scheduler.at(arrival, lambda: self._deliver_feedback(payload))

    def send_stray(self, line_t: float, payload: bytes) -> None:
        """A message from another publisher (no order with the line's)."""
        self.scheduler.at(line_t / self.speed, lambda: self._deliver_feedback(payload))

    def _deliver_feedback(self, payload: bytes) -> None:
        if not self.online:
            self.lost_in_outage += 1
            return
        queue_feedback(self.adapter.events, payload, self.line_time(), self.adapter.limits)

    def send_command(self, payload: bytes) -> None:
        """The controller published a command now: it reaches the line in order."""
        sent = self.scheduler.t + self.processing.draw(self._rng_net)
        arrival = max(self._last_command, sent + self.latency.draw(self._rng_net))
        self._last_command = arrival
        self.scheduler.at(arrival, lambda: self._deliver_command(payload))

    def _deliver_command(self, payload: bytes) -> None:
        core = self.core
        assert core is not None
        if not self.online:
            self.lost_in_outage += 1
            lost = protocol.parse_command(payload)
            if isinstance(lost, protocol.Command):
                self.lost_commands.append((self.line_time(), lost))
            return
        command = core.parse(payload)
        if command is not None:
            core.apply(command, self.line_time())

    def _go_offline(self, outage: Outage) -> None:
        if self.core is not None:
            rods = self.core.line.rods.items()
            self.out_at_outage[outage.start] = {r for r, rod in rods if rod.sweeping and r > 1}
        self.online = False
        self.adapter.events.put(ConnectionChanged(self.line_time(), False, "broker gone"))

    def _go_online(self) -> None:
        self.online = True
        self.adapter.events.put(ConnectionChanged(self.line_time(), True, "connected"))
