"""The export report: what the graph contains, how it was made, and the checks it passed.

The same report is printed after ``irdeploy export``, written as JSON beside the model, and
rebuilt from any ONNX file by ``irdeploy inspect`` (minus what only the export knows: the op
histogram before folding, the LayerNorm module count and the export time).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from irdeploy.core.fileio import atomic_write
from irdeploy.core.metadata import ExportMetadata
from irdeploy.core.progress import step

from . import graph


@dataclass
class ExportReport:
    path: Path
    opset: int
    precision: str
    input_shape: list[int | str]
    ops_after: Counter
    attention_cores: list[graph.AttentionCore]
    layernorm_nodes: int
    parameters: int
    file_size: int
    problems: list[str]
    metadata: ExportMetadata | None
    fp32_nodes: int | None = None
    fp32_islands: int | None = None
    ops_before: Counter | None = None
    layernorm_modules: int | None = None
    biasfree_norms: int = 0  # Restormer's bias-free LayerNorm chains (graph.biasfree_norms)
    biasfree_modules: int | None = None
    gmacs_256: float | None = None
    exporter: str | None = None
    seconds: float | None = None
    simplifier: str | None = None
    parity: Any = None  # irdeploy.export.parity.ParityResult
    tensorrt: Any = None  # irdeploy.export.tensorrt_check.TensorRTCheck, or a skip reason (str)
    notes: list[str] = field(default_factory=list)
    graph_parameters: int | None = None  # float initializers of the graph (folding can merge some)

    @property
    def node_count(self) -> int:
        return sum(self.ops_after.values())

    @classmethod
    @step("checking the graph's structure (LayerNorm, attention, shape ops)")
    def from_graph(cls, model: onnx.ModelProto, path: Path, **known: Any) -> ExportReport:
        """Everything that can be read off the graph itself."""
        from .precision import describe

        mixed = describe(model)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        metadata = ExportMetadata.read(model)
        written = metadata.extra if metadata is not None else {}  # what the export recorded about itself
        for key in ("parameters", "exporter", "simplifier"):
            if known.get(key) is None and written.get(key) is not None:
                known[key] = written[key]
        if known.get("exporter") is None and model.producer_name:
            known["exporter"] = f"{model.producer_name} {model.producer_version}".strip()
        weights = graph.parameter_count(model)
        return cls(
            graph_parameters=weights,
            path=Path(path),
            opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
            precision=graph.compute_precision(model),
            input_shape=[d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims],
            ops_after=graph.op_histogram(model),
            attention_cores=graph.attention_cores(model),
            layernorm_nodes=graph.count_layernorms(model),
            parameters=known.pop("parameters", None) or weights,
            file_size=Path(path).stat().st_size if Path(path).exists() else model.ByteSize(),
            problems=graph.problems(model, known.get("layernorm_modules"), known.get("biasfree_modules")),
            biasfree_norms=len(graph.biasfree_norms(model)),
            metadata=metadata,
            fp32_nodes=mixed.fp32_nodes if mixed else None,
            fp32_islands=mixed.fp32_islands if mixed else None,
            **known,
        )

    def to_dict(self) -> dict[str, Any]:
        trt = self.tensorrt
        return {
            "path": str(self.path),
            "exporter": self.exporter,
            "simplifier": self.simplifier,
            "opset": self.opset,
            "precision": self.precision,
            "input_shape": self.input_shape,
            "node_count": self.node_count,
            "ops_before": dict(self.ops_before) if self.ops_before is not None else None,
            "ops_after": dict(self.ops_after),
            "layernorm_nodes": self.layernorm_nodes,
            "layernorm_modules": self.layernorm_modules,
            "biasfree_norms": self.biasfree_norms,
            "biasfree_modules": self.biasfree_modules,
            "attention_cores": [{"kind": c.kind, "nodes": list(c.nodes)} for c in self.attention_cores],
            "fp32_nodes": self.fp32_nodes,
            "fp32_islands": self.fp32_islands,
            "parameters": self.parameters,
            "graph_parameters": self.graph_parameters,
            "gmacs_256": self.gmacs_256,
            "file_size": self.file_size,
            "seconds": self.seconds,
            "problems": self.problems,
            "parity": self.parity.to_dict() if self.parity is not None else None,
            "tensorrt": trt if isinstance(trt, str) or trt is None else trt.to_dict(),
            "metadata": None if self.metadata is None else self.metadata.__dict__,
            "notes": self.notes,
        }

    def write_json(self, path: Path) -> Path:
        return atomic_write(path, json.dumps(self.to_dict(), indent=2, default=str))

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the terminal table."""
        def hist(c: Counter) -> str:
            return ", ".join(f"{op} {n}" for op, n in c.most_common())

        rows = [("file", f"{self.path} ({self.file_size / 2**20:.1f} MiB)")]
        if self.metadata:
            rows.append(("model", f"{self.metadata.model} ({self.metadata.arch}), checkpoint "
                                  + (f"sha256 {self.metadata.checkpoint_sha256[:16]}" if self.metadata.checkpoint_sha256
                                     else "none (random weights)")))
        rows += [
            ("exporter", (self.exporter or "unknown") + (f"; constants folded by {self.simplifier}" if self.simplifier else "")),
            ("opset / precision", f"{self.opset} / {self.precision}"
             + (f" ({self.fp32_nodes} float32 nodes in {self.fp32_islands} islands)" if self.fp32_nodes is not None else "")),
            ("input", "x".join(map(str, self.input_shape))),
            ("parameters", f"{self.parameters / 1e6:.2f} M" + (f", {self.gmacs_256:.1f} GMACs at 256x256" if self.gmacs_256 else "")
             + (f" (graph initializers after folding: {self.graph_parameters / 1e6:.2f} M)"
                if self.graph_parameters is not None and self.graph_parameters != self.parameters else "")),
            ("nodes", f"{self.node_count}"),
        ]
        if self.ops_before is not None:
            rows.append(("ops before folding", hist(self.ops_before)))
        rows.append(("ops", hist(self.ops_after)))
        ln = f"{self.layernorm_nodes} LayerNormalization"
        if self.layernorm_modules is not None:
            ln += f" for {self.layernorm_modules} LayerNorm modules"
        if self.biasfree_norms or self.biasfree_modules:
            ln += f"; {self.biasfree_norms} bias-free chains"
            if self.biasfree_modules is not None:
                ln += f" for {self.biasfree_modules} BiasFree modules"
        rows.append(("layernorm", ln))
        kinds = Counter(c.kind for c in self.attention_cores)
        rows.append(("attention cores", ", ".join(f"{n} x {k}" for k, n in kinds.items()) or "none"))
        rows.append(("problems", "; ".join(self.problems) or "none"))
        if self.parity is not None:
            rows.append(("parity (ORT vs eager)", self.parity.summary()))
        if self.tensorrt is not None:
            rows.append(("tensorrt", self.tensorrt if isinstance(self.tensorrt, str) else self.tensorrt.summary()))
        if self.seconds is not None:
            rows.append(("export time", f"{self.seconds:.1f} s"))
        rows += [("note", n) for n in self.notes]
        return rows

    def render(self) -> str:
        """A plain two-column table (the CLI prints it through rich when available)."""
        width = max(len(k) for k, _ in self.lines())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.lines())
