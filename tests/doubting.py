"""A copy of the shipped model that doubts some pictures of the built-in line and is unsure
of some others (shared by the tests of issue 24): real weights, only its meta changed.

Its logit floor (``meta.min_logit``) sits near the median largest logit of the renderer's
fruit, so about half of the line's pictures are doubted (``unlike any trained picture``);
its temperature spreads the confidences of the rest around :data:`THRESHOLD`, so some of
them have no confident label. Measured on 60 rendered pictures with the shipped model of
2026-12-06 (sha256 736756c0…): largest logits 3.2..9.0, median 6.96; at temperature 4.5 the
kept ones' confidences run about 0.70..0.81.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bt_sorter.vision.calibrate import write_temperature
from bt_sorter.vision.torch_backend import write_meta

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"
MIN_LOGIT = 7.0
TEMPERATURE = 4.5
THRESHOLD = 0.76  # this model's meta.threshold; a config for a remote back end names it


def doubting_model(folder: Path) -> Path:
    """The copy, in ``folder`` (with the class index beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / MODEL.name
    shutil.copy(MODEL, model)
    index = MODEL.with_name("class_indices.json")
    if index.exists():
        shutil.copy(index, folder / index.name)
    write_temperature(model, TEMPERATURE, min_logit=MIN_LOGIT)
    write_meta(model, {"threshold": THRESHOLD})
    return model
