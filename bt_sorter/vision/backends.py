"""Build the classifier back end a configuration names: ``torch``, ``http`` or ``hsv``."""

from __future__ import annotations

from pathlib import Path

from bt_sorter.config import REPO_ROOT, ClassifierConfig, find_data
from bt_sorter.vision.classifier import Classifier, ClassifyError

BACKENDS = ("torch", "http", "hsv")


def make_classifier(backend: str, config: ClassifierConfig, root: Path = REPO_ROOT) -> Classifier:
    """The back end named ``backend``, set up from ``config``.

    A relative model path is looked up in the working folder, then under ``root``
    (the repository root by default; :func:`bt_sorter.config.find_data`).

    Raises ``ValueError`` for an unknown name and ClassifyError when the back end cannot start
    (a missing or broken model file, a malformed URL).
    """
    if backend == "torch":
        from bt_sorter.vision.torch_backend import TorchClassifier

        model = find_data(config.model, root)
        if not model.exists():
            raise ClassifyError(f"model {config.model} not found in the working folder "
                                f"({Path.cwd()}) or the repository root ({root})")  # fmt: skip
        return TorchClassifier(model, config.threads)
    if backend == "http":
        from bt_sorter.vision.http_backend import HttpClassifier

        return HttpClassifier(config.url, config.timeout)
    if backend == "hsv":
        from bt_sorter.vision.hsv import HsvClassifier

        return HsvClassifier()
    raise ValueError(f"unknown classifier backend {backend!r}; choose one of {list(BACKENDS)}")
