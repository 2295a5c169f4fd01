"""Paired image folders: the ``input/`` + ``target/`` layout of the restoration benchmarks (torch-free).

GoPro and HIDE (deblurring) and Rain100L/H, Test100 and Test1200 (deraining), as the seed papers'
evaluation scripts read them, are a folder with ``input/`` (degraded) and ``target/`` (clean)
subfolders whose files pair by name. Training (:mod:`irdeploy.model.data`) and evaluation
(:mod:`irdeploy.runtime.evaluate`) both start here; it lives in the torch-free core beside the image IO rather than in
the model package because evaluating an ONNX model or engine must not import torch.

Every way a folder can fail to pair (missing subfolder, a file without a partner, partners of
different sizes, an unreadable header) raises one :class:`PairingError` naming the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .images import SUFFIXES
_SHOWN = 5


class PairingError(ValueError):
    """A paired folder whose files do not pair one-to-one at equal sizes."""


@dataclass(frozen=True)
class ImagePair:
    name: str
    input: Path
    target: Path
    height: int
    width: int


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairingError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES)
    if not files:
        raise PairingError(f"{folder}: no images ({', '.join(SUFFIXES)})")
    return files


def _by_stem(folder: Path) -> dict[str, Path]:
    files = list_images(folder)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise PairingError(f"{folder}: {stems[path.stem].name} and {path.name} share a name; pairing is ambiguous")
        stems[path.stem] = path
    return stems


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:  # a bomb's header is refused too
        raise PairingError(f"{path}: cannot read image ({exc})") from None


def _listing(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (f", ... (+{len(names) - _SHOWN})" if len(names) > _SHOWN else "")


def find_pairs(root: str | os.PathLike, limit: int | None = None) -> list[ImagePair]:
    """Pair ``root/input/X.*`` with ``root/target/X.*`` by file name (any image suffix each).

    Sizes are read from the file headers, so checking a large folder costs no decoding.
    ``limit`` keeps the first N pairs in name order (a quick look at a large test set).
    """
    root = Path(root)
    if not root.is_dir():
        raise PairingError(f"{root}: no such folder")
    missing = [sub for sub in ("input", "target") if not (root / sub).is_dir()]
    if missing:
        raise PairingError(f"{root}: no {' or '.join(m + '/' for m in missing)} subfolder; expected input/ (degraded) "
                           "and target/ (clean) with files of the same names (GoPro/HIDE/Rain100/Test100 layout)")
    inputs, targets = _by_stem(root / "input"), _by_stem(root / "target")
    only_in, only_tg = sorted(set(inputs) - set(targets)), sorted(set(targets) - set(inputs))
    if only_in or only_tg:
        parts = [f"{len(names)} file(s) in {sub}/ without a partner: {_listing([files[n].name for n in names])}"
                 for sub, names, files in (("input", only_in, inputs), ("target", only_tg, targets)) if names]
        raise PairingError(f"{root}: unpaired files: {'; '.join(parts)}")
    pairs, mismatched = [], []
    for stem in sorted(inputs)[:limit]:
        (hi, wi), (ht, wt) = _size(inputs[stem]), _size(targets[stem])
        if (hi, wi) != (ht, wt):
            mismatched.append(f"{stem} (input {wi}x{hi}, target {wt}x{ht})")
        pairs.append(ImagePair(stem, inputs[stem], targets[stem], ht, wt))
    if mismatched:
        raise PairingError(f"{root}: {len(mismatched)} pair(s) differ in size: {_listing(mismatched)}")
    return pairs
