"""Does the exported graph compute what the eager model computes? Measured, not assumed.

Polygraphy's :class:`~polygraphy.comparator.Comparator` runs two runners on the same inputs:
the eager PyTorch model in float32 (:class:`~irdeploy.export.torch_backend.TorchBackend`) and
the candidate, any :class:`~irdeploy.core.backend.Backend` (ONNX Runtime at export and in
``validate --onnx``, a TensorRT engine in ``validate --engine``), each through the one adapter
:class:`BackendRunner`. The backends pad and crop themselves (``Backend.infer``), the reference
to the candidate's multiple and mode, so both compute on the same pixels. ``SimpleCompareFunc``
checks the absolute tolerance; beside it we report max/mean absolute error and PSNR per input,
because a low-precision graph is judged by PSNR against a floor, not by its worst pixel.

Inputs are random batches and crops of real photographs, at sizes that include one that is not
a multiple of the padding multiple, so the padding path is always exercised.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.comparator import Comparator, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from irdeploy.core.backend import Backend
from irdeploy.core.fileio import json_ready
from irdeploy.core.images import SAMPLES, psnr, read_image, sample_path, to_samples
from irdeploy.core.ort_backend import OnnxRuntimeBackend, Provider, default_providers
from irdeploy.core.progress import step

from .torch_backend import TorchBackend


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one precision: worst absolute error and PSNR floor against eager fp32."""

    atol: float
    min_psnr: float


# fp32: ORT and eager differ by summation order only (measured 1e-6 to 7e-5 on random-weight
# zoo models; deep stacks with randomised temperatures amplify it).
# fp16/bf16: task-level floors (40 dB: differences invisible in an 8-bit image; bf16 keeps 8
# mantissa bits, so 30 dB). Measured on emulated storage rounding: tiny zoo models with
# random weights reach fp16 61.8-75.3 dB, bf16 42.5-56.1 dB, but the upstream fixture weights
# (temperatures and LayerNorm affines drawn wide) only fp16 42.5 dB, bf16 24.5 dB: how much a
# network amplifies rounding depends on its weights, so the floor can be set per export.
TOLERANCES = {
    "fp32": Tolerance(atol=1e-3, min_psnr=80.0),
    "fp16": Tolerance(atol=1e-1, min_psnr=40.0),
    "bf16": Tolerance(atol=5e-1, min_psnr=30.0),
    # int8 (Q/DQ on Conv/MatMul inputs, ONNX Runtime's int8 kernels): measured on the tiny zoo
    # models (random weights) 36-50 dB, full-size M3SNet-32 31.6, the trained quickstart M3SNet 41.1 dB: 30 dB;
    # the worst pixel is not bounded (one clipped activation moves a few pixels by 0.3-0.6).
    "int8": Tolerance(atol=1.0, min_psnr=30.0),
}


@dataclass(frozen=True)
class CaseResult:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    psnr: float
    pixels_changed: float  # share of 8-bit output pixels that differ after rounding
    passed: bool


@dataclass(frozen=True)
class ParityResult:
    precision: str
    tolerance: Tolerance
    cases: tuple[CaseResult, ...]
    polygraphy_passed: bool
    # what ran the candidate, as it reports itself (ONNX Runtime: the provider the session really uses)
    backend: str = ""

    @property
    def passed(self) -> bool:
        return self.polygraphy_passed and all(c.passed for c in self.cases)

    @property
    def worst_psnr(self) -> float:
        return min(c.psnr for c in self.cases)

    @property
    def max_abs(self) -> float:
        return max(c.max_abs for c in self.cases)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        changed = max(c.pixels_changed for c in self.cases)
        on = f", {self.backend}" if self.backend else ""
        return (f"parity {verdict} ({self.precision}, {len(self.cases)} inputs{on}): max abs {self.max_abs:.3g} "
                f"(<= {self.tolerance.atol:g}), worst PSNR {self.worst_psnr:.1f} dB (>= {self.tolerance.min_psnr:g}), "
                f"{changed:.2%} of 8-bit pixels differ")

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "backend": self.backend,
            "tolerance": asdict(self.tolerance),
            "cases": [json_ready(asdict(c)) for c in self.cases],
        }


class BackendRunner(BaseRunner):
    """Polygraphy's runner interface over an irdeploy :class:`~irdeploy.core.backend.Backend`.

    The one adapter between the two hierarchies: every comparison feeds Backend objects to the
    Comparator through it, so padding, cropping and provider choice are the backends' own. The
    caller owns the backend (opens it, closes it); activation here holds nothing.
    """

    def __init__(self, backend: Backend) -> None:
        super().__init__(name=backend.name)
        self.backend = backend

    def activate_impl(self) -> None:
        pass

    def deactivate_impl(self) -> None:
        pass

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata

        return TensorMetadata().add("input", np.float32, (None, self.backend.channels, None, None))

    def infer_impl(self, feed_dict):
        batch = feed_dict["input"]
        start = time.perf_counter()
        with step(f"parity: {self.name} on {'x'.join(map(str, batch.shape))}"):
            out = self.backend.infer(batch)
        self.inference_time = time.perf_counter() - start
        return OrderedDict(output=out)


def parity_sizes(multiple: int, batch: int | None = None, height: int | None = None,
                 width: int | None = None) -> list[tuple[int, int, int]]:
    """``(N, H, W)`` for a random batch and two photo crops; one size deliberately off ``multiple``.

    A static graph (``height``/``width`` given) is checked at its own size and just under it.
    Otherwise a dimension the graph fixes keeps its value in every size and the dynamic ones
    vary: a graph with a fixed batch (a foreign export with N=1) is never fed a batch of 2.
    """
    m = multiple
    if height is not None and width is not None:
        n = batch or 1
        off = (n, height - max(1, m // 2) if height > m else height, width)
        return [(n, height, width), off, (n, height, width)]
    sizes = [(2, 4 * m, 3 * m), (1, 4 * m + 3, 6 * m - 5), (1, 6 * m, 8 * m)]
    return [(n if batch is None else batch, h if height is None else height, w if width is None else width)
            for n, h, w in sizes]


def make_inputs(channels: int, sizes: Sequence[tuple[int, int, int]], seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Named float32 NCHW inputs: the first size random, the rest crops of the sample photographs.

    ``sizes`` are ``(batch, height, width)``; photographs are tiled if a crop is larger.
    """
    rng = np.random.default_rng(seed)
    inputs = []
    for i, (n, h, w) in enumerate(sizes):
        if i == 0:
            inputs.append((f"random {n}x{h}x{w}", rng.random((n, channels, h, w), dtype=np.float32)))
            continue
        sample = SAMPLES[(i - 1) % len(SAMPLES)]
        photo = read_image(sample_path(sample), channels=channels)
        reps = (-(-h // photo.shape[0]), -(-w // photo.shape[1]), 1)
        crop = np.tile(photo, reps)[:h, :w]
        batch = np.stack([np.roll(crop, k * 7, axis=1) for k in range(n)]).transpose(0, 3, 1, 2)
        inputs.append((f"{sample} {n}x{h}x{w}", np.ascontiguousarray(batch, dtype=np.float32)))
    return inputs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        yield


def check_parity(
    onnx_model: bytes | str,
    model,
    inputs: Sequence[tuple[str, np.ndarray]],
    *,
    precision: str,
    min_psnr: float | None = None,
    pad_multiple: int,
    pad_mode: str,
    providers: Sequence[Provider] | None = None,
) -> ParityResult:
    """The export's gate: the graph (a file or serialized bytes) in ONNX Runtime against the eager model.

    ``providers`` default to CUDA (where this build has it) then CPU, TensorRT's left out
    (:func:`~irdeploy.core.ort_backend.default_providers`); the result is labelled by the
    provider the session really got.
    """
    providers = list(providers or default_providers(tensorrt=False))
    with OnnxRuntimeBackend(onnx_model, providers=providers, pad_multiple=pad_multiple, pad_mode=pad_mode) as candidate:
        return compare(model, candidate, inputs, precision=precision, min_psnr=min_psnr)


def compare(
    model,
    candidate: Backend,
    inputs: Sequence[tuple[str, np.ndarray]],
    *,
    precision: str,
    min_psnr: float | None = None,
) -> ParityResult:
    """Run the eager float32 model and ``candidate`` on ``inputs`` and judge ``candidate``.

    The eager reference pads as ``candidate`` does (its artifact's recorded mode and multiple;
    the multiple must be one of the network's), so both compute on the same pixels.
    """
    tol = TOLERANCES[precision]
    if min_psnr is not None:
        tol = Tolerance(atol=tol.atol, min_psnr=min_psnr)
    with TorchBackend(model, pad_mode=candidate.pad_mode) as eager:
        if candidate.pad_multiple % eager.pad_multiple:
            raise ValueError(f"{candidate.name} pads to a multiple of {candidate.pad_multiple}, but this model "
                             f"needs a multiple of {eager.pad_multiple}: not the network it was made from")
        eager.pad_multiple = candidate.pad_multiple
        runners = [BackendRunner(eager), BackendRunner(candidate)]
        feeds = [OrderedDict(input=x) for _, x in inputs]
        with _quiet():
            results = Comparator.run(runners, data_loader=feeds)
            accuracy = Comparator.compare_accuracy(
                results, compare_func=SimpleCompareFunc(atol=tol.atol, rtol=0.0, check_error_stat="max")
            )
    cases = []
    reference, outputs = (results[runner.name] for runner in runners)
    for (name, x), ref, out in zip(inputs, reference, outputs):
        a, b = ref["output"], out["output"]
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        p = psnr(a, b)
        changed = float(np.mean(to_samples(a) != to_samples(b)))
        cases.append(CaseResult(name, tuple(x.shape), float(diff.max()), float(diff.mean()), p, changed,
                                bool(diff.max() <= tol.atol and p >= tol.min_psnr)))
    # labelled after the run: a backend's name can change while it runs (an engine's launch path)
    return ParityResult(precision, tol, tuple(cases), bool(accuracy), backend=candidate.name)


def graph_parity(graph, model, *, min_psnr: float | None = None) -> tuple[ParityResult, str]:
    """The export's parity gate re-run on a written graph: the figure ``validate --onnx`` prints.

    Same inputs as :func:`irdeploy.export.to_onnx` checked (:func:`parity_sizes` of the graph's
    own input shape and pad multiple), same padding (the recorded mode) and, for fp16/bf16, the
    same storage-rounding emulation (ONNX Runtime's CPU kernels skip most low-precision rounding,
    so running the graph as it is would report a higher PSNR than the rounding really costs).
    Returns the result and, in words, what was run.
    """
    from irdeploy.core.metadata import ExportMetadata
    from irdeploy.model.spec import pad_multiple

    meta = ExportMetadata.read(graph)
    precision = meta.precision if meta is not None else "fp32"
    multiple = meta.pad_multiple if meta is not None else pad_multiple(model)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.graph.input[0].type.tensor_type.shape.dim]
    batch, height, width = dims[0], dims[2], dims[3]
    under_test, how = graph.SerializeToString(), "the graph in ONNX Runtime, at the export's inputs"
    if precision in ("fp16", "bf16"):
        from .precision import emulate_low_precision

        under_test = emulate_low_precision(graph).SerializeToString()
        how = f"the graph's {precision} storage-rounding emulation in ONNX Runtime (CPU), as at export"
    channels = dims[1] or 3
    result = check_parity(under_test, model, make_inputs(channels, parity_sizes(multiple, batch, height, width)),
                          precision=precision, min_psnr=min_psnr, pad_multiple=multiple,
                          pad_mode=meta.pad_mode if meta is not None else "constant")
    return result, how
