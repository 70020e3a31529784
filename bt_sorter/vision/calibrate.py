"""Temperature scaling: make the classifier's confidence mean what it says.

    python -m bt_sorter.vision.calibrate --model models/resnet18_tomato.pth --data DIR \\
        [--write] [--png reliability.png] [--json calibration.json] [--device auto]

One scalar ``T`` divides the logits before the softmax (Guo et al., "On Calibration of Modern
Neural Networks", 2017). It is fitted by minimising the negative log-likelihood on labelled
pictures the network did not train on (the validation split at the end of training, or a
freshly rendered or collected folder here); the predicted label never changes, only the
confidence. ``T`` is stored in the checkpoint's ``meta.temperature`` and every tool that
answers with the model (in-process back end, service, evaluation) applies it.

The expected calibration error (ECE) is the mean gap between confidence and accuracy over
equal-width confidence bins, weighted by how many pictures fall in each; the reliability
diagram draws accuracy against confidence per bin (a calibrated model lies on the diagonal).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bt_sorter.argtypes import fraction, positive_int
from bt_sorter.vision.dataset import PictureDataset, scan_folder
from bt_sorter.vision.device import (
    DEVICE_CHOICES,
    DevicePlan,
    autocast,
    device_plan,
    prepare_model,
    to_device,
)
from bt_sorter.vision.torch_backend import load_model, softmax, write_meta

ECE_BINS = 15
T_RANGE = (0.05, 20.0)  # temperatures searched
MIN_MISTAKES = 5  # fewer wrong answers than this: the data cannot show over-confidence


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(z)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises :func:`nll`, searched in :data:`T_RANGE`.

    The NLL is convex in ``1 / T``, so a golden-section search over ``1 / T`` finds the global
    minimum. On pictures with fewer than :data:`MIN_MISTAKES` wrong answers the NLL keeps
    falling as ``T`` shrinks (every answer is right, so "more sure" always scores better):
    such data says nothing about over-confidence, so then ``T`` is not taken below 1.
    """
    if len(logits) == 0:
        raise ValueError("no pictures to fit a temperature on")
    targets = np.asarray(targets, dtype=np.int64)
    mistakes = int((np.asarray(logits).argmax(axis=1) != targets).sum())
    low = T_RANGE[0] if mistakes >= MIN_MISTAKES else 1.0
    lo, hi = 1.0 / T_RANGE[1], 1.0 / low
    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def cost(inverse: float) -> float:
        return nll(logits, targets, 1.0 / inverse)

    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = cost(a), cost(b)
    for _ in range(80):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = cost(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = cost(b)
    return float(1.0 / ((lo + hi) / 2.0))


def reliability_bins(
    confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width confidence bin: its range, count, mean confidence and accuracy."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "confidence": float(confidences[mask].mean()) if n else 0.0,
                "accuracy": float(correct[mask].mean()) if n else 0.0,
            }
        )
    return out


def expected_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: sum over bins of (share of pictures) x |accuracy - mean confidence|."""
    total = len(confidences)
    if total == 0:
        return 0.0
    return float(
        sum(
            b["count"] / total * abs(b["accuracy"] - b["confidence"])
            for b in reliability_bins(confidences, correct, bins)
        )
    )


def calibration_report(
    logits: np.ndarray, targets: np.ndarray, temperature: float
) -> dict[str, Any]:
    """NLL, ECE, accuracy and reliability bins at T = 1 and at ``temperature``."""
    targets = np.asarray(targets, dtype=np.int64)
    mistakes = int((np.asarray(logits).argmax(axis=1) != targets).sum()) if len(targets) else 0
    report: dict[str, Any] = {
        "temperature": temperature,
        "pictures": len(targets),
        "mistakes": mistakes,
    }
    for name, t in (("before", 1.0), ("after", temperature)):
        probs = softmax(logits, t)
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == targets
        report[name] = {
            "nll": nll(logits, targets, t),
            "ece": expected_calibration_error(confidence, correct),
            "accuracy": float(correct.mean()) if len(correct) else 0.0,
            "mean_confidence": float(confidence.mean()) if len(confidence) else 0.0,
            "bins": reliability_bins(confidence, correct),
        }
    return report


def plot_reliability(report: dict[str, Any], path: Path, title: str = "") -> None:
    """Reliability diagram (accuracy vs confidence per bin) before and after scaling, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, name in zip(axes, ("before", "after"), strict=True):
        part = report[name]
        bins = [b for b in part["bins"] if b["count"]]
        width = part["bins"][0]["high"] - part["bins"][0]["low"]
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width,
               align="edge", edgecolor="black", alpha=0.7, label="accuracy")  # fmt: skip
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3",
                label="(mean confidence, accuracy)")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
        t = 1.0 if name == "before" else report["temperature"]
        ax.set_title(f"{name}: T = {t:.3f}, ECE = {part['ece']:.4f}")
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        for b in bins:
            ax.text(b["low"] + width / 2, 0.02, str(b["count"]), ha="center", fontsize=6,
                    rotation=90)  # fmt: skip
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(title or f"reliability on {report['pictures']} pictures (counts at the bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def collect_logits(
    model: torch.nn.Module, loader: DataLoader[Any], plan: DevicePlan
) -> tuple[np.ndarray, np.ndarray]:
    """The raw (un-scaled) float32 logits of ``model`` over ``loader``, and the targets."""
    model.eval()
    logits: list[np.ndarray] = []
    targets: list[int] = []
    with torch.inference_mode():
        for images, target in loader:
            with autocast(plan):
                out = model(to_device(images, plan))
            logits.append(out.float().cpu().numpy())
            targets.extend(int(t) for t in target)
    if not logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(logits), np.asarray(targets, dtype=np.int64)


def fit_min_logit(logits: np.ndarray, share: float) -> float:
    """The floor under which a largest logit means "unlike any trained picture": the
    ``share`` quantile of the largest logits on labelled in-distribution pictures, so that
    about ``share`` of such pictures are doubted."""
    if len(logits) == 0:
        raise ValueError("no pictures to fit a logit floor on")
    if not 0.0 <= share < 0.5:
        raise ValueError(f"floor share must be in [0, 0.5), got {share}")
    return float(np.quantile(np.asarray(logits, dtype=np.float64).max(axis=1), share))


def write_temperature(path: Path, temperature: float, min_logit: float | None = None) -> None:
    """Store ``temperature`` (and ``min_logit`` when given) in the checkpoint ``path``'s
    metadata (:func:`write_meta`: a new temperature removes ``meta.threshold``)."""
    values: dict[str, float] = {"temperature": float(temperature)}
    if min_logit is not None:
        values["min_logit"] = float(min_logit)
    write_meta(path, values)


def calibrate_folder(
    model_path: Path,
    data: Path,
    device: str = "cpu",
    threads: int = 2,
    batch_size: int = 64,
    floor_share: float | None = None,
) -> dict[str, Any]:
    """Fit a temperature for ``model_path`` on every picture under ``data`` (and, with
    ``floor_share``, the logit floor :func:`fit_min_logit`); the report."""
    torch.set_num_threads(threads)
    plan = device_plan(device)
    model, info = load_model(model_path)
    model = prepare_model(model, plan)
    folders, samples = scan_folder(data)
    missing = [f for f in folders if f not in info.classes]
    if missing:
        raise ValueError(f"folders {missing} are not labels of the model {list(info.classes)}")
    remap = [info.classes.index(f) for f in folders]
    loader = DataLoader(
        PictureDataset(samples, info.input_size, train=False), batch_size=batch_size,
        pin_memory=plan.pin_memory,
    )  # fmt: skip
    logits, targets = collect_logits(model, loader, plan)
    targets = np.asarray([remap[t] for t in targets], dtype=np.int64)
    temperature = fit_temperature(logits, targets)
    report = calibration_report(logits, targets, temperature)
    report.update({"model": str(model_path), "data": str(data), "previous": info.temperature})
    if floor_share is not None:
        report["min_logit"] = fit_min_logit(logits, floor_share)
        report["floor_share"] = floor_share
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (.pth)")
    parser.add_argument("--data", type=Path, required=True,
                        help="labelled pictures the model did not train on")  # fmt: skip
    parser.add_argument("--write", action="store_true", help="store the temperature in --model")
    parser.add_argument("--png", type=Path, default=None, help="reliability diagram")
    parser.add_argument("--json", type=Path, default=None, help="the report as JSON")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--floor-share", type=fraction, default=None,
                        help="also fit the logit floor (meta.min_logit) doubting this share of "
                        "the pictures (ones like the trained ones have larger logits)")  # fmt: skip
    parser.add_argument("--keep-temperature", action="store_true",
                        help="--write keeps the temperature (writes the logit floor)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = calibrate_folder(args.model, args.data, args.device, args.threads,
                                  floor_share=args.floor_share)  # fmt: skip
        if args.write:
            temperature = report["previous"] if args.keep_temperature else report["temperature"]
            write_temperature(args.model, temperature, report.get("min_logit"))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    before, after = report["before"], report["after"]
    print(f"model {args.model} on {args.data}: {report['pictures']} pictures, "
          f"accuracy {after['accuracy']:.4f}")  # fmt: skip
    print(f"temperature {report['temperature']:.4f} (was {report['previous']:.4f} in the file); "
          f"{report['mistakes']} wrong answers in the data")  # fmt: skip
    if report["mistakes"] < MIN_MISTAKES:
        print(f"  fewer than {MIN_MISTAKES} wrong answers: T was not taken below 1")
    print(f"ECE  T=1: {before['ece']:.4f}   T={report['temperature']:.3f}: {after['ece']:.4f}")
    print(f"NLL  T=1: {before['nll']:.4f}   T={report['temperature']:.3f}: {after['nll']:.4f}")
    print(f"mean confidence T=1: {before['mean_confidence']:.4f}   "
          f"after: {after['mean_confidence']:.4f}")  # fmt: skip
    if "min_logit" in report:
        print(f"logit floor {report['min_logit']:.4f} (doubts {report['floor_share']} of these)")
    if args.write:
        kept = report["previous"] if args.keep_temperature else report["temperature"]
        print(f"wrote temperature {kept:.4f} into {args.model}")
    if args.png:
        plot_reliability(report, args.png)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
