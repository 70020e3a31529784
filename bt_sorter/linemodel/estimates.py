"""What the line model has learned: one sliding-window estimate per quantity, and the pace.

Each quantity (:mod:`bt_sorter.linemodel.quantities`) is a sliding window of the last
:data:`WINDOW` samples from unambiguous items (matched by order, with no stray edge near
them): median, spread (the median absolute deviation scaled to a standard deviation) and
the sample count. A belt that slows by 20 % moves the median within ``WINDOW // 2 + 1``
items; until then :attr:`Estimates.pace` (the latest item's times over the medians)
stretches the predictions. :mod:`bt_sorter.linemodel.learning` writes them; everything
else reads them.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bt_sorter.linemodel.quantities import chain, learned, passage
from bt_sorter.topology import Topology

WINDOW = 7  # samples per estimate: the last seven unambiguous items
MAD_TO_SIGMA = 1.4826  # median absolute deviation → standard deviation (normal data)
PACE_LIMITS = (0.5, 2.0)  # an item's pace outside these is an outlier, not a drift


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


class Estimates:
    """Every quantity learned on a line (``estimates[name]``), and the line's pace.

    :attr:`chain` is the order an item's events come in, :attr:`names` every quantity
    learned; :attr:`pace` is the latest learned item's times over the medians (1.0 until
    one is learned)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.chain, self.names = chain(topology), learned(topology)
        self._by_name = {name: Estimate() for name in self.names}
        self.pace = 1.0

    def __getitem__(self, name: str) -> Estimate:
        return self._by_name[name]

    def expected(self, name: str) -> float | None:
        """The median of a quantity; a passage not measured at its gate, from the others."""
        median = self._by_name[name].median
        if median is None and name.endswith("passage"):
            pooled = [
                x for g in self.topology.gate_numbers for x in self._by_name[passage(g)].samples
            ]
            median = statistics.median(pooled) if pooled else None
        return median

    def spread(self, name: str) -> float:
        return self._by_name[name].spread

    def passage_time(self, gate: int) -> float | None:
        """The time an item takes to pass gate ``gate`` (its own length), if known."""
        return self.expected(passage(gate))
