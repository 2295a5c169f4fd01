"""The one table of architectures: each module's :class:`~irdeploy.model.spec.ModelSpec`, by name.

``create("m3snet", width=16)`` builds an architecture with upstream keyword arguments;
``create("m3snet-32")`` builds a published configuration (keywords override its settings).
Adding an architecture is its module (ending in ``SPEC = ModelSpec(...)``) and its name in
:data:`BUILTIN`; :func:`register` adds one at run time (a plugin, or a test's toy network).
Nothing else in the package lists architectures or presets.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from .arguments import build, check_arguments
from .spec import ModelRecord, ModelSpec, Preset, image_of, record_of, set_record

# Modules of irdeploy.model that declare a SPEC, in the order `irdeploy models` lists them.
BUILTIN = ("m3snet", "mprnet", "mhnet", "run", "nafnet", "restormer")

_SPECS: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class PresetEntry:
    """A preset with the architecture it belongs to (what ``irdeploy models`` prints)."""

    name: str
    arch: str
    description: str
    kwargs: dict[str, Any]
    source: str


def _table() -> dict[str, ModelSpec]:
    if not _SPECS:
        for module in BUILTIN:
            spec = importlib.import_module(f"{__package__}.{module}").SPEC
            _add(spec)
    return _SPECS


def _add(spec: ModelSpec) -> None:
    taken = set(_SPECS) | {p.name for s in _SPECS.values() for p in s.presets}
    clash = sorted(({spec.name} | {p.name for p in spec.presets}) & taken)
    if clash:
        raise ValueError(f"cannot register {spec.name!r}: name(s) {', '.join(clash)} already registered")
    _SPECS[spec.name] = spec


def register(spec: ModelSpec) -> ModelSpec:
    """Add an architecture at run time; returns ``spec``. Names must be new."""
    _table()
    _add(spec)
    return spec


def unregister(name: str) -> None:
    """Remove an architecture :func:`register` added (tests clean up their toy networks)."""
    if name in BUILTIN:
        raise ValueError(f"{name!r} is built in and cannot be unregistered")
    _table().pop(name)


def specs() -> list[ModelSpec]:
    """Every registered architecture's spec, built-ins first."""
    return list(_table().values())


def get_spec(arch: str) -> ModelSpec:
    table = _table()
    if arch not in table:
        raise ValueError(f"unknown architecture {arch!r}; registered: {', '.join(table)}")
    return table[arch]


def presets() -> dict[str, PresetEntry]:
    """Every preset by name, with its architecture."""
    return {p.name: PresetEntry(p.name, s.name, p.description, dict(p.kwargs), p.source)
            for s in _table().values() for p in s.presets}


def __getattr__(name: str) -> Any:
    # PRESETS stays a public name (irdeploy.model.PRESETS); it is read from the specs when asked for.
    if name == "PRESETS":
        return presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def final_image(output: Any, model: nn.Module | None = None) -> Any:
    """The restored image of a forward pass, as ``model``'s spec says (MPRNet returns
    ``[stage3, stage2, stage1]``); without a model, the output or its first element."""
    return record_of(model).spec.image(output) if model is not None else image_of(output)


def available() -> list[str]:
    """Names of the published presets, in a stable order."""
    return list(presets())


def architectures() -> list[str]:
    return list(_table())


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """Return ``(architecture, preset kwargs)`` for an architecture or preset name."""
    table, known = _table(), presets()
    if name in known:
        return known[name].arch, dict(known[name].kwargs)
    if name in table:
        return name, {}
    raise ValueError(f"unknown model {name!r}; presets: {', '.join(known)}; architectures: {', '.join(table)}")


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by architecture or preset name; keyword arguments use upstream names."""
    arch, settings = resolve(name)
    spec = get_spec(arch)
    accepted = [p for p in inspect.signature(spec.network).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    check_arguments(name, spec.network, kwargs)
    settings.update(kwargs)
    model = build(name, spec.network, settings, kwargs)
    return set_record(model, ModelRecord(spec, name, {"arch": arch, **settings}))


__all__ = ["BUILTIN", "ModelSpec", "Preset", "PresetEntry", "architectures", "available", "create", "final_image",
           "get_spec", "presets", "register", "resolve", "specs", "unregister"]
