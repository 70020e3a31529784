"""The simulator's physical line: where things sit on the belt, what that allows, line files.

The simulator's truth, never the controller's: the controller learns the line from its
events, and a config's ``line:`` section (:class:`bt_sorter.config.LineConfig`) is at most
its prior. Here a ``line:`` section (a config's, for the built-in line, or a line file's)
becomes the line the simulator runs: its metre keys over the built-in line's
(:func:`geometry_of`), checked as one line (:func:`check_line`). Positions are metres from
the feed point along the belt.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

from bt_sorter.config import (
    Config,
    LineConfig,
    Timings,
    build,
    check_shape,
    config_error,
    find_data,
)
from bt_sorter.topology import FS, Topology
from bt_sorter.yamlio import Located, SpecError, load_file


@dataclass(frozen=True)
class LineGeometry:
    """The simulator's physical line, positions in metres from the feed point along the belt.

    The defaults are the built-in line. The controller never reads this: it learns the
    line (a config's ``line:`` section, :class:`LineConfig`, is at most its prior).
    """

    belt_speed: float = 0.1  # m/s
    item_length: float = 0.06  # m, along the belt
    feed_zone: float = 0.1  # m from 0 that must be clear before feeding
    camera_position: float = 0.25
    gate_positions: tuple[float, ...] = (0.5, 0.8, 1.1)
    rod_offset: float = 0.05  # rod k+1's window centre is this far past gate k
    rod_window: float = 0.08  # width of the zone a rod sweeps
    belt_length: float = 1.4  # items fall off the end here into bin 1
    rod_stroke_time: float = 0.2  # s to extend (or retract) a classifying rod
    feeder_stroke_time: float = 0.5  # s for rod 1 to push an item onto the belt
    camera_delay: float = 0.05  # s from the item under the camera to the picture sent

    @classmethod
    def for_gates(cls, gates: int) -> LineGeometry:
        """The built-in line with ``gates`` gates: the FS scene's for 3; otherwise its gates
        at the same 0.3 m pitch from 0.5 m and the belt end 0.3 m past the last gate."""
        if gates == len(cls.gate_positions):
            return cls()
        positions = tuple(round(0.5 + 0.3 * k, 6) for k in range(gates))
        return cls(gate_positions=positions, belt_length=round(positions[-1] + 0.3, 6))

    def rod_window_of(self, rod: int, topology: Topology = FS) -> tuple[float, float]:
        """The belt interval swept by classifying rod ``rod``: ``rod_offset`` past the gate
        whose clear edge fires it (``topology``, the FS scene's by default)."""
        centre = self.gate_positions[topology.gate_of(rod) - 1] + self.rod_offset
        return centre - self.rod_window / 2, centre + self.rod_window / 2


_GEOMETRY_KEYS = tuple(f.name for f in dataclasses.fields(LineGeometry))


def line_geometry(line: LineConfig | None, topology: Topology = FS) -> LineGeometry:
    """The metre keys ``line`` gives over the built-in line's with ``topology``'s gates."""
    built_in = LineGeometry.for_gates(topology.gates)
    if line is None:
        return built_in
    given = {k: getattr(line, k) for k in _GEOMETRY_KEYS if getattr(line, k) is not None}
    return dataclasses.replace(built_in, **given)


def geometry_of(config: Config) -> LineGeometry:
    """The simulator's line of ``config``: ``line:``'s metre keys over the built-in line's
    (with as many gates as ``topology:`` declares, :meth:`LineGeometry.for_gates`)."""
    return line_geometry(config.line, config.topology)


def check_line(config: Config) -> None:
    """The line ``config``'s ``line:`` section makes, checked as one line (the keys it
    states together with the built-in line's they meet); a :class:`SpecError` naming the
    file and line. The section's own checks (gates, order) ran when it was loaded."""
    geo = geometry_of(config)
    if not 0 < geo.camera_position < geo.gate_positions[0]:
        raise config_error(config, "line.camera_position must lie between the feeder and gate 1",
                           "line")  # fmt: skip
    if geo.belt_length <= geo.gate_positions[-1] + geo.rod_offset + geo.rod_window / 2:
        raise config_error(config, "line.belt_length must reach past the last rod", "line")
    for name in ("belt_speed", "item_length", "rod_window", "feed_zone"):
        if getattr(geo, name) <= 0:
            raise config_error(config, f"line.{name} must be positive", "line")


def min_item_spacing(geo: LineGeometry, timings: Timings) -> float:
    """Head-to-head distance (m) that keeps a rod pushed for one item off the next.

    The simulator's truth, not the controller's. A rod is out from its push (the item's
    tail at its gate) for push_hold plus one stroke; the next item's head must not reach
    the rod's window before then.
    """
    out_time = timings.push_hold + geo.rod_stroke_time
    window_start = geo.rod_offset - geo.rod_window / 2
    return geo.item_length + max(0.0, geo.belt_speed * out_time - window_start)


def limit_items_per_minute(geo: LineGeometry, timings: Timings) -> float:
    """The line's physical limit with these timings: feeder- or spacing-bound."""
    spacing_time = max(min_item_spacing(geo, timings), geo.feed_zone) / geo.belt_speed
    return 60.0 / max(timings.feeder_cycle(), spacing_time)


class LineFile(typing.NamedTuple):
    """A line file's line: where things are, and its gates and rods."""

    geometry: LineGeometry
    topology: Topology


def load_line(path: str | Path) -> LineFile:
    """Load a line file (``config/lines/*.yaml``): the simulator's own physical line.

    The file holds a ``line:`` section, with the keys and checks of a config's, and may
    hold a ``topology:`` section (without one, the line has the FS scene's shape); the
    controller never reads it (it sees the line only through MQTT).
    """
    path = find_data(path)
    data = load_file(path)
    extra = sorted(set(data) - {"line", "topology"}) if isinstance(data, Located) else []
    if not isinstance(data, Located) or extra or "line" not in data:
        where = data.line_of(extra[0]) if extra else 1
        found = f" (found {', '.join(extra)})" if extra else ""
        raise SpecError(f"a line file holds line: and at most topology:{found}", path, where)
    config = dataclasses.replace(build(Config, data, "config"), source=str(path))
    check_shape(config, data)
    check_line(config)
    if config.line is not None and (config.line.picture is not None or config.line.gates):
        raise data["line"].error("a line file gives the line in metres, not measured times")
    return LineFile(geometry_of(config), config.topology)
