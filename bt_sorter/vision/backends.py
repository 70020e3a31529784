"""Build the classifier back end a configuration names: ``torch``, ``http``, ``hsv``, ``mqtt``."""

from __future__ import annotations

from pathlib import Path

from bt_sorter.config import ClassifierConfig, Limits
from bt_sorter.vision.classifier import Classifier, ClassifyError

BACKENDS = ("torch", "http", "hsv", "mqtt")


def make_classifier(
    backend: str,
    config: ClassifierConfig,
    root: Path,
    *,
    line_broker: str | None = None,
    client_id: str = "bt_sorter",
    speed: float = 1.0,
    limits: Limits | None = None,
) -> Classifier:
    """The back end named ``backend``, set up from ``config``; relative paths are under ``root``.

    ``mqtt`` connects to ``config.broker`` (else ``line_broker``, HOST:PORT) as
    ``<client_id>-classify``; its ``reply_timeout`` is line time, so it divides by ``speed``.
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
    if backend == "mqtt":
        from bt_sorter.vision.mqtt_backend import MqttClassifier

        address = config.broker or line_broker
        host, _, port = (address or "").rpartition(":")
        if not host or not port.isdigit():
            raise ClassifyError(f"classifier.broker must be HOST:PORT, got {address!r}")
        return MqttClassifier(
            host, int(port), f"{client_id}-classify", config.reply_timeout / speed
        )
    raise ValueError(f"unknown classifier backend {backend!r}; choose one of {list(BACKENDS)}")
