"""Which padding should inference use? The border band against the interior, measured.

The networks compute on H and W that are multiples of ``pad_multiple`` (16 for M3SNet); the
runtime pads an unaligned image at the bottom and right before the network and crops the
result. Upstream M3SNet pads with zeros, which the network never saw in training: on the
quickstart photographs that leaves a bright line a few pixels inside the right or bottom edge.

For every shipped photograph (blurred with the quickstart's 9-pixel box blur) and every pad mode
(``constant`` = zeros, ``reflect``, ``replicate``), with the bundled quickstart checkpoint as it
is and converted with TLC (:func:`irdeploy.model.to_local`, its 96-pixel training crop), this
script restores the photograph in float32 and measures, on the 0-255 scale against the ground
truth:

- ``interior``: the median over the columns (rows) outside the border band of each column's
  (row's) mean absolute error;
- ``worst band col`` / ``worst band row``: the largest mean absolute error of one column (row)
  among the last 16 (the band holding every padded edge the network sees);
- ``ratio``: the worse of the two divided by the interior; ``PSNR``: the whole image.

Usage: python benchmarks/pad_modes.py [--threads 2]
Writes benchmarks/results/pad_modes-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from irdeploy.core.images import SAMPLES, psnr, read_image, sample_path
from irdeploy.model import load_model, to_local
from irdeploy.model.degrade import motion_blur
from irdeploy.runtime.bench import cpu_name
from irdeploy.runtime.metrics import BORDER_BAND, border_band
from irdeploy.runtime.quickstart import _bundled_checkpoint, bundled_recipe

BAND = BORDER_BAND
MODES = ("constant", "reflect", "replicate")


def restore(model: torch.nn.Module, image: np.ndarray, mode: str) -> np.ndarray:
    """Pad HxWx3 ``image`` to the model's multiple with ``mode``, run it, crop (the runtime's order)."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    h, w = x.shape[-2:]
    m = model.pad_multiple
    padded = F.pad(x, (0, -w % m, 0, -h % m), mode=mode) if (h % m or w % m) else x
    with torch.inference_mode():
        out = model(padded)[..., :h, :w]  # aligned input: the network's own pad is a no-op
    return out[0].numpy().transpose(1, 2, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = bundled_recipe()
    crop = recipe["train"]["crop"]
    variants = {}
    for variant in ("checkpoint", "tlc"):
        model = load_model(recipe["model"], _bundled_checkpoint(recipe), **recipe["args"]).eval()
        if variant == "tlc":
            to_local(model, train_size=(1, 3, crop, crop))
        variants[variant] = model
    rows = []
    for name in SAMPLES:
        target = read_image(sample_path(name))
        blurred = motion_blur(target, 9)
        h, w = target.shape[:2]
        m = variants["checkpoint"].pad_multiple
        for variant, model in variants.items():
            for mode in MODES:
                restored = restore(model, blurred, mode)
                row = {"photo": name, "size": f"{w}x{h}", "pad": f"+{-w % m} cols, +{-h % m} rows",
                       "model": variant, "mode": mode, **border_band(restored, target, BAND),
                       "psnr": psnr(np.clip(restored, 0, 1), target)}
                rows.append(row)
                print(f"{name:<14}{variant:<11}{mode:<10} interior {row['interior']:5.2f}  band col "
                      f"{row['worst_col']:6.2f} (x={row['worst_col_at']})  band row {row['worst_row']:6.2f} "
                      f"(y={row['worst_row_at']})  ratio {row['ratio']:5.2f}  PSNR {row['psnr']:.2f}", flush=True)
    date = dt.date.today().isoformat()
    import onnxruntime

    machine = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
               "platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
               "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
               "checkpoint": recipe["checkpoint"], "tlc_train_crop": crop, "band": BAND}
    out = Path(args.out)
    (out / f"pad_modes-{date}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    lines = [f"# Pad modes: border band (last {BAND} px) vs interior, quickstart checkpoint", "",
             f"{machine['date']}, {machine['cpu']}, Python {machine['python']}, torch {machine['torch']}, "
             f"numpy {machine['numpy']}; `python benchmarks/pad_modes.py`. Photographs blurred with the quickstart's "
             "9-pixel box blur; float32 eager; mean absolute error per column / row on 0-255 against the ground "
             f"truth. TLC: `to_local` with the checkpoint's {crop}-pixel training crop.", "",
             "| photo | size | padded | model | mode | interior | worst band col | worst band row | ratio | PSNR dB |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['photo']} | {r['size']} | {r['pad']} | {r['model']} | {r['mode']} | {r['interior']:.2f} | "
              f"{r['worst_col']:.2f} (x={r['worst_col_at']}) | {r['worst_row']:.2f} (y={r['worst_row_at']}) | "
              f"{r['ratio']:.2f} | {r['psnr']:.2f} |" for r in rows]
    summary = {}
    for variant in variants:
        for mode in MODES:
            sel = [r for r in rows if r["model"] == variant and r["mode"] == mode]
            summary[(variant, mode)] = (max(r["ratio"] for r in sel), float(np.mean([r["psnr"] for r in sel])))
    lines += ["", "| model | mode | worst ratio over photos | mean PSNR dB |", "|---|---|---:|---:|"]
    lines += [f"| {v} | {m} | {r:.2f} | {p:.3f} |" for (v, m), (r, p) in summary.items()]
    (out / f"pad_modes-{date}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-(len(summary) + 3):]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
