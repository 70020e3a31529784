"""The names of what the line model learns, and the order an item's events come in.

For every gate K of the line's topology (:class:`bt_sorter.topology.Topology`):

- ``picture``: feed → the item's picture arriving;
- ``gateK.blocked`` / ``gateK.clear``: feed → gate K's blocked edge (the item's head
  reaches it) and clear edge (its tail leaves it);
- ``gateK.passage``: blocked → clear at gate K (the item's length over the belt speed).
"""

from __future__ import annotations

from bt_sorter.topology import Topology

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


def chain(topology: Topology) -> tuple[str, ...]:
    """An item's events in the order they come: picture, then each gate blocked, clear."""
    return (PICTURE, *(q for g in topology.gate_numbers for q in (blocked(g), clear(g))))


def learned(topology: Topology) -> tuple[str, ...]:
    """Every quantity learned on a line: its chain, then each gate's passage."""
    return (*chain(topology), *(passage(g) for g in topology.gate_numbers))
