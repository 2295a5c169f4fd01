"""Importing TensorRT, in either flavour, with a reason when neither is there.

TensorRT comes in two flavours with the same Python API: data-centre TensorRT (module
``tensorrt``; 10.x/11.x, H100-class GPUs) and TensorRT-RTX (module ``tensorrt_rtx``; RTX GPUs,
and CPU-only machines that build engines ahead of time). The export's parser check, the engine
builder and the engine runner all import it through here, so the flavour choice and the install
hint are spelled once.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

FLAVOURS = ("auto", "tensorrt", "rtx")
MODULES = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx"}
NAMES = {"tensorrt": "TensorRT", "rtx": "TensorRT-RTX"}
INSTALL = {
    "tensorrt": "pip install tensorrt-cu13 (data-centre GPUs; needs NVIDIA's index, see the README)",
    "rtx": "pip install tensorrt-rtx-cu13==1.7.1.116 (or, in the irdeploy clone, pip install \".[rtx]\")",
}


class TensorRTUnavailable(ImportError):
    """No usable TensorRT module of the requested flavour; the message says what to install."""


# Each flavour's top-level module; it imports the *_bindings extension that registers its pybind11
# types. The two register the same type names, so once one is loaded the other cannot be
# (pybind11: 'generic_type: type "ILogger" is already registered!'), or worse, loads and mixes
# types. One flavour per process.
_LOADED_BY = {"tensorrt": ("tensorrt",), "rtx": ("tensorrt_rtx",)}
_auto_choice: str | None = None


def loaded_flavour() -> str | None:
    """The TensorRT flavour this process has already imported, if any."""
    return next((f for f, names in _LOADED_BY.items() if any(sys.modules.get(n) is not None for n in names)), None)


def auto_choice() -> str | None:
    """What ``--trt auto`` picked in this process and why, in one line (None before it was asked)."""
    return _auto_choice


def import_tensorrt(flavour: str = "auto") -> ModuleType:
    """Import TensorRT: ``"tensorrt"``, ``"rtx"``, or ``"auto"`` (data-centre first, then RTX).

    A ``tensorrt`` package that is installed but cannot load its libraries (the bindings wheel
    alone) counts as missing, so ``auto`` still falls back to TensorRT-RTX. A process holds one
    flavour: ``auto`` keeps the one already loaded, and asking for the other is refused in one line
    (:class:`TensorRTUnavailable`) instead of importing it beside the first.
    """
    global _auto_choice
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown TensorRT flavour {flavour!r}; choose from {', '.join(FLAVOURS)}")
    loaded = loaded_flavour()
    if loaded is not None and flavour in ("auto", loaded):
        module = importlib.import_module(MODULES[loaded])
        if flavour == "auto" and _auto_choice is None:
            _auto_choice = f"{NAMES[loaded]} {module.__version__} (already loaded in this process)"
        return module
    if loaded is not None:
        raise TensorRTUnavailable(
            f"{NAMES[loaded]} is already loaded in this process and {NAMES[flavour]} registers the same Python "
            f"types, so the two cannot share a process: run the {NAMES[flavour]} step in its own process"
        )
    candidates = ("tensorrt", "rtx") if flavour == "auto" else (flavour,)
    reasons = []
    for name in candidates:
        try:
            module = importlib.import_module(MODULES[name])
        except (ImportError, OSError) as exc:  # OSError: bindings present, shared libraries not
            reasons.append(f"{MODULES[name]}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if flavour == "auto":
            why = f" ({'; '.join(reasons)})" if reasons else ""
            _auto_choice = f"{NAMES[name]} {module.__version__}{why}"
        return module
    wanted = " or ".join(f"`{INSTALL[n]}`" for n in candidates)
    raise TensorRTUnavailable(f"no TensorRT found ({'; '.join(reasons)}); install it with {wanted}")


def flavour_of(trt: ModuleType) -> str:
    """``"tensorrt"`` or ``"rtx"`` for a module returned by :func:`import_tensorrt`."""
    return "rtx" if trt.__name__.split(".")[0] == "tensorrt_rtx" else "tensorrt"


def describe(trt: ModuleType) -> str:
    """``"TensorRT-RTX 1.7.1.116"``: how a flavour and version are named in messages."""
    return f"{NAMES[flavour_of(trt)]} {trt.__version__}"


def make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps errors instead of printing them.

    TensorRT reports build and parse failures through its logger, often as multi-line text on
    stderr; keeping them lets callers raise one line that quotes the first error.
    """

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(" ".join(msg.split()))

        def first_error(self, default: str) -> str:
            return self.errors[0] if self.errors else default

    return CollectingLogger()
