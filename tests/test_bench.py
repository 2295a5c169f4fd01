"""irdeploy.runtime.bench: exact statistics, interleaving, skipping and the thread sweep on a fake
clock; the GPU arithmetic and probes on fakes (no GPU here); the result files, the chart and the
README table; and a short real CPU run of the CLI (no timing assertions on real runs)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from irdeploy.core.shapes import parse_shape
from irdeploy.runtime.bench import (BenchConfig, BenchResult, Candidate, Row, Stats, bench_model, copy_gbps,
                                    matmul_tflops, measure, parse_threads, peak_gmac_per_s, percentile,
                                    share_of_peak, summary_markdown, thread_groups)
from irdeploy.runtime.bench.chart import render_png
from irdeploy.runtime.bench.gpu import TorchCudaProbe, apply_ceilings

MS = 1_000_000
REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    """Nanoseconds that move only when a fake backend 'runs'."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeBackend:
    """Costs the next of ``costs_ms`` per call (warm-up calls first); logs each call."""

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


class FakeProbe:
    """A compute-only probe whose 'device' reports the next of ``device_ms``; the host clock stands still."""

    def __init__(self, device_ms: list[float], log: list[str]) -> None:
        self.device_ms, self.log, self.closed = iter(device_ms), log, False

    def __call__(self) -> int:
        self.log.append("probe")
        return int(next(self.device_ms) * MS)

    def close(self) -> None:
        self.closed = True


def quick(iterations: int = 2) -> BenchConfig:
    return BenchConfig(iterations=iterations, warmup_iters=1, warmup_seconds=0.0)


def test_percentile_and_stats_exact():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    s = Stats.from_ns([5 * MS, 1 * MS, 3 * MS, 2 * MS, 4 * MS])
    assert (s.n, s.median, s.min, s.max, s.mean) == (5, 3.0, 1.0, 5.0, 3.0)
    assert s.p90 == pytest.approx(4.6) and s.p99 == pytest.approx(4.96)
    assert s.stdev == pytest.approx(math.sqrt(2.5))
    assert Stats.from_ns([7 * MS]).stdev == 0.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_measure_interleaves_and_computes_exact_figures():
    clock, log, order = FakeClock(), [], []
    # two warm-up calls each (warmup_iters=2, no time floor), then five timed calls
    a = FakeBackend(clock, "A", log, [9, 9, 5, 1, 3, 2, 4], value=0.0)
    b = FakeBackend(clock, "B", log, [20, 20, 10, 10, 10, 10, 10], value=0.1)
    rows = measure(
        [Candidate("torch", load=lambda: a), Candidate("ort", load=lambda: b, export_seconds=1.5)],
        np.zeros((2, 3, 100, 100), np.float32), model="fake", reference=np.zeros((2, 3, 100, 100), np.float32),
        gmacs_per_image=1.5, config=BenchConfig(iterations=5, warmup_iters=2, warmup_seconds=0.0),
        clock=clock, order=order, threads=3)
    assert log == ["A", "B"] * 7
    assert order == ["torch/fp32", "ort/fp32"] * 5
    ra, rb = rows
    assert ra.status == rb.status == "ok" and ra.reason is None and ra.threads == rb.threads == 3
    assert ra.samples_ms == [5.0, 1.0, 3.0, 2.0, 4.0] and ra.first_call_ms == 9.0 and rb.first_call_ms == 20.0
    assert ra.stats.median == 3.0 and rb.stats.median == 10.0 and rb.stats.stdev == 0.0
    assert ra.images_per_s == pytest.approx(2 / 0.003)
    assert ra.megapixels_per_s == pytest.approx(2 * 0.01 / 0.003)
    assert ra.gmac_per_s == pytest.approx(1.5 * 2 / 0.003)
    assert ra.psnr_db == math.inf and rb.psnr_db == pytest.approx(20.0)
    assert ra.speedup_vs_eager == 1.0 and rb.speedup_vs_eager == pytest.approx(0.3)
    assert rb.export_seconds == 1.5 and ra.shape == [2, 3, 100, 100]
    assert ra.compute_stats is None and ra.device_memory_mb is None
    assert a.closed and b.closed


def test_warmup_runs_until_both_count_and_time_are_met():
    clock, log = FakeClock(), []
    a = FakeBackend(clock, "A", log, [4, 4, 4, 1])  # needs 3 calls to reach 10 ms
    b = FakeBackend(clock, "B", log, [20, 20, 1])  # one call passes 10 ms but warmup_iters=2
    measure([Candidate("a", load=lambda: a), Candidate("b", load=lambda: b)], np.zeros((1, 1, 2, 2), np.float32),
            config=BenchConfig(iterations=1, warmup_iters=2, warmup_seconds=0.010), clock=clock)
    assert log == ["A", "B", "A", "B", "A", "A", "B"]


def test_compute_only_device_memory_and_progress_are_kept_apart():
    """A probe's device times become compute_stats (end-to-end stays on the host clock); device
    memory is the highest sample of the warm-up; progress reports every timed call."""
    clock, log = FakeClock(), []
    gpu = FakeBackend(clock, "gpu", log, [50, 7, 6, 8])
    probes: list[FakeProbe] = []

    def make_probe(backend, batch):
        assert backend is gpu and batch.shape == (1, 3, 8, 8)
        probes.append(FakeProbe([99, 2, 1, 3], log))  # 99: its own warm-up run, discarded
        return probes[-1]

    memory = iter([100.0, 300.0, 200.0])
    seen = []
    rows = measure([Candidate("trt", "fp16", load=lambda: gpu, device="cuda", compute=make_probe)],
                   np.zeros((1, 3, 8, 8), np.float32), gmacs_per_image=2.0,
                   config=BenchConfig(iterations=3, warmup_iters=1, warmup_seconds=0.0), clock=clock,
                   device_memory=lambda: next(memory), progress=lambda *a: seen.append(a))
    row = rows[0]
    assert log == ["gpu", "probe"] + ["gpu", "probe"] * 3
    assert row.samples_ms == [7.0, 6.0, 8.0] and row.compute_samples_ms == [2.0, 1.0, 3.0]
    assert row.stats.median == 7.0 and row.compute_stats.median == 2.0 and row.first_call_ms == 50.0
    assert row.gmac_per_s == pytest.approx(2.0 / 0.007) and row.compute_gmac_per_s == pytest.approx(2.0 / 0.002)
    assert row.device_memory_mb == 100.0 and row.device == "cuda" and probes[0].closed
    assert seen[0] == ("model 1x3x8x8", "loading", 0, 0) and seen[1] == ("model 1x3x8x8", "warm-up", 0, 3)
    assert seen[2] == ("model 1x3x8x8", "warm-up: first call of trt fp16", 0, 0)  # before the call, not after
    assert seen[3:] == [("model 1x3x8x8", "timing", k, 3) for k in (1, 2, 3)]


def test_unavailable_and_failing_candidates_are_reported_with_reasons():
    clock, log = FakeClock(), []

    def boom():
        raise RuntimeError("no such engine\nsecond line")

    class Broken(FakeBackend):
        def infer(self, batch):
            raise ValueError("shape mismatch")

    def bad_probe(backend, batch):
        raise OSError("no device buffer")

    ok = FakeBackend(clock, "ok", log, [1, 1, 1])
    late = FakeBackend(clock, "late", log, [1, 1])  # warms up, then fails in the timed loop
    rows = measure(
        [Candidate("trt", "fp16", skip="TensorRT is not installed"), Candidate("ort", load=boom),
         Candidate("torch", load=lambda: ok, compute=bad_probe),
         Candidate("torch-compile", load=lambda: Broken(clock, "x", log, [])),
         Candidate("ort", "bf16"), Candidate("ort", "fp16", load=lambda: late)],
        np.zeros((1, 3, 4, 4), np.float32), config=quick(), clock=clock)
    assert [r.status for r in rows] == ["skipped", "skipped", "ok", "skipped", "skipped", "skipped"]
    assert rows[0].reason == "TensorRT is not installed" and rows[0].precision == "fp16"
    assert rows[1].reason == "failed to load: RuntimeError: no such engine"
    assert rows[2].stats.n == 2 and rows[2].compute_reason == "compute-only probe failed: OSError: no device buffer"
    assert rows[3].reason == "failed to run: ValueError: shape mismatch"
    assert rows[4].reason == "no loader given"
    assert rows[5].reason == "failed to run: StopIteration" and late.closed


def test_thread_sweep_expansion():
    assert parse_threads("1,2,1") == [1, 2]
    for bad in ("", "0", "a,2", "1,-2"):
        with pytest.raises(ValueError, match="thread counts"):
            parse_threads(bad)
    cpu = {"torch", "ort"}
    assert thread_groups(["torch", "ort", "trt"], [1, 2, 4], cpu) == [
        (1, ["torch", "ort", "trt"]), (2, ["torch", "ort"]), (4, ["torch", "ort"])]
    assert thread_groups(["trt"], [1, 2], cpu) == [(1, ["trt"])]  # a GPU backend runs once
    assert thread_groups(["torch"], [None], cpu) == [(None, ["torch"])]


def test_gpu_arithmetic():
    assert matmul_tflops(1000, 1000, 1000, 2.0) == pytest.approx(1.0)  # 2e9 FLOP in 2 ms
    assert copy_gbps(10**9, 10.0) == pytest.approx(200.0)  # 1 GB read + 1 GB written in 10 ms
    assert peak_gmac_per_s(1.0) == 500.0 and share_of_peak(250.0, 1.0) == 0.5
    ceilings = {"gpu": "fake", "matmul_tflops": {"fp16": 100.0, "fp32": 50.0}, "copy_gbps": 2000.0}
    rows = [Row("m", [1, 3, 8, 8], "trt", "fp16", "ok", device="cuda", gmac_per_s=10e3, compute_gmac_per_s=20e3),
            Row("m", [1, 3, 8, 8], "ort", "fp32", "ok", device="cuda", gmac_per_s=5e3),
            Row("m", [1, 3, 8, 8], "torch", "bf16", "ok", device="cuda", gmac_per_s=5e3),  # no bf16 ceiling
            Row("m", [1, 3, 8, 8], "ort", "fp32", "ok", device="cpu", gmac_per_s=5e3)]
    apply_ceilings(rows, ceilings)
    assert rows[0].peak_share == pytest.approx(20e3 / 50e3)  # compute-only figure preferred
    assert rows[1].peak_share == pytest.approx(5e3 / 25e3)
    assert rows[2].peak_share is None and rows[3].peak_share is None


def test_measure_ceilings_on_a_fake_device(monkeypatch):
    """Matmul per precision with TF32 off (and restored), bf16 left out where unsupported, the copy
    counted as read + write: the arithmetic of measure_ceilings on a fake torch with fixed timings."""
    from irdeploy.runtime.bench.gpu import measure_ceilings

    seen, current = [], {}
    matmul = SimpleNamespace(allow_tf32=True)

    class Buffer:
        def __init__(self, dtype):
            self.dtype = dtype

        def copy_(self, src):
            current["ms"] = 4.0

    def mm(a, b):
        current["ms"] = 2.0
        seen.append((a.dtype, matmul.allow_tf32))

    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return current["ms"]

    fake = SimpleNamespace(
        float32="f32", float16="f16", bfloat16="bf16", uint8="u8", mm=mm,
        randn=lambda *shape, device, dtype: Buffer(dtype), empty=lambda n, dtype, device: Buffer(dtype),
        empty_like=lambda t: Buffer(t.dtype), backends=SimpleNamespace(cuda=SimpleNamespace(matmul=matmul)),
        cuda=SimpleNamespace(Event=Event, synchronize=lambda: None, is_bf16_supported=lambda: False,
                             empty_cache=lambda: None, get_device_name=lambda: "Fake GPU"))
    monkeypatch.setitem(sys.modules, "torch", fake)
    ceilings = measure_ceilings(size=1000, copy_mib=1, iterations=2)
    assert ceilings["matmul_tflops"] == {"fp32": pytest.approx(1.0), "fp16": pytest.approx(1.0)}
    assert ceilings["unsupported"] == ["bf16"] and ceilings["gpu"] == "Fake GPU"
    assert ceilings["copy_gbps"] == pytest.approx(2 * 2**20 / 4e-3 / 1e9)
    assert {allow for _, allow in seen} == {False} and matmul.allow_tf32 is True
    assert [d for d, _ in seen] == ["f32"] * 5 + ["f16"] * 5  # 3 warm-up + 2 timed each


class FakeEvent:
    def __init__(self, log: list[str], ms: float) -> None:
        self.log, self.ms = log, ms

    def record(self) -> None:
        self.log.append("record")

    def synchronize(self) -> None:
        self.log.append("sync")

    def elapsed_time(self, end: FakeEvent) -> float:
        return self.ms


def test_torch_cuda_probe_times_device_resident_runs_with_events():
    log: list = []
    tensor = SimpleNamespace(to=lambda device, dtype: log.append(("to", device, dtype)) or "on-device")
    torch = SimpleNamespace(bfloat16="bf16-dtype", from_numpy=lambda a: tensor,
                            cuda=SimpleNamespace(Event=lambda enable_timing: FakeEvent(log, 1.25)))
    backend = SimpleNamespace(torch=torch, device="cuda", infer_tensor=lambda x: log.append(("run", x)))
    probe = TorchCudaProbe(backend, np.zeros((1, 3, 4, 4), np.float32), "bf16")
    assert probe() == 1_250_000
    assert log == [("to", "cuda", "bf16-dtype"), "record", ("run", "on-device"), "record", "sync"]


def _fake_result() -> BenchResult:
    clock = FakeClock()
    a = FakeBackend(clock, "A", [], [1, 2, 3])
    b = FakeBackend(clock, "B", [], [4, 5, 6], value=0.01)
    config = quick()
    rows = measure([Candidate("torch", load=lambda: a), Candidate("ort", load=lambda: b), Candidate("trt", skip="no GPU")],
                   np.zeros((1, 3, 8, 8), np.float32), reference=np.zeros((1, 3, 8, 8), np.float32), model="fake",
                   config=config, clock=clock, threads=2)
    return BenchResult(rows, config=config)


def test_result_files_and_chart(tmp_path):
    from PIL import Image

    result = _fake_result()
    paths = result.write(tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "results.csv", "results.md", "results.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    data = json.loads(paths[0].read_text())
    assert data["rows"][0]["samples_ms"] == [2.0, 3.0] and data["rows"][0]["psnr_db"] == "inf"
    assert data["rows"][2]["reason"] == "no GPU" and data["ceilings"] is None
    assert {"cpu", "cpu_count", "versions", "date"} <= data["machine"].keys()
    assert "numpy" in data["machine"]["versions"]
    table = list(csv.DictReader(io.StringIO(paths[1].read_text())))
    assert [r["status"] for r in table] == ["ok", "ok", "skipped"] and float(table[0]["median_ms"]) == 2.5
    assert table[0]["threads"] == "2" and table[0]["first_call_ms"] == "1.0"
    md = paths[2].read_text()
    assert "skipped: no GPU" in md and "| 2.5 |" in md and "Ceilings: not measured" in md
    back = BenchResult.from_dict(data)
    assert back.rows[0].stats == result.rows[0].stats and back.rows[0].psnr_db == math.inf
    assert back.to_csv() == result.to_csv()
    with Image.open(paths[3]) as png:
        png.load()
        assert png.size == (1400, 900) and png.format == "PNG"
    small = render_png(result, width_px=600, height_px=400, dpi=50)
    with Image.open(io.BytesIO(small)) as png:
        assert png.size == (600, 400)


def test_terminal_table_prints_reasons_verbatim(capsys):
    """A skip reason with brackets (ONNX Runtime's errors have them) is text, not rich markup."""
    from irdeploy.runtime.bench.console import print_table

    result = _fake_result()
    result.rows[2].reason = "[ONNXRuntimeError] : 9 [bold]"
    print_table(result, "fake table")
    out = capsys.readouterr().out
    assert "fake table" in out and "[1] trt fp32 1x3x8x8: skipped: [ONNXRuntimeError] : 9 [bold]" in out
    assert len([line for line in out.splitlines() if line.startswith("8x8 ")]) == 3


def test_committed_results_read_back_and_make_the_readme_table():
    """Result files written before later fields existed still read; the README's table between
    its markers is exactly what benchmarks/readme_table.py generates from benchmarks/results/."""
    spec = importlib.util.spec_from_file_location("readme_table", REPO / "benchmarks" / "readme_table.py")
    readme_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_table)
    results = readme_table.bench_results()
    assert results and all(r.rows for _, r in results)
    generated = summary_markdown(results)
    name, first = results[0]
    assert f"| {first.rows[0].model} | {first.rows[0].shape_text} |" in generated and f"`{name}`" in generated
    readme = (REPO / "README.md").read_text()
    assert readme_table.splice(readme, generated) == readme, "run: python benchmarks/readme_table.py"
    with pytest.raises(ValueError, match="bench:begin"):
        readme_table.splice("no markers here", generated)
    assert readme_table.splice(f"a\n{readme_table.BEGIN}\nold\n{readme_table.END}\nb", "new\n") == \
        f"a\n{readme_table.BEGIN}\nnew\n{readme_table.END}\nb"


def test_parse_shape():
    assert parse_shape("1x3x256x256") == (1, 3, 256, 256)
    for bad in ("1x3x256", "ax3x4x4", "0x3x4x4"):
        with pytest.raises(ValueError):
            parse_shape(bad)


def test_bench_model_torch_precisions_thread_sweep_and_skips(tmp_path):
    """Eager torch fp32/bf16 on the CPU once per thread count (fp16: the CLI test); TensorRT
    (absent here) is one row per precision with the reason, outside the sweep. No export needed."""
    from conftest import tiny_model

    result = bench_model(tiny_model("m3snet"), model_name="tiny-m3snet", workdir=tmp_path, backends=("torch", "trt"),
                         precisions=("fp32", "bf16"), shapes=[(1, 3, 16, 16)], threads=[1, 2],
                         device="cpu", config=quick())
    keys = [(r.backend, r.precision, r.threads) for r in result.rows]
    assert keys == [("torch", "fp32", 1), ("torch", "bf16", 1), ("trt", "fp32", None), ("trt", "bf16", None),
                    ("torch", "fp32", 2), ("torch", "bf16", 2)]
    by = {(r.backend, r.precision, r.threads): r for r in result.rows}
    for threads in (1, 2):
        assert by["torch", "fp32", threads].status == "ok" and by["torch", "fp32", threads].psnr_db == math.inf
        assert by["torch", "fp32", threads].gmacs_per_image > 0 and by["torch", "fp32", threads].gmac_per_s > 0
        row = by["torch", "bf16", threads]
        assert row.status == "ok", row.reason
        assert 25.0 < row.psnr_db < math.inf  # really ran in bf16
    for precision in ("fp32", "bf16"):
        row = by["trt", precision, None]
        assert row.status == "skipped" and row.reason and row.device == "cuda"
    assert result.ceilings is None and by["torch", "fp32", 1].compute_reason.startswith("CPU backend")
    with pytest.raises(ValueError, match="unknown backend"):
        bench_model(tiny_model("m3snet"), model_name="x", workdir=tmp_path, backends=("tvm",))
    with pytest.raises(ValueError, match="--device cuda: torch .* sees no CUDA device"):
        bench_model(tiny_model("m3snet"), model_name="x", workdir=tmp_path, device="cuda")


def test_cli_bench_writes_results_and_chart(tmp_path) -> None:
    from PIL import Image

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "irdeploy", "bench", "--model", "m3snet", "--arg", "width=8",
         "--arg", "enc_blk_nums=[1,1,1,1]", "--backends", "torch,ort,trt", "--precisions", "fp32,fp16",
         "--shapes", "1x3x32x48", "--iterations", "3", "--warmup", "1", "--warmup-seconds", "0", "--threads", "1",
         "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json", "results.md", "results.png"]
    assert result.stderr == ""  # --quiet: no progress bar
    table = [line for line in result.stdout.splitlines() if line.startswith("32x48 ")]  # 80 columns: no model column
    assert len(table) == 6 and "skipped" in result.stdout
    rows = {(r["backend"], r["precision"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert {k for k, r in rows.items() if r["status"] == "ok"} == {("torch", "fp32"), ("torch", "fp16"),
                                                                   ("ort", "fp32"), ("ort", "fp16")}
    for low in ("torch", "ort"):  # really ran in fp16: close to eager fp32, not identical
        assert 40 < rows[low, "fp16"]["psnr_db"] < 200
    assert rows["ort", "fp16"]["export_seconds"] > 0 and rows["trt", "fp16"]["reason"]
    with Image.open(out / "results.png") as png:
        png.load()
        assert png.size == (1400, 900)
    bad = subprocess.run([sys.executable, "-m", "irdeploy", "bench", "--model", "m3snet", "--threads", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "thread counts" in bad.stderr
