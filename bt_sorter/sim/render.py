"""Camera pictures of one tomato on a conveyor belt, rendered with OpenCV and numpy.

The class of a fruit is a deterministic function of one latent value, its *ripeness*
``r`` in 0..1 (0 = deep green, 1 = deep red), cut by two thresholds::

    raw        r <  RAW_MAX   (0.30)
    half_ripe  RAW_MAX <= r < RIPE_MIN
    ripe       RIPE_MIN <= r <= 1  (0.70)
    overripe   1 < r <= OVERRIPE_MAX  (1.35; only where the label set names it)

The label set is an option (``labels``, default :data:`LABELS`, the three classes of the
shipped line). Naming ``overripe`` (:data:`ALL_LABELS`) adds the fourth class above ``ripe``
and gives ``ripe`` a borderline on that side too; with the default set every picture is
exactly what it was before ``overripe`` existed (same seed, same bytes). An overripe fruit
is deep red to brownish red (:data:`OVERRIPE_RAMP`), with dark brown blotches, wrinkles and
a duller highlight, all growing with ``r - 1``; near the border its colour is still a ripe
fruit's deep red and only fainter blotches and wrinkles tell it (they start at a floor so
that a 96 px picture still shows them).

Every fruit pixel gets a *local* ripeness ``r + f(x, y)`` where ``f`` is a smooth field
(greener shoulders round the stem, blotchy patches) rescaled to zero mean over the
visible fruit, so the fruit's mean local ripeness is ``r`` and the label can be read from
its visible colour. The local ripeness picks the surface colour from a green → yellow →
orange → red ramp (:data:`RIPENESS_RAMP`). A share (:data:`BORDERLINE_SHARE`) of fruit is
borderline: ``r`` lies near a threshold but never closer than :data:`MARGIN`.

Everything else varies freely and does not touch the label: size, position, outline
lobes, pose (where the stem and calyx sit), light direction, brightness, colour
temperature, highlight, creases, blemishes, shadow, belt texture and seams, motion and
defocus blur, sensor noise and JPEG quality. The belt is neutral grey in the ``train``
domain, so it is a white-balance reference. The ``shifted`` domain puts brightness,
colour cast and belt colour outside the training range (same colour rule) for robustness
tests. The ``wide`` domain is domain randomisation for training: gain, light colour and a
belt of any albedo and hue drawn from ranges that span both of the others. The ``robust``
domain randomises, each on its own, what a new camera changes and nothing that defines a
class: gain, colour temperature and tint (a per-channel gain on the whole scene, fruit and
belt alike), vignetting, sensor noise, a belt of any albedo and hue with ribs, a mesh at
any angle and period or speckle, fruit size and shape (round to elongated), and sometimes a
rail over one edge hiding part of the fruit. :func:`render_reject` draws the training class
of pictures that are not one fruit (empty belts, several fruits, clutter, glare).

Four more domains (:data:`HELDOUT_DOMAINS`) are other cameras, for judging only: ``halogen``
(a warm, dim halogen rig with strong vignetting and soft light), ``led`` (a cool, slightly
green LED rig with hard light and bright highlights), ``green_belt`` (a green PVC belt with
a woven texture, training light) and ``roma`` (elongated plum tomatoes of any size, training
light and a brown belt). The colour rule is the same in each, so the label is still read
from the fruit's colour relative to the light. One more (:data:`LOOP_DOMAINS`), ``sodium``,
is a camera far outside everything trained on (orange light through a sensor whose colour
channels leak into each other) where learning from the line's own pictures is measured.
All randomness comes from the ``rng`` argument: the same generator state gives the same
picture.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

LABELS: tuple[str, ...] = ("ripe", "half_ripe", "raw")  # the default label set
ALL_LABELS: tuple[str, ...] = (*LABELS, "overripe")  # every class the renderer can draw
DOMAINS: tuple[str, ...] = ("train", "shifted", "wide", "robust", "belts")
# Domains held out for judging only: no training, fine-tuning, calibration or threshold
# choice may render them with the seeds the model card reserves for confirmation.
HELDOUT_DOMAINS: tuple[str, ...] = ("halogen", "led", "green_belt", "roma", "blue_tray")
# A camera far outside everything the model trained on, where learning from the line's own
# pictures is measured (the model card's loop): a sodium-vapour lamp's orange light seen
# through a cheap sensor whose colour channels leak into each other.
LOOP_DOMAINS: tuple[str, ...] = ("sodium",)
ALL_DOMAINS: tuple[str, ...] = (*DOMAINS, *HELDOUT_DOMAINS, *LOOP_DOMAINS)

RAW_MAX = 0.30
RIPE_MIN = 0.70
RIPE_MAX = 1.0
OVERRIPE_MAX = 1.35
MARGIN = 0.05
BORDERLINE_BAND = 0.06
BORDERLINE_SHARE = 0.12

# Local ripeness -> surface colour (RGB, 0..255): mid green, light green, whitish mature
# green, yellow-green (breaker), yellow-orange (turning), orange, orange-red, red, deep red.
RIPENESS_RAMP: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.00, (70, 135, 45)),
    (0.12, (118, 172, 72)),
    (0.22, (158, 192, 106)),
    (0.30, (186, 194, 82)),
    (0.40, (220, 172, 60)),
    (0.52, (234, 128, 50)),
    (0.62, (226, 90, 40)),
    (0.72, (206, 52, 30)),
    (0.85, (186, 32, 25)),
    (1.00, (150, 18, 20)),
)
# Local ripeness above 1 (overripe only): deep red -> dark red -> brownish red -> brown.
OVERRIPE_RAMP: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (1.00, (150, 18, 20)),
    (1.08, (130, 30, 22)),
    (1.18, (110, 40, 24)),
    (1.35, (88, 46, 28)),
    (1.50, (74, 44, 28)),
)

_CLASS_RANGES: dict[str, tuple[float, float]] = {
    "raw": (0.0, RAW_MAX),
    "half_ripe": (RAW_MAX, RIPE_MIN),
    "ripe": (RIPE_MIN, RIPE_MAX),
    "overripe": (RIPE_MAX, OVERRIPE_MAX),
}


def parse_labels(text: str) -> tuple[str, ...]:
    """A label set from ``"ripe,half_ripe,raw,overripe"``; every name one the renderer draws."""
    labels = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in labels if name not in ALL_LABELS]
    if unknown or not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels {text!r}: expected distinct names of {ALL_LABELS}")
    return labels


def ripeness_label(ripeness: float) -> str:
    """The class of a fruit with latent ripeness ``ripeness`` (0..OVERRIPE_MAX)."""
    if ripeness < RAW_MAX:
        return "raw"
    if ripeness < RIPE_MIN:
        return "half_ripe"
    if ripeness <= RIPE_MAX:
        return "ripe"
    return "overripe"


def sample_ripeness(rng: np.random.Generator, label: str, labels: Sequence[str] = LABELS) -> float:
    """Draw a latent ripeness for ``label`` of the label set ``labels``: interior, or
    borderline (near a threshold to a class of the set, not within MARGIN of it)."""
    if label not in labels or label not in _CLASS_RANGES:
        raise ValueError(f"unknown label {label!r}; expected one of {tuple(labels)}")
    low, high = _CLASS_RANGES[label]
    top = OVERRIPE_MAX if "overripe" in labels else RIPE_MAX
    if rng.random() < BORDERLINE_SHARE:
        sides = []
        if low > 0.0:
            sides.append(+1)
        if high < top:
            sides.append(-1)
        side = sides[int(rng.integers(len(sides)))]
        offset = MARGIN + rng.random() * BORDERLINE_BAND
        return float(low + offset if side > 0 else high - offset)
    inner_low = low + MARGIN + BORDERLINE_BAND if low > 0.0 else low
    inner_high = high - MARGIN - BORDERLINE_BAND if high < top else high
    return float(inner_low + rng.random() * (inner_high - inner_low))


@functools.lru_cache(maxsize=1)
def _ramp_lut() -> np.ndarray:
    """256-entry BGR float32 table of the ripeness ramp."""
    positions = np.array([p for p, _ in RIPENESS_RAMP], dtype=np.float32)
    rgb = np.array([c for _, c in RIPENESS_RAMP], dtype=np.float32) / 255.0
    x = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    lut = np.stack([np.interp(x, positions, rgb[:, i]) for i in (2, 1, 0)], axis=1)
    lut = lut.astype(np.float32)
    lut.flags.writeable = False
    return lut


@functools.lru_cache(maxsize=1)
def _overripe_lut() -> np.ndarray:
    """256-entry BGR float32 table of both ramps over local ripeness 0..OVERRIPE_RAMP's end."""
    ramp = RIPENESS_RAMP + OVERRIPE_RAMP[1:]
    positions = np.array([p for p, _ in ramp], dtype=np.float32)
    rgb = np.array([c for _, c in ramp], dtype=np.float32) / 255.0
    x = np.linspace(0.0, OVERRIPE_RAMP[-1][0], 256, dtype=np.float32)
    lut = np.stack([np.interp(x, positions, rgb[:, i]) for i in (2, 1, 0)], axis=1)
    lut = lut.astype(np.float32)
    lut.flags.writeable = False
    return lut


def _overripe_skin(
    rng: np.random.Generator,
    overripe: float,
    albedo: np.ndarray,
    shading: np.ndarray,
    specular: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Age an overripe fruit's skin by ``overripe`` (= r - 1, 0..0.35): dark brown blotches,
    thin wrinkles (ridged noise) and a duller highlight; returns (albedo, shading, specular)."""
    h, w = shading.shape
    age = min(1.0, overripe / (OVERRIPE_MAX - RIPE_MAX))
    cells = int(rng.integers(4, 8))
    patches = cv2.resize(
        rng.standard_normal((cells, cells), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    blotch = np.clip(patches - rng.uniform(0.1, 0.5), 0.0, 1.0) * (0.5 + 0.4 * age)
    brown = np.array([0.07, 0.12, 0.24], dtype=np.float32)  # BGR
    albedo = albedo + blotch[:, :, None] * (brown - albedo)
    wrinkles = np.zeros((h, w), dtype=np.float32)
    for cells in (int(rng.integers(5, 9)), int(rng.integers(9, 14))):
        ridge = cv2.resize(
            rng.standard_normal((cells, cells), dtype=np.float32),
            (w, h),
            interpolation=cv2.INTER_CUBIC,
        )
        wrinkles = np.maximum(wrinkles, np.exp(-((ridge / 0.18) ** 2)))
    shading = shading * (1.0 - (0.22 + 0.25 * age) * rng.uniform(0.8, 1.2) * wrinkles)
    specular = specular * np.float32(rng.uniform(0.3, 0.6))
    return albedo.astype(np.float32), shading.astype(np.float32), specular


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = ys.flags.writeable = False  # shared between pictures and threads
    return xs, ys


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise of shape (size, size)."""
    small = rng.standard_normal((cells, cells), dtype=np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _lighting(rng: np.random.Generator, domain: str) -> tuple[float, np.ndarray]:
    """Overall gain and the BGR colour of the light."""
    if domain == "train":
        gain = rng.uniform(0.75, 1.2)
        temperature = rng.uniform(-0.10, 0.10)
        tint = rng.uniform(-0.04, 0.04)
    elif domain == "wide":
        gain = rng.uniform(0.45, 1.5)
        temperature = rng.uniform(-0.2, 0.2)
        tint = rng.uniform(-0.08, 0.08)
    elif domain == "belts":  # a white-balanced camera: the belt is no white reference
        gain = rng.uniform(0.6, 1.4)
        temperature = rng.uniform(-0.08, 0.08)
        tint = rng.uniform(-0.04, 0.04)
    elif domain == "blue_tray":  # a slightly warm light over blue plastic trays
        gain = rng.uniform(0.85, 1.25)
        temperature = rng.uniform(0.03, 0.1)
        tint = rng.uniform(-0.03, 0.0)
    elif domain == "robust":  # what a new camera changes, each drawn on its own
        gain = rng.uniform(0.4, 1.6)
        temperature = rng.uniform(-0.25, 0.25)
        tint = rng.uniform(-0.1, 0.1)
    elif domain == "halogen":  # warm, dim
        gain = rng.uniform(0.6, 0.95)
        temperature = rng.uniform(0.12, 0.2)
        tint = rng.uniform(-0.02, 0.03)
    elif domain == "led":  # cool, a little green, bright
        gain = rng.uniform(1.0, 1.35)
        temperature = rng.uniform(-0.18, -0.1)
        tint = rng.uniform(0.03, 0.06)
    elif domain in ("green_belt", "roma"):
        gain, temperature, tint = rng.uniform(0.75, 1.2), rng.uniform(-0.1, 0.1), 0.0
    elif domain == "sodium":  # orange sodium-vapour light, far outside every training range
        gain = rng.uniform(0.8, 1.1)
        temperature = rng.uniform(0.3, 0.4)
        tint = rng.uniform(0.05, 0.1)
    else:
        gain = rng.uniform(0.5, 0.68) if rng.random() < 0.5 else rng.uniform(1.28, 1.45)
        temperature = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.18)
        tint = rng.choice([-1.0, 1.0]) * rng.uniform(0.045, 0.07)
    colour = np.array([1.0 - temperature, 1.0 + tint, 1.0 + temperature], dtype=np.float32)
    return float(gain), colour


def _belt(rng: np.random.Generator, size: int, domain: str) -> np.ndarray:
    """Belt albedo (BGR float32): textured rubber with streaks, maybe a seam and a rail."""
    if domain == "train":
        grey = rng.uniform(0.22, 0.5)
        base = np.full(3, grey, dtype=np.float32) + rng.uniform(-0.015, 0.015, 3).astype(np.float32)
    elif domain == "wide":  # any albedo, any hue up to about 3:1 between channels
        hue = 1.0 + rng.uniform(-0.5, 0.5, 3).astype(np.float32)
        base = np.clip(rng.uniform(0.05, 0.8) * hue, 0.03, 0.9).astype(np.float32)
    elif domain == "blue_tray":  # blue food-grade plastic, BGR
        shade = rng.uniform(0.75, 1.25)
        base = (np.array([0.55, 0.38, 0.16], dtype=np.float32) * shade).astype(np.float32)
    elif domain in ("robust", "belts"):  # any albedo, any hue up to about 4:1 between channels
        hue = 1.0 + rng.uniform(-0.6, 0.6, 3).astype(np.float32)
        base = np.clip(rng.uniform(0.04, 0.8) * hue, 0.02, 0.9).astype(np.float32)
    elif domain in ("halogen", "led", "sodium"):  # the training belt under another light
        grey = rng.uniform(0.25, 0.55)
        base = np.full(3, grey, dtype=np.float32)
    elif domain == "green_belt":  # green PVC, BGR
        shade = rng.uniform(0.7, 1.3)
        base = (np.array([0.16, 0.34, 0.14], dtype=np.float32) * shade).astype(np.float32)
    elif domain == "roma":  # brown rubber, BGR
        shade = rng.uniform(0.7, 1.3)
        base = (np.array([0.13, 0.2, 0.28], dtype=np.float32) * shade).astype(np.float32)
    else:
        kind = int(rng.integers(3))
        if kind == 0:  # near-black belt
            base = np.full(3, rng.uniform(0.06, 0.14), dtype=np.float32)
        elif kind == 1:  # light grey / white belt
            base = np.full(3, rng.uniform(0.62, 0.78), dtype=np.float32)
        else:  # blue food-grade belt
            base = np.array(
                [rng.uniform(0.45, 0.6), rng.uniform(0.32, 0.42), rng.uniform(0.2, 0.3)],
                dtype=np.float32,
            )
    xs, _ = _grid(size)
    fine = _noise(rng, (size, size)) * rng.uniform(0.015, 0.035)
    streaks = cv2.GaussianBlur(rng.standard_normal((size, 1), dtype=np.float32), (1, 5), 1.5)
    mottle = _smooth_noise(rng, size, 6) * rng.uniform(0.01, 0.03)
    texture = 1.0 + fine + streaks * rng.uniform(0.02, 0.05) + mottle
    if domain == "green_belt":  # woven: a fine criss-cross pattern
        ys = xs.T
        period = rng.uniform(5.0, 9.0) * size / 256
        weave = np.sin(xs * (2 * math.pi / period)) * np.sin(ys * (2 * math.pi / period))
        texture = texture + rng.uniform(0.06, 0.12) * weave.astype(np.float32)
    elif domain in ("robust", "belts"):
        texture = texture + _belt_pattern(rng, size)
    belt = base[None, None, :] * texture[:, :, None]
    if rng.random() < 0.5:  # a seam across the belt (the belt moves along x)
        x0 = rng.uniform(0.05, 0.95) * size
        width = max(1.0, rng.uniform(0.006, 0.02) * size)
        seam = np.exp(-(((xs[0] - x0) / width) ** 2)).astype(np.float32)
        belt *= (1.0 - rng.uniform(-0.25, 0.45) * seam)[None, :, None]
    if rng.random() < 0.3:  # a metal side rail at the top or bottom edge
        height = int(rng.uniform(0.04, 0.1) * size)
        metal = np.float32(rng.uniform(0.5, 0.75))
        ramp = np.linspace(0.8, 1.1, height, dtype=np.float32)[:, None, None] * metal
        if rng.random() < 0.5:
            belt[:height] = ramp
        else:
            belt[size - height :] = ramp[::-1]
    return belt


def _belt_pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A belt surface pattern of the ``robust`` domain (zero-mean, float32): none, ribs, a
    mesh at any angle and period, or coarse speckle."""
    kind = int(rng.integers(4))
    if kind == 0:
        return np.zeros((size, size), np.float32)
    xs, ys = _grid(size)
    angle = rng.uniform(0, math.pi)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    period = rng.uniform(3.0, 16.0) * size / 256
    amplitude = np.float32(rng.uniform(0.03, 0.15))
    if kind == 1:  # ribs
        return (amplitude * np.sin(u * (2 * math.pi / period))).astype(np.float32)
    if kind == 2:  # mesh or weave
        wave = np.sin(u * (2 * math.pi / period)) * np.sin(v * (2 * math.pi / period))
        return (amplitude * wave).astype(np.float32)
    return (amplitude * 2.0 * _smooth_noise(rng, size, int(rng.integers(16, 48)))).astype(
        np.float32
    )


def _calyx(
    rng: np.random.Generator,
    image: np.ndarray,
    centre: tuple[float, float],
    reach: float,
    squash: tuple[float, float, float],
) -> None:
    """Draw the green stem and sepal star onto ``image`` (float BGR), in place."""
    cx, cy = centre
    squash_dir, squash_amount, _ = squash
    leaves = int(rng.integers(5, 7))
    start = rng.uniform(0, 2 * math.pi)
    sepal_rgb = np.array(
        [rng.uniform(40, 75), rng.uniform(85, 125), rng.uniform(25, 50)], dtype=np.float32
    )
    colour = sepal_rgb[::-1] / 255.0
    shade = tuple(float(c) for c in colour * 0.7)
    lit = tuple(float(c) for c in colour)
    cos_d, sin_d = math.cos(squash_dir), math.sin(squash_dir)

    def project(dx: float, dy: float) -> tuple[float, float]:
        along = dx * cos_d + dy * sin_d
        across = -dx * sin_d + dy * cos_d
        along *= 1.0 - squash_amount
        return cx + along * cos_d - across * sin_d, cy + along * sin_d + across * cos_d

    scale = 16.0
    for k in range(leaves):
        angle = start + 2 * math.pi * k / leaves + rng.uniform(-0.25, 0.25)
        length = reach * rng.uniform(0.7, 1.15)
        width = reach * rng.uniform(0.14, 0.24)
        bend = rng.uniform(-0.35, 0.35)
        ca, sa = math.cos(angle), math.sin(angle)
        cb, sb = math.cos(angle + bend), math.sin(angle + bend)
        pts = [
            project(-sa * width * 0.5, ca * width * 0.5),
            project(ca * length * 0.55 - sa * width * 0.6, sa * length * 0.55 + ca * width * 0.6),
            project(cb * length, sb * length),
            project(ca * length * 0.55 + sa * width * 0.6, sa * length * 0.55 - ca * width * 0.6),
            project(sa * width * 0.5, -ca * width * 0.5),
        ]
        poly = np.round(np.array(pts) * scale).astype(np.int32)
        cv2.fillPoly(image, [poly], shade if k % 2 else lit, cv2.LINE_AA, shift=4)
    stem_r = max(1, round(reach * rng.uniform(0.12, 0.2) * scale))
    stem = tuple(float(c) for c in colour * 1.25)
    cv2.circle(image, (round(cx * scale), round(cy * scale)), stem_r, stem, -1, cv2.LINE_AA, 4)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed block of unit Gaussian noise; pictures take random windows of it (fast)."""
    bank = np.random.default_rng(20240917).standard_normal((_BANK, _BANK * 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


_BANK = 640


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise of ``shape`` (H, W) or (H, W, 3), drawn via ``rng``."""
    h, w = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else 1
    if h > _BANK or w * channels > _BANK * 3:
        return rng.standard_normal(shape, dtype=np.float32)
    oy = int(rng.integers(0, _BANK - h + 1))
    ox = int(rng.integers(0, _BANK * 3 - w * channels + 1))
    sign = np.float32(1.0 if rng.random() < 0.5 else -1.0)
    return (_noise_bank()[oy : oy + h, ox : ox + w * channels] * sign).reshape(shape)


@functools.lru_cache(maxsize=8)
def _radius2(size: int) -> np.ndarray:
    xs, ys = _grid(size)
    half = size / 2
    r2 = ((xs - half) ** 2 + (ys - half) ** 2) / (size * size / 2)
    r2.flags.writeable = False
    return r2


def _render(rng: np.random.Generator, ripeness: float, size: int, domain: str) -> np.ndarray:
    gain, light = _lighting(rng, domain)
    belt = _belt(rng, size, domain)
    _fruit(rng, belt, ripeness, size, domain)
    if domain in ("robust", "belts") and rng.random() < 0.15:
        _occluder(rng, belt, size)
    return _camera(rng, belt, gain, light, size, domain)


def _occluder(rng: np.random.Generator, image: np.ndarray, size: int) -> None:
    """A guide rail or flap over one edge of the picture (``robust`` domain), in place: it
    may hide part of the fruit, never its middle."""
    depth = int(rng.uniform(0.05, 0.25) * size)
    shade = np.float32(rng.uniform(0.1, 0.8))
    tone = (shade * (1.0 + rng.uniform(-0.15, 0.15, 3))).astype(np.float32)
    ramp = np.linspace(0.85, 1.1, depth, dtype=np.float32)[:, None] * tone[None, :]
    edge = int(rng.integers(4))
    if edge == 0:
        image[:depth] = ramp[:, None, :]
    elif edge == 1:
        image[size - depth :] = ramp[::-1, None, :]
    elif edge == 2:
        image[:, :depth] = ramp[None, :, :]
    else:
        image[:, size - depth :] = ramp[None, ::-1, :]


def _fruit(
    rng: np.random.Generator,
    belt: np.ndarray,
    ripeness: float,
    size: int,
    domain: str,
    place: tuple[float, float, float] | None = None,
) -> None:
    """Draw one fruit (and its shadow) onto ``belt`` (float BGR albedo), in place.
    ``place`` = (x, y, scale) puts it there (fractions of the side) at that size."""
    s = float(size)
    xs, ys = _grid(size)

    # Fruit geometry: centre, semi-axes, rotation, outline lobes.
    if domain == "roma":  # elongated plum tomatoes, any size
        radius = rng.uniform(0.22, 0.36) * s
        ax = radius
        ay = radius * rng.uniform(0.58, 0.75)
    elif domain == "blue_tray":  # small fruit, seen from higher up
        radius = rng.uniform(0.15, 0.21) * s
        ax = radius
        ay = radius * rng.uniform(0.84, 1.0)
    elif domain in ("robust", "belts"):  # any size, round to elongated
        radius = rng.uniform(0.15, 0.37) * s
        ax = radius
        ay = radius * rng.uniform(0.55, 1.0)
    else:
        radius = rng.uniform(0.2, 0.32) * s
        ax = radius
        ay = radius * rng.uniform(0.84, 1.0)
    cx = rng.uniform(0.36, 0.64) * s
    cy = rng.uniform(0.36, 0.64) * s
    if place is not None:
        cx, cy = place[0] * s, place[1] * s
        radius, ax, ay = radius * place[2], ax * place[2], ay * place[2]
    rot = rng.uniform(0, math.pi)
    cr, sr = math.cos(rot), math.sin(rot)
    lobes = int(rng.integers(4, 7))
    lobe_depth = rng.uniform(0.01, 0.035)
    lobe_phase = rng.uniform(0, 2 * math.pi)

    # Light direction (from above, off to one side) in the fruit's frame.
    la = rng.uniform(0, 2 * math.pi)
    lz = rng.uniform(0.55, 0.9)
    lxy = math.sqrt(1 - lz * lz)
    lx, ly = lxy * math.cos(la), lxy * math.sin(la)

    # Shadow on the belt, away from the light (drawn and blurred at quarter size).
    q = max(8, size // 4)
    f = q / s
    shadow = np.zeros((q, q), dtype=np.float32)
    off = 0.18 * radius / max(lz, 0.3)
    sx = cx - off * (cr * lx - sr * ly)
    sy = cy - off * (sr * lx + cr * ly)
    centre16 = (round(sx * f * 16), round(sy * f * 16))
    axes16 = (round(ax * f * 16), round(ay * f * 16))
    cv2.ellipse(shadow, centre16, axes16, math.degrees(rot), 0, 360, 1.0, -1, cv2.LINE_AA, 4)
    k = max(3, int(radius * f * 0.35) | 1)
    shadow = cv2.resize(cv2.GaussianBlur(shadow, (k, k), 0), (size, size))
    belt *= (1.0 - rng.uniform(0.3, 0.55) * shadow)[:, :, None]

    # Everything about the fruit is computed inside its bounding box only.
    reach = radius * (1.0 + lobe_depth) + 2.0
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
    h, w = y1 - y0, x1 - x0
    dx, dy = xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy
    u = (cr * dx + sr * dy) / ax
    v = (-sr * dx + cr * dy) / ay
    rho = np.sqrt(u * u + v * v) + 1e-6
    cos_t, sin_t = u / rho, v / rho
    # cos(n*theta + phase) from the unit vector, without arctan2.
    z = (cos_t + 1j * sin_t).astype(np.complex64) ** lobes
    lobe = z.real * math.cos(lobe_phase) - z.imag * math.sin(lobe_phase)
    edge = 1.0 + lobe_depth * lobe
    rn = rho / edge
    alpha = np.clip((1.0 - rn) * ay, 0.0, 1.0)

    # Pose: where the stem sits (normalised fruit coordinates); sometimes hidden below.
    tilt = rng.uniform(0.0, 0.55) if rng.random() < 0.85 else rng.uniform(1.2, 1.6)
    tilt_dir = rng.uniform(0, 2 * math.pi)
    su, sv = tilt * math.cos(tilt_dir), tilt * math.sin(tilt_dir)

    # Local ripeness field: greener round the stem, plus blotches; zero mean over the fruit.
    du, dv = u - su, v - sv
    dist = np.sqrt(du * du + dv * dv) + 1e-6
    cells = int(rng.integers(5, 9))
    blotch = cv2.resize(
        rng.standard_normal((cells, cells), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    field = rng.uniform(0.5, 1.0) * dist + rng.uniform(0.2, 0.6) * blotch
    total = float(alpha.sum()) + 1e-6
    field -= float((field * alpha).sum()) / total
    spread = math.sqrt(float((field * field * alpha).sum()) / total) + 1e-6
    field *= rng.uniform(0.05, 0.14) / spread
    if ripeness <= RIPE_MAX:
        lut = _ramp_lut()
        index = np.clip((ripeness + field) * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    else:  # overripe: the local ripeness reads on both ramps
        lut = _overripe_lut()
        scale = 255.0 / OVERRIPE_RAMP[-1][0]
        index = np.clip((ripeness + field) * scale + 0.5, 0.0, 255.0).astype(np.uint8)
    albedo = lut[index] * np.float32(rng.uniform(0.92, 1.05))

    # Blemishes: a few small brownish spots.
    spots = int(rng.choice([0, 0, 1, 1, 2, 3]))
    if spots:
        spot_mask = np.zeros((h, w), dtype=np.float32)
        for _ in range(spots):
            ang = rng.uniform(0, 2 * math.pi)
            dd = rng.uniform(0.1, 0.75)
            px = cx - x0 + dd * ax * math.cos(ang)
            py = cy - y0 + dd * ay * math.sin(ang)
            pr = max(1.0, rng.uniform(0.015, 0.04) * s)
            cv2.circle(spot_mask, (round(px * 16), round(py * 16)), round(pr * 16), 1.0, -1,
                       cv2.LINE_AA, 4)  # fmt: skip
        spot_mask = cv2.GaussianBlur(spot_mask, (5, 5), 0) * rng.uniform(0.4, 0.75)
        brown = np.array([0.10, 0.16, 0.25], dtype=np.float32)
        albedo += spot_mask[:, :, None] * (brown - albedo)

    # Shading: sphere normals, lobe creases radiating from the stem, highlight.
    nu, nv = u / edge, v / edge
    nz = np.sqrt(np.clip(1.0 - nu * nu - nv * nv, 0.0, 1.0))
    diffuse = np.clip(nu * lx + nv * ly + nz * lz, 0.0, 1.0)
    ambient = rng.uniform(0.22, 0.35)
    zc = ((du + 1j * dv) / dist).astype(np.complex64) ** lobes
    crease_phase = rng.uniform(0, 2 * math.pi)
    c = 0.5 + 0.5 * (zc.real * math.cos(crease_phase) - zc.imag * math.sin(crease_phase))
    c2 = c * c
    crease = c2 * c2 * c2 * np.clip(dist * (1 / 0.35), 0.0, 1.0) * rng.uniform(0.04, 0.12)
    shading = (ambient + (1 - ambient) * diffuse) * (1.0 - crease)
    hx, hy, hz = lx, ly, lz + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    ndoth = (nu * (hx / hn) + nv * (hy / hn) + nz * (hz / hn)) - 1.0
    specular = rng.uniform(0.25, 0.8) * np.exp(ndoth * rng.uniform(25, 80))
    if ripeness > RIPE_MAX:
        albedo, shading, specular = _overripe_skin(
            rng, ripeness - RIPE_MAX, albedo, shading, specular
        )

    fruit = albedo * shading[:, :, None] + specular[:, :, None]
    region = belt[y0:y1, x0:x1]
    region += alpha[:, :, None] * (fruit - region)
    image = belt
    if tilt < 1.0:  # stem and calyx on the visible side
        scx = cx + (cr * su * ax - sr * sv * ay)
        scy = cy + (sr * su * ax + cr * sv * ay)
        squash = (math.atan2(scy - cy, scx - cx), min(0.6, tilt * 0.8), 0.0)
        _calyx(rng, image, (scx, scy), radius * rng.uniform(0.22, 0.4), squash)


def _camera(
    rng: np.random.Generator,
    image: np.ndarray,
    gain: float,
    light: np.ndarray,
    size: int,
    domain: str,
) -> np.ndarray:
    """The scene's albedo (float BGR, changed in place) as the camera's ``uint8`` picture:
    light colour, gain, vignetting (one pass, straight to 0..255), blur, noise."""
    s = float(size)
    vig = rng.uniform(*_VIGNETTING.get(domain, (0.0, 0.3)))
    image *= light[None, None, :]
    if domain == "sodium":  # another sensor: its channels leak into each other
        leak = np.float32(rng.uniform(0.3, 0.42))
        mixed = cv2.transform(image, _crosstalk(float(leak)))
        image = np.ascontiguousarray(mixed, dtype=np.float32)
    image *= (255.0 * gain - (255.0 * gain * vig) * _radius2(size))[:, :, None]
    if rng.random() < 0.3:  # motion blur along the belt
        length = max(2, round(rng.uniform(0.008, 0.025) * s))
        image = cv2.blur(image, (length, 1))
    if rng.random() < 0.25:  # defocus
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.4) * s / 256)
    noise_sigma = rng.uniform(*_NOISE_RANGE.get(domain, (0.004, 0.02)))
    noise = _noise(rng, image.shape) * np.float32(noise_sigma * 255.0)
    noise += 0.5  # rounds on the cast below
    image += noise
    np.clip(image, 0.0, 255.0, out=image)
    return image.astype(np.uint8)


def _crosstalk(leak: float) -> np.ndarray:
    """A 3x3 BGR sensor matrix whose channels take ``leak`` of their neighbours' light."""
    neighbours = np.array([[0, 0.7, 0.3], [0.5, 0, 0.5], [0.2, 0.8, 0]])
    return ((1.0 - leak) * np.eye(3) + leak * neighbours).astype(np.float32)


_NOISE_RANGE = {"train": (0.004, 0.02), "shifted": (0.01, 0.03), "wide": (0.004, 0.03),
                "halogen": (0.01, 0.03), "robust": (0.004, 0.035), "belts": (0.004, 0.035),
                "blue_tray": (0.008, 0.025)}  # fmt: skip
_VIGNETTING = {"halogen": (0.35, 0.55), "robust": (0.0, 0.55), "belts": (0.0, 0.55)}


def _check(label: str, size: int, domain: str, labels: Sequence[str] = LABELS) -> None:
    if label not in labels or label not in ALL_LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {tuple(labels)}")
    if domain not in ALL_DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {ALL_DOMAINS}")
    if not 32 <= size <= 4096:
        raise ValueError(f"picture size {size} is outside 32..4096")


def render_item(
    rng: np.random.Generator,
    label: str,
    size: int = 256,
    domain: str = "train",
    labels: Sequence[str] = LABELS,
) -> np.ndarray:
    """One camera picture of a fruit of class ``label`` of the label set ``labels``: BGR
    ``uint8`` of shape (size, size, 3)."""
    _check(label, size, domain, labels)
    return _render(rng, sample_ripeness(rng, label, labels), size, domain)


def render_ripeness(
    rng: np.random.Generator, ripeness: float, size: int = 256, domain: str = "train"
) -> np.ndarray:
    """A picture of a fruit with the given latent ``ripeness`` (0..1); its class is
    :func:`ripeness_label` of it. For tests and studies of the class boundaries."""
    _check(LABELS[0], size, domain)
    if not 0.0 <= ripeness <= OVERRIPE_MAX:
        raise ValueError(f"ripeness {ripeness} is outside 0..{OVERRIPE_MAX}")
    return _render(rng, float(ripeness), size, domain)


def render_picture(
    rng: np.random.Generator,
    label: str,
    size: int = 256,
    domain: str = "train",
    labels: Sequence[str] = LABELS,
) -> bytes:
    """:func:`render_item` encoded as JPEG at a random camera quality (60..95)."""
    image = render_item(rng, label, size, domain, labels)
    quality = int(rng.integers(60, 96))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def write_dataset(
    out: Path,
    n: int,
    seed: int,
    size: int = 256,
    domain: str = "train",
    labels: Sequence[str] = LABELS,
) -> dict[str, int]:
    """Write ``n`` pictures per class of ``labels`` to ``out/<label>/<label>_<i>.jpg``;
    returns counts.

    Picture ``i`` of a class depends only on (seed, class, i, whether the set has
    ``overripe``), not on ``n`` or the order of ``labels``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for label in labels:
        _check(label, size, domain, labels)
    out = Path(out)
    counts: dict[str, int] = {}
    with tqdm(total=n * len(labels), desc=f"render {domain}", unit="pic") as bar:
        for label in labels:
            index = ALL_LABELS.index(label)
            folder = out / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, index, i])
                picture = render_picture(rng, label, size, domain, labels)
                (folder / f"{label}_{i}.jpg").write_bytes(picture)
                bar.update(1)
            counts[label] = n
    return counts


ODD_KINDS: tuple[str, ...] = ("empty", "black", "washed", "two", "object")
_OBJECT_COLOURS = (  # BGR albedo: cardboard, white, blue, yellow, black, purple
    (0.3, 0.45, 0.55), (0.8, 0.8, 0.8), (0.6, 0.3, 0.1), (0.1, 0.7, 0.8), (0.05, 0.05, 0.05),
    (0.45, 0.15, 0.35),
)  # fmt: skip


def _object(rng: np.random.Generator, belt: np.ndarray, size: int) -> None:
    """Draw something that is not a fruit onto ``belt``, in place: a box or packet (rotated
    rectangle, with a printed stripe) or a lid/ball of a colour no fruit has, with a shadow."""
    s = float(size)
    colour = np.array(_OBJECT_COLOURS[int(rng.integers(len(_OBJECT_COLOURS)))], np.float32)
    colour = colour * np.float32(rng.uniform(0.8, 1.15))
    cx, cy = rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s
    mask = np.zeros((size, size), np.float32)
    if rng.random() < 0.6:  # a box or packet
        w, h = rng.uniform(0.2, 0.5) * s, rng.uniform(0.15, 0.4) * s
        box = cv2.boxPoints(((cx, cy), (w, h), rng.uniform(0, 180)))
        cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    else:  # a lid or ball
        r = rng.uniform(0.12, 0.3) * s
        cv2.circle(mask, (round(cx * 16), round(cy * 16)), round(r * 16), 1.0, -1, cv2.LINE_AA, 4)
    shift = (int(rng.integers(2, 8)) * size // 256, int(rng.integers(2, 8)) * size // 256)
    shadow = cv2.GaussianBlur(np.roll(mask, shift, axis=(0, 1)), (0, 0), 3.0 * size / 256)
    belt *= (1.0 - 0.45 * shadow)[:, :, None]
    xs, ys = _grid(size)
    shade = 0.75 + 0.35 * np.clip(1.0 - ((xs - cx) ** 2 + (ys - cy) ** 2) / (0.25 * s * s), 0, 1)
    surface = colour[None, None, :] * shade[:, :, None]
    if rng.random() < 0.5:  # a printed stripe
        stripe = np.abs(ys - cy - rng.uniform(-0.05, 0.05) * s) < rng.uniform(0.02, 0.06) * s
        surface[stripe] = colour[::-1] * 0.8
    belt += mask[:, :, None] * (surface - belt)


def render_odd(
    rng: np.random.Generator, kind: str, size: int = 256, domain: str = "train"
) -> np.ndarray:
    """A picture of kind ``kind`` (:data:`ODD_KINDS`) that is not one fruit as trained, BGR
    ``uint8``: ``empty`` belt, ``black`` frame (light off, lens covered), ``washed``-out
    frame (over-exposed, or glare), ``two`` fruits side by side, another ``object``."""
    if kind not in ODD_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {ODD_KINDS}")
    _check(LABELS[0], size, domain)
    gain, light = _lighting(rng, domain)
    belt = _belt(rng, size, domain)
    exposure, glare = 1.0, 0.0
    if kind == "two":
        for x in (0.3, 0.7):
            label = LABELS[int(rng.integers(len(LABELS)))]
            place = (x + rng.uniform(-0.04, 0.04), rng.uniform(0.35, 0.65), 0.75)
            _fruit(rng, belt, sample_ripeness(rng, label), size, domain, place)
    elif kind == "object":
        _object(rng, belt, size)
    elif kind in ("black", "washed"):
        if rng.random() < 0.7:
            label = LABELS[int(rng.integers(len(LABELS)))]
            _fruit(rng, belt, sample_ripeness(rng, label), size, domain)
        if kind == "black":
            exposure = rng.uniform(0.0, 0.06)
        elif rng.random() < 0.5:
            exposure = rng.uniform(3.0, 8.0)
        else:
            glare = rng.uniform(0.65, 0.9)
    image = _camera(rng, belt, gain * exposure, light, size, domain)
    if glare:
        image = (image * (1.0 - glare) + 245.0 * glare).astype(np.uint8)
    return image


def write_odd_dataset(
    out: Path, n: int, seed: int, size: int = 256, domain: str = "train"
) -> dict[str, int]:
    """Write ``n`` pictures of every :data:`ODD_KINDS` to ``out/<kind>/<kind>_<i>.jpg``."""
    out = Path(out)
    counts: dict[str, int] = {}
    for index, kind in enumerate(ODD_KINDS):
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, 100 + index, i])
            image = render_odd(rng, kind, size, domain)
            quality = int(rng.integers(60, 96))
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            (folder / f"{kind}_{i}.jpg").write_bytes(encoded.tobytes())
        counts[kind] = n
    return counts


REJECT_LABEL = "none"  # the training class of pictures that are not one fruit
REJECT_KINDS: tuple[str, ...] = ("empty", "several", "clutter", "flare")
_REJECT_WEIGHTS = (0.25, 0.35, 0.25, 0.15)


def _clutter(rng: np.random.Generator, belt: np.ndarray, size: int) -> None:
    """One to three things that are not fruit onto ``belt`` (float BGR albedo), in place:
    polygons, sticks, rings and leaves of any colour, each with a soft shadow. Drawn by
    another generator than the judging set's boxes and lids (:func:`_object`)."""
    s = float(size)
    for _ in range(int(rng.integers(1, 4))):
        mask = np.zeros((size, size), np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * s, rng.uniform(0.2, 0.8) * s
        kind = int(rng.integers(4))
        if kind == 0:  # an irregular polygon
            corners = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
            radii = rng.uniform(0.08, 0.3, corners) * s
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
            cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        elif kind == 1:  # a stick, a cable, a label strip
            length, width = rng.uniform(0.25, 0.8) * s, rng.uniform(0.02, 0.08) * s
            box = cv2.boxPoints(((cx, cy), (length, width), rng.uniform(0, 180)))
            cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        elif kind == 2:  # a ring, a rubber band, a tape roll
            radius = rng.uniform(0.08, 0.25) * s
            thickness = max(1, round(radius * rng.uniform(0.15, 0.45)))
            axes = (round(radius * 16), round(radius * rng.uniform(0.5, 1.0) * 16))
            cv2.ellipse(mask, (round(cx * 16), round(cy * 16)), axes, rng.uniform(0, 180), 0,
                        360, 1.0, thickness, cv2.LINE_AA, 4)  # fmt: skip
        else:  # a leaf: pointed at both ends
            length, width = rng.uniform(0.2, 0.5) * s, rng.uniform(0.06, 0.16) * s
            t = np.linspace(0, math.pi, 24)
            half = np.stack([length / 2 * np.cos(t), width / 2 * np.sin(t) ** 1.5], 1)
            outline = np.concatenate([half, half[::-1] * [1, -1]])
            a = rng.uniform(0, math.pi)
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            points = outline @ rot.T + [cx, cy]
            cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        hsv = np.uint8([[[rng.integers(180), rng.integers(256), rng.integers(40, 256)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255.0
        shift = (int(rng.integers(1, 8)) * size // 256, int(rng.integers(1, 8)) * size // 256)
        shadow = cv2.GaussianBlur(np.roll(mask, shift, axis=(0, 1)), (0, 0), 3.0 * size / 256)
        belt *= (1.0 - rng.uniform(0.2, 0.5) * shadow)[:, :, None]
        shade = 1.0 + _smooth_noise(rng, size, 4) * rng.uniform(0.02, 0.15)
        belt += mask[:, :, None] * (colour[None, None, :] * shade[:, :, None] - belt)


def render_reject(rng: np.random.Generator, size: int = 256, domain: str = "robust") -> np.ndarray:
    """A training picture of the reject class (:data:`REJECT_LABEL`), BGR ``uint8``: an
    ``empty`` belt, ``several`` fruits (two or three, of any classes), ``clutter`` (things
    that are not fruit) or a ``flare`` (a bright glare over most of a fruit picture)."""
    _check(LABELS[0], size, domain)
    kind = REJECT_KINDS[int(rng.choice(len(REJECT_KINDS), p=_REJECT_WEIGHTS))]
    gain, light = _lighting(rng, domain)
    belt = _belt(rng, size, domain)
    if kind == "several":
        count = int(rng.integers(2, 4))
        spots = (
            [(0.28, 0.5), (0.72, 0.5)] if count == 2 else [(0.27, 0.3), (0.73, 0.35), (0.5, 0.73)]
        )
        for x, y in spots:
            label = LABELS[int(rng.integers(len(LABELS)))]
            place = (
                x + rng.uniform(-0.05, 0.05),
                y + rng.uniform(-0.12, 0.12),
                rng.uniform(0.5, 0.85),
            )
            _fruit(rng, belt, sample_ripeness(rng, label), size, domain, place)
    elif kind == "clutter":
        _clutter(rng, belt, size)
    elif kind == "flare":
        label = LABELS[int(rng.integers(len(LABELS)))]
        _fruit(rng, belt, sample_ripeness(rng, label), size, domain)
    image = _camera(rng, belt, gain, light, size, domain)
    if kind == "flare":  # a glare blob over most of the frame
        xs, ys = _grid(size)
        fx, fy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
        reach = rng.uniform(0.5, 1.0) * size
        blob = np.exp(-((xs - fx) ** 2 + (ys - fy) ** 2) / (reach * reach))
        strength = rng.uniform(0.75, 0.97) * blob[:, :, None]
        image = (image * (1.0 - strength) + 250.0 * strength).astype(np.uint8)
    return image


def write_reject_dataset(
    out: Path, n: int, seed: int, size: int = 256, domain: str = "robust"
) -> dict[str, int]:
    """Write ``n`` reject-class pictures to ``out/none/none_<i>.jpg`` (:func:`render_reject`)."""
    folder = Path(out) / REJECT_LABEL
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng([seed, 200, i])
        image = render_reject(rng, size, domain)
        quality = int(rng.integers(60, 96))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        (folder / f"{REJECT_LABEL}_{i}.jpg").write_bytes(encoded.tobytes())
    return {REJECT_LABEL: n}
