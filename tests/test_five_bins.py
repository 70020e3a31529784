"""The five_bins line's vision: the renderer's fourth class, its model, the model/route check."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bt_sorter.config import load_config
from bt_sorter.routes import check_classes
from bt_sorter.sim.render import (
    ALL_LABELS,
    LABELS,
    RIPE_MAX,
    parse_labels,
    render_item,
    render_picture,
    ripeness_label,
    sample_ripeness,
    write_dataset,
)
from bt_sorter.vision.preprocess import decode_picture
from bt_sorter.vision.torch_backend import TorchClassifier
from bt_sorter.yamlio import SpecError

ROOT = Path(__file__).resolve().parent.parent
MODEL4 = ROOT / "models" / "five_bins" / "resnet18_tomato4.pth"
SORT_TREE = str(ROOT / "trees" / "sort.yaml")

# sha256 (first 16 hex) of render_item(default_rng([31, seed]), label, 64, domain) for seeds
# 0..5, from the renderer before overripe existed (commit 43e33fc): the shipped 3-class
# model, its figures and tests were made from these pictures.
BEFORE_OVERRIPE = {
    ("ripe", "train"): "460499b99dd0114b",
    ("ripe", "wide"): "1610c6430a272129",
    ("half_ripe", "train"): "1e070b65090bf39d",
    ("half_ripe", "wide"): "571d14d6cae15eff",
    ("raw", "train"): "07100774ab9eab4d",
    ("raw", "wide"): "bc363576362beecd",
}


def _digest(label: str, domain: str, **options: object) -> str:
    h = hashlib.sha256()
    for seed in range(6):
        rng = np.random.default_rng([31, seed])
        h.update(render_item(rng, label, 64, domain, **options).tobytes())  # type: ignore[arg-type]
    return h.hexdigest()[:16]


@pytest.mark.parametrize(("label", "domain"), sorted(BEFORE_OVERRIPE))
def test_the_three_classes_render_exactly_as_before_overripe(label: str, domain: str) -> None:
    assert _digest(label, domain) == BEFORE_OVERRIPE[label, domain]
    assert _digest(label, domain, labels=LABELS) == BEFORE_OVERRIPE[label, domain]


def test_overripe_is_above_ripe_with_a_borderline_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    for label in ALL_LABELS:
        values = np.array([sample_ripeness(rng, label, ALL_LABELS) for _ in range(2000)])
        assert all(ripeness_label(r) == label for r in values), label
    over = np.array([sample_ripeness(rng, "overripe", ALL_LABELS) for _ in range(2000)])
    ripe = np.array([sample_ripeness(rng, "ripe", ALL_LABELS) for _ in range(2000)])
    assert over.min() < RIPE_MAX + 0.12 and ripe.max() > RIPE_MAX - 0.12  # a real border
    with pytest.raises(ValueError, match="overripe"):
        render_item(rng, "overripe")  # the default label set has no overripe


def test_overripe_pictures_decode_are_darker_red_and_write_under_their_label(
    tmp_path: Path,
) -> None:
    def red_share(label: str) -> float:
        shares = []
        for i in range(8):
            rng = np.random.default_rng([5, i])
            image = decode_picture(render_picture(rng, label, 128, labels=ALL_LABELS))
            g, r = (image[..., c].astype(np.float32) for c in (1, 2))
            fruit = r > g + 30
            shares.append(float((g[fruit] / (r[fruit] + 1)).mean()))
        return float(np.mean(shares))

    assert red_share("overripe") > red_share("ripe")  # browner: more green per red

    counts = write_dataset(tmp_path, 2, seed=3, size=64, labels=parse_labels("raw,overripe"))
    assert counts == {"raw": 2, "overripe": 2}
    assert sorted(p.name for p in (tmp_path / "overripe").iterdir()) == [
        "overripe_0.jpg",
        "overripe_1.jpg",
    ]
    with pytest.raises(ValueError, match="rotten"):
        parse_labels("ripe,rotten")


def test_four_class_model_sorts_fresh_renders_through_the_real_decode_path() -> None:
    classifier = TorchClassifier(MODEL4, threads=1, device="cpu")
    assert sorted(classifier.classes) == sorted(ALL_LABELS)
    index = json.loads((MODEL4.parent / "class_indices.json").read_text())
    assert [index[str(i)] for i in range(len(index))] == list(classifier.info.classes)
    assert set(classifier.info.classes) - set(classifier.classes) == {"none"}  # reject class
    per_class, right = 10, 0
    for k, label in enumerate(ALL_LABELS):
        for i in range(per_class):
            picture = render_picture(np.random.default_rng([4343, k, i]), label, labels=ALL_LABELS)
            right += classifier.classify(picture).label == label
    assert right / (per_class * len(ALL_LABELS)) >= 0.95


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(text)
    return path


def four(reject: str, fallback: str) -> str:
    """A config for the four-class model on three rods: routes for three classes."""
    return (
        "sorting:\n"
        "  confidence_threshold: 0.6\n"
        "  routes: {ripe: 2, half_ripe: 3, raw: 4}\n"
        f"{reject}"
        "classifier:\n"
        "  model: models/five_bins/resnet18_tomato4.pth\n"
        f"  fallback: {fallback}\n"
    )


@pytest.mark.parametrize(
    ("text", "line", "word"),
    [
        (four(reject="", fallback="reject"), 3, "'overripe', which has no route"),
        ("sorting:\n  routes:\n    ripe: 2\n    rotten: 3\n    raw: 4\n", 4, "'rotten'"),
    ],
    ids=["model_class_without_route", "route_for_a_label_the_model_never_answers"],
)
def test_check_refuses_a_route_model_mismatch_naming_file_and_line(
    tmp_path: Path, text: str, line: int, word: str
) -> None:
    config = _config(tmp_path, text)

    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--tree", SORT_TREE, "--config", str(config),
         "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 2, done.stdout
    assert f"{config}:{line}:" in done.stderr and word in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_check_takes_a_reject_rule_and_refuses_a_fallback_blind_to_a_class(
    tmp_path: Path,
) -> None:
    classes = ("half_ripe", "overripe", "raw", "ripe")
    rejecting = load_config(_config(tmp_path, four("  reject: [overripe]\n", "reject")))
    report = check_classes(rejecting, {"primary": classes})
    assert "to bin 1 on purpose: overripe" in report[-1]

    hsv = load_config(_config(tmp_path, four("  reject: [overripe]\n", "hsv")))
    with pytest.raises(SpecError, match="fallback cannot tell 'overripe'") as caught:
        check_classes(hsv, {"primary": classes, "fallback": ("ripe", "half_ripe", "raw")})
    assert caught.value.line == 7  # classifier.fallback

    with pytest.raises(SpecError, match=r"sorting\.reject: .overripe. is not a class") as caught:
        check_classes(rejecting, {"primary": ("ripe", "half_ripe", "raw")})
    assert caught.value.line == 4 and caught.value.file == str(tmp_path / "line.yaml")


def test_new_head_keeps_the_body_and_the_rows_of_known_classes() -> None:
    from bt_sorter.vision.torch_backend import load_model
    from bt_sorter.vision.train import _initial_weights

    shipped = ROOT / "models" / "resnet18_tomato.pth"
    old, info = load_model(shipped)
    classes = ["half_ripe", "overripe", "raw", "ripe"]
    with pytest.raises(ValueError, match="--new-head"):
        _initial_weights(shipped, "resnet18", classes)

    model = _initial_weights(shipped, "resnet18", classes, new_head=True)

    assert model.fc.out_features == 4
    assert torch.equal(model.layer4[1].conv2.weight, old.layer4[1].conv2.weight)
    for row, name in enumerate(classes):
        if name in info.classes:
            assert torch.equal(model.fc.weight[row], old.fc.weight[info.classes.index(name)])


def test_built_in_line_with_overripe_items_rejects_them_knowingly_with_the_four_class_model(
    tmp_path: Path,
) -> None:
    # Three rods, four classes: the simulator renders overripe items (sim.mix), the model
    # names them, sorting.reject sends them to bin 1; the rest go to their rods.
    from test_whole_line import ROUTES, run_line

    config = (
        "sorting:\n  routes: {ripe: 2, half_ripe: 3, raw: 4}\n  reject: [overripe]\n"
        "classifier:\n  model: models/five_bins/resnet18_tomato4.pth\n  fallback: reject\n"
        "sim:\n  seed: 1\n  mix: {ripe: 1, half_ripe: 1, raw: 1, overripe: 1}\n"
    )

    run = run_line(tmp_path, "trees/sort.yaml", items=8, config=config)

    assert run.code == 0, run.tail()
    overripe = {i for i, item in run.ledger.items() if item["label"] == "overripe"}
    assert len(run.ledger) == 8 and len(overripe) == 3, run.tail()
    for item in run.ledger.values():  # overripe in bin 1, every other item in its own bin
        assert item["bin"] == ROUTES.get(item["label"], 1), (item, run.tail())
    named = [e["item"] for e in run.events("item_classified", label="overripe")]
    assert named and set(named) <= overripe, run.tail()
    for event in run.events("item_resolved"):
        if event["item"] in named:
            assert "'overripe' has no rod" in event["reason"], event
