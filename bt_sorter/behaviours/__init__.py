"""The leaves of sorting trees, one module per concern; importing this registers them all."""

from bt_sorter.behaviours import belt, feeding, inputs, rods, safety, tracking, vision
from bt_sorter.behaviours.base import REGISTRY, Context, Leaf, Param, describe, register

__all__ = [
    "REGISTRY",
    "Context",
    "Leaf",
    "Param",
    "belt",
    "describe",
    "feeding",
    "inputs",
    "register",
    "rods",
    "safety",
    "tracking",
    "vision",
]
