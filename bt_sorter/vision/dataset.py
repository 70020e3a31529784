"""Picture folders (one sub-folder per class), a seeded train/val split, and augmentation.

Classes are the sub-folder names in sorted order (as torchvision's ``ImageFolder`` does), so
class index ``i`` means the ``i``-th name. Augmentation is OpenCV/NumPy only and never
changes what decides the label (the fruit's colour relative to the scene): flips, rotation,
a little scale and shift, brightness/contrast and a mild light-colour cast over the whole
picture, blur and noise. Every picture goes through :func:`preprocess` afterwards, the same
function the classifier and the service use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from bt_sorter.vision.classifier import BadPictureError
from bt_sorter.vision.preprocess import decode_picture, preprocess

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class Sample:
    """One picture file and its class index."""

    path: Path
    target: int


def scan_folder(root: Path) -> tuple[list[str], list[Sample]]:
    """Classes (sorted sub-folder names) and every picture under them.

    Raises ``ValueError`` if ``root`` has no class folders or a class has no pictures.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders")
    samples: list[Sample] = []
    for target, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {root / name} has no pictures")
        samples.extend(Sample(p, target) for p in files)
    return classes, samples


def scan_folders(roots: Sequence[Path]) -> tuple[list[str], list[Sample]]:
    """:func:`scan_folder` over several folders, merged by class name: the classes are the
    sorted union of their sub-folder names (an operator's labelled pictures beside a replay
    set of the old data)."""
    scans = [scan_folder(root) for root in roots]
    if not scans:
        raise ValueError("no data folder given")
    classes = sorted({name for names, _ in scans for name in names})
    samples = [
        Sample(sample.path, classes.index(names[sample.target]))
        for names, found in scans
        for sample in found
    ]
    return classes, samples


def split_samples(
    samples: Sequence[Sample], val_split: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """A seeded, per-class (stratified) split into train and validation samples."""
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for target in sorted({s.target for s in samples}):
        group = [s for s in samples if s.target == target]
        order = rng.permutation(len(group))
        n_val = round(len(group) * val_split)
        val.extend(group[i] for i in order[:n_val])
        train.extend(group[i] for i in order[n_val:])
    return train, val


@dataclass(frozen=True)
class Jitter:
    """Ranges of the photometric augmentation."""

    brightness: tuple[float, float] = (0.6, 1.5)  # gain on the whole picture
    cast: float = 0.12  # per-channel gain in 1 ± cast: a light-colour cast over the whole scene
    contrast: float = 0.2  # contrast in 1 ± contrast
    stretch: float = 0.0  # one axis (any direction) scaled by 1 - stretch..1: fruit shape
    jpeg: float = 0.0  # share of pictures re-encoded as JPEG at quality 35..95


def augment(
    image: np.ndarray, rng: np.random.Generator, jitter: Jitter | None = None
) -> np.ndarray:
    """A randomly flipped, rotated, re-lit and blurred copy of a BGR ``uint8`` picture."""
    jitter = jitter or Jitter()
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    angle = rng.uniform(-180.0, 180.0)
    scale = rng.uniform(0.85, 1.15)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.08, 0.08, 2) * (w, h)
    if jitter.stretch > 0.0:  # squeeze along the picture's y axis after the rotation
        squeeze = np.array([[1.0, 0.0], [0.0, rng.uniform(1.0 - jitter.stretch, 1.0)]])
        matrix = squeeze @ matrix
        matrix[1, 2] += (1.0 - squeeze[1, 1]) * h / 2
    image = cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )  # fmt: skip
    out = image.astype(np.float32)
    brightness = rng.uniform(*jitter.brightness)
    cast = 1.0 + rng.uniform(-jitter.cast, jitter.cast, 3).astype(np.float32)
    contrast = rng.uniform(1.0 - jitter.contrast, 1.0 + jitter.contrast)
    mean = out.mean()
    out = ((out - mean) * contrast + mean) * brightness * cast[None, None, :]
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5) * w / 256)
    if rng.random() < 0.3:
        out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(1.0, 6.0)
    picture = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if jitter.jpeg > 0.0 and rng.random() < jitter.jpeg:
        quality = int(rng.integers(35, 96))
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # read back as every picture is: one decoding path (header check first)
            picture = decode_picture(encoded.tobytes())
    return picture


class PictureDataset(Dataset[tuple[torch.Tensor, int]]):
    """Samples as preprocessed tensors; with ``train`` set each read is freshly augmented.

    The JPEG bytes are read once and kept in memory; decoding happens on every read.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        input_size: int,
        train: bool,
        jitter: Jitter | None = None,
    ) -> None:
        self.samples = list(samples)
        self.jitter = jitter or Jitter()
        self.input_size = input_size
        self.train = train
        self._bytes: list[bytes | None] = [None] * len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        """The decoded BGR picture of sample ``index`` (raises BadPictureError with its path)."""
        data = self._bytes[index]
        if data is None:
            data = self.samples[index].path.read_bytes()
            self._bytes[index] = data
        try:
            return decode_picture(data)
        except BadPictureError as exc:
            raise BadPictureError(f"{self.samples[index].path}: {exc}") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.image(index)
        if self.train:
            # Seeded through torch's generator, so --seed fixes the augmentation too.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            image = augment(image, rng, self.jitter)
        tensor = torch.from_numpy(preprocess(image, self.input_size))
        return tensor, self.samples[index].target

    def targets(self) -> list[int]:
        return [s.target for s in self.samples]
