"""The README's first command: the whole product on real photographs, offline, on a CPU.

Photographs that ship with irdeploy are motion-blurred (a fixed 9-pixel horizontal blur), a
small M3SNet restores them, and every stage a user would run is run: the checkpoint is loaded
from the upstream training layout, exported to a checked ONNX graph (parity gate against eager),
benchmarked (eager PyTorch vs ONNX Runtime, interleaved), used by ``restore`` and scored by
``eval``-style metrics, with eager PyTorch as the task-level reference. Everything lands in one
report folder (``report.md``) with before/after/ground-truth strips and the latency chart.

Weights, in order of preference: ``checkpoint`` (a user's, with ``model_name``); a short
training run from scratch (``train_seconds``) with the recipe below; else the small checkpoint
that ships in ``irdeploy/model/weights`` (trained with the same recipe for longer; its JSON says
how). None of them is the paper's model: they learned one synthetic blur from three photographs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.images import SAMPLES, read_image, sample_path, to_samples, write_image
from irdeploy.core.fileio import atomic_write, json_ready
from irdeploy.core.progress import step

from .bench.stats import UNSTABLE_HINT

# The photographs the bundled checkpoint was trained on; the rest are held out.
TRAIN_PHOTOS = ("chelsea.png", "astronaut.png", "rocket.jpg")
BUNDLED = "quickstart-m3snet.json"
BENCH_SHAPE = (1, 3, 256, 256)


@dataclass
class QuickstartResult:
    out: Path
    model: str
    model_args: dict[str, Any]
    parameters: int
    weights: str  # where the weights came from, in words
    checkpoint: Path
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    images: list[dict[str, Any]] = field(default_factory=list)  # per photo: split, PSNR/SSIM
    parity_psnr: float = 0.0  # ONNX Runtime vs eager at export (worst case)
    delta_psnr: float = 0.0  # task level: ONNX Runtime minus eager, mean over the photos
    speedup: float | None = None  # eager median / ONNX Runtime median at BENCH_SHAPE
    speedup_interval: list[float] | None = None  # p10, p90 of the per-round eager/ORT ratios
    latency_ms: dict[str, float] = field(default_factory=dict)  # medians
    latency_p10_p90: dict[str, list[float]] = field(default_factory=dict)
    unstable: list[str] = field(default_factory=list)  # backends whose spread passed UNSTABLE_SPREAD
    threads: int | None = None  # intra-op threads of torch and ONNX Runtime alike
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else {n: str(p) for n, p in v.items()} if k == "files" else v)
                for k, v in vars(self).items()}


def bundled_recipe() -> dict[str, Any]:
    """The shipped quickstart checkpoint's description: model, arguments, recipe, scores."""
    return json.loads((resources.files("irdeploy.model") / "weights" / BUNDLED).read_text())


def _bundled_checkpoint(recipe: dict[str, Any]) -> Path:
    return Path(str(resources.files("irdeploy.model") / "weights" / recipe["checkpoint"]))


def _photos(out: Path) -> tuple[Path, Path]:
    """Copy the shipped photographs into ``photos/`` and blur them into ``data/{input,target}``."""
    from irdeploy.model.degrade import degrade_folder

    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for name in SAMPLES:
        shutil.copyfile(sample_path(name), photos / name)
    degrade_folder(photos, out / "data", kind="box", seed=0)
    return photos, out / "data"


def _train(out: Path, photos: Path, seconds: float, recipe: dict[str, Any], threads: int | None, progress: bool) -> Path:
    """Train the bundled recipe's model from scratch for ``seconds`` on crops of TRAIN_PHOTOS."""
    from irdeploy.model.degrade import degrade_folder
    from irdeploy.model.train import TrainConfig, train

    clean = out / "train" / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        shutil.copyfile(photos / name, clean / name)
    r = recipe["train"]
    degrade_folder(clean, out / "train" / "pairs", kind="box", seed=0, crops=r["crops"], size=r["crop_size"])
    config = TrainConfig(model=recipe["model"], model_args=recipe["args"], data=str(out / "train" / "pairs"),
                         out=str(out / "train" / "run"), iters=None, max_seconds=seconds, batch=r["batch"],
                         crop=r["crop"], lr=r["lr"], identity_init=True, threads=threads, progress=progress)
    return train(config).checkpoint


def _strip(blurred: np.ndarray, restored: np.ndarray, target: np.ndarray) -> np.ndarray:
    """blurred | restored | ground truth, side by side with 8-pixel white gaps, labelled."""
    from PIL import Image, ImageDraw

    h = blurred.shape[0]
    gap = np.ones((h, 8, 3), np.float32)
    strip = np.concatenate([blurred, gap, np.clip(restored, 0, 1), gap, target], axis=1)
    image = Image.fromarray(to_samples(strip))
    draw = ImageDraw.Draw(image)
    w = blurred.shape[1]
    for i, label in enumerate(("blurred", "restored", "ground truth")):
        x = i * (w + 8) + 6
        draw.rectangle((x - 3, 3, x + 6 * len(label) + 3, 17), fill=(0, 0, 0))
        draw.text((x, 5), label, fill=(255, 255, 255))
    return np.asarray(image, np.float32) / 255.0


def run(out_dir: str | Path, *, model_name: str | None = None, checkpoint: str | Path | None = None,
        model_args: dict[str, Any] | None = None, train_seconds: float = 0.0, threads: int | None = None,
        bench_iterations: int = 10, progress: bool = False) -> QuickstartResult:
    """Run every stage into ``out_dir`` and return what it measured (see the module docstring).

    Each stage (and the export, bench and parity steps inside it) is told to the
    :mod:`irdeploy.core.progress` reporter the caller installed; ``progress`` adds the restore,
    eval and training bars (a terminal's). ``threads`` defaults to every usable core.
    """
    import torch

    from irdeploy.export import to_onnx
    from irdeploy.core.pairs import find_pairs
    from irdeploy.model import load_model
    from irdeploy.model.stats import parameter_count
    from irdeploy.core.ort_backend import OnnxRuntimeBackend
    from irdeploy.export.torch_backend import TorchBackend

    from .bench import BenchConfig, bench_model
    from .bench.console import progress_bar as bench_progress
    from .evaluate import evaluate
    from .restore import restore

    if checkpoint is None and model_name is not None:
        raise ValueError("--model names the architecture of a --checkpoint; give both, or neither for the bundled model")
    # Every usable core, for torch and ONNX Runtime alike: a like-for-like comparison on the
    # machine as the user has it (the bench table and README say so); --threads sets another.
    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(key: str, message: str) -> Iterator[None]:
        """One quickstart stage: told to the progress reporter, and timed for the report."""
        start = time.perf_counter()
        with step(f"quickstart {len(seconds) + 1}: {message}"):
            yield
        seconds[key] = round(time.perf_counter() - start, 2)

    recipe = bundled_recipe()
    with stage("degrade", "blurring the shipped photographs (9-pixel box blur)"):
        photos, data = _photos(out)
    if checkpoint is not None:
        name, args, weights = model_name or "m3snet-32", dict(model_args or {}), "your checkpoint"
    elif train_seconds > 0:
        name, args = recipe["model"], recipe["args"]
        with stage("train", f"training {name} from scratch for {train_seconds:g} s"):
            checkpoint = _train(out, photos, train_seconds, recipe, threads, progress)
        weights = f"trained here from scratch for {train_seconds:g} s on crops of {', '.join(TRAIN_PHOTOS)}"
    else:
        name, args = recipe["model"], recipe["args"]
        checkpoint = _bundled_checkpoint(recipe)
        weights = f"bundled quickstart checkpoint ({recipe['summary']})"
    with stage("load", f"loading {name} from {Path(checkpoint).name} (upstream training layout)"):
        model = load_model(name, checkpoint, **args)

    onnx_path = out / f"{name}.onnx"
    with stage("export", f"exporting {name} to a checked ONNX graph (trace, fold, checks, parity)"):
        export = to_onnx(model, onnx_path, tensorrt=False)

    restored_dir = out / "restored"
    with stage("restore", "restoring the photographs with ONNX Runtime"):
        ort = OnnxRuntimeBackend(onnx_path, threads=threads)
        report = restore([data / "input"], restored_dir, ort, overwrite=True, progress=progress)
    if report.failed:
        raise ValueError(f"restore failed: {report.failed[0][0]}: {report.failed[0][1]}")

    with stage("eval", "scoring PSNR/SSIM against the ground truth, eager PyTorch as the reference"):
        pairs = find_pairs(data)
        scores = evaluate(ort, pairs, reference=TorchBackend(model), data="shipped photographs, 9-pixel blur")
        scores.write_json(out / "eval.json")
        (out / "strips").mkdir(exist_ok=True)
        images = []
        for pair, score in zip(pairs, scores.images):
            strip = _strip(read_image(pair.input), read_image(restored_dir / f"{pair.input.stem}.png"), read_image(pair.target))
            write_image(out / "strips" / f"{pair.name}.png", strip)
            images.append({"image": pair.name, "split": "training photo" if pair.name in {Path(p).stem for p in TRAIN_PHOTOS}
                           else "held out", "size": f"{pair.width}x{pair.height}",
                           "psnr_blurred": round(score.input["psnr"], 2), "psnr_restored": round(score.output["psnr"], 2),
                           "ssim_blurred": round(score.input["ssim"], 4), "ssim_restored": round(score.output["ssim"], 4)})

    with stage("bench", f"timing eager PyTorch against ONNX Runtime at {'x'.join(map(str, BENCH_SHAPE))}, "
                        "interleaved"), bench_progress() as on_progress:  # to the reporter, if any
        bench = bench_model(model, model_name=name, workdir=out / "bench" / "work", backends=("torch", "ort"),
                            shapes=[BENCH_SHAPE], threads=threads, config=BenchConfig(iterations=bench_iterations),
                            progress=on_progress)
        bench_files = bench.write(out / "bench", title=f"quickstart: {name}, eager vs ONNX Runtime")
    measured = {row.backend: row for row in bench.rows if row.stats is not None}
    medians = {name: row.stats.median for name, row in measured.items()}

    result = QuickstartResult(
        out=out, model=name, model_args=args, parameters=parameter_count(model),
        weights=weights, checkpoint=Path(checkpoint), seconds=seconds, images=images,
        parity_psnr=round(export.parity.worst_psnr, 1), delta_psnr=round(scores.delta_psnr, 4),
        speedup=round(medians["torch"] / medians["ort"], 2) if {"torch", "ort"} <= medians.keys() else None,
        latency_ms={k: round(v, 2) for k, v in medians.items()},
        latency_p10_p90={k: [round(r.stats.p10, 2), round(r.stats.p90, 2)] for k, r in measured.items()},
        speedup_interval=[round(v, 2) for v in measured["ort"].speedup_interval]
        if "ort" in measured and measured["ort"].speedup_interval else None,
        unstable=[k for k, r in measured.items() if r.stats.unstable], threads=threads,
        files={"onnx": onnx_path, "restored": restored_dir, "strips": out / "strips",
               "chart": next(p for p in bench_files if p.suffix == ".png"), "report": out / "report.md"},
    )
    atomic_write(out / "report.json", json.dumps(json_ready(result.to_dict()), indent=1, allow_nan=False))
    atomic_write(out / "report.md", to_markdown(result))
    return result


def _speed(result: QuickstartResult) -> str:
    """The headline speed-up with its interval: ``1.44x (p10-p90 1.38-1.52x)``."""
    if not result.speedup:
        return "n/a"
    if not result.speedup_interval:
        return f"{result.speedup:.2f}x"
    low, high = result.speedup_interval
    return f"{result.speedup:.2f}x (p10-p90 {low:.2f}-{high:.2f}x)"


def _latencies(result: QuickstartResult) -> str:
    def one(name: str, median: float) -> str:
        spread = result.latency_p10_p90.get(name)
        return f"{name} {median:.1f} ms" + (f" (p10-p90 {spread[0]:.1f}-{spread[1]:.1f})" if spread else "")

    return ", ".join(one(k, v) for k, v in result.latency_ms.items())


def to_markdown(result: QuickstartResult) -> str:
    lines = [
        f"# irdeploy quickstart: {result.model}", "",
        f"Weights: {result.weights}. {result.parameters / 1e6:.2f} M parameters. These weights learned one "
        "synthetic blur from a few photographs: they show the pipeline working, not the paper's model "
        "(see the README for the official checkpoints).", "",
        "| image | split | size | PSNR blurred | PSNR restored | SSIM blurred | SSIM restored |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [f"| [{i['image']}](strips/{i['image']}.png) | {i['split']} | {i['size']} | {i['psnr_blurred']:.2f} | "
              f"{i['psnr_restored']:.2f} | {i['ssim_blurred']:.4f} | {i['ssim_restored']:.4f} |" for i in result.images]
    lines += [
        "", f"ONNX export parity (ONNX Runtime vs eager, worst case): {result.parity_psnr:.1f} dB PSNR. "
        f"Task level (ONNX Runtime minus eager, mean PSNR over the photos): {result.delta_psnr:+.4f} dB.",
        "", f"Latency at {'x'.join(map(str, BENCH_SHAPE))}, {result.threads} threads (median of interleaved runs, "
        f"p10-p90 beside it): {_latencies(result)}; ONNX Runtime speed-up {_speed(result)}.",
    ]
    if result.unstable:
        lines += ["", f"**{', '.join(result.unstable)}: {UNSTABLE_HINT}.**"]
    lines += [
        "", f"![latency]({result.files['chart'].relative_to(result.out)})", "",
        "Stage times (s): " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items()), "",
    ]
    return "\n".join(lines)


def summary(result: QuickstartResult) -> str:
    """What the terminal shows: one line per stage outcome and where the report is."""
    rows = [f"{i['image']:<10} {i['split']:<15} blurred {i['psnr_blurred']:6.2f} dB -> restored {i['psnr_restored']:6.2f} dB"
            for i in result.images]
    warning = [f"warning     {', '.join(result.unstable)} {UNSTABLE_HINT}"] if result.unstable else []
    return "\n".join([
        f"model       {result.model} ({result.parameters / 1e6:.2f} M parameters); weights: {result.weights}",
        *rows,
        f"parity      ONNX Runtime vs eager: {result.parity_psnr:.1f} dB at export, {result.delta_psnr:+.4f} dB task-level PSNR",
        f"latency     {_latencies(result)} at {'x'.join(map(str, BENCH_SHAPE[2:]))}, {result.threads} threads",
        f"speed-up    ONNX Runtime {_speed(result)} eager",
        *warning,
        "note        trained on one synthetic blur: a demonstration of the pipeline, not the paper's model",
        f"report      {result.files['report']}",
    ])
