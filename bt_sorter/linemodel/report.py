"""Reports: the run summary's ``measured_line`` section and ``--calibrate``'s ``line:``.

Metres appear only where a length is known: the configured item length gives the belt
speed and the gate spacings (:func:`lengths`).
"""

from __future__ import annotations

from typing import Any

from bt_sorter.linemodel.model import LineModel
from bt_sorter.linemodel.quantities import PICTURE, blocked, clear


def lengths(model: LineModel) -> dict[str, float]:
    """Metres, where a length is known: the configured item length gives belt speed
    and the gate spacings (unless a passage contradicted the configured geometry:
    then the length may be what is wrong)."""
    prior, estimates = model.prior, model.estimates
    length = prior.config.item_length if prior.config is not None else None
    passage_time = estimates.passage_time(1)
    contradicted = any(m["quantity"].endswith("passage") for m in prior.mismatches)
    if length is None or not passage_time or contradicted:
        return {}
    speed = length / passage_time
    out = {"item_length_m": length, "belt_speed_m_s": round(speed, 4)}
    for gate in model.topology.gate_numbers[1:]:
        a, b = estimates.expected(blocked(gate - 1)), estimates.expected(blocked(gate))
        if a is not None and b is not None:
            out[f"gate{gate - 1}_to_gate{gate}_m"] = round((b - a) * speed, 4)
    return out


def summary_section(model: LineModel) -> dict[str, Any]:
    """The run summary's ``measured_line`` section."""
    spacing, limit = model.spacing.safe_spacing(), model.spacing.limit_per_minute()
    learning, latency = model.learning, model.latency
    return {
        "unit": "seconds of belt running since the feed command",
        "items_learned": learning.items_learned,
        "items_rejected": learning.items_rejected,  # issue 15: outliers, not learned
        "quantities": {name: model.estimates[name].report() for name in model.estimates.names},
        "confirmed_prior": sorted(model.prior.confirmed),
        "geometry_mismatches": list(model.prior.mismatches),
        "safe_spacing_s": None if spacing is None else round(spacing, 4),
        "feeder_cycle_s": round(model.spacing.feeder_cycle, 4),
        "decision_delay_s": round(latency.decision_delay, 4),  # issue 15: the margin's inputs
        "margin_s": round(latency.command_margin, 4),
        "limit_items_per_minute": None if limit is None else round(limit, 3),
        **lengths(model),
    }


def line_section(model: LineModel) -> dict[str, Any]:
    """A config ``line:`` section holding what was measured (``run.py --calibrate``)."""

    def timing(name: str) -> dict[str, Any] | None:
        est = model.estimates[name]
        if est.median is None:
            return None
        return {"median": round(est.median, 4), "spread": round(est.spread, 4),
                "n": est.total}  # fmt: skip

    section: dict[str, Any] = {}
    if (picture := timing(PICTURE)) is not None:
        section["picture"] = picture
    gates = [
        {k: v for k, v in (("blocked", timing(blocked(g))), ("clear", timing(clear(g))))
         if v is not None}
        for g in model.topology.gate_numbers
    ]  # fmt: skip
    if any(gates):
        section["gates"] = gates
    prior = model.prior.config
    if prior is not None and prior.item_length is not None:
        section["item_length"] = prior.item_length
        if "belt_speed_m_s" in (measured := lengths(model)):
            section["belt_speed"] = measured["belt_speed_m_s"]
    return section
