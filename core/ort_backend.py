"""ONNX Runtime as a :class:`~irdeploy.core.backend.Backend`, and the one execution-provider order.

The export's parity gate, ``validate``, ``restore``, ``eval``, the benchmark and serving all run
graphs through :class:`OnnxRuntimeBackend`, so which providers are asked for, in which order,
and how a session is labelled (by the provider it really got) are decided here only. In the core
because the export gate needs it and the export may not import the runtime; ``onnxruntime`` is
imported when a session is made, never torch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .backend import Backend
from .metadata import PAD_MODE_KEY, PAD_MULTIPLE_KEY

# The GPU execution providers irdeploy asks for, fastest first. The TensorRT-RTX provider
# (NvTensorRTRTXExecutionProvider) is not among them: recent ONNX Runtime builds ship it as a
# plugin that the application registers by library path and selects per device, which
# InferenceSession(providers=...) cannot do; engines for RTX GPUs come from `irdeploy build --trt rtx`.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
Provider = str | tuple[str, dict[str, str]]


def default_providers(device_id: int = 0, engine_cache: str | os.PathLike | None = None, *,
                      tensorrt: bool = True) -> list[Provider]:
    """TensorRT, CUDA, then CPU, as far as this ONNX Runtime build has them, with their options:
    ``device_id`` for both GPU providers, and an engine cache folder for the TensorRT provider
    (``engine_cache``; default ``<irdeploy cache>/ort-tensorrt``) so that its engines are built once.

    ``tensorrt=False`` leaves the TensorRT provider out: the parity gate judges the graph's own
    kernels, not an engine ONNX Runtime would build (minutes, and its own precision choices).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers: list[Provider] = []
    if tensorrt and "TensorrtExecutionProvider" in available:
        if engine_cache is None:
            from .fileio import default_cache_dir

            engine_cache = default_cache_dir() / "ort-tensorrt"
        providers.append(("TensorrtExecutionProvider", {"device_id": str(device_id), "trt_engine_cache_enable": "True",
                                                        "trt_engine_cache_path": str(engine_cache)}))
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": str(device_id)}))
    return providers + ["CPUExecutionProvider"]


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


class OnnxRuntimeBackend(Backend):
    """An irdeploy ONNX graph in ONNX Runtime; padding from the graph's metadata.

    ``graph``: an ONNX file, or a serialized graph (``bytes``: the export gate's graph before it
    is written). ``providers``: ONNX Runtime's list (names, or ``(name, options)``); default
    :func:`default_providers` for ``device_id``. The name, ``providers`` and ``device`` say what
    the session actually runs on (``session.get_providers()``), which is not what was asked for
    when a GPU provider fails to load (its CUDA libraries missing): then a one-line
    ``RuntimeWarning`` says so. ``pad_multiple``/``pad_mode`` override the graph's recorded
    contract (the gate passes the export's own, for a graph whose metadata is not final).
    """

    def __init__(self, graph: str | os.PathLike | bytes, *, providers: Sequence[Provider] | None = None,
                 threads: int | None = None, device_id: int = 0, pad_multiple: int | None = None,
                 pad_mode: str | None = None) -> None:
        import onnxruntime as ort

        if isinstance(graph, bytes):
            source, where, label = graph, "the graph", "the graph"
        else:
            path = Path(graph)
            if not path.is_file():
                raise ValueError(f"{path}: no such ONNX file")
            source, where, label = str(path), str(path), path.name
        options = ort.SessionOptions()
        options.log_severity_level = 3  # a provider that fails to load is reported below, in one line
        if threads:
            options.intra_op_num_threads = threads
        requested = list(providers or default_providers(device_id))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # ORT's multi-line "not in available providers"
                self.session = ort.InferenceSession(source, options, providers=requested)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types without a common base
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{where}: ONNX Runtime cannot load it ({first[:300]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.pad_multiple = pad_multiple if pad_multiple is not None else int(meta.get(PAD_MULTIPLE_KEY, 1))
        self.pad_mode = pad_mode if pad_mode is not None else meta.get(PAD_MODE_KEY, "constant")
        self.input_name = self.session.get_inputs()[0].name
        channels = self.session.get_inputs()[0].shape[1]
        self.channels = channels if isinstance(channels, int) else 3
        self.providers = list(self.session.get_providers())
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        self.name = f"ort ({self.providers[0]})"
        wanted = provider_name(requested[0])
        if wanted != self.providers[0]:
            warnings.warn(f"ONNX Runtime: {wanted} did not load for {label}; running on {self.providers[0]}",
                          RuntimeWarning, stacklevel=2)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
