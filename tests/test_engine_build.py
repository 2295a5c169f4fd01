"""Real TensorRT-RTX engine builds on CPU (ahead of time): every tiny model in fp32, fp16 and bf16
with dynamic profiles, the sidecar, the engine cache, and failures that leave no file behind.

Running an engine needs a GPU (tests/gpu/); here the runtime must refuse in one line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time

import onnx
import pytest
from onnx import TensorProto, helper

import irdeploy
from conftest import requires_rtx

from irdeploy.core.precision import PRECISIONS
from irdeploy.export.precision import to_mixed_precision
from irdeploy.model import record_of, specs
from irdeploy.model.spec import pad_multiple
from irdeploy.runtime.tensorrt import (
    EngineBuildError,
    EngineLoadError,
    NoGPUError,
    TensorRTEngine,
    build_engine,
    parse_shapes,
    read_sidecar,
    sidecar_path,
)
from irdeploy.runtime.tensorrt.profiles import graph_input, resolve_profile
from irdeploy.core.padding import INFERENCE_PAD_MODE

pytestmark = requires_rtx

ARCHS = tuple(spec.name for spec in specs())  # every registered architecture
# Small dynamic profiles (batch, height and width all vary) keep each CPU build at a few seconds.
SHAPES = {arch: {"min": (1, 3, 32, 32), "opt": (1, 3, 32, 32), "max": (2, 3, 64, 64)} for arch in ARCHS}
STATIC = (1, 64, 64)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def engines(tiny_onnx, tmp_path_factory):
    """Every tiny model in every precision, built once for the module: ``{(arch, precision): result}``."""
    root = tmp_path_factory.mktemp("engines")
    return {
        (arch, precision): build_engine(
            tiny_onnx(arch)[0], root / f"{arch}.{precision}.engine",
            precision=precision, shapes=SHAPES[arch], flavour="rtx",
        )
        for arch in ARCHS
        for precision in PRECISIONS
    }


@pytest.fixture(scope="module")
def static_onnx(tiny_onnx):
    """The static tiny M3SNet: the quickest build, for cache and failure tests."""
    return tiny_onnx("m3snet", static=STATIC)[0]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_engine_and_sidecar(engines, tiny_onnx, arch, precision):
    onnx_path, model = tiny_onnx(arch)
    result = engines[(arch, precision)]
    assert not result.cached
    assert result.engine_path.is_file() and result.engine_path.stat().st_size == result.engine_bytes > 100_000
    side = json.loads(sidecar_path(result.engine_path).read_text())
    assert side == read_sidecar(result.engine_path)
    assert side["engine"]["sha256"] == hashlib.sha256(result.engine_path.read_bytes()).hexdigest()
    assert side["tensorrt"] == {"flavour": "rtx", "name": "TensorRT-RTX", "version": "1.7.1.116"}
    # A CPU build server builds ahead of time for RTX compute capabilities, not for a GPU.
    assert side["target"]["default"] is True and "gpu" not in side["target"]
    assert {"8.6", "8.9", "12.0"} <= set(side["target"]["compute_capabilities"])
    assert side["precision"] == side["compute_precision"] == precision
    assert side["tf32"] is False
    assert side["profiles"] == [{"input": "input", **{k: list(v) for k, v in SHAPES[arch].items()}}]
    assert side["onnx"]["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert side["onnx"]["graph_precision"] == "fp32" and side["onnx_file"] == onnx_path.name
    assert (side["pad_multiple"], side["pad_mode"]) == (pad_multiple(model), INFERENCE_PAD_MODE)  # the graph's
    assert side["irdeploy_version"] == irdeploy.__version__
    assert side["host"] and side["built_at"].endswith("+00:00") and side["build_seconds"] > 0
    if precision == "fp32":
        assert side["mixed_precision"] is None
    else:
        assert side["mixed_precision"]["precision"] == precision and side["mixed_precision"]["low_nodes"] > 0
    layernorms = sum(isinstance(m, record_of(model).spec.layernorms) for m in model.modules())
    assert side["network"]["normalization"] == layernorms == result.layers.get("NORMALIZATION", 0)
    assert side["network"]["attention"] == 0 and side["network"]["attention_decomposable"] is False
    if precision != "fp32":
        assert result.layers["CAST"] > 0  # the mixed graph's float32 islands
    assert "\n" not in result.summary()


def test_repeat_build_is_a_cache_hit(engines, tiny_onnx):
    first = engines[("m3snet", "fp16")]
    mtime = first.engine_path.stat().st_mtime_ns
    start = time.perf_counter()
    again = build_engine(tiny_onnx("m3snet")[0], first.engine_path, precision="fp16", shapes=SHAPES["m3snet"], flavour="rtx")
    assert again.cached and time.perf_counter() - start < 2
    assert first.engine_path.stat().st_mtime_ns == mtime
    assert again.sidecar == first.sidecar
    assert "cache hit" in again.summary()


def test_stale_engines_are_rebuilt(static_onnx, tmp_path):
    engine = tmp_path / "m.engine"
    first = build_engine(static_onnx, engine, flavour="rtx")
    assert not first.cached and build_engine(static_onnx, engine, flavour="rtx").cached

    # Another TensorRT version (or GPU target) in the sidecar: rebuilt, never reused.
    side = read_sidecar(engine)
    for field, value in (("tensorrt", {**side["tensorrt"], "version": "1.6.0.0"}),
                         ("target", {"gpu": {"name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"}})):
        sidecar_path(engine).write_text(json.dumps({**read_sidecar(engine), field: value}))
        rebuilt = build_engine(static_onnx, engine, flavour="rtx")
        assert not rebuilt.cached and rebuilt.sidecar[field] == side[field]

    # Another ONNX graph at the same path: rebuilt.
    changed = tmp_path / static_onnx.name
    proto = onnx.load(static_onnx)
    proto.doc_string = "retrained"
    onnx.save(proto, changed)
    rebuilt = build_engine(changed, engine, flavour="rtx")
    assert not rebuilt.cached and rebuilt.sidecar["onnx"]["sha256"] != side["onnx"]["sha256"]

    # An engine file that is not the one its sidecar describes: rebuilt.
    engine.write_bytes(engine.read_bytes()[:-1] + b"\0")
    assert not build_engine(changed, engine, flavour="rtx").cached
    # Build options are part of the key too; force rebuilds a hit.
    assert not build_engine(changed, engine, flavour="rtx", opt_level=1).cached
    assert build_engine(changed, engine, flavour="rtx", opt_level=1, force=True).cached is False
    assert _leftovers(tmp_path) == sorted([changed.name, engine.name, engine.name + ".json"])


def test_tf32_best_and_timing_cache(static_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    best = build_engine(static_onnx, tmp_path / "best.engine", precision="best", flavour="rtx", timing_cache=cache)
    assert best.sidecar["compute_precision"] == "fp16" and best.sidecar["tf32"] is True
    # TensorRT-RTX's timing cache is a deprecated no-op: not written, and the notes say why.
    assert not cache.exists() and any("runtime cache" in n for n in best.sidecar["notes"])
    tf32 = build_engine(static_onnx, tmp_path / "tf32.engine", precision="tf32", flavour="rtx")
    assert tf32.sidecar["compute_precision"] == "fp32" and tf32.sidecar["tf32"] is True
    assert tf32.sidecar["profiles"][0]["min"] == tf32.sidecar["profiles"][0]["max"] == [1, 3, *STATIC[1:]]


def test_opset23_attention_is_decomposed_when_no_kernel_exists(tiny_onnx, tmp_path, capfd):
    path, _ = tiny_onnx("m3snet", attention="onnx23")
    shapes = SHAPES["m3snet"]
    result = build_engine(path, tmp_path / "att.engine", precision="fp16", shapes=shapes, flavour="rtx")
    assert result.sidecar["network"]["attention"] == 1
    # Channel attention has a dynamic token length (H*W): TensorRT-RTX 1.7 has no fused kernel.
    assert result.attention_decomposed
    assert "(decomposed)" in result.summary()
    assert "MyelinCheckException" not in capfd.readouterr().err  # the handled failure stays quiet
    with pytest.raises(EngineBuildError, match="dedicated kernel") as info:
        build_engine(path, tmp_path / "fused.engine", precision="fp16", shapes=shapes, flavour="rtx", attention="fused")
    assert "attention='decomposable'" in _one_line(info.value)
    assert not (tmp_path / "fused.engine").exists()
    forced = build_engine(path, tmp_path / "dec.engine", precision="fp32", shapes=shapes, flavour="rtx", attention="decomposable")
    assert forced.attention_decomposed


def _rejected_onnx(path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n"])
    node = helper.make_node("Unique", ["input"], ["output"], name="unsupported_unique")
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)]), path)


@pytest.mark.parametrize("case", ["channels", "static-size", "order", "rank", "parser", "unwritable", "precision"])
def test_failures_are_one_line_and_leave_no_file(case, static_onnx, tiny_onnx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    engine = out / "m.engine"
    onnx_path, kwargs, expected = static_onnx, {}, ""
    if case == "channels":
        onnx_path, kwargs, expected = tiny_onnx("m3snet")[0], {"shapes": {"opt": (1, 4, 32, 32)}}, "dimension 1 is fixed to 3"
    elif case == "static-size":
        kwargs, expected = {"shapes": {"opt": (1, 3, 128, 128)}}, "dimension 2 is fixed to 64"
    elif case == "order":
        onnx_path = tiny_onnx("m3snet")[0]
        kwargs, expected = {"shapes": {"min": (1, 3, 64, 64), "max": (1, 3, 32, 32)}}, "must grow from min to opt to max"
    elif case == "rank":
        kwargs, expected = {"shapes": {"opt": (3, 64, 64)}}, "expected four positive sizes"
    elif case == "parser":
        onnx_path = tmp_path / "rejected.onnx"
        _rejected_onnx(onnx_path)
        kwargs, expected = {"shapes": {"opt": (1, 3, 16, 16)}}, "node 'unsupported_unique' (Unique)"
        engine.write_bytes(b"a stale engine")  # a failed rebuild leaves what was there (#17 §8)
        sidecar_path(engine).write_text("{}")
    elif case == "unwritable":
        blocker = out / "a-file"
        blocker.write_text("not a folder")
        engine, expected = blocker / "m.engine", "cannot write"
    elif case == "precision":
        mixed, _ = to_mixed_precision(onnx.load(static_onnx), "fp16")
        onnx_path = tmp_path / "mixed.onnx"
        onnx.save(mixed, onnx_path)
        kwargs, expected = {"precision": "bf16"}, "already computes in fp16"
    with pytest.raises(EngineBuildError) as info:
        build_engine(onnx_path, engine, flavour="rtx", **kwargs)
    assert expected in _one_line(info.value)
    if case == "parser":  # untouched: test_gpu_build_and_device checks a real engine byte for byte
        assert engine.read_bytes() == b"a stale engine" and sidecar_path(engine).read_text() == "{}"
        assert _leftovers(out) == [engine.name, engine.name + ".json"]
        return
    assert not engine.exists() and not sidecar_path(engine).exists()
    assert _leftovers(out) == (["a-file"] if case == "unwritable" else [])


def test_mixed_graph_is_built_as_it_is(static_onnx, tmp_path):
    mixed, _ = to_mixed_precision(onnx.load(static_onnx), "bf16")
    path = tmp_path / "mixed.bf16.onnx"
    onnx.save(mixed, path)
    result = build_engine(path, tmp_path / "m.engine", precision="bf16", flavour="rtx")
    assert result.sidecar["onnx"]["graph_precision"] == "bf16"
    assert result.sidecar["mixed_precision"] is None  # no second pass over an already mixed graph


def test_profiles_follow_the_pad_multiple(tiny_onnx):
    for arch, multiple in (("m3snet", 16), ("mprnet", 8)):
        graph = graph_input(onnx.load(tiny_onnx(arch)[0]))
        assert graph.multiple == multiple and graph.shape == (None, 3, None, None)
        profile, notes = resolve_profile(graph)
        assert notes == []
        assert (profile.min, profile.opt, profile.max) == ((1, 3, 64, 64), (1, 3, 720, 1280), (1, 3, 1088, 1920))
    graph = graph_input(onnx.load(tiny_onnx("m3snet")[0]))
    with pytest.warns(UserWarning, match="rounded up to 1x3x48x64"):
        profile, notes = resolve_profile(graph, {"min": (1, 3, 40, 50), "max": (1, 3, 64, 64)})
    assert profile.min == (1, 3, 48, 64) and profile.opt == profile.max == (1, 3, 64, 64) and len(notes) == 1
    assert resolve_profile(graph, {"opt": (2, 3, 32, 48)})[0].min == (2, 3, 32, 48)


def test_parse_shapes():
    assert parse_shapes(["min=1x3x64x64", "max=2x3x128x256"]) == {"min": (1, 3, 64, 64), "max": (2, 3, 128, 256)}
    for bad in (["small=1x3x8x8"], ["min=1x3xax8"], ["min=0x3x8x8"], ["1x3x8x8"]):
        with pytest.raises(EngineBuildError):
            parse_shapes(bad)


def _gpu_present() -> bool:
    try:
        from irdeploy.runtime.tensorrt.device import current_gpu

        current_gpu()
    except NoGPUError:
        return False
    return True


def test_running_without_a_gpu_is_one_line(engines):
    if _gpu_present():
        pytest.skip("a GPU is present: tests/gpu/ runs the engines")
    with pytest.raises(NoGPUError, match="^no NVIDIA GPU / CUDA driver") as info:
        TensorRTEngine(engines[("m3snet", "fp32")].engine_path)
    _one_line(info.value)


def test_loading_refuses_engines_that_cannot_run_here(engines, tmp_path):
    source = engines[("m3snet", "fp32")].engine_path
    engine = tmp_path / source.name

    def install(corrupt: bool = False, sidecar: dict | None = None, drop_sidecar: bool = False) -> None:
        shutil.copy(source, engine)
        shutil.copy(sidecar_path(source), sidecar_path(engine))
        if corrupt:
            data = bytearray(engine.read_bytes())
            data[len(data) // 2] ^= 0xFF
            engine.write_bytes(bytes(data))
        if sidecar is not None:
            sidecar_path(engine).write_text(json.dumps(sidecar))
        if drop_sidecar:
            sidecar_path(engine).unlink()

    side = read_sidecar(source)
    cases = [
        ({"corrupt": True}, "corrupt or was replaced"),
        ({"drop_sidecar": True}, "no sidecar"),
        ({"sidecar": {**side, "tensorrt": {**side["tensorrt"], "version": "1.6.0.0"}}}, "built with TensorRT-RTX 1.6.0.0 but TensorRT-RTX 1.7.1.116 is installed"),
        ({"sidecar": {**side, "format": 99}}, "not an irdeploy engine sidecar"),
    ]
    if importlib.util.find_spec("tensorrt") is None:
        cases.append(({"sidecar": {**side, "tensorrt": {**side["tensorrt"], "flavour": "tensorrt"}}}, "which is not installed here"))
    for setup, expected in cases:
        install(**setup)
        with pytest.raises(EngineLoadError) as info:
            TensorRTEngine(engine)
        assert expected in _one_line(info.value), setup
    with pytest.raises(EngineLoadError, match="no such engine file"):
        TensorRTEngine(tmp_path / "absent.engine")
