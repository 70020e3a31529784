"""Where the network runs: ``--device auto|cpu|cuda`` and what each device turns on.

:func:`resolve_device` turns the user's choice into a ``torch.device`` (``auto`` is CUDA when
PyTorch sees a CUDA device, else the CPU; ``cuda`` without one is an error, never a silent
CPU run). :func:`plan_for` says what that device gets: on CUDA mixed precision (bfloat16
where the card has it, else float16 with a gradient scaler), pinned-memory loading with
non-blocking copies, and channels-last tensors; on the CPU none of these (float32, plain
memory), which is the CPU install's default path and the one the tests run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The device for ``name`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    Raises ``ValueError`` with the reason for an unknown name or a CUDA device PyTorch
    cannot see.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r}: PyTorch {torch.__version__} sees no CUDA device "
                "(a CPU build, or no driver); use --device cpu or auto"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise ValueError(f"unknown device {name!r}; choose one of {list(DEVICE_CHOICES)}")


@dataclass(frozen=True)
class DevicePlan:
    """A device and the speed-ups that are turned on for it."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype; None = plain float32
    channels_last: bool
    pin_memory: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def needs_grad_scaler(self) -> bool:
        """float16 training needs loss scaling; bfloat16 and float32 do not."""
        return self.amp_dtype == torch.float16


def plan_for(device: torch.device, bf16: bool | None = None) -> DevicePlan:
    """What ``device`` gets; ``bf16`` overrides the card's bfloat16 support (for tests)."""
    if device.type != "cuda":
        return DevicePlan(device, None, channels_last=False, pin_memory=False)
    if bf16 is None:
        bf16 = torch.cuda.is_bf16_supported()
    amp = torch.bfloat16 if bf16 else torch.float16
    return DevicePlan(device, amp, channels_last=True, pin_memory=True)


def device_plan(name: str) -> DevicePlan:
    """:func:`plan_for` the device :func:`resolve_device` picks for ``name``."""
    return plan_for(resolve_device(name))


def prepare_model(model: torch.nn.Module, plan: DevicePlan) -> torch.nn.Module:
    """``model`` moved to the plan's device (channels-last on CUDA); returns it."""
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(images: torch.Tensor, plan: DevicePlan) -> torch.Tensor:
    """An (N, C, H, W) batch on the plan's device, channels-last where the plan says so."""
    if plan.device.type == "cpu":
        return images
    images = images.to(plan.device, non_blocking=plan.pin_memory)
    if plan.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@contextlib.contextmanager
def autocast(plan: DevicePlan) -> Iterator[None]:
    """Mixed precision on CUDA (the plan's dtype); nothing on the CPU."""
    if plan.amp_dtype is None:
        yield
        return
    with torch.autocast(device_type=plan.device.type, dtype=plan.amp_dtype):
        yield
