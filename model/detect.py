"""Which registered architecture, and which preset or constructor arguments, a state dict is.

Each :class:`~irdeploy.model.spec.ModelSpec` reads its own constructor arguments from tensor
shapes (``spec.detect``); a guess counts only if the network built from it on the meta device
(no memory, milliseconds) has exactly the state dict's keys and shapes. The preset is the one
whose network has those shapes too. A state dict no architecture reproduces gets one line
naming the closest architecture and what differs.

Shapes do not hold every constructor argument: RUN's window attention has no parameter that
depends on ``window_size`` or on its head count, and Restormer's deraining, deblurring and
defocus presets are one network. Detection says so instead of choosing silently: the arguments a
spec declares unread (``ModelSpec.unread``) are reported as *assumed*, with the value used, and
the other presets with the same shapes are named beside the one picked. (tests/test_detect.py
probes every architecture for arguments whose other values build the same shapes, so a spec
that forgets to declare one fails there.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .checkpoint import CheckpointError
from .spec import ModelSpec

_SHOWN = 3


class DetectionError(CheckpointError):
    """No registered architecture reproduces the state dict; the message names the closest."""


@dataclass(frozen=True)
class Assumed:
    """A constructor argument the weights do not determine, and the value detection used."""

    name: str
    value: Any
    entries: tuple[int, ...] = ()  # for a list: the positions the weights leave open (others are read)

    def __str__(self) -> str:
        text = f"{self.name}={_norm(self.value)}"
        if self.entries and len(self.entries) < len(self.value):
            text += f" ({'entry' if len(self.entries) == 1 else 'entries'} {', '.join(map(str, self.entries))})"
        return text


@dataclass(frozen=True)
class Detection:
    arch: str
    preset: str | None
    kwargs: dict[str, Any]  # constructor arguments that differ from the preset's (or the defaults)
    assumed: tuple[Assumed, ...] = ()  # arguments taken from the preset or defaults, not read
    same_shapes: tuple[str, ...] = ()  # other presets whose networks have exactly these shapes

    @property
    def name(self) -> str:
        """What to pass to ``create``: the preset, else the architecture."""
        return self.preset or self.arch

    def describe(self) -> str:
        what = f"preset {self.preset} ({self.arch})" if self.preset else f"architecture {self.arch}"
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        text = what + (f" with {args}" if args else "")
        if self.same_shapes:
            text += (f"; {', '.join(self.same_shapes)} {'has' if len(self.same_shapes) == 1 else 'have'} the same "
                     "shapes (pass --model to name another)")
        if self.assumed:
            text += (f"; assumed, not in the weights: {', '.join(map(str, self.assumed))} "
                     "(pass --arg KEY=VALUE if yours differ)")
        return text


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _built(spec: ModelSpec, kwargs: Mapping[str, Any]) -> dict[str, tuple[int, ...]] | None:
    with torch.device("meta"):
        try:
            return _shapes(spec.network(**kwargs).state_dict())
        except (TypeError, ValueError, RuntimeError):
            return None


def _differences(want: Mapping[str, tuple[int, ...]], have: Mapping[str, tuple[int, ...]]) -> tuple[int, str]:
    missing = [k for k in have if k not in want]
    unexpected = [k for k in want if k not in have]
    shapes = [f"{k} {list(want[k])} vs {list(have[k])}" for k in want if k in have and want[k] != have[k]]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if keys:
            more = f", ... (+{len(keys) - _SHOWN})" if len(keys) > _SHOWN else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOWN])}{more}")
    return len(missing) + len(unexpected) + len(shapes), "; ".join(parts)


def _pattern(key: str) -> str:
    return re.sub(r"\.\d+(?=\.)", ".#", key)


def _preset(spec: ModelSpec, kwargs: Mapping[str, Any], want: Mapping[str, tuple[int, ...]]) -> Detection:
    defaults = spec.defaults()
    settings = {**defaults, **kwargs}
    unread = spec.unread(settings) if spec.unread is not None else {}
    assumed = tuple(Assumed(name, settings[name], tuple(entries)) for name, entries in unread.items())
    fitting = [p for p in spec.presets if _built(spec, p.kwargs) == want]
    if fitting:
        base = {**defaults, **fitting[0].kwargs}
        return Detection(spec.name, fitting[0].name, {k: v for k, v in kwargs.items() if _norm(base.get(k)) != _norm(v)},
                         assumed, tuple(p.name for p in fitting[1:]))
    # create(arch) builds the preset of the same name where there is one (MHNet's "mhnet")
    same_name = next((p.kwargs for p in spec.presets if p.name == spec.name), {})
    base = {**defaults, **same_name}
    return Detection(spec.name, None, {k: v for k, v in kwargs.items() if _norm(base.get(k)) != _norm(v)}, assumed)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def detect(state: Mapping[str, torch.Tensor], candidates: list[ModelSpec] | None = None) -> Detection:
    """The architecture and preset (or kwargs) of ``state``; :class:`DetectionError` when none fits."""
    from .registry import specs

    want = _shapes(state)
    near: list[tuple[float, str, str]] = []
    for spec in candidates if candidates is not None else specs():
        kwargs = spec.detect(state) if spec.detect is not None else None
        have = _built(spec, kwargs) if kwargs is not None else None
        if have == want:
            return _preset(spec, kwargs, want)
        if have is not None:
            count, diff = _differences(want, have)
            near.append((count / max(len(want), 1), spec.name, f"its shape reading gives {kwargs}, which differs: {diff}"))
            continue
        tiny = _built(spec, spec.tiny) or {}
        overlap = {_pattern(k) for k in want} & {_pattern(k) for k in tiny}
        share = 1 - len(overlap) / max(len({_pattern(k) for k in want} | {_pattern(k) for k in tiny}), 1)
        near.append((share, spec.name, f"{len(overlap)} of its {len({_pattern(k) for k in tiny})} key patterns are present"))
    if not near:
        raise DetectionError("no architecture is registered")
    _, name, why = min(near)
    raise DetectionError(f"the weights ({len(want)} tensors) match no registered architecture; closest: {name} ({why})")
