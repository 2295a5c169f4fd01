"""Opening an ONNX file given on the command line: one loader, one-line errors.

``onnx.load`` raises protobuf's ``DecodeError`` for a truncated or foreign file and, for a graph
whose weights live in a separate external-data file, either a checker ``ValidationError`` from
deep inside (when it loads the data) or nothing at all (when it does not), leaving ONNX Runtime
to fail later with "Cannot parse data from external tensors". Every verb that reads a graph
(``inspect``, ``validate``, ``triton``, ``serve``) opens it here instead, so a missing data file
is named, and a file that is not ONNX says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx


def external_data_files(model: onnx.ModelProto) -> list[str]:
    """The relative names of the files holding ``model``'s external tensors, sorted."""
    names = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(names)


def load_onnx(path: str | os.PathLike, *, load_external_data: bool = False) -> onnx.ModelProto:
    """The graph in ``path`` (without its external tensors unless asked), checked to be an ONNX
    model whose external-data files are all present beside it; ``ValueError`` in one line if not."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:  # a truncated or foreign file does not parse
        raise ValueError(f"{path}: not an ONNX model (it does not parse as one: {type(exc).__name__}); "
                         "is it truncated, or another format?") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not model.graph.node or not model.graph.input:
        raise ValueError(f"{path}: not an ONNX model (no graph)")
    for name in external_data_files(model):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{path}: external data {name!r} is outside the graph's folder")
        if not (path.parent / name).is_file():
            raise ValueError(f"{path}: its weights are stored in a separate file, {name}, which is missing "
                             f"(expected at {path.parent / name}); copy it next to the graph")
    if load_external_data:
        onnx.load_external_data_for_model(model, str(path.parent))
    return model
