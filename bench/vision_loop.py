"""The learning loop, measured end to end on a camera the model does badly on.

    python bench/vision_loop.py --model models/resnet18_tomato.pth --domain sodium \\
        --labelled 200 --out /tmp/loop --judge /tmp/data/sodium_22 --judge /tmp/data/heldout

1. **The line.** Pictures of ``--domain`` (the renderer, ``--seed``) go through the line's own
   path (:class:`TorchClassifier`, ``apply_threshold`` at ``--threshold``); every picture it
   sends to bin 1 (doubted, or under the threshold) is handed to a :class:`PictureShelf` in
   ``<out>/kept/<best guess>/``, exactly as ``classifier.keep_doubted`` keeps them, until
   ``--labelled`` are kept. ``--pick any`` keeps every picture instead (an operator labelling
   whatever comes).
2. **The operator** moves each kept picture to ``<out>/labelled/<true class>/`` (here the
   renderer knows the class; on a real line a person does it).
3. **A replay set** of the old data so the model keeps what it knew: ``--replay`` pictures per
   class of the ``robust`` and ``train`` domains and of the reject class, rendered with
   seeds no judging set uses.
4. **Fine-tune**: ``python -m bt_sorter.vision.train --init MODEL --data <out>/labelled --data
   <out>/replay ...`` in a child process; its CPU seconds come from the child's rusage.
5. **Judge** before and after on every ``--judge`` folder: accuracy, and at the threshold the
   share acted on and the share of those that are wrong.

Prints one line per step and a final table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bt_sorter.sim.render import (  # noqa: E402
    ALL_DOMAINS,
    LABELS,
    render_picture,
    write_dataset,
    write_reject_dataset,
)
from bt_sorter.vision.classifier import UNKNOWN, apply_threshold  # noqa: E402
from bt_sorter.vision.evaluate import evaluate_folder  # noqa: E402
from bt_sorter.vision.shelf import PictureShelf  # noqa: E402
from bt_sorter.vision.torch_backend import TorchClassifier  # noqa: E402

REPLAY_SEEDS = {"robust": 61, "train": 62, "reject": 63}  # no judging set uses these


def collect(args: argparse.Namespace, kept: Path) -> tuple[dict[str, str], int]:
    """Step 1: run the domain's pictures through the line's path and keep those it sends to
    bin 1 (or all, with ``--pick any``); returns (kept file -> true class, pictures seen)."""
    classifier = TorchClassifier(args.model, args.threads)
    shelf = PictureShelf(kept, max_files=args.labelled, what="doubted")
    truth: dict[str, str] = {}
    seen = 0
    try:
        while len(truth) < args.labelled and seen < args.stream:
            label = LABELS[seen % len(LABELS)]
            data = render_picture(np.random.default_rng([args.seed, seen]), label, 256, args.domain)
            seen += 1
            prediction = classifier.classify(data)
            if (
                args.pick == "doubted"
                and apply_threshold(prediction, args.threshold).label != UNKNOWN
            ):
                continue
            path = shelf.offer(prediction.label, f"item{seen}", data)
            if path is not None:
                truth[str(path)] = label
    finally:
        shelf.close()
    return truth, seen


def label_by_operator(truth: dict[str, str], labelled: Path, repeat: int) -> dict[str, int]:
    """Step 2: each kept picture to ``labelled/<true class>/``; returns counts per class.
    ``repeat`` > 1 links each picture that many times (its weight against the replay set;
    augmentation makes every pass a different picture)."""
    counts = dict.fromkeys(LABELS, 0)
    for path, label in truth.items():
        (labelled / label).mkdir(parents=True, exist_ok=True)
        target = labelled / label / Path(path).name
        shutil.move(path, target)
        for copy in range(1, repeat):
            (target.with_name(f"{target.stem}_{copy}{target.suffix}")).hardlink_to(target)
        counts[label] += 1
    return counts


def render_replay(replay: Path, n: int) -> None:
    """Step 3: the old data, ``n`` pictures per class of two training domains and the reject
    class (``2 n`` of it), in one folder per class."""
    for domain in ("robust", "train"):
        part = replay.parent / f"replay_{domain}"
        write_dataset(part, n, REPLAY_SEEDS[domain], 256, domain)
        for label in LABELS:
            target = replay / label
            target.mkdir(parents=True, exist_ok=True)
            for file in (part / label).iterdir():
                file.rename(target / f"{domain}_{file.name}")
    part = replay.parent / "replay_reject"
    write_reject_dataset(part, 2 * n, REPLAY_SEEDS["reject"], 256, "robust")
    (part / "none").rename(replay / "none")


def judge(model: Path, folders: list[Path], threshold: float, threads: int) -> dict[str, Any]:
    """Step 5: accuracy and, at ``threshold``, acted on / wrong among acted on, per folder."""
    out = {}
    for folder in folders:
        result = evaluate_folder(model, folder, threads, "cpu", batch=32)
        row = next(r for r in result["thresholds"] if r["threshold"] == threshold)
        out[folder.name] = {
            "accuracy": result["accuracy"],
            "acted": row["answered"],
            "wrong_among_acted": row["wrong_among_answered"],
            "pictures": result["pictures"],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "resnet18_tomato.pth")
    parser.add_argument("--domain", default="sodium", choices=ALL_DOMAINS)
    parser.add_argument("--seed", type=int, default=41, help="the line's pictures (not a judge's)")
    parser.add_argument("--labelled", type=int, default=200, help="pictures the operator labels")
    parser.add_argument("--stream", type=int, default=5000, help="most pictures the line shows")
    parser.add_argument("--pick", choices=("doubted", "any"), default="doubted")
    parser.add_argument("--threshold", type=float, default=None,
                        help="sorting.confidence_threshold; default: --model's own")  # fmt: skip
    parser.add_argument("--replay", type=int, default=100, help="replay pictures per class")
    parser.add_argument("--repeat", type=int, default=1, help="each labelled picture's weight")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--judge", type=Path, action="append", default=[], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threshold is None:
        args.threshold = TorchClassifier(args.model).threshold
        if args.threshold is None:
            parser.error(f"{args.model} names no threshold (meta.threshold): give --threshold")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    truth, seen = collect(args, args.out / "kept")
    print(f"line: {seen} pictures of {args.domain}, {len(truth)} kept ({args.pick})", flush=True)
    counts = label_by_operator(truth, args.out / "labelled", args.repeat)
    print(f"operator: labelled {counts} (each seen {args.repeat} times an epoch)", flush=True)
    render_replay(args.out / "replay", args.replay)
    print(f"replay: {args.replay} per class of robust and train, {2 * args.replay} reject")

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    command = [
        sys.executable, "-m", "bt_sorter.vision.train", "--init", str(args.model),
        "--data", str(args.out / "labelled"), "--data", str(args.out / "replay"),
        "--arch", "resnet18", "--epochs", str(args.epochs), "--input-size", "96",
        "--batch-size", "32", "--lr", str(args.lr), "--opt", "adamw", "--sched", "cosine",
        "--weight-decay", "1e-4", "--val-split", "0.1", "--seed", "0", "--workers", "0",
        "--threads", str(args.threads), "--half", "--no-progress", "--out", str(args.out / "run"),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = time.perf_counter() - wall
    print(f"fine-tune: {cpu / 60:.1f} min of CPU ({wall / 60:.1f} min wall)", flush=True)

    tuned = args.out / "run" / "best.pth"
    figures = {
        "before": judge(args.model, args.judge, args.threshold, args.threads),
        "after": judge(tuned, args.judge, args.threshold, args.threads),
    }
    print(f"\nat threshold {args.threshold}: accuracy, acted on %, wrong among acted on %")
    for name in figures["before"]:
        b, a = figures["before"][name], figures["after"][name]
        print(f"  {name:16s} before {b['accuracy']:.4f} {100 * b['acted']:5.1f} "
              f"{100 * b['wrong_among_acted']:.2f}   after {a['accuracy']:.4f} "
              f"{100 * a['acted']:5.1f} {100 * a['wrong_among_acted']:.2f}")  # fmt: skip
    if args.json:
        summary = {"seen": seen, "labelled": counts, "repeat": args.repeat, "cpu_s": cpu,
                   "wall_s": wall, "model": str(args.model), "tuned": str(tuned),
                   **figures}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
