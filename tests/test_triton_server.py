"""``irdeploy serve``: a real Triton Inference Server on 127.0.0.1, CPU, ONNX Runtime, irdeploy's
Python-backend model.

One server for the module, a tiny exported M3SNet, real photographs over HTTP and gRPC, compared
with the same graph run locally; concurrent requests, bad requests read with Triton's own
clients (one line each, the batch-mates still answered), a failing backend, and a clean
shutdown. Every request loop is bounded in count and time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton (Triton's binaries) is not installed (pip install \".[serve]\")")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from irdeploy.core.images import read_image, sample_path, to_batch  # noqa: E402
from irdeploy.core.ort_backend import OnnxRuntimeBackend  # noqa: E402
from irdeploy.runtime.serving import ServingError, TritonServer  # noqa: E402
from irdeploy.runtime.serving.batching import infer_by_size  # noqa: E402
from irdeploy.runtime.serving.pixels import to_float, to_uint8  # noqa: E402
from irdeploy.runtime.serving.python_model import SizeRule, failure_line, respond_by_size  # noqa: E402
from irdeploy.runtime.serving.server import free_port  # noqa: E402
from irdeploy.runtime.triton_client import restore  # noqa: E402

MAX_BATCH, MAX_SIZE = 4, (128, 128)
# Real photographs cut to sizes off the pad multiple of 16 (the server pads and crops).
IMAGES = [read_image(sample_path("chelsea.png"))[40:112, 150:250], read_image(sample_path("coffee.png"))[100:164, 200:248],
          read_image(sample_path("coffee.png"))[:50, :50]]


@pytest.fixture(scope="module")
def graph(tiny_onnx):
    return tiny_onnx("m3snet")[0]


@pytest.fixture(scope="module")
def local(graph):
    with OnnxRuntimeBackend(graph, providers=["CPUExecutionProvider"], threads=1) as backend:
        yield lambda image: backend.infer(to_batch(image))[0].transpose(1, 2, 0)


@pytest.fixture(scope="module")
def server(graph, tmp_path_factory):
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with TritonServer(graph, max_batch=MAX_BATCH, max_size=MAX_SIZE, delay_us=2000, threads=1, log_file=log,
                      open_statistics=True) as running:
        yield running


def test_statistics_answer_without_a_token_for_perf_analyzer(server):
    """What perf_analyzer reads before and after measuring: the statistics of one model, over HTTP
    and gRPC, with no access token; the other admin endpoints keep the server's access token."""
    restore(server.http_url, IMAGES[:1])  # at least one request counted
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url.split("://")[1])
        try:
            extra = {"as_json": True} if module is grpcclient else {}
            stats = client.get_inference_statistics(server.name, **extra)["model_stats"]
            assert [s["name"] for s in stats] == [server.name]
            assert int(stats[0]["inference_count"]) >= 1
            with pytest.raises(InferenceServerException, match="triton-access-token|restricted"):
                client.get_model_repository_index(**extra)
        finally:
            client.close()


def test_http_tensor_model_matches_the_local_backend(server, local):
    restored = restore(server.http_url, IMAGES)
    for image, out in zip(IMAGES, restored):
        assert out.shape == image.shape
        np.testing.assert_allclose(out, local(image), atol=1e-5)


def test_grpc_image_model_takes_plain_pixels(server, local):
    pixels = [to_float(to_uint8(image)) for image in IMAGES]  # what an 8-bit client really has
    restored = restore(server.grpc_url, pixels, model=f"{server.name}_image")
    for image, out in zip(pixels, restored):
        assert out.shape == image.shape
        # Server-side uint8 rounding of the same float output: at most one level apart.
        assert np.abs(out - to_float(to_uint8(local(image)))).max() <= 1 / 255 + 1e-6


def test_concurrent_requests_of_mixed_sizes(server, local):
    jobs = [(url, IMAGES[i % len(IMAGES)]) for i in range(12) for url in (server.http_url, server.grpc_url)][:16]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(restore, url, [image], timeout=60) for url, image in jobs]
        results = [f.result(timeout=120)[0] for f in futures]
    for (_, image), out in zip(jobs, results):
        np.testing.assert_allclose(out, local(image), atol=1e-5)


def test_one_batch_of_mixed_sizes_is_split_by_size(graph, local):
    """What the server does with a scheduled batch: same-size requests share one backend call."""
    calls = []

    class Counting(OnnxRuntimeBackend):
        def infer(self, batch):
            calls.append(batch.shape)
            return super().infer(batch)

    batches = [to_batch(IMAGES[0]), to_batch(IMAGES[1], IMAGES[1]), to_batch(IMAGES[0])]
    with Counting(graph, providers=["CPUExecutionProvider"], threads=1) as backend:
        outputs = infer_by_size(backend, batches, max_batch=2)
    assert sorted(calls) == sorted([(2, 3, 72, 100), (2, 3, 64, 48)])
    assert [o.shape[0] for o in outputs] == [1, 2, 1]
    np.testing.assert_allclose(outputs[1][1].transpose(1, 2, 0), local(IMAGES[1]), atol=1e-5)
    np.testing.assert_allclose(outputs[2][0].transpose(1, 2, 0), local(IMAGES[0]), atol=1e-5)


def _infer(client, module, model: str, name: str, array: np.ndarray, datatype: str):
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor])


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, local):
    good = to_batch(IMAGES[1])
    bad = {
        "float64 data": ("input", good.astype(np.float64), "FP64", "data-type"),
        "no batch dimension": ("input", good[0], "FP32", "shape"),
        "four channels": ("input", np.zeros((1, 4, 32, 32), np.float32), "FP32", "shape"),
        "empty image": ("input", np.zeros((1, 3, 0, 32), np.float32), "FP32", "image 0x32 is outside what this server accepts"),
        "empty image to the image model": ("image", np.zeros((1, 32, 0, 3), np.uint8), "UINT8", "image 32x0 is outside"),
        "batch above max": ("input", np.repeat(good, MAX_BATCH + 1, axis=0), "FP32", "batch-size"),
        "image above max size": ("input", np.zeros((1, 3, 200, 64), np.float32), "FP32", "outside what this server accepts"),
        "float pixels to the image model": ("image", np.zeros((1, 32, 32, 3), np.float32), "FP32", "data-type"),
    }
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url.split("://")[1])
        try:
            for label, (name, array, datatype, message) in bad.items():
                model = server.name + ("_image" if name == "image" else "")
                with pytest.raises(InferenceServerException, match=message) as caught:
                    _infer(client, module, model, name, array, datatype)
                _assert_one_line(caught.value.message(), label)
                out = _infer(client, module, server.name, "input", good, "FP32").as_numpy("output")
                np.testing.assert_allclose(out[0].transpose(1, 2, 0), local(IMAGES[1]), atol=1e-5, err_msg=label)
        finally:
            client.close()


def _assert_one_line(message: str, label: str = "") -> None:
    """What a Triton client reads: one line, no traceback, no server file path."""
    assert message and "\n" not in message.strip(), (label, message)
    assert "Traceback" not in message and ".py" not in message, (label, message)


def test_a_refused_request_does_not_fail_its_batch_mates(server, local):
    """Requests the batcher may schedule together: the oversized one fails alone, in one line."""
    good, big = to_batch(IMAGES[2]), np.zeros((1, 3, 200, 64), np.float32)
    jobs = [good, big, good, good, big, good]

    def send(array):
        client = grpcclient.InferenceServerClient(server.grpc_url.split("://")[1])
        try:
            return _infer(client, grpcclient, server.name, "input", array, "FP32").as_numpy("output")
        except InferenceServerException as exc:
            return exc
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(send, jobs, timeout=120))
    for array, answer in zip(jobs, answers):
        if array is big:
            assert isinstance(answer, InferenceServerException) and "INVALID_ARGUMENT" in str(answer.status())
            _assert_one_line(answer.message())
        else:
            np.testing.assert_allclose(answer[0].transpose(1, 2, 0), local(IMAGES[2]), atol=1e-5)


def test_a_failing_backend_is_one_line_to_clients_and_a_traceback_in_the_log(tiny_onnx, tmp_path):
    """A fixed 64x64 graph fed 48x48: ONNX Runtime fails inside the server. HTTP and gRPC clients
    read one line naming the failure; the traceback is in Triton's log only."""
    static = tiny_onnx("m3snet", static=(1, 64, 64))[0]
    log = tmp_path / "triton.log"
    with TritonServer(static, max_batch=1, threads=1, log_file=log) as running:
        for module, url in ((httpclient, running.http_url), (grpcclient, running.grpc_url)):
            client = module.InferenceServerClient(url.split("://")[1])
            try:
                with pytest.raises(InferenceServerException) as caught:
                    _infer(client, module, running.name, "input", np.zeros((1, 3, 48, 48), np.float32), "FP32")
                _assert_one_line(caught.value.message(), module.__name__)
                assert "invalid dimensions" in caught.value.message()
                assert caught.value.message().endswith("(the server log has the traceback)")
                ok = _infer(client, module, running.name, "input", np.zeros((1, 3, 64, 64), np.float32), "FP32")
                assert ok.as_numpy("output").shape == (1, 3, 64, 64)
            finally:
                client.close()
    assert "Traceback (most recent call last)" in log.read_text()


def test_respond_by_size_fails_only_the_size_that_failed():
    """The per-request rule of the server's model, without a server: refusals pass through, a
    size whose call raises gets one line per request, the other sizes still run."""
    logged = []

    def run(batches):
        if batches[0].shape[-1] == 7:
            raise RuntimeError("kernel exploded\nsecond line")
        return [b * 2 for b in batches]

    arrays = [np.ones((1, 3, 4, 4)), "image 0x4 is outside", np.ones((2, 3, 4, 7)), np.ones((1, 3, 4, 4))]
    results = respond_by_size(arrays, run, logged.append)
    assert results[1] == "image 0x4 is outside"
    assert results[2] == "RuntimeError: kernel exploded second line (the server log has the traceback)"
    np.testing.assert_array_equal(results[0], arrays[0] * 2)
    np.testing.assert_array_equal(results[3], arrays[3] * 2)
    assert len(logged) == 1 and "Traceback" in logged[0] and "kernel exploded" in logged[0]
    assert failure_line(ServingError("too big\n  by far")) == "too big by far"


def test_client_errors_are_one_line(server):
    with pytest.raises(ServingError, match="'no_such_model'"):
        restore(server.http_url, IMAGES[:1], model="no_such_model")
    with pytest.raises(ServingError, match="scheme must be http:// or grpc://"):
        restore("ftp://127.0.0.1:1", IMAGES[:1])
    with pytest.raises(ServingError, match="expected HxWx3 images"):
        restore(server.grpc_url, [IMAGES[0][..., 0]])
    for url in (server.http_url, server.grpc_url):  # a server-side refusal
        with pytest.raises(ServingError, match="outside what this server accepts") as caught:
            restore(url, [np.zeros((200, 64, 3), np.float32)])
        _assert_one_line(str(caught.value))
    with pytest.raises(ServingError, match="image 0x64 is empty"):  # refused before it is sent
        restore(server.grpc_url, [np.zeros((0, 64, 3), np.float32)])


def test_bad_settings_fail_before_starting(server, graph, tmp_path):
    with pytest.raises(ServingError, match="unknown artifact type '.pth'"):
        TritonServer(tmp_path / "model.pth").start()
    with pytest.raises(ServingError, match=f"port {server.http_port} on 127.0.0.1 is in use"):
        TritonServer(graph, http_port=server.http_port).start()


def test_a_model_that_fails_to_load_is_one_line_and_leaves_nothing(graph, monkeypatch):
    """Triton exits when a model's initialize raises: start() says Triton's reason in one line,
    and neither the server process nor its workspace is left."""
    import irdeploy.runtime.serving.server as server_module
    from irdeploy.runtime.serving import tritonserver

    made = []
    monkeypatch.setattr(server_module, "MODEL_PY", "class TritonPythonModel:\n    def initialize(self, args):\n"
                                                   "        raise RuntimeError('no weights here')\n")
    monkeypatch.setattr(tritonserver, "workspace", lambda real=tritonserver.workspace: made.append(real()) or made[-1])
    http = free_port()
    with pytest.raises(ServingError, match="Triton stopped: failed to load .*no weights here") as caught:
        TritonServer(graph, http_port=http, threads=1).start()
    assert "\n" not in str(caught.value)
    assert made and not made[0].exists()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    with pytest.raises(Exception):
        client.is_server_live()
    client.close()


def test_the_model_config_clients_read_holds_no_server_path(server):
    """Any client may read a model's configuration: the artifact's path stays in a private file."""
    client = httpclient.InferenceServerClient(server.http_url.split("://")[1])
    try:
        for model in (server.name, server.name + "_image"):
            params = client.get_model_config(model).get("parameters", {})
            assert params["irdeploy.max_size"]["string_value"] == "128x128"
            assert not any("/" in v["string_value"] for v in params.values()), params
            assert "irdeploy.pad_multiple" not in params  # the client must not pad: the server does
    finally:
        client.close()


def test_size_rules_for_graphs_and_engine_profiles(graph):
    """A graph's maximum is compared with the image as sent (--max-size 1080x1920 takes 1080p);
    an engine's profile bounds the padded tensor, from its min (refused in one line, 400) to its
    max; a min batch above 1, a max batch or max size above the profile are refused at start."""
    from irdeploy.runtime.serving.server import _Found

    assert SizeRule((1, 1), (1080, 1920), 16, padded=False).error(1080, 1920) is None
    engine = _Found(channels=3, pad_multiple=16, min_shape=(1, 3, 64, 64), max_shape=(4, 3, 512, 512))
    max_batch, rule = TritonServer(graph)._limits(engine)
    assert max_batch == 4 and rule.padded and rule.min_size == (64, 64) and rule.max_size == (512, 512)
    assert rule.error(50, 64) is None  # padded to 64x64
    assert rule.error(32, 32) == ("image 32x32 is outside what this server accepts "
                                  "(64x64 to 512x512 after padding to multiples of 16 (the engine's profile))")
    assert rule.error(500, 64) is None and rule.error(520, 64) is not None
    assert TritonServer(graph, max_size=(300, 300))._limits(engine)[1].max_size == (304, 304)
    for kwargs, found, message in (
            ({"max_batch": 8}, engine, "max batch 8 is larger than the engine profile's max batch 4"),
            ({"max_size": (600, 600)}, engine, "max size 600x600 .* larger than the engine profile's 512x512"),
            ({}, _Found(3, 16, (2, 3, 64, 64), (4, 3, 512, 512)), "min batch is 2, but Triton sends batches from 1")):
        with pytest.raises(ServingError, match=message):
            TritonServer(graph, **kwargs)._limits(found)


def test_an_engine_is_served_inside_its_profile(tmp_path, monkeypatch):
    """A TensorRT engine served end to end, on the rule-enforcing CUDA/TensorRT simulator inside
    Triton's stub (it computes 0.5 x + 0.25): a padded size inside the profile is answered and
    cropped back, one below the profile's min is refused in one line (400) naming the min, and an
    engine whose profile needs batches of 2 is refused before Triton starts."""
    import irdeploy.runtime.serving.server as server_module
    from irdeploy.runtime.tensorrt.simulated import simulate, write_engine

    monkeypatch.setattr(server_module, "MODEL_PY", "from irdeploy.runtime.tensorrt.simulated import simulate\n"
                        "_simulator = simulate()  # held: a dropped generator would undo the simulation\n"
                        "_simulator.__enter__()\n" + server_module.MODEL_PY)
    engine = write_engine(tmp_path / "m.engine", profile=((1, 3, 64, 64), (1, 3, 64, 64), (2, 3, 128, 128)))
    with simulate():
        running = TritonServer(engine, log_file=tmp_path / "triton.log").start()
    try:
        assert running.max_batch == 2 and running.sizes.min_size == (64, 64) and running.sizes.padded
        client = httpclient.InferenceServerClient(running.http_url.split("://")[1])
        x = np.random.default_rng(0).random((1, 3, 60, 100), np.float32)  # padded to 64x112 (multiple 16)
        out = _infer(client, httpclient, running.name, "input", x, "FP32").as_numpy("output")
        np.testing.assert_allclose(out, 0.5 * x + 0.25, atol=1e-6)
        with pytest.raises(InferenceServerException, match="image 32x32 is outside .*64x64 to 128x128") as caught:
            _infer(client, httpclient, running.name, "input", x[..., :32, :32].copy(), "FP32")
        _assert_one_line(caught.value.message())
        client.close()
    finally:
        running.stop()
    batch_two = write_engine(tmp_path / "b.engine", profile=((2, 3, 16, 16), (2, 3, 32, 32), (4, 3, 64, 64)))
    with simulate(), pytest.raises(ServingError, match="min batch is 2, but Triton sends batches from 1"):
        TritonServer(batch_two).start()


def test_hosts_and_ports_triton_can_listen_on(graph):
    assert TritonServer(graph, host="localhost").host == "127.0.0.1"  # Triton itself would bind 255.255.255.255
    with pytest.raises(ServingError, match="IPv6"):
        TritonServer(graph, host="::1")
    with pytest.raises(ServingError, match="does not resolve"):
        TritonServer(graph, host="no-such-host.invalid")
    with pytest.raises(ServingError, match="HTTP and gRPC need two ports; both are 9000"):
        TritonServer(graph, http_port=9000, grpc_port=9000)


def test_shared_memory_warning_names_the_fix():
    from irdeploy.runtime.serving.server import _shm_notes

    assert _shm_notes(1, 3, (8, 8)) == []
    (note,) = _shm_notes(10**6, 3, (2160, 3840))
    assert note.startswith("/dev/shm has ") and "--shm-size=" in note and "--max-size" in note


def test_the_readiness_check_ignores_an_http_proxy(server, monkeypatch, tmp_path):
    from irdeploy.runtime.serving.tritonserver import TritonProcess

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    probe = TritonProcess(tmp_path / "models", tmp_path, host="127.0.0.1", http_port=server.http_port, grpc_port=1,
                          open_statistics=False, log_file=None, shm_prefix="x")
    assert probe._ready("/v2/health/ready")


def test_a_failed_start_reads_only_its_own_lines_of_a_reused_log(tmp_path):
    from irdeploy.runtime.serving.tritonserver import TritonProcess

    log = tmp_path / "triton.log"
    log.write_text('E1201 10:00:00.000000 1 model_lifecycle.cc:642] "failed to load \'irdeploy\' version 1: old"\n')
    process = TritonProcess(tmp_path / "models", tmp_path, host="127.0.0.1", http_port=1, grpc_port=2,
                            open_statistics=False, log_file=log, shm_prefix="x")
    with open(log, "a") as out:
        out.write('E1201 10:00:01.000000 1 model_lifecycle.cc:642] "failed to load \'irdeploy\' version 1: new\\nAt:"\n')
    assert process.reason() == f"failed to load 'irdeploy' version 1: new (log: {log})"


def test_console_output_is_drained_after_stdout_goes_away(tmp_path, monkeypatch):
    """A closed stdout (``| head``, a log shipper restarting) must not stop the draining of the
    server's console: a full pipe would block the server's next log write."""
    import io

    from irdeploy.runtime.serving.tritonserver import TritonProcess

    class Gone(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    process = TritonProcess(tmp_path / "models", tmp_path, host="127.0.0.1", http_port=1, grpc_port=2,
                            open_statistics=False, log_file=None, shm_prefix="x")
    process.args = [sys.executable, "-c", "import sys\nfor i in range(20000): print('x' * 200)\nprint('last')"]
    monkeypatch.setattr(sys, "stdout", Gone())
    process.start([])
    waiter = threading.Thread(target=process.wait, daemon=True)
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive() and process.exit_code == 0  # 4 MB through a 64 KiB pipe: drained
    assert process.reason() == "last"


def test_workspaces_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import tempfile

    from irdeploy.runtime.serving import tritonserver

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"{tritonserver.WORKSPACE_PREFIX}999999999-abc"  # no such pid
    dead.mkdir()
    mine = tritonserver.workspace()
    assert not dead.exists() and mine.name.startswith(f"{tritonserver.WORKSPACE_PREFIX}{os.getpid()}-")
    assert tritonserver.workspace().exists() and mine.exists()  # a live process's folders stay


def test_shutdown_is_clean(server):
    """Last in the module: stop the shared server; the ports close and a second stop is harmless."""
    client = httpclient.InferenceServerClient(server.http_url.split("://")[1])
    assert client.is_server_live()
    client.close()
    server.stop()
    server.stop()
    client = httpclient.InferenceServerClient(server.http_url.split("://")[1])
    with pytest.raises(Exception):
        client.is_server_live()
    client.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_serve_until_interrupted(graph, tmp_path, stop):
    """``irdeploy serve`` in a subprocess: ready line, a real request, Ctrl-C, exit code 0.

    Triton's log goes to a file: on standard output its block-buffered writes can land mid-line
    around irdeploy's ready line. What the server printed is kept for the failure message."""
    http = free_port()
    grpc = next(port for port in iter(free_port, None) if port != http)
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "irdeploy", "serve", "--onnx", str(graph), "--http-port", str(http),
                                 "--grpc-port", str(grpc), "--threads", "1", "--max-batch", "2",
                                 "--log-file", str(tmp_path / "triton.log")],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    watchdog = threading.Timer(240, proc.kill)  # a server that never gets ready must not hang the suite
    watchdog.start()
    try:
        line = next((line for line in proc.stdout if "serving " in line), "")
        why = f"exit code {proc.poll()}; stderr: {stderr.read_text()[-2000:]}"
        assert f"http://127.0.0.1:{http}" in line and "max batch 2" in line, why
        assert restore(f"grpc://127.0.0.1:{grpc}", IMAGES[:1])[0].shape == IMAGES[0].shape
        proc.send_signal(stop)
        proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.read_text()[-2000:]
        assert not list(Path(tempfile.gettempdir()).glob(f"irdeploy-serve-{proc.pid}-*"))  # workspace removed
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_server_started_from_a_short_lived_thread_keeps_serving(graph):
    """The parent-death signal follows the thread that forked: Triton is forked by the server's own
    thread, so the caller's thread may end (a request handler, a worker) and Triton stays."""
    running = TritonServer(graph, threads=1, log_file="/dev/null")
    starter = threading.Thread(target=running.start)
    starter.start()
    starter.join(180)
    try:
        time.sleep(1)  # a SIGTERM from the parent-death signal would have stopped it by now
        assert restore(running.http_url, IMAGES[:1])[0].shape == IMAGES[0].shape
    finally:
        running.stop()


def test_a_killed_server_process_leaves_no_triton_behind(graph):
    """SIGKILL of the process that started Triton (no cleanup runs): Triton gets the parent-death
    signal and its port closes."""
    http = free_port()
    grpc = next(port for port in iter(free_port, None) if port != http)
    script = ("import sys, time\nfrom irdeploy.runtime.serving import TritonServer\n"
              f"TritonServer(sys.argv[1], http_port={http}, grpc_port={grpc}, threads=1, log_file=sys.argv[2]).start()\n"
              "print('up', flush=True)\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(graph), "/dev/null"], stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        assert "up" in proc.stdout.readline()
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        assert client.is_server_live()
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.is_server_live()
            except Exception:  # noqa: BLE001 - refused connection: Triton is gone
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Triton still answers on port {http} 30 s after its parent was killed")
        client.close()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()


def test_client_pads_for_a_repository_model(graph, local):
    """A model from ``irdeploy triton`` runs the raw graph: the client pads to the multiple its
    config.pbtxt names and crops the answer (here the graph runs in local ONNX Runtime)."""
    import onnxruntime as ort
    from google.protobuf.json_format import MessageToDict

    from irdeploy.runtime.serving import ConfigOptions, build_config, inspect_artifact
    from irdeploy.runtime.triton_client import _Contract

    spec = inspect_artifact(graph)
    config = MessageToDict(build_config(spec, "m", ConfigOptions()), preserving_proto_field_name=True)
    meta = {"name": "m", "inputs": [{"name": spec.input.name, "datatype": "FP32", "shape": [-1, 3, -1, -1]}],
            "outputs": [{"name": spec.output.name, "datatype": "FP32", "shape": [-1, 3, -1, -1]}]}
    contract = _Contract(meta, config)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    image = IMAGES[0]  # 72x100: off the multiple of 16
    sent = contract.encode(image)
    assert sent.shape == (1, 3, 80, 112)
    out = contract.decode(session.run(None, {spec.input.name: sent})[0], image.shape[:2])
    np.testing.assert_allclose(out, local(image), atol=1e-5)
