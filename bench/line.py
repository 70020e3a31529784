"""Line throughput: the sequential tree, the pipelined tree, and the line's physical limit.

Runs ``run.py`` on the built-in line once per tree, in one invocation, with the same
items, seed and speed, and prints a Markdown table: items, items/min of line time (the
simulator's count, first feed to last item off the belt), ratio to the sequential tree,
ratio to the physical limit, correct, missorted, rejected (bin 1), lost.

The physical limit comes from the config: 60 / max(feeder cycle, minimum safe spacing
÷ belt speed) items per minute (bt_sorter.config.Config.limit_items_per_minute).

    python bench/line.py --items 200 --speed 10
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

from bt_sorter.config import load_config

ROOT = Path(__file__).resolve().parent.parent
TREES = ("trees/sort.yaml", "trees/sort_pipelined.yaml")


def run_tree(tree: str, items: int, seed: int, speed: float, workdir: Path) -> dict[str, Any]:
    """One run of ``tree`` on the built-in line; run.py's summary with wall time added."""
    summary = workdir / (Path(tree).stem + ".json")
    cmd = [
        sys.executable, "run.py", "--tree", tree, "--items", str(items), "--seed", str(seed),
        "--speed", str(speed), "--viz", "none", "--summary", str(summary),
        "--log-level", "warning",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if not summary.exists():
        raise SystemExit(f"{tree}: run.py exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    result["wall_s"] = wall
    return result


def row(tree: str, result: dict[str, Any], base: float | None, limit: float) -> list[str]:
    line = result.get("line") or {}
    rate = line.get("throughput_per_min") or 0.0
    bins = line.get("bins", {})
    return [
        tree,
        str(line.get("items", "?")),
        f"{rate:.2f}",
        f"{rate / base:.2f}×" if base else "1.00×",
        f"{rate / limit:.0%}",
        str(line.get("correct", "?")),
        str(line.get("missorted", "?")),
        str(bins.get("1", "?")),
        str(line.get("lost", "?")),
        f"{result['wall_s']:.0f}",
    ]


def table(rows: list[list[str]]) -> str:
    head = [
        "tree", "items", "items/min", "vs sequential", "vs limit", "correct", "missorted",
        "rejected (bin 1)", "lost", "wall s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per run (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the stack's mix")
    parser.add_argument("--speed", type=float, default=10.0, help="line speed-up (default 10)")
    parser.add_argument("--config", type=Path, default=None, help="line config (default)")
    parser.add_argument("--trees", nargs="+", default=list(TREES), help="trees to compare")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    limit = config.limit_items_per_minute()
    print(
        f"items {args.items}, seed {args.seed}, speed {args.speed}; physical limit "
        f"{limit:.2f} items/min = 60 / max(feeder cycle {config.feeder_cycle():.2f} s, "
        f"spacing {config.min_item_spacing():.3f} m / {config.geometry().belt_speed} m/s)",
        flush=True,
    )
    rows: list[list[str]] = []
    base: float | None = None
    with tempfile.TemporaryDirectory(prefix="bench_line_") as tmp:
        for tree in args.trees:
            result = run_tree(tree, args.items, args.seed, args.speed, Path(tmp))
            rows.append(row(tree, result, base, limit))
            rate = (result.get("line") or {}).get("throughput_per_min")
            base = base or rate
            print(f"done: {tree} in {result['wall_s']:.0f} s wall", flush=True)
    limit_row = ["physical limit", "-", f"{limit:.2f}", f"{limit / base:.2f}×" if base else "-",
                 "100%", "-", "-", "-", "-", "-"]  # fmt: skip
    print(table([*rows, limit_row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
