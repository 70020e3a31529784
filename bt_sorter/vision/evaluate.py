"""Score a model on a picture folder: accuracy, per-class precision/recall, confusion, latency.

    python -m bt_sorter.vision.evaluate --model models/resnet18_tomato.pth --data DIR
        [--data DIR2 ...] [--json FILE] [--device auto|cpu|cuda]
        [--target-risk 0.003 --min-acted 0.97] [--quiet]

Each folder has one sub-folder per class; folder names are matched to the model's labels by
name (a folder the model has no label for is an error). Pictures go through the same decoding
and preprocessing as the line's classifier. Latency is per picture at batch 1 (the line's call);
``--batch N`` scores N pictures per forward pass (faster; latency is then a share of a batch).

With several folders (one per domain: a camera, a light, a belt), the risk–coverage report
follows the per-folder scores: for each ``sorting.confidence_threshold``, per domain, the share
of pictures acted on (the rest go to bin 1) and the share of those that are wrong, and the
threshold the rule picks: the lowest one at which every domain has at most ``--target-risk``
wrong among the pictures acted on; it says whether every domain then has at least
``--min-acted`` acted on. ``--write-threshold`` stores that threshold in the checkpoint
(``meta.threshold``), which a config naming no ``sorting.confidence_threshold`` acts on.
A picture the classifier doubts (:attr:`Prediction.doubt`: not one fruit as trained) is never
acted on, whatever the threshold.
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

from bt_sorter.argtypes import fraction, positive_int
from bt_sorter.vision.classifier import Prediction
from bt_sorter.vision.dataset import Sample, scan_folder
from bt_sorter.vision.device import DEVICE_CHOICES
from bt_sorter.vision.preprocess import picture_to_input


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


THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
TARGET_RISK = 0.003  # at most this share wrong among the pictures acted on, every domain
MIN_ACTED = 0.97  # with at least this share of pictures acted on, every domain


def threshold_table(
    confidences: Sequence[float],
    correct: Sequence[bool],
    thresholds: Sequence[float] = THRESHOLDS,
    doubted: Sequence[bool] | None = None,
) -> list[dict[str, float]]:
    """Per confidence threshold: the share of pictures answered (the rest go to bin 1 as
    ``unknown``) and the share of wrong labels among those answered (missorts). A picture
    in ``doubted`` is never answered."""
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    never = np.zeros(len(conf), bool) if doubted is None else np.asarray(doubted, dtype=bool)
    rows = []
    for t in thresholds:
        kept = (conf >= t) & ~never
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


def choose_threshold(
    tables: dict[str, list[dict[str, float]]],
    target_risk: float = TARGET_RISK,
    min_acted: float = MIN_ACTED,
) -> dict[str, Any]:
    """The rule: the lowest threshold of the tables (one per domain, same thresholds) at
    which every domain has at most ``target_risk`` wrong among the answered pictures.

    Returns ``{"threshold", "meets_risk", "meets_acted", "worst_risk", "least_acted"}``;
    ``threshold`` is None when no threshold meets the risk on every domain.
    """
    rows_by_t: dict[float, list[dict[str, float]]] = {}
    for rows in tables.values():
        for row in rows:
            rows_by_t.setdefault(row["threshold"], []).append(row)
    for t in sorted(rows_by_t):
        rows = rows_by_t[t]
        worst = max(r["wrong_among_answered"] for r in rows)
        if worst <= target_risk:
            least = min(r["answered"] for r in rows)
            return {"threshold": t, "meets_risk": True, "meets_acted": least >= min_acted,
                    "worst_risk": worst, "least_acted": least}  # fmt: skip
    return {"threshold": None, "meets_risk": False, "meets_acted": False,
            "worst_risk": None, "least_acted": None}  # fmt: skip


def format_risk_coverage(tables: dict[str, list[dict[str, float]]]) -> str:
    """Per threshold (rows) and domain (columns): % acted on / % wrong among those (count)."""
    names = list(tables)
    width = max(21, *(len(n) + 2 for n in names))
    lines = ["threshold " + "".join(n.rjust(width) for n in names),
             "          " + "".join("acted% / wrong% (n)".rjust(width) for _ in names)]  # fmt: skip
    for i, row in enumerate(tables[names[0]]):
        cells = []
        for n in names:
            r = tables[n][i]
            cells.append(f"{100 * r['answered']:.1f} / {100 * r['wrong_among_answered']:.2f} "
                         f"({r['wrong']})".rjust(width))  # fmt: skip
        lines.append(f"{row['threshold']:<10}" + "".join(cells))
    return "\n".join(lines)


def evaluate_folder(
    model_path: Path, data: Path, threads: int = 2, device: str = "cpu", batch: int = 1
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
    doubted: list[bool] = []
    doubts: dict[str, int] = {}
    mistakes: list[dict[str, Any]] = []
    if samples:  # warm up once so the first call's set-up cost is not counted as latency
        classifier.classify(samples[0].path.read_bytes())

    def _score(sample: Sample, prediction: Prediction) -> None:
        t = classes.index(folders[sample.target])
        p = classes.index(prediction.label)
        true.append(t)
        pred.append(p)
        confidences.append(prediction.confidence)
        doubted.append(bool(prediction.doubt))
        if prediction.doubt:
            doubts[prediction.doubt] = doubts.get(prediction.doubt, 0) + 1
        if t != p:
            mistakes.append(
                {"path": str(sample.path), "true": classes[t], "predicted": prediction.label,
                 "doubt": prediction.doubt,
                 "confidence": round(prediction.confidence, 4)}
            )  # fmt: skip

    bar = tqdm(total=len(samples), desc="evaluate", unit="pic")
    for first in range(0, len(samples), batch):
        chunk = samples[first : first + batch]
        pictures = [sample.path.read_bytes() for sample in chunk]
        start = time.perf_counter()
        if batch == 1:  # the line's own call: decode, preprocess, forward
            predictions = [classifier.classify(pictures[0])]
        else:
            size = classifier.info.input_size
            inputs = [picture_to_input(data, size, classifier.limits) for data in pictures]
            predictions = classifier.predict_inputs(inputs)
        latencies.extend([(time.perf_counter() - start) * 1000.0 / len(chunk)] * len(chunk))
        bar.update(len(chunk))
        for sample, prediction in zip(chunk, predictions, strict=True):
            _score(sample, prediction)
    bar.close()
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
            confidences, [t == p for t, p in zip(true, pred, strict=True)], THRESHOLDS, doubted
        ),
        "doubted": doubts,
        "classes": classes,
        "per_class": per_class(cm, classes),
        "confusion": cm.tolist(),
        "latency_ms": {
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "threads": threads,
            "batch": batch,
        },
        "mistakes": mistakes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (.pth)")
    parser.add_argument("--data", type=Path, required=True, action="append",
                        help="folder of class sub-folders; repeat for one per domain")  # fmt: skip
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto: CUDA if PyTorch sees it, else the CPU")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    parser.add_argument(
        "--target-risk",
        type=fraction,
        default=TARGET_RISK,
        help="the rule: most wrong among the pictures acted on, every domain",
    )
    parser.add_argument(
        "--min-acted",
        type=fraction,
        default=MIN_ACTED,
        help="the rule: least share of pictures acted on, every domain",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=1,
        help="pictures per forward pass (1: the line's call, with decoding)",
    )
    parser.add_argument("--quiet", action="store_true", help="only the risk-coverage report")
    parser.add_argument(
        "--write-threshold",
        action="store_true",
        help="store the rule's threshold in --model (meta.threshold): a config that names "
        "no sorting.confidence_threshold acts on it; run it on the choosing domains only",
    )
    args = parser.parse_args(argv)
    results = []
    for data in args.data:
        try:
            results.append(
                evaluate_folder(
                    data=data,
                    model_path=args.model,
                    threads=args.threads,
                    device=args.device,
                    batch=args.batch,
                )
            )
        except Exception as exc:
            print(f"error: {data}: {exc}", file=sys.stderr)
            return 2
        if not args.quiet:
            _print_result(results[-1])
    tables = {Path(r["data"]).name or r["data"]: r["thresholds"] for r in results}
    rule = choose_threshold(tables, args.target_risk, args.min_acted)
    print(f"risk-coverage of {args.model} (temperature {results[0]['temperature']:.4f})")
    print(format_risk_coverage(tables))
    for name, r in zip(tables, results, strict=True):
        print(f"  {name}: accuracy {r['accuracy']:.4f} of {r['pictures']}; doubted {r['doubted']}")
    if rule["threshold"] is None:
        print(f"rule: no threshold keeps every domain at <= {100 * args.target_risk:.2f} % wrong")
    else:
        verdict = "meets" if rule["meets_acted"] else "misses"
        print(
            f"rule: threshold {rule['threshold']} (lowest with <= {100 * args.target_risk:.2f} %"
            f" wrong on every domain; worst {100 * rule['worst_risk']:.2f} %); least acted on "
            f"{100 * rule['least_acted']:.1f} % ({verdict} {100 * args.min_acted:.0f} %)"
        )
    if args.write_threshold:
        from bt_sorter.vision.torch_backend import write_meta

        if rule["threshold"] is None:
            print(f"error: no threshold to write into {args.model}", file=sys.stderr)
            return 2
        write_meta(args.model, {"threshold": rule["threshold"]})
        print(f"wrote threshold {rule['threshold']} into {args.model} (meta.threshold)")
    if args.json:
        report = {"results": results, "rule": rule, "target_risk": args.target_risk,
                  "min_acted": args.min_acted}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _print_result(result: dict[str, Any]) -> None:
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
    print(f"latency per picture, batch {lat['batch']}, {lat['threads']} threads: "
          f"p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms")  # fmt: skip
    for m in result["mistakes"][:20]:
        print(f"  wrong: {m['path']} true={m['true']} predicted={m['predicted']} "
              f"conf={m['confidence']}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
