"""``irdeploy serve``: NVIDIA Triton Inference Server running an irdeploy backend in its Python backend.

Two models share one backend (a :class:`~irdeploy.core.backend.Backend`, which pads and crops):

- ``<name>``: float32 NCHW in [0, 1] (input ``input``, output ``output``), any H and W;
- ``<name>_image``: uint8 HxWxC images (input ``image``, output ``restored``), so clients
  send plain pixels and the server converts, pads and crops (through ``<name>``).

Both batch dynamically. Images of different sizes cannot share one tensor, so each scheduled
batch is split by image size: requests of one size run as one backend batch, other sizes as
further batches in the same round. Triton itself rejects a wrong data type, rank, channel count
or a batch above ``max_batch``; irdeploy's model (:mod:`.python_model`) refuses an image outside
1x1..``max_size`` (an engine's profile max by default). Every request gets its own answer: a
refused or failed request gets one line and the requests batched with it still run; tracebacks
go to Triton's log only. The server process is :mod:`.tritonserver`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from irdeploy.core.metadata import PAD_MODE_KEY, PAD_MULTIPLE_KEY
from irdeploy.core.progress import step

from . import python_model as pm
from . import tritonserver
from .artifact import open_artifact_backend
from .errors import ServingError, require

DEFAULT_MODEL = "irdeploy"
IMAGE_SUFFIX = "_image"
DEFAULT_MAX_BATCH = 8
# Largest H x W served from an ONNX graph (an engine's comes from its profile): 4K UHD.
DEFAULT_MAX_SIZE = (2160, 3840)
# The model file Triton's Python backend loads: irdeploy's model, importable in the stub.
MODEL_PY = "from irdeploy.runtime.serving.python_model import TritonPythonModel  # noqa: F401\n"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be bound now (Triton would otherwise fail after a long start).

    With ``SO_REUSEADDR``, as servers bind: a port whose last connections linger in TIME_WAIT
    (a server stopped a moment ago) is free; one something listens on is not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class TritonServer:
    """A Triton server for one ONNX graph or engine; ``start``/``stop`` or a ``with`` block.

    Start it from a thread that outlives it: Triton is told to stop when the thread that started
    it exits (Linux's parent-death signal), so a crashed irdeploy leaves no server behind.

    ``max_batch``: Triton's max batch (default: the engine profile's max N, else 8).
    ``max_size``: largest (H, W) accepted (default: the engine profile's, else 2160x3840).
    ``delay_us``: how long the dynamic batcher waits to fill a batch. Ports 0 pick free ones.
    ``device``: ``cpu`` (ONNX Runtime CPU) or ``cuda[:N]``; ``threads``: ONNX Runtime threads.
    ``log_file``: where Triton writes its log (default: this process's stdout).
    ``open_statistics``: serve Triton's statistics endpoint without the access token, so
    ``perf_analyzer`` (which reads it before and after measuring) can run; loopback hosts only.
    The other protected endpoints (model repository, shared memory, trace, logging) keep the token.
    """

    def __init__(self, artifact: str | os.PathLike, *, name: str = DEFAULT_MODEL, host: str = "127.0.0.1",
                 http_port: int = 0, grpc_port: int = 0, max_batch: int | None = None,
                 max_size: tuple[int, int] | None = None, delay_us: int = 500, device: str = "cpu",
                 threads: int | None = None, log_file: str | os.PathLike | None = None,
                 open_statistics: bool = False) -> None:
        from ..devices import check_spelling

        for label, value in (("max batch", max_batch), ("threads", threads)):
            if value is not None and value < 1:
                raise ServingError(f"{label} must be at least 1, got {value}")
        if delay_us < 0:
            raise ServingError(f"dynamic batching delay must be >= 0 microseconds, got {delay_us}")
        if max_size is not None and min(max_size) < 1:
            raise ServingError(f"max size must be at least 1x1, got {max_size[0]}x{max_size[1]}")
        if open_statistics and not _is_loopback(host):
            raise ServingError(f"open statistics (no access token) are for a loopback host such as 127.0.0.1, not {host}")
        check_spelling(device)
        self.open_statistics = open_statistics
        self.artifact = Path(artifact)
        self.name = name
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.delay_us = delay_us
        self.device = device
        self.threads = threads
        self.log_file = Path(log_file) if log_file else None
        self._max_batch = max_batch
        self._max_size = max_size
        self._triton: tritonserver.TritonProcess | None = None
        self._workspace: Path | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def start(self) -> TritonServer:
        """Check the artifact here (one line if it cannot serve), then start Triton and wait until both models are ready."""
        require("tritonclient")
        for port in (self.http_port, self.grpc_port):
            if not port_is_free(self.host, port):
                raise ServingError(f"port {port} on {self.host} is in use; choose another (--http-port/--grpc-port)")
        with step(f"checking {self.artifact.name}"):
            backend = open_artifact_backend(self.artifact, device=self.device, threads=self.threads)
        try:
            limit, channels, multiple, mode = backend.max_shape, backend.channels, backend.pad_multiple, backend.pad_mode
        finally:
            backend.close()  # the server's own copy is opened in Triton's Python-backend stub
        self.max_batch = self._max_batch if self._max_batch is not None else (limit[0] if limit else DEFAULT_MAX_BATCH)
        self.max_size = self._max_size or (tuple(limit[2:]) if limit else DEFAULT_MAX_SIZE)
        if limit and self.max_batch > limit[0]:
            raise ServingError(f"max batch {self.max_batch} is larger than the engine profile's max batch {limit[0]}")
        self._workspace = tritonserver.workspace()
        try:
            repository = self._workspace / "models"
            common = {pm.MAX_SIZE_KEY: f"{self.max_size[0]}x{self.max_size[1]}", PAD_MULTIPLE_KEY: str(multiple),
                      PAD_MODE_KEY: mode}
            _write_model(repository, self.name, pm.TENSOR_IO, "TYPE_FP32", (channels, -1, -1), self.max_batch,
                         self.delay_us, {**common, pm.ROLE_KEY: "tensor", pm.ARTIFACT_KEY: str(self.artifact.resolve()),
                                         pm.DEVICE_KEY: self.device, pm.THREADS_KEY: str(self.threads or "")})
            _write_model(repository, self.name + IMAGE_SUFFIX, pm.IMAGE_IO, "TYPE_UINT8", (-1, -1, channels),
                         self.max_batch, self.delay_us, {**common, pm.ROLE_KEY: "image", pm.TENSOR_MODEL_KEY: self.name})
            self._triton = tritonserver.TritonProcess(
                repository, tritonserver.backend_folder(self._workspace), host=self.host, http_port=self.http_port,
                grpc_port=self.grpc_port, open_statistics=self.open_statistics, log_file=self.log_file,
                shm_prefix=f"irdeploy_{os.getpid()}_{self.http_port}_")
            with step("starting Triton Inference Server and loading both models"):
                self._triton.start([self.name, self.name + IMAGE_SUFFIX])
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> None:
        """Serve until interrupted (Ctrl-C: a normal stop) or until Triton exits, then stop.

        :class:`ServingError` when Triton exits by itself (it crashed or was killed)."""
        assert self._triton is not None, "start() first"
        try:
            code = self._triton.wait()
        except KeyboardInterrupt:
            return
        finally:
            self.stop()
        raise ServingError(f"Triton exited by itself (exit code {code})")

    def stop(self) -> None:
        """Stop Triton and remove its workspace (idempotent)."""
        if self._triton is not None:
            self._triton.stop()
            self._triton = None
        tritonserver.remove(self._workspace)
        self._workspace = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_model(repository: Path, name: str, io: tuple[str, str], data_type: str, dims: tuple[int, ...],
                 max_batch: int, delay_us: int, parameters: dict[str, str]) -> None:
    """``<repository>/<name>``: a Python-backend model running :mod:`.python_model` (config checked by Triton's schema)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    config = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch)
    for field, tensor in ((config.input, io[0]), (config.output, io[1])):
        field.add(name=tensor, data_type=pb.DataType.Value(data_type), dims=list(dims))
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.Kind.KIND_CPU)  # the backend picks its device
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    (repository / name / "1" / "model.py").write_text(MODEL_PY)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
