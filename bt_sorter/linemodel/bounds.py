"""The target range (issue 9) and the bounds it sets before anything is measured.

Belts 0.05-0.5 m/s, items 3-15 cm, any layout in feed order. Before a quantity is
measured, the watchdogs judge it against bounds no line in this range can trip
(:data:`UNMEASURED_REACH_S`, :data:`UNMEASURED_PASSAGE_S`).
"""

from __future__ import annotations

SLOWEST_BELT = 0.05  # m/s
FASTEST_BELT = 0.5  # m/s
LONGEST_ITEM = 0.15  # m
SHORTEST_ITEM = 0.03  # m
LONGEST_REACH = 3.0  # m from the feeder to the last gate (an assumption, stated in docs/)
UNMEASURED_REACH_S = LONGEST_REACH / SLOWEST_BELT  # 60 s: the slowest feed → any event
UNMEASURED_PASSAGE_S = 2 * LONGEST_ITEM / SLOWEST_BELT  # 6 s: twice the slowest passage
SHORTEST_PASSAGE_S = SHORTEST_ITEM / FASTEST_BELT  # 0.06 s
