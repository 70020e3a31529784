"""The model/route check: the classes the classifiers answer against ``sorting.routes``.

Run at ``run.py --check`` and at every start, once the classifiers are loaded (only then
are a model's classes known). Every class a classifier with known classes can answer
must go somewhere on purpose: to a rod (``sorting.routes``) or to bin 1
(``sorting.reject``); a route or reject entry for a class the primary classifier never
answers is a typo or the wrong model; and a fallback that cannot tell a class the primary
answers (the HSV rule on a line with ``overripe``) would sort those items as another
class, so it is refused (use ``classifier.fallback: reject``). Each error is a
:class:`~bt_sorter.yamlio.SpecError` naming the config file and the line of the key at
fault. Which rods a line has is the topology's check (:func:`bt_sorter.config.validate`);
this one checks classes only.

A back end whose classes cannot be known before it answers (``http``, ``mqtt``) is not
checked; its labels still go by the routes at run time (no route: bin 1 with a reason).

The confidence threshold is settled at the same time (:func:`settle_threshold`): a config
that names no ``sorting.confidence_threshold`` acts on the one the model's rule chose (its
checkpoint's ``meta.threshold``), so a model swapped in brings its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bt_sorter.config import DEFAULT_THRESHOLD, Config
from bt_sorter.yamlio import Located, SpecError, load_file


def classes_of(classifier: Any) -> tuple[str, ...] | None:
    """The labels a classifier back end answers with, or None when it cannot say beforehand."""
    classes = getattr(classifier, "classes", None)
    return tuple(classes) if classes is not None else None


def threshold_of(classifier: Any) -> float | None:
    """The confidence threshold a classifier's model was judged at (its rule's), or None."""
    threshold = getattr(classifier, "threshold", None)
    return float(threshold) if threshold is not None else None


def settle_threshold(config: Config, model: float | None) -> tuple[Config, str, bool]:
    """``config`` with its confidence threshold settled against ``model`` (the primary
    classifier's :func:`threshold_of`), the line ``--check`` prints, and whether that line
    is a warning: the config's own threshold below the one the model's rule chose acts on
    answers that the rule found too often wrong under a camera the model never saw."""
    given = config.sorting.confidence_threshold
    if given is None and model is None:
        why = "default; the classifier names none of its own"
        return config, f"confidence threshold {DEFAULT_THRESHOLD} ({why})", False
    if given is None:
        sorting = dataclasses.replace(config.sorting, confidence_threshold=model)
        why = "the model's own, chosen by its rule on held-out domains"
        return config.replace(sorting=sorting), f"confidence threshold {model} ({why})", False
    line = f"confidence threshold {given} (sorting.confidence_threshold)"
    if model is None or given >= model:
        return config, line, False
    file, at = _locate(config, "sorting", "confidence_threshold")
    where = f"{file}:{at}: " if file and at else ""
    risk = "more of the answers acted on will be wrong under a camera it never saw"
    return config, f"{where}{line} is below the {model} the model's rule chose: {risk}", True


def _locate(config: Config, section: str, key: str, label: str | None = None) -> tuple[Any, int]:
    """(file, line) of ``section.key[.label]`` in the config file, as near as it is written."""
    if config.source.startswith("<"):
        return None, 0
    try:
        data = load_file(config.source)
    except (SpecError, OSError):
        return config.source, 0
    if not isinstance(data, Located):
        return config.source, 0
    line = 1
    part = data.get(section)
    if section in data:
        line = data.line_of(section)
    if isinstance(part, Located) and key in part:
        line = part.line_of(key)
        value = part[key]
        if label is not None and isinstance(value, Located) and label in value:
            line = value.line_of(label)
        elif label is not None and isinstance(value, list):
            lines = getattr(value, "item_lines", [])
            for item, item_line in zip(value, lines, strict=False):
                if item == label:
                    line = item_line
    return config.source, line


def _error(
    config: Config, message: str, section: str, key: str, label: str | None = None
) -> SpecError:
    file, line = _locate(config, section, key, label)
    return SpecError(message, file, line or None)


def check_classes(config: Config, answers: Mapping[str, Sequence[str] | None]) -> list[str]:
    """Check ``answers`` (classifier role, ``primary`` or ``fallback`` -> its classes, None
    if unknown) against the config's routes and reject list.

    Returns the lines ``--check`` prints; raises SpecError (file and line) on a mismatch.
    """
    routes = config.sorting.routes
    reject = tuple(config.sorting.reject)
    primary = answers.get("primary")
    if primary is not None:  # first: a typo in a route also leaves its class unrouted
        for key, labels in (("routes", tuple(routes)), ("reject", reject)):
            for label in labels:
                if label not in primary:
                    raise _error(
                        config,
                        f"sorting.{key}: {label!r} is not a class of the primary classifier "
                        f"(it answers {', '.join(primary)})",
                        "sorting",
                        key,
                        label,
                    )
    report = []
    for role, classes in answers.items():
        if classes is None:
            report.append(f"{role} classifier: classes known only when it answers; not checked")
            continue
        for label in classes:
            if label not in routes and label not in reject:
                raise _error(
                    config,
                    f"sorting.routes: the {role} classifier answers {label!r}, which has no "
                    f"route and no reject rule (route it to a rod, or list it in "
                    f"sorting.reject to send it to bin 1)",
                    "sorting",
                    "routes",
                )
        report.append(f"{role} classifier answers {', '.join(classes)}")
    fallback = answers.get("fallback")
    missing = [c for c in primary or () if fallback is not None and c not in fallback]
    if missing:
        raise _error(
            config,
            f"classifier.fallback: the fallback cannot tell {', '.join(map(repr, missing))}, "
            f"which the primary classifier answers: such items would be sorted as another "
            f"class (set classifier.fallback: reject)",
            "classifier",
            "fallback",
        )
    where = ", ".join(f"{label} -> rod {rod}" for label, rod in routes.items())
    report.append(
        f"routes: {where}" + (f"; to bin 1 on purpose: {', '.join(reject)}" if reject else "")
    )
    return report
