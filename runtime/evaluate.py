"""Restoration quality over paired folders on any backend, and the task-level parity figure.

:func:`evaluate` runs a :class:`~irdeploy.core.backend.Backend` (torch, ONNX Runtime or
TensorRT, whichever ``infer`` it is) on every pair of a benchmark folder (``input/`` +
``target/``, see :mod:`irdeploy.core.pairs`) and scores the output as the papers do (see
:mod:`irdeploy.runtime.metrics`): PSNR and SSIM on RGB and on the Y channel, after rounding to 8
bits. The degraded inputs are scored too, so the table shows what the network gained.

With a ``reference`` backend (eager PyTorch) on the same data it also reports ΔPSNR, the mean
PSNR of the backend minus that of the reference: an FP16 engine that differs from eager by
45 dB on random tensors may still cost 0.00 dB or 0.05 dB on the task, and this is the number
that says which. The PSNR between the two outputs themselves is reported beside it.

Torch-free: an engine or ONNX model is evaluated on machines without PyTorch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.images import from_batch, read_image, to_batch
from irdeploy.core.pairs import ImagePair
from irdeploy.core.fileio import atomic_write, json_ready
from irdeploy.core.backend import Backend

from .metrics import all_metrics, psnr, quantize

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


@dataclass
class ImageScore:
    name: str
    width: int
    height: int
    seconds: float
    input: dict[str, float]
    output: dict[str, float]
    reference: dict[str, float] | None = None
    parity_psnr: float | None = None


@dataclass
class EvalResult:
    data: str
    backend: str
    reference: str | None
    quantized: bool
    images: list[ImageScore]

    def mean(self, which: str, metric: str) -> float:
        """Mean of ``metric`` over the images for ``which`` of input/output/reference."""
        return float(np.mean([getattr(s, which)[metric] for s in self.images]))

    @property
    def delta_psnr(self) -> float | None:
        """Mean PSNR of the backend minus that of the reference (dB; negative = the backend loses)."""
        return self.mean("output", "psnr") - self.mean("reference", "psnr") if self.reference else None

    @property
    def delta_psnr_y(self) -> float | None:
        return self.mean("output", "psnr_y") - self.mean("reference", "psnr_y") if self.reference else None

    @property
    def min_parity_psnr(self) -> float | None:
        """The worst image's PSNR between backend and reference outputs (before 8-bit rounding)."""
        return min(s.parity_psnr for s in self.images) if self.reference else None

    def rows(self) -> list[tuple[str, dict[str, float]]]:
        """(label, mean scores) for the degraded input, the backend and the reference; the labels
        are short (the table fits 80 columns) and :meth:`table` names the backends below it."""
        rows = [("input", {m: self.mean("input", m) for m in METRICS}),
                ("restored", {m: self.mean("output", m) for m in METRICS})]
        if self.reference:
            rows.append(("reference", {m: self.mean("reference", m) for m in METRICS}))
        return rows

    def table(self) -> Any:
        """A rich Table of the mean scores within 80 columns, the ΔPSNR row when there is a
        reference, and a caption naming what ran (every per-image score is in :meth:`to_dict`)."""
        from rich import box
        from rich.table import Table

        n = len(self.images)
        caption = f"restored = {self.backend}" + (f"; reference = {self.reference}" if self.reference else "")
        if not self.quantized:
            caption += "; outputs not rounded to 8 bits"
        table = Table(title=f"{self.data}: {n} image pair{'s' * (n != 1)}", caption=caption, box=box.SIMPLE_HEAD,
                      caption_justify="left")
        table.add_column("mean", no_wrap=True)
        for label in ("PSNR dB", "SSIM", "PSNR-Y dB", "SSIM-Y"):
            table.add_column(label, justify="right", no_wrap=True)
        for label, scores in self.rows():
            table.add_row(label, f"{scores['psnr']:.2f}", f"{scores['ssim']:.4f}", f"{scores['psnr_y']:.2f}", f"{scores['ssim_y']:.4f}")
        if self.reference:
            table.add_section()
            table.add_row("Δ restored - ref", f"{self.delta_psnr:+.3f}", "", f"{self.delta_psnr_y:+.3f}", "")
        return table

    def summary(self) -> str:
        seconds = sum(s.seconds for s in self.images)
        line = f"{len(self.images)} images in {seconds:.1f} s of inference ({len(self.images) / max(seconds, 1e-9):.2f} images/s)"
        if self.reference:
            line += (f"; ΔPSNR {self.backend} vs {self.reference}: {self.delta_psnr:+.3f} dB (Y {self.delta_psnr_y:+.3f} dB), "
                     f"outputs {self.min_parity_psnr:.1f} dB apart at worst")
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an infinite PSNR (identical images) is written as "inf" (:func:`json_ready`)."""
        means = {which: {m: self.mean(which, m) for m in METRICS} for which in ("input", "output")}
        if self.reference:
            means["reference"] = {m: self.mean("reference", m) for m in METRICS}
        return json_ready({
            "data": self.data, "backend": self.backend, "reference": self.reference, "quantized": self.quantized,
            "mean": means, "delta_psnr": self.delta_psnr, "delta_psnr_y": self.delta_psnr_y,
            "min_parity_psnr": self.min_parity_psnr, "images": [vars(s) for s in self.images],
        })

    def write_json(self, path: str | os.PathLike) -> Path:
        return atomic_write(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))


def _restore(backend: Backend, image: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = backend.infer(to_batch(image))
    return np.clip(from_batch(out)[0], 0.0, 1.0), time.perf_counter() - start


def evaluate(backend: Backend, pairs: Sequence[ImagePair], *, reference: Backend | None = None,
             quantized: bool = True, data: str = "", progress: bool = False) -> EvalResult:
    """Score ``backend`` (and ``reference``, if given) on every pair, one image at a time.

    Images go through ``backend.infer`` whole, at their own size, so the scores are those of the
    full-image inference the papers report; ``quantized`` rounds outputs to 8 bits first, as
    saving them would.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from irdeploy.core.progress import stderr_console

    if not pairs:
        raise ValueError("no image pairs to evaluate")
    scores = []
    columns = [TextColumn("[bold]eval[/bold] {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=stderr_console(), disable=not progress) as bar:
        task = bar.add_task("eval", total=len(pairs), name="")
        for pair in pairs:
            bar.update(task, name=pair.name)
            degraded, clean = read_image(pair.input), read_image(pair.target)
            if quantized:  # an image read from a 16-bit file is scored on the 8-bit scale too
                degraded, clean = quantize(degraded), quantize(clean)
            output, seconds = _restore(backend, degraded)
            score = ImageScore(pair.name, pair.width, pair.height, seconds, all_metrics(degraded, clean),
                               all_metrics(quantize(output) if quantized else output, clean))
            if reference is not None:
                expected, _ = _restore(reference, degraded)
                score.reference = all_metrics(quantize(expected) if quantized else expected, clean)
                score.parity_psnr = psnr(output, expected)
            scores.append(score)
            bar.advance(task)
    return EvalResult(data=data, backend=backend.name, reference=reference.name if reference else None,
                      quantized=quantized, images=scores)
