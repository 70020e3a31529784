"""The simulated line with its wire faults, free of any transport: commands in, feedback out.

:class:`SimCore` is what the simulator process (:mod:`bt_sorter.sim.node`, over MQTT in
wall time) and the deterministic simulation (:mod:`bt_sorter.harness`, in virtual time)
share: the line physics (:class:`~bt_sorter.sim.line.Line`), the fault injector, the
pictures rendered ahead, the outgoing feedback with its due times, the ledger and the
end-of-run summary. A transport applies commands at the line time they arrived
(:meth:`SimCore.apply`), steps the line to its own now (:meth:`SimCore.step`), and
receives each feedback payload through ``send(due, payload)`` at its line time.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from bt_sorter import protocol
from bt_sorter.config import Config, FaultConfig, config_error
from bt_sorter.log import get_logger
from bt_sorter.sim import render
from bt_sorter.sim.faults import FLICKER_OFFSETS, FaultInjector
from bt_sorter.sim.geometry import LineGeometry
from bt_sorter.sim.line import (
    GateChanged,
    Item,
    ItemResolved,
    Line,
    LineEvent,
    PictureDue,
    draw_labels,
)
from bt_sorter.sim.summary import summarise
from bt_sorter.topology import FS, Topology

log = get_logger("bt_sorter.sim")

Send = Callable[[float, bytes], None]  # (line time due, payload on the feedback topic)
Render = Callable[[np.random.Generator, int, str], bytes]  # (rng, item id, label) -> bytes


def check_mix(config: Config) -> None:
    """Every label the stack may hold (a positive weight in ``sim.mix``) must be one the
    renderer draws; otherwise a :class:`SpecError` naming the config's file and line."""
    mix = config.sim.mix
    unknown = sorted(label for label, weight in mix.items() if weight > 0)
    unknown = [label for label in unknown if label not in render.ALL_LABELS]
    if unknown:
        raise config_error(
            config,
            f"sim.mix: the simulator cannot draw {', '.join(unknown)} (it draws "
            f"{', '.join(render.ALL_LABELS)}); give it weight 0 or leave it out",
            "sim",
            "mix",
            unknown[0],
        )


@dataclass(order=True)
class _Outgoing:
    due: float
    seq: int
    kind: str = field(compare=False)  # "gate" | "picture"
    payload: bytes = field(compare=False)


class SimCore:
    """One simulated line: its items, physics, wire faults, pictures and ledger."""

    def __init__(
        self,
        config: Config,
        *,
        items: int,
        seed: int,
        faults: FaultConfig,
        geometry: LineGeometry,
        topology: Topology = FS,
        send: Send,
        render_picture: Render | None = None,
        linger: float = 10.0,
        silence_timeout: float = 60.0,
    ) -> None:
        check_mix(config)
        self.config = config
        self.seed = seed
        self.faults = faults
        self.topology = topology
        self.linger, self.silence_timeout = linger, silence_timeout
        labels = draw_labels(items, seed, config.sim.mix)
        self.classes = tuple(config.sim.mix)  # the renderer's label set: overripe if mixed in
        self.line = Line(
            geometry,
            labels,
            topology=topology,
            stuck_item=faults.stuck_item,
            stall_at=faults.stall_belt_at,
            drift_at=faults.belt_drift_at,
            drift_factor=faults.belt_drift_factor,
        )
        self.injector = FaultInjector(faults, seed)
        self.picture_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self._send = send
        self._render = render_picture or self._render_default
        self.stats: Counter[str] = Counter()
        self.outbox: list[_Outgoing] = []
        self._seq = itertools.count()
        self._last_command = 0.0
        self._picture_faults: dict[int, str] = {}
        self._jpegs: dict[int, bytes] = {}  # item id -> its picture, rendered ahead
        self.ledger: IO[str] | None = None

    # ------------------------------------------------------------------ commands in
    def parse(self, payload: bytes) -> protocol.Command | None:
        """The command in ``payload``, or None (counted, logged) if this line cannot take it."""
        command = protocol.parse_command(payload)
        if isinstance(command, protocol.BadInput):
            self.stats["bad_commands"] += 1
            log.warning("command_rejected", reason=command.reason, excerpt=command.excerpt)
            return None
        if command.rod and command.rod not in self.line.rods:
            self.stats["bad_commands"] += 1
            rods = self.topology.all_rods
            log.warning("command_rejected", reason=f"this line has no rod {command.rod}", rods=rods)
            return None
        return command

    def apply(self, command: protocol.Command, at: float) -> None:
        """Carry out ``command`` at line time ``at`` (or now, if the line is already past it)."""
        at = max(at, self.line.time)
        self._last_command = at
        self.stats["commands"] += 1
        self._handle(self.line.apply(command, at))

    # ------------------------------------------------------------------ stepping
    def step(self, now: float) -> None:
        """Move the line to ``now``; send the feedback that fell due on the way."""
        self._handle(self.line.advance(max(now, self.line.time)))
        self._render_ahead()
        self._send_due(self.line.time)

    def end_reason(self, now: float) -> str | None:
        """Why the run ends now, or None: all items through, or the controller went silent."""
        line = self.line
        if line.done and not self.outbox:
            since = line.last_end_time if line.last_end_time is not None else 0.0
            if not line.belt_running:
                return "line_empty_and_belt_stopped"
            if now - since >= self.linger:
                return "line_empty_and_lingered"
        if now - self._last_command >= self.silence_timeout:
            return "controller_silent"
        return None

    # ------------------------------------------------------------------ events
    def _handle(self, events: list[LineEvent]) -> None:
        for event in events:
            if isinstance(event, GateChanged):
                self._queue(event.time, "gate", protocol.encode_gate(event.gate, event.blocked))
                if event.blocked and self.injector.flicker():
                    off, on = FLICKER_OFFSETS
                    self._queue(event.time + off, "gate", protocol.encode_gate(event.gate, False))
                    self._queue(event.time + on, "gate", protocol.encode_gate(event.gate, True))
            elif isinstance(event, PictureDue):
                self._picture(event)
            elif isinstance(event, ItemResolved):
                item = self.line.items[event.item - 1]
                log.info(
                    "item_resolved", item=item.id, label=item.label, bin=item.bin, why=item.why
                )
                self._write_ledger(item)

    def _render_default(self, rng: np.random.Generator, item: int, label: str) -> bytes:
        return render.render_picture(rng, label, self.config.sim.picture_size, labels=self.classes)

    def _render_ahead(self) -> None:
        """Render each item's picture once it is on the belt, so that it goes out when due
        (rendering takes milliseconds: at speed 10 that is a tenth of a line second)."""
        for item in self.line.belt:
            if item.id not in self._jpegs and item.camera_time is None:
                self._jpegs[item.id] = self._render(self.picture_rng, item.id, item.label)

    def _picture(self, event: PictureDue) -> None:
        jpeg = self._jpegs.pop(event.item, None)
        if jpeg is None:  # photographed in the step it was fed
            jpeg = self._render(self.picture_rng, event.item, event.label)
        sent = self.injector.picture(jpeg)
        if sent is None:
            self._picture_faults[event.item] = "missing"
            self.line.items[event.item - 1].picture_time = None
            return
        if sent is not jpeg:
            self._picture_faults[event.item] = "corrupt"
        self._queue(event.time, "picture", protocol.encode_picture(sent))

    def _queue(self, due: float, kind: str, payload: bytes) -> None:
        heapq.heappush(self.outbox, _Outgoing(due, next(self._seq), kind, payload))

    def _send_due(self, now: float) -> None:
        while self.outbox and self.outbox[0].due <= now:
            message = heapq.heappop(self.outbox)
            self.stats[f"{message.kind}s_generated"] += 1
            for payload in self.injector.deliver(message.payload):
                self._send(message.due, payload)
                self.stats["messages_sent"] += 1

    # ------------------------------------------------------------------ records
    def picture_fault(self, item: int) -> str | None:
        """ "missing" or "corrupt" when the fault injector broke ``item``'s picture."""
        return self._picture_faults.get(item)

    def _write_ledger(self, item: Item) -> None:
        if self.ledger is None:
            return
        record = item.record()
        record["picture_fault"] = self._picture_faults.get(item.id)
        self.ledger.write(json.dumps(record) + "\n")
        self.ledger.flush()

    def finish(self, reason: str, speed: float) -> dict[str, Any]:
        """End the run where the line is: the ledger's last lines and the summary."""
        at = self.line.time
        for item in self.line.finish(at):
            self._write_ledger(item)
        summary = summarise(
            self.line,
            self.config.sorting.routes,
            stats=self.stats,
            faults=self._fault_counts(),
            ended_because=reason,
            speed=speed,
            seed=self.seed,
        )
        log.info("simulator_ended", reason=reason, line_time=round(at, 3))
        return summary

    def _fault_counts(self) -> dict[str, int]:
        counts = {
            name: 0
            for name in (
                "dropped",
                "duplicated",
                "malformed",
                "corrupt_pictures",
                "missing_pictures",
                "flickers",
            )
        }
        counts.update(self.injector.counts)
        counts["stuck_items"] = sum(1 for item in self.line.items if item.stuck)
        stall = self.faults.stall_belt_at
        counts["belt_stalls"] = int(stall is not None and self.line.time >= stall)
        drift = self.faults.belt_drift_at
        counts["belt_drifts"] = int(drift is not None and self.line.time >= drift)
        return counts
