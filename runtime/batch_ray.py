"""Restore a large image set on a Ray cluster: a callable class for ``Dataset.map_batches``.

Ray Data runs one :class:`RestoreBatch` per actor, so each actor loads its ONNX graph or engine
once and keeps it (on its own GPU when the actors are started with ``num_gpus=1``)::

    import ray
    from irdeploy.runtime.batch_ray import RestoreBatch

    images = ray.data.read_images("/data/blurred/", include_paths=True)
    restored = images.map_batches(RestoreBatch, fn_constructor_kwargs={"artifact": "m3snet.fp16.engine"},
                                  batch_size=8, num_gpus=1, concurrency=4)
    restored.write_images("/data/restored/", column="restored")

Rows of one batch may differ in size (``read_images`` keeps each file's size): they are run
as one backend batch per size (:func:`~irdeploy.runtime.serving.batching.infer_by_size`), and
each row gets its own result. uint8 images come back as
uint8 and float images in [0, 1] as float32. Nothing here imports Ray: the class only has to
be picklable.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from irdeploy.core.images import from_batch, to_batch

from .serving.artifact import open_artifact_backend
from .serving.batching import infer_by_size
from .serving.pixels import to_float, to_uint8


class RestoreBatch:
    """``batch[column]`` (HxWxC images) -> ``batch[output_column]``, the other columns kept.

    ``artifact``: an ``.onnx`` graph (ONNX Runtime; ``device`` ``cpu`` or ``cuda[:N]``) or an
    engine (TensorRT). ``batch_size``: most images per backend call (an engine profile's max N
    by default).
    """

    def __init__(self, artifact: str | os.PathLike, *, column: str = "image", output_column: str = "restored",
                 device: str = "cpu", threads: int | None = None, batch_size: int | None = None) -> None:
        self.backend = open_artifact_backend(artifact, device=device, threads=threads)
        limit = self.backend.max_shape
        self.batch_size = batch_size or (limit[0] if limit else 8)
        self.column = column
        self.output_column = output_column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.column not in batch:
            raise ValueError(f"the batch has no column {self.column!r} (columns: {', '.join(batch)})")
        images = list(batch[self.column])
        for i, image in enumerate(images):
            if np.ndim(image) != 3:
                raise ValueError(f"row {i} of column {self.column!r} has shape {np.shape(image)}; expected HxWxC")
        outputs = infer_by_size(self.backend, [to_batch(to_float(image)) for image in images], self.batch_size)
        restored = [_like(from_batch(out)[0], image) for out, image in zip(outputs, images)]
        return {**batch, self.output_column: _column(restored)}


def _like(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The restored image in the source's type: uint8 rounded, otherwise float32."""
    if np.asarray(source).dtype == np.uint8:
        return to_uint8(image)
    return np.ascontiguousarray(image, dtype=np.float32)


def _column(images: list[Any]) -> np.ndarray:
    """One array if every image has one shape, else an object array (Ray's ragged column)."""
    if len({np.shape(i) for i in images}) == 1:
        return np.stack(images)
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return column
