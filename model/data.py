"""Training batches from paired folders: random crops with flips and transposes.

Folders pair through :func:`irdeploy.core.pairs.find_pairs` (``input/`` + ``target/``, same
names, equal sizes). Each sample is addressed by ``(pair index, seed)`` rather than drawn from a
global random state: :func:`step_keys` derives the keys of training step ``s`` from
``(seed, s)`` alone, so a resumed run sees exactly the batches an uninterrupted one would, and
DataLoader workers need no seeding of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from irdeploy.core.images import read_image
from irdeploy.core.pairs import ImagePair, find_pairs

Key = tuple[int, int]


class PairedCrops:
    """Map-style dataset of random ``crop`` x ``crop`` patches from image pairs.

    ``dataset[(index, seed)]`` returns ``(input, target)`` float32 CHW arrays in [0, 1], the
    same window of both images, then one of the eight flips/rotations of the square (the
    augmentation the seed papers train with). Decoded images are kept in memory up to
    ``cache_bytes`` so a small dataset is decoded once, a large one streams from disk.
    """

    def __init__(self, pairs: Sequence[ImagePair], crop: int, *, augment: bool = True,
                 cache_bytes: int = 2 << 30) -> None:
        if crop < 8:
            raise ValueError(f"crop size must be at least 8, got {crop}")
        small = [f"{p.name} ({p.width}x{p.height})" for p in pairs if min(p.height, p.width) < crop]
        if small:
            raise ValueError(f"{len(small)} pair(s) are smaller than the {crop}x{crop} crop: {', '.join(small[:5])}; "
                             "use a smaller --crop")
        if not pairs:
            raise ValueError("no image pairs to train on")
        self.pairs = list(pairs)
        self.crop = crop
        self.augment = augment
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    @classmethod
    def from_folder(cls, root: str | os.PathLike, crop: int, **kwargs) -> PairedCrops:
        return cls(find_pairs(root), crop, **kwargs)

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole ``(input, target)`` pair as HxWx3 float32."""
        if index in self._cache:
            return self._cache[index]
        pair = self.pairs[index]
        images = read_image(pair.input), read_image(pair.target)
        size = images[0].nbytes + images[1].nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = images
            self._cached_bytes += size
        return images

    def __getitem__(self, key: Key) -> tuple[np.ndarray, np.ndarray]:
        index, seed = key
        rng = np.random.default_rng(seed)
        degraded, clean = self.images(index)
        h, w = clean.shape[:2]
        y, x = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
        window = (slice(y, y + self.crop), slice(x, x + self.crop))
        a, b = degraded[window], clean[window]
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            a, b = np.rot90(a, k), np.rot90(b, k)
            if flip:
                a, b = a[:, ::-1], b[:, ::-1]
        return (np.ascontiguousarray(a.transpose(2, 0, 1)), np.ascontiguousarray(b.transpose(2, 0, 1)))


def step_keys(count: int, batch: int, seed: int, step: int) -> list[Key]:
    """The ``batch`` sample keys of training step ``step``: a function of its arguments only."""
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, count, batch)
    seeds = rng.integers(0, 2**62, batch)
    return [(int(i), int(s)) for i, s in zip(indices, seeds)]


class StepBatchSampler:
    """Batch sampler for ``torch.utils.data.DataLoader``: the keys of steps ``start``, ``start+1``, ...

    Endless by design; the training loop decides when to stop (iterations or time).
    """

    def __init__(self, count: int, batch: int, seed: int, start: int = 0) -> None:
        self.count, self.batch, self.seed, self.start = count, batch, seed, start

    def __iter__(self) -> Iterator[list[Key]]:
        step = self.start
        while True:
            yield step_keys(self.count, self.batch, self.seed, step)
            step += 1
