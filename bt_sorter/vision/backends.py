"""Build the classifier back end a configuration names: ``torch``, ``http`` or ``hsv``."""

from __future__ import annotations

from pathlib import Path

from bt_sorter.config import ClassifierConfig, Limits
from bt_sorter.vision.classifier import Classifier

BACKENDS = ("torch", "http", "hsv")


def make_classifier(
    backend: str, config: ClassifierConfig, root: Path, limits: Limits | None = None
) -> Classifier:
    """The back end named ``backend``, set up from ``config``; relative paths are under ``root``.

    ``limits`` (default: the config defaults) bound the pictures a local back end decodes.

    Raises ``ValueError`` for an unknown name and ClassifyError when the back end cannot start
    (a missing or broken model file, a malformed URL).
    """
    limits = limits or Limits()
    if backend == "torch":
        from bt_sorter.vision.torch_backend import TorchClassifier

        model = Path(config.model)
        return TorchClassifier(
            model if model.is_absolute() else root / model, config.threads, limits
        )
    if backend == "http":
        from bt_sorter.vision.http_backend import HttpClassifier

        return HttpClassifier(config.url, config.timeout)
    if backend == "hsv":
        from bt_sorter.vision.hsv import HsvClassifier

        return HsvClassifier(limits=limits)
    raise ValueError(f"unknown classifier backend {backend!r}; choose one of {list(BACKENDS)}")
