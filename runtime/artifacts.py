"""Open a backend by kind, making the ONNX graph or engine it needs on the fly and caching it.

``irdeploy restore --backend ort --model m3snet-32 --checkpoint ck.pth`` should neither make the
user run ``export`` and ``build`` first nor pay for them on every run: a dynamo export with its
parity gate takes 10-60 s and an engine build minutes. :func:`open_backend` exports (and, for
TensorRT, builds) once into a cache folder and reuses the files afterwards.

The ONNX cache key is the checkpoint's sha256, the model name and constructor arguments, the
graph precision and the irdeploy version: everything the exported graph depends on that a user
can change. Engines are keyed by the ONNX file they come from and their precision; the rest of
what makes an engine stale (TensorRT version, GPU, profile) is checked by
:func:`~irdeploy.runtime.tensorrt.build_engine`'s own sidecar cache, which rebuilds in place.
Random weights (no checkpoint) are not reproducible, so they are exported into a temporary
folder that is removed once the backend holds the model in memory, never cached.

Only the export needs torch; a cached ONNX graph or engine is opened without it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import irdeploy
from irdeploy.core.backend import Backend
from irdeploy.core.fileio import default_cache_dir, sha256_file, sha256_json

from irdeploy.core.padding import INFERENCE_PAD_MODE
from irdeploy.core.progress import step


@dataclass(frozen=True)
class Artifact:
    """Where a backend's ONNX graph or engine came from (``Backend.artifact``)."""

    kind: str  # "onnx" or "engine"
    path: Path
    cached: bool  # reused from an earlier call: no export or build happened now
    seconds: float  # spent exporting or building now (0 on a cache hit)
    temporary: bool = False  # random weights: made in a folder that no longer exists

    def describe(self) -> str:
        if self.cached:
            return f"{self.kind} from the cache ({self.path})"
        made = "exported" if self.kind == "onnx" else "built"
        where = "a temporary folder (random weights are not cached)" if self.temporary else str(self.path)
        return f"{self.kind} {made} in {self.seconds:.1f} s to {where}"


def onnx_cache_key(model: str, model_args: dict[str, Any], checkpoint_sha256: str, precision: str,
                   pad_mode: str = INFERENCE_PAD_MODE) -> str:
    """sha256 over everything a cached ONNX graph depends on, in a canonical JSON form."""
    return sha256_json({"model": model, "args": model_args, "checkpoint": checkpoint_sha256, "precision": precision,
                        "pad_mode": pad_mode, "irdeploy": irdeploy.__version__})


def cached_onnx(model: str, checkpoint: str | os.PathLike | None, model_args: dict[str, Any] | None,
                precision: str, cache_dir: Path, pad_mode: str = INFERENCE_PAD_MODE) -> Artifact:
    """The ONNX graph of ``model`` with ``checkpoint``'s weights: from the cache, or exported into it.

    The model is only built on a miss, so a hit costs the checkpoint's hash (about a second per
    GB) and no torch work.
    """
    from irdeploy.model import resolve

    resolve(model)  # an unknown name fails here, before hashing or exporting anything
    args = dict(model_args or {})
    if checkpoint is None:
        path = cache_dir / f"{model}-{precision}-random.onnx"
    else:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            from irdeploy.model import CheckpointError

            raise CheckpointError(f"checkpoint {checkpoint} does not exist or is not a file")
        key = onnx_cache_key(model, args, sha256_file(checkpoint), precision, pad_mode)
        path = cache_dir / "onnx" / f"{model}-{precision}-{key[:20]}.onnx"
        if path.is_file():
            return Artifact("onnx", path, cached=True, seconds=0.0)
    from irdeploy.export import to_onnx
    from irdeploy.model import load_model

    start = time.perf_counter()
    with step(f"exporting {model} to a {precision} ONNX graph (once per checkpoint; later runs use the cache)"):
        network = load_model(model, checkpoint, **args)
        path.parent.mkdir(parents=True, exist_ok=True)
        to_onnx(network, path, precision=precision, tensorrt=False, pad_mode=pad_mode)  # atomic: never a partial graph
    return Artifact("onnx", path, cached=False, seconds=time.perf_counter() - start, temporary=checkpoint is None)


def cached_engine(onnx_path: Path, precision: str, cache_dir: Path) -> Artifact:
    """An engine of ``onnx_path`` for this machine's GPU: from the cache, or built into it.

    TensorRT-RTX builds for the current GPU only (smaller and faster to build than its default
    of every RTX architecture; this cache serves this machine).
    """
    from irdeploy.core.tensorrt import flavour_of, import_tensorrt

    from .tensorrt import build_engine

    trt = import_tensorrt("auto")
    engine_path = cache_dir / "engines" / f"{onnx_path.stem}-{sha256_file(onnx_path)[:16]}-{precision}.engine"
    built = build_engine(onnx_path, engine_path, precision=precision,
                         compute_capabilities=["current"] if flavour_of(trt) == "rtx" else None)
    return Artifact("engine", built.engine_path, cached=built.cached, seconds=0.0 if built.cached else built.seconds)


def _gpu_index(device: str) -> int:
    """``cuda:1`` -> 1; anything else -> 0 (an engine always runs on a GPU)."""
    _, _, index = device.partition(":")
    if index and not index.isdigit():
        raise ValueError(f"bad device {device!r}: expected cpu, cuda or cuda:N")
    return int(index or 0)


@dataclass(frozen=True)
class OpenRequest:
    """What :func:`open_backend` was asked for; every backend's opener takes one."""

    backend: str
    model: str | None = None
    checkpoint: str | None = None
    model_args: dict | None = None
    onnx: str | None = None
    engine: str | None = None
    precision: str = "fp32"
    cache_dir: Path = field(default_factory=default_cache_dir)
    scratch: Path = Path(".")  # a folder removed once the backend is open (graphs of random weights)
    threads: int | None = None
    device: str = "cpu"
    pad_mode: str | None = None

    def needs_model(self) -> None:
        if self.model is None:
            raise ValueError(f"the {self.backend} backend needs --model (and --checkpoint)")


def open_backend(kind: str, *, model: str | None = None, checkpoint: str | None = None,
                 model_args: dict | None = None, onnx: str | None = None, engine: str | None = None,
                 precision: str = "fp32", cache_dir: str | None = None, threads: int | None = None,
                 device: str = "cpu", pad_mode: str | None = None) -> Backend:
    """A ready :class:`~irdeploy.core.backend.Backend` of ``kind`` (a name in
    :mod:`irdeploy.runtime.registry`: "torch", "torch-compile", "ort", "trt", ...).

    - ``torch``: ``model`` (preset or architecture, ``model_args`` its constructor arguments)
      with ``checkpoint`` (random weights without one), on ``device``.
    - ``ort``: the ``onnx`` file, else ``model`` + ``checkpoint`` exported in ``precision``
      (fp32, fp16 or bf16) and cached. ``device`` "cpu" runs ONNX Runtime's CPU provider; any
      other device takes the fastest provider installed (TensorRT-RTX, TensorRT, CUDA).
    - ``trt``: the ``engine`` file, else one built in ``precision`` from the ``onnx`` file or
      from the model's cached float32 graph, and cached. Runs on GPU ``cuda:N`` (0 otherwise);
      without a GPU it fails with :class:`~irdeploy.runtime.tensorrt.NoGPUError` before any
      export or build.

    An explicit ``onnx``/``engine`` is what runs; ``model`` is then not needed. ``threads``: intra-op
    threads (torch, ONNX Runtime). ``cache_dir`` defaults to :func:`default_cache_dir`.
    ``backend.artifact`` says where the graph or engine came from (``None`` for torch and for
    files the caller gave). ``pad_mode`` overrides how unaligned inputs are padded (default:
    the artifact's recorded mode; ``replicate`` for torch and for graphs exported here).
    """
    from irdeploy.core.padding import PAD_MODES

    from .registry import backend_for_file, get_backend

    spec = get_backend(kind)
    if pad_mode is not None and pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
    if spec.artifact is None and (onnx or engine):
        raise ValueError(f"the {kind} backend runs the PyTorch model: give --model (and --checkpoint), not an ONNX file or engine")
    if engine and spec.artifact != "engine":
        raise ValueError(f"an engine runs with the {backend_for_file(engine).name} backend, not {kind}")
    with tempfile.TemporaryDirectory(prefix="irdeploy-random-") as scratch:
        request = OpenRequest(kind, model, checkpoint, model_args, onnx, engine, precision,
                              Path(cache_dir) if cache_dir else default_cache_dir(), Path(scratch), threads, device, pad_mode)
        backend = spec.open(request)
    if pad_mode is not None:
        backend.pad_mode = pad_mode  # the graph holds no padding: any mode is a runtime choice
    return backend


def open_torch(request: OpenRequest) -> Backend:
    """Eager PyTorch (``torch-compile``: under ``torch.compile``)."""
    request.needs_model()
    import torch

    from irdeploy.model import load_model

    from irdeploy.export.torch_backend import TorchBackend

    if request.threads:
        torch.set_num_threads(request.threads)
    network = load_model(request.model, request.checkpoint, **(request.model_args or {}))
    return TorchBackend(network, device=request.device, compile=request.backend == "torch-compile",
                        pad_mode=request.pad_mode or INFERENCE_PAD_MODE)


def _graph(request: OpenRequest, precision: str) -> tuple[Path, Artifact | None]:
    """The ONNX graph to run or build from: the given file, else the model's, cached."""
    if request.onnx:
        return Path(request.onnx), None
    if request.model is None:
        raise ValueError(f"the {request.backend} backend needs --onnx, or --model with --checkpoint")
    artifact = cached_onnx(request.model, request.checkpoint, request.model_args, precision,
                           request.cache_dir if request.checkpoint else request.scratch,
                           request.pad_mode or INFERENCE_PAD_MODE)
    return artifact.path, artifact


def open_ort(request: OpenRequest) -> Backend:
    """ONNX Runtime on the given graph, or on the model's graph exported in ``precision``."""
    from irdeploy.core.ort_backend import OnnxRuntimeBackend, default_providers

    graph, artifact = _graph(request, request.precision)
    device_id = 0 if request.device == "cpu" else _gpu_index(request.device)  # cuda:N -> the providers' device_id
    providers = ["CPUExecutionProvider"] if request.device == "cpu" else default_providers(device_id)
    backend = OnnxRuntimeBackend(graph, providers=providers, threads=request.threads, device_id=device_id)
    backend.artifact = artifact
    return backend


def open_trt(request: OpenRequest) -> Backend:
    """A TensorRT engine: the given one, else built (and cached) from the graph in ``precision``."""
    from .backends import TensorRTBackend

    engine, artifact = request.engine, None
    if engine is None:
        if not (request.onnx or request.model):
            raise ValueError("the trt backend needs --engine, --onnx, or --model with --checkpoint")
        # Fail before a minutes-long export and build when nothing could run the engine.
        from irdeploy.core.tensorrt import import_tensorrt

        from .tensorrt.device import current_gpu

        import_tensorrt("auto")
        current_gpu(_gpu_index(request.device))
        graph, made = _graph(request, "fp32")  # engines take their precision from the build
        if not graph.is_file():
            raise ValueError(f"{graph}: no such ONNX file")
        built = cached_engine(graph, request.precision,
                              request.cache_dir if request.checkpoint or request.onnx else request.scratch)
        engine = built.path
        artifact = Artifact("engine", built.path, built.cached, built.seconds + (made.seconds if made else 0.0),
                            temporary=made.temporary if made else False)
    backend = TensorRTBackend(engine, device=_gpu_index(request.device))
    backend.artifact = artifact
    return backend
