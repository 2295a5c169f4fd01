"""ONNX Runtime rows and parity results say which provider really ran (issue #15, defects 4 and 10).

``onnxruntime-gpu`` lists the CUDA and TensorRT providers as available even where their CUDA
libraries are missing; the session then silently runs on the CPU. Here the CPU build of ONNX
Runtime is told that those providers are available (what ``onnxruntime-gpu`` reports), and the
real session falls back exactly as it would on such a machine.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from irdeploy.export.parity import check_parity, make_inputs, parity_sizes
from irdeploy.core.ort_backend import OnnxRuntimeBackend, default_providers, provider_name
from irdeploy.runtime.bench import plan
from irdeploy.runtime.bench.measure import BenchConfig, measure

GPU_BUILD = ["NvTensorRTRTXExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def gpu_build_listing(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))


def test_default_providers_carry_device_and_engine_cache(gpu_build_listing, tmp_path):
    providers = default_providers(device_id=1, engine_cache=tmp_path / "trt")
    assert [provider_name(p) for p in providers] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options, cuda_options = providers[0][1], providers[1][1]
    assert trt_options["device_id"] == cuda_options["device_id"] == "1"
    assert trt_options["trt_engine_cache_enable"] == "True" and trt_options["trt_engine_cache_path"] == str(tmp_path / "trt")


def test_a_fallen_back_session_is_labelled_cpu_in_one_warning_line(gpu_build_listing, tiny_onnx, tmp_path):
    path, model = tiny_onnx("m3snet")
    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider did not load") as caught:
        backend = OnnxRuntimeBackend(path, threads=1)
    assert all("\n" not in str(w.message) for w in caught)
    assert backend.name == "ort (CPUExecutionProvider)" and backend.device == "cpu"
    backend.close()

    # the bench's ONNX Runtime candidate, made the way bench_model makes it: predicted on CUDA
    device = plan._ort_device()
    assert device == "cuda"
    artifacts = plan._Artifacts(model, "m3snet-tiny", tmp_path, (1, 3, 32, 32))
    artifacts.graphs["fp32"] = (path, 0.0)
    import numpy as np

    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    with pytest.warns(RuntimeWarning):
        row, = measure([plan._ort_candidate(artifacts, "fp32", 1, device)], batch,
                       config=BenchConfig(iterations=1, warmup_iters=0, warmup_seconds=0))
    assert row.status == "ok" and row.device == "cpu" and row.name == "ort (CPUExecutionProvider)"


def test_parity_results_name_the_provider_that_ran(gpu_build_listing, tiny_onnx):
    path, model = tiny_onnx("m3snet")
    inputs = make_inputs(3, parity_sizes(model.pad_multiple))[:1]
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider did not load") as caught:
        result = check_parity(str(path), model, inputs, precision="fp32", pad_multiple=model.pad_multiple,
                              pad_mode=model.pad_mode)  # the gate's own default: CUDA (listed here), then CPU
    assert all("\n" not in str(w.message) for w in caught)
    assert result.backend == "ort (CPUExecutionProvider)"  # the label every ONNX Runtime row carries
    assert "CPUExecutionProvider" in result.summary() and result.to_dict()["backend"] == result.backend


def test_restore_on_cuda_n_asks_onnx_runtime_for_device_n(gpu_build_listing, tiny_onnx, monkeypatch):
    """``--device cuda:1`` reaches the CUDA and TensorRT providers as ``device_id`` 1."""
    from irdeploy.core import ort_backend
    from irdeploy.runtime import artifacts

    seen = {}
    real = ort_backend.OnnxRuntimeBackend.__init__

    def spy(self, path, **kwargs):
        seen.update(kwargs)
        with pytest.warns(RuntimeWarning):
            real(self, path, **kwargs)

    monkeypatch.setattr(ort_backend.OnnxRuntimeBackend, "__init__", spy)
    path, _ = tiny_onnx("m3snet")
    with artifacts.open_backend("ort", onnx=str(path), device="cuda:1") as backend:
        assert backend.device == "cpu"  # this CPU build fell back, and says so
    assert seen["device_id"] == 1
    assert [p[1]["device_id"] for p in seen["providers"][:2]] == ["1", "1"]
