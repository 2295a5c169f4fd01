"""The JSON file next to every engine: what it was built from, for what, and with what.

An engine is only valid for the TensorRT flavour and version that built it, for the GPU (or,
with TensorRT-RTX, the compute capabilities) it targets, and for one ONNX graph, precision and
profile. The sidecar records all of it so that a build can tell a cache hit from a stale engine,
and a loader can refuse an engine before TensorRT fails on it with a CUDA error.

Both files are written atomically (a temporary file in the same folder, then a rename); the
sidecar carries the engine's sha256, so an engine and a sidecar from different builds never
pass for a pair.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from irdeploy.core.fileio import atomic_write, sha256_bytes, sha256_file, sha256_json

from .errors import EngineLoadError

FORMAT = 1
SUFFIX = ".json"
# The fields that decide whether an existing engine can be reused: everything it was built
# from and for. Build time and host are recorded, never compared.
KEY_FIELDS = ("tensorrt", "target", "precision", "profiles", "onnx", "options", "irdeploy_version")


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    path = Path(engine_path)
    return path.with_name(path.name + SUFFIX)


def cache_key(fields: Mapping[str, Any]) -> str:
    """sha256 of the key fields, in a canonical JSON form."""
    return sha256_json({k: fields[k] for k in KEY_FIELDS})


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of ``engine_path``; :class:`EngineLoadError` if it is missing or unreadable."""
    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineLoadError(f"{path}: no sidecar for engine {Path(engine_path).name}; rebuild it with irdeploy build") from None
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"{path}: unreadable sidecar ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "key" not in data:
        raise EngineLoadError(f"{path}: not an irdeploy engine sidecar (format {FORMAT} expected); rebuild the engine")
    missing = _missing_field(data)
    if missing:
        raise EngineLoadError(f"{path}: the sidecar has no valid {missing!r}; rebuild the engine with irdeploy build")
    return data


def _missing_field(data: dict[str, Any]) -> str | None:
    """The first field a loader needs that is absent or of the wrong form (a hand-edited or
    truncated sidecar), as a dotted path; None when all are there."""

    def get(*keys: Any) -> Any:
        value: Any = data
        for k in keys:
            if isinstance(k, int):
                value = value[k] if isinstance(value, list) and len(value) > k else None
            else:
                value = value.get(k) if isinstance(value, dict) else None
        return value

    needed = [(("engine", "sha256"), str), (("tensorrt", "flavour"), str), (("tensorrt", "version"), str),
              (("target",), dict), (("profiles", 0, "input"), str)]
    needed += [(("profiles", 0, kind), list) for kind in ("min", "opt", "max")]
    target = data.get("target")
    if isinstance(target, dict):
        needed += ([(("target", "compute_capabilities"), list)] if "compute_capabilities" in target
                   else [(("target", "gpu", "name"), str), (("target", "gpu", "compute_capability"), str)])
    for keys, kind in needed:
        if not isinstance(get(*keys), kind):
            return ".".join(str(k) for k in keys)
    if data["tensorrt"]["flavour"] not in ("tensorrt", "rtx"):
        return "tensorrt.flavour"
    return None


def is_cache_hit(engine_path: Path, key: str) -> dict[str, Any] | None:
    """The sidecar if ``engine_path`` was built with ``key`` and is intact, else ``None``."""
    if not engine_path.is_file():
        return None
    try:
        data = read_sidecar(engine_path)
    except EngineLoadError:
        return None
    try:
        recorded = cache_key(data)  # recomputed: a sidecar edited by hand is not trusted
    except KeyError:
        return None
    if not data["key"] == recorded == key or data.get("engine", {}).get("sha256") != sha256_file(engine_path):
        return None
    return data


def write_engine(engine_path: Path, engine: bytes, sidecar: dict[str, Any]) -> dict[str, Any]:
    """Write the engine, then its sidecar (which names the engine's sha256), each atomically.

    Returns the sidecar as written."""
    sidecar = {**sidecar, "format": FORMAT, "engine": {"file": engine_path.name, "sha256": sha256_bytes(engine), "bytes": len(engine)}}
    atomic_write(engine_path, engine)
    atomic_write(sidecar_path(engine_path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return sidecar
