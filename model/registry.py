"""Model names and published presets: the single place that maps a name to a constructor.

``create("m3snet", width=16)`` builds an architecture with upstream keyword arguments;
``create("m3snet-32")`` builds a published configuration (keywords override its settings).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .m3snet import M3SNet
from .mhnet import MHNet
from .mprnet import MPRNet
from .run import RUN

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "m3snet": M3SNet,
    "mprnet": MPRNet,
    "mhnet": MHNet,
    "run": RUN,
}


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("m3snet-32", "m3snet", "M3SNet, width 32 (deraining / deblurring release)", {"width": 32}),
        Preset("m3snet-64", "m3snet", "M3SNet, width 64", {"width": 64}),
        Preset("mprnet-deblur", "mprnet", "MPRNet for deblurring (GoPro)",
               {"n_feat": 96, "scale_unetfeats": 48, "scale_orsnetfeats": 32}),
        Preset("mprnet-derain", "mprnet", "MPRNet for deraining (Rain13K)",
               {"n_feat": 40, "scale_unetfeats": 20, "scale_orsnetfeats": 16}),
        Preset("mprnet-denoise", "mprnet", "MPRNet for denoising (SIDD)",
               {"n_feat": 80, "scale_unetfeats": 48, "scale_orsnetfeats": 32}),
        Preset("mhnet", "mhnet", "MHNet, width 64, 8 blocks per stage-2 group",
               {"width": 64, "num_cab": 8, "bias": False}),
        # RUN's published configurations are not public: these two are irdeploy's (model/run.py).
        Preset("run-s", "run", "RUN, width 32 (irdeploy's small configuration; paper's unknown)", {"width": 32}),
        Preset("run-b", "run", "RUN, width 48, deeper (irdeploy's base configuration; paper's unknown)",
               {"width": 48, "enc_blk_nums": [2, 3, 4], "middle_blk_num": 6}),
    )
}


def final_image(output: Any) -> Any:
    """The restored image of a forward pass: MPRNet returns ``[stage3, stage2, stage1]``, the
    other networks one tensor."""
    return output[0] if isinstance(output, (list, tuple)) else output


def available() -> list[str]:
    """Names of the published presets, in a stable order."""
    return list(PRESETS)


def architectures() -> list[str]:
    return list(ARCHITECTURES)


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """Return ``(architecture, preset kwargs)`` for an architecture or preset name."""
    if name in PRESETS:
        preset = PRESETS[name]
        return preset.arch, dict(preset.kwargs)
    if name in ARCHITECTURES:
        return name, {}
    raise ValueError(
        f"unknown model {name!r}; presets: {', '.join(PRESETS)}; architectures: {', '.join(ARCHITECTURES)}"
    )


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by architecture or preset name; keyword arguments use upstream names."""
    arch, settings = resolve(name)
    cls = ARCHITECTURES[arch]
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    settings.update(kwargs)
    model = cls(**settings)
    model.irdeploy_name = name
    model.irdeploy_config = {"arch": arch, **settings}
    return model
