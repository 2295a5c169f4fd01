"""Real engine runs: every precision of the tiny models, dynamic shapes, save/load, parity with eager.

Runs wherever TensorRT or TensorRT-RTX and an NVIDIA GPU exist; skips with the reason otherwise
(pytest's ``-ra`` prints it). TensorRT-RTX engines are built for the current GPU here.
Parity thresholds are PSNR against eager float32 on random inputs in [0, 1]; they are first
estimates, to be tightened from the first GPU run.
"""

from __future__ import annotations

import numpy as np
import pytest

from irdeploy.core.tensorrt import TensorRTUnavailable, flavour_of, import_tensorrt
from irdeploy.runtime.tensorrt import TensorRTEngine, build_engine
from irdeploy.runtime.tensorrt.device import current_gpu, rtx_capabilities
from irdeploy.runtime.tensorrt.errors import NoGPUError

try:
    GPU = current_gpu()
    TRT = import_tensorrt("auto")
except (NoGPUError, TensorRTUnavailable) as exc:
    pytest.skip(f"GPU engine tests need an NVIDIA GPU and TensorRT: {exc}", allow_module_level=True)
if flavour_of(TRT) == "rtx" and GPU.compute_capability not in rtx_capabilities(TRT):  # e.g. Hopper (9.0)
    pytest.skip(f"only TensorRT-RTX is installed and it does not target {GPU.name} ({GPU.compute_capability}; it "
                f"supports {', '.join(rtx_capabilities(TRT))}): these tests need data-centre TensorRT here",
                allow_module_level=True)

PSNR_MIN = {"fp32": 60.0, "fp16": 35.0, "bf16": 28.0}
SHAPES = {
    "m3snet": {"min": (1, 3, 32, 32), "opt": (1, 3, 64, 64), "max": (2, 3, 96, 96)},
    "mhnet": {"min": (1, 3, 32, 32), "opt": (1, 3, 64, 64), "max": (2, 3, 96, 96)},
    "mprnet": {"min": (1, 3, 32, 32), "opt": (1, 3, 32, 32), "max": (2, 3, 32, 32)},
}
RUN_SHAPES = {"m3snet": [(1, 3, 32, 48), (2, 3, 96, 64)], "mhnet": [(1, 3, 32, 48), (2, 3, 96, 64)],
              "mprnet": [(1, 3, 32, 32), (2, 3, 32, 32)]}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _eager(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(batch))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


@pytest.fixture(scope="module")
def built(tiny_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_engines")
    extra = {"compute_capabilities": ["current"]} if flavour_of(TRT) == "rtx" else {}

    def get(arch: str, precision: str):
        path, model = tiny_onnx(arch)
        result = build_engine(path, root / f"{arch}.{precision}.engine", precision=precision, shapes=SHAPES[arch], **extra)
        return result, model

    return get


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("arch", ["m3snet", "mhnet", "mprnet"])
def test_engine_matches_eager(built, arch, precision, tmp_path):
    result, model = built(arch, precision)
    cache = tmp_path / "runtime.cache"
    rng = np.random.default_rng(0)
    with TensorRTEngine(result.engine_path, runtime_cache=cache) as engine:
        for shape in RUN_SHAPES[arch] * 2:  # each shape twice: the second call reuses its buffers
            batch = rng.random(shape, dtype=np.float32)
            out = engine.infer(batch)
            assert out.shape == shape and out.dtype == np.float32
            psnr = _psnr(out, _eager(model, batch))
            print(f"{arch} {precision} {shape}: PSNR {psnr:.1f} dB vs eager float32 on {GPU.name}")
            assert psnr >= PSNR_MIN[precision]
        assert len(engine._buffers) == len(set(RUN_SHAPES[arch]))
    if result.sidecar["tensorrt"]["flavour"] == "rtx":
        assert cache.is_file()


def test_saved_engine_reloads_with_the_same_output(built):
    result, _ = built("m3snet", "fp16")
    batch = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    with TensorRTEngine(result.engine_path) as first:
        expected = first.infer(batch)
    with TensorRTEngine(result.engine_path) as second:
        np.testing.assert_array_equal(second.infer(batch), expected)


def test_shape_outside_the_profile_is_one_line(built):
    result, _ = built("m3snet", "fp32")
    with TensorRTEngine(result.engine_path) as engine:
        for shape in ((1, 3, 128, 128), (1, 3, 40, 40), (3, 3, 64, 64)):
            with pytest.raises(ValueError, match="outside the engine's profile") as info:
                engine.infer(np.zeros(shape, np.float32))
            assert "\n" not in str(info.value)


def test_device_resident_inference(built):
    from irdeploy.runtime.tensorrt.device import check, cudart

    result, _ = built("m3snet", "fp32")
    rt = cudart()
    batch = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    with TensorRTEngine(result.engine_path) as engine:
        expected = engine.infer(batch)
        ptr = check(rt.cudaMalloc(batch.nbytes), "cudaMalloc")
        try:
            check(rt.cudaMemcpy(ptr, batch.ctypes.data, batch.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            out_ptr, shape = engine.infer_device(ptr, batch.shape)
            check(rt.cudaStreamSynchronize(engine.stream), "cudaStreamSynchronize")
            out = np.empty(shape, np.float32)
            check(rt.cudaMemcpy(out.ctypes.data, out_ptr, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy")
        finally:
            check(rt.cudaFree(ptr), "cudaFree")
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replay_matches_ordinary_launches(built, precision):
    """Graph replays (captured per shape; TensorRT-RTX's own whole-graph strategy) give the
    ordinary launch's output, also when shapes alternate between captured graphs."""
    result, _ = built("m3snet", precision)
    rng = np.random.default_rng(3)
    batches = [rng.random(s, dtype=np.float32) for s in RUN_SHAPES["m3snet"]]
    with TensorRTEngine(result.engine_path) as plain:
        expected = [plain.infer(b) for b in batches]
    with TensorRTEngine(result.engine_path, cuda_graph=True) as graphed:
        for _ in range(3):  # first pass runs and captures, later passes replay
            for batch, want in zip(batches, expected):
                np.testing.assert_allclose(graphed.infer(batch), want, rtol=0, atol=1e-6)
        assert graphed.graph_fallback is None, graphed.graph_fallback
        if not graphed.is_rtx:
            assert all(buf.graph_exec is not None for buf in graphed._buffers.values())


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_launcher_matches_infer(built, cuda_graph):
    """The compute-only probe's launch (shapes and addresses bound once, a graph with cuda_graph)
    computes what ``infer`` computes."""
    from irdeploy.runtime.tensorrt.device import check, cudart

    result, _ = built("m3snet", "fp16")
    rt = cudart()
    batch = np.random.default_rng(4).random((1, 3, 64, 64), dtype=np.float32)
    with TensorRTEngine(result.engine_path, cuda_graph=cuda_graph) as engine:
        expected = engine.infer(batch)
        ptr = check(rt.cudaMalloc(batch.nbytes), "cudaMalloc")
        try:
            check(rt.cudaMemcpy(ptr, batch.ctypes.data, batch.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            launch = engine.launcher(ptr, batch.shape)
            for _ in range(3):
                launch()
            check(rt.cudaStreamSynchronize(engine.stream), "cudaStreamSynchronize")
            out = np.empty(launch.output_shape, np.float32)
            check(rt.cudaMemcpy(out.ctypes.data, launch.output_ptr, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                  "cudaMemcpy")
            if not engine.is_rtx:
                assert ("CUDA graph" in launch.path) == cuda_graph, launch.path
        finally:
            check(rt.cudaFree(ptr), "cudaFree")
    np.testing.assert_array_equal(out, expected)
