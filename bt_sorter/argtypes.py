"""Numbers on the command lines: argparse types that refuse a value out of its range.

Every numeric option of ``run.py``, ``python -m bt_sorter.sim``, ``python -m
bt_sorter.vision.serve`` and ``python -m bt_sorter.harness`` is parsed by one of these, so
``--speed -2``, ``--speed 0`` or ``--items 0`` end the program the argparse way (exit 2,
``error: argument --speed: must be above 0, got '-2'``) before anything starts, and no
value quietly becomes a default. Floats must be finite (``nan`` and ``inf`` are refused).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def number(
    kind: type[T],
    *,
    at_least: T | None = None,
    above: T | None = None,
    at_most: T | None = None,
) -> Callable[[str], T]:
    """An argparse ``type`` reading a ``kind`` within the given bounds."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            name = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least:g}, got {text!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be above {above:g}, got {text!r}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:g}, got {text!r}")
        return value

    return parse


positive_int = number(int, at_least=1)  # counts: items, threads, bytes
non_negative_int = number(int, at_least=0)  # seeds (numpy takes none below 0)
positive_float = number(float, above=0.0)  # speeds, periods
non_negative_float = number(float, at_least=0.0)  # waits and line times where 0 means none
fraction = number(float, at_least=0.0, at_most=1.0)  # rates
port_number = number(int, at_least=0, at_most=65535)  # 0: a free port the system picks
