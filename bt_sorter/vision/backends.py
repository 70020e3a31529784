"""Build the classifier back end a configuration names: ``torch``, ``http`` or ``hsv``."""

from __future__ import annotations

from pathlib import Path

from bt_sorter.config import ClassifierConfig
from bt_sorter.vision.classifier import Classifier

BACKENDS = ("torch", "http", "hsv")


def make_classifier(backend: str, config: ClassifierConfig, root: Path) -> Classifier:
    """The back end named ``backend``, set up from ``config``; relative paths are under ``root``.

    Raises ``ValueError`` for an unknown name and ClassifyError when the back end cannot start
    (a missing or broken model file, a malformed URL).
    """
    if backend == "torch":
        from bt_sorter.vision.torch_backend import TorchClassifier

        model = Path(config.model)
        path = model if model.is_absolute() else root / model
        return TorchClassifier(path, config.threads, config.device)
    if backend == "http":
        from bt_sorter.vision.http_backend import HttpClassifier

        return HttpClassifier(config.url, config.timeout)
    if backend == "hsv":
        from bt_sorter.vision.hsv import HsvClassifier

        return HsvClassifier()
    raise ValueError(f"unknown classifier backend {backend!r}; choose one of {list(BACKENDS)}")
