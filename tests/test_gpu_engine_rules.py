"""The engine runner against the rule-enforcing CUDA/TensorRT simulator (no GPU needed).

Each test runs :class:`TensorRTEngine` (or the bench probe) end to end on
:mod:`irdeploy.runtime.tensorrt.simulated`, which computes ``0.5 * x + 0.25`` and raises
:class:`RuleBroken` when a documented CUDA or TensorRT rule is broken: a stale CUDA-graph replay,
host work between timing events, memory used after it was freed, and so on. The defect numbers
are issue #15's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from irdeploy.runtime.tensorrt import EngineLoadError, GPUError, TensorRTEngine
from irdeploy.runtime.tensorrt import simulated
from irdeploy.runtime.tensorrt.simulated import RuleBroken, SimulatedCuda, simulate, write_engine

SHAPES = [(1, 3, 16, 16), (2, 3, 32, 48)]


def _expected(batch: np.ndarray, dtype=np.float32) -> np.ndarray:
    x = batch.astype(dtype).astype(np.float32)
    return (0.5 * x + 0.25).astype(dtype).astype(np.float32)


def _batches(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(s, dtype=np.float32) for s in SHAPES]


def _one_line(exc: BaseException) -> str:
    assert "\n" not in str(exc), str(exc)
    return str(exc)


# -- the simulator itself -----------------------------------------------------------------------


def test_simulator_has_cuda_bindings_signatures():
    """Every simulated CUDA function takes the parameters of cuda-bindings' own function, and
    every ``cudaXxx`` the runtime calls exists in the real module."""
    from cuda.bindings import runtime

    assert simulated.signature_mismatches(runtime, SimulatedCuda()) == []
    root = Path(simulated.__file__).parents[1]
    used = set()
    for path in (*root.glob("tensorrt/*.py"), root / "bench" / "gpu.py"):
        if path.name == "simulated.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("cuda"):
                used.add(node.func.attr)
    assert {"cudaGraphLaunch", "cudaEventRecord", "cudaDriverGetVersion"} <= used
    assert not {n for n in used if not hasattr(runtime, n)}


def test_simulator_rules_bite(tmp_path):
    """The rules are real: a stale graph replay and host work between events both raise."""
    path = write_engine(tmp_path / "m.engine")
    with simulate() as cuda:
        engine = TensorRTEngine(path)
        ctx, stream = engine.context, engine.stream
        a, b = _batches()
        for batch in (a, b):
            engine.infer(batch)  # allocates both shapes' buffers
        buf_a = engine._buffers[a.shape]
        ctx.set_input_shape("input", a.shape)
        ctx.set_tensor_address("input", buf_a.device_in)
        ctx.set_tensor_address("output", buf_a.device_out)
        ctx.execute_async_v3(int(stream))
        cuda.cudaStreamSynchronize(stream)
        cuda.cudaStreamBeginCapture(stream, cuda.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
        ctx.execute_async_v3(int(stream))
        graph = cuda.cudaStreamEndCapture(stream)[1]
        exec_ = cuda.cudaGraphInstantiate(graph, 0)[1]
        ctx.set_input_shape("input", b.shape)
        cuda.cudaGraphLaunch(exec_, stream)
        with pytest.raises(RuleBroken, match="stale"):
            cuda.cudaStreamSynchronize(stream)
        start = cuda.cudaEventCreate()[1]
        cuda.cudaEventRecord(start, stream)
        with pytest.raises(RuleBroken, match="compute-only"):
            ctx.set_input_shape("input", a.shape)


# -- defect 2: CUDA graphs ----------------------------------------------------------------------


def test_cuda_graphs_never_replay_for_a_shape_the_context_no_longer_has(tmp_path):
    path = write_engine(tmp_path / "m.engine")
    batches = _batches()
    with simulate():
        with TensorRTEngine(path, cuda_graph=True) as engine:
            for _ in range(3):  # A B A B A B: each shape captured once, then replayed
                for batch in batches:
                    np.testing.assert_array_equal(engine.infer(batch), _expected(batch))
            assert engine.graph_fallback is None
            assert all(buf.graph_exec is not None for buf in engine._buffers.values())
            assert "CUDA graph" in engine.launch_path


def test_an_exception_inside_capture_ends_it_and_falls_back(tmp_path):
    path = write_engine(tmp_path / "m.engine")
    with simulate(raise_in_capture=True) as cuda:
        with TensorRTEngine(path, cuda_graph=True) as engine:
            for batch in _batches() * 2:
                np.testing.assert_array_equal(engine.infer(batch), _expected(batch))
            assert not cuda.is_capturing()
            assert "raised inside stream capture" in _one_line(Exception(engine.graph_fallback))


def test_an_instantiate_failure_falls_back_with_the_reason(tmp_path):
    class NoInstantiate(SimulatedCuda):
        def cudaGraphInstantiate(self, graph, flags):
            return self._err("cudaErrorNotSupported")

    path = write_engine(tmp_path / "m.engine")
    with simulate(NoInstantiate()):
        with TensorRTEngine(path, cuda_graph=True) as engine:
            for batch in _batches() * 2:
                np.testing.assert_array_equal(engine.infer(batch), _expected(batch))
            assert "cudaErrorNotSupported" in engine.graph_fallback


# -- defect 3: TensorRT-RTX kernel specialization ---------------------------------------------------


def test_rtx_engines_specialise_kernels_eagerly_so_runs_are_bit_exact(tmp_path):
    path = write_engine(tmp_path / "m.engine", flavour="rtx")
    batch = _batches()[1]
    with simulate():
        with TensorRTEngine(path) as first, TensorRTEngine(path) as second:
            assert first.kernel_specialization == "eager"
            outs = [first.infer(batch), second.infer(batch), first.infer(batch)]
        for out in outs:
            np.testing.assert_array_equal(out, _expected(batch))
        with TensorRTEngine(path, kernel_specialization="lazy") as lazy:  # the option exists, and differs
            assert not np.array_equal(lazy.infer(batch), _expected(batch))
    with pytest.raises(ValueError, match="kernel specialization"):
        TensorRTEngine(path, kernel_specialization="sometimes")


def test_the_sidecar_strategy_is_the_default(tmp_path):
    path = write_engine(tmp_path / "m.engine", flavour="rtx", sidecar={"options": {"kernel_specialization": "lazy"}})
    with simulate(), TensorRTEngine(path) as engine:
        assert engine.kernel_specialization == "lazy"


# -- defect 5: compute-only timing ------------------------------------------------------------------


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_compute_only_probe_times_only_the_launch(tmp_path, cuda_graph):
    from irdeploy.runtime.backends import TensorRTBackend
    from irdeploy.runtime.bench.gpu import TensorRTProbe

    path = write_engine(tmp_path / "m.engine")
    batch = _batches()[0]
    with simulate(SimulatedCuda(kernel_ms=2.5)):
        with TensorRTBackend(path, cuda_graph=cuda_graph) as backend:
            end_to_end = backend.infer(batch)
            probe = TensorRTProbe(backend, batch)
            try:
                assert [probe() for _ in range(3)] == [2_500_000] * 3  # ns: exactly one kernel
            finally:
                probe.close()
            assert ("CUDA graph" if cuda_graph else "enqueueV3") in backend.name
            np.testing.assert_array_equal(end_to_end, _expected(batch))


# -- defect 8: BF16 / FP8 I/O --------------------------------------------------------------------


def test_bf16_and_fp8_io_map_through_ml_dtypes(tmp_path):
    batch = _batches()[0]
    with simulate():
        for dtype, np_type in (("BF16", ml_dtypes.bfloat16), ("FP8", ml_dtypes.float8_e4m3fn), ("HALF", np.float16)):
            path = write_engine(tmp_path / f"{dtype}.engine", dtype=dtype)
            with TensorRTEngine(path) as engine:
                out = engine.infer(batch)
            assert out.dtype == np.dtype(np_type)
            np.testing.assert_array_equal(out.astype(np.float32), _expected(batch, np_type))
        path = write_engine(tmp_path / "fp4.engine", dtype="FP4")
        with pytest.raises(EngineLoadError, match="FP4") as info:
            TensorRTEngine(path)
        _one_line(info.value)


def test_numpy_types_of_the_real_tensorrt_rtx_data_types():
    trt = pytest.importorskip("tensorrt_rtx")
    from irdeploy.runtime.tensorrt.engine import numpy_dtype

    assert numpy_dtype(trt, trt.DataType.BF16) == np.dtype(ml_dtypes.bfloat16)
    assert numpy_dtype(trt, trt.DataType.FP8) == np.dtype(ml_dtypes.float8_e4m3fn)
    assert numpy_dtype(trt, trt.DataType.HALF) == np.float16
    for name in ("FP4", "INT4"):
        with pytest.raises(EngineLoadError, match=name):
            numpy_dtype(trt, getattr(trt.DataType, name))


# -- defect 10: the smaller ones --------------------------------------------------------------------


def test_a_rejected_tensor_address_is_one_line(tmp_path, capsys):
    path = write_engine(tmp_path / "m.engine")
    with simulate(reject_addresses=True), TensorRTEngine(path) as engine:
        with pytest.raises(GPUError, match="set_tensor_address") as info:
            engine.infer(_batches()[0])
        _one_line(info.value)
    # Through restore: the file is reported failed in one line, exit 1 (the input was fine, the GPU
    # call failed), no traceback and no output.
    from irdeploy.core.images import sample_path
    from irdeploy.runtime.cli import main

    with simulate(reject_addresses=True):
        code = main(["restore", str(sample_path("chelsea.png")), "-o", str(tmp_path / "out"), "--engine", str(path)])
    captured = capsys.readouterr()
    failed = [line for line in captured.out.splitlines() if line.startswith("failed ")]
    assert code == 1 and len(failed) == 1 and "set_tensor_address" in failed[0]
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_no_execution_context_is_one_line(tmp_path):
    path = write_engine(tmp_path / "m.engine")
    with simulate(context_fails=True):
        with pytest.raises(EngineLoadError, match="execution context") as info:
            TensorRTEngine(path)
        assert "out of device memory" in _one_line(info.value)


def test_a_data_dependent_output_shape_is_refused_in_one_line(tmp_path):
    path = write_engine(tmp_path / "m.engine", data_dependent_output=True)
    with simulate(), TensorRTEngine(path) as engine:
        with pytest.raises(ValueError, match="-1") as info:
            engine.infer(_batches()[0])
        _one_line(info.value)


def test_a_rejected_runtime_cache_is_reported_and_replaced(tmp_path):
    path = write_engine(tmp_path / "m.engine", flavour="rtx")
    cache = tmp_path / "runtime.cache"
    cache.write_bytes(b"a cache from another GPU or TensorRT-RTX version")
    with simulate(), pytest.warns(RuntimeWarning, match="rejected"), TensorRTEngine(path, runtime_cache=cache) as engine:
        assert any("runtime cache" in n and "rejected" in n for n in engine.notes), engine.notes
        engine.infer(_batches()[0])
    assert cache.read_bytes().startswith(simulated.CACHE_MAGIC)
    with simulate(), TensorRTEngine(path, runtime_cache=cache) as engine:
        assert engine.notes == []


def test_device_outputs_survive_buffer_eviction(tmp_path):
    path = write_engine(tmp_path / "m.engine", profile=((1, 3, 8, 8), (1, 3, 32, 32), (1, 3, 64, 64)))
    with simulate() as cuda, TensorRTEngine(path) as engine:
        batch = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
        ptr_in = cuda.cudaMalloc(batch.nbytes)[1]
        cuda.cudaMemcpy(ptr_in, batch.ctypes.data, batch.nbytes, cuda.cudaMemcpyKind.cudaMemcpyHostToDevice)
        out_ptr, shape = engine.infer_device(ptr_in, batch.shape)
        for size in (8, 24, 32, 40, 48, 56):  # more shapes than the engine keeps buffers for
            engine.infer(np.zeros((1, 3, size, size), np.float32))
        out = np.empty(shape, np.float32)
        err, = cuda.cudaMemcpy(out.ctypes.data, out_ptr, out.nbytes, cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        assert int(err) == 0, "the device-resident caller's output was freed"
        np.testing.assert_array_equal(out, _expected(batch))


def test_the_chosen_device_index_is_used(tmp_path):
    gpus = (("Simulated RTX 3090", "8.6"), ("Simulated RTX 4090", "8.9"))
    path = write_engine(tmp_path / "m.engine", gpu=gpus[1])
    with simulate(SimulatedCuda(gpus)) as cuda:
        with pytest.raises(EngineLoadError, match="built for Simulated RTX 4090"):
            TensorRTEngine(path)  # device 0 is the other GPU
        with TensorRTEngine(path, device=1) as engine:
            assert cuda.device == 1 and engine.gpu.name == gpus[1][0]


# -- review leftovers: every allocation is released when a step fails --------------------------------


class FailingSync(SimulatedCuda):
    """A device whose stream synchronize reports an error once ``failing`` is set: the stream's
    work has ended and an asynchronous fault in it surfaces there; everything else follows the
    simulator's rules."""

    failing = False

    def cudaStreamSynchronize(self, stream):
        result = super().cudaStreamSynchronize(stream)
        return (self.cudaError_t.cudaErrorUnknown,) if self.failing else result


def _use_everything(cuda: SimulatedCuda, engine: TensorRTEngine) -> int:
    """Buffers for two shapes, one device output and one launcher; returns the caller's input."""
    batch = _batches()[0]
    for b in _batches():
        engine.infer(b)
    ptr = cuda.cudaMalloc(batch.nbytes)[1]
    cuda.cudaMemcpy(ptr, batch.ctypes.data, batch.nbytes, cuda.cudaMemcpyKind.cudaMemcpyHostToDevice)
    engine.infer_device(ptr, batch.shape)
    engine.launcher(ptr, batch.shape)()
    return ptr


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_close_releases_everything_when_synchronize_fails(tmp_path, cuda_graph):
    path = write_engine(tmp_path / "m.engine")
    with simulate(FailingSync()) as cuda:
        engine = TensorRTEngine(path, cuda_graph=cuda_graph)
        ptr = _use_everything(cuda, engine)
        cuda.failing = True
        with pytest.raises(GPUError, match="cudaStreamSynchronize failed with cudaErrorUnknown"):
            engine.close()
        engine.close()  # once closed, closed: nothing is freed twice
        cuda.cudaFree(ptr)
        assert cuda.leaks() == []


def test_close_releases_everything_when_the_runtime_cache_cannot_be_written(tmp_path):
    path = write_engine(tmp_path / "m.engine", flavour="rtx")
    folder = tmp_path / "caches"
    folder.mkdir()
    with simulate() as cuda:
        engine = TensorRTEngine(path, runtime_cache=folder / "rtx.cache", cuda_graph=True)
        ptr = _use_everything(cuda, engine)
        folder.rmdir()
        folder.write_text("a file where the cache's folder was")
        with pytest.raises(OSError, match="caches"):
            engine.close()
        cuda.cudaFree(ptr)
        assert cuda.leaks() == []


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_a_launcher_or_buffers_that_cannot_be_bound_free_their_memory(tmp_path, cuda_graph):
    path = write_engine(tmp_path / "m.engine")
    batch = _batches()[0]
    with simulate(reject_addresses=True) as cuda:
        engine = TensorRTEngine(path, cuda_graph=cuda_graph)
        ptr = cuda.cudaMalloc(batch.nbytes)[1]
        with pytest.raises(GPUError, match="rejected the address"):
            engine.launcher(ptr, batch.shape)
        held = dict(cuda.memory)
        with pytest.raises(GPUError, match="rejected the address"):
            engine.infer(batch)  # with cuda_graph the shape's own context is bound as its buffers are made
        if cuda_graph:  # (without, the buffers are kept for the shape, bound per run, and freed at close)
            assert cuda.memory == held
        engine.close()
        cuda.cudaFree(ptr)
        assert cuda.leaks() == []


def test_a_launcher_whose_first_run_fails_frees_its_output(tmp_path):
    path = write_engine(tmp_path / "m.engine")
    batch = _batches()[0]
    with simulate(FailingSync()) as cuda:
        engine = TensorRTEngine(path)
        ptr = cuda.cudaMalloc(batch.nbytes)[1]
        cuda.failing = True
        with pytest.raises(GPUError, match="cudaStreamSynchronize"):
            engine.launcher(ptr, batch.shape)
        assert set(cuda.memory) == {ptr}
        cuda.failing = False
        engine.close()
        cuda.cudaFree(ptr)
        assert cuda.leaks() == []


class NoSecondEvent(SimulatedCuda):
    """A device that runs out of resources after one event."""

    def cudaEventCreate(self):
        if self.events:
            return self._err("cudaErrorMemoryAllocation")
        return super().cudaEventCreate()


@pytest.mark.parametrize("failure", ["address", "event"])
def test_the_bench_probe_frees_what_it_made_when_setup_fails(tmp_path, failure):
    from irdeploy.runtime.backends import TensorRTBackend
    from irdeploy.runtime.bench.gpu import TensorRTProbe

    path = write_engine(tmp_path / "m.engine")
    cuda, options = (SimulatedCuda(), {"reject_addresses": True}) if failure == "address" else (NoSecondEvent(), {})
    with simulate(cuda, **options):
        with TensorRTBackend(path) as backend:
            with pytest.raises(GPUError, match="rejected the address" if failure == "address" else "cudaEventCreate"):
                TensorRTProbe(backend, _batches()[0])
        assert cuda.leaks() == []


def test_the_simulator_refuses_released_handles():
    cuda = SimulatedCuda()
    stream = cuda.cudaStreamCreate()[1]
    event = cuda.cudaEventCreate()[1]
    assert int(cuda.cudaEventDestroy(event)[0]) == 0
    assert cuda.cudaEventDestroy(event)[0].name == "cudaErrorInvalidResourceHandle"
    assert cuda.cudaEventRecord(event, stream)[0].name == "cudaErrorInvalidResourceHandle"
    graph_exec = cuda.cudaGraphInstantiate([], 0)[1]
    assert cuda.leaks() == ["1 stream(s)", "1 graph executable(s)"]
    assert int(cuda.cudaGraphExecDestroy(graph_exec)[0]) == 0
    assert cuda.cudaGraphLaunch(graph_exec, stream)[0].name == "cudaErrorInvalidResourceHandle"
    cuda.cudaStreamDestroy(stream)
    assert cuda.leaks() == []
