"""The one table of backends: what each runs, from which files, on which devices, and how to open it.

Polygraphy's pattern: every backend is a :class:`~irdeploy.core.backend.Backend` with one
interface (``infer``, ``close``); what differs is declared here as data. The CLI's
``--backend`` choices, restore/eval's default for an ``--onnx`` or ``--engine`` file, the
benchmark's backend list, serving's choice by file suffix and Triton's platform all read this
table. Openers are ``"module:function"`` strings imported when a backend is opened, so listing
backends imports no torch, ONNX Runtime or TensorRT.

Adding a backend is its module (a ``Backend`` subclass and an opener taking an
:class:`~irdeploy.runtime.artifacts.OpenRequest`) and one :func:`register_backend` line below.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    opener: str  # "module:function" called with an OpenRequest, returning a Backend
    artifact: str | None  # the file it runs: "onnx", "engine", or None (the PyTorch model itself)
    suffixes: tuple[str, ...]  # file suffixes of that artifact
    devices: tuple[str, ...]  # "cpu" and/or "cuda"
    probe: Callable[[], str | None]  # None when it can run here, else why not (one line)
    triton: tuple[str, str] | None = None  # Triton's (platform, backend) config fields; None: not servable
    triton_file: str | None = None  # the file name Triton looks for in a version folder

    def open(self, request: Any) -> Any:
        module, _, function = self.opener.partition(":")
        return getattr(importlib.import_module(module), function)(request)


def module_probe(module: str, install: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        return None if importlib.util.find_spec(module) else f"{module} is not installed ({install})"

    return probe


def _tensorrt_probe() -> str | None:
    """Whether an engine can run here, found without importing TensorRT: an import would pin the
    process to that flavour (:mod:`irdeploy.core.tensorrt`: one per process), so asking whether
    ``trt`` is available would decide which flavour a later build may use."""
    from irdeploy.core.tensorrt import INSTALL, MODULES, loaded_flavour

    if loaded_flavour() is None and not any(importlib.util.find_spec(m) for m in MODULES.values()):
        return f"no TensorRT found; install it with {' or '.join(f'`{i}`' for i in INSTALL.values())}"
    from .tensorrt.device import current_gpu
    from .tensorrt.errors import NoGPUError

    try:
        current_gpu()
    except NoGPUError as exc:
        return str(exc)
    return None


_BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    """Add a backend; its name must be new and its suffixes unclaimed."""
    if spec.name in _BACKENDS:
        raise ValueError(f"backend {spec.name!r} is already registered")
    claimed = {s: b.name for b in _BACKENDS.values() if b.artifact != spec.artifact for s in b.suffixes}
    clash = sorted(s for s in spec.suffixes if s in claimed)
    if clash:
        raise ValueError(f"backend {spec.name!r}: suffix(es) {', '.join(clash)} already belong to {claimed[clash[0]]}")
    _BACKENDS[spec.name] = spec
    return spec


def unregister_backend(name: str) -> None:
    if name in BUILTIN:
        raise ValueError(f"{name!r} is built in and cannot be unregistered")
    _BACKENDS.pop(name)


def backends() -> list[BackendSpec]:
    return list(_BACKENDS.values())


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def get_backend(name: str) -> BackendSpec:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


def artifact_suffixes(artifact: str) -> tuple[str, ...]:
    """Every suffix a file of ``artifact`` kind ("onnx", "engine") may have."""
    return tuple(dict.fromkeys(s for b in _BACKENDS.values() if b.artifact == artifact for s in b.suffixes))


def triton_backend(artifact: str) -> BackendSpec:
    """The registered backend Triton serves an ``artifact`` ("onnx", "engine") with."""
    for spec in _BACKENDS.values():
        if spec.artifact == artifact and spec.triton is not None:
            return spec
    raise ValueError(f"no registered backend serves {artifact} files in Triton")


def backend_for_file(path: str | Path) -> BackendSpec:
    """The first registered backend that runs a file with ``path``'s suffix."""
    suffix = Path(path).suffix.lower()
    for spec in _BACKENDS.values():
        if suffix in spec.suffixes:
            return spec
    known = ", ".join(s for b in _BACKENDS.values() for s in b.suffixes)
    raise ValueError(f"{path}: no backend runs {suffix or 'files without a suffix'!r} files; known: {known}")


register_backend(BackendSpec("torch", "eager PyTorch", "irdeploy.runtime.artifacts:open_torch", None, (),
                             ("cpu", "cuda"), module_probe("torch", "pip install torch==2.13.0")))
register_backend(BackendSpec("torch-compile", "PyTorch with torch.compile", "irdeploy.runtime.artifacts:open_torch", None,
                             (), ("cpu", "cuda"), module_probe("torch", "pip install torch==2.13.0")))
register_backend(BackendSpec("ort", "ONNX Runtime", "irdeploy.runtime.artifacts:open_ort", "onnx", (".onnx",),
                             ("cpu", "cuda"), module_probe("onnxruntime", "pip install onnxruntime"),
                             triton=("", "onnxruntime"), triton_file="model.onnx"))
register_backend(BackendSpec("trt", "TensorRT / TensorRT-RTX engine", "irdeploy.runtime.artifacts:open_trt", "engine",
                             (".engine", ".plan"), ("cuda",), _tensorrt_probe,
                             triton=("tensorrt_plan", ""), triton_file="model.plan"))
BUILTIN = backend_names()
