"""What a Triton model configuration must say about an artifact, read from the artifact itself.

Triton rejects a model whose configured tensor names, data types or dims differ from the model
file's, and fails at run time when a batch exceeds an engine's optimization profile. So the
names, types and dims come from the ONNX graph (dynamic dimensions as -1), and an engine's
batch and image limits come from its JSON sidecar (the profile it was built with): TensorRT is
never imported, so a repository for GPU servers can be written on a CPU-only machine.

An engine needs the ONNX graph it was built from: the sidecar names only the input, the graph
has the output name and I/O types (a strongly typed engine keeps the graph's I/O types), and
the graph's sha256 recorded in the sidecar proves the pair belongs together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from irdeploy.core.metadata import ExportMetadata
from irdeploy.core.onnx_files import load_onnx
from irdeploy.core.padding import aligned

from ..registry import artifact_suffixes, backend_for_file
from ..tensorrt.errors import EngineLoadError
from ..tensorrt.profiles import Profile
from ..tensorrt.sidecar import read_sidecar, sha256_file
from .errors import ServingError

# ONNX element types irdeploy graphs use at their boundary, as Triton names them.
TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}
# Warm-up image size for a graph whose H and W are dynamic (rounded up to its pad multiple).
WARMUP_HW = (256, 256)
ENGINE_SUFFIXES = artifact_suffixes("engine")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, Triton data type and full dims (-1 where dynamic)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ArtifactSpec:
    """An ONNX graph or engine as Triton sees it.

    ``max_batch``: the largest N the artifact accepts (an engine profile's max), ``None`` when
    only the server's setting limits it; ``min_batch``: the smallest (1 for graphs). For a
    graph with a fixed N, Triton gets no batch dimension (``batched`` is False).
    ``warmup_hw``: the image size of the warm-up request (the profile's opt for an engine).
    """

    kind: str  # "onnx" or "engine"
    path: Path
    onnx_path: Path
    input: TensorSpec
    output: TensorSpec
    batched: bool
    min_batch: int
    max_batch: int | None
    warmup_hw: tuple[int, int]
    pad_multiple: int
    pad_mode: str
    precision: str | None
    profile: Profile | None = None


def inspect_artifact(onnx_path: str | os.PathLike, engine_path: str | os.PathLike | None = None) -> ArtifactSpec:
    """The spec of ``onnx_path``, or of ``engine_path`` built from it (:class:`ServingError` if not)."""
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise ServingError(f"{onnx_path}: unknown artifact type {onnx_path.suffix or '(no suffix)'!r}; expected an .onnx graph")
    try:
        model = load_onnx(onnx_path)  # also: every external-data file it names is there
    except ValueError as exc:
        raise ServingError(str(exc)) from None
    graph_in, graph_out = _boundary(model, onnx_path)
    meta = ExportMetadata.read(model)
    multiple = meta.pad_multiple if meta else 1
    pad_mode = meta.pad_mode if meta else "constant"
    precision = meta.precision if meta else None
    n, _, h, w = graph_in.dims
    warmup = (h if h > 0 else aligned(WARMUP_HW[0], multiple), w if w > 0 else aligned(WARMUP_HW[1], multiple))
    if engine_path is None:
        return ArtifactSpec("onnx", onnx_path, onnx_path, graph_in, graph_out, batched=n < 0, min_batch=1,
                            max_batch=None, warmup_hw=warmup, pad_multiple=multiple, pad_mode=pad_mode, precision=precision)
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise ServingError(f"{engine_path}: no such engine file")
    try:
        sidecar = read_sidecar(engine_path)
        profile = Profile.from_dict(sidecar["profiles"][0])
    except (EngineLoadError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ServingError(f"{engine_path}: cannot read its sidecar ({exc})") from None
    if sidecar.get("onnx", {}).get("sha256") != sha256_file(onnx_path):
        raise ServingError(f"{engine_path} was not built from {onnx_path.name} (the sidecar records another graph's sha256)")
    if profile.input != graph_in.name:
        raise ServingError(f"{engine_path}: its profile is for input {profile.input!r}, the graph's input is {graph_in.name!r}")
    return ArtifactSpec("engine", engine_path, onnx_path, graph_in, graph_out, batched=n < 0, min_batch=profile.min[0],
                        max_batch=profile.max[0], warmup_hw=(profile.opt[2], profile.opt[3]), pad_multiple=multiple,
                        pad_mode=sidecar.get("pad_mode", pad_mode), precision=str(sidecar.get("precision", precision)),
                        profile=profile)


def open_artifact_backend(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> Any:
    """The irdeploy backend for an ``.onnx`` graph (ONNX Runtime) or an engine (TensorRT)."""
    from ..artifacts import open_backend

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        backend = backend_for_file(path)
    except ValueError:
        raise ServingError(f"{path}: unknown artifact type {suffix or '(no suffix)'!r}; "
                           f"expected an .onnx graph or an engine ({', '.join(ENGINE_SUFFIXES)})") from None
    if backend.artifact == "onnx":
        from ..devices import require_onnxruntime_device

        require_onnxruntime_device(device)
        try:
            load_onnx(path)  # a graph that is not ONNX, or lacks its external-data file, fails here in one line
        except ValueError as exc:
            raise ServingError(str(exc)) from None
        return open_backend(backend.name, onnx=str(path), threads=threads, device=device)
    return open_backend(backend.name, engine=str(path), device=device)


def _boundary(model: onnx.ModelProto, path: Path) -> tuple[TensorSpec, TensorSpec]:
    """The single image input and output of an irdeploy graph."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ServingError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs; irdeploy serves one image batch in, one out")
    specs = [_tensor(v, path) for v in (inputs[0], outputs[0])]
    for spec in specs:
        if len(spec.dims) != 4:
            raise ServingError(f"{path}: tensor {spec.name!r} has dims {list(spec.dims)}; expected NCHW")
    return specs[0], specs[1]


def _tensor(value: onnx.ValueInfoProto, path: Path) -> TensorSpec:
    tensor = value.type.tensor_type
    if tensor.elem_type not in TRITON_TYPES:
        name = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise ServingError(f"{path}: tensor {value.name!r} has type {name}, which irdeploy does not serve")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(value.name, TRITON_TYPES[tensor.elem_type], dims)
