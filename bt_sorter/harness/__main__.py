"""``python -m bt_sorter.harness``: seeded scenarios through the real controller in virtual time.

    python -m bt_sorter.harness --scenarios 300 --seed 1            # both trees, drawn
    python -m bt_sorter.harness --scenarios 1 --seed 42 --tree trees/sort.yaml --record r.jsonl

Scenario ``k`` of a batch is drawn from seed ``S + k`` alone, so a failure's line names
the one command that reproduces it. Prints each failure with its reproducer, a table
per tree and per fault kind, and scenarios, items and line seconds per CPU second.
Exit 0 when every scenario passed every oracle, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bt_sorter import log as logs
from bt_sorter.argtypes import non_negative_int, positive_int
from bt_sorter.harness.run import Result, run_scenario
from bt_sorter.harness.scenario import TREES, draw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.harness",
        description="Run seeded scenarios of the real controller against the simulated line "
        "in virtual time, and judge every run.",
    )
    add = parser.add_argument
    add("--scenarios", type=positive_int, default=20, help="how many scenarios (default 20)")
    add("--seed", type=non_negative_int, default=1, help="seed of the first scenario (default 1)")
    add("--tree", choices=TREES, help="this tree in every scenario (default: drawn)")
    add("--classifier", choices=("oracle", "model"), default="oracle",
        help="oracle: the true label with injected errors; model: the shipped ResNet")  # fmt: skip
    add("--jobs", type=positive_int, default=1, help="processes (default 1; scenarios are "
        "independent)")  # fmt: skip
    add("--record", type=Path, help="one scenario: write its --record file here (anew)")
    add("--ledger", type=Path, help="one scenario: keep the simulator's ledger here")
    add("--verbose", action="store_true", help="a line per scenario, not only failures")
    add("--jsonl", type=Path, help="append one JSON line per scenario here as it finishes "
        "(a long run's results survive an interruption)")  # fmt: skip
    return parser


def _run(seed: int, tree: str | None, classifier: str) -> tuple[Result, float]:
    logs.configure("critical")
    started = time.process_time()
    result = run_scenario(draw(seed, tree, classifier))
    result.summary = {}  # the table needs none of it; keep what travels between processes small
    return result, time.process_time() - started


def run_batch(
    seeds: Sequence[int], tree: str | None, classifier: str, jobs: int, nice: int = 0
) -> Iterator[tuple[Result, float]]:
    """Each seed's result (with the CPU seconds it took), in seed order. ``nice``: run
    them in processes of that lower priority (the test suite: real-time runs beside it
    keep the CPU they need; POSIX only, where os.nice exists)."""
    if jobs <= 1 and not (nice and hasattr(os, "nice")):
        for seed in seeds:
            yield _run(seed, tree, classifier)
        return
    init = (lambda: os.nice(nice)) if nice and hasattr(os, "nice") else None
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs), initializer=init) as pool:
        yield from pool.map(_run, seeds, [tree] * len(seeds), [classifier] * len(seeds))


def table(results: Sequence[Result]) -> str:
    """Per tree and per fault kind: items, correct, wrong bins, bin 1, alarms, failures."""
    rows: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        rows[f"tree {Path(r.scenario.tree).stem}"].append(r)
        for kind in r.scenario.fault_kinds or ("healthy",):
            rows[f"  {kind}"].append(r)
        if r.scenario.rule_problems:
            rows["  outside the rule"].append(r)
    head = (f"{'':24} {'runs':>5} {'items':>6} {'correct':>8} {'wrong':>6} {'vision':>7} "
            f"{'bin 1':>6} {'alarms':>6} {'false':>6} {'failed':>6} {'thru p50':>8}")  # fmt: skip
    lines = [head]
    order = sorted(rows, key=lambda k: (not k.startswith("tree"), k))
    for name in order:
        group = rows[name]
        items = sum(r.items for r in group)
        thru = sorted(r.throughput for r in group if r.throughput is not None)
        lines.append(
            f"{name:24} {len(group):>5} {items:>6} {sum(r.correct for r in group):>8} "
            f"{sum(len(r.wrong_bin) for r in group):>6} {sum(r.vision_errors for r in group):>7} "
            f"{sum(r.bins.get('1', 0) for r in group):>6} {sum(bool(r.alarms) for r in group):>6} "
            f"{sum(r.false_alarm is not None for r in group):>6} "
            f"{sum(bool(r.failures) for r in group):>6} "
            f"{f'{thru[len(thru) // 2]:.0%}' if thru else '-':>8}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure("critical")
    if (args.record or args.ledger) and args.scenarios != 1:
        print("error: --record and --ledger keep one scenario's files: use --scenarios 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.record or args.ledger:
        if args.record is not None:
            args.record.unlink(missing_ok=True)  # the record appends: this run's alone
        scenario = draw(args.seed, args.tree, args.classifier)
        result = run_scenario(scenario, record=args.record, ledger=args.ledger)
        print(_line(result, 0.0))
        for failure in result.failures:
            print(f"  FAIL {failure}")
        return 1 if result.failures else 0
    seeds = range(args.seed, args.seed + args.scenarios)
    wall0, cpu0 = time.monotonic(), time.process_time()
    results: list[Result] = []
    cpu = 0.0
    out = args.jsonl.open("a", encoding="utf-8") if args.jsonl else None
    for result, spent in run_batch(seeds, args.tree, args.classifier, args.jobs):
        results.append(result)
        cpu += spent
        if out is not None:
            out.write(json.dumps(_row(result, spent)) + "\n")
            out.flush()
        if result.failures or args.verbose:
            print(_line(result, spent))
            for failure in result.failures:
                print(f"  FAIL {failure}")
            if result.failures:
                print(f"  reproduce: {result.reproducer()}")
    if out is not None:
        out.close()
    wall = time.monotonic() - wall0
    cpu_here = time.process_time() - cpu0
    cpu = cpu if args.jobs > 1 else cpu_here
    print(table(results))
    print(report(results, wall, cpu, args.jobs))
    return 1 if any(r.failures for r in results) else 0


def report(results: Sequence[Result], wall: float, cpu: float, jobs: int) -> str:
    items = sum(r.items for r in results)
    line_s = sum(r.line_seconds for r in results)
    failed = [r for r in results if r.failures]
    stats: dict[str, Any] = {
        "scenarios": len(results),
        "items": items,
        "failed": len(failed),
        "wrong_bins": sum(len(r.wrong_bin) for r in results),
        "outage_swept": sum(r.outage_swept for r in results),
        "unexplained": sum(len(r.unexplained) for r in results),
        "false_alarms": sum(r.false_alarm is not None for r in results),
        "healthy": sum(r.scenario.healthy for r in results),
    }
    rates = (
        f"{len(results) / wall:.2f} scenarios/s, {items / wall:.1f} items/s wall ({jobs} job"
        f"{'s' if jobs != 1 else ''}); {line_s / cpu:.0f} line s per CPU s ({cpu:.1f} CPU s, "
        f"{line_s:.0f} line s)"
        if wall > 0 and cpu > 0
        else ""
    )
    return " ".join(f"{k} {v}" for k, v in stats.items()) + "\n" + rates


def _row(result: Result, cpu: float) -> dict[str, Any]:
    """One scenario as a JSON line (``--jsonl``)."""
    sc = result.scenario
    return {
        "seed": sc.seed, "tree": sc.tree, "items": result.items, "gates": sc.topology.gates,
        "faults": list(sc.fault_kinds), "outside_rule": bool(sc.rule_problems),
        "speed": sc.speed, "exit": result.exit_code, "stop": result.stop_reason,
        "bins": result.bins, "correct": result.correct, "wrong_bin": result.wrong_bin,
        "vision_errors": result.vision_errors, "outage_swept": result.outage_swept,
        "alarms": result.alarms,
        "throughput": result.throughput, "failures": result.failures,
        "reproduce": result.reproducer(), "cpu_s": round(cpu, 3),
        "line_s": round(result.line_seconds, 1),
    }  # fmt: skip


def _line(result: Result, cpu: float) -> str:
    r = result
    return (
        f"{r.scenario.describe()}: exit {r.exit_code} ({r.stop_reason}), "
        f"{r.correct}/{r.items} correct, bins {_bins(r.bins)}, {cpu:.2f} CPU s, "
        f"{r.line_seconds:.0f} line s"
    )


def _bins(bins: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in bins.items() if v)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
