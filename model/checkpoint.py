"""Reading the checkpoints people already have, in the layouts they come in.

Accepted: the upstream training layout ``{'epoch', 'state_dict'}`` (with or without the
``module.`` prefix that ``nn.DataParallel`` adds), BasicSR/NAFNet's ``{'params'}`` and
``{'params_ema'}``, a bare state dict, and ``.safetensors``. Pickles are opened with
``weights_only=True``: a checkpoint is data, and a downloaded file must not run code.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from irdeploy.core.fileio import atomic_path, sha256_file

from .spec import record_of, update_record

if TYPE_CHECKING:
    from .detect import Detection

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5
AUTO = "auto"  # --model auto: detect the architecture from the checkpoint


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose weights do not fit the model."""


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an ONNX graph, not a checkpoint: pass it as --onnx, and give --checkpoint "
                              "the .pth or .safetensors weights it was exported from.")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then rejects
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the weights-only unpickler raises KeyError, IndexError, ... on arbitrary bytes
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_unpickling_reason(exc)})") from None


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Everything a checkpoint file holds (tensors, dicts, numbers), read as data: weights-only
    unpickling, so a file that would run code is refused. :class:`CheckpointError` if unreadable."""
    return _read(Path(path))


def _unpickling_reason(exc: BaseException) -> str:
    """What torch.load objected to, in a few words: the weights-only unpickler's own reason (an
    unsupported opcode or a global it refused to import) rather than its advice paragraph."""
    text = str(exc)
    if text.startswith("Weights only load failed"):
        lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        reasons = [line for line in lines if not line.startswith(("Please file an issue", "Check the documentation"))]
        reason = reasons[0] if reasons else ""
        return f"weights-only unpickling refused it: {reason[:160]}" if reason else "weights-only unpickling refused it"
    if isinstance(exc, (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError)):
        return _first_line(exc)
    return f"unpickling failed: {type(exc).__name__} {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint with wrapper keys and parallel prefixes removed.

    ``key`` picks a wrapper entry explicitly (e.g. ``"params"`` when a BasicSR file has both
    ``params`` and ``params_ema``); by default the EMA weights win, as BasicSR evaluates them.
    """
    path = Path(path)
    obj = _read(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{path}: no entry {key!r}; entries: {', '.join(map(str, obj))}")
        obj = obj[key]
    elif not _is_state_dict(obj):
        found = next((k for k in WRAPPER_KEYS if _is_state_dict(obj.get(k))), None)
        if found is None:
            raise CheckpointError(
                f"{path}: no state dict found (top-level entries: {', '.join(map(str, list(obj)[:8]))}; "
                f"looked for {', '.join(WRAPPER_KEYS)} or a bare state dict)"
            )
        obj = obj[found]
    if not _is_state_dict(obj):
        raise CheckpointError(f"{path}: entry does not hold tensors")
    return {_strip(k): v for k, v in obj.items()}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... (+{len(keys) - _SHOWN})" if len(keys) > _SHOWN else "")


def _likely_preset(state: Mapping[str, torch.Tensor]) -> str | None:
    """What the weights fit (a preset, or an architecture with arguments), if anything registered."""
    from .detect import DetectionError, detect

    try:
        found = detect(state)
    except DetectionError:
        return None
    return f"preset {found.preset!r}" if found.preset and not found.kwargs else found.describe()


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise one :class:`CheckpointError` describing every way ``state`` does not fit ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (checkpoint {list(state[k].shape)} vs model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    name = record_of(model).name
    preset = _likely_preset(state)
    if preset:
        cause = f"it matches {preset} (or pass --model auto)"
    elif shapes and not (missing or unexpected):
        cause = "likely a different width/feature size than the model was built with"
    elif len(missing) == len(expected):
        cause = "likely a checkpoint of another architecture"
    else:
        cause = "likely different block counts (depths) or another preset"
    raise CheckpointError(f"checkpoint {source} does not fit {name}: {'; '.join(parts)}; {cause}")


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, key: str | None = None) -> nn.Module:
    """Load ``path`` into ``model`` strictly and return ``model``.

    Any missing, unexpected or mis-shaped key raises a single :class:`CheckpointError` naming the
    first few of each and the likely cause, instead of loading half a network.
    """
    state = read_state_dict(path, key=key)
    check_fit(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, epoch: int = 0, parallel_prefix: bool = True) -> Path:
    """Write ``model`` in the upstream training layout so it loads wherever upstream's would.

    The file is written next to its destination and renamed into place, so an interrupted save
    never leaves a truncated checkpoint behind.
    """
    path = Path(path)
    prefix = "module." if parallel_prefix else ""
    state = {prefix + k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "state_dict": state}, tmp)
    return path


def detect_checkpoint(path: str | os.PathLike) -> Detection:
    """The architecture and preset (or constructor arguments) of a checkpoint file."""
    from .detect import detect

    return detect(read_state_dict(path))


def load_model(name: str | None, checkpoint: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """``create(name, **kwargs)``, then ``load_checkpoint`` when a checkpoint is given.

    ``name`` ``None`` or ``"auto"`` detects the architecture and preset from the checkpoint
    (:func:`detect_checkpoint`); ``kwargs`` then override what was detected. The checkpoint's
    sha256 goes into the model's record (:func:`irdeploy.model.spec.record_of`) so artifacts
    made from it (ONNX metadata, engine sidecars, caches) can name the exact weights.
    """
    from .registry import create

    if name in (None, AUTO):
        if checkpoint is None:
            raise CheckpointError("--model auto needs a --checkpoint to detect the architecture from")
        found = detect_checkpoint(checkpoint)
        name, kwargs = found.name, {**found.kwargs, **kwargs}
    model = create(name, **kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        update_record(model, checkpoint_sha256=sha256_file(checkpoint))
    return model.eval()
