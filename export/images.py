"""Image files to and from the float32 NCHW batches every backend takes (torch-free).

Pixels are scaled to [0, 1] from the file's own bit depth (8 or 16 bit); writes are atomic
(temporary file renamed into place) so a failure never leaves a partial image behind.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SAMPLES = ("chelsea.png", "coffee.png")


class ImageError(ValueError):
    """An image file that cannot be read or written."""


def sample_path(name: str = SAMPLES[0]) -> Path:
    """Path of a real photograph shipped with irdeploy (see ``samples/ATTRIBUTION.md``)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    return Path(str(resources.files("irdeploy.export") / "samples" / name))


def read_image(path: str | os.PathLike, channels: int = 3) -> np.ndarray:
    """Read an image as float32 HxWxC in [0, 1], converted to ``channels`` (1 or 3)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = arr[..., None]
            else:
                arr = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] != channels:
        arr = np.repeat(arr[..., :1], channels, axis=-1) if channels == 3 else arr.mean(-1, keepdims=True)
    return np.ascontiguousarray(arr)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write float HxWxC (or HxW) in [0, 1] as an 8-bit image; the format follows the suffix."""
    path = Path(path)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    pixels = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        Image.fromarray(pixels).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write image ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def to_batch(*images: np.ndarray) -> np.ndarray:
    """Stack HxWxC images of one size into a contiguous float32 NCHW batch."""
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32)


def from_batch(batch: np.ndarray) -> list[np.ndarray]:
    """Split an NCHW batch back into HxWxC images."""
    return list(np.asarray(batch).transpose(0, 2, 3, 1))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical inputs."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
