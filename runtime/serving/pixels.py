"""8-bit pixels <-> float images in [0, 1], for clients that send plain images.

The rounding is the one :func:`irdeploy.export.images.write_image` uses, so a restored image
served as uint8 equals the file ``irdeploy`` would have written.
"""

from __future__ import annotations

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels scaled to [0, 1]; any other type taken as [0, 1] already."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
