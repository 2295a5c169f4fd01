"""The README's first command: build M3SNet, load a checkpoint, restore a real photograph.

No downloads and no GPU. Without ``--checkpoint`` the model's freshly initialised weights are
saved in the upstream training layout and loaded back through :func:`load_checkpoint`, so the
whole path a user's checkpoint takes is exercised; the output is then *not* a restoration
(untrained weights), and the summary says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irdeploy.export.images import from_batch, psnr, read_image, sample_path, to_batch, write_image


def motion_blur(image: np.ndarray, length: int = 9) -> np.ndarray:
    """Horizontal box blur of ``length`` pixels (edges replicated): a simple camera-shake model."""
    pad = length // 2
    padded = np.pad(image, ((0, 0), (pad, length - 1 - pad), (0, 0)), mode="edge")
    csum = np.cumsum(np.pad(padded, ((0, 0), (1, 0), (0, 0))), axis=1, dtype=np.float64)
    return ((csum[:, length:] - csum[:, :-length]) / length).astype(np.float32)


@dataclass
class QuickstartResult:
    model: str
    parameters: int
    checkpoint: Path
    checkpoint_trained: bool
    image: Path
    size: tuple[int, int]
    seconds: float
    psnr_degraded: float
    psnr_restored: float
    outputs: list[Path]


def run(out_dir: str | Path, model_name: str = "m3snet-32", checkpoint: str | Path | None = None,
        image: str | Path | None = None, threads: int | None = None) -> QuickstartResult:
    import torch

    from irdeploy.model import create, load_checkpoint, save_checkpoint

    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create(model_name).eval()
    trained = checkpoint is not None
    if checkpoint is None:
        checkpoint = save_checkpoint(model, out_dir / f"{model_name}-untrained.pth")
    load_checkpoint(model, checkpoint)

    image_path = Path(image) if image else sample_path()
    clean = read_image(image_path)
    degraded = motion_blur(clean)
    with torch.inference_mode():
        start = time.perf_counter()
        restored = model(torch.from_numpy(to_batch(degraded)))
        seconds = time.perf_counter() - start
    restored = np.clip(from_batch(restored.numpy())[0], 0.0, 1.0)

    outputs = [
        write_image(out_dir / f"{image_path.stem}_blurred.png", degraded),
        write_image(out_dir / f"{image_path.stem}_restored.png", restored),
    ]
    return QuickstartResult(
        model=model_name,
        parameters=sum(p.numel() for p in model.parameters()),
        checkpoint=Path(checkpoint),
        checkpoint_trained=trained,
        image=image_path,
        size=clean.shape[:2],
        seconds=seconds,
        psnr_degraded=psnr(degraded, clean),
        psnr_restored=psnr(restored, clean),
        outputs=outputs,
    )


def summary(result: QuickstartResult) -> str:
    h, w = result.size
    lines = [
        f"model       {result.model} ({result.parameters / 1e6:.2f} M parameters, PyTorch eager, CPU)",
        f"checkpoint  {result.checkpoint}"
        + ("" if result.checkpoint_trained else " (untrained weights, saved and reloaded in the upstream layout)"),
        f"image       {result.image.name} {w}x{h}, motion-blurred (9 px horizontal)",
        f"restored in {result.seconds:.2f} s; PSNR vs original: blurred {result.psnr_degraded:.2f} dB, "
        f"restored {result.psnr_restored:.2f} dB",
    ]
    if not result.checkpoint_trained:
        lines.append("note        untrained weights do not restore; pass --checkpoint with a trained M3SNet")
    lines += [f"wrote       {p}" for p in result.outputs]
    return "\n".join(lines)
