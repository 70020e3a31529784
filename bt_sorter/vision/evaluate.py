"""Score a model on a picture folder: accuracy, per-class precision/recall, confusion, latency.

    python -m bt_sorter.vision.evaluate --model models/resnet18_tomato.pth --data DIR [--json FILE]
        [--device auto|cpu|cuda]

The folder has one sub-folder per class; folder names are matched to the model's labels by
name (a folder the model has no label for is an error). Pictures go through the same decoding
and preprocessing as the line's classifier. Latency is per picture at batch 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bt_sorter.argtypes import positive_int
from bt_sorter.vision.dataset import scan_folder
from bt_sorter.vision.device import DEVICE_CHOICES


def confusion_matrix(true: Sequence[int], pred: Sequence[int], n: int) -> np.ndarray:
    """(n, n) counts; row = true class, column = predicted class."""
    cm = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(true, pred, strict=True):
        cm[t, p] += 1
    return cm


def per_class(cm: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and support of every class from a confusion matrix."""
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(classes):
        tp = float(cm[i, i])
        predicted = float(cm[:, i].sum())
        actual = float(cm[i, :].sum())
        out[name] = {
            "precision": tp / predicted if predicted else 0.0,
            "recall": tp / actual if actual else 0.0,
            "support": int(actual),
        }
    return out


def format_confusion(cm: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as an aligned text table (rows true, columns predicted)."""
    width = max(9, *(len(c) for c in classes)) + 1
    lines = ["true \\ pred".ljust(width) + "".join(c.rjust(width) for c in classes)]
    for i, name in enumerate(classes):
        lines.append(name.ljust(width) + "".join(str(v).rjust(width) for v in cm[i]))
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    """Save the confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if cm[i, j] > top / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def threshold_table(
    confidences: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, float]]:
    """Per confidence threshold: the share of pictures answered (the rest go to bin 1 as
    ``unknown``) and the share of wrong labels among those answered (missorts)."""
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    rows = []
    for t in thresholds:
        kept = conf >= t
        n = int(kept.sum())
        rows.append(
            {
                "threshold": float(t),
                "answered": n / len(conf) if len(conf) else 0.0,
                "wrong_among_answered": float((~right[kept]).mean()) if n else 0.0,
                "wrong": int((~right[kept]).sum()),
            }
        )
    return rows


def evaluate_folder(
    model_path: Path, data: Path, threads: int = 2, device: str = "cpu"
) -> dict[str, Any]:
    """Classify every picture under ``data`` one at a time and return the scores.

    Confidences are the model's calibrated ones (its stored temperature); ``ece`` is their
    expected calibration error on this folder.
    """
    from bt_sorter.vision.calibrate import expected_calibration_error
    from bt_sorter.vision.torch_backend import TorchClassifier

    classifier = TorchClassifier(model_path, threads, device)
    classes = list(classifier.classes)
    folders, samples = scan_folder(data)
    missing = [f for f in folders if f not in classes]
    if missing:
        raise ValueError(f"folders {missing} are not labels of the model {classes}")
    true: list[int] = []
    pred: list[int] = []
    latencies: list[float] = []
    confidences: list[float] = []
    mistakes: list[dict[str, Any]] = []
    if samples:  # warm up once so the first call's set-up cost is not counted as latency
        classifier.classify(samples[0].path.read_bytes())
    for sample in tqdm(samples, desc="evaluate", unit="pic"):
        data_bytes = sample.path.read_bytes()
        start = time.perf_counter()
        prediction = classifier.classify(data_bytes)
        latencies.append((time.perf_counter() - start) * 1000.0)
        t = classes.index(folders[sample.target])
        p = classes.index(prediction.label)
        true.append(t)
        pred.append(p)
        confidences.append(prediction.confidence)
        if t != p:
            mistakes.append(
                {"path": str(sample.path), "true": classes[t], "predicted": prediction.label,
                 "confidence": round(prediction.confidence, 4)}
            )  # fmt: skip
    cm = confusion_matrix(true, pred, len(classes))
    latencies.sort()
    return {
        "model": str(model_path),
        "data": str(data),
        "input_size": classifier.info.input_size,
        "pictures": len(samples),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "temperature": classifier.info.temperature,
        "ece": expected_calibration_error(
            np.asarray(confidences), np.asarray(true) == np.asarray(pred)
        ),
        "device": str(classifier.plan.device),
        "thresholds": threshold_table(
            confidences, [t == p for t, p in zip(true, pred, strict=True)]
        ),
        "classes": classes,
        "per_class": per_class(cm, classes),
        "confusion": cm.tolist(),
        "latency_ms": {
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "threads": threads,
        },
        "mistakes": mistakes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (.pth)")
    parser.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto: CUDA if PyTorch sees it, else the CPU")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = parser.parse_args(argv)
    try:
        result = evaluate_folder(args.model, args.data, args.threads, args.device)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = result["classes"]
    print(f"model {result['model']} (input {result['input_size']} px) on {result['data']}")
    print(f"pictures {result['pictures']}  accuracy {result['accuracy']:.4f}  "
          f"ECE {result['ece']:.4f} (temperature {result['temperature']:.4f}, "
          f"{result['device']})")  # fmt: skip
    for name, scores in result["per_class"].items():
        print(
            f"  {name:<10} precision {scores['precision']:.4f}  recall {scores['recall']:.4f}"
            f"  n={scores['support']}"
        )
    print(format_confusion(np.array(result["confusion"]), classes))
    print("sorting.confidence_threshold  answered  wrong among answered (missorts)")
    for row in result["thresholds"]:
        print(f"  {row['threshold']:<27} {row['answered']:>8.4f}  "
              f"{row['wrong_among_answered']:.4f} ({row['wrong']})")  # fmt: skip
    lat = result["latency_ms"]
    print(f"latency per picture, batch 1, {lat['threads']} threads: "
          f"p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms")  # fmt: skip
    for m in result["mistakes"][:20]:
        print(f"  wrong: {m['path']} true={m['true']} predicted={m['predicted']} "
              f"conf={m['confidence']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
