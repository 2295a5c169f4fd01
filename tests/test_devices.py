"""``--device cuda`` against what ONNX Runtime will really run on."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from irdeploy.core.ort_backend import default_providers, provider_name
from irdeploy.runtime.devices import require_onnxruntime_device


@pytest.mark.parametrize("available", [
    ["CPUExecutionProvider"],
    # The TensorRT-RTX plugin provider: present in the build, but no session irdeploy makes asks for it.
    ["NvTensorRTRTXExecutionProvider", "CPUExecutionProvider"],
])
def test_cuda_is_refused_when_no_provider_a_session_asks_for_is_there(monkeypatch, available):
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    assert [provider_name(p) for p in default_providers()] == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="install onnxruntime-gpu or use --device cpu"):
        require_onnxruntime_device("cuda:0")


def test_cuda_passes_when_the_session_would_get_a_gpu_provider(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    require_onnxruntime_device("cuda")
    assert provider_name(default_providers()[0]) == "CUDAExecutionProvider"
