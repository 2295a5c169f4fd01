"""irdeploy.export: ONNX graphs of zoo models, folded for TensorRT and checked against eager.

Public API: :func:`to_onnx` (returns an :class:`ExportReport`), :func:`inspect_onnx`.

The names are resolved lazily: the runtime imports torch-free helpers from this package
(padding, images, the TensorRT parser check) on machines that run engines without torch, and
``to_onnx`` pulls in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "to_onnx": ".onnx_export",
    "inspect_onnx": ".onnx_export",
    "ExportError": ".onnx_export",
    "ExportReport": ".report",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
