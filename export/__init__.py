"""irdeploy.export: ONNX graphs of zoo models, folded for TensorRT and checked against eager.

Public API: :func:`to_onnx` (returns an :class:`ExportReport`), :func:`inspect_onnx`.
"""

from .onnx_export import ExportError, inspect_onnx, to_onnx
from .report import ExportReport

__all__ = ["ExportError", "ExportReport", "inspect_onnx", "to_onnx"]
