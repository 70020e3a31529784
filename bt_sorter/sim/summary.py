"""The end-of-run summary of a simulated line: where every item went, and how fast."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from bt_sorter.sim.line import JAM, NOT_FED, ON_BELT, STUCK, Line

OTHER_ENDS: tuple[str, ...] = (JAM, STUCK, ON_BELT, NOT_FED)


def bin_names(line: Line) -> tuple[str, ...]:
    """The line's bins, 1 (the belt end) and one per classifying rod, then the other ends."""
    return ("1", *(str(rod) for rod in line.topology.classifying_rods), *OTHER_ENDS)


def route_bin(label: str, routes: Mapping[str, int]) -> int:
    """The bin an item with ``label`` belongs in: its rod's bin, else the belt end (1)."""
    return routes.get(label, 1)


def summarise(
    line: Line,
    routes: Mapping[str, int],
    *,
    stats: Mapping[str, int],
    faults: Mapping[str, int],
    ended_because: str,
    speed: float,
    seed: int,
) -> dict[str, Any]:
    """The summary JSON of a finished run (after :meth:`Line.finish`): ``bins`` has one
    count per bin of this line (1..R) and per other end (jam, stuck, on the belt, not fed)."""
    bins: Counter[str] = Counter({name: 0 for name in bin_names(line)})
    table: dict[str, Counter[str]] = {}
    correct = missorted = 0
    for item in line.items:
        where = str(item.bin)
        bins[where] += 1
        table.setdefault(item.label, Counter())[where] += 1
        if isinstance(item.bin, int):
            if item.bin == route_bin(item.label, routes):
                correct += 1
            else:
                missorted += 1
    binned = sum(count for name, count in bins.items() if name not in OTHER_ENDS)
    return {
        "items": len(line.items),
        "topology": line.topology.describe(),
        "seed": seed,
        "speed": speed,
        "ended_because": ended_because,
        "bins": dict(bins),
        "label_by_bin": {label: dict(counts) for label, counts in sorted(table.items())},
        "correct": correct,
        "missorted": missorted,
        "jammed": bins[JAM],
        "lost": bins[STUCK] + bins[ON_BELT],
        "not_fed": bins[NOT_FED],
        "unresolved": bins[STUCK] + bins[ON_BELT] + bins[NOT_FED],
        "bad_commands": int(stats.get("bad_commands", 0)),
        "commands": int(stats.get("commands", 0)),
        "pictures_generated": int(stats.get("pictures_generated", 0)),
        "gate_edges_generated": int(stats.get("gates_generated", 0)),
        "messages_sent": int(stats.get("messages_sent", 0)),
        "faults": dict(faults),
        "line_time": round(line.time, 3),
        **_throughput(line, binned),
    }


def _throughput(line: Line, binned: int) -> dict[str, float | None]:
    """Items that reached a bin per minute, from the first feed to the last item leaving."""
    start, end = line.first_feed_time, line.last_end_time
    if start is None or end is None or end <= start:
        return {"first_feed_time": start, "last_exit_time": end, "throughput_per_min": None}
    return {
        "first_feed_time": round(start, 3),
        "last_exit_time": round(end, 3),
        "throughput_per_min": round(binned / ((end - start) / 60.0), 3),
    }
