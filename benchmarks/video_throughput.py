"""End-to-end video restore throughput on this machine: torch vs ONNX Runtime, per-stage split.

The clip: the held-out shipped photograph (coffee.png) panned across a 384x216 frame, blurred
with the 9-pixel box blur the bundled quickstart checkpoint learned, H.264 yuv420p at 24 fps
with a sine tone in AAC (made here with PyAV). Each candidate restores it exactly as
``irdeploy restore`` does (default output: H.264 CRF 17, audio copied) through
:func:`irdeploy.runtime.video.bench.bench_video`: one warm-up inference per backend, then
``--rounds`` interleaved rounds (torch, ort, torch, ort, ...), medians and their spread.

Run it under the team's timing lock (the machine is shared; uptime is recorded before and after):
    flock /tmp/irdeploy-timing.lock .venv/bin/python benchmarks/video_throughput.py
Writes benchmarks/results/video_throughput-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def markdown_table(rows) -> str:
    """The README's table: one row per backend x batch, medians of the rounds."""
    lines = ["| backend | batch | fps (spread) | decode ms/frame | infer ms/frame | encode ms/frame | bound |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.backend} {r.precision} | {r.batch} | skipped: {r.skipped} | | | | |")
            continue
        lines.append(f"| {r.backend} {r.precision} | {r.batch} | {r.median_fps:.2f} ({r.spread:.0%}) | "
                     f"{r.median_ms('decode'):.1f} | {r.median_ms('infer'):.0f} | {r.median_ms('encode'):.1f} | {r.bound} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from irdeploy.core.fileio import atomic_write
    from irdeploy.core.images import read_image, sample_path
    from irdeploy.model.degrade import motion_blur
    from irdeploy.runtime.bench import machine_info
    from irdeploy.runtime.quickstart import _bundled_checkpoint, bundled_recipe
    from irdeploy.runtime.video.bench import bench_video, format_table, to_json
    from irdeploy.runtime.video.clips import panned, sine, write_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="216x384", help="HxW of the clip (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", help="export cache (default: irdeploy's user cache)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    recipe = bundled_recipe()
    before = uptime()
    with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
        clean = panned(read_image(sample_path("coffee.png")), (h, w), args.frames, step=(2, 4))
        clip = write_clip(Path(tmp) / "blurred.mp4", [motion_blur(f) for f in clean], fps=24,
                          audio=sine(args.frames / 24))
        rows = bench_video(clip, model=recipe["model"], checkpoint=str(_bundled_checkpoint(recipe)),
                           model_args=recipe["args"], backends=["torch", "ort"], precisions=["fp32"],
                           batches=[int(b) for b in args.batches.split(",")], threads=args.threads,
                           cache_dir=args.cache_dir, rounds=args.rounds)
    after = uptime()
    title = (f"video restore, {w}x{h} H.264 -> H.264 CRF 17 + AAC copy, {args.frames} frames, quickstart "
             f"M3SNet-16 ({args.threads} threads), median of {args.rounds} interleaved rounds")
    table = format_table(rows, title)
    print(table)
    import av

    machine = machine_info()
    machine["versions"]["av"] = av.__version__
    machine["versions"]["libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    meta = {"title": title, "machine": machine, "uptime_before": before, "uptime_after": after,
            "clip": {"size": [w, h], "frames": args.frames, "fps": 24, "codec": "libx264 yuv420p", "audio": "aac"},
            "threads": args.threads, "rounds": args.rounds}
    stem = f"video_throughput-{dt.date.today().isoformat()}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / f"{stem}.json", to_json(rows, meta))
    md = [f"# {title}", "", f"Machine: {meta['machine']['cpu']}, {meta['machine']['usable_cores']} usable cores; "
          f"versions {json.dumps(meta['machine']['versions'])}; {meta['machine']['date']}.", "",
          f"uptime before: `{before}`", "", f"uptime after: `{after}`", "", markdown_table(rows), "",
          "```", table, "```", "",
          "fps: frames / wall time of the whole restore (open, decode, infer, encode, rename). Stage columns: "
          "busy milliseconds per frame of each thread (waiting excluded); the three overlap, so the largest bounds "
          "the fps. spread: (max - min) / median fps over the rounds.", ""]
    atomic_write(args.out / f"{stem}.md", "\n".join(md))
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
