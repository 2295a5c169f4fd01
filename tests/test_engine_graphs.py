"""The CUDA-graph state machine of :class:`TensorRTEngine`, on a recording fake of CUDA and TensorRT.

Real graph replays need a GPU (``tests/gpu/test_engine_run.py`` checks their outputs); here we
check the order of calls that TensorRT's documentation asks for and that this machine can check:
a shape runs ordinarily once, is captured, and is replayed from then on; a failed capture falls
back to ordinary launches with the reason kept; TensorRT-RTX never captures by hand (its runtime
config does); freeing a shape's buffers destroys its graph.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from irdeploy.runtime.tensorrt.engine import TensorRTEngine, _Buffers


class FakeCuda:
    """Just enough of ``cuda.bindings.runtime``: every call is recorded, errors are 0."""

    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self, capture_error: int = 0) -> None:
        self.calls: list[str] = []
        self.capture_error = capture_error

    def __getattr__(self, name: str):
        def call(*args):
            self.calls.append(name)
            if name == "cudaStreamEndCapture":
                return (self.capture_error, None if self.capture_error else "graph")
            if name == "cudaGraphInstantiate":
                return (0, f"exec-{len(self.calls)}")
            if name == "cudaGetErrorName":
                return (0, b"cudaErrorStreamCaptureUnsupported")
            return (0,)

        return call


class FakeContext:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def set_input_shape(self, name, shape):
        return True

    def set_tensor_address(self, name, ptr):
        pass

    def execute_async_v3(self, stream):
        self.calls.append("execute_async_v3")
        return True


def _engine(*, rtx: bool = False, capture_error: int = 0) -> tuple[TensorRTEngine, FakeCuda]:
    engine = TensorRTEngine.__new__(TensorRTEngine)
    cuda = FakeCuda(capture_error)
    engine._rt = cuda
    engine.context = FakeContext(cuda.calls)
    engine.stream = 7
    engine.input_name, engine.output_name = "input", "output"
    engine.cuda_graph, engine.is_rtx, engine.graph_fallback = True, rtx, None
    engine._logger = SimpleNamespace(first_error=lambda default: default)
    return engine, cuda


def _buffers(shape=(1, 3, 16, 16)) -> _Buffers:
    host = np.zeros(shape, np.float32)
    return _Buffers(shape, shape, 100, 200, host, host.copy(), (300, 400))


def test_a_shape_runs_once_then_is_captured_then_replays():
    engine, cuda = _engine()
    buf = _buffers()
    engine._run_buffers(buf)
    assert cuda.calls == ["execute_async_v3", "cudaStreamSynchronize", "cudaStreamBeginCapture",
                          "execute_async_v3", "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphDestroy"]
    assert buf.graph_exec is not None
    cuda.calls.clear()
    engine._run_buffers(buf)
    engine._run_buffers(buf)
    assert cuda.calls == ["cudaGraphLaunch", "cudaGraphLaunch"]


def test_failed_capture_falls_back_to_ordinary_launches_with_the_reason():
    engine, cuda = _engine(capture_error=900)
    buf = _buffers()
    engine._run_buffers(buf)
    assert buf.graph_exec is None
    assert "capture failed for 1x3x16x16" in engine.graph_fallback
    assert "cudaErrorStreamCaptureUnsupported" in engine.graph_fallback
    cuda.calls.clear()
    engine._run_buffers(_buffers((1, 3, 32, 32)))  # no further capture attempts
    assert cuda.calls == ["execute_async_v3"]


def test_tensorrt_rtx_is_left_to_its_own_graph_strategy():
    engine, cuda = _engine(rtx=True)
    buf = _buffers()
    engine._run_buffers(buf)
    engine._run_buffers(buf)
    assert cuda.calls == ["execute_async_v3", "execute_async_v3"]
    assert buf.graph_exec is None


def test_freeing_a_shape_destroys_its_graph():
    engine, cuda = _engine()
    buf = _buffers()
    engine._run_buffers(buf)
    cuda.calls.clear()
    engine._free(buf)
    assert cuda.calls[0] == "cudaGraphExecDestroy"
    assert cuda.calls.count("cudaFree") == 2 and cuda.calls.count("cudaFreeHost") == 2
