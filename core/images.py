"""Image files to and from the float32 NCHW batches every backend takes (torch-free).

Pixels are scaled to [0, 1] from the file's own bit depth (8 or 16 bit); writes are atomic
(temporary file renamed into place) so a failure never leaves a partial image behind.

Pillow decodes and encodes everything except 16-bit colour: it reads 48/64-bit PNG and TIFF
as 8-bit RGB (dropping the low byte) and cannot write them, so those go through OpenCV, after
Pillow has decoded the file once to check it is complete (OpenCV fills a truncated file with
grey instead of failing).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .fileio import atomic_write

SAMPLES = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
# What restore looks for in folders; any file Pillow opens can be named explicitly.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
NO_ALPHA_SUFFIXES = (".jpg", ".jpeg", ".bmp")  # Pillow reads 32-bit BMP back as RGB
_GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's RGB -> L


class ImageError(ValueError):
    """An image file that cannot be read or written."""


def sample_path(name: str = SAMPLES[0]) -> Path:
    """Path of a real photograph shipped with irdeploy (see ``samples/ATTRIBUTION.md``)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    return Path(str(resources.files("irdeploy.core") / "samples" / name))


@dataclass
class DecodedImage:
    """An image file's content as restore needs it: colour kept apart from alpha, and its depth."""

    pixels: np.ndarray  # float32 HxWxC in [0, 1]; C = 1 (grayscale) or 3 (RGB), as stored
    alpha: np.ndarray | None  # float32 HxW in [0, 1], or None
    bit_depth: int  # 8 or 16 bits per sample in the file


def load_image(path: str | os.PathLike) -> DecodedImage:
    """Decode ``path`` (PNG, JPEG, BMP, TIFF, ...; 8 or 16 bit; gray, RGB, palette, alpha).

    JPEG orientation tags are applied. Unreadable, truncated or unsupported files raise
    :class:`ImageError` naming the file.
    """
    try:
        with Image.open(path) as im:
            deep_colour = im.mode in ("RGB", "RGBA", "LA") and any(";16" in str(t.args) for t in im.tile)
            im.load()  # decodes everything: a truncated file fails here
            if deep_colour:
                return _load_deep_colour(path)
            im = ImageOps.exif_transpose(im)
            return _decode(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None


def _decode(im: Image.Image) -> DecodedImage:
    if im.mode in _GRAY16_MODES:
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        return DecodedImage(np.clip(gray, 0.0, 1.0)[..., None], None, 16)
    if im.mode == "F":
        raise ValueError("32-bit float images are not supported")
    has_alpha = im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (im.mode == "P" and "transparency" in im.info)
    gray = im.mode in ("1", "L", "LA", "La")
    target = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
    arr = np.asarray(im.convert(target), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    alpha = np.ascontiguousarray(arr[..., -1]) if has_alpha else None
    pixels = arr[..., :-1] if has_alpha else arr
    return DecodedImage(np.ascontiguousarray(pixels), alpha, 8)


def _load_deep_colour(path: str | os.PathLike) -> DecodedImage:
    """16-bit colour PNG/TIFF at full precision, through OpenCV (BGR(A) order)."""
    cv2 = _opencv()
    arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise OSError("OpenCV cannot decode its 16-bit colour data")
    arr = arr.astype(np.float32) / 65535.0
    if arr.ndim == 2:
        return DecodedImage(arr[..., None], None, 16)
    if arr.shape[-1] == 2:  # gray + alpha
        return DecodedImage(np.ascontiguousarray(arr[..., :1]), np.ascontiguousarray(arr[..., 1]), 16)
    alpha = np.ascontiguousarray(arr[..., 3]) if arr.shape[-1] == 4 else None
    return DecodedImage(np.ascontiguousarray(arr[..., 2::-1]), alpha, 16)


def _opencv():
    """OpenCV, with its libtiff/libpng warnings off (errors still surface as return values).

    The call moved between major versions: ``cv2.setLogLevel`` in 4.x (which the ``serve`` extra's
    numpy<2 pin selects), ``cv2.utils.logging.setLogLevel`` in 5.x."""
    import cv2

    logging = getattr(cv2.utils, "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    else:
        cv2.setLogLevel(2)  # 4.x: 2 = errors only
    return cv2


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC -> HxWx``channels`` (1 or 3): gray is repeated, RGB becomes BT.601 luma."""
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.ascontiguousarray(np.repeat(pixels[..., :1], 3, axis=-1))
    return np.ascontiguousarray((pixels[..., :3] @ _LUMA)[..., None])


def read_image(path: str | os.PathLike, channels: int = 3) -> np.ndarray:
    """Read an image as float32 HxWxC in [0, 1], converted to ``channels`` (1 or 3); alpha dropped."""
    return to_channels(load_image(path).pixels, channels)


def write_image(path: str | os.PathLike, image: np.ndarray, *, alpha: np.ndarray | None = None,
                bit_depth: int = 8) -> Path:
    """Write float HxWxC (or HxW) in [0, 1], with optional HxW ``alpha``, at 8 or 16 bits.

    The format follows the suffix (PNG when unknown); 16 bits need PNG or TIFF, alpha needs a
    format that stores it (not JPEG). Gray with alpha at 16 bits is written as RGBA (OpenCV has
    no two-channel PNG).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if bit_depth not in (8, 16):
        raise ImageError(f"{path}: bit depth {bit_depth}; 8 or 16 expected")
    if bit_depth == 16 and suffix not in SIXTEEN_BIT_SUFFIXES:
        raise ImageError(f"{path}: {suffix or 'this format'} cannot store 16 bits; use {', '.join(SIXTEEN_BIT_SUFFIXES)}")
    if alpha is not None and suffix in NO_ALPHA_SUFFIXES:
        raise ImageError(f"{path}: {suffix} keeps no alpha channel; use PNG or TIFF")
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if alpha is not None:
        arr = np.concatenate([arr, np.asarray(alpha, np.float32)[..., None]], axis=-1)
    try:
        data = _encode(to_samples(arr, bit_depth), suffix)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write image ({exc})") from None
    try:
        return atomic_write(path, data)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write image ({exc})") from None


def to_samples(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8 (or uint16 for ``bit_depth`` 16) samples, clipped and
    rounded half up: the one rule for every pixel irdeploy writes to a file, serves to a client or
    compares as 8-bit, so a served image equals the file ``restore`` would have written."""
    peak, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    return (np.clip(image, 0.0, 1.0) * peak + 0.5).astype(dtype)


def _encode(samples: np.ndarray, suffix: str) -> bytes:
    """HxWxC uint8/uint16 samples (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) -> file bytes."""
    if samples.dtype == np.uint16 and samples.shape[-1] > 1:
        cv2 = _opencv()
        if samples.shape[-1] == 2:
            samples = np.concatenate([np.repeat(samples[..., :1], 3, axis=-1), samples[..., 1:]], axis=-1)
        bgr = samples[..., [2, 1, 0, 3][: samples.shape[-1]]]
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(bgr))
        if not ok:
            raise ValueError(f"OpenCV cannot encode 16-bit {suffix}")
        return encoded.tobytes()
    buffer = io.BytesIO()
    image = Image.fromarray(samples[..., 0] if samples.shape[-1] == 1 else samples)
    fmt = Image.registered_extensions().get(suffix, "PNG")
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


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
