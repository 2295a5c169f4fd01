"""PSNR and SSIM as the restoration papers report them (numpy, torch-free).

Conventions, chosen to match the numbers in the seed papers' tables:

- Images are float HxWx3 RGB in [0, 1]; metrics are computed on the 8-bit scale (peak 255).
  :func:`quantize` rounds an output the way saving it as an 8-bit PNG would, which is what the
  papers' scripts measure (they write the restored images, then score the files).
- The Y channel is ITU-R BT.601 luma in studio range, ``Y = 16 + 65.481 R + 128.553 G +
  24.966 B`` (R, G, B in [0, 1], Y in [16, 235]): MATLAB's ``rgb2ycbcr``, which the deraining
  papers' evaluation scripts call, and BasicSR's ``test_y_channel``.
- SSIM is Wang et al. (2004): an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
  statistics over the window positions that fit inside the image ("valid"), no downsampling;
  on RGB it is the mean of the three per-channel values.
"""

from __future__ import annotations

import numpy as np

from irdeploy.core.images import psnr as _psnr, to_samples

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_K1, _K2, _PEAK = 0.01, 0.03, 255.0


def quantize(image: np.ndarray) -> np.ndarray:
    """The 256 levels of the 8-bit file ``restore`` would write (:func:`to_samples`), as floats."""
    return to_samples(image).astype(np.float64) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of an HxWx3 RGB image in [0, 1], as float64 in [16, 235]."""
    image = np.asarray(image, np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    return 16.0 + image @ _Y_WEIGHTS


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two RGB images in [0, 1] over all channels; ``inf`` when identical."""
    _check_pair(a, b)
    return _psnr(a, b, peak=1.0)


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on the BT.601 Y channel (8-bit scale, peak 255)."""
    _check_pair(a, b)
    return _psnr(rgb_to_y(a), rgb_to_y(b), peak=_PEAK)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of an HxW array with a symmetric 1-D window (rows, then columns)."""
    n = taps.size
    h, w = image.shape
    rows = sum(t * image[i:h - n + 1 + i] for i, t in enumerate(taps))
    return sum(t * rows[:, i:w - n + 1 + i] for i, t in enumerate(taps))


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    taps = _gaussian_window()
    if min(a.shape) < taps.size:
        raise ValueError(f"SSIM needs images of at least {taps.size}x{taps.size}, got {a.shape[1]}x{a.shape[0]}")
    c1, c2 = (_K1 * _PEAK) ** 2, (_K2 * _PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a * mu_a
    var_b = _filter_valid(b * b, taps) - mu_b * mu_b
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB images in [0, 1]: the mean of the per-channel SSIM on the 8-bit scale."""
    _check_pair(a, b)
    a, b = np.asarray(a, np.float64) * _PEAK, np.asarray(b, np.float64) * _PEAK
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM on the BT.601 Y channel (8-bit scale)."""
    _check_pair(a, b)
    return _ssim_plane(rgb_to_y(a), rgb_to_y(b))


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"images differ in shape: {np.shape(a)} vs {np.shape(b)}")


def all_metrics(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``psnr``, ``ssim``, ``psnr_y``, ``ssim_y`` of ``output`` against ``target``."""
    return {"psnr": psnr(output, target), "ssim": ssim(output, target),
            "psnr_y": psnr_y(output, target), "ssim_y": ssim_y(output, target)}


BORDER_BAND = 16  # pixels: the widest pad a network multiple of 16 adds, and the line it leaves


def border_band(output: np.ndarray, target: np.ndarray, band: int = BORDER_BAND) -> dict[str, float]:
    """The right/bottom border band's worst column and row against the interior (0-255 scale).

    Per column (row): the mean absolute error over the image's rows (columns). ``interior`` is
    the median of those over the columns and rows outside the last ``band``; ``worst_col`` /
    ``worst_row`` the largest in the band (the padded edge a network sees lies there), at
    ``worst_col_at`` / ``worst_row_at``; ``ratio`` the worse of the two over ``interior``. A line
    left by padding shows as a ratio far above what the image's own edges give.
    """
    _check_pair(output, target)
    err = np.abs(output.astype(np.float64) - target.astype(np.float64)).mean(axis=2) * _PEAK
    cols, rows = err.mean(axis=0), err.mean(axis=1)
    interior = float(np.median(np.concatenate([cols[:-band], rows[:-band]])))
    worst_col, worst_row = float(cols[-band:].max()), float(rows[-band:].max())
    return {"interior": interior, "worst_col": worst_col, "worst_row": worst_row,
            "worst_col_at": int(len(cols) - band + int(cols[-band:].argmax())),
            "worst_row_at": int(len(rows) - band + int(rows[-band:].argmax())),
            "ratio": max(worst_col, worst_row) / interior}
