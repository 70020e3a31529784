"""The in-process ResNet back end, and the one checkpoint format every tool reads and writes.

Two checkpoint shapes load (always with ``torch.load(..., weights_only=True)``):

* the project's: a dict with ``state_dict`` (or ``model`` in a training checkpoint) and
  ``meta`` = ``{"arch", "input_size", "classes"}`` plus, once calibrated, ``temperature``
  (logits are divided by it before the softmax; 1.0 when absent); weights may be stored in
  half precision;
* the course's bare ``best.pth``: a torchvision ResNet ``state_dict`` with a
  ``class_indices.json`` beside it; the input size is then the course's 224.

A class named ``none`` (:data:`REJECT_CLASS`, a training folder of pictures that are not one
fruit: empty belts, several fruits, clutter, glare) is the *reject* class: it is never an
answer's label. When it wins, the answer carries the best fruit class with the doubt ``not
one fruit``, so the item goes to bin 1 with that reason.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bt_sorter.config import Limits
from bt_sorter.vision.classifier import ClassifyError, Prediction
from bt_sorter.vision.device import autocast, device_plan, prepare_model, to_device
from bt_sorter.vision.oddity import NOT_ONE_FRUIT, logit_doubt, picture_doubt
from bt_sorter.vision.preprocess import (
    DEFAULT_LIMITS,
    load_class_indices,
    picture_to_input,
    preprocess_batch,
)
from bt_sorter.vision.resnet import ResNet, build, infer_arch

COURSE_INPUT_SIZE = 224
CLASS_INDEX_FILE = "class_indices.json"
REJECT_CLASS = "none"  # the training class of pictures that are not one fruit


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its network: architecture, input side, labels by index."""

    arch: str
    input_size: int
    classes: tuple[str, ...]
    temperature: float = 1.0  # calibration: softmax(logits / temperature)
    min_logit: float | None = None  # a largest logit below it: unlike any trained picture
    # the sorting.confidence_threshold its rule chose on held-out domains (evaluate
    # --write-threshold); a config that names none acts on this one
    threshold: float | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """The classes an answer can carry: every class but the reject class."""
        return tuple(name for name in self.classes if name != REJECT_CLASS)

    @property
    def reject_index(self) -> int | None:
        """The reject class's output, or ``None`` when the network has none."""
        return self.classes.index(REJECT_CLASS) if REJECT_CLASS in self.classes else None

    def as_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "arch": self.arch,
            "input_size": self.input_size,
            "classes": list(self.classes),
            "temperature": self.temperature,
        }
        if self.min_logit is not None:
            meta["min_logit"] = self.min_logit
        if self.threshold is not None:
            meta["threshold"] = self.threshold
        return meta


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def save_model(
    path: Path, model: torch.nn.Module, info: ModelInfo, half: bool = False, **extra: Any
) -> None:
    """Save ``model``'s weights with ``info`` as metadata; ``half`` stores floats as float16."""
    state = {}
    for k, v in model.state_dict().items():
        tensor = v.detach().cpu().contiguous()  # from any device or memory format
        state[k] = (tensor.half() if half and tensor.is_floating_point() else tensor).clone()
    torch.save({"state_dict": state, "meta": info.as_meta(), **extra}, path)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_model(path: Path | str) -> tuple[ResNet, ModelInfo]:
    """Load a checkpoint (project or course format) into a float32 network in eval mode.

    Raises ``ValueError`` with a reason when the file is not a usable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a loadable weights-only checkpoint ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict, got {type(raw).__name__}")
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else None
    state = raw.get("state_dict", raw.get("model")) if meta is not None else raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state_dict of tensors found")
    state = _strip_prefix(state)
    index_file = path.with_name(CLASS_INDEX_FILE)
    if meta is not None and meta.get("classes"):
        classes = tuple(str(c) for c in meta["classes"])
    elif index_file.is_file():
        classes = tuple(load_class_indices(index_file))
    else:
        raise ValueError(f"{path}: no class index in the checkpoint and no {index_file}")
    arch = str(meta["arch"]) if meta is not None and "arch" in meta else infer_arch(state)
    input_size = int(meta.get("input_size", COURSE_INPUT_SIZE)) if meta else COURSE_INPUT_SIZE
    temperature = float(meta.get("temperature", 1.0)) if meta else 1.0
    min_logit = float(meta["min_logit"]) if meta and meta.get("min_logit") is not None else None
    threshold = meta.get("threshold") if meta else None
    if not 0.0 < temperature < 1000.0:
        raise ValueError(f"{path}: temperature {temperature} is not a positive number")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ValueError(f"{path}: threshold {threshold!r} is not a number within 0..1")
    fc = state.get("fc.weight")
    if fc is None or fc.shape[0] != len(classes):
        got = None if fc is None else fc.shape[0]
        raise ValueError(f"{path}: fc has {got} outputs but the class index has {len(classes)}")
    model = build(arch, len(classes))
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit {arch}: {exc}") from exc
    model.eval()
    threshold = float(threshold) if threshold is not None else None
    return model, ModelInfo(arch, input_size, classes, temperature, min_logit, threshold)


def write_meta(path: Path, values: dict[str, float]) -> None:
    """Store ``values`` in the checkpoint ``path``'s metadata; the weights stay as stored
    (float16 stays float16). A course-format bare ``state_dict`` becomes the project format.
    A new temperature changes every confidence, so it removes a ``threshold`` chosen for the
    old one (choose it again: ``evaluate --write-threshold``). The file is replaced whole: a
    reader never sees half of it."""
    _, info = load_model(path)  # validates the file first
    drop = ()
    if "temperature" in values and float(values["temperature"]) != info.temperature:
        drop = () if "threshold" in values else ("threshold",)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(raw.get("meta"), dict):
        meta = raw["meta"]
    else:
        raw = {"state_dict": raw, "meta": info.as_meta()}
        meta = raw["meta"]
    meta.update({k: float(v) for k, v in values.items()})
    for key in drop:
        meta.pop(key, None)
    part = path.with_name(path.name + ".part")
    torch.save(raw, part)
    os.replace(part, path)


class TorchClassifier:
    """In-process ResNet classifier; confidence is the softmax maximum of the logits divided
    by the checkpoint's temperature (calibrated). Thread-safe.

    A picture that is no usable frame (black, washed out) or that no class explains (largest
    logit under the checkpoint's ``min_logit``) gets a ``doubt`` (:mod:`oddity`): the line
    sends it to bin 1 with that reason.

    ``device`` is ``auto``, ``cpu`` or ``cuda`` (:mod:`bt_sorter.vision.device`); on CUDA
    the forward pass runs channels-last under autocast.
    """

    name = "torch"

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        device: str = "cpu",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.limits = limits
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            self.plan = device_plan(device)
            model, self.info = load_model(model_path)
        except ValueError as exc:
            raise ClassifyError(str(exc)) from exc
        self.model = prepare_model(model, self.plan)
        self._lock = threading.Lock()

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels an answer can carry (the reject class is none of them)."""
        return self.info.labels

    @property
    def threshold(self) -> float | None:
        """The confidence threshold the model's rule chose (its checkpoint's), if any."""
        return self.info.threshold

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw float32 logits (N, classes) for a preprocessed (N, 3, S, S) batch."""
        with self._lock, torch.inference_mode():
            images = to_device(torch.from_numpy(batch), self.plan)
            with autocast(self.plan):
                logits = self.model(images)
            return logits.float().cpu().numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated softmax probabilities (N, classes) for a preprocessed (N, 3, S, S) batch."""
        return softmax(self.logits(batch), self.info.temperature)

    def predict_inputs(self, inputs: Sequence[np.ndarray]) -> list[Prediction]:
        """Label preprocessed (3, S, S) inputs (from :func:`preprocess`) in one forward pass."""
        if not inputs:
            return []
        return self._predictions(np.stack(inputs))

    def _predictions(self, batch: np.ndarray) -> list[Prediction]:
        logits = self.logits(batch)
        probs = softmax(logits, self.info.temperature)
        reject = self.info.reject_index
        fruit = probs.copy()  # the label is the best fruit class, kept for the record
        if reject is not None:
            fruit[:, reject] = -1.0
        out = []
        for chw, row, p, index in zip(batch, logits, probs, fruit.argmax(1), strict=True):
            rejected = reject is not None and int(p.argmax()) == reject
            doubt = (
                picture_doubt(chw)
                or (NOT_ONE_FRUIT if rejected else "")
                or logit_doubt(float(row.max()), self.info.min_logit)
            )
            label = self.info.classes[int(index)]
            out.append(Prediction(label, float(p[index]), self.name, doubt))
        return out

    def classify(self, data: bytes) -> Prediction:
        """Label one encoded picture; raises BadPictureError for bytes that are not one."""
        return self._predictions(picture_to_input(data, self.info.input_size, self.limits)[None])[0]

    def classify_images(self, images_bgr: Sequence[np.ndarray]) -> list[Prediction]:
        """Label already decoded BGR pictures in one batch."""
        return self._predictions(preprocess_batch(images_bgr, self.info.input_size))

    def close(self) -> None:
        """Nothing to release; present for the Classifier protocol."""
