"""Line throughput: the sequential tree, the pipelined tree, and the line's physical limit.

Runs ``run.py`` on the built-in line once per tree, with the same items, seed and speed,
and prints a Markdown table: items, items/min of line time (the simulator's count, first
feed to last item off the belt), the steady rate (items fed per minute over the last half
of the feeds, all of them after any learning phase), ratios to the sequential tree and to
the physical limit, correct, missorted, rejected (bin 1), lost.

Without ``--line`` the line is the built-in one and the controller gets ``--config``
(default config/default.yaml). With ``--line FILE`` (or ``--all-lines``: every file in
config/lines/ of the FS scene's shape) the built-in simulator runs that line file while
the controller gets a config with no ``line:`` section (or ``--config``): it is not told the line.

Limits, each shown with the steady rate against it: the controller's own, when its summary
has one (``measured_line.limit_items_per_minute``: feeder cycle vs. safe spacing, both
measured), and the ground truth: 60 / max(feeder cycle, minimum safe spacing ÷ belt
speed) on the line file's geometry, or the config's without ``--line``
(bt_sorter.sim.geometry.limit_items_per_minute).

    python bench/line.py --items 200 --speed 10
    python bench/line.py --all-lines --items 60 --speed 10

``--timing-sets`` (issue 15) runs the trees on the built-in line under each actuator
timing set of :data:`TIMING_SETS` (the course's feeder 1.5/1.0 s with rods held 1.0 s, the
students' 1.0/0.5, a fast 0.6/0.3 with rods held 0.4) and prints throughput against each
set's limit (the controller's measured one at the end of the run, the same rule's over the
feeds of the steady half from the record's ``item_fed`` events, and the config's geometric
one) and the missorts proper (an item in another label's bin 2-4) apart from the rejects
(bin 1).

    python bench/line.py --timing-sets --trees trees/sort_pipelined.yaml --items 60 --speed 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bt_sorter.config import DEFAULT_CONFIG, load_config
from bt_sorter.sim.geometry import geometry_of, limit_items_per_minute, load_line, min_item_spacing
from bt_sorter.topology import FS

ROOT = Path(__file__).resolve().parent.parent
TREES = ("trees/sort.yaml", "trees/sort_pipelined.yaml")
LINES = ROOT / "config" / "lines"


def run_tree(
    tree: str, args: argparse.Namespace, workdir: Path, config: Path | None, line: Path | None
) -> dict[str, Any]:
    """One run of ``tree`` on the built-in line; run.py's summary, the ledger and wall time."""
    tag = getattr(args, "line_tag", None) or (line.stem if line else "builtin")
    name = f"{tag}_{Path(tree).stem}"
    summary, ledger = workdir / f"{name}.json", workdir / f"{name}.ledger.jsonl"
    record = workdir / f"{name}.record.jsonl"
    cmd = [
        sys.executable, "run.py", "--tree", tree, "--items", str(args.items),
        "--seed", str(args.seed), "--speed", str(args.speed), "--viz", "none",
        "--summary", str(summary), "--ledger", str(ledger), "--log-level", "warning",
        "--record", str(record),
    ]  # fmt: skip
    if config is not None:
        cmd += ["--builtin", "--config", str(config)]
    if line is not None:
        cmd += ["--line", str(line)]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if not summary.exists():
        raise SystemExit(f"{tree}: run.py exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    result["wall_s"] = wall
    rows = ledger.read_text().splitlines() if ledger.exists() else []
    result["ledger"] = [json.loads(r) for r in rows]
    lines = record.read_text().splitlines() if record.exists() else []
    result["feeds"] = [e for e in map(json.loads, lines) if e.get("event") == "item_fed"]
    return result


def limit_while_fed(feeds: list[dict[str, Any]]) -> float | None:
    """Issue 15: the limit the spacing rule allowed over the last half of the controller's
    feeds (60 / the mean of its least interval at each, empty feeds included): what the
    steady rate is measured over. The end-of-run limit is one moment's; the rule's
    spacing follows the spreads it measures, which a loaded machine makes change."""
    least = [f["least_interval"] for f in feeds[len(feeds) // 2 :] if f.get("least_interval")]
    return 60.0 * len(least) / sum(least) if least else None


def steady_rate(ledger: list[dict[str, Any]]) -> float | None:
    """Items fed per minute over the last half of the feeds (after any learning phase)."""
    feeds = sorted(r["feed_time"] for r in ledger if r.get("feed_time") is not None)
    tail = feeds[len(feeds) // 2 :]
    if len(tail) < 2 or tail[-1] <= tail[0]:
        return None
    return 60.0 * (len(tail) - 1) / (tail[-1] - tail[0])


def row(
    tree: str, result: dict[str, Any], base: float | None, limits: dict[str, float]
) -> list[str]:
    line = result.get("line") or {}
    rate = line.get("throughput_per_min") or 0.0
    steady = steady_rate(result["ledger"])
    bins = line.get("bins", {})
    return [
        tree,
        str(line.get("items", "?")),
        f"{rate:.2f}",
        "-" if steady is None else f"{steady:.2f}",
        f"{rate / base:.2f}×" if base else "1.00×",
        *("-" if steady is None else f"{steady / limit:.0%}" for limit in limits.values()),
        str(line.get("correct", "?")),
        str(line.get("missorted", "?")),
        str(bins.get("1", "?")),
        str(line.get("lost", "?")),
        f"{result['wall_s']:.0f}",
    ]


def table(rows: list[list[str]], limits: dict[str, float]) -> str:
    head = [
        "tree", "items", "items/min", "steady items/min", "vs sequential",
        *(f"steady vs {name} limit" for name in limits),
        "correct", "missorted", "rejected (bin 1)", "lost", "wall s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def unknown_line_config(workdir: Path) -> Path:
    """The built-in config without its ``line:`` section: the controller is told nothing."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text("utf-8"))
    data.pop("line", None)
    path = workdir / "controller_without_line.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def measured_limit(results: list[dict[str, Any]]) -> float | None:
    """The controller's own limit (its summary's measured_line), the last tree's first."""
    for result in reversed(results):
        limit = (result.get("measured_line") or {}).get("limit_items_per_minute")
        if limit:
            return float(limit)
    return None


def bench_line(args: argparse.Namespace, line: Path | None, workdir: Path) -> str:
    """Both trees on one line; the Markdown table with a header line."""
    config = args.config
    if line is not None and config is None:
        config = unknown_line_config(workdir)
    truth = load_config(line if line is not None else args.config)  # a line file is a config
    truth_geometry = geometry_of(truth)
    truth_limit = limit_items_per_minute(truth_geometry, truth.timings)
    results = []
    for tree in args.trees:
        results.append(run_tree(tree, args, workdir, config, line))
        print(f"done: {line.name if line else 'built-in line'} {tree} in "
              f"{results[-1]['wall_s']:.0f} s wall", file=sys.stderr, flush=True)  # fmt: skip
    measured = measured_limit(results)
    limits = {"measured": measured} if measured else {}
    limits["line file" if line else "config"] = truth_limit
    title = f"line {line.relative_to(ROOT) if line else 'built-in'}"
    head = [
        f"**{title}**: items {args.items}, seed {args.seed}, speed {args.speed}; "
        + "; ".join(f"{name} limit {value:.2f} items/min" for name, value in limits.items())
        + f" (the measured one from the controller's measured_line, when it has one; the "
        f"{'line file' if line else 'config'}'s = 60 / max(feeder cycle "
        f"{truth.timings.feeder_cycle():.2f} s, time for the safe spacing of "
        f"{min_item_spacing(truth_geometry, truth.timings):.3f} m))",
        "",
    ]
    rows: list[list[str]] = []
    base: float | None = None
    for tree, result in zip(args.trees, results, strict=True):
        rows.append(row(tree, result, base, limits))
        base = base or (result.get("line") or {}).get("throughput_per_min")
    for name, limit in limits.items():
        ratios = [f"{limit / other:.0%}" for other in limits.values()]
        rows.append([f"limit ({name})", "-", f"{limit:.2f}", f"{limit:.2f}",
                     f"{limit / base:.2f}×" if base else "-", *ratios,
                     "-", "-", "-", "-", "-"])  # fmt: skip
    why = [
        f"- {tree}: bin 1 and lost, the controller's reasons: {result.get('reasons')}"
        for tree, result in zip(args.trees, results, strict=True)
        if result.get("reasons")
    ]
    return "\n".join([*head, table(rows, limits), *(["", *why] if why else [])])


# Issue 15: the actuator timing sets a line engineer writes (feeder out/back, rods held).
TIMING_SETS = {
    "course": {"feed_hold": 1.5, "feed_back": 1.0, "push_hold": 1.0},
    "students": {"feed_hold": 1.0, "feed_back": 0.5, "push_hold": 1.0},
    "fast": {"feed_hold": 0.6, "feed_back": 0.3, "push_hold": 0.4},
}


def timing_config(workdir: Path, name: str) -> Path:
    """The built-in config with timing set ``name``."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text("utf-8"))
    data["timings"].update(TIMING_SETS[name])
    path = workdir / f"timings_{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def wrong_bins(ledger: list[dict[str, Any]], config: Path) -> int:
    """Items in a bin 2-4 other than their label's: missorts proper (bin 1 is a reject)."""
    routes = load_config(config).sorting.routes
    return sum(1 for r in ledger if r["bin"] not in (1, routes.get(r["label"], 1)))


def percent(rate: float | None, limit: float | None) -> str:
    return "-" if not limit or rate is None else f"{rate / limit:.0%}"


def bench_timings(args: argparse.Namespace, workdir: Path) -> str:
    """Each tree under each timing set on the built-in line: throughput against the line's
    limit (the controller's measured one, and the config's geometry), missorts."""
    head = [
        "timings", "tree", "items/min", "steady items/min", "limit (measured)",
        "steady vs measured", "limit while fed", "steady vs limit while fed",
        "limit (geometry)", "steady vs geometry", "correct",
        "missorted (bins 2-4)", "rejected (bin 1)", "lost", "exit", "wall s",
    ]  # fmt: skip
    rows: list[list[str]] = []
    notes: list[str] = []  # why a run stopped, where it did not end by itself
    for name, timings in TIMING_SETS.items():
        config = timing_config(workdir, name)
        loaded = load_config(config)
        geometry = limit_items_per_minute(geometry_of(loaded), loaded.timings)
        for tree in args.trees:
            args.line_tag = name
            result = run_tree(tree, args, workdir, config, None)
            print(f"done: timings {name} {tree} in {result['wall_s']:.0f} s wall",
                  file=sys.stderr, flush=True)  # fmt: skip
            line = result.get("line") or {}
            steady = steady_rate(result["ledger"])
            measured = (result.get("measured_line") or {}).get("limit_items_per_minute")
            while_fed = limit_while_fed(result["feeds"])
            feed = f"{timings['feed_hold']}/{timings['feed_back']}"
            label = f"{name} {feed}, rods {timings['push_hold']}"

            if result.get("exit_code") != 0:
                notes.append(f"{name}: {result.get('stop_reason')}")
            rows.append([
                label, Path(tree).stem, f"{line.get('throughput_per_min') or 0.0:.2f}",
                "-" if steady is None else f"{steady:.2f}",
                "-" if not measured else f"{measured:.2f}", percent(steady, measured),
                "-" if not while_fed else f"{while_fed:.2f}", percent(steady, while_fed),
                f"{geometry:.2f}", percent(steady, geometry), str(line.get("correct", "?")),
                str(wrong_bins(result["ledger"], config)),
                str((line.get("bins") or {}).get("1", "?")), str(line.get("lost", "?")),
                str(result.get("exit_code", "?")), f"{result['wall_s']:.0f}",
            ])  # fmt: skip
    title = (
        f"**timing sets on the built-in line**: items {args.items}, seed {args.seed}, speed "
        f"{args.speed}; limit (measured): the controller's own (60 / max(feeder cycle, safe "
        "spacing), docs/line-model.md) at the end of the run; limit while fed: the same rule's "
        "over the feeds of the steady half (60 / the mean least interval at each feed, empty "
        "feeds included); limit (geometry): the config's "
        "(sim.geometry.limit_items_per_minute, the simulator's truth with no margin)"
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([title, "", *lines, *(["", "stopped: " + "; ".join(notes)] if notes else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per run (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the stack's mix")
    parser.add_argument("--speed", type=float, default=10.0, help="line speed-up (default 10)")
    parser.add_argument("--config", type=Path, default=None,
                        help="the controller's config (default: the built-in line's; with "
                        "--line, the same without its line: section)")  # fmt: skip
    parser.add_argument("--line", type=Path, action="append", default=[],
                        help="the simulator's line file (repeatable)")  # fmt: skip
    parser.add_argument("--all-lines", action="store_true",
                        help="every FS-shaped file in config/lines/")  # fmt: skip
    parser.add_argument("--trees", nargs="+", default=list(TREES), help="trees to compare")
    parser.add_argument("--timing-sets", action="store_true",
                        help="a table over the timing sets (course, students, fast) on the "
                        "built-in line instead")  # fmt: skip
    args = parser.parse_args(argv)
    if args.timing_sets:
        with tempfile.TemporaryDirectory(prefix="bench_line_") as tmp:
            print(bench_timings(args, Path(tmp)), flush=True)
        return 0
    lines: list[Path | None] = [p.resolve() for p in args.line]
    if args.all_lines:  # the FS scene's shape: a line of another shape needs its --config
        lines += [p for p in sorted(LINES.glob("*.yaml")) if load_line(p).topology == FS]
    with tempfile.TemporaryDirectory(prefix="bench_line_") as tmp:
        for line in lines or [None]:
            print(bench_line(args, line, Path(tmp)) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
