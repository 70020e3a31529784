"""The no-weights fallback: a transparent OpenCV colour rule for tomato ripeness.

The rule, step by step (all in :meth:`HsvClassifier.measure`):

1. Decode, shrink to at most 128 px a side.
2. White balance on the belt: the picture's outer ring is mostly belt. If its median
   colour is near grey (channel ratio below ``GREY_RATIO_MAX``), scale the channels so it
   becomes grey; a clearly coloured belt (blue) is left alone.
3. Segment the fruit: saturated (S >= ``MIN_SATURATION``), not dark, hue in the fruit
   range (red..green, not blue/violet); keep the largest blob. Dark pixels (stem, calyx
   shadow, blemishes, below 45 % of the fruit's median brightness) are left out.
4. Place every fruit pixel's hue on the tomato colour chart (USDA stages, green → red):
   ``HUE_STAGES`` maps OpenCV hue (0..180, red wraps to negative) to a stage 0..1 by
   linear interpolation. The fruit's *ripeness score* is the mean stage.
5. Label: ``raw`` if score < 0.30, ``ripe`` if score >= 0.70, ``half_ripe`` in between.
   Confidence = 0.5 + 0.5 * min(1, distance to the nearest threshold / 0.10): a fruit
   right on a boundary gets 0.5, one 0.10 or more inside its class gets 1.0. A picture
   with no fruit-sized coloured blob gets the score's label with confidence 0.

The shares of red (H < 8), orange (8..27) and green (H >= 27) fruit pixels are reported
alongside for a person to check the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from bt_sorter.argtypes import fraction
from bt_sorter.config import Limits
from bt_sorter.vision.classifier import Prediction
from bt_sorter.vision.preprocess import DEFAULT_LIMITS, decoded

LABELS: tuple[str, ...] = ("ripe", "half_ripe", "raw")

WORK_SIZE = 128
RING = 0.08
GREY_RATIO_MAX = 1.6
MIN_SATURATION = 70
MIN_VALUE = 35
MIN_FRUIT_SHARE = 0.01
RAW_MAX = 0.30
RIPE_MIN = 0.70
CONFIDENT_DISTANCE = 0.10

# OpenCV hue (degrees / 2; reds above 150 are taken as hue - 180) -> ripening stage 0..1.
HUE_STAGES: tuple[tuple[float, float], ...] = (
    (-10.0, 1.0),  # deep red, slightly purple
    (0.0, 0.95),  # deep red
    (1.0, 0.85),  # red
    (4.0, 0.72),  # red (light red stage)
    (8.0, 0.62),  # orange-red (pink stage)
    (13.0, 0.52),  # orange
    (21.0, 0.40),  # yellow-orange (turning)
    (32.0, 0.30),  # yellow-green (breaker)
    (42.0, 0.22),  # whitish mature green
    (46.0, 0.12),  # light green
    (52.0, 0.0),  # green
)
_HUES = np.array([h for h, _ in HUE_STAGES], dtype=np.float32)
_STAGES = np.array([s for _, s in HUE_STAGES], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ColourMeasure:
    """What the rule saw: ripeness score, hue shares of the fruit, and the fruit's area share."""

    score: float
    red: float
    orange: float
    green: float
    fruit_share: float


class HsvClassifier:
    """Ripeness from the fruit's hue; ``labels`` are (ripe, half_ripe, raw) in that order."""

    name = "hsv"

    def __init__(self, labels: Sequence[str] = LABELS, limits: Limits = DEFAULT_LIMITS) -> None:
        if len(labels) != 3:
            raise ValueError(f"HsvClassifier needs 3 labels (ripe, half_ripe, raw), got {labels}")
        self.labels = tuple(labels)
        self.limits = limits

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels the rule answers with: it cannot tell any other class (``overripe``)."""
        return self.labels

    def measure(self, data: bytes) -> ColourMeasure:
        """Run steps 1-4 of the rule; raises BadPictureError for bytes that are not a picture."""
        with decoded(data, self.limits) as full:  # the full size counts until it is shrunk
            h, w = full.shape[:2]
            scale = WORK_SIZE / max(h, w)
            image = full
            if scale < 1.0:
                image = cv2.resize(full, (max(1, round(w * scale)), max(1, round(h * scale))),
                                   interpolation=cv2.INTER_AREA)  # fmt: skip
        image = _white_balance(image)
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        hue = hsv[:, :, 0].astype(np.float32)
        sat, val = hsv[:, :, 1], hsv[:, :, 2]
        fruit_hue = (hue < 75) | (hue > 150)
        mask = ((sat >= MIN_SATURATION) & (val >= MIN_VALUE) & fruit_hue).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count <= 1:
            return ColourMeasure(0.5, 0.0, 0.0, 0.0, 0.0)
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fruit = labels == biggest
        fruit_share = float(fruit.mean())
        bright = val >= 0.45 * float(np.median(val[fruit]))
        fruit &= bright
        hues = hue[fruit]
        hues = np.where(hues > 150, hues - 180.0, hues)
        if hues.size == 0:
            return ColourMeasure(0.5, 0.0, 0.0, 0.0, 0.0)
        stages = np.interp(hues, _HUES, _STAGES)
        red = float(np.mean(hues < 8))
        green = float(np.mean(hues >= 27))
        return ColourMeasure(float(stages.mean()), red, 1.0 - red - green, green, fruit_share)

    def classify(self, data: bytes) -> Prediction:
        """Label and confidence by the rule in the module docstring."""
        m = self.measure(data)
        ripe, half, raw = self.labels
        label = raw if m.score < RAW_MAX else ripe if m.score >= RIPE_MIN else half
        if m.fruit_share < MIN_FRUIT_SHARE:
            return Prediction(label, 0.0, self.name)
        distance = min(abs(m.score - RAW_MAX), abs(m.score - RIPE_MIN))
        confidence = 0.5 + 0.5 * min(1.0, distance / CONFIDENT_DISTANCE)
        return Prediction(label, confidence, self.name)

    def close(self) -> None:
        """Nothing to release."""


def _white_balance(image: np.ndarray) -> np.ndarray:
    """Make a near-grey belt (the picture's outer ring) grey; leave coloured belts alone."""
    h, w = image.shape[:2]
    bh, bw = max(1, round(h * RING)), max(1, round(w * RING))
    ring = np.concatenate(
        [
            image[:bh].reshape(-1, 3),
            image[h - bh :].reshape(-1, 3),
            image[bh : h - bh, :bw].reshape(-1, 3),
            image[bh : h - bh, w - bw :].reshape(-1, 3),
        ]
    )
    ref = np.median(ring, axis=0).astype(np.float32) + 1.0
    if float(ref.max() / ref.min()) > GREY_RATIO_MAX:
        return image
    gains = np.clip(ref.mean() / ref, 0.6, 1.6)
    return cv2.convertScaleAbs(image.astype(np.float32) * gains[None, None, :])


def main(argv: Sequence[str] | None = None) -> int:
    """Score the rule on a picture folder (one sub-folder per label): accuracy, confusion."""
    import argparse
    import time
    from pathlib import Path

    from bt_sorter.vision.classifier import BadPictureError

    parser = argparse.ArgumentParser(
        prog="python -m bt_sorter.vision.hsv", description="Score the HSV colour rule on a folder."
    )
    parser.add_argument("--data", type=Path, required=True, help="folder of label sub-folders")
    parser.add_argument("--threshold", type=fraction, default=0.6, help="confidence for 'unknown'")
    args = parser.parse_args(argv)
    classifier = HsvClassifier()
    labels = list(classifier.labels)
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    weak = bad = 0
    elapsed = 0.0
    for row, label in enumerate(labels):
        for path in sorted((args.data / label).glob("*")):
            data = path.read_bytes()
            start = time.perf_counter()
            try:
                prediction = classifier.classify(data)
            except BadPictureError:
                bad += 1
                continue
            elapsed += time.perf_counter() - start
            confusion[row, labels.index(prediction.label)] += 1
            weak += prediction.confidence < args.threshold
    total = int(confusion.sum())
    if total == 0:
        print(f"no pictures under {args.data}/<{'|'.join(labels)}>/")
        return 1
    print(f"pictures {total}  accuracy {np.trace(confusion) / total:.4f}  bad {bad}")
    print(f"below confidence {args.threshold}: {weak / total:.4f}")
    print(f"ms per picture {elapsed / total * 1000:.2f}")
    print("confusion (rows true, columns predicted):", " ".join(labels))
    for label, counts in zip(labels, confusion, strict=True):
        print(f"  {label:>10} " + " ".join(f"{c:5d}" for c in counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
