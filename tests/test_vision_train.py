"""The training and evaluation commands produce a usable, resumable model and honest scores."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from bt_sorter.sim.render import write_dataset, write_reject_dataset
from bt_sorter.vision import evaluate, train
from bt_sorter.vision.torch_backend import TorchClassifier, load_model


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pictures")
    write_dataset(root, 5, seed=21, size=96)
    return root


def _train(data: Path, out: Path, epochs: int, *extra: str) -> int:
    return train.main(
        ["--data", str(data), "--out", str(out), "--epochs", str(epochs), "--input-size", "48",
         "--batch-size", "8", "--val-split", "0.25", "--seed", "1", "--no-progress", *extra]
    )  # fmt: skip


def test_training_writes_model_index_metrics_and_plots_and_resumes(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert _train(data, out, 1, "--half", "--device", "cpu") == 0
    classes = json.loads((out / "class_indices.json").read_text())
    assert classes == {"0": "half_ripe", "1": "raw", "2": "ripe"}
    classifier = TorchClassifier(out / "best.pth", threads=1)
    assert classifier.info.input_size == 48
    assert list(classifier.classes) == ["half_ripe", "raw", "ripe"]
    for name in ("curves.png", "confusion.png", "reliability.png"):
        assert cv2.imread(str(out / name)) is not None
    calibration = json.loads((out / "metrics.json").read_text())["calibration"]
    assert classifier.info.temperature == pytest.approx(calibration["temperature"])
    assert calibration["pictures"] == 3
    assert {"ece_before", "ece_after"} <= set(calibration)
    assert metrics_device(out) == "cpu"
    assert _train(data, out, 2, "--resume", str(out / "checkpoint.pth")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["val_pictures"] == 3
    assert sum(map(sum, metrics["val_confusion"])) == 3


def metrics_device(out: Path) -> str:
    return json.loads((out / "metrics.json").read_text())["device"]


def test_fine_tuning_starts_from_the_given_model(data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert _train(data, first, 1) == 0
    tuned = tmp_path / "tuned"
    assert _train(data, tuned, 1, "--init", str(first / "best.pth"), "--lr", "0") == 0
    # with a zero learning rate fine-tuning keeps the weights it started from
    start, _ = load_model(first / "best.pth")
    after, _ = load_model(tuned / "best.pth")
    for key, value in start.state_dict().items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(after.state_dict()[key], value), key


def test_fine_tuning_from_a_model_of_other_classes_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    for name in ("apple", "pear"):
        (other / name).mkdir(parents=True)
        for picture in (data / "ripe").glob("*.jpg"):
            (other / name / picture.name).write_bytes(picture.read_bytes())
    model = Path(__file__).resolve().parents[1] / "models" / "resnet18_tomato.pth"
    assert _train(other, tmp_path / "out", 1, "--init", str(model)) == 2
    assert "half_ripe" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_training_on_cuda_without_cuda_fails_with_a_message(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(data, tmp_path / "out", 1, "--device", "cuda") == 2
    assert "sees no CUDA device" in capsys.readouterr().err


def test_training_on_a_folder_without_classes_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, tmp_path / "out", 1) == 2
    assert "no class sub-folders" in capsys.readouterr().err


def test_evaluate_scores_agree_with_the_classifier_picture_by_picture(
    data: Path, tmp_path: Path
) -> None:
    model = Path(__file__).resolve().parents[1] / "models" / "resnet18_tomato.pth"
    report = tmp_path / "scores.json"
    assert evaluate.main(["--model", str(model), "--data", str(data), "--json", str(report)]) == 0
    scores = json.loads(report.read_text())["results"][0]
    classifier = TorchClassifier(model, threads=2)
    right = sum(
        classifier.classify(p.read_bytes()).label == p.parent.name for p in data.rglob("*.jpg")
    )
    assert scores["pictures"] == 15
    assert scores["accuracy"] == pytest.approx(right / 15)
    assert sum(map(sum, scores["confusion"])) == 15


def test_several_data_folders_merge_by_class_and_a_none_folder_trains_the_reject_class(
    data: Path, tmp_path: Path
) -> None:
    from_line = tmp_path / "from_line"  # an operator's labelled pictures: two classes only
    for name in ("ripe", "raw"):
        (from_line / name).mkdir(parents=True)
        for picture in sorted((data / name).glob("*.jpg"))[:2]:
            (from_line / name / f"line_{picture.name}").write_bytes(picture.read_bytes())
    write_reject_dataset(from_line, 4, seed=5, size=96)
    out = tmp_path / "merged"
    assert _train(data, out, 1, "--data", str(from_line)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["half_ripe", "none", "raw", "ripe"]
    assert metrics["train_pictures"] + metrics["val_pictures"] == 15 + 4 + 4
    assert metrics["args"]["data"] == [str(data), str(from_line)]
    classifier = TorchClassifier(out / "best.pth", threads=1)
    assert classifier.info.classes == ("half_ripe", "none", "raw", "ripe")
    assert classifier.classes == ("half_ripe", "raw", "ripe")  # `none` is never an answer
