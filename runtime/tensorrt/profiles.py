"""Optimization profiles for the graph input: what shapes an engine accepts.

Exported graphs take H and W that are multiples of the network's ``pad_multiple`` (the runtime
pads; see :mod:`irdeploy.core.padding`), so a profile whose H or W is off that multiple would
describe shapes the graph cannot run: such sizes are rounded up, with a warning. Dimensions the
graph fixed (channels, or everything in a static export) must match exactly.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx

from irdeploy.core.metadata import ExportMetadata
from irdeploy.core.padding import aligned
from irdeploy.core.shapes import Shape, format_shape, parse_shape

from .errors import EngineBuildError

PROFILE_POINTS = ("min", "opt", "max")
# Default H x W: small tiles up to 1080p (the CLI example), batch 1.
DEFAULT_SIZES = {"min": (64, 64), "opt": (720, 1280), "max": (1088, 1920)}
_MULTIPLE_PARAM = re.compile(r"^\s*(\d+)\s*\*")  # the exporter names dynamic sizes "16*h_blocks"


@dataclass(frozen=True)
class GraphInput:
    """The graph's single input: its name and shape, ``None`` where the dimension is dynamic,
    and the padding contract (multiple and mode) that callers apply before running it."""

    name: str
    shape: tuple[int | None, ...]
    multiple: int
    pad_mode: str = "constant"

    @property
    def static(self) -> bool:
        return all(d is not None for d in self.shape)

    def describe(self) -> str:
        return "x".join("?" if d is None else str(d) for d in self.shape)


@dataclass(frozen=True)
class Profile:
    input: str
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return " ".join(f"{k}={format_shape(getattr(self, k))}" for k in PROFILE_POINTS)

    def to_dict(self) -> dict[str, object]:
        return {"input": self.input, **{k: list(getattr(self, k)) for k in PROFILE_POINTS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Profile:
        return cls(str(data["input"]), *(tuple(int(d) for d in data[k]) for k in PROFILE_POINTS))  # type: ignore[union-attr]




def parse_shapes(args: Sequence[str]) -> dict[str, Shape]:
    """CLI form ``["min=1x3x64x64", "opt=...", "max=..."]`` -> ``{"min": (1, 3, 64, 64), ...}``."""
    shapes: dict[str, Shape] = {}
    for arg in args:
        kind, sep, value = arg.partition("=")
        if not sep or kind not in PROFILE_POINTS:
            raise EngineBuildError(f"bad --shapes entry {arg!r}: expected min=NxCxHxW, opt=... or max=...")
        try:
            shapes[kind] = parse_shape(value)
        except ValueError as exc:
            raise EngineBuildError(str(exc)) from None
    return shapes


def graph_input(model: onnx.ModelProto) -> GraphInput:
    """The single float input of an exported graph, and the multiple its H and W must have.

    The multiple comes from irdeploy's metadata, else from the exporter's dimension names
    (``16*h_blocks``), else 1 (a graph from elsewhere: no rounding).
    """
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise EngineBuildError(f"the graph has {len(inputs)} inputs; irdeploy engines take one image batch")
    value = inputs[0]
    dims = value.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    meta = ExportMetadata.read(model)
    multiple = meta.pad_multiple if meta is not None else 1
    if meta is None:
        found = {int(m.group(1)) for d in dims[2:] if (m := _MULTIPLE_PARAM.match(d.dim_param))}
        multiple = found.pop() if len(found) == 1 else 1
    return GraphInput(value.name, shape, multiple, meta.pad_mode if meta is not None else "constant")


def resolve_profile(graph: GraphInput, shapes: Mapping[str, Sequence[int]] | None = None) -> tuple[Profile, list[str]]:
    """The profile to build for ``graph``, and notes on every size that was adjusted.

    Missing entries of ``shapes`` come from the given ones (``{"opt": s}`` is a profile of one
    shape; a missing opt is max, where the time goes), or all from the defaults: batch 1 (or the graph's), 64x64 to 1088x1920 around a
    720x1280 optimum. A static graph's profile is its shape.
    """
    if len(graph.shape) != 4:
        raise EngineBuildError(f"graph input {graph.name!r} has shape {graph.describe()}; expected NxCxHxW")
    given = {k: tuple(int(d) for d in v) for k, v in (shapes or {}).items()}
    unknown = set(given) - set(PROFILE_POINTS)
    if unknown:
        raise EngineBuildError(f"unknown profile entries {sorted(unknown)}; use min, opt and max")
    if not given:
        given = {k: _default(graph, k) for k in PROFILE_POINTS}
    opt = given.get("opt") or given.get("max") or given.get("min")
    chosen = {"min": given.get("min") or opt, "opt": opt, "max": given.get("max") or opt}
    notes: list[str] = []
    fitted = {k: _fit(graph, k, chosen[k], notes) for k in PROFILE_POINTS}  # type: ignore[arg-type]
    for i in range(4):
        if not fitted["min"][i] <= fitted["opt"][i] <= fitted["max"][i]:
            raise EngineBuildError(
                f"profile {' '.join(f'{k}={format_shape(fitted[k])}' for k in PROFILE_POINTS)}: "
                f"dimension {i} must grow from min to opt to max"
            )
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return Profile(graph.name, fitted["min"], fitted["opt"], fitted["max"]), notes


def _default(graph: GraphInput, kind: str) -> Shape:
    n, c, h, w = graph.shape
    dh, dw = DEFAULT_SIZES[kind]
    return (n or 1, c or 3, h or aligned(dh, graph.multiple), w or aligned(dw, graph.multiple))


def _fit(graph: GraphInput, kind: str, shape: Shape, notes: list[str]) -> Shape:
    """Check ``shape`` against the graph's fixed dimensions and round H, W up to the multiple."""
    if len(shape) != 4 or any(d <= 0 for d in shape):
        raise EngineBuildError(f"profile {kind}={format_shape(shape)}: expected four positive sizes NxCxHxW")
    for i, (want, got) in enumerate(zip(graph.shape, shape)):
        if want is not None and want != got:
            raise EngineBuildError(
                f"profile {kind}={format_shape(shape)} does not fit graph input {graph.name!r} "
                f"({graph.describe()}): dimension {i} is fixed to {want}"
            )
    rounded = shape[:2] + tuple(aligned(d, graph.multiple) for d in shape[2:])
    if rounded != shape:
        notes.append(
            f"profile {kind}={format_shape(shape)} rounded up to {format_shape(rounded)}: "
            f"H and W must be multiples of {graph.multiple}"
        )
    return rounded
