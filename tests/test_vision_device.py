"""--device / classifier.device: auto falls back to the CPU, cuda without CUDA is a clear
error, and the CUDA speed-ups (mixed precision, pinned memory, channels-last) are planned for
CUDA only. The CUDA path itself needs a GPU; these tests run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bt_sorter.config import load_config
from bt_sorter.vision import evaluate
from bt_sorter.vision.backends import make_classifier
from bt_sorter.vision.classifier import ClassifyError
from bt_sorter.vision.device import (
    autocast,
    plan_for,
    prepare_model,
    resolve_device,
    to_device,
)
from bt_sorter.vision.resnet import build
from bt_sorter.vision.torch_backend import TorchClassifier
from bt_sorter.yamlio import SpecError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18_tomato.pth"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_auto_picks_the_cpu_when_pytorch_sees_no_cuda() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_an_error_that_says_so(name: str) -> None:
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device(name)


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_the_cpu_plan_turns_nothing_on() -> None:
    plan = plan_for(torch.device("cpu"))
    assert (plan.amp_dtype, plan.channels_last, plan.pin_memory) == (None, False, False)
    assert not plan.needs_grad_scaler


@pytest.mark.parametrize(
    ("bf16", "dtype", "scaler"), [(True, torch.bfloat16, False), (False, torch.float16, True)]
)
def test_the_cuda_plan_turns_on_mixed_precision_pinned_memory_and_channels_last(
    bf16: bool, dtype: torch.dtype, scaler: bool
) -> None:
    plan = plan_for(torch.device("cuda"), bf16=bf16)
    assert plan.is_cuda and plan.amp_dtype == dtype
    assert plan.channels_last and plan.pin_memory
    assert plan.needs_grad_scaler == scaler


def test_on_the_cpu_model_and_batch_stay_float32_and_contiguous() -> None:
    plan = plan_for(torch.device("cpu"))
    model = prepare_model(build("resnet18", 3).eval(), plan)
    images = to_device(torch.zeros(2, 3, 32, 32), plan)
    with torch.inference_mode(), autocast(plan):
        out = model(images)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert images.is_contiguous()


@no_cuda
def test_the_torch_back_end_refuses_cuda_it_cannot_see() -> None:
    with pytest.raises(ClassifyError, match="sees no CUDA device"):
        TorchClassifier(MODEL, threads=1, device="cuda")
    assert TorchClassifier(MODEL, threads=1, device="auto").plan.device.type == "cpu"


def test_classifier_device_in_the_config_reaches_the_torch_back_end(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text("classifier:\n  backend: torch\n  device: cpu\n", encoding="utf-8")
    loaded = load_config(config).classifier
    assert loaded.device == "cpu"
    classifier = make_classifier("torch", loaded, ROOT)
    assert isinstance(classifier, TorchClassifier)
    assert classifier.plan.device == torch.device("cpu")


def test_a_bad_classifier_device_in_the_config_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text("classifier:\n  backend: torch\n  device: gpu\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_config(config)
    assert "line.yaml:3" in str(info.value) and "'gpu'" in str(info.value)


@no_cuda
def test_evaluate_with_device_cuda_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ripe").mkdir()
    code = evaluate.main(["--model", str(MODEL), "--data", str(tmp_path), "--device", "cuda"])
    assert code == 2
    assert "sees no CUDA device" in capsys.readouterr().err
