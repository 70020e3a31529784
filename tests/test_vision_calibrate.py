"""Temperature scaling recovers a known temperature, lowers the calibration error, is stored in
the checkpoint without touching the weights, and is applied wherever the model answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bt_sorter.sim.render import render_picture, write_dataset
from bt_sorter.vision import calibrate
from bt_sorter.vision.calibrate import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    write_temperature,
)
from bt_sorter.vision.evaluate import threshold_table
from bt_sorter.vision.preprocess import picture_to_input
from bt_sorter.vision.torch_backend import TorchClassifier, load_model, softmax

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"


def _overconfident(true_temperature: float, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels were drawn from softmax(logits / true_temperature)."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 4.0, (n, 3))
    probs = softmax(logits, true_temperature)
    targets = np.array([rng.choice(3, p=p) for p in probs])
    return logits, targets


def test_fit_recovers_the_temperature_the_labels_were_drawn_with() -> None:
    logits, targets = _overconfident(2.5)
    assert fit_temperature(logits, targets) == pytest.approx(2.5, rel=0.1)


def test_scaling_lowers_the_expected_calibration_error() -> None:
    logits, targets = _overconfident(2.5)
    report = calibration_report(logits, targets, fit_temperature(logits, targets))
    assert report["before"]["ece"] > 0.05
    assert report["after"]["ece"] < report["before"]["ece"] / 3
    assert report["after"]["accuracy"] == report["before"]["accuracy"]  # labels never change
    assert sum(b["count"] for b in report["after"]["bins"]) == len(targets)


def test_data_without_mistakes_never_sharpens_the_model() -> None:
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]] * 20)
    targets = np.array([0, 1, 2] * 20)
    assert fit_temperature(logits, targets) == pytest.approx(1.0, abs=1e-3)


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_a_liar_is_the_gap() -> None:
    confidences = np.full(10, 0.8)
    assert expected_calibration_error(confidences, np.array([1] * 8 + [0] * 2)) == 0.0
    assert expected_calibration_error(confidences, np.array([1] * 4 + [0] * 6)) == pytest.approx(
        0.4
    )


def test_the_temperature_is_stored_with_the_weights_untouched_and_applied(tmp_path: Path) -> None:
    model = tmp_path / "model.pth"
    shutil.copy(MODEL, model)
    write_temperature(model, 2.0)
    raw = torch.load(model, weights_only=True)
    shipped = torch.load(MODEL, weights_only=True)
    assert raw["meta"]["temperature"] == 2.0
    for key, value in shipped["state_dict"].items():
        assert raw["state_dict"][key].dtype == value.dtype
        assert torch.equal(raw["state_dict"][key], value)
    network, info = load_model(model)
    assert info.temperature == 2.0
    rng = np.random.default_rng(3)
    picture = render_picture(rng, "half_ripe", size=128)
    with torch.inference_mode():
        logits = network(torch.from_numpy(picture_to_input(picture, info.input_size)[None]))
    want = softmax(logits.numpy(), 2.0)[0].max()
    assert TorchClassifier(model).classify(picture).confidence == pytest.approx(want, abs=1e-5)


def test_calibrate_command_fits_writes_and_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "val"
    write_dataset(data, 4, seed=23, size=96, domain="wide")
    model = tmp_path / "model.pth"
    shutil.copy(MODEL, model)
    png, report = tmp_path / "reliability.png", tmp_path / "calibration.json"
    args = ["--model", str(model), "--data", str(data), "--write", "--device", "cpu"]
    assert calibrate.main([*args, "--png", str(png), "--json", str(report)]) == 0
    fitted = json.loads(report.read_text())
    assert fitted["pictures"] == 12
    assert load_model(model)[1].temperature == pytest.approx(fitted["temperature"])
    assert png.stat().st_size > 1000
    assert "ECE" in capsys.readouterr().out


def test_threshold_table_counts_answers_kept_and_missorts_among_them() -> None:
    rows = {r["threshold"]: r for r in threshold_table([0.9, 0.7, 0.55], [True, False, True])}
    assert rows[0.5]["answered"] == 1.0 and rows[0.5]["wrong"] == 1
    assert rows[0.6]["answered"] == pytest.approx(2 / 3)
    assert rows[0.6]["wrong_among_answered"] == 0.5
    assert rows[0.8]["answered"] == pytest.approx(1 / 3) and rows[0.8]["wrong"] == 0
    assert rows[0.99]["answered"] == 0.0
