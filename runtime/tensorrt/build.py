"""ONNX graph -> serialized TensorRT engine, strongly typed, with a sidecar and an engine cache.

Why the raw TensorRT API and not Polygraphy's loaders (``NetworkFromOnnxPath``, ``CreateConfig``,
``EngineBytesFromNetwork``):

- Polygraphy picks its TensorRT module once per process, from ``POLYGRAPHY_USE_TENSORRT_RTX`` at
  import time; ``--trt auto|tensorrt|rtx`` is a per-build choice, and ``auto`` must probe.
- The parse is shared with the export's check (:mod:`irdeploy.export.tensorrt_check`), so the
  layer histogram, the NORMALIZATION/attention counts and the one-line parser errors are
  measured the same way in both places, on the network that is actually built.
- The attention fallback edits the parsed network between a failed and a second build.
- Polygraphy reports failures through its logger and ``PolygraphyException``; here every
  failure is one line quoting TensorRT's first error.
- Every TensorRT name irdeploy uses is in irdeploy's source, where the API-surface test checks
  it against TensorRT 11.4's bindings; a library in between would hide half of them.

The whole build API is the strongly-typed subset that TensorRT 11 and TensorRT-RTX share: a
STRONGLY_TYPED network (precision is the graph's tensor types), one optimization profile for the
named input, TF32 as the only precision flag, ``build_serialized_network``.

Precision: ``fp32`` (TF32 off), ``tf32`` (float32 graph, TF32 on), ``fp16``/``bf16`` (the
float32 graph through :func:`irdeploy.export.precision.to_mixed_precision`; a graph that is
already mixed is built as it is), ``best`` (fp16 with the pass's measured policy, TF32 on for
the float32 islands).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
from onnx import external_data_helper

import irdeploy
from irdeploy.export.graph import attention_cores, compute_precision
from irdeploy.core.fileio import atomic_write, sha256_bytes, sha256_file
from irdeploy.export.precision import to_mixed_precision
from irdeploy.core.precision import ENGINE_PRECISIONS
from irdeploy.core.progress import step
from irdeploy.core.tensorrt import describe, flavour_of, import_tensorrt
from irdeploy.export.tensorrt_check import ParsedNetwork, layer_histogram, parse_onnx

from .device import rtx_capabilities, select_gpu
from .engine import KERNEL_SPECIALIZATIONS
from .errors import EngineBuildError, EngineLoadError
from .profiles import Profile, graph_input, resolve_profile
from .sidecar import cache_key, is_cache_hit, read_sidecar, sidecar_path, write_engine

# precision (irdeploy.core.precision.ENGINE_PRECISIONS) -> (graph compute type, TF32 flag)
_SETTINGS: dict[str, tuple[str, bool]] = {
    "fp32": ("fp32", False),
    "tf32": ("fp32", True),
    "fp16": ("fp16", False),
    "bf16": ("bf16", False),
    "best": ("fp16", True),
    "int8": ("int8", False),  # a calibrated Q/DQ graph; its float parts go through the fp16 policy
}
# auto: fused attention kernel where TensorRT has one, else decompose (measured per build);
# fused: fail if there is none; decomposable: always decompose.
ATTENTION_MODES = ("auto", "fused", "decomposable")
_NO_ATTENTION_KERNEL = "not supported by a dedicated kernel"
_MAX_ERROR_CHARS = 400


@dataclass
class BuildResult:
    """A built (or reused) engine and its sidecar contents."""

    engine_path: Path
    sidecar: dict[str, Any]
    cached: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.engine_path)

    @property
    def engine_bytes(self) -> int:
        return int(self.sidecar["engine"]["bytes"])

    @property
    def profile(self) -> Profile:
        return Profile.from_dict(self.sidecar["profiles"][0])

    @property
    def layers(self) -> dict[str, int]:
        return dict(self.sidecar["network"]["layers"])

    @property
    def attention_decomposed(self) -> bool:
        return bool(self.sidecar["network"]["attention_decomposable"])

    def summary(self) -> str:
        net = self.sidecar["network"]
        trt = self.sidecar["tensorrt"]
        how = "cache hit" if self.cached else f"built in {self.seconds:.1f} s"
        # TensorRT's fused attention layers, and the graph's attention cores (what inspect counts)
        # that became them or ran as MatMul/SoftMax layers: two counts, each named for what it is
        cores = ", ".join(f"{n} x {k}" for k, n in net.get("attention_cores", {}).items()) or "none"
        attention = (f", ATTENTION layers {net['attention']}" + (" (decomposed)" if net["attention_decomposable"] else "")
                     + f" for graph attention cores {cores}")
        return (
            f"{self.engine_path} ({self.engine_bytes / 2**20:.1f} MiB, {how}): {trt['name']} {trt['version']}, "
            f"{self.sidecar['precision']}, {self.profile.describe()}; NORMALIZATION {net['normalization']}, "
            f"SHAPE {net['layers'].get('SHAPE', 0)}{attention}"
        )


def _kept(engine_path: Path) -> str | None:
    """What an engine path still holds after a failed build, when it holds an intact engine."""
    try:
        sidecar = read_sidecar(engine_path)
        intact = sidecar["engine"]["sha256"] == sha256_file(engine_path)
    except (EngineLoadError, OSError, KeyError):
        return None
    if not intact:
        return None
    return (f"{engine_path} still holds the earlier {sidecar.get('precision', '?')} engine (built "
            f"{sidecar.get('built_at', '?')} from {sidecar.get('onnx_file', '?')}), which --engine runs")


def _names_what_was_kept(build: Any) -> Any:
    """A failed build leaves an existing engine in place (by design); its error says so, so that
    running that engine afterwards is a choice, not a surprise."""

    @functools.wraps(build)
    def wrapper(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, **options: Any) -> BuildResult:
        try:
            return build(onnx_path, engine_path, **options)
        except EngineBuildError as exc:
            kept = _kept(Path(engine_path))
            if kept is None:
                raise
            raise EngineBuildError(f"{exc}; {kept}") from None

    return wrapper


@_names_what_was_kept
def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    precision: str = "fp32",
    shapes: Mapping[str, Sequence[int]] | None = None,
    flavour: str = "auto",
    workspace: int | None = None,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    compute_capabilities: Sequence[str] | None = None,
    attention: str = "auto",
    force: bool = False,
    device: int = 0,
    kernel_specialization: str = "eager",
) -> BuildResult:
    """Build ``onnx_path`` into ``engine_path`` (plus ``engine_path.json``), or reuse a matching engine.

    ``shapes``: ``{"min": ..., "opt": ..., "max": ...}`` NCHW sizes for the graph input (see
    :func:`~irdeploy.runtime.tensorrt.profiles.resolve_profile`). ``workspace``: bytes of
    scratch memory the builder may use. ``opt_level``: builder optimization level 0-5.
    ``timing_cache``: a file read before and written after the build (TensorRT; TensorRT-RTX
    has none and says so in the notes: its runtime cache is :class:`TensorRTEngine`'s). ``compute_capabilities``
    (TensorRT-RTX only): e.g. ``["8.6", "12.0"]`` or ``["current"]``; by default RTX builds for
    every capability it supports from 8.0 on, without a GPU. ``force``: rebuild on a cache hit.
    ``device``: the CUDA device a data-centre build (or an RTX build for ``"current"``) is for.
    ``kernel_specialization`` (TensorRT-RTX): the dynamic-shape kernel strategy the runner uses by
    default (``eager``: bit-exact from the first run; ``lazy``: RTX's own default, fallback kernels
    until the specialised ones are compiled; ``none``), recorded in the sidecar's options.

    Raises :class:`EngineBuildError` (one line) on failure; an engine and sidecar already at
    ``engine_path`` are then left exactly as they were (the new pair replaces them only once built),
    and the error names the engine that is still there.
    """
    start = time.perf_counter()
    if precision not in ENGINE_PRECISIONS:
        raise EngineBuildError(f"unknown precision {precision!r}; choose from {', '.join(ENGINE_PRECISIONS)}")
    if attention not in ATTENTION_MODES:
        raise EngineBuildError(f"unknown attention mode {attention!r}; choose from {', '.join(ATTENTION_MODES)}")
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise EngineBuildError(f"builder optimization level {opt_level} is outside 0-5")
    if kernel_specialization not in KERNEL_SPECIALIZATIONS:
        raise EngineBuildError(f"unknown kernel specialization {kernel_specialization!r}; "
                               f"choose from {', '.join(KERNEL_SPECIALIZATIONS)}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    data = _read(onnx_path)
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise EngineBuildError(f"{onnx_path}: not an ONNX model ({type(exc).__name__})") from None
    graph = graph_input(model)
    profile, notes = resolve_profile(graph, shapes)
    trt = import_tensorrt(flavour)
    compute, tf32 = _SETTINGS[precision]
    fields: dict[str, Any] = {
        "tensorrt": {"flavour": flavour_of(trt), "name": describe(trt).rsplit(" ", 1)[0], "version": trt.__version__},
        "target": _target(trt, compute_capabilities, device),
        "precision": precision,
        "profiles": [profile.to_dict()],
        "onnx": {"sha256": sha256_bytes(data), "graph_precision": compute_precision(model)},
        "options": {"workspace": workspace, "opt_level": opt_level, "attention": attention,
                    "kernel_specialization": kernel_specialization if flavour_of(trt) == "rtx" else None},
        "irdeploy_version": irdeploy.__version__,
    }
    key = cache_key(fields)
    _prepare_output(engine_path)
    if not force and (hit := is_cache_hit(engine_path, key)) is not None:
        return BuildResult(engine_path, hit, cached=True, seconds=time.perf_counter() - start, notes=notes)
    # An existing engine stays until the new one is built: write_engine replaces both files by rename.

    with step(f"preparing the {precision} graph of {onnx_path.name}"):
        source, mixed = _graph_for(model, onnx_path, precision, compute)
    with step(f"parsing {onnx_path.name} with {describe(trt)}"):
        parsed = parse_onnx(source, trt)
    if not parsed.ok:
        raise EngineBuildError(f"{describe(trt)} cannot parse {onnx_path.name}: {parsed.errors[0].line()}")
    config = _config(parsed, profile, tf32=tf32, workspace=workspace, opt_level=opt_level, target=fields["target"])
    use_timing_cache = timing_cache is not None and _has_timing_cache(trt)
    if use_timing_cache:
        use_timing_cache = _load_timing_cache(config, Path(timing_cache), notes)
    elif timing_cache is not None:
        notes.append("TensorRT-RTX has no timing cache (its tactics are chosen at run time): use the runtime cache when loading")
    with step(f"building the {precision} engine ({profile.describe()}); minutes for large models"):
        engine, decomposed = _build(parsed, config, attention, f"{onnx_path.name} ({precision}, {profile.describe()})")

    histogram = layer_histogram(parsed)
    fields.update(
        key=key,
        compute_precision=compute,
        tf32=tf32,
        pad_multiple=graph.multiple,
        pad_mode=graph.pad_mode,
        onnx_file=onnx_path.name,
        **_checkpoint_field(model),
        mixed_precision=mixed,
        **_calibration_field(model),
        network={
            "layers": histogram,
            "normalization": histogram.get("NORMALIZATION", 0),
            "attention": min(histogram.get("ATTENTION_INPUT", 0), histogram.get("ATTENTION_OUTPUT", 0)),
            "attention_decomposable": decomposed,
            "attention_cores": dict(Counter(core.kind for core in attention_cores(model))),
        },
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.perf_counter() - start, 3),
        host=socket.gethostname(),
        notes=notes,
    )
    cache_bytes = _serialized_timing_cache(config, Path(timing_cache), notes) if use_timing_cache else None
    try:
        sidecar = write_engine(engine_path, engine, fields)
    except OSError as exc:
        raise EngineBuildError(f"cannot write {engine_path}: {exc.strerror or exc}") from None
    if cache_bytes is not None:  # after the engine: a cache that cannot be written never costs the build
        try:
            atomic_write(Path(timing_cache), cache_bytes)
        except OSError as exc:
            notes.append(f"timing cache {timing_cache} not written: {exc.strerror or exc}")
    return BuildResult(engine_path, sidecar, cached=False, seconds=time.perf_counter() - start, notes=notes)


def _calibration_field(model: onnx.ModelProto) -> dict[str, Any]:
    """An int8 graph's calibration (method, images and their sha256) from its metadata:
    ``{"calibration": {...}}``, nothing for other graphs."""
    from irdeploy.core.metadata import ExportMetadata

    meta = ExportMetadata.read(model)
    calibration = meta.extra.get("calibration") if meta is not None else None
    return {"calibration": calibration} if calibration else {}


def _checkpoint_field(model: onnx.ModelProto) -> dict[str, Any]:
    """The weights the graph was exported from (``irdeploy validate`` compares them with its
    --checkpoint): ``{"checkpoint_sha256": sha or None}`` for an irdeploy graph, nothing otherwise."""
    from irdeploy.core.metadata import ExportMetadata

    meta = ExportMetadata.read(model)
    return {"checkpoint_sha256": meta.checkpoint_sha256} if meta is not None else {}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EngineBuildError(f"{path}: no such ONNX file") from None
    except OSError as exc:
        raise EngineBuildError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _prepare_output(path: Path) -> None:
    """Fail before a minutes-long build, not after it, when the engine cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineBuildError(f"cannot write {path}: {exc.strerror or exc} ({path.parent})") from None
    if path.is_dir():
        raise EngineBuildError(f"cannot write {path}: it is a directory")
    if not os.access(path.parent, os.W_OK):
        raise EngineBuildError(f"cannot write {path}: {path.parent} is not writable")


def _graph_for(model: onnx.ModelProto, path: Path, precision: str, compute: str) -> tuple[str | bytes, dict | None]:
    """What to parse: the file itself, or its mixed-precision rewrite (and what the pass did)."""
    current = compute_precision(model)
    if compute == "int8" and current == "fp32":
        raise EngineBuildError(f"{path.name} is a float32 graph; int8 needs calibrated Q/DQ pairs: "
                               "irdeploy export --precision int8 [--calibration DIR]")
    if current == compute == "int8":  # int8 convolutions, the rest through the fp16 policy
        from irdeploy.export.graph import LOW_TYPES

        if any(t.data_type in LOW_TYPES for t in model.graph.initializer):
            return str(path), None  # already int8 + 16-bit
        if any(external_data_helper.uses_external_data(t) for t in model.graph.initializer):
            external_data_helper.load_external_data_for_model(model, str(path.parent))
        mixed, info = to_mixed_precision(model, "fp16")
        return mixed.SerializeToString(), {**asdict(info), "fp32_share": round(info.fp32_share, 4)}
    if current == compute:
        return str(path), None
    if current != "fp32":
        raise EngineBuildError(
            f"{path.name} already computes in {current}; build it with --precision {current}"
            f"{' or best' if current == 'fp16' else ''}, or give the float32 graph for {precision}"
        )
    if any(external_data_helper.uses_external_data(t) for t in model.graph.initializer):
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    mixed, info = to_mixed_precision(model, compute)
    return mixed.SerializeToString(), {**asdict(info), "fp32_share": round(info.fp32_share, 4)}


def _target(trt: ModuleType, compute_capabilities: Sequence[str] | None, device: int = 0) -> dict[str, Any]:
    """What the engine will run on: GPU ``device`` (TensorRT), or compute capabilities (RTX).

    A build for a GPU makes ``device`` CUDA's current device first: the builder targets that one."""
    if flavour_of(trt) == "tensorrt":
        if compute_capabilities:
            raise EngineBuildError("compute capabilities are a TensorRT-RTX option; TensorRT builds for the current GPU")
        return {"gpu": select_gpu(device).to_dict()}
    known = rtx_capabilities(trt)
    if compute_capabilities is None:
        supported = [cc for cc in known if tuple(map(int, cc.split("."))) >= (8, 0)]
        return {"compute_capabilities": supported, "default": True}
    if list(compute_capabilities) == ["current"]:
        gpu = select_gpu(device)
        if gpu.compute_capability not in known:
            raise EngineBuildError(f"{gpu.name} (compute capability {gpu.compute_capability}) is not a {describe(trt)} "
                                   f"target; it supports {', '.join(known)} (use data-centre TensorRT on this GPU)")
        return {"compute_capabilities": [gpu.compute_capability], "gpu": gpu.to_dict(), "default": False}
    unknown = [cc for cc in compute_capabilities if cc not in known]
    if unknown:
        raise EngineBuildError(f"{describe(trt)} cannot target compute capability {', '.join(unknown)}; it knows {', '.join(known)}")
    return {"compute_capabilities": list(compute_capabilities), "default": False}


def _config(parsed: ParsedNetwork, profile: Profile, *, tf32: bool, workspace: int | None,
            opt_level: int | None, target: dict[str, Any]) -> Any:
    trt, builder = parsed.trt, parsed.builder
    config = builder.create_builder_config()
    if tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 must mean float32 math
    if workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if opt_level is not None:
        config.builder_optimization_level = opt_level
    if flavour_of(trt) == "rtx" and not target.get("default"):
        # "current" was resolved to the selected GPU's own capability (select_gpu), so the build
        # targets exactly what the sidecar records, whichever device is CUDA's current one
        capabilities = [f"SM{cc.replace('.', '')}" for cc in target["compute_capabilities"]]
        config.num_compute_capabilities = len(capabilities)
        for i, name in enumerate(capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, name), i)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(profile.input, profile.min, profile.opt, profile.max)
    if config.add_optimization_profile(opt_profile) < 0:
        raise EngineBuildError(f"TensorRT rejected the profile {profile.describe()}: {parsed.logger.first_error('invalid profile')}")
    return config


def _has_timing_cache(trt: ModuleType) -> bool:
    """Data-centre TensorRT has a timing cache; TensorRT-RTX's are deprecated no-ops."""
    return flavour_of(trt) == "tensorrt"


def _load_timing_cache(config: Any, path: Path, notes: list[str]) -> bool:
    """Attach the timing cache at ``path`` (empty if absent or unusable) to ``config``; False, with
    a note, when TensorRT rejects it (``set_timing_cache`` returns False: another device or
    version): the build then runs without one, and the file is left as it is."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None and data:
        notes.append(f"timing cache {path} was unusable; starting an empty one")
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        notes.append(f"timing cache {path} was rejected by TensorRT (another GPU or TensorRT version?); built without it")
        return False
    return True


def _serialized_timing_cache(config: Any, path: Path, notes: list[str]) -> bytes | None:
    """The build's timing cache as bytes, or None with a note: a cache TensorRT cannot serialize is
    skipped, never allowed to discard the engine that was just built."""
    try:
        cache = config.get_timing_cache()
        blob = cache.serialize() if cache is not None else None
        data = bytes(blob) if blob is not None else b""
    except Exception as exc:  # TensorRT raises its own RuntimeError/TypeError subclasses
        notes.append(f"timing cache {path} not written: TensorRT could not serialize it ({type(exc).__name__})")
        return None
    if not data:
        notes.append(f"timing cache {path} not written: TensorRT returned an empty cache")
        return None
    return data


def _attention_layers(parsed: ParsedNetwork) -> list[Any]:
    """The parsed network's attention layers, downcast; none on TensorRT older than 10.14, whose
    ``LayerType`` has no ATTENTION_INPUT (and whose parser makes no attention layer)."""
    trt = parsed.trt
    kind, layer_class = getattr(trt.LayerType, "ATTENTION_INPUT", None), getattr(trt, "IAttentionInputLayer", None)
    if kind is None or layer_class is None:
        return []
    layers = [layer for layer in parsed.layers() if layer.type == kind]
    for layer in layers:
        layer.__class__ = layer_class  # TensorRT's Python downcast
    return layers


def _set_decomposable(layers: Sequence[Any], value: bool) -> None:
    """``IAttention.decomposable`` (TensorRT 10.14+, TensorRT-RTX), reached by name: ``layers`` is
    empty wherever the attention layer does not exist (see :func:`_attention_layers`)."""
    for layer in layers:
        setattr(getattr(layer, "attention", None), "decomposable", value)


def _build(parsed: ParsedNetwork, config: Any, attention: str, what: str) -> tuple[bytes, bool]:
    """Serialize the engine; in ``auto`` mode retry with decomposable attention if TensorRT has no kernel.

    Whether a fused kernel exists depends on dtype and shape (measured with TensorRT-RTX 1.7:
    channel attention with a dynamic token length has none in fp32, fp16 or bf16), so the
    decision is made by the builder itself, and recorded in the sidecar.
    """
    layers = _attention_layers(parsed)
    decompose = attention == "decomposable" and bool(layers)
    _set_decomposable(layers, decompose)
    with _native_stderr_silenced(attention == "auto" and bool(layers)):
        engine = parsed.builder.build_serialized_network(parsed.network, config)
    no_kernel = engine is None and any(_NO_ATTENTION_KERNEL in e for e in parsed.logger.errors)
    if no_kernel and attention == "auto" and layers:
        parsed.logger.errors.clear()
        _set_decomposable(layers, True)
        decompose = True
        engine = parsed.builder.build_serialized_network(parsed.network, config)
    if engine is None:
        error = parsed.logger.first_error("build_serialized_network returned nothing")
        hint = "; try attention='decomposable'" if no_kernel and attention == "fused" else ""
        raise EngineBuildError(f"{describe(parsed.trt)} failed to build {what}: {error[:_MAX_ERROR_CHARS]}{hint}")
    return bytes(engine), decompose


@contextlib.contextmanager
def _native_stderr_silenced(active: bool) -> Iterator[None]:
    """Silence file descriptor 2 while a fused-attention build is tried.

    Myelin prints its "no dedicated kernel" diagnosis straight to the process's stderr as well
    as to the logger; in ``auto`` mode that failure is expected and handled, so the copy on
    stderr would only look like a crash. The logger keeps every error either way.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
