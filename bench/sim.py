"""The simulator's own cost: CPU and peak memory over a 50-item run, and render speed.

Run: ``python bench/sim.py`` (options: ``--items``, ``--speed``, ``--render-seconds``,
``--config FILE`` for the routes and the built-in line, ``--line FILE`` for the simulator's
own line, e.g. ``--line config/lines/five_bins.yaml``: four gates, rods 2..5).
A mosquitto broker (amqtt without it) and the simulator run as separate processes; the
scripted sequential client (tests/scripted.py) sorts every item with known labels.
The simulator measures itself (getrusage / process_time) and reports it in its summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bt_sorter.broker import start_broker
from bt_sorter.config import load_config
from bt_sorter.sim import render
from bt_sorter.sim.geometry import geometry_of, load_line
from bt_sorter.sim.line import draw_labels
from bt_sorter.sim.process import start_simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-only helpers
from scripted import run_sequential


def line_cost(
    items: int, speed: float, seed: int, config_path: Path | None = None, line: Path | None = None
) -> dict[str, object]:
    """Run ``items`` items through the simulator with the sequential client; its summary."""
    config = load_config(config_path)
    geometry, topology = load_line(line) if line else (geometry_of(config), config.topology)
    labels = draw_labels(items, seed, config.sim.mix)
    with tempfile.TemporaryDirectory() as tmp, start_broker() as broker:
        started = time.monotonic()
        sim = start_simulator(
            broker.address, summary=Path(tmp) / "s.json", config=config_path, line=line,
            items=items, seed=seed, speed=speed,
        )  # fmt: skip
        with sim:
            run_sequential(
                broker.address,
                items=items,
                labels=labels,
                routes=config.sorting.routes,
                speed=speed,
                timings=config.timings,
                geometry=geometry,
                topology=topology,
            )
            summary = sim.wait(timeout=600)
        summary["bench_wall_s"] = round(time.monotonic() - started, 1)
        summary["broker"] = broker.kind
    return summary


def render_rate(seconds: float, size: int) -> float:
    """Pictures per second :func:`render.render_picture` produces on one core."""
    rng = np.random.default_rng(0)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        render.render_picture(rng, render.LABELS[count % len(render.LABELS)], size)
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--render-seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--config", type=Path, help="config (default config/default.yaml)")
    parser.add_argument("--line", type=Path, help="the simulator's line file (config/lines/)")
    args = parser.parse_args()
    summary = line_cost(args.items, args.speed, args.seed, args.config, args.line)
    cost = summary["process"]
    print(f"simulator, {args.items} items at --speed {args.speed} ({summary['broker']}):")
    print(f"  line                  {summary['topology']}")
    print(f"  sorted correctly      {summary['correct']}/{summary['items']}")
    print(f"  run wall time         {cost['wall_s']:.1f} s, line {summary['line_time']:.0f} s")
    print(f"  CPU                   {cost['cpu_percent_of_one_core']:.1f} % of one core")
    print(f"  peak RSS              {cost['peak_rss_mib']:.1f} MiB")
    print(f"  throughput            {summary['throughput_per_min']} items/min of line time")
    rate = render_rate(args.render_seconds, args.size)
    print(f"renderer: {rate:.1f} pictures/s at {args.size} px (one core, this process)")
    print(json.dumps({"process": cost, "render_pictures_per_s": round(rate, 1)}))


if __name__ == "__main__":
    main()
