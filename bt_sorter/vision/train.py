"""Train a ResNet on a picture folder, in the style of torchvision's classification reference.

    python -m bt_sorter.vision.train --data DIR --arch resnet18 --epochs N --input-size PX \\
        --out DIR [--resume DIR/checkpoint.pth] ...

Seeded stratified train/val split, OpenCV augmentation, AdamW or SGD with a cosine or step
schedule. Every epoch writes a resumable ``checkpoint.pth`` (model, optimiser, scheduler,
epoch, args); the best epoch by val accuracy is kept as ``best.pth`` (weights + metadata:
arch, input size, classes). At the end a temperature is fitted on the validation split
(:mod:`bt_sorter.vision.calibrate`) and stored in ``best.pth``'s metadata; ``--out`` also
holds ``class_indices.json``, ``metrics.json`` (with ECE before/after), ``curves.png``,
``confusion.png`` and ``reliability.png``.

``--device auto|cpu|cuda``: on CUDA the batches come from pinned memory with non-blocking
copies, the network runs channels-last under autocast (bfloat16 where the card has it, else
float16 with a gradient scaler); on the CPU everything stays float32. ``--init MODEL``
fine-tunes from a model file's weights with a fresh optimiser; with ``--new-head`` the model
may have other classes (a line with a class more): its body is kept, the head gets one row
per class of this run, copied from the model for the classes both have, fresh for the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from bt_sorter.argtypes import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from bt_sorter.vision.calibrate import (
    calibration_report,
    collect_logits,
    fit_temperature,
    plot_reliability,
    write_temperature,
)
from bt_sorter.vision.dataset import Jitter, PictureDataset, scan_folders, split_samples
from bt_sorter.vision.device import (
    DEVICE_CHOICES,
    DevicePlan,
    autocast,
    device_plan,
    prepare_model,
    to_device,
)
from bt_sorter.vision.evaluate import confusion_matrix, per_class, plot_confusion
from bt_sorter.vision.preprocess import write_class_indices
from bt_sorter.vision.resnet import ARCHS, build
from bt_sorter.vision.torch_backend import ModelInfo, load_model, save_model


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    epoch: int,
    progress: bool = True,
    plan: DevicePlan | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss and accuracy on the augmented pictures.

    ``plan`` says where it runs (default the CPU, float32); ``scaler`` scales the loss for
    float16 mixed precision.
    """
    plan = plan or device_plan("cpu")
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", disable=not progress)
    for batch, labels in bar:
        images = to_device(batch, plan)
        targets = labels.to(plan.device, non_blocking=plan.pin_memory)
        with autocast(plan):
            output = model(images)
            loss = criterion(output, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total_loss += loss.item() * len(targets)
        correct += int((output.argmax(1) == targets).sum())
        seen += len(targets)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    return {"loss": total_loss / max(1, seen), "acc": correct / max(1, seen)}


def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    loader: DataLoader[Any],
    num_classes: int,
    desc: str = "val",
    progress: bool = True,
    plan: DevicePlan | None = None,
) -> dict[str, Any]:
    """Loss, accuracy and confusion matrix of ``model`` on ``loader`` (no augmentation)."""
    plan = plan or device_plan("cpu")
    model.eval()
    total_loss, seen = 0.0, 0
    true: list[int] = []
    pred: list[int] = []
    with torch.inference_mode():
        for images, labels in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            with autocast(plan):
                output = model(to_device(images, plan)).float()
            targets = labels.to(plan.device)
            total_loss += float(criterion(output, targets)) * len(targets)
            seen += len(targets)
            true.extend(targets.tolist())
            pred.extend(output.argmax(1).tolist())
    cm = confusion_matrix(true, pred, num_classes)
    return {
        "loss": total_loss / max(1, seen),
        "acc": float(np.trace(cm) / max(1, cm.sum())),
        "confusion": cm,
    }


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    if args.opt == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )


def make_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    if args.sched == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    return torch.optim.lr_scheduler.StepLR(optimizer, args.lr_step_size, gamma=args.lr_gamma)


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Save train/val loss and accuracy per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="val")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [h["train_acc"] for h in history], label="train (augmented)")
    acc_ax.plot(epochs, [h["val_acc"] for h in history], label="val")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plain_args(args: argparse.Namespace) -> dict[str, Any]:
    """Arguments as JSON/weights-only friendly values."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return {k: plain(v) for k, v in vars(args).items()}


def calibrate_best(
    model: nn.Module, val_loader: DataLoader[Any], plan: DevicePlan, out: Path
) -> dict[str, Any]:
    """Fit the temperature of ``model`` on the validation split, store it in ``best.pth``'s
    metadata and draw ``reliability.png``; returns the calibration report."""

    logits, targets = collect_logits(model, val_loader, plan)
    temperature = fit_temperature(logits, targets)
    write_temperature(out / "best.pth", temperature)
    report = calibration_report(logits, targets, temperature)
    plot_reliability(report, out / "reliability.png",
                     f"validation split, {report['pictures']} pictures")  # fmt: skip
    return report


def _initial_weights(
    path: Path, arch: str, classes: Sequence[str], new_head: bool = False
) -> nn.Module:
    """The network of model file ``path`` to fine-tune; it must match ``arch`` and, unless
    ``new_head``, ``classes``. With ``new_head`` the final layer is rebuilt for ``classes``:
    rows of classes the model knows are copied, the others keep a fresh initialisation."""

    model, info = load_model(path)
    if info.arch != arch or (not new_head and list(info.classes) != list(classes)):
        raise ValueError(
            f"{path} is {info.arch} over {list(info.classes)}; this run is {arch} over "
            f"{list(classes)}" + ("" if new_head else " (--new-head starts a head for them)")
        )
    if new_head:
        old = model.fc
        head = nn.Linear(old.in_features, len(classes))
        with torch.no_grad():
            for row, name in enumerate(classes):
                if name in info.classes:
                    head.weight[row] = old.weight[info.classes.index(name)]
                    head.bias[row] = old.bias[info.classes.index(name)]
        model.fc = head
    model.train()
    return model


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a ResNet picture classifier")
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="folder of class sub-folders; repeat to merge folders by class name (labelled "
        "pictures from the line beside a replay set of the old data)",
    )
    parser.add_argument("--arch", default="resnet18", choices=sorted(ARCHS))
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument(
        "--input-size", type=positive_int, default=224, help="square input side in px"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=non_negative_float, default=1e-3)  # 0: weights kept
    parser.add_argument("--opt", default="adamw", choices=["adamw", "sgd"])
    parser.add_argument("--momentum", type=fraction, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    parser.add_argument("--sched", default="cosine", choices=["cosine", "step"])
    parser.add_argument("--lr-step-size", type=positive_int, default=5, help="step schedule period")
    parser.add_argument("--lr-gamma", type=positive_float, default=0.1, help="step schedule factor")
    parser.add_argument("--label-smoothing", type=fraction, default=0.0)
    parser.add_argument(
        "--brightness",
        type=positive_float,
        nargs=2,
        default=(0.6, 1.5),
        metavar=("LOW", "HIGH"),
        help="augmentation: picture gain range",
    )
    parser.add_argument(
        "--cast",
        type=non_negative_float,
        default=0.12,
        help="augmentation: per-channel gain in 1 ± CAST (light colour)",
    )
    parser.add_argument(
        "--contrast",
        type=non_negative_float,
        default=0.2,
        help="augmentation: contrast in 1 ± CONTRAST",
    )
    parser.add_argument(
        "--stretch",
        type=fraction,
        default=0.0,
        help="augmentation: one axis scaled by 1 - STRETCH..1 (fruit shape)",
    )
    parser.add_argument("--jpeg", type=fraction, default=0.0,
                        help="augmentation: share re-encoded as JPEG, quality 35..95")  # fmt: skip
    parser.add_argument("--val-split", type=fraction, default=0.15)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--workers", type=non_negative_int, default=0, help="data loader processes")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto: CUDA if PyTorch sees it, else the CPU")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint.pth to go on from")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="fine-tune: start from this model's weights (same arch and classes), fresh optimiser",
    )
    parser.add_argument(
        "--new-head",
        action="store_true",
        help="with --init: the model's classes may differ; keep its body, rebuild its head",
    )
    parser.add_argument("--half", action="store_true", help="store best.pth in float16")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; returns 0 on success."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    plan = device_plan(args.device)
    progress = not args.no_progress
    classes, samples = scan_folders(args.data)
    train_samples, val_samples = split_samples(samples, args.val_split, args.seed)
    if not val_samples:
        raise ValueError("the validation split is empty; raise --val-split or add pictures")
    info = ModelInfo(args.arch, args.input_size, tuple(classes))
    args.out.mkdir(parents=True, exist_ok=True)
    write_class_indices(args.out / "class_indices.json", classes)

    jitter = Jitter((args.brightness[0], args.brightness[1]), args.cast, args.contrast,
                    args.stretch, args.jpeg)  # fmt: skip
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(
        PictureDataset(train_samples, args.input_size, train=True, jitter=jitter),
        batch_size=args.batch_size, shuffle=True, num_workers=args.workers, generator=generator,
        drop_last=len(train_samples) > args.batch_size, pin_memory=plan.pin_memory,
        persistent_workers=args.workers > 0,
    )  # fmt: skip
    val_loader = DataLoader(
        PictureDataset(val_samples, args.input_size, train=False),
        batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
        pin_memory=plan.pin_memory,
    )  # fmt: skip

    model = build(args.arch, len(classes))
    if args.init and not args.resume:
        model = _initial_weights(args.init, args.arch, classes, args.new_head)
    if args.resume:  # weights first, then the move: optimiser state follows the parameters
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=True)
        if list(checkpoint["meta"]["classes"]) != classes:
            raise ValueError(
                f"{args.resume} was trained on classes {checkpoint['meta']['classes']}"
            )
        model.load_state_dict(checkpoint["model"])
    model = prepare_model(model, plan)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if plan.needs_grad_scaler else None
    optimizer = make_optimizer(args, model)
    scheduler = make_scheduler(args, optimizer)
    start_epoch, best_acc, history = 0, -1.0, []
    if args.resume:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["lr_scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            scheduler.T_max = args.epochs  # --epochs may have grown since the checkpoint
        start_epoch = int(checkpoint["epoch"]) + 1
        best_acc = float(checkpoint["best_acc"])
        history = list(checkpoint["history"])
        torch.set_rng_state(checkpoint["rng_state"])
        generator.set_state(checkpoint["loader_rng_state"])
    print(
        f"classes {classes}; train {len(train_samples)} val {len(val_samples)} pictures; "
        f"{args.arch} at {args.input_size} px; epochs {start_epoch}..{args.epochs - 1}; "
        f"device {plan.device} (mixed precision {plan.amp_dtype or 'off'})",
        flush=True,
    )
    started = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.perf_counter()
        train_stats = train_one_epoch(model, criterion, optimizer, train_loader, epoch, progress,
                                      plan, scaler)  # fmt: skip
        scheduler.step()
        val_stats = evaluate(model, criterion, val_loader, len(classes), progress=progress,
                             plan=plan)  # fmt: skip
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_stats["loss"],
            "train_acc": train_stats["acc"],
            "val_loss": val_stats["loss"],
            "val_acc": val_stats["acc"],
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)  # fmt: skip
        if val_stats["acc"] > best_acc:
            best_acc = val_stats["acc"]
            save_model(args.out / "best.pth", model, info, half=args.half,
                       epoch=epoch, val_acc=best_acc)  # fmt: skip
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "args": _plain_args(args),
                "meta": info.as_meta(),
                "best_acc": best_acc,
                "history": history,
                "rng_state": torch.get_rng_state(),
                "loader_rng_state": generator.get_state(),
            },
            args.out / "checkpoint.pth",
        )

    best_model, _ = load_model(args.out / "best.pth")
    best_model = prepare_model(best_model, plan)
    final = evaluate(best_model, criterion, val_loader, len(classes), "best on val", progress,
                     plan)  # fmt: skip
    calibration = calibrate_best(best_model, val_loader, plan, args.out)
    cm = final["confusion"]
    plot_confusion(cm, classes, args.out / "confusion.png", f"val, best epoch ({final['acc']:.4f})")
    if history:
        plot_curves(history, args.out / "curves.png")
    metrics = {
        "classes": classes,
        "arch": args.arch,
        "input_size": args.input_size,
        "train_pictures": len(train_samples),
        "val_pictures": len(val_samples),
        "best_val_acc": final["acc"],
        "best_epoch": max(history, key=lambda h: h["val_acc"])["epoch"] if history else None,
        "val_confusion": cm.tolist(),
        "val_per_class": per_class(cm, classes),
        "calibration": {k: v for k, v in calibration.items() if k not in ("before", "after")}
        | {
            "fitted_on": f"the validation split ({len(val_samples)} pictures)",
            "ece_before": calibration["before"]["ece"],
            "ece_after": calibration["after"]["ece"],
            "nll_before": calibration["before"]["nll"],
            "nll_after": calibration["after"]["nll"],
            "reliability_bins_after": calibration["after"]["bins"],
        },
        "device": str(plan.device),
        "history": history,
        "train_seconds_this_run": time.perf_counter() - started,
        "args": _plain_args(args),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(
        f"best val accuracy {final['acc']:.4f}; temperature {calibration['temperature']:.4f} "
        f"(val ECE {calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f}); "
        f"wrote {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
