"""Every TensorRT name irdeploy uses exists in data-centre TensorRT 11.4's Python bindings.

Only TensorRT-RTX runs here, so the data-centre path could drift from the real TensorRT API
unnoticed. The ``tensorrt-cu13-bindings==11.4.0.106`` wheel holds the bindings without the
libraries (module ``tensorrt_bindings``, which cannot be imported without them): its extension
module's string table has the Python-visible names (pybind11 registers them as C strings), and
its ``__init__.py`` adds a few helpers (``nptype``). We read both without importing anything.

The names irdeploy uses are every attribute in its TensorRT modules' source that TensorRT-RTX's
API also has (the two share one API, so an attribute TensorRT-RTX does not know is not a
TensorRT call). A few are TensorRT-RTX features, used only on the RTX path: :data:`RTX_ONLY`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import irdeploy.core.tensorrt as core_tensorrt
import irdeploy.export.tensorrt_check as tensorrt_check
import irdeploy.runtime.tensorrt as runtime_tensorrt

WHEEL = ("tensorrt-cu13-bindings", "11.4.0.106")
PACKAGE = "tensorrt_bindings"
# TensorRT-RTX features that data-centre TensorRT does not have; irdeploy uses them only when
# the flavour is "rtx" (ahead-of-time compute capabilities, the just-in-time runtime cache, its
# native CUDA-graph strategy).
RTX_ONLY = frozenset({
    "ComputeCapability", "num_compute_capabilities", "set_compute_capability",
    "create_runtime_cache", "set_runtime_cache",
    "CudaGraphStrategy", "cuda_graph_strategy", "WHOLE_GRAPH_CAPTURE",
})
# Weakly-typed API that TensorRT 11 removed: irdeploy must never use it.
REMOVED = ("execute_async_v2", "EXPLICIT_BATCH", "OBEY_PRECISION_CONSTRAINTS", "set_output_type")
SOURCES = [Path(core_tensorrt.__file__), Path(tensorrt_check.__file__), *sorted(Path(runtime_tensorrt.__file__).parent.glob("*.py"))]


def _extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        for member in (f"{PACKAGE}/tensorrt.so", f"{PACKAGE}/__init__.py"):
            zf.extract(member, dest)
    return dest / PACKAGE


@pytest.fixture(scope="module")
def bindings(request) -> Path:
    """The folder holding TensorRT 11.4's ``tensorrt.so`` and ``__init__.py``.

    From the installed wheel if the test extra put it there, else downloaded once into pytest's
    cache (``pip download --no-deps``; CI has PyPI access).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        if importlib.metadata.version(WHEEL[0].replace("-", "_")) == WHEEL[1]:
            return Path(next(iter(spec.submodule_search_locations)))
    cache = Path(request.config.cache.mkdir(f"{WHEEL[0]}-{WHEEL[1]}"))
    folder = cache / PACKAGE
    if (folder / "tensorrt.so").is_file():
        return folder
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache), f"{WHEEL[0]}=={WHEEL[1]}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wheels = sorted(cache.glob("tensorrt_cu13_bindings-*.whl"))
    if done.returncode or not wheels:
        reason = f"cannot download {WHEEL[0]}=={WHEEL[1]}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return _extract(wheels[-1], cache)


@pytest.fixture(scope="module")
def trt11_names(bindings) -> set[str]:
    binary = (bindings / "tensorrt.so").read_bytes()
    names = {m.decode() for m in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", binary)}
    tree = ast.parse((bindings / "__init__.py").read_text())
    names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def _rtx_api() -> set[str]:
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed: it defines which attributes are TensorRT's")
    names = set()
    for name in dir(trt):
        names.add(name)
        obj = getattr(trt, name)
        if inspect.isclass(obj):
            names.update(dir(obj))
    return {n for n in names if not n.startswith("__")}


def _attributes() -> dict[str, set[str]]:
    """Every attribute name in irdeploy's TensorRT modules -> the files using it."""
    used: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                used.setdefault(node.attr, set()).add(path.name)
    return used


def test_scan_sees_names_and_their_absence(trt11_names):
    """The string-table scan finds TensorRT 11's API and not what it removed."""
    for name in ("STRONGLY_TYPED", "TF32", "execute_async_v3", "set_input_shape", "build_serialized_network",
                 "ATTENTION_INPUT", "IAttentionInputLayer", "decomposable", "nptype"):
        assert name in trt11_names, name
    for name in REMOVED:
        assert name not in trt11_names, name


def test_every_tensorrt_name_we_use_exists_in_tensorrt_11(trt11_names):
    used = _attributes()
    ours = {name for name in used if name in _rtx_api()}
    assert {"create_network", "STRONGLY_TYPED", "execute_async_v3", "set_input_shape", "decomposable"} <= ours
    missing = {name: sorted(used[name]) for name in ours - trt11_names - RTX_ONLY}
    assert not missing, f"not in TensorRT 11.4's bindings: {missing}"
    # RTX_ONLY stays honest: each of them is used, and really is missing from TensorRT 11.4.
    assert RTX_ONLY <= ours
    assert not RTX_ONLY & trt11_names


def test_no_weakly_typed_api_in_our_code():
    used = _attributes()
    assert not set(REMOVED) & set(used)
    assert "precision" not in used  # ILayer.precision: per-layer precision is gone
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "BuilderFlag":
                assert node.attr == "TF32", f"{path.name}: BuilderFlag.{node.attr}"
