"""``irdeploy triton``: model repositories whose config.pbtxt Triton's own schema accepts.

Real tiny graphs exported by irdeploy and a real engine built by TensorRT-RTX on CPU; every
config is parsed back with tritonclient's ``model_config_pb2`` and compared with the artifact.
"""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
from google.protobuf import text_format

from conftest import requires_rtx
from irdeploy.core.padding import INFERENCE_PAD_MODE

pytest.importorskip("tritonclient", reason="tritonclient is not installed (pip install \".[serve]\")")
from tritonclient.grpc import model_config_pb2 as pb  # noqa: E402

from irdeploy.runtime.serving import ConfigOptions, ServingError, build_config, inspect_artifact, validate_config, write_repository  # noqa: E402
from irdeploy.runtime.serving.config import to_text  # noqa: E402


def _parse(path) -> pb.ModelConfig:
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def _io(onnx_path) -> tuple[str, str]:
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return graph.input[0].name, graph.output[0].name


@pytest.fixture(scope="module")
def graph(tiny_onnx):
    return tiny_onnx("m3snet")[0]


@pytest.fixture(scope="module")
def engine(graph, tmp_path_factory):
    """A real TensorRT-RTX engine (built on CPU) with batch 1 to 4 in its profile, and its sidecar."""
    from irdeploy.runtime.tensorrt import build_engine

    path = tmp_path_factory.mktemp("engine") / "m3snet.fp32.engine"
    return build_engine(graph, path, precision="fp32", flavour="rtx",
                        shapes={"min": (1, 3, 32, 32), "opt": (2, 3, 64, 96), "max": (4, 3, 128, 128)}).engine_path


def test_onnx_repository_layout_and_config(graph, tmp_path):
    result = write_repository(tmp_path / "repo", "m3snet_deblur", graph,
                              options=ConfigOptions(max_batch=8, instances=2, delay_us=700))
    model_dir = tmp_path / "repo" / "m3snet_deblur"
    assert result.model_dir == model_dir
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()) == ["1/model.onnx", "config.pbtxt"]
    assert (model_dir / "1" / "model.onnx").read_bytes() == graph.read_bytes()
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]  # no staging folder left

    config = _parse(model_dir / "config.pbtxt")
    name_in, name_out = _io(graph)
    assert (config.name, config.backend, config.platform, config.max_batch_size) == ("m3snet_deblur", "onnxruntime", "", 8)
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [(name_in, "TYPE_FP32", [3, -1, -1])]
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in config.output] == [(name_out, "TYPE_FP32", [3, -1, -1])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 700
    assert [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(2, "KIND_CPU")]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    (warm,) = config.model_warmup
    assert warm.batch_size == 1 and list(warm.inputs[name_in].dims) == [3, 256, 256] and warm.inputs[name_in].random_data
    assert config.parameters["irdeploy.pad_multiple"].string_value == "16"
    assert config.parameters["irdeploy.pad_mode"].string_value == INFERENCE_PAD_MODE


def test_onnx_with_tensorrt_accelerator_runs_on_gpu_instances(graph):
    spec = inspect_artifact(graph)
    config = build_config(spec, "m", ConfigOptions(accelerator="tensorrt"))
    assert [a.name for a in config.optimization.execution_accelerators.gpu_execution_accelerator] == ["tensorrt"]
    assert pb.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    with pytest.raises(ServingError, match="KIND_GPU"):
        build_config(spec, "m", ConfigOptions(accelerator="cuda", kind="cpu"))
    with pytest.raises(ServingError, match="unknown accelerator"):
        build_config(spec, "m", ConfigOptions(accelerator="openvino"))


def test_static_graph_is_served_without_batching(tiny_onnx, tmp_path):
    static = tiny_onnx("m3snet", static=(1, 64, 64))[0]  # the static graph test_engine_build uses too
    config = build_config(inspect_artifact(static), "m", ConfigOptions())
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 64, 64]
    assert not config.HasField("dynamic_batching")
    assert config.model_warmup[0].batch_size == 0 and list(config.model_warmup[0].inputs[config.input[0].name].dims) == [1, 3, 64, 64]
    with pytest.raises(ServingError, match="fixed batch of 1"):
        write_repository(tmp_path, "m", static, options=ConfigOptions(max_batch=4))
    assert not (tmp_path / "m").exists()


@requires_rtx
def test_engine_repository_takes_limits_from_the_sidecar(graph, engine, tmp_path, monkeypatch):
    # The sidecar is enough: importing TensorRT here would be a bug.
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = write_repository(tmp_path, "m3snet_plan", graph, engine)
    model_dir = tmp_path / "m3snet_plan"
    assert (model_dir / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert not (model_dir / "1" / "model.onnx").exists()
    config = _parse(model_dir / "config.pbtxt")
    assert (config.platform, config.backend, config.max_batch_size) == ("tensorrt_plan", "", 4)  # the profile's max N
    assert pb.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    assert list(config.input[0].dims) == [3, -1, -1] and config.input[0].name == _io(graph)[0]
    assert list(config.model_warmup[0].inputs[config.input[0].name].dims) == [3, 64, 96]  # the profile's opt
    assert "TensorRT plan" in result.summary()


@requires_rtx
def test_engine_batch_beyond_its_profile_writes_nothing(graph, engine, tmp_path):
    with pytest.raises(ServingError, match="larger than the engine profile's max batch 4"):
        write_repository(tmp_path, "m", graph, engine, ConfigOptions(max_batch=8))
    with pytest.raises(ServingError, match="KIND_GPU"):
        write_repository(tmp_path, "m", graph, engine, ConfigOptions(kind="cpu"))
    assert list(tmp_path.iterdir()) == []


@requires_rtx
def test_engine_must_come_from_the_given_graph(graph, engine, tmp_path):
    proto = onnx.load(str(graph))
    proto.doc_string = "retrained"  # same names and shapes, another graph
    other = tmp_path / "retrained.onnx"
    onnx.save(proto, str(other))
    with pytest.raises(ServingError, match="was not built from"):
        inspect_artifact(other, engine)


def test_profile_whose_min_batch_is_above_one_is_refused(graph, tmp_path):
    """Triton sends batches from 1; an engine that needs 2 would fail on the first lone request."""
    import dataclasses

    from irdeploy.runtime.tensorrt.profiles import Profile

    spec = inspect_artifact(graph)
    spec = dataclasses.replace(spec, kind="engine", min_batch=2, max_batch=4,
                               profile=Profile(spec.input.name, (2, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64)))
    with pytest.raises(ServingError, match="min batch is 2"):
        build_config(spec, "m", ConfigOptions())


def test_validation_rejects_configs_triton_would_not_load(graph):
    spec = inspect_artifact(graph)
    good = to_text(build_config(spec, "m", ConfigOptions()))
    name_in = spec.input.name
    broken = {
        "not in Triton's schema": good + "\nmax_batch: 4\n",
        f"is not the artifact's input '{name_in}'": good.replace(f'name: "{name_in}"', 'name: "image"', 1),
        "TYPE_FP16, the artifact's is TYPE_FP32": good.replace("TYPE_FP32", "TYPE_FP16", 1),
        "dims \\[3, 64, 64\\]": good.replace("dims: -1\n  dims: -1", "dims: 64\n  dims: 64", 1),
        "needs \\('', 'onnxruntime'\\)": good.replace('backend: "onnxruntime"', 'platform: "tensorrt_plan"'),
        "fixed|dynamic": good.replace("max_batch_size: 8", "max_batch_size: 0"),
    }
    for message, text in broken.items():
        assert text != good, message
        with pytest.raises(ServingError, match=message.replace("not in Triton's schema", "does not parse")):
            validate_config(text, spec)


def test_bad_artifacts_and_names(graph, tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not a graph")
    with pytest.raises(ServingError, match="unknown artifact type '.pth'"):
        write_repository(tmp_path / "repo", "m", checkpoint)
    with pytest.raises(ServingError, match="no such ONNX file"):
        write_repository(tmp_path / "repo", "m", tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ServingError, match="not an ONNX model"):
        write_repository(tmp_path / "repo", "m", garbage)
    with pytest.raises(ServingError, match="no such engine file"):
        write_repository(tmp_path / "repo", "m", graph, tmp_path / "missing.engine")
    with pytest.raises(ServingError, match="bad model name"):
        write_repository(tmp_path / "repo", "../escape", graph)
    assert not (tmp_path / "repo").exists() or list((tmp_path / "repo").iterdir()) == []


def test_existing_model_is_replaced_only_with_force(graph, tmp_path):
    write_repository(tmp_path, "m", graph, options=ConfigOptions(max_batch=2))
    with pytest.raises(ServingError, match="exists"):
        write_repository(tmp_path, "m", graph, options=ConfigOptions(max_batch=4))
    assert _parse(tmp_path / "m" / "config.pbtxt").max_batch_size == 2
    write_repository(tmp_path, "m", graph, options=ConfigOptions(max_batch=4), force=True)
    assert _parse(tmp_path / "m" / "config.pbtxt").max_batch_size == 4


def test_cli_triton(graph, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "irdeploy", "triton", *a], capture_output=True, text=True, timeout=300)  # noqa: E731
    ok = run("--onnx", str(graph), "-o", str(tmp_path / "repo"), "--name", "m3snet_deblur", "--max-batch", "4",
             "--instances", "2", "--dynamic-batching-delay-us", "250")
    assert ok.returncode == 0, ok.stderr
    config = _parse(tmp_path / "repo" / "m3snet_deblur" / "config.pbtxt")
    assert (config.max_batch_size, config.instance_group[0].count, config.dynamic_batching.max_queue_delay_microseconds) == (4, 2, 250)
    assert "m3snet_deblur" in ok.stdout
    bad = run("--onnx", str(tmp_path / "nothing.onnx"), "-o", str(tmp_path / "repo"), "--name", "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such ONNX file" in bad.stderr
