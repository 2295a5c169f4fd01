"""``to_onnx``: one call from a PyTorch zoo model to a checked ONNX file.

Steps: trace (float32), fold constants, optionally convert to a mixed-precision graph, write
the metadata, check the graph's structure, parse it with TensorRT's own ONNX parser where
TensorRT(-RTX) is importable, and compare it with the eager model in ONNX Runtime. Only a graph
that passes both the parser and the parity gate is written, to a temporary file renamed into
place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from irdeploy.core.fileio import atomic_write
from irdeploy.core.metadata import ExportMetadata
from irdeploy.core.padding import INFERENCE_PAD_MODE, PAD_MODES
from irdeploy.core.precision import EXPORT_PRECISIONS, check_precision
from irdeploy.core.progress import step
from irdeploy.model.spec import pad_multiple, record_of
from irdeploy.model.stats import model_stats, parameter_count

from .parity import check_parity, make_inputs, parity_sizes
from .report import ExportReport
from .tracing import InputSpec, trace_to_onnx

DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The graph was made but failed a check (parser, parity); nothing was written."""


def _check_destination(path: Path) -> None:
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write {path}: directory {path.parent} is not writable")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory")


def _input_spec(model: nn.Module, dynamic: bool, static_shape: Sequence[int] | None, channels: int) -> tuple[InputSpec, list[str]]:
    """Resolve the graph input; static sizes off the padding multiple are rounded up (with a note)."""
    multiple = pad_multiple(model)
    notes = []
    if static_shape is None:
        if record_of(model).tlc is not None:
            raise ValueError("a TLC model (to_local) exports with fixed sizes: pass static_shape (--static HxW)")
        if not dynamic:
            raise ValueError("dynamic=False needs static_shape=(H, W) or (N, H, W)")
        return InputSpec(channels, None, None, None, multiple), notes
    dims = [int(v) for v in static_shape]
    if len(dims) == 2:
        dims = [1, *dims]
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"static_shape must be (H, W) or (N, H, W) with positive sizes, got {tuple(static_shape)}")
    n, h, w = dims
    ah, aw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ah, aw) != (h, w):
        notes.append(f"static size {h}x{w} rounded up to {ah}x{aw} (multiple of {multiple}); the runtime pads inputs")
        warnings.warn(notes[-1], stacklevel=3)
    _check_fits_memory(n, channels, ah, aw)
    return InputSpec(channels, n, ah, aw, multiple), notes


# A static export runs the network at its size (trace example, parity through eager and ONNX
# Runtime), and these networks hold tens of feature maps the size of their input at once: an
# input batch over this fraction of the machine's memory cannot be traced or checked here.
MEMORY_FRACTION = 16


def _check_fits_memory(n: int, c: int, h: int, w: int) -> None:
    """Refuse in one line a static size whose float32 input alone would exhaust memory, instead
    of an allocation failure (or the kernel's out-of-memory kill) deep inside tracing."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not every platform reports it
        return
    need = n * c * h * w * 4
    if need * MEMORY_FRACTION > total:
        raise ValueError(f"static size {n}x{c}x{h}x{w} is too large to export on this machine: its float32 input alone "
                         f"is {need / 2**30:.1f} GiB and the network needs many times that (memory: {total / 2**30:.0f} GiB)")


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    dynamic: bool = True,
    static_shape: Sequence[int] | None = None,
    precision: str = "fp32",
    attention: str = "matmul",
    simplify: bool = True,
    parity: bool = True,
    min_psnr: float | None = None,
    fp32_nodes: Sequence[str] | None = None,
    tensorrt: bool = True,
    channels: int = 3,
    pad_mode: str = INFERENCE_PAD_MODE,
    calibration: str | os.PathLike | None = None,
    calibration_method: str | None = None,
    int8_input_convs: str | None = None,
) -> ExportReport:
    """Export a zoo model to ``path`` and return the :class:`ExportReport`.

    ``fp32_nodes`` keeps more nodes float32 than the default policy (names from
    ``irdeploy validate --bisect``). ``min_psnr`` overrides the parity gate's PSNR floor for ``precision``
    (:data:`irdeploy.export.parity.TOLERANCES`). ``opset`` defaults to 18 (23 with ``attention="onnx23"``). ``precision`` "fp16"/"bf16"
    writes a mixed-precision graph with float32 inputs and outputs (see
    :mod:`irdeploy.export.precision`). Raises ``ValueError`` for bad arguments and
    :class:`ExportError` when the TensorRT parser or the parity gate rejects the graph.
    ``pad_mode`` is how runtimes pad unaligned inputs, recorded in the metadata (default
    ``replicate``, see :mod:`irdeploy.core.padding`; ``constant`` is upstream M3SNet's zeros); the
    parity gate pads the eager model's input the same way.
    ``precision="int8"`` writes a Q/DQ graph (:mod:`irdeploy.export.quantize`) calibrated on crops
    of the images in folder ``calibration`` (the shipped photographs by default) with
    ``calibration_method`` (default :data:`irdeploy.export.int8.DEFAULT_METHOD`); there
    ``fp32_nodes`` names Conv/MatMul nodes to leave unquantized, and ``int8_input_convs``
    ("float", the default, or "int8") whether the convolutions reading the input image are.
    """
    path = Path(path)
    check_precision(precision, EXPORT_PRECISIONS)
    if precision != "int8" and (calibration is not None or calibration_method is not None):
        raise ValueError("calibration applies to precision='int8' only")
    if precision != "int8" and int8_input_convs is not None:
        raise ValueError("int8 input convolutions apply to precision='int8' only")
    if precision == "int8":
        from .calibration import calibration_images

        calibration_images(calibration)  # a bad folder fails now, not after minutes of tracing
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
    opset = opset or (23 if attention == "onnx23" else DEFAULT_OPSET)
    _check_destination(path)
    spec, notes = _input_spec(model, dynamic, static_shape, channels)
    model = model.float().eval()

    start = time.perf_counter()
    proto, ops_before = trace_to_onnx(model, spec, opset=opset, attention=attention, optimize=simplify)
    info = None
    extra: dict = {}
    if precision == "int8":
        from .int8 import quantize_for_export

        static = {} if spec.height is None else {"crop_size": (spec.height, spec.width), "batch": spec.batch}
        proto, extra = quantize_for_export(proto, spec.multiple, channels, calibration=calibration,
                                           method=calibration_method, fp32_nodes=fp32_nodes or (), **static,
                                           **({"input_convs": int8_input_convs} if int8_input_convs else {}))
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    elif precision != "fp32":
        from .precision import to_mixed_precision

        keep = None
        if fp32_nodes:  # on top of the policy's own island at the output
            output_node = next(n.name for n in proto.graph.node if proto.graph.output[0].name in n.output)
            keep = [*fp32_nodes, output_node]
        with step(f"converting to a mixed-precision {precision} graph"):
            proto, info = to_mixed_precision(proto, precision, fp32_nodes=keep)
    seconds = time.perf_counter() - start

    record = record_of(model)
    from irdeploy import __version__

    exporter = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
    simplifier = "onnxscript optimizer (torch.onnx optimize=True)" if simplify else None
    # read back by inspect, so that it shows this report's parameter count and tools (#17, section 6)
    extra = {**extra, "parameters": parameter_count(model), "exporter": exporter, "simplifier": simplifier}
    meta = ExportMetadata(
        model=record.name, arch=record.spec.name, config={k: v for k, v in record.config.items() if k != "arch"},
        precision=precision, attention=attention, opset=opset, pad_multiple=spec.multiple,
        pad_mode=pad_mode, irdeploy_version=__version__, checkpoint_sha256=record.checkpoint_sha256,
        tlc=record.tlc, extra=extra,
    )
    meta.write(proto)
    data = proto.SerializeToString()

    layernorm_modules = sum(1 for m in model.modules() if isinstance(m, record.spec.layernorms))
    biasfree_modules = sum(1 for m in model.modules() if isinstance(m, record.spec.biasfree_norms))
    report = ExportReport.from_graph(
        proto, path,
        ops_before=ops_before, layernorm_modules=layernorm_modules, biasfree_modules=biasfree_modules,
        gmacs_256=model_stats(model, channels=channels).gmacs,
        exporter=exporter, simplifier=simplifier, parameters=extra["parameters"], seconds=seconds, notes=notes,
    )
    report.file_size = len(data)

    if tensorrt:
        with step("parsing the graph with TensorRT's ONNX parser"):
            report.tensorrt = _tensorrt_check(data)
    if parity:
        graph_under_test = data
        if precision == "int8":
            report.notes.append("int8 parity measured on ONNX Runtime's int8 kernels (CPU)")
        elif precision != "fp32":
            from .precision import emulate_low_precision

            # ORT's CPU provider skips most fp16 rounding and has no bf16 kernels: gate on the
            # float32 twin that rounds exactly where this graph stores low-precision tensors.
            with step(f"emulating {precision} storage rounding for the parity check"):
                graph_under_test = emulate_low_precision(proto).SerializeToString()
            report.notes.append(f"{precision} parity measured on the graph's storage-rounding emulation (ONNX Runtime CPU)")
        report.parity = check_parity(
            graph_under_test, model, make_inputs(channels, parity_sizes(spec.multiple, spec.batch, spec.height, spec.width)), precision=precision, min_psnr=min_psnr,
            pad_multiple=spec.multiple, pad_mode=meta.pad_mode,
        )
        if not report.parity.passed:
            raise ExportError(f"{path.name}: {report.parity.summary()}; nothing written (a different floor: --min-psnr)")

    atomic_write(path, data)
    report.write_json(path.with_name(path.name + ".json"))
    return report


def _tensorrt_check(data: bytes):
    """Parse with TensorRT's ONNX parser; a skip reason (str) when no TensorRT is importable."""
    from irdeploy.core.tensorrt import TensorRTUnavailable

    from .tensorrt_check import check_onnx

    try:
        result = check_onnx(data)
    except TensorRTUnavailable as exc:
        return f"skipped: {exc}"
    if not result.ok:
        raise ExportError(result.summary())
    return result


def inspect_onnx(path: str | os.PathLike, *, tensorrt: bool = True) -> ExportReport:
    """The export report of any ONNX file, with the metadata irdeploy wrote (if any)."""
    from irdeploy.core.onnx_files import load_onnx

    path = Path(path)
    proto = load_onnx(path, load_external_data=True)  # names a missing external-data file
    report = ExportReport.from_graph(proto, path)
    if tensorrt:
        report.tensorrt = _tensorrt_check(path.read_bytes())
    return report
