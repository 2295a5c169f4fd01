"""Engine builds and the CUDA device, proven on CPU (issue #15 defects 3, 6, 7, 10, Hopper; #17 §8).

Real TensorRT-RTX builds (ahead of time, no GPU); where a build needs "the current GPU" the
simulated CUDA runtime stands in for the driver, and the real ``cuda.bindings`` module is used
where this machine's own answer (no driver) is the point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires_rtx

from irdeploy.runtime.tensorrt import EngineBuildError, NoGPUError, build_engine, sidecar_path
from irdeploy.runtime.tensorrt import build as build_module
from irdeploy.runtime.tensorrt.device import current_gpu
from irdeploy.runtime.tensorrt.errors import CudaUnusableError, DriverTooOldError
from irdeploy.runtime.tensorrt.simulated import SimulatedCuda, simulate

STATIC = (1, 64, 64)  # the static graph tests/test_engine_build.py exports too (one session-cached export)


@pytest.fixture(scope="module")
def static_onnx(tiny_onnx):
    return tiny_onnx("m3snet", static=STATIC)[0]


def _one_line(exc: BaseException) -> str:
    assert "\n" not in str(exc), str(exc)
    return str(exc)


# -- defect 7: no GPU, a driver too old, CUDA not usable -----------------------------------------------


def test_this_machine_has_no_driver_and_says_so():
    """The real cuda-bindings on a CPU-only machine: the driver reports version 0."""
    pytest.importorskip("cuda.bindings")
    try:
        current_gpu()
    except DriverTooOldError:  # pragma: no cover - a GPU machine with an old driver
        pytest.skip("this machine has an NVIDIA driver")
    except NoGPUError as exc:
        assert "no NVIDIA driver is loaded" in _one_line(exc) or "sees no device" in str(exc)
        assert not isinstance(exc, (DriverTooOldError, CudaUnusableError))
    else:
        pytest.skip("this machine has a usable GPU")


@pytest.mark.parametrize("driver, error, kind, words", [
    (12040, 35, DriverTooOldError, ["driver supports CUDA 12.4", "needs CUDA 13.0", "driver >= 580", "cuda-bindings 12.x"]),
    (0, 35, NoGPUError, ["no NVIDIA driver is loaded"]),
    (13000, 100, NoGPUError, ["the driver sees no device"]),
    (13000, 999, CudaUnusableError, ["CUDA not usable", "cudaErrorUnknown", "driver CUDA 13.0"]),
])
def test_the_three_ways_cuda_is_missing_are_told_apart(driver, error, kind, words):
    with simulate(SimulatedCuda(driver_version=driver, runtime_version=13000, device_count_error=error)):
        with pytest.raises(NoGPUError) as info:
            current_gpu()
    assert type(info.value) is kind
    for word in words:
        assert word in _one_line(info.value)


# -- Hopper, and the device index (defect 10) ------------------------------------------------------------


@requires_rtx
def test_rtx_build_for_current_honours_the_device_index(static_onnx, tmp_path):
    gpus = (("Simulated RTX 3090", "8.6"), ("Simulated RTX 4090", "8.9"))
    with simulate(SimulatedCuda(gpus)) as cuda:
        result = build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx", compute_capabilities=["current"], device=1)
        assert cuda.device == 1  # CUDA's current device while TensorRT built
    assert result.sidecar["target"]["compute_capabilities"] == ["8.9"]
    assert result.sidecar["target"]["gpu"]["name"] == "Simulated RTX 4090"


def test_data_centre_builds_target_the_chosen_device():
    gpus = (("Simulated H100", "9.0"), ("Simulated H200", "9.0"))
    trt = type(sys)("tensorrt")
    with simulate(SimulatedCuda(gpus)) as cuda:
        target = build_module._target(trt, None, 1)
        assert cuda.device == 1
    assert target == {"gpu": {"name": "Simulated H200", "compute_capability": "9.0"}}


@requires_rtx
def test_hopper_is_not_an_rtx_target_in_one_line(static_onnx, tmp_path):
    with simulate(SimulatedCuda((("NVIDIA H200", "9.0"),))):
        with pytest.raises(EngineBuildError) as info:
            build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx", compute_capabilities=["current"])
    text = _one_line(info.value)
    assert "NVIDIA H200 (compute capability 9.0) is not a TensorRT-RTX 1.7.1.116 target" in text
    assert "7.5, 8.0, 8.6, 8.9, 12.0, 12.1" in text and not (tmp_path / "m.engine").exists()


def test_an_rtx_engine_on_hopper_is_refused_naming_the_targets(tmp_path):
    from irdeploy.runtime.tensorrt import EngineLoadError, TensorRTEngine
    from irdeploy.runtime.tensorrt.simulated import write_engine

    path = write_engine(tmp_path / "m.engine", flavour="rtx", gpu=("x", "8.9"))
    with simulate(SimulatedCuda((("NVIDIA H200", "9.0"),))):
        with pytest.raises(EngineLoadError, match="not a TensorRT-RTX 1.7.1.116 target; it supports 7.5") as info:
            TensorRTEngine(path)
        _one_line(info.value)
        with TensorRTEngine(path, allow_untargeted_gpu=True):  # the probe's way: let TensorRT-RTX decide
            pass


# -- defect 3: the kernel specialization strategy is recorded ---------------------------------------------


@requires_rtx
def test_rtx_builds_record_the_kernel_specialization(static_onnx, tmp_path):
    eager = build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx")
    assert eager.sidecar["options"]["kernel_specialization"] == "eager"
    lazy = build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx", kernel_specialization="lazy")
    assert not lazy.cached and lazy.sidecar["options"]["kernel_specialization"] == "lazy"
    with pytest.raises(EngineBuildError, match="kernel specialization"):
        build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx", kernel_specialization="sometimes")


# -- defect 6: a timing cache never costs a finished build ---------------------------------------------------


class _CacheRules:
    """A real TensorRT-RTX builder config with data-centre TensorRT's timing-cache answers:
    ``set_timing_cache`` returns False for a cache from another device, and serializing can fail."""

    def __init__(self, config, *, rejects: bool = False, serialize_fails: bool = False) -> None:
        self._config, self.rejects, self.serialize_fails = config, rejects, serialize_fails

    def __getattr__(self, name):
        return getattr(self._config, name)

    def set_timing_cache(self, cache, ignore_mismatch):
        return not self.rejects

    def get_timing_cache(self):
        if self.serialize_fails:
            raise RuntimeError("serialize: the timing cache is corrupt")
        return type("Cache", (), {"serialize": lambda self: b"timing-cache-bytes"})()


@requires_rtx
@pytest.mark.parametrize("rules", [{"rejects": True}, {"serialize_fails": True}, {}])
def test_a_timing_cache_problem_is_a_note_and_the_engine_is_built(static_onnx, tmp_path, monkeypatch, rules):
    real_config = build_module._config
    monkeypatch.setattr(build_module, "_has_timing_cache", lambda trt: True)
    monkeypatch.setattr(build_module, "_config", lambda *a, **k: _CacheRules(real_config(*a, **k), **rules))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"from another GPU")
    result = build_engine(static_onnx, tmp_path / "m.engine", flavour="rtx", timing_cache=cache)
    assert result.engine_path.is_file() and sidecar_path(result.engine_path).is_file()
    notes = " ".join(result.notes)
    if rules.get("rejects"):
        assert "rejected by TensorRT" in notes and cache.read_bytes() == b"from another GPU"
    elif rules.get("serialize_fails"):
        assert "could not serialize" in notes and cache.read_bytes() == b"from another GPU"
    else:
        assert cache.read_bytes() == b"timing-cache-bytes"


# -- #17 §8: a failed build keeps what was at -o; a sidecar with missing fields is one line --------------------


@requires_rtx
def test_a_failed_rebuild_leaves_the_existing_engine_byte_identical(static_onnx, tiny_onnx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    engine = out / "m.engine"
    build_engine(static_onnx, engine, flavour="rtx")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rejected = tmp_path / "rejected.onnx"
    from test_engine_build import _rejected_onnx

    _rejected_onnx(rejected)
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("not a model")
    attention, _ = tiny_onnx("m3snet", attention="onnx23")
    failures = [  # the parser rejects it; it is no ONNX at all; TensorRT's build itself fails
        (rejected, {"shapes": {"opt": (1, 3, 16, 16)}}, "node 'unsupported_unique' (Unique)"),
        (not_onnx, {}, "not an ONNX model"),
        (attention, {"precision": "fp16", "attention": "fused", "shapes": {"min": (1, 3, 32, 32), "opt": (1, 3, 32, 32),
                                                                           "max": (2, 3, 64, 64)}}, "dedicated kernel"),
    ]
    for source, kwargs, expected in failures:
        with pytest.raises(EngineBuildError) as info:
            build_engine(source, engine, flavour="rtx", **kwargs)
        assert expected in _one_line(info.value)
        # the error says the earlier engine is still there: running it afterwards is no surprise
        assert f"{engine} still holds the earlier fp32 engine (built " in str(info.value), info.value
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, source.name
    done = subprocess.run([sys.executable, "-m", "irdeploy", "build", str(rejected), "-o", str(engine), "--trt", "rtx",
                           "--shapes", "opt=1x3x16x16"], capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 2 and len(errors) == 1 and "unsupported_unique" in errors[0], done.stderr
    assert errors[0].endswith(f"from {static_onnx.name}), which --engine runs"), errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("drop", [("engine",), ("engine", "sha256"), ("target",), ("target", "gpu"), ("profiles",),
                                  ("tensorrt", "version"), ("tensorrt", "flavour")])
def test_read_sidecar_names_a_missing_field(tmp_path, drop):
    from irdeploy.runtime.tensorrt import EngineLoadError, read_sidecar
    from irdeploy.runtime.tensorrt.simulated import write_engine

    engine = write_engine(tmp_path / "m.engine")
    read_sidecar(engine)
    side = json.loads(sidecar_path(engine).read_text())
    if drop == ("target", "gpu"):
        side["target"] = {"gpu": {"name": "x"}}
    else:
        inner = side
        for key in drop[:-1]:
            inner = inner[key]
        del inner[drop[-1]]
    sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(EngineLoadError, match="sidecar has no valid") as info:
        read_sidecar(engine)
    assert drop[0] in _one_line(info.value)


@requires_rtx
def test_validate_and_restore_refuse_a_sidecar_with_missing_fields_in_one_line(static_onnx, tmp_path):
    engine = tmp_path / "m.engine"
    build_engine(static_onnx, engine, flavour="rtx")
    side = json.loads(sidecar_path(engine).read_text())
    image = Path(__file__).parents[1] / "core" / "samples" / "chelsea.png"
    commands = {"engine": ["validate", "--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]", "--engine", str(engine)],
                "target": ["restore", str(image), "-o", str(tmp_path / "restored"), "--engine", str(engine)]}
    for field, command in commands.items():
        sidecar_path(engine).write_text(json.dumps({k: v for k, v in side.items() if k != field}))
        done = subprocess.run([sys.executable, "-m", "irdeploy", *command], capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert done.returncode == 2 and "Traceback" not in done.stderr, (command[0], done.stderr[-500:])
        assert len(errors) == 1 and "sidecar has no valid" in errors[0] and repr(field)[:-1] in errors[0], (command[0], errors)
    assert not (tmp_path / "restored").exists() or not any((tmp_path / "restored").iterdir())
