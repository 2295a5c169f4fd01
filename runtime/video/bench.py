"""``irdeploy bench --video CLIP``: end-to-end frames per second of the whole restore pipeline.

The model benchmark (:mod:`irdeploy.runtime.bench`) times inference alone; a video user pays
for decoding, colour conversion and encoding too, overlapped or not. Each candidate (backend x
precision x batch) restores the clip into a scratch file exactly as ``irdeploy restore`` would
(same defaults, same encoder), after one warm-up inference at its batch size, and reports the wall-clock fps and
each stage's busy time per frame, so the slowest stage is named. ``rounds`` > 1 interleaves the
candidates round by round and reports medians, so a load change on the machine hits all alike.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .pipeline import STAGES, VideoOptions, restore_video
from .probe import probe


@dataclass
class VideoBenchRow:
    backend: str
    precision: str
    batch: int
    frames: int = 0
    fps: list[float] = field(default_factory=list)  # one per round
    ms_per_frame: dict[str, list[float]] = field(default_factory=dict)  # busy time per stage, per round
    skipped: str = ""  # why it could not run (no GPU, no TensorRT)

    @property
    def median_fps(self) -> float:
        return statistics.median(self.fps) if self.fps else 0.0

    def median_ms(self, stage: str) -> float:
        values = self.ms_per_frame.get(stage, [])
        return statistics.median(values) if values else 0.0

    @property
    def bound(self) -> str:
        return max(STAGES, key=self.median_ms)

    @property
    def spread(self) -> float:
        """(max - min) / median of the rounds' fps: how much to trust the median."""
        return (max(self.fps) - min(self.fps)) / self.median_fps if len(self.fps) > 1 and self.median_fps else 0.0


def bench_video(clip: str | Path, *, model: str | None, checkpoint: str | None = None, model_args: dict | None = None,
                backends: list[str] = ("torch", "ort"), precisions: list[str] = ("fp32",), batches: list[int] = (1,),
                threads: int | None = None, device: str = "cpu", cache_dir: str | None = None, rounds: int = 1,
                onnx: str | None = None) -> list[VideoBenchRow]:
    """Restore ``clip`` once per candidate and round; see the module docstring."""
    from irdeploy.core.progress import step
    from irdeploy.runtime.artifacts import open_backend

    info = probe(clip)  # a clip that cannot be read fails before any export
    rows = {(b, p, n): VideoBenchRow(b, p, n) for b in backends for p in precisions for n in batches
            if not (b == "torch" and p != "fp32")}  # eager torch runs its float32 model only
    opened: dict = {}
    failed: dict = {}  # (kind, precision) -> why it cannot open (asked once, not per batch)
    warmed: set = set()  # (kind, precision, batch) run once untimed
    try:
        with tempfile.TemporaryDirectory(prefix="irdeploy-video-bench-") as scratch:
            for _ in range(rounds):
                for (kind, precision, batch), row in rows.items():
                    if (kind, precision) in failed:
                        row.skipped = failed[(kind, precision)]
                        continue
                    if (kind, precision) not in opened:
                        try:
                            backend = open_backend(kind, model=model if not onnx else None, checkpoint=checkpoint,
                                                   model_args=model_args, onnx=onnx if kind != "torch" else None,
                                                   precision=precision, cache_dir=cache_dir, threads=threads,
                                                   device="cuda" if kind == "trt" else device)
                        except Exception as exc:  # noqa: BLE001 - no GPU, no TensorRT: a skipped row, not a failed bench
                            failed[(kind, precision)] = row.skipped = \
                                (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
                            continue
                        opened[(kind, precision)] = backend
                    if (kind, precision, batch) not in warmed:  # each batch shape: its first run allocates, plans, captures
                        backend = opened[(kind, precision)]
                        with step(f"warming up {kind} {precision} ({info.width}x{info.height}, batch {batch})"):
                            backend.infer(np.zeros((batch, backend.channels, info.height, info.width), np.float32))
                        warmed.add((kind, precision, batch))
                    out = Path(scratch) / f"bench{Path(clip).suffix}"
                    report = restore_video(clip, out, opened[(kind, precision)], VideoOptions(batch=batch, overwrite=True))
                    row.frames = report.frames
                    row.fps.append(report.fps)
                    for stage, seconds in report.busy.items():
                        row.ms_per_frame.setdefault(stage, []).append(1000 * seconds / max(report.frames, 1))
    finally:
        for backend in opened.values():
            backend.close()
    return list(rows.values())


def format_table(rows: list[VideoBenchRow], title: str) -> str:
    """An 80-column text table: fps end to end, then each stage's busy ms per frame."""
    lines = [title, "busy milliseconds per frame in each stage; the largest bounds the fps",
             f"{'backend':<8}{'prec':<6}{'batch':>5}{'frames':>7}{'fps':>8}{'spread':>7}"
             f"{'decode':>8}{'infer':>8}{'encode':>8}  {'bound':<6}"]
    for r in rows:
        head = f"{r.backend:<8}{r.precision:<6}{r.batch:>5}"
        if r.skipped:
            lines.append(f"{head}  skipped: {r.skipped}"[:80])
            continue
        lines.append(f"{head}{r.frames:>7}{r.median_fps:>8.2f}{r.spread:>6.0%} "
                     f"{r.median_ms('decode'):>8.2f}{r.median_ms('infer'):>8.2f}{r.median_ms('encode'):>8.2f}  {r.bound:<6}")
    return "\n".join(lines)


def to_json(rows: list[VideoBenchRow], meta: dict) -> str:
    out = []
    for r in rows:
        item = asdict(r)
        item.update(median_fps=round(r.median_fps, 3), spread=round(r.spread, 4), bound=None if r.skipped else r.bound,
                    median_ms_per_frame={s: round(r.median_ms(s), 3) for s in STAGES})
        out.append(item)
    return json.dumps({**meta, "rows": out}, indent=1)


def run_cli(args) -> int:
    """The ``bench --video`` branch of the command line."""
    import sys

    from irdeploy.core.fileio import atomic_write

    batches = [int(b) for b in args.batch.split(",")] if args.batch else [1]
    if args.rounds < 1 or min(batches) < 1:
        raise ValueError(f"--rounds ({args.rounds}) and --batch ({args.batch}) must be at least 1")
    threads = int(args.threads.split(",")[0]) if args.threads else None
    rows = bench_video(args.video, model=args.model, checkpoint=args.checkpoint, model_args=dict(args.arg),
                       backends=args.backends.split(","), precisions=args.precisions.split(","), batches=batches,
                       threads=threads, device="cuda" if args.device == "cuda" else "cpu", cache_dir=args.workdir,
                       rounds=args.rounds)
    info = probe(args.video)
    title = f"irdeploy bench --video {Path(args.video).name}: {args.model}, {info.width}x{info.height}, {args.rounds} round(s)"
    print(format_table(rows, title))
    if args.checkpoint is None:
        print(f"note: {args.model}: random weights (no --checkpoint)", file=sys.stderr)
    if args.out:
        path = Path(args.out) / "video_bench.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, to_json(rows, {"clip": str(args.video), "model": args.model, "size": [info.width, info.height]}))
        print(f"wrote {path}")
    return 0
