"""Calibration settings compared on the tiny zoo models: MinMax, Percentile at 99.999 (ONNX
Runtime's default, irdeploy's earlier one) and at 99.99 (irdeploy's default since this
comparison), PSNR of the int8 graph (ONNX Runtime's integer kernels) against eager float32.

Random weights with their constants randomised (as the tests make them), the default int8 graph
(input convolutions float), calibrated on the shipped photographs as the export does; PSNR is the
worst of two photo crops (96x128). Entropy is left out (its pure-Python KL search takes minutes
per model; README's methods table has its earlier figures).

Usage: python benchmarks/int8_calibration.py   # benchmarks/results/int8_calibration-<date>.{json,md}
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ARCHS = ("m3snet", "mprnet", "mhnet", "run", "nafnet", "restormer")
SETTINGS = (("minmax", None), ("percentile", 99.999), ("percentile", 99.99))


def measure(arch: str, tmp: Path) -> dict[str, float]:
    import onnx
    import onnxruntime as ort
    import torch

    from irdeploy.core.images import psnr
    from irdeploy.export import quantize, to_onnx
    from irdeploy.export.int8 import quantize_for_export
    from irdeploy.export.parity import make_inputs
    from irdeploy.model import create, final_image, specs
    from irdeploy.model.init import randomize_constants
    from irdeploy.model.spec import pad_multiple

    tiny = {s.name: dict(s.tiny) for s in specs()}[arch]
    torch.manual_seed(0)
    model = randomize_constants(create(arch, **tiny), seed=0).eval()
    path = tmp / f"{arch}.onnx"
    to_onnx(model, path, tensorrt=False, parity=False)
    fp32 = onnx.load(path)
    inputs = [x for _, x in make_inputs(3, [(1, 96, 128)] * 3)][1:]
    with torch.inference_mode():
        references = [final_image(model(torch.from_numpy(x))).numpy() for x in inputs]
    settings = quantize.CALIBRATORS["percentile"][1]
    default = settings["percentile"]
    row = {}
    try:
        for method, percentile in SETTINGS:
            if percentile is not None:
                settings["percentile"] = percentile
            graph, _ = quantize_for_export(fp32, pad_multiple(model), method=method)
            session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
            key = method if percentile is None else f"{method} {percentile}"
            row[key] = round(min(psnr(session.run(None, {"input": x})[0], r) for x, r in zip(inputs, references)), 2)
    finally:
        settings["percentile"] = default
    return row


def main() -> int:
    import onnxruntime
    import torch

    rows = {}
    with tempfile.TemporaryDirectory(prefix="irdeploy-int8-calib-") as tmp:
        for arch in ARCHS:
            print(f"{arch} ...", file=sys.stderr, flush=True)
            rows[arch] = measure(arch, Path(tmp))
            print(json.dumps(rows[arch]), file=sys.stderr, flush=True)
    date = dt.date.today().isoformat()
    out = {"date": date, "versions": f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}", "rows": rows}
    (RESULTS / f"int8_calibration-{date}.json").write_text(json.dumps(out, indent=1))
    keys = list(next(iter(rows.values())))
    lines = [f"# int8 calibration settings on the tiny zoo models ({date})", "", __doc__.split("\n\n")[1].replace("\n", " "),
             "", f"{out['versions']}.", "", "| tiny model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {arch} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |" for arch, row in rows.items()]
    (RESULTS / f"int8_calibration-{date}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
