"""The shared backend interface: torch and ONNX Runtime agree on any size, padding included."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_runs_without_torch

from irdeploy.model import specs
from irdeploy.model.spec import pad_multiple
from irdeploy.core.ort_backend import OnnxRuntimeBackend
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.core.padding import INFERENCE_PAD_MODE


@pytest.mark.parametrize("arch", [spec.name for spec in specs()])
def test_onnxruntime_matches_torch_on_odd_sizes(tiny_onnx, arch: str) -> None:
    path, model = tiny_onnx(arch)
    ort_backend = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
    assert (ort_backend.pad_multiple, ort_backend.pad_mode) == (pad_multiple(model), INFERENCE_PAD_MODE)  # torch pads so too
    x = np.random.default_rng(3).random((2, 3, 45, 29), dtype=np.float32)
    with TorchBackend(model) as torch_backend, ort_backend:
        a, b = torch_backend.infer(x), ort_backend.infer(x)
    assert a.shape == b.shape == x.shape and a.flags.c_contiguous and b.flags.c_contiguous
    assert np.abs(a - b).max() < 1e-4


def test_bad_inputs_are_one_line(tmp_path, tiny_onnx) -> None:
    with pytest.raises(ValueError, match="no such ONNX file"):
        OnnxRuntimeBackend(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="ONNX Runtime cannot load it") as err:
        OnnxRuntimeBackend(junk)
    assert "\n" not in str(err.value)
    path, _ = tiny_onnx("m3snet")
    with pytest.raises(ValueError, match="expected an NCHW batch"):
        OnnxRuntimeBackend(path).infer(np.zeros((3, 32, 32), np.float32))


def test_onnxruntime_backend_does_not_import_torch(tiny_onnx) -> None:
    path, _ = tiny_onnx("m3snet")
    assert_runs_without_torch(
        "import numpy as np\n"
        "from irdeploy.core.ort_backend import OnnxRuntimeBackend\n"
        f"out = OnnxRuntimeBackend({str(path)!r}).infer(np.zeros((1, 3, 20, 30), np.float32))\n"
        "assert out.shape == (1, 3, 20, 30)\n"
    )
