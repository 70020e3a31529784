"""The ResNets carry torchvision's exact state_dict layout, so course checkpoints load as is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bt_sorter.vision.resnet import build, infer_arch, resnet18, resnet34, resnet50

# torchvision.models.resnet18().state_dict(): every key in order with its shape
# ("-" is the 0-d num_batches_tracked counter).
TORCHVISION_RESNET18 = """
conv1.weight 64,3,7,7
bn1.weight 64
bn1.bias 64
bn1.running_mean 64
bn1.running_var 64
bn1.num_batches_tracked -
layer1.0.conv1.weight 64,64,3,3
layer1.0.bn1.weight 64
layer1.0.bn1.bias 64
layer1.0.bn1.running_mean 64
layer1.0.bn1.running_var 64
layer1.0.bn1.num_batches_tracked -
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2.weight 64
layer1.0.bn2.bias 64
layer1.0.bn2.running_mean 64
layer1.0.bn2.running_var 64
layer1.0.bn2.num_batches_tracked -
layer1.1.conv1.weight 64,64,3,3
layer1.1.bn1.weight 64
layer1.1.bn1.bias 64
layer1.1.bn1.running_mean 64
layer1.1.bn1.running_var 64
layer1.1.bn1.num_batches_tracked -
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2.weight 64
layer1.1.bn2.bias 64
layer1.1.bn2.running_mean 64
layer1.1.bn2.running_var 64
layer1.1.bn2.num_batches_tracked -
layer2.0.conv1.weight 128,64,3,3
layer2.0.bn1.weight 128
layer2.0.bn1.bias 128
layer2.0.bn1.running_mean 128
layer2.0.bn1.running_var 128
layer2.0.bn1.num_batches_tracked -
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2.weight 128
layer2.0.bn2.bias 128
layer2.0.bn2.running_mean 128
layer2.0.bn2.running_var 128
layer2.0.bn2.num_batches_tracked -
layer2.0.downsample.0.weight 128,64,1,1
layer2.0.downsample.1.weight 128
layer2.0.downsample.1.bias 128
layer2.0.downsample.1.running_mean 128
layer2.0.downsample.1.running_var 128
layer2.0.downsample.1.num_batches_tracked -
layer2.1.conv1.weight 128,128,3,3
layer2.1.bn1.weight 128
layer2.1.bn1.bias 128
layer2.1.bn1.running_mean 128
layer2.1.bn1.running_var 128
layer2.1.bn1.num_batches_tracked -
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2.weight 128
layer2.1.bn2.bias 128
layer2.1.bn2.running_mean 128
layer2.1.bn2.running_var 128
layer2.1.bn2.num_batches_tracked -
layer3.0.conv1.weight 256,128,3,3
layer3.0.bn1.weight 256
layer3.0.bn1.bias 256
layer3.0.bn1.running_mean 256
layer3.0.bn1.running_var 256
layer3.0.bn1.num_batches_tracked -
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2.weight 256
layer3.0.bn2.bias 256
layer3.0.bn2.running_mean 256
layer3.0.bn2.running_var 256
layer3.0.bn2.num_batches_tracked -
layer3.0.downsample.0.weight 256,128,1,1
layer3.0.downsample.1.weight 256
layer3.0.downsample.1.bias 256
layer3.0.downsample.1.running_mean 256
layer3.0.downsample.1.running_var 256
layer3.0.downsample.1.num_batches_tracked -
layer3.1.conv1.weight 256,256,3,3
layer3.1.bn1.weight 256
layer3.1.bn1.bias 256
layer3.1.bn1.running_mean 256
layer3.1.bn1.running_var 256
layer3.1.bn1.num_batches_tracked -
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2.weight 256
layer3.1.bn2.bias 256
layer3.1.bn2.running_mean 256
layer3.1.bn2.running_var 256
layer3.1.bn2.num_batches_tracked -
layer4.0.conv1.weight 512,256,3,3
layer4.0.bn1.weight 512
layer4.0.bn1.bias 512
layer4.0.bn1.running_mean 512
layer4.0.bn1.running_var 512
layer4.0.bn1.num_batches_tracked -
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2.weight 512
layer4.0.bn2.bias 512
layer4.0.bn2.running_mean 512
layer4.0.bn2.running_var 512
layer4.0.bn2.num_batches_tracked -
layer4.0.downsample.0.weight 512,256,1,1
layer4.0.downsample.1.weight 512
layer4.0.downsample.1.bias 512
layer4.0.downsample.1.running_mean 512
layer4.0.downsample.1.running_var 512
layer4.0.downsample.1.num_batches_tracked -
layer4.1.conv1.weight 512,512,3,3
layer4.1.bn1.weight 512
layer4.1.bn1.bias 512
layer4.1.bn1.running_mean 512
layer4.1.bn1.running_var 512
layer4.1.bn1.num_batches_tracked -
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2.weight 512
layer4.1.bn2.bias 512
layer4.1.bn2.running_mean 512
layer4.1.bn2.running_var 512
layer4.1.bn2.num_batches_tracked -
fc.weight 1000,512
fc.bias 1000
"""


def _expected() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in TORCHVISION_RESNET18.strip().splitlines():
        key, shape = line.split()
        rows.append((key, () if shape == "-" else tuple(int(s) for s in shape.split(","))))
    return rows


def test_resnet18_state_dict_matches_torchvision_keys_and_shapes() -> None:
    got = [(k, tuple(v.shape)) for k, v in resnet18().state_dict().items()]
    assert got == _expected()


def test_course_three_way_checkpoint_loads_into_resnet18_with_three_outputs() -> None:
    course = {k: torch.randn(s) if s else torch.tensor(0) for k, s in _expected()}
    course["fc.weight"] = torch.randn(3, 512)
    course["fc.bias"] = torch.randn(3)
    model = resnet18(num_classes=3)
    model.load_state_dict(course, strict=True)
    model.eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_saved_state_dict_round_trips_with_weights_only_load(tmp_path: Path) -> None:
    model = resnet18(num_classes=3).eval()
    path = tmp_path / "best.pth"
    torch.save(model.state_dict(), path)
    loaded = torch.load(path, weights_only=True)
    again = resnet18(num_classes=3).eval()
    again.load_state_dict(loaded)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize(
    ("factory", "params", "arch"),
    [
        (resnet18, 11_689_512, "resnet18"),
        (resnet34, 21_797_672, "resnet34"),
        (resnet50, 25_557_032, "resnet50"),
    ],
)
def test_parameter_counts_match_torchvision_and_arch_is_recognised(
    factory: object, params: int, arch: str
) -> None:
    model = factory()  # type: ignore[operator]
    assert sum(p.numel() for p in model.parameters()) == params
    assert infer_arch(model.state_dict()) == arch


def test_resnet50_bottleneck_keys_follow_torchvision() -> None:
    keys = resnet50().state_dict()
    assert keys["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert keys["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert keys["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert keys["fc.weight"].shape == (1000, 2048)


def test_unknown_arch_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        build("vgg16", 3)
