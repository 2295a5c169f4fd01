"""YUV <-> RGB with the stream's own matrix and range, at any bit depth, any chroma subsampling.

Why not let FFmpeg's swscale do it: its RGB output ignores an unspecified or mis-tagged stream's
matrix in ways that differ between versions, it rounds to 8 bits before a model sees the pixels,
and going back it needs the same choices made again. Here one table decides, both ways, and the
model gets float32 at the source's full precision (10-bit stays 10-bit).

Conventions:
- Matrix: the stream's ``colorspace`` (BT.601 for 470BG/170M/240M/FCC, BT.709, BT.2020 NCL; the
  constant-luminance variant is treated as NCL). Unspecified: BT.709 from 720 lines up, else
  BT.601 (the rule players use).
- Range: limited ("tv": Y 16-235, C 16-240 scaled by 2^(depth-8)) unless the stream says full
  or the pixel format is a ``yuvj`` one.
- Chroma siting: centre. Down-sampling averages each 2x2 (or 2x1) block, up-sampling is the
  matching linear interpolation, so a round trip is close to the identity on smooth colour.
- Odd sizes: a subsampled plane has ``ceil(size / 2)`` samples, as FFmpeg allocates it; the RGB
  side is edge-padded to the even size before averaging and cropped after interpolation, so no
  pixel row or column is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# AVColorSpace values (libavutil/pixfmt.h) -> (Kr, Kb).
_BT601 = (0.299, 0.114)
_BT709 = (0.2126, 0.0722)
_BT2020 = (0.2627, 0.0593)
_MATRICES = {1: _BT709, 4: (0.30, 0.11), 5: _BT601, 6: _BT601, 7: (0.212, 0.087), 9: _BT2020, 10: _BT2020}
MATRIX_NAMES = {_BT601: "BT.601", _BT709: "BT.709", _BT2020: "BT.2020", (0.30, 0.11): "FCC", (0.212, 0.087): "SMPTE 240M"}
RANGE_FULL = 2  # AVCOL_RANGE_JPEG; 1 is AVCOL_RANGE_MPEG (limited), 0 unspecified

_YUV = re.compile(r"^yuv(j?)(420|422|444|440|411|410)p(?:(\d+)(le|be))?$")
_GRAY = re.compile(r"^gray(?:(\d+)(le|be))?$")
_GBR = re.compile(r"^gbrp(?:(\d+)(le|be))?$")
# (log2 horizontal, log2 vertical) chroma subsampling per FFmpeg's naming.
_SUBSAMPLING = {"420": (1, 1), "422": (1, 0), "444": (0, 0), "440": (0, 1), "411": (2, 0), "410": (2, 1)}


@dataclass(frozen=True)
class PlaneLayout:
    """How a planar pixel format stores a picture: which kind, depth, subsampling."""

    name: str
    kind: str  # "yuv", "gray" or "gbr" (planar RGB stored G, B, R)
    depth: int
    shift: tuple[int, int] = (0, 0)  # chroma log2 subsampling (x, y)
    full_range: bool = False  # yuvj formats: full range whatever the tag says
    big_endian: bool = False

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(">u2" if self.big_endian else "<u2") if self.depth > 8 else np.dtype(np.uint8)

    @property
    def peak(self) -> int:
        return (1 << self.depth) - 1


def layout(pix_fmt: str) -> PlaneLayout | None:
    """The planar layout of ``pix_fmt``, or None for formats converted through FFmpeg first."""
    if m := _YUV.match(pix_fmt):
        return PlaneLayout(pix_fmt, "yuv", int(m[3] or 8), _SUBSAMPLING[m[2]], bool(m[1]), m[4] == "be")
    if m := _GRAY.match(pix_fmt):
        return PlaneLayout(pix_fmt, "gray", int(m[1] or 8), big_endian=m[2] == "be")
    if m := _GBR.match(pix_fmt):
        return PlaneLayout(pix_fmt, "gbr", int(m[1] or 8), big_endian=m[2] == "be")
    return None


@dataclass(frozen=True)
class Colour:
    """The conversion a stream needs: its matrix coefficients and range."""

    kr: float
    kb: float
    full_range: bool

    @property
    def name(self) -> str:
        return f"{MATRIX_NAMES.get((self.kr, self.kb), f'Kr={self.kr}')} {'full' if self.full_range else 'limited'} range"


def resolve(colorspace: int, color_range: int, height: int, layout_: PlaneLayout | None = None) -> Colour:
    """The matrix and range to use for a stream's tags (see the module docstring for defaults)."""
    kr, kb = _MATRICES.get(int(colorspace or 0), _BT709 if height >= 720 else _BT601)
    full = int(color_range or 0) == RANGE_FULL or bool(layout_ and layout_.full_range)
    if layout_ is not None and layout_.kind == "gray" and not color_range:
        full = True  # untagged gray (a scan, a PNG) uses every code value
    return Colour(kr, kb, full)


def _levels(depth: int, full: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) in code values at ``depth`` bits."""
    if full:
        peak = float((1 << depth) - 1)
        return 0.0, peak, float(1 << (depth - 1)), peak
    unit = float(1 << (depth - 8))
    return 16.0 * unit, 219.0 * unit, 128.0 * unit, 224.0 * unit


def _upsample(plane: np.ndarray, shift: tuple[int, int], height: int, width: int) -> np.ndarray:
    """Centre-sited linear interpolation of a subsampled plane to ``height`` x ``width``."""
    for axis, s in ((0, shift[1]), (1, shift[0])):
        if s:
            plane = _interpolate(plane, axis, 1 << s)
    return plane[:height, :width]


def _interpolate(plane: np.ndarray, axis: int, factor: int) -> np.ndarray:
    n = plane.shape[axis]
    # Output sample i sits at (i + 0.5) / factor - 0.5 in input sample units.
    pos = (np.arange(n * factor, dtype=np.float32) + 0.5) / factor - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    frac = np.clip(pos - np.floor(pos), 0.0, 1.0).astype(np.float32)
    a, b = np.take(plane, lo, axis=axis), np.take(plane, hi, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    frac = frac.reshape(shape)
    return a + (b - a) * frac


def _downsample(plane: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """Block means over (2^sy, 2^sx) (edge-padded to whole blocks), then, along each halved
    axis, the inverse of what :func:`_upsample` followed by a block mean does to a chroma plane
    (the [1/8, 3/4, 1/8] blur), to second order: an identity model's round trip then keeps the
    chroma planes instead of softening them a little on every generation."""
    fy, fx = 1 << shift[1], 1 << shift[0]
    h, w = plane.shape
    ph, pw = -h % fy, -w % fx
    if ph or pw:
        plane = np.pad(plane, ((0, ph), (0, pw)), mode="edge")
    out = plane.reshape(plane.shape[0] // fy, fy, plane.shape[1] // fx, fx).mean(axis=(1, 3))
    for axis, factor in ((0, fy), (1, fx)):
        if factor == 2 and out.shape[axis] > 2:
            out = _unblur(out, axis)
    return out


def _unblur(plane: np.ndarray, axis: int) -> np.ndarray:
    """x + d + d', d = x - blur(x), d' = d - blur(d): the Neumann series of blur^-1 to 2nd order."""
    def blur(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, [(1, 1) if a == axis else (0, 0) for a in range(2)], mode="edge")
        lo = np.take(padded, range(0, x.shape[axis]), axis=axis)
        hi = np.take(padded, range(2, x.shape[axis] + 2), axis=axis)
        return 0.75 * x + 0.125 * (lo + hi)

    d = plane - blur(plane)
    return plane + d + (d - blur(d))


def planes_to_rgb(planes: list[np.ndarray], lay: PlaneLayout, colour: Colour) -> np.ndarray:
    """Integer planes (as stored) -> HxWx3 float32 RGB in [0, 1]."""
    y = planes[0].astype(np.float32)
    h, w = y.shape
    if lay.kind == "gray":
        off, scale, _, _ = _levels(lay.depth, colour.full_range)
        g = np.clip((y - off) / scale, 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=-1)
    if lay.kind == "gbr":
        g, b, r = (p.astype(np.float32) / lay.peak for p in planes[:3])
        return np.stack([r, g, b], axis=-1)
    yo, ys, co, cs = _levels(lay.depth, colour.full_range)
    yn = (y - yo) / ys
    cb = _upsample((planes[1].astype(np.float32) - co) / cs, lay.shift, h, w)
    cr = _upsample((planes[2].astype(np.float32) - co) / cs, lay.shift, h, w)
    kr, kb = colour.kr, colour.kb
    kg = 1.0 - kr - kb
    r = yn + 2.0 * (1.0 - kr) * cr
    b = yn + 2.0 * (1.0 - kb) * cb
    g = (yn - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0)


def rgb_to_planes(rgb: np.ndarray, lay: PlaneLayout, colour: Colour) -> list[np.ndarray]:
    """HxWx3 float RGB (clipped to [0, 1]) -> integer planes of ``lay``, rounded half up."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]

    def quantize(x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(x + 0.5), 0, lay.peak).astype(lay.dtype)

    if lay.kind == "gbr":
        return [quantize(c * lay.peak) for c in (g, b, r)]
    kr, kb = colour.kr, colour.kb
    yn = kr * r + (1.0 - kr - kb) * g + kb * b
    yo, ys, co, cs = _levels(lay.depth, colour.full_range)
    if lay.kind == "gray":
        return [quantize(yo + ys * yn)]
    cb = (b - yn) / (2.0 * (1.0 - kb))
    cr = (r - yn) / (2.0 * (1.0 - kr))
    return [quantize(yo + ys * yn), quantize(co + cs * _downsample(cb, lay.shift)),
            quantize(co + cs * _downsample(cr, lay.shift))]
