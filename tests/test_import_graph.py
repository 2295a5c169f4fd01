"""Dependencies point one way: runtime -> export -> model, all of them -> core.

Read from the source (every ``import``, lazy ones inside functions included), so a layer that
reaches up is caught even on a path no other test runs: core imports none of model/export/runtime
and never torch; model imports neither export nor runtime; export never imports runtime.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import irdeploy

ROOT = Path(irdeploy.__file__).parent
LAYERS = {"core": ROOT / "core", "model": ROOT / "model", "export": ROOT / "export", "runtime": ROOT / "runtime"}
FORBIDDEN = {
    "core": ("irdeploy.model", "irdeploy.export", "irdeploy.runtime", "torch"),
    "model": ("irdeploy.export", "irdeploy.runtime"),
    "export": ("irdeploy.runtime",),
}


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import in ``path`` (relative ones resolved)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _package_of(path: Path, layer: str) -> str:
    """The package a file's relative imports start from (its folder, as a dotted name)."""
    folder = path.parent.relative_to(LAYERS[layer])
    return ".".join(["irdeploy", layer, *folder.parts])


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    bad = []
    for path in sorted(LAYERS[layer].rglob("*.py")):
        for line, module in _imports(path, _package_of(path, layer)):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_resolving_relative_imports() -> None:
    """The checker itself: a relative import in a subpackage resolves to the right module."""
    path = LAYERS["runtime"] / "tensorrt" / "build.py"
    modules = {m for _, m in _imports(path, _package_of(path, "runtime"))}
    assert "irdeploy.runtime.tensorrt.errors" in modules and "irdeploy.export.tensorrt_check" in modules


def test_core_imports_without_torch() -> None:
    code = ("import importlib, pkgutil, sys, irdeploy.core as core\n"
            "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('irdeploy.core.' + m.name)\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('irdeploy.model', 'irdeploy.export', "
            "'irdeploy.runtime')))\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
