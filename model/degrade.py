"""Synthetic degradations that turn clean photographs into paired training data (numpy only).

The seed papers train on GoPro/HIDE (motion blur) and Rain100/Rain13K (rain streaks). Those sets
are large downloads; these functions make the same *kinds* of pairs from any clean image so that
training, evaluation and the quickstart can run on the photographs that ship with irdeploy. They
are models of the degradations, not reproductions of the datasets: a network trained on them
learns the task, not the benchmark's camera.

Every random choice is drawn from a ``numpy.random.Generator`` passed in by the caller, and
:func:`degrade_folder` derives one generator per output from ``(seed, image index, crop index)``,
so a folder is reproducible file by file whatever order or subset is processed.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEGRADATIONS = ("blur", "box", "rain")
SUBFOLDERS = ("input", "target")


def motion_blur(image: np.ndarray, length: int = 9) -> np.ndarray:
    """Horizontal box blur of ``length`` pixels (edges replicated): the simplest camera shake.

    Kept beside the random kernels because the quickstart wants one fixed, easily described blur.
    """
    pad = length // 2
    padded = np.pad(image, ((0, 0), (pad, length - 1 - pad), (0, 0)), mode="edge")
    csum = np.cumsum(np.pad(padded, ((0, 0), (1, 0), (0, 0))), axis=1, dtype=np.float64)
    return ((csum[:, length:] - csum[:, :-length]) / length).astype(np.float32)


def splat_kernel(points: np.ndarray, size: int) -> np.ndarray:
    """Rasterise sub-pixel ``(x, y)`` points (centred on 0) into a ``size`` x ``size`` kernel.

    Each point spreads over its four neighbouring pixels with bilinear weights, so a trajectory
    shorter than a pixel still gives a smooth, energy-preserving kernel. The result sums to 1.
    """
    c = (size - 1) / 2.0
    xy = np.clip(points + c, 0.0, size - 1.000001)
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    kernel = np.zeros((size, size), np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (np.minimum(y0 + dy, size - 1), np.minimum(x0 + dx, size - 1)), w)
    return (kernel / kernel.sum()).astype(np.float32)


def random_motion_kernel(rng: np.random.Generator, size: int = 31,
                         length: tuple[float, float] = (5.0, 21.0)) -> np.ndarray:
    """A camera-shake kernel: a random, gently curved path of random length and direction.

    The path is a straight sweep (the dominant motion during the exposure) plus a low-frequency
    sideways wobble (hand tremor), sampled densely and rasterised with :func:`splat_kernel`.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    extent = min(rng.uniform(*length), size - 3.0)
    angle = rng.uniform(0.0, math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    t = np.linspace(-0.5, 0.5, 8 * int(math.ceil(extent)) + 8)
    wobble = rng.uniform(0.0, 0.15) * extent * np.sin(2 * math.pi * rng.uniform(0.3, 1.2) * t + rng.uniform(0, 2 * math.pi))
    points = extent * t[:, None] * direction + wobble[:, None] * normal
    return splat_kernel(points - points.mean(0), size)


def apply_kernel(image: np.ndarray, kernel: np.ndarray, mode: str = "edge") -> np.ndarray:
    """Filter an HxWxC (or HxW) image with a small kernel, same size out; ``mode`` pads the
    edges as ``numpy.pad`` does (replicated for photographs, zeros for a rain-drop layer).

    Motion kernels are sparse (a path through a mostly empty square), so summing one shifted
    copy of the image per non-zero tap is both exact and faster than a dense or FFT convolution.
    """
    r = kernel.shape[0] // 2
    pad = ((r, r), (r, r)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(np.asarray(image, np.float32), pad, mode=mode)
    h, w = image.shape[:2]
    out = np.zeros(image.shape, np.float32)
    for i, j in zip(*np.nonzero(kernel)):
        out += kernel[i, j] * padded[i:i + h, j:j + w]
    return out


def blur(image: np.ndarray, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Motion-blur ``image`` with a fresh random kernel, plus optional Gaussian noise (sigma)."""
    out = apply_kernel(image, random_motion_kernel(rng))
    if noise:
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def rain(image: np.ndarray, rng: np.random.Generator, density: tuple[float, float] = (0.002, 0.01),
         length: tuple[float, float] = (8.0, 30.0), tilt: float = 25.0,
         strength: tuple[float, float] = (0.4, 0.9)) -> np.ndarray:
    """Add synthetic rain streaks: sparse random drops smeared along one slanted direction.

    Drops (a ``density`` fraction of pixels, random brightness) are stretched by a line kernel of
    random ``length`` tilted up to ``tilt`` degrees from vertical, softened by a 3x3 blur, and
    screen-blended over the image (``1 - (1-img)(1-streaks)``) so streaks brighten the scene the
    way the Rain100L/H composites do without ever leaving [0, 1].
    """
    h, w = image.shape[:2]
    drops = (rng.random((h, w)) < rng.uniform(*density)) * rng.uniform(0.5, 1.0, (h, w))
    extent = rng.uniform(*length)
    angle = math.radians(90.0 + rng.uniform(-tilt, tilt))
    t = np.linspace(-0.5, 0.5, 4 * int(math.ceil(extent)) + 4)[:, None]
    size = 2 * int(math.ceil(extent / 2)) + 3
    line = splat_kernel(extent * t * np.array([math.cos(angle), math.sin(angle)]), size)
    soft = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32) / 16.0
    # A drop spreads over ``extent`` pixels; scale back so a streak is as bright as its drop.
    streaks = apply_kernel(apply_kernel(drops.astype(np.float32), line * extent, "constant"), soft, "constant")
    streaks = np.clip(streaks * rng.uniform(*strength), 0.0, 1.0)[..., None]
    return (1.0 - (1.0 - image) * (1.0 - streaks)).astype(np.float32)


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Apply the degradation ``kind`` to an HxWx3 image in [0, 1]: ``blur`` (a random
    camera-shake kernel), ``box`` (:func:`motion_blur`'s fixed 9-pixel horizontal blur: one
    known blur that a small network learns to invert in minutes) or ``rain``."""
    if kind == "blur":
        return blur(image, rng)
    if kind == "box":
        return motion_blur(image)
    if kind == "rain":
        return rain(image, rng)
    raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}")


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop size {size} is larger than the image ({w}x{h})")
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return image[y:y + size, x:x + size]


@dataclass
class DegradeResult:
    out_dir: Path
    kind: str
    seed: int
    sources: list[Path]
    pairs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"wrote {len(self.pairs)} {self.kind} pairs from {len(self.sources)} clean image(s) "
                f"to {self.out_dir}/input and {self.out_dir}/target (seed {self.seed})")


def degrade_folder(clean_dir: str | os.PathLike, out_dir: str | os.PathLike, kind: str = "blur", *,
                   seed: int = 0, crops: int | None = None, size: int | None = None) -> DegradeResult:
    """Write ``out_dir/input`` (degraded) and ``out_dir/target`` (clean) PNG pairs of one name.

    Every image directly inside ``clean_dir`` is used whole, or, with ``crops`` and ``size``,
    as ``crops`` random ``size`` x ``size`` crops named ``<stem>_<k>.png``. Output ``j`` of image
    ``i`` draws from ``default_rng([seed, i, j])``: the same seed gives the same files.
    """
    from irdeploy.core.images import read_image, write_image
    from irdeploy.core.pairs import list_images

    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}")
    if (crops is None) != (size is None):
        raise ValueError("crops and size go together: --crops N --size S")
    if crops is not None and (crops < 1 or size < 16):
        raise ValueError(f"need crops >= 1 and size >= 16, got crops={crops} size={size}")
    sources = list_images(clean_dir)
    stems = [p.stem for p in sources]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise ValueError(f"{clean_dir}: several files share the name(s) {', '.join(clash)}; outputs would collide")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; -o is the folder that gets input/ and target/")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise ValueError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    result = DegradeResult(out_dir, kind, seed, sources)
    try:  # every pair is written to a staging folder first: a failure part-way leaves nothing behind
        for sub in SUBFOLDERS:
            (staging / sub).mkdir()
        for i, src in enumerate(sources):
            clean = read_image(src)
            if crops is not None and size > min(clean.shape[:2]):
                raise ValueError(f"{src}: {clean.shape[1]}x{clean.shape[0]} is smaller than the crop size {size}")
            for j in range(crops or 1):
                rng = np.random.default_rng([seed, i, j])
                target = clean if crops is None else random_crop(clean, size, rng)
                name = f"{src.stem}.png" if crops is None else f"{src.stem}_{j:03d}.png"
                write_image(staging / "target" / name, target)
                write_image(staging / "input" / name, degrade(target, kind, rng))
                result.pairs.append(name)
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished pairs into ``out_dir`` (one rename when it does not exist yet)."""
    if not out_dir.exists():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700, made what mkdir would have made
        os.replace(staging, out_dir)
        return
    for sub in SUBFOLDERS:
        (out_dir / sub).mkdir(exist_ok=True)
        for path in (staging / sub).iterdir():
            os.replace(path, out_dir / sub / path.name)
