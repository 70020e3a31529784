"""A model carries the confidence threshold its rule chose (issue 24's rule, made portable).

``evaluate --write-threshold`` stores the rule's threshold in the checkpoint; a config that
names no ``sorting.confidence_threshold`` acts on it, so a model swapped into a config brings
its own; a config's own threshold wins, and one below the model's is said with its file and
line; a new temperature removes a threshold chosen for the old one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bt_sorter.config import DEFAULT_THRESHOLD, load_config
from bt_sorter.routes import settle_threshold, threshold_of
from bt_sorter.sim.render import write_dataset
from bt_sorter.vision import evaluate
from bt_sorter.vision.calibrate import write_temperature
from bt_sorter.vision.hsv import HsvClassifier
from bt_sorter.vision.torch_backend import TorchClassifier, load_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"
FOUR_CLASS = ROOT / "models" / "five_bins" / "resnet18_tomato4.pth"


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "--tree", "trees/sort.yaml", "--check", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_shipped_models_carry_the_threshold_their_rule_chose() -> None:
    assert load_model(MODEL)[1].threshold == 0.85  # models/MODEL_CARD.md, the rule
    assert load_model(FOUR_CLASS)[1].threshold == 0.95
    for name in ("default", "fs_aisims", "five_bins"):  # so the shipped configs act on them
        assert load_config(ROOT / "config" / f"{name}.yaml").sorting.confidence_threshold is None


def test_evaluate_writes_the_rules_threshold_and_a_new_temperature_removes_it(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.pth"
    raw = torch.load(MODEL, weights_only=True)
    del raw["meta"]["threshold"]  # the shipped model before its rule's threshold was written
    torch.save(raw, model)
    assert load_model(model)[1].threshold is None
    domains = []
    for domain in ("robust", "belts"):
        domains += ["--data", str(tmp_path / domain)]
        write_dataset(tmp_path / domain, 6, seed=31, size=128, domain=domain)
    report = tmp_path / "report.json"
    args = ["--model", str(model), *domains, "--quiet", "--batch", "8", "--device", "cpu"]
    assert evaluate.main([*args, "--write-threshold", "--json", str(report)]) == 0
    chosen = json.loads(report.read_text())["rule"]["threshold"]
    assert chosen is not None
    assert load_model(model)[1].threshold == chosen
    assert TorchClassifier(model).threshold == chosen
    shipped, written = torch.load(MODEL, weights_only=True), torch.load(model, weights_only=True)
    for key, value in shipped["state_dict"].items():  # the weights as they were stored
        assert torch.equal(written["state_dict"][key], value)
    assert not list(tmp_path.glob("*.part"))

    temperature = load_model(model)[1].temperature
    write_temperature(model, temperature, min_logit=1.0)  # the same temperature: still valid
    assert load_model(model)[1].threshold == chosen
    write_temperature(model, temperature * 1.5)  # every confidence changed: choose again
    assert load_model(model)[1].threshold is None


@pytest.mark.parametrize("bad", [1.5, -0.1, "0.8", True])
def test_a_threshold_that_is_not_a_fraction_is_a_clear_error(bad: object, tmp_path: Path) -> None:
    model = tmp_path / "model.pth"
    raw = torch.load(MODEL, weights_only=True)
    raw["meta"]["threshold"] = bad
    torch.save(raw, model)
    with pytest.raises(ValueError, match=r"model\.pth: threshold .* is not a number within 0\.\.1"):
        load_model(model)


def test_the_config_names_it_or_the_model_does_or_the_default(tmp_path: Path) -> None:
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text("sorting:\n  routes: {ripe: 2, half_ripe: 3, raw: 4}\n")
    config, line, warn = settle_threshold(load_config(unnamed), 0.85)
    assert (config.sorting.threshold, warn) == (0.85, False)
    assert "0.85 (the model's own" in line
    config, line, warn = settle_threshold(load_config(unnamed), threshold_of(HsvClassifier()))
    assert (config.sorting.threshold, warn) == (DEFAULT_THRESHOLD, False)
    assert "(default; the classifier names none of its own)" in line

    named = tmp_path / "named.yaml"
    named.write_text("sorting:\n  routes: {ripe: 2, half_ripe: 3, raw: 4}\n"
                     "  confidence_threshold: 0.9\n")  # fmt: skip
    config, line, warn = settle_threshold(load_config(named), 0.85)
    assert (config.sorting.threshold, warn) == (0.9, False)  # stricter than the model: taken
    named.write_text(named.read_text().replace("0.9", "0.6"))
    config, line, warn = settle_threshold(load_config(named), 0.85)
    assert (config.sorting.threshold, warn) == (0.6, True)  # the user's word, said out loud
    assert line.startswith(f"{named}:3: confidence threshold 0.6 (sorting.confidence_threshold)")
    assert "below the 0.85 the model's rule chose" in line


def test_check_says_which_threshold_is_in_force_and_where_it_came_from(tmp_path: Path) -> None:
    done = run_check()
    assert done.returncode == 0, done.stderr
    assert "confidence threshold 0.85 (the model's own, chosen by its rule" in done.stdout

    swapped = tmp_path / "four_class.yaml"  # the shipped config, the four-class model swapped in
    swapped.write_text(
        "sorting:\n  routes: {ripe: 2, half_ripe: 3, raw: 4}\n  reject: [overripe]\n"
        f"classifier:\n  model: {FOUR_CLASS}\n  fallback: reject\n"
    )
    done = run_check("--config", str(swapped))
    assert done.returncode == 0, done.stderr
    assert "confidence threshold 0.95 (the model's own" in done.stdout

    lower = tmp_path / "lower.yaml"
    lower.write_text("sorting:\n  confidence_threshold: 0.6\n")
    done = run_check("--config", str(lower))
    assert done.returncode == 0, done.stderr
    assert f"{lower}:2: confidence threshold 0.6 (sorting.confidence_threshold) is below" in (
        done.stdout
    )
