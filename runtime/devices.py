"""Device names (``cpu``, ``cuda``, ``cuda:N``) and whether this machine can honour them.

One rule for every verb that takes ``--device``: the spelling is checked when the arguments are
parsed, and a CUDA device is checked against what will run on it (torch, or ONNX Runtime's
execution providers) before any model is built or any graph exported, so ``--device cuda`` on a
CPU-only install fails in one line instead of deep inside torch (``Torch not compiled with CUDA
enabled``) or by quietly running on the CPU.
"""

from __future__ import annotations

import re

# The GPU providers a session asks for: a build with only other GPU providers (the TensorRT-RTX
# plugin) would pass a wider check here and then run on the CPU.
from irdeploy.core.ort_backend import GPU_PROVIDERS

_SPELLING = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_spelling(device: str, *, allow_auto: bool = False) -> str:
    """``device`` unchanged if it is ``cpu``, ``cuda`` or ``cuda:N`` (or ``auto`` where allowed)."""
    if (allow_auto and device == "auto") or _SPELLING.match(device):
        return device
    choices = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    raise ValueError(f"unknown device {device!r}; expected {choices}")


def require_torch_device(device: str) -> None:
    """Fail in one line when torch cannot run on ``device`` (a CPU build, or no such GPU)."""
    if check_spelling(device, allow_auto=True) in ("cpu", "auto"):
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(f"device {device} requested, but torch {torch.__version__} sees no CUDA GPU ({build}); use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device} requested, but torch sees {torch.cuda.device_count()} GPU(s)")


def require_onnxruntime_device(device: str) -> None:
    """Fail in one line when ONNX Runtime has no GPU execution provider for a ``cuda`` device."""
    if check_spelling(device) == "cpu":
        return
    import onnxruntime as ort

    if not set(GPU_PROVIDERS) & set(ort.get_available_providers()):
        raise ValueError(f"device {device} requested, but this ONNX Runtime ({ort.__version__}) has only "
                         f"{', '.join(ort.get_available_providers())}; install onnxruntime-gpu or use --device cpu")
