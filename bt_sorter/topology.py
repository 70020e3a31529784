"""The line's shape: how many gates, which classifying rods, and which gate fires each rod.

The FS scene (docs/line-protocol.md) is the default: three gates and classifying rods
2..4, rod k fired by the clear (falling) edge of gate k-1, rod 1 the feeder. A line of
another shape declares its own in config::

    topology:
      gates: 4                  # photoelectric gates, numbered 1..N along the belt
      rod_gates: [1, 2, 3, 4]   # rods 2, 3, 4, 5: the gate whose clear edge fires each

Rules (checked by :meth:`Topology.problems`, reported with the config's file and line):

* rod 1 is always the feeder and is not listed; classifying rods are 2..R in the order
  ``rod_gates`` lists their gates;
* each classifying rod is fired by one gate, a gate fires at most one rod, and rods
  follow the belt: a higher rod number sits downstream of a lower one (its gate is
  later). A gate may fire no rod (a gate that only tracks), so a rod may sit downstream
  of a gate other than its neighbour;
* the rod's window is just past its gate: an item is pushed as its tail clears that
  gate, as the course's controller does;
* an item no rod takes rides to the belt end, bin 1; rod k sweeps into bin k.

The wire names of gates and rods beyond the FS scene's follow the FS pattern
(``fourth_switch``, ``fifth_push``, ...; :mod:`bt_sorter.protocol`), up to
:data:`bt_sorter.protocol.MAX_GATES` gates and :data:`bt_sorter.protocol.MAX_RODS` rods.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bt_sorter import protocol

FEEDER = 1


@dataclass(frozen=True)
class Topology:
    """Gates and classifying rods of one line (the FS scene's by default)."""

    gates: int = 3
    rod_gates: tuple[int, ...] = (1, 2, 3)  # rod 2, 3, ...: the gate that fires it

    @property
    def rods(self) -> dict[int, int]:
        """Classifying rod -> the gate whose clear edge fires it."""
        return {rod: gate for rod, gate in enumerate(self.rod_gates, start=2)}

    def problems(self) -> list[str]:
        """Why this topology cannot be a line (empty when it can)."""
        out: list[str] = []
        if not 1 <= self.gates <= protocol.MAX_GATES:
            out.append(f"gates must be 1..{protocol.MAX_GATES}, got {self.gates}")
        if not self.rod_gates:
            out.append("a line needs at least one classifying rod (rod_gates: [<gate of rod 2>])")
            return out
        if 1 + len(self.rod_gates) > protocol.MAX_RODS:
            out.append(
                f"at most {protocol.MAX_RODS - 1} classifying rods, got {len(self.rod_gates)}"
            )
        for rod, gate in self.rods.items():
            if not 1 <= gate <= self.gates:
                out.append(
                    f"rod {rod} is fired by gate {gate}, but the line has gates 1..{self.gates}"
                )
        gates = list(self.rod_gates)
        if len(set(gates)) != len(gates):
            out.append(f"a gate fires at most one rod, got rod_gates {gates}")
        elif gates != sorted(gates):
            out.append(
                f"rods must follow the belt (a later rod, a later gate), got rod_gates {gates}"
            )
        return out

    @property
    def gate_numbers(self) -> tuple[int, ...]:
        """The gates in belt order, 1..N."""
        return tuple(range(1, self.gates + 1))

    @property
    def classifying_rods(self) -> tuple[int, ...]:
        """The classifying rods in belt order."""
        return tuple(sorted(self.rods))

    @property
    def all_rods(self) -> tuple[int, ...]:
        """Every rod, the feeder first."""
        return (FEEDER, *self.classifying_rods)

    @property
    def last_gate(self) -> int:
        """The gate an item clears last before the belt end."""
        return self.gates

    def gate_of(self, rod: int) -> int:
        """The gate whose clear edge fires classifying ``rod`` (``KeyError`` if none)."""
        return self.rods[rod]

    def reach(self, rods: Iterable[int]) -> int:
        """The last gate an item must pass to be swept by one of ``rods`` (the rods some
        label routes to; a rod the line lacks is ignored), at least gate 1."""
        return max((self.rods[rod] for rod in rods if rod in self.rods), default=1)

    def rod_at(self, gate: int) -> int | None:
        """The rod ``gate``'s clear edge fires, or None for a gate that only tracks."""
        return next((rod for rod, g in self.rods.items() if g == gate), None)

    def describe(self) -> str:
        """One line for logs and --check: ``3 gates; rod 2@gate 1, rod 3@gate 2, ...``."""
        rods = ", ".join(f"rod {r}@gate {self.rods[r]}" for r in self.classifying_rods)
        return f"{self.gates} gates; {rods}; belt end = bin 1"


FS = Topology()
