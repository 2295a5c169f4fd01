"""One interface for every way irdeploy runs a model: ``backend.infer(batch) -> batch``.

Batches are float32 NCHW numpy arrays in [0, 1] of any H and W; each backend applies the
padding contract of its artifact (pad to the network's multiple, run, crop) so that parity
checks, benchmarks and ``restore`` treat them alike. ``torch`` is imported only by the torch
backend: the ONNX Runtime and TensorRT backends run on machines without it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.metadata import PAD_MODE_KEY, PAD_MULTIPLE_KEY
from irdeploy.core.padding import INFERENCE_PAD_MODE, PAD_MODES, crop_batch, pad_batch


class Backend(ABC):
    """A loaded model that restores NCHW float32 batches."""

    name: str
    pad_multiple: int = 1
    pad_mode: str = "constant"
    channels: int = 3  # image channels the network takes
    # The largest NCHW batch the artifact accepts (a TensorRT profile's max); None: any size.
    max_shape: tuple[int, ...] | None = None
    # How open_backend obtained the ONNX graph or engine (irdeploy.runtime.artifacts.Artifact).
    artifact: Any = None

    @property
    def alignment(self) -> int:
        """The H/W multiple the network computes on: tiles that start on it see the same
        downsampling grid as the whole image (see :mod:`irdeploy.runtime.tiling`)."""
        return self.pad_multiple

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"{self.name}: expected an NCHW batch, got shape {batch.shape}")
        h, w = batch.shape[-2:]
        out = self._run(pad_batch(batch, self.pad_multiple, self.pad_mode))
        return np.ascontiguousarray(crop_batch(out, h, w))

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run on a batch already padded to the multiple."""

    def close(self) -> None:
        """Release sessions, engines and device memory (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TorchBackend(Backend):
    """Eager PyTorch (optionally ``torch.compile``).

    Pads unaligned inputs with ``pad_mode`` before the network, as the graph backends do (the
    network's own pad, upstream's mode, is then a no-op): every backend restores the same pixels.
    """

    def __init__(self, model: Any, *, device: str = "cpu", compile: bool = False,
                 pad_mode: str = INFERENCE_PAD_MODE) -> None:
        import torch

        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
        from irdeploy.model.spec import pad_multiple, record_of

        self.pad_multiple = pad_multiple(model)
        self.pad_mode = pad_mode
        spec = record_of(model).spec

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.runner = torch.compile(self.model) if compile else self.model
        self.name = "torch-compile" if compile else "torch"
        self.final_image = spec.image
        self.channels = record_of(model).channels

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.runner(torch.from_numpy(batch).to(self.device))
        return self.final_image(out).float().cpu().numpy()

    def infer_tensor(self, batch: Any) -> Any:
        """Device-resident variant: a torch tensor in, a torch tensor out, no host copies."""
        with self.torch.inference_mode():
            return self.final_image(self.runner(batch))


# The GPU execution providers irdeploy asks for, fastest first. The TensorRT-RTX provider
# (NvTensorRTRTXExecutionProvider) is not among them: recent ONNX Runtime builds ship it as a
# plugin that the application registers by library path and selects per device, which
# InferenceSession(providers=...) cannot do; engines for RTX GPUs come from `irdeploy build --trt rtx`.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
Provider = str | tuple[str, dict[str, str]]


def default_providers(device_id: int = 0, engine_cache: str | os.PathLike | None = None) -> list[Provider]:
    """TensorRT, CUDA, then CPU, as far as this ONNX Runtime build has them, with their options:
    ``device_id`` for both GPU providers, and an engine cache folder for the TensorRT provider
    (``engine_cache``; default ``<irdeploy cache>/ort-tensorrt``) so that its engines are built once."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers: list[Provider] = []
    if "TensorrtExecutionProvider" in available:
        if engine_cache is None:
            from .artifacts import default_cache_dir

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

    ``providers``: ONNX Runtime's list (names, or ``(name, options)``); default
    :func:`default_providers` for ``device_id``. The name, ``providers`` and ``device`` say what
    the session actually runs on (``session.get_providers()``), which is not what was asked for
    when a GPU provider fails to load (its CUDA libraries missing): then a one-line
    ``RuntimeWarning`` says so.
    """

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[Provider] | None = None,
                 threads: int | None = None, device_id: int = 0) -> None:
        import warnings

        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such ONNX file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # a provider that fails to load is reported below, in one line
        if threads:
            options.intra_op_num_threads = threads
        requested = list(providers or default_providers(device_id))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # ORT's multi-line "not in available providers"
                self.session = ort.InferenceSession(str(path), options, providers=requested)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types without a common base
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({first[:300]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.pad_multiple = int(meta.get(PAD_MULTIPLE_KEY, 1))
        self.pad_mode = meta.get(PAD_MODE_KEY, "constant")
        self.input_name = self.session.get_inputs()[0].name
        channels = self.session.get_inputs()[0].shape[1]
        self.channels = channels if isinstance(channels, int) else 3
        self.providers = list(self.session.get_providers())
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        self.name = f"ort ({self.providers[0]})"
        wanted = provider_name(requested[0])
        if wanted != self.providers[0]:
            warnings.warn(f"ONNX Runtime: {wanted} did not load for {path.name}; running on {self.providers[0]}",
                          RuntimeWarning, stacklevel=2)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class TensorRTBackend(Backend):
    """A TensorRT engine (needs an NVIDIA GPU); padding from the engine's sidecar."""

    def __init__(self, path: str | os.PathLike, **engine_options: Any) -> None:
        from .tensorrt import TensorRTEngine

        self.engine = TensorRTEngine(path, **engine_options)
        self.pad_multiple = self.engine.pad_multiple
        self.pad_mode = self.engine.sidecar.get("pad_mode", "constant")
        self.device = "cuda"
        self.max_shape = tuple(self.engine.profile.max)
        self.channels = int(self.engine.profile.max[1])

    @property
    def name(self) -> str:  # type: ignore[override]
        """With the launch path (it changes if a CUDA-graph capture fails): end-to-end and
        compute-only figures both time that path."""
        return f"tensorrt ({self.engine.sidecar.get('precision', '?')}, {self.engine.launch_path})"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.engine.infer(batch), dtype=np.float32)  # BF16/FP16/FP8 engine outputs too

    def close(self) -> None:
        self.engine.close()
