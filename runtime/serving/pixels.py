"""8-bit pixels <-> float images in [0, 1], for clients that send plain images.

The rounding is :func:`irdeploy.core.images.to_samples`, the one ``write_image`` uses, so a
restored image served as uint8 equals the file ``irdeploy`` would have written.
"""

from __future__ import annotations

import numpy as np

from irdeploy.core.images import to_samples


def to_uint8(images: np.ndarray) -> np.ndarray:
    return to_samples(images, 8)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels scaled to [0, 1]; any other type taken as [0, 1] already."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
