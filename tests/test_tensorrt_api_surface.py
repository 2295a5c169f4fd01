"""Every TensorRT name irdeploy uses exists in data-centre TensorRT 10.13 LTS and 11.4.

Only TensorRT-RTX runs here, so the data-centre path could drift from the real TensorRT API
unnoticed. The bindings wheels ``tensorrt-cu12-bindings==10.13.3.9`` and
``tensorrt-cu13-bindings==11.4.0.106`` hold the bindings without the libraries: their extension
module's string table has the Python-visible names (pybind11 registers them as C strings), and
their ``__init__.py`` adds a few helpers (``nptype``). Both install the same ``tensorrt_bindings``
package, so they cannot share one environment, and neither imports without TensorRT's shared
libraries; the test therefore reads both wheels as files: the copy the test extra installed
(11.4), or a wheel downloaded once into pytest's cache (``pip download --no-deps``; CI has PyPI
access). Nothing is installed or imported.

The names irdeploy uses are every attribute in its TensorRT modules' source that TensorRT-RTX's
API also has (the two share one API, so an attribute TensorRT-RTX does not know is not a
TensorRT call). Every one of them must exist in 10.13, the oldest version the ``gpu`` extra
allows, apart from TensorRT-RTX features used only on the RTX path (:data:`RTX_ONLY`). Names that
came after 10.13 (the attention layer, 10.14) are reached by name, behind a check of what the
module has (:data:`AFTER_10_13`), and a real TensorRT-RTX build through a module without them
shows the check works.
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
import types
import zipfile
from pathlib import Path

import pytest

import irdeploy.core.tensorrt as core_tensorrt
import irdeploy.export.tensorrt_check as tensorrt_check
import irdeploy.runtime.tensorrt as runtime_tensorrt

# version -> (distribution, exact version); the gpu extra's lower bound is the oldest one here.
WHEELS = {"10.13": ("tensorrt-cu12-bindings", "10.13.3.9"), "11.4": ("tensorrt-cu13-bindings", "11.4.0.106")}
PACKAGE = "tensorrt_bindings"
# TensorRT-RTX features that data-centre TensorRT does not have; irdeploy uses them only when
# the flavour is "rtx" (ahead-of-time compute capabilities, the just-in-time runtime cache, its
# native CUDA-graph strategy, the dynamic-shape kernel specialization strategy).
RTX_ONLY = frozenset({
    "ComputeCapability", "num_compute_capabilities", "set_compute_capability",
    "create_runtime_cache", "set_runtime_cache",
    "CudaGraphStrategy", "cuda_graph_strategy", "WHOLE_GRAPH_CAPTURE",
    "DynamicShapesKernelSpecializationStrategy", "dynamic_shapes_kernel_specialization_strategy",
})
# In TensorRT 11.4 (and TensorRT-RTX) but not in 10.13: used only by name, behind a check.
AFTER_10_13 = frozenset({"ATTENTION_INPUT", "IAttentionInputLayer", "attention", "decomposable"})
# irdeploy's own attributes that share a name with TensorRT's (TensorRTCheck.attention, a count).
OWN_NAMES = frozenset({"attention"})
# Weakly-typed API that TensorRT 11 removed (10.13 still has it, deprecated): irdeploy must never use it.
REMOVED = ("execute_async_v2", "EXPLICIT_BATCH", "OBEY_PRECISION_CONSTRAINTS", "set_output_type")
SOURCES = [Path(core_tensorrt.__file__), Path(tensorrt_check.__file__),
           *sorted(p for p in Path(runtime_tensorrt.__file__).parent.glob("*.py") if p.name != "simulated.py")]


def _extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        for member in (f"{PACKAGE}/tensorrt.so", f"{PACKAGE}/__init__.py"):
            zf.extract(member, dest)
    return dest / PACKAGE


def _bindings(request, version: str) -> Path:
    """The folder holding ``tensorrt.so`` and ``__init__.py`` of TensorRT ``version``'s bindings."""
    dist, exact = WHEELS[version]
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        try:
            installed = importlib.metadata.version(dist.replace("-", "_"))
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed == exact:
            return Path(next(iter(spec.submodule_search_locations)))
    cache = Path(request.config.cache.mkdir(f"{dist}-{exact}"))
    folder = cache / PACKAGE
    if (folder / "tensorrt.so").is_file():
        return folder
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache), f"{dist}=={exact}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wheels = sorted(cache.glob(f"{dist.replace('-', '_')}-{exact}-*.whl"))
    if done.returncode or not wheels:
        reason = f"cannot download {dist}=={exact}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return _extract(wheels[-1], cache)


def _names(folder: Path) -> set[str]:
    binary = (folder / "tensorrt.so").read_bytes()
    names = {m.decode() for m in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", binary)}
    tree = ast.parse((folder / "__init__.py").read_text())
    names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


@pytest.fixture(scope="module")
def trt_names(request) -> dict[str, set[str]]:
    return {version: _names(_bindings(request, version)) for version in WHEELS}


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


def _by_name() -> dict[str, list[ast.Call]]:
    """Names passed as string constants to getattr/hasattr/setattr -> the calls."""
    calls: dict[str, list[ast.Call]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr")
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                calls.setdefault(node.args[1].value, []).append(node)
    return calls


def test_scan_sees_names_and_their_absence(trt_names):
    """The string-table scan finds each version's API and not what it lacks."""
    common = ("STRONGLY_TYPED", "TF32", "execute_async_v3", "set_input_shape", "build_serialized_network", "NORMALIZATION",
              "set_timing_cache", "nptype")
    for version, names in trt_names.items():
        for name in common:
            assert name in names, (version, name)
    for name in REMOVED:
        assert name not in trt_names["11.4"], name
    assert AFTER_10_13 <= trt_names["11.4"]
    assert not AFTER_10_13 & trt_names["10.13"]


@pytest.mark.parametrize("version", list(WHEELS))
def test_every_tensorrt_name_we_use_exists_in_data_centre_tensorrt(trt_names, version):
    used = _attributes()
    ours = {name for name in used if name in _rtx_api()}
    assert {"create_network", "STRONGLY_TYPED", "execute_async_v3", "set_input_shape", "set_timing_cache"} <= ours
    missing = {name: sorted(used[name]) for name in ours - trt_names[version] - RTX_ONLY - OWN_NAMES}
    assert not missing, f"not in TensorRT {version}'s bindings: {missing}"
    # RTX_ONLY stays honest: each of them is used, and really is missing from data-centre TensorRT.
    assert RTX_ONLY <= ours
    assert not RTX_ONLY & trt_names[version]


def test_names_after_10_13_are_reached_behind_a_check(trt_names):
    """Names 10.13 lacks appear only as getattr/hasattr/setattr strings (getattr with a default),
    and each is a real name of 11.4."""
    calls = _by_name()
    api = _rtx_api() | trt_names["11.4"]
    gated = {name for name in calls if name in api and name not in trt_names["10.13"]}
    assert gated == AFTER_10_13
    for name in gated:
        assert name in trt_names["11.4"]
        for call in calls[name]:
            assert call.func.id != "getattr" or len(call.args) == 3, f"getattr(..., {name!r}) needs a default"


def _without(module: types.ModuleType, hidden: frozenset[str]) -> types.ModuleType:
    """``module`` as a TensorRT older than 10.14 sees it: the attention layer's names are missing."""

    class Enum:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name in hidden:
                raise AttributeError(name)
            return getattr(self._inner, name)

    proxy = types.ModuleType(module.__name__)

    def __getattr__(name):
        if name in hidden:
            raise AttributeError(name)
        value = getattr(module, name)
        return Enum(value) if name == "LayerType" else value

    proxy.__getattr__ = __getattr__
    return proxy


def test_a_build_through_a_tensorrt_without_the_attention_layer(tiny_onnx, tmp_path, monkeypatch):
    """A real TensorRT-RTX build, through a module that lacks what TensorRT 10.13 lacks."""
    trt = pytest.importorskip("tensorrt_rtx")
    from irdeploy.runtime.tensorrt import build

    old = _without(trt, AFTER_10_13)
    with pytest.raises(AttributeError):
        old.LayerType.ATTENTION_INPUT
    monkeypatch.setattr(build, "import_tensorrt", lambda flavour: old)
    path, _ = tiny_onnx("m3snet", static=(1, 32, 32))
    result = build.build_engine(path, tmp_path / "m.engine", precision="fp32")
    assert result.engine_path.is_file() and result.sidecar["network"]["attention"] == 0


def test_no_weakly_typed_api_in_our_code():
    used = _attributes()
    assert not set(REMOVED) & set(used)
    assert "precision" not in used  # ILayer.precision: per-layer precision is gone
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "BuilderFlag":
                assert node.attr == "TF32", f"{path.name}: BuilderFlag.{node.attr}"


def test_the_gpu_extra_allows_only_what_this_test_proves():
    """``tensorrt>=10.13``: the oldest bindings this module checks."""
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    gpu = re.search(r'^gpu = \[(.*)\]$', text, re.M).group(1)
    bound = re.search(r'"tensorrt>=([0-9.]+)', gpu).group(1)
    oldest = min(WHEELS, key=lambda v: tuple(map(int, v.split("."))))
    assert bound == oldest, f"the gpu extra allows tensorrt>={bound}; the API-surface test proves {oldest}"
