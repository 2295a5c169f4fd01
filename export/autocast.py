"""NVIDIA ModelOpt AutoCast as an alternative to our own mixed-precision pass (optional extra).

:func:`autocast_modelopt` runs ModelOpt's AutoCast (``modelopt.onnx.autocast``) through its
Python entry point, ``convert_to_mixed_precision``, on a float32 graph and returns the FP16/BF16
graph with float32 inputs and outputs (``keep_io_types``), like
:func:`irdeploy.export.precision.to_mixed_precision`. ModelOpt is *not* a core dependency: its
``[onnx]`` extra pins ``onnx~=1.21`` and pulls ``onnxruntime-gpu`` and ``cupy-cuda12x``. Install
it with ``pip install ".[modelopt]"`` in the irdeploy clone (pin ``torch==2.13.0`` in the same command, see the
README); without it :func:`autocast_modelopt` raises :class:`ModelOptUnavailable`.

What AutoCast decides (ModelOpt 0.47): every node goes low *unless a rule blocks it*, and the
rules are about the *data*, not the operator:

- ``data_max`` (default 512, where the FP16 spacing reaches 0.5): a *reference run* of the
  float32 graph in ONNX Runtime (CPU here), with every tensor marked as an output, records each
  tensor's largest magnitude; a node any of whose inputs or outputs exceeded ``data_max`` stays
  float32. The run uses ``calibration`` inputs, or random ones (Polygraphy's data loader)
  without them, so the decision depends on what it was shown.
- ``init_max`` (default 65504, FP16's largest finite value): a node reading a float32 weight
  beyond it stays float32.
- name/op-type exclude and include lists (our ``fp32_nodes``/``fp32_ops`` map to the exclude
  lists), and an optional ``max_depth_of_reduction``.
- a short op list that never goes low (``Upsample``, ``NonMaxSuppression``, ``Celu``; Resize's
  ``scales``, and for BF16 also ``roi``, stay float32); Casts are then inserted around every
  float32 node and redundant ones removed.

Our pass (:mod:`irdeploy.export.precision`) decides by *operator and position* instead, with
no reference run: the op types measured to need float32 (``DEFAULT_FP32_OPS``: ReduceL2 and
ReduceMean, i.e. normalisation statistics), the node writing the output image, and whatever an
operator schema does not allow in the low type. It is deterministic for a given graph, runs no
inference (its memory is bound by the weights, not the image size), and keeps the policy
reviewable in our own code. AutoCast's magnitude rule only catches overflow risk; it does not see
*precision* loss in tensors of small magnitude (a variance, a normalised residual), which is what
our policy targets. Measured with random weights: on MHNet our policy is 7-8 dB closer to eager
float32 (AutoCast keeps only the masked Softmax float32); on M3SNet-32 and MPRNet-derain AutoCast
keeps every node low and both end within 0.4 dB (1.2 dB in BF16). The two can be combined: pass
our float32 op list as ``fp32_ops``.

Cost: the reference run holds every intermediate tensor of every calibration batch at once, so
its memory grows with image size x graph size x batches. Measured on CPU at 1x3x256x256 with one
calibration batch (``benchmarks/results/autocast_comparison.md``): M3SNet-32 19 s / 3.5 GB peak,
MPRNet-derain 23 s / 4.2 GB, MHNet more than 9 GB (7.1 GB and 73 s at 128x128); our pass takes
0.2-3.5 s and at most 2.2 GB. A dynamic-shape graph needs ``calibration`` inputs of a concrete
size.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from irdeploy.core.precision import REDUCED, check_precision

INSTALL_HINT = 'pip install ".[modelopt]"'
DEFAULT_DATA_MAX = 512.0
DEFAULT_INIT_MAX = float(np.finfo(np.float16).max)

Calibration = np.ndarray | Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]


class ModelOptUnavailable(ImportError):
    """NVIDIA ModelOpt (``modelopt.onnx.autocast``) cannot be imported; install the extra."""


def _import_autocast():
    """``modelopt.onnx.autocast``, or :class:`ModelOptUnavailable` with a one-line message."""
    try:
        import modelopt.onnx.autocast as autocast
    except ImportError as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelOptUnavailable(
            f"ModelOpt AutoCast is not available ({cause}); install the optional extra: in the irdeploy clone, run {INSTALL_HINT}"
        ) from None
    return autocast


def modelopt_available() -> bool:
    """Whether :func:`autocast_modelopt` can run (ModelOpt's AutoCast imports)."""
    try:
        _import_autocast()
    except ModelOptUnavailable:
        return False
    return True


def modelopt_version() -> str | None:
    """The installed ``nvidia-modelopt`` version, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return None


def autocast_modelopt(
    model: onnx.ModelProto | str | os.PathLike,
    precision: str = "fp16",
    *,
    calibration: Calibration | None = None,
    data_max: float = DEFAULT_DATA_MAX,
    init_max: float = DEFAULT_INIT_MAX,
    fp32_ops: Collection[str] = (),
    fp32_nodes: Collection[str] = (),
    max_depth_of_reduction: int | None = None,
    opset: int | None = None,
    log_level: str | int = "WARNING",
) -> onnx.ModelProto:
    """Convert float32 ``model`` (a ModelProto or an .onnx path) to ``precision`` with AutoCast.

    Inputs and outputs stay float32. ``calibration`` feeds AutoCast's reference run: one array
    (for a single-input graph), a mapping input name -> array, or a sequence of such mappings
    (several batches; AutoCast aggregates their ranges). Without it AutoCast draws random inputs,
    which needs a graph with static input shapes. ``fp32_ops`` and ``fp32_nodes`` (exact names)
    are kept float32 whatever the data says; ``data_max``, ``init_max`` and
    ``max_depth_of_reduction`` are AutoCast's own thresholds (see the module docstring). The
    reference run uses ONNX Runtime's CPU provider. Raises :class:`ModelOptUnavailable` when
    ModelOpt is not installed and ``ValueError`` for bad arguments.
    """
    check_precision(precision, REDUCED)
    autocast = _import_autocast()
    autocast.configure_logging(log_level)
    # AutoCast takes a path: write a ModelProto (or copy nothing: read a path in place).
    with tempfile.TemporaryDirectory(prefix="irdeploy-autocast-") as tmp:
        if isinstance(model, onnx.ModelProto):
            path = Path(tmp) / "model.onnx"
            _save(model, path)
            graph = model.graph
        else:
            path = Path(model)
            if not path.is_file():
                raise ValueError(f"{path}: no such ONNX file")
            graph = onnx.load(path, load_external_data=False).graph
        inputs = _graph_inputs(graph)
        calib_path = None
        if calibration is not None:
            calib_path = _write_calibration(calibration, inputs, Path(tmp) / "calibration")
        elif data_max is not None and np.isfinite(data_max):
            dynamic = [name for name, shape in inputs.items() if any(d is None for d in shape)]
            if dynamic:
                raise ValueError(
                    f"input(s) {', '.join(dynamic)} have dynamic dimensions: AutoCast's reference run needs "
                    "calibration inputs of a concrete size (calibration=...)"
                )
        return autocast.convert_to_mixed_precision(
            onnx_path=str(path),
            low_precision_type=precision,
            nodes_to_exclude=[f"^{re.escape(n)}$" for n in fp32_nodes],
            op_types_to_exclude=list(fp32_ops),
            data_max=data_max,
            init_max=init_max,
            keep_io_types=True,
            calibration_data=None if calib_path is None else str(calib_path),
            providers=["cpu"],
            max_depth_of_reduction=max_depth_of_reduction,
            opset=opset,
        )


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Save, with external data past protobuf's 2 GB limit."""
    if model.ByteSize() < 2**31 - 2**20:
        path.write_bytes(model.SerializeToString())
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")


def _graph_inputs(graph: onnx.GraphProto) -> dict[str, tuple[int | None, ...]]:
    """Non-initializer graph inputs and their shapes (``None`` for a dynamic dimension)."""
    inits = {t.name for t in graph.initializer}
    shapes = {}
    for vi in graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def _write_calibration(calibration: Calibration, inputs: Mapping[str, tuple], folder: Path) -> Path:
    """Calibration inputs as AutoCast reads them: one .npz, or a folder of .npz (one per batch)."""
    if isinstance(calibration, np.ndarray):
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} inputs: pass calibration as a mapping name -> array")
        batches = [{next(iter(inputs)): calibration}]
    elif isinstance(calibration, Mapping):
        batches = [calibration]
    else:
        batches = list(calibration)
        if not batches:
            raise ValueError("calibration is an empty sequence")
    folder.mkdir()
    for i, batch in enumerate(batches):
        missing = set(inputs) - set(batch)
        if missing:
            raise ValueError(f"calibration batch {i} lacks input(s) {', '.join(sorted(missing))}")
        arrays = {name: np.ascontiguousarray(batch[name], dtype=np.float32) for name in inputs}
        for name, arr in arrays.items():
            shape = inputs[name]
            if len(shape) != arr.ndim or any(d is not None and d != s for d, s in zip(shape, arr.shape)):
                raise ValueError(f"calibration batch {i}: input {name!r} has shape {arr.shape}, the graph wants {shape}")
        np.savez(folder / f"batch{i:04d}.npz", **arrays)
    return folder if len(batches) > 1 else folder / "batch0000.npz"

