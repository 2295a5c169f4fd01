"""The model contract: what irdeploy needs to know about an architecture, declared beside it.

Every architecture module ends with one ``SPEC = ModelSpec(...)``; adding the module's name to
:data:`irdeploy.model.registry.BUILTIN` is the one registration line (a test or a plugin calls
:func:`irdeploy.model.registry.register` with a spec instead). ``create``, ``load_checkpoint``,
the exporter, training, ``randomize_constants``, TLC, the fp16 audit and architecture detection
read the spec; nothing looks up attributes on modules or matches class names.

Registering an architecture, e.g. ``model/mynet.py``::

    class MyNet(nn.Module):                      # forward(x) -> image, or a list/tuple of images
        def __init__(self, img_channel: int = 3, width: int = 32, depth: int = 4): ...

    SPEC = ModelSpec(
        name="mynet",
        network=MyNet,
        presets=(Preset("mynet-32", "MyNet width 32, deraining", {"width": 32},
                        source="upstream options/test/Rain.yml"),),
        channels_arg="img_channel",              # constructor argument holding image channels
        pad_multiple=lambda model: model.pad_multiple,   # H, W multiple the network pads to
        pad_mode="constant",                     # how it pads: "constant" (zeros) or "reflect"
        tiny={"width": 8, "depth": 1},           # a seconds-fast configuration for the test suite
        fixtures=("mynet_tiny",),                # tests/fixtures/upstream/<name>.{pth,npz}, or
        # no_fixtures="why there is no upstream reference (e.g. no public code)",
        identity_convs=("ending",),              # convs writing the output residual (train --identity-init)
        constant_init=("beta", "gamma"),         # parameter names upstream initialises to constants
        attention=(MyAttention,),                # attention classes (fp16 audit's "attention" family)
        attention_cores=(MyAttention,),          # those whose ``core`` the exporter switches
        layernorms=(LayerNorm2d,),               # each exports as one LayerNormalization
        norms=(),                                # other normalisation classes (fp16 audit, randomized affines)
        # optional: biasfree_norms=(...) those of norms exporting as the bias-free LayerNorm chain
        detect=detect_mynet,                     # state dict -> constructor kwargs, or None
        # optional: image=lambda out: out[0]     (which output is the image; default: it, or its first)
        #           onnx23="why no opset-23 Attention form"; tlc=False (no global pools to convert);
        #           edge_loss_weight=0.05 (the published recipe); layouts=(...) (default: LAYOUTS);
        #           unread=... (settings -> the arguments no weight shape shows; see model/run.py)
    )

and ``"mynet"`` in ``BUILTIN``. The test suite then exports, builds, restores, benches, trains
and detects it (tests parametrize over :func:`~irdeploy.model.registry.specs`).

What ``create`` made a module from (spec, name, config, checkpoint, TLC) lives in one place, the
module's :class:`ModelRecord` (:func:`record_of`), set by ``create`` and updated by
``load_model`` and ``to_local``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from irdeploy.core.padding import PAD_MODES

# Checkpoint layouts load_checkpoint reads (see irdeploy.model.checkpoint): the upstream training
# file {'epoch', 'state_dict'}, BasicSR's {'params'} / {'params_ema'}, a bare state dict, each
# with or without DataParallel's "module." prefix.
LAYOUTS = ("state_dict", "params", "params_ema", "bare", "module.")

Detector = Callable[[Mapping[str, torch.Tensor]], "dict[str, Any] | None"]
# settings -> {argument: list entries left open, () for all of it}: what no tensor shape shows
Unread = Callable[[Mapping[str, Any]], "dict[str, tuple[int, ...]]"]


@dataclass(frozen=True)
class Preset:
    """A published (or, where none is public, irdeploy's own) configuration."""

    name: str
    description: str
    kwargs: Mapping[str, Any]
    source: str  # where the configuration comes from: upstream file, paper table, or "irdeploy"


def image_of(output: Any) -> torch.Tensor:
    """The default image selector: the output itself, or the first of a list/tuple."""
    return output[0] if isinstance(output, (list, tuple)) else output


@dataclass(frozen=True)
class ModelSpec:
    """One architecture's contract; see the module docstring for a worked declaration."""

    name: str
    network: Callable[..., nn.Module]
    presets: tuple[Preset, ...]
    channels_arg: str
    pad_multiple: Callable[[nn.Module], int]
    pad_mode: str
    tiny: Mapping[str, Any]
    fixtures: tuple[str, ...] = ()
    no_fixtures: str | None = None
    image: Callable[[Any], torch.Tensor] = image_of
    identity_convs: tuple[str, ...] = ()
    constant_init: tuple[str, ...] = ()
    attention: tuple[type[nn.Module], ...] = ()
    attention_cores: tuple[type[nn.Module], ...] = ()
    onnx23: str | None = None  # why the opset-23 Attention form is unavailable, or None
    layernorms: tuple[type[nn.Module], ...] = ()
    norms: tuple[type[nn.Module], ...] = ()  # other normalisations (not one LayerNormalization each)
    # those of ``norms`` that export as the bias-free chain irdeploy.export.graph.biasfree_norms counts
    biasfree_norms: tuple[type[nn.Module], ...] = ()
    layouts: tuple[str, ...] = LAYOUTS
    detect: Detector | None = None
    unread: Unread | None = None  # constructor arguments detection assumes (no shape shows them)
    edge_loss_weight: float = 0.0  # the published training recipe's edge-loss weight
    tlc: bool = True  # has global average pools for the test-time local converter

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"{self.name}: pad_mode {self.pad_mode!r} is not one of {', '.join(PAD_MODES)}")
        if bool(self.fixtures) == bool(self.no_fixtures):
            raise ValueError(f"{self.name}: give fidelity fixtures or the reason there are none (no_fixtures), not both")
        for p in self.presets:
            if not p.source:
                raise ValueError(f"{self.name}: preset {p.name!r} does not say where it comes from")

    def defaults(self) -> dict[str, Any]:
        """The network's constructor defaults (what a config leaves out)."""
        import inspect

        return {k: p.default for k, p in inspect.signature(self.network).parameters.items()
                if p.default is not inspect.Parameter.empty}


@dataclass(frozen=True)
class ModelRecord:
    """What a module was made from: the one home of name, config, checkpoint hash and TLC."""

    spec: ModelSpec
    name: str  # the preset or architecture name given to create()
    config: Mapping[str, Any]  # {"arch": ..., **constructor kwargs given}
    checkpoint_sha256: str | None = None
    tlc: Mapping[str, Any] | None = None

    @property
    def channels(self) -> int:
        return int(self.config.get(self.spec.channels_arg, self.spec.defaults().get(self.spec.channels_arg, 3)))


_ATTR = "_irdeploy_record"


def has_record(model: nn.Module) -> bool:
    return _ATTR in model.__dict__


def record_of(model: nn.Module) -> ModelRecord:
    """The record ``create`` attached; ``ValueError`` for a module irdeploy did not build."""
    record = model.__dict__.get(_ATTR)
    if record is None:
        raise ValueError(f"{type(model).__name__} was not built by irdeploy.model.create; register its ModelSpec "
                         "(irdeploy.model.registry.register) and build it with create()")
    return record


def spec_of(model: nn.Module) -> ModelSpec:
    return record_of(model).spec


def set_record(model: nn.Module, record: ModelRecord) -> nn.Module:
    model.__dict__[_ATTR] = record
    return model


def update_record(model: nn.Module, **changes: Any) -> nn.Module:
    """Replace fields of ``model``'s record (``checkpoint_sha256=...``, ``tlc=...``)."""
    return set_record(model, replace(record_of(model), **changes))


def pad_multiple(model: nn.Module) -> int:
    return int(spec_of(model).pad_multiple(model))


def count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    """``[n0, n1, ...]``: how many ``{prefix}{i}.{j}.`` blocks each index ``i`` holds.

    Detection reads depths this way (``encoders.0.0.``, ``encoders.0.1.``, ``encoders.1.0.``...).
    """
    counts: dict[int, set[int]] = {}
    for key in state:
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split(".")
        if len(parts) > 2 and parts[0].isdigit() and parts[1].isdigit():
            counts.setdefault(int(parts[0]), set()).add(int(parts[1]))
    return [len(counts.get(i, ())) for i in range(max(counts) + 1)] if counts else []


def count_indices(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many ``{prefix}{i}.`` entries there are (0 when none)."""
    seen = {key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)}
    return len({s for s in seen if s.isdigit()})
