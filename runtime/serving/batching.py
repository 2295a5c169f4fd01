"""Run requests of different image sizes through one backend: one backend batch per size.

A dynamic batcher (Triton's, or Ray Data's ``map_batches``) hands over requests that arrived
together, whatever their size; images of different sizes cannot share an NCHW tensor, and
padding them to a common size would change what a restoration network computes near the
borders. So requests are grouped by (H, W), each group runs as one batch (split at
``max_batch``), and every request gets its own rows back, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def size_groups(batches: Iterable[tuple[int, np.ndarray]]) -> list[list[int]]:
    """The indices of ``(index, batch)`` pairs grouped by the batches' shape after N, in first-seen order."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, batch in batches:
        by_size.setdefault(tuple(batch.shape[1:]), []).append(i)
    return list(by_size.values())


def infer_by_size(backend: Any, batches: Sequence[np.ndarray], max_batch: int | None = None) -> list[np.ndarray]:
    """``backend.infer`` over NCHW ``batches`` of any sizes; the outputs, one per batch, in order."""
    rows: list[list[np.ndarray]] = [[] for _ in batches]
    for indices in size_groups(enumerate(batches)):
        owners = [i for i in indices for _ in range(len(batches[i]))]  # request of every row
        stacked = np.concatenate([batches[i] for i in indices])
        step = max_batch or len(stacked)
        for start in range(0, len(stacked), step):
            out = backend.infer(stacked[start:start + step])
            for owner, row in zip(owners[start:start + step], out):
                rows[owner].append(row)
    return [np.stack(r) if r else np.empty((0, *batches[i].shape[1:]), np.float32) for i, r in enumerate(rows)]
