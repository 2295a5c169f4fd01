"""A Triton model repository for an irdeploy artifact: ``<root>/<name>/config.pbtxt`` + ``1/model.*``.

The model folder is assembled beside its final place and renamed into it, so a failure (a
config Triton would reject, a full disk) never leaves a half-written model that Triton would
try to load. ONNX graphs with external weights bring their data files along.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from irdeploy.core.onnx_files import external_data_files, load_onnx

from ..registry import triton_backend
from .artifact import ArtifactSpec, inspect_artifact
from .config import ConfigOptions, build_config, to_text
from .errors import ServingError

# Triton model names become folder names and URL path segments.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class RepositoryResult:
    """What :func:`write_repository` wrote."""

    model_dir: Path
    config_text: str
    files: tuple[Path, ...]
    spec: ArtifactSpec

    def summary(self) -> str:
        spec = self.spec
        kind = "TensorRT plan" if spec.kind == "engine" else "ONNX Runtime"
        lines = [f"wrote {self.model_dir} ({kind}; input {spec.input.name} {spec.input.data_type} "
                 f"{list(spec.input.dims)}, output {spec.output.name} {spec.output.data_type} {list(spec.output.dims)})"]
        lines += [f"  {path}" for path in self.files]
        if spec.pad_multiple > 1:
            lines.append(f"clients send H and W in multiples of {spec.pad_multiple} ({spec.pad_mode} padding; "
                         "irdeploy.runtime.triton_client pads and crops)")
        return "\n".join(lines)


def write_repository(root: str | os.PathLike, name: str, onnx_path: str | os.PathLike,
                     engine_path: str | os.PathLike | None = None, options: ConfigOptions = ConfigOptions(),
                     *, force: bool = False) -> RepositoryResult:
    """Write model ``name`` serving ``engine_path`` (if given) or ``onnx_path`` into repository ``root``.

    ``force`` replaces an existing ``root/name``; without it an existing model is an error.
    Raises :class:`ServingError` (one line) and writes nothing on failure.
    """
    if not _NAME.match(name):
        raise ServingError(f"bad model name {name!r}: use letters, digits, '_', '.', '-'")
    spec = inspect_artifact(onnx_path, engine_path)
    config = build_config(spec, name, options)
    text = to_text(config)
    root = Path(root)
    target = root / name
    if target.exists() and not force:
        raise ServingError(f"{target} exists; pass force=True (--force) to replace it")
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    except OSError as exc:
        raise ServingError(f"cannot write into {root}: {exc.strerror or exc}") from None
    try:
        version = staging / "1"
        version.mkdir()
        (staging / "config.pbtxt").write_text(text)
        shutil.copyfile(spec.path, version / triton_backend(spec.kind).triton_file)
        if spec.kind == "onnx":
            for data in _external_data(spec.path):
                shutil.copyfile(spec.path.parent / data, version / data)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from a server running as another user
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as exc:
        raise ServingError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = tuple(sorted(p for p in target.rglob("*") if p.is_file()))
    return RepositoryResult(target, text, files, spec)


def _external_data(path: Path) -> list[str]:
    """Relative names of the files holding the graph's external tensors (weights over 2 GB)."""
    try:
        return external_data_files(load_onnx(path))  # load_onnx checks each is there, beside the graph
    except ValueError as exc:
        raise ServingError(str(exc)) from None
