"""Out-of-distribution figures: the share of pictures unlike any trained one that the line
sends to bin 1, and the share of one-fruit pictures it doubts, through the classifier's real
path (decode, preprocess, network, the frame check and logit floor, the threshold).

    python -m bt_sorter.sim render --odd --n 100 --seed 31 --out /tmp/odd_train
    python bench/vision_odd.py --model models/resnet18_tomato.pth --threshold 0.9 \\
        --odd /tmp/odd_train [--odd DIR ...] [--data HELD_OUT_DIR ...]

``--odd`` folders have one sub-folder per kind (empty, black, washed, two, object: the
renderer's ``--odd`` set); ``--data`` folders are ordinary class folders (one fruit each),
where every doubt is a picture lost to bin 1. Prints, per kind, the share sent to bin 1 and
why (a doubt of the classifier, or a confidence under the threshold).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bt_sorter.vision.classifier import UNKNOWN, apply_threshold  # noqa: E402
from bt_sorter.vision.dataset import scan_folder  # noqa: E402
from bt_sorter.vision.torch_backend import TorchClassifier  # noqa: E402


def bin1_reasons(classifier: TorchClassifier, folder: Path, threshold: float) -> dict[str, Counter]:
    """Per sub-folder: how many pictures went where (the doubt, 'low confidence', 'acted on')."""
    names, samples = scan_folder(folder)
    out: dict[str, Counter] = {name: Counter() for name in names}
    for sample in samples:
        prediction = classifier.classify(sample.path.read_bytes())
        if apply_threshold(prediction, threshold).label != UNKNOWN:
            why = "acted on"
        else:
            why = prediction.doubt or "low confidence"
        out[names[sample.target]][why] += 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "resnet18_tomato.pth")
    parser.add_argument("--threshold", type=float, default=None,
                        help="sorting.confidence_threshold; default: --model's own")  # fmt: skip
    parser.add_argument("--odd", type=Path, action="append", default=[], help="odd-kind folders")
    parser.add_argument("--data", type=Path, action="append", default=[], help="class folders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    classifier = TorchClassifier(args.model, args.threads)
    if args.threshold is None:
        args.threshold = classifier.threshold
        if args.threshold is None:
            parser.error(f"{args.model} names no threshold (meta.threshold): give --threshold")
    print(f"model {args.model} (min_logit {classifier.info.min_logit}), "
          f"threshold {args.threshold}")  # fmt: skip
    total: Counter = Counter()
    for folder in args.odd:
        for kind, counts in bin1_reasons(classifier, folder, args.threshold).items():
            n = sum(counts.values())
            total[kind] += n - counts["acted on"]
            total[kind + " n"] += n
            print(f"  odd {folder.name}/{kind}: {100 * (n - counts['acted on']) / n:.1f} % "
                  f"to bin 1 of {n}: {dict(counts)}")  # fmt: skip
    if args.odd:
        kinds = [k for k in total if not k.endswith(" n")]
        sent = sum(total[k] for k in kinds)
        seen = sum(total[k + " n"] for k in kinds)
        for k in kinds:
            print(f"  odd {k}: {100 * total[k] / total[k + ' n']:.1f} % to bin 1")
        print(f"odd pictures to bin 1: {100 * sent / seen:.1f} % of {seen}")
    for folder in args.data:
        counts = sum(bin1_reasons(classifier, folder, args.threshold).values(), Counter())
        n = sum(counts.values())
        doubted = n - counts["acted on"] - counts["low confidence"]
        print(f"  one fruit {folder.name}: doubted {100 * doubted / n:.2f} %, "
              f"acted on {100 * counts['acted on'] / n:.1f} % of {n}: {dict(counts)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
