"""File helpers every layer shares, torch-free: content hashes and all-or-nothing writes.

Hashes name artifacts (checkpoints, ONNX graphs, engines) in caches and sidecars; atomic writes
keep the promise that a failed or interrupted command never leaves a partial file where a
complete one is expected. They live in :mod:`irdeploy.core` because model/, export/ and runtime/
all need them and the engine runtime must not import torch (``irdeploy.model`` does).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/irdeploy``, else ``~/.cache/irdeploy``: per user, outside any project.
    Cached graphs and engines (:mod:`irdeploy.runtime.artifacts`) and ONNX Runtime's TensorRT
    engine cache (:mod:`irdeploy.core.ort_backend`) live under it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "irdeploy"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB chunks (checkpoints and engines can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(fields: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no spaces): a cache key."""
    return sha256_bytes(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; on success it is renamed onto ``path``, on any
    error it is removed. For writers that want a file name (torch.save, PIL, onnx.save)."""
    path = Path(path)
    if path.is_dir():  # else the rename fails later, naming the temporary file instead of the user's path
        raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {path.parent} does not exist", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:  # not mkstemp: its 0600 mode would ignore the umask
            f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float as the string ``"inf"``, ``"-inf"`` or ``"nan"``.

    Identical outputs have an infinite PSNR, and strict JSON (``allow_nan=False``, what other
    languages' parsers accept) has no literal for it; one spelling across every JSON we write.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
