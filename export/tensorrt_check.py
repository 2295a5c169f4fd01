"""What TensorRT's ONNX parser makes of a graph: the export's last check, and the build's first step.

The flavour choice and the import are :mod:`irdeploy.core.tensorrt`; the parse lives here, in
:mod:`irdeploy.export`, because the export checks graphs with it and the engine builder in
:mod:`irdeploy.runtime.tensorrt` reuses it (dependencies point runtime -> export).

Networks are always created ``STRONGLY_TYPED``: TensorRT 11 has no other mode, and it makes the
graph's own tensor types the engine's precision.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from irdeploy.core.tensorrt import NAMES, flavour_of, import_tensorrt, make_logger


class TensorRTParseError(ValueError):
    """The ONNX parser rejected the graph; the message names the first failing node."""


@dataclass(frozen=True)
class ParserIssue:
    """One parser error, with the node it is about."""

    node_index: int
    node_name: str
    op_type: str
    message: str

    def line(self) -> str:
        where = f"node {self.node_name!r} ({self.op_type})" if self.node_name or self.op_type else "the model"
        return f"{where}: {self.message}"


@dataclass
class ParsedNetwork:
    """A parsed network with the objects that must outlive it.

    TensorRT's network borrows weights from the parser, so builder, network and parser are kept
    together until the engine is built.
    """

    trt: ModuleType
    logger: Any
    builder: Any
    network: Any
    parser: Any
    errors: list[ParserIssue]

    @property
    def ok(self) -> bool:
        return not self.errors

    def layers(self) -> list[Any]:
        return [self.network.get_layer(i) for i in range(self.network.num_layers)]


def parse_onnx(source: str | os.PathLike | bytes, trt: ModuleType) -> ParsedNetwork:
    """Parse an ONNX file (path) or serialized model (bytes) into a STRONGLY_TYPED network.

    A path is parsed with ``parse_from_file`` so that external weight files next to it resolve.
    """
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if isinstance(source, (bytes, bytearray)):
        ok = parser.parse(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        ok = parser.parse_from_file(str(path))
    errors = [_issue(parser.get_error(i)) for i in range(parser.num_errors)]
    if not ok and not errors:
        errors = [ParserIssue(-1, "", "", logger.first_error("the parser failed without an error message"))]
    return ParsedNetwork(trt, logger, builder, network, parser, errors)


def _issue(error: Any) -> ParserIssue:
    """Keep the parser's words; a bare ``false`` (a failed op check) says only which check failed."""
    desc = " ".join(error.desc().split())
    code = error.code().name
    message = f"{code} in {error.func()}" if desc in ("", "false") else f"{code}: {desc}"
    return ParserIssue(error.node(), error.node_name(), error.node_operator(), message)


def layer_histogram(parsed: ParsedNetwork) -> dict[str, int]:
    """Count of each ``LayerType`` name in the parsed network, most frequent first."""
    counts = Counter(layer.type.name for layer in parsed.layers())
    return dict(counts.most_common())


@dataclass
class TensorRTCheck:
    """The parser's verdict on a graph and the shape of the network it built."""

    flavour: str
    version: str
    ok: bool
    errors: list[ParserIssue] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)

    @property
    def normalization(self) -> int:
        """NORMALIZATION layers: one per ONNX LayerNormalization when the parser keeps it whole."""
        return self.layers.get("NORMALIZATION", 0)

    @property
    def attention(self) -> int:
        """Fused attention layers: ATTENTION_INPUT/ATTENTION_OUTPUT pairs (opset-23 ``Attention``)."""
        return min(self.layers.get("ATTENTION_INPUT", 0), self.layers.get("ATTENTION_OUTPUT", 0))

    @property
    def shape_layers(self) -> int:
        """SHAPE + GATHER layers: TensorRT's shape arithmetic, zero for a clean static graph."""
        return self.layers.get("SHAPE", 0) + self.layers.get("GATHER", 0)

    def summary(self) -> str:
        """One line; for a rejected graph, the first failing node and op."""
        name = f"{NAMES[self.flavour]} {self.version}"
        if not self.ok:
            more = f" (and {len(self.errors) - 1} more parser errors)" if len(self.errors) > 1 else ""
            return f"{name} cannot parse the graph: {self.errors[0].line()}{more}"
        return (
            f"{name} parsed {sum(self.layers.values())} layers: NORMALIZATION {self.normalization}, "
            f"ATTENTION layers {self.attention}, SHAPE {self.layers.get('SHAPE', 0)}, GATHER {self.layers.get('GATHER', 0)}"
        )

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise TensorRTParseError(self.summary())

    def to_dict(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "version": self.version,
            "ok": self.ok,
            "errors": [vars(e) for e in self.errors],
            "layers": dict(self.layers),
            "normalization": self.normalization,
            "attention": self.attention,
            "shape_layers": self.shape_layers,
        }


def check_onnx(source: str | os.PathLike | bytes, *, flavour: str = "auto") -> TensorRTCheck:
    """Parse ``source`` with TensorRT and report; a rejected graph gives ``ok=False``, not an exception.

    Raises :class:`TensorRTUnavailable` when no TensorRT of ``flavour`` imports.
    """
    trt = import_tensorrt(flavour)
    parsed = parse_onnx(source, trt)
    return TensorRTCheck(
        flavour=flavour_of(trt),
        version=trt.__version__,
        ok=parsed.ok,
        errors=parsed.errors,
        layers=layer_histogram(parsed) if parsed.ok else {},
    )
