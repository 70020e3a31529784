"""The line model the blackboard holds (``bb.line``): one set of estimates, and its parts.

:class:`LineModel` builds the parts on one shared :class:`Estimates` and hands them out;
a caller uses the part it needs (``bb.line.windows``, ``bb.line.spacing``, ...). See
:mod:`bt_sorter.linemodel` for which file holds which job.
"""

from __future__ import annotations

from collections.abc import Iterable

from bt_sorter.config import LineConfig
from bt_sorter.linemodel.estimates import Estimates
from bt_sorter.linemodel.latency import Latency
from bt_sorter.linemodel.learning import Learning
from bt_sorter.linemodel.odometer import Odometer
from bt_sorter.linemodel.priors import Prior
from bt_sorter.linemodel.spacing import Spacing
from bt_sorter.linemodel.windows import Windows
from bt_sorter.topology import FS, Topology


class LineModel:
    """What the controller knows of the line's timings, with their confidence.

    ``prior``: the configured ``line:``, if any; ``tick`` and ``speed``: the tick period
    (line s) and the clock's speed (the latency margins); ``feeder_cycle`` and
    ``rod_out``: the spacing's defaults until the leaves note theirs; ``topology``: the
    line's shape; ``routed``: the rods some label routes to (every rod by default).

    - :attr:`odometer`: belt-running seconds, the clock every time here is on;
    - :attr:`estimates`: what was learned (medians, spreads, the pace);
    - :attr:`prior`: the configured times, confirmed or contradicted;
    - :attr:`latency`: the decision delay and the margins;
    - :attr:`windows`: predictions, windows, deadlines (the matcher, the watchdogs);
    - :attr:`learning`: takes resolved items' times; says when the line is measured;
    - :attr:`spacing`: push delay, feed spacing and the limit.

    The run summary's section and ``--calibrate``'s ``line:`` are
    :mod:`bt_sorter.linemodel.report`'s.
    """

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
        self.odometer = Odometer()
        self.estimates = Estimates(topology)
        self.prior = Prior(prior)
        self.latency = Latency(tick, speed)
        self.windows = Windows(self.estimates, self.latency)
        self.learning = Learning(self.estimates, self.prior, self.windows, self.latency)
        self.spacing = Spacing(
            self.estimates,
            self.windows,
            self.latency,
            feeder_cycle=feeder_cycle,
            rod_out=rod_out,
            routed=routed,
        )
