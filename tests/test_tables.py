"""Terminal tables fit 80 columns (issue #17, section 3): bench, eval, models, inspect, validate.

Short headers, numbers whole, a skipped row's reason as a numbered note under the table; the
files keep every detail. Each table is rendered at 80 columns (rich's width when stdout is not
a terminal, as under pytest) and every line is checked.
"""

from __future__ import annotations

import io
import math

import numpy as np
from rich.console import Console

from irdeploy.runtime.bench.console import print_table
from irdeploy.runtime.bench.measure import Row
from irdeploy.runtime.bench.results import BenchResult
from irdeploy.runtime.bench.stats import UNSTABLE_SPREAD, Stats
from irdeploy.runtime.cli import main

LONG_REASON = ("TensorRT is not installed: pip install '.[rtx]' for TensorRT-RTX (RTX GPUs; it builds on a CPU), or "
               "'.[gpu]' for data-centre TensorRT; and no CUDA device is visible, so an engine could not run here "
               "anyway. " * 3).strip()


def _fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)
    return lines


def _row(backend: str, precision: str, samples: list[float], speedup: float | None = None, **kw) -> Row:
    stats = Stats.from_ns([int(s * 1e6) for s in samples])
    return Row("m3snet-32", [1, 3, 512, 512], backend, precision, "ok", threads=2, samples_ms=samples, stats=stats,
               psnr_db=math.inf if backend == "torch" else 125.3, speedup_vs_eager=speedup, **kw)


def test_bench_table_fits_80_columns_with_long_reasons_and_unstable_rows() -> None:
    quiet = [16400.0 + 20 * i for i in range(10)]  # spread 1%: stable
    busy = [973.0, 1200.0, 1500.0, 1800.0, 2100.0, 2400.0, 2700.0, 3042.0, 1000.0, 1100.0]
    rows = [_row("torch", "fp32", quiet, 1.0), _row("torch-compile", "bf16", busy, 8.2),
            Row("m3snet-32", [1, 3, 512, 512], "trt", "fp16", "skipped", LONG_REASON, threads=2),
            Row("m3snet-32", [4, 3, 512, 512], "trt", "bf16", "skipped", "[ONNXRuntimeError] : 9 [bold]", threads=2)]
    assert not rows[0].stats.unstable and rows[1].stats.unstable and rows[1].stats.spread > UNSTABLE_SPREAD
    buf = io.StringIO()
    print_table(BenchResult(rows), "irdeploy bench: m3snet-32", console=Console(file=buf, width=80))
    lines = _fits(buf.getvalue())
    table = [line for line in lines if not line.startswith("[") and any(f" {p} " in line for p in ("fp32", "bf16", "fp16"))]
    assert len(table) == 4, lines
    s0, s1 = rows[0].stats, rows[1].stats
    assert f"{s0.median:.0f}  {s0.p10:.0f}-{s0.p90:.0f}" in table[0] and "1.00x" in table[0] and "unstable" not in table[0]
    assert "unstable" in table[1] and "8.20x" in table[1] and f"{s1.p10:.1f}-{s1.p90:.0f}" in table[1]
    assert table[2].rstrip().endswith("[1]") and table[3].rstrip().endswith("[2]") and "4x512x512" in table[3]
    text = " ".join(lines)
    assert "[1] trt fp16 1x3x512x512: skipped: TensorRT is not installed" in text and "[2] trt bf16" in text
    assert "[ONNXRuntimeError] : 9 [bold]" in text  # reasons are text, not rich markup
    assert any(line.startswith("unstable: p10-p90 wider than 25% of the median") for line in lines)


def test_bench_files_keep_every_detail(tmp_path) -> None:
    rows = [_row("torch", "fp32", [10.0, 11.0, 30.0, 12.0], 1.0),
            Row("m", [1, 3, 8, 8], "trt", "fp16", "skipped", LONG_REASON)]
    rows[0].speedup_interval = [0.9, 1.1]
    result = BenchResult(rows)
    md = result.to_markdown()
    assert LONG_REASON in md and "| 10.3 |" in md and "unstable" in md and "0.90-1.10x" in md  # p10 and the interval
    assert "p10_ms" in result.to_csv().splitlines()[0]
    back = BenchResult.from_dict(result.to_dict())
    assert back.rows[0].stats == rows[0].stats and back.rows[0].speedup_interval == [0.9, 1.1]


def test_eval_table_fits_80_columns() -> None:
    from irdeploy.runtime.evaluate import EvalResult, ImageScore

    scores = {"psnr": 30.55123, "ssim": 0.912345, "psnr_y": 32.0, "ssim_y": 0.93}
    images = [ImageScore("coffee", 600, 400, 1.0, scores, scores, reference=scores, parity_psnr=90.0)]
    result = EvalResult(data="GoPro/test with a long folder name " * 2, reference="torch", quantized=True,
                        backend="ort (CPUExecutionProvider, TensorrtExecutionProvider fallback)", images=images)
    buf = io.StringIO()
    Console(file=buf, width=80).print(result.table())
    lines = _fits(buf.getvalue())
    assert any("restored" in line and "30.55" in line and "0.9123" in line for line in lines)
    assert "ort (CPUExecutionProvider" in buf.getvalue()


def test_models_inspect_and_validate_fit_80_columns(tiny_onnx, capsys) -> None:
    assert main(["models", "--quiet"]) == 0
    lines = _fits(capsys.readouterr().out)
    assert any(line.startswith("m3snet-32") and "16.73 M" in line for line in lines)
    path, model = tiny_onnx("m3snet")
    assert main(["inspect", str(path), "--no-tensorrt", "--quiet"]) == 0
    out = capsys.readouterr().out
    _fits(out)
    assert "LayerNormalization 26" in out and "checkpoint none (random weights)" in out


def test_bench_stats_p10() -> None:
    stats = Stats.from_ns([int(v * 1e6) for v in np.arange(1.0, 11.0)])
    assert stats.p10 == 1.9 and stats.p90 == 9.1 and abs(stats.spread - 7.2 / 5.5) < 1e-12
