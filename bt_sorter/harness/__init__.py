"""The deterministic simulation: the real controller against the real line physics in
virtual time (:mod:`bt_sorter.harness.world`), over seeded scenarios
(:mod:`bt_sorter.harness.scenario`), judged by oracles (:mod:`bt_sorter.harness.run`).
``python -m bt_sorter.harness --scenarios N --seed S [--tree T]``."""
