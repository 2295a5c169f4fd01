"""irdeploy.runtime.bench: exact statistics and interleaving on a fake clock, skipping with reasons,
the result files, and a short real CPU run of tiny models (no timing assertions on real runs)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from irdeploy.runtime.bench import (BenchConfig, BenchResult, Candidate, Stats, bench_model, measure, parse_shape,
                                    percentile)

MS = 1_000_000


class FakeClock:
    """Nanoseconds that move only when a fake backend 'runs'."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeBackend:
    """Costs ``warmup`` ns per call for its first ``len(warmup)`` calls, then ``timed``; logs each call."""

    def __init__(self, clock: FakeClock, label: str, log: list[str], costs_ms: list[float], value: float = 0.0):
        self.clock, self.name, self.log, self.value = clock, label, log, value
        self.costs = iter(costs_ms)
        self.closed = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.clock.now += int(next(self.costs) * MS)
        self.log.append(self.name)
        return np.full_like(batch, self.value)

    def close(self) -> None:
        self.closed = True


def test_percentile_and_stats_exact():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    s = Stats.from_ns([5 * MS, 1 * MS, 3 * MS, 2 * MS, 4 * MS])
    assert (s.n, s.median, s.min, s.max, s.mean) == (5, 3.0, 1.0, 5.0, 3.0)
    assert s.p90 == pytest.approx(4.6) and s.p99 == pytest.approx(4.96)
    assert s.stdev == pytest.approx(math.sqrt(2.5))
    assert Stats.from_ns([7 * MS]).stdev == 0.0


def test_measure_interleaves_and_computes_exact_figures():
    clock, log, order = FakeClock(), [], []
    # two warm-up calls each (warmup_iters=2, no time floor), then five timed calls
    a = FakeBackend(clock, "A", log, [9, 9, 5, 1, 3, 2, 4], value=0.0)
    b = FakeBackend(clock, "B", log, [20, 20, 10, 10, 10, 10, 10], value=0.1)
    rows = measure(
        [Candidate("torch", load=lambda: a, export_seconds=None), Candidate("ort", load=lambda: b, export_seconds=1.5)],
        np.zeros((2, 3, 100, 100), np.float32), model="fake", reference=np.zeros((2, 3, 100, 100), np.float32),
        gmacs_per_image=1.5, config=BenchConfig(iterations=5, warmup_iters=2, warmup_seconds=0.0),
        clock=clock, order=order)
    assert log == ["A", "B"] * 7
    assert order == ["torch/fp32", "ort/fp32"] * 5
    ra, rb = rows
    assert ra.status == rb.status == "ok" and ra.reason is None
    assert ra.samples_ms == [5.0, 1.0, 3.0, 2.0, 4.0]
    assert ra.stats.median == 3.0 and rb.stats.median == 10.0 and rb.stats.stdev == 0.0
    assert ra.images_per_s == pytest.approx(2 / 0.003)
    assert ra.megapixels_per_s == pytest.approx(2 * 0.01 / 0.003)
    assert ra.gmac_per_s == pytest.approx(1.5 * 2 / 0.003)
    assert ra.psnr_db == math.inf and rb.psnr_db == pytest.approx(20.0)
    assert ra.speedup_vs_eager == 1.0 and rb.speedup_vs_eager == pytest.approx(0.3)
    assert rb.export_seconds == 1.5 and ra.shape == [2, 3, 100, 100]
    assert a.closed and b.closed


def test_warmup_runs_until_both_count_and_time_are_met():
    clock, log = FakeClock(), []
    a = FakeBackend(clock, "A", log, [4, 4, 4, 1])  # needs 3 calls to reach 10 ms
    b = FakeBackend(clock, "B", log, [20, 20, 1])  # one call passes 10 ms but warmup_iters=2
    measure([Candidate("a", load=lambda: a), Candidate("b", load=lambda: b)], np.zeros((1, 1, 2, 2), np.float32),
            config=BenchConfig(iterations=1, warmup_iters=2, warmup_seconds=0.010), clock=clock)
    assert log == ["A", "B", "A", "B", "A", "A", "B"]


def test_unavailable_and_failing_candidates_are_reported_with_reasons():
    clock, log = FakeClock(), []

    def boom():
        raise RuntimeError("no such engine\nsecond line")

    class Broken(FakeBackend):
        def infer(self, batch):
            raise ValueError("shape mismatch")

    ok = FakeBackend(clock, "ok", log, [1, 1, 1])
    rows = measure(
        [Candidate("trt", "fp16", skip="TensorRT is not installed"), Candidate("ort", load=boom),
         Candidate("torch", load=lambda: ok), Candidate("torch-compile", load=lambda: Broken(clock, "x", log, [])),
         Candidate("ort", "bf16")],
        np.zeros((1, 3, 4, 4), np.float32), config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0),
        clock=clock)
    assert [r.status for r in rows] == ["skipped", "skipped", "ok", "skipped", "skipped"]
    assert rows[0].reason == "TensorRT is not installed" and rows[0].precision == "fp16"
    assert rows[1].reason == "failed to load: RuntimeError: no such engine"
    assert rows[3].reason == "failed to run: ValueError: shape mismatch"
    assert rows[4].reason == "no loader given"
    assert rows[2].stats.n == 2


def test_result_files(tmp_path):
    clock = FakeClock()
    a = FakeBackend(clock, "A", [], [1, 2, 3])
    rows = measure([Candidate("torch", load=lambda: a), Candidate("trt", skip="no GPU")],
                   np.zeros((1, 3, 8, 8), np.float32), reference=np.zeros((1, 3, 8, 8), np.float32),
                   config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0), clock=clock)
    result = BenchResult(rows, config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0))
    paths = result.write(tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "results.csv", "results.md"]
    data = json.loads(paths[0].read_text())
    assert data["rows"][0]["samples_ms"] == [2.0, 3.0] and data["rows"][0]["psnr_db"] == "inf"
    assert data["rows"][1]["reason"] == "no GPU"
    assert {"cpu", "cpu_count", "versions", "date"} <= data["machine"].keys()
    assert "numpy" in data["machine"]["versions"]
    table = list(csv.DictReader(io.StringIO(paths[1].read_text())))
    assert [r["status"] for r in table] == ["ok", "skipped"] and float(table[0]["median_ms"]) == 2.5
    md = paths[2].read_text()
    assert "skipped: no GPU" in md and "| 2.5 |" in md
    back = BenchResult.from_dict(data)
    assert back.rows[0].stats == rows[0].stats and back.rows[0].psnr_db == math.inf
    assert back.to_csv() == result.to_csv()


def test_parse_shape():
    assert parse_shape("1x3x256x256") == (1, 3, 256, 256)
    for bad in ("1x3x256", "ax3x4x4", "0x3x4x4"):
        with pytest.raises(ValueError):
            parse_shape(bad)


def test_real_cpu_run_torch_and_onnxruntime(tiny_onnx):
    """A tiny M3SNet through eager torch and ONNX Runtime: both measured, outputs match eager."""
    from irdeploy.runtime.backends import OnnxRuntimeBackend, TorchBackend

    path, model = tiny_onnx("m3snet")
    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    with TorchBackend(model) as eager:
        reference = eager.infer(batch)
    rows = measure([Candidate("torch", load=lambda: TorchBackend(model)),
                    Candidate("ort", load=lambda: OnnxRuntimeBackend(path, threads=1))],
                   batch, model="tiny-m3snet", reference=reference, gmacs_per_image=0.01,
                   config=BenchConfig(iterations=3, warmup_iters=1, warmup_seconds=0.0))
    assert [r.status for r in rows] == ["ok", "ok"], [r.reason for r in rows]
    assert rows[0].psnr_db == math.inf and rows[1].psnr_db > 50
    assert all(r.stats.n == 3 and r.stats.min > 0 and r.peak_rss_mb for r in rows)
    assert rows[1].name.startswith("ort")


def test_bench_model_skips_unavailable_combinations(tmp_path):
    """torch fp32 runs; torch fp16 and TensorRT (absent on CPU CI) are rows with reasons."""
    from conftest import tiny_model

    result = bench_model(tiny_model("mhnet"), model_name="tiny-mhnet", workdir=tmp_path, backends=("torch", "trt"),
                         precisions=("fp32", "fp16"), shapes=[(1, 3, 32, 32)], threads=1,
                         config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0.0))
    by = {(r.backend, r.precision): r for r in result.rows}
    assert by["torch", "fp32"].status == "ok" and by["torch", "fp32"].psnr_db == math.inf
    assert by["torch", "fp32"].gmacs_per_image > 0 and by["torch", "fp32"].gmac_per_s > 0
    assert by["torch", "fp16"].status == "skipped" and "fp32 only" in by["torch", "fp16"].reason
    for precision in ("fp32", "fp16"):
        row = by["trt", precision]
        assert row.status == "skipped" and row.reason  # no GPU / no TensorRT here, said so
    paths = result.write(tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="unknown backend"):
        bench_model(tiny_model("mhnet"), model_name="x", workdir=tmp_path, backends=("tvm",))


def test_cli_bench_writes_results(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "irdeploy", "bench", "--model", "m3snet", "--arg", "width=8",
         "--arg", "enc_blk_nums=[1,1,1,1]", "--backends", "torch,ort,trt", "--shapes", "1x3x32x48",
         "--iterations", "3", "--warmup", "1", "--warmup-seconds", "0", "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json", "results.md"]
    assert "| torch |" in result.stdout and "| ort |" in result.stdout and "skipped" in result.stdout
