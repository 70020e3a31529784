"""The deterministic simulation's speed against line time and against a real-time run.

Run: ``python bench/harness.py`` (options: ``--items``, ``--scenarios``, ``--seed``).

1. One healthy run of ``trees/sort_pipelined.yaml`` on the FS-shaped line with ``--items``
   items (60) and the label oracle, on one core: CPU seconds, line seconds, and their
   ratio (target: at least 50 line seconds per CPU second; 60 items in at most 4 s).
2. The same run's wall time had it run in real time at the scenario's speed, and at
   ``run.py``'s usual test speed (10): how much sooner the harness answers.
3. A batch of ``--scenarios`` drawn scenarios (both trees, every fault kind) in one
   process: scenarios and items per CPU second.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from bt_sorter import log as logs
from bt_sorter.harness.__main__ import report, run_batch
from bt_sorter.harness.run import run_scenario
from bt_sorter.harness.scenario import Scenario, draw
from bt_sorter.topology import FS

PIPELINED = "trees/sort_pipelined.yaml"


def healthy_fs(seed: int, items: int) -> Scenario:
    while True:
        scenario = draw(seed, PIPELINED)
        if scenario.healthy and scenario.topology == FS and len(scenario.routes) == 3:
            return dataclasses.replace(scenario, items=items)
        seed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--scenarios", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logs.configure("critical")

    scenario = healthy_fs(args.seed, args.items)
    cpu0, wall0 = time.process_time(), time.monotonic()
    result = run_scenario(scenario)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(f"1. {scenario.describe()}")
    print(f"   {result.correct}/{result.items} correct, failures {result.failures}")
    print(f"   line time {result.line_seconds:.1f} s, CPU {cpu:.2f} s, wall {wall:.2f} s: "
          f"{result.line_seconds / cpu:.0f} line s per CPU s (target >= 50)")  # fmt: skip
    real = result.line_seconds / scenario.speed
    print(f"2. in real time at the scenario's speed x{scenario.speed:g}: {real:.0f} s wall "
          f"({real / cpu:.0f}x the harness's CPU s); at --speed 10: "
          f"{result.line_seconds / 10:.0f} s ({result.line_seconds / 10 / cpu:.0f}x)")  # fmt: skip
    seeds = range(args.seed, args.seed + args.scenarios)
    cpu0, wall0 = time.process_time(), time.monotonic()
    results = [r for r, _ in run_batch(seeds, None, "oracle", jobs=1)]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    items = sum(r.items for r in results)
    print(f"3. {len(results)} drawn scenarios, {items} items, one process: "
          f"{len(results) / cpu:.2f} scenarios and {items / cpu:.1f} items per CPU s")  # fmt: skip
    print("   " + report(results, wall, cpu, 1).replace("\n", "\n   "))


if __name__ == "__main__":
    main()
