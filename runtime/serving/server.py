"""``irdeploy serve``: NVIDIA Triton Inference Server running an irdeploy backend in its Python backend.

Two models share one backend (a :class:`~irdeploy.core.backend.Backend`, which pads and crops):

- ``<name>``: float32 NCHW in [0, 1] (input ``input``, output ``output``), any H and W;
- ``<name>_image``: uint8 HxWxC images (input ``image``, output ``restored``), so clients
  send plain pixels and the server converts, pads and crops (through ``<name>``).

Both batch dynamically. Images of different sizes cannot share one tensor, so each scheduled
batch is split by image size: requests of one size run as one backend batch, other sizes as
further batches in the same round. Triton itself rejects a wrong data type, rank, channel count
or a batch above ``max_batch``; irdeploy's model (:mod:`.python_model`) refuses an image outside
its :class:`~.python_model.SizeRule` (a graph: 1x1 to ``max_size`` as sent; an engine: its
profile, after padding). Every request gets its own answer: a
refused or failed request gets one line and the requests batched with it still run; tracebacks
go to Triton's log only. The server process is :mod:`.tritonserver`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from irdeploy.core.padding import aligned
from irdeploy.core.progress import step

from . import python_model as pm
from . import tritonserver
from .artifact import open_artifact_backend
from .errors import ServerExited, ServingError, require

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

    Triton stops when this process dies (Linux's parent-death signal), so a crashed irdeploy
    leaves no server behind; any thread may start it.

    ``max_batch``: Triton's max batch (default: the engine profile's max N, else 8).
    ``max_size``: largest (H, W) accepted: for a graph as sent (default 2160x3840), for an engine
    after padding (default and limit: its profile's max; its min is the smallest). After
    :meth:`start`, ``sizes`` is the rule (:class:`~.python_model.SizeRule`) and ``notes`` the
    warnings to show (a /dev/shm too small for a full batch).
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
        host = _ipv4(host)
        if http_port and http_port == grpc_port:
            raise ServingError(f"HTTP and gRPC need two ports; both are {http_port}")
        self.open_statistics = open_statistics
        self.artifact = Path(artifact)
        self.name = name
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or next(p for p in iter(lambda: free_port(host), None) if p != self.http_port)
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
            found = _probe(self.artifact, self.device, self.threads)
        self.max_batch, self.sizes = self._limits(found)
        self.notes = _shm_notes(self.max_batch, found.channels, self.sizes.max_size)
        self._workspace = tritonserver.workspace()
        try:
            repository = self._workspace / "models"
            common = self.sizes.parameters()
            private = {"artifact": str(self.artifact.resolve()), "device": self.device, "threads": self.threads}
            _write_model(repository, self.name, pm.TENSOR_IO, "TYPE_FP32", (found.channels, -1, -1), self.max_batch,
                         self.delay_us, {**common, pm.ROLE_KEY: "tensor"}, private)
            _write_model(repository, self.name + IMAGE_SUFFIX, pm.IMAGE_IO, "TYPE_UINT8", (-1, -1, found.channels),
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

    def _limits(self, found: _Found) -> tuple[int, pm.SizeRule]:
        """The max batch and size rule: the user's, within an engine profile's bounds (refused outside them)."""
        if found.max_shape is None:  # an ONNX graph: any size, up to a policy maximum, compared as sent
            max_batch = self._max_batch if self._max_batch is not None else DEFAULT_MAX_BATCH
            return max_batch, pm.SizeRule((1, 1), self._max_size or DEFAULT_MAX_SIZE, found.pad_multiple, padded=False)
        low, high = found.min_shape or (1, found.channels, 1, 1), found.max_shape
        max_batch = self._max_batch if self._max_batch is not None else high[0]
        if max_batch > high[0]:
            raise ServingError(f"max batch {max_batch} is larger than the engine profile's max batch {high[0]}")
        if low[0] > 1:
            raise ServingError(f"the engine profile's min batch is {low[0]}, but Triton sends batches from 1: "
                               f"rebuild with min=1x{low[1]}x{low[2]}x{low[3]}")
        max_size = (high[2], high[3])
        if self._max_size is not None:
            wanted = tuple(aligned(v, found.pad_multiple) for v in self._max_size)
            if wanted[0] > high[2] or wanted[1] > high[3]:
                raise ServingError(f"max size {self._max_size[0]}x{self._max_size[1]} (padded {wanted[0]}x{wanted[1]}) "
                                   f"is larger than the engine profile's {high[2]}x{high[3]}")
            max_size = wanted
        return max_batch, pm.SizeRule((low[2], low[3]), max_size, found.pad_multiple, padded=True)

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
        raise ServerExited(f"Triton exited by itself while serving (exit code {code}); its log says why")

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


@dataclass(frozen=True)
class _Found:
    """What the server needs to know of an artifact, read by opening it once."""

    channels: int
    pad_multiple: int
    min_shape: tuple[int, ...] | None
    max_shape: tuple[int, ...] | None


def _probe(artifact: Path, device: str, threads: int | None) -> _Found:
    """Open the artifact's backend as the server will (a bad artifact fails here, in one line) and
    release it: the server's copy lives in Triton's stub, and a GPU should not hold two."""
    backend = open_artifact_backend(artifact, device=device, threads=threads)
    try:
        return _Found(backend.channels, backend.pad_multiple, backend.min_shape, backend.max_shape)
    finally:
        backend.close()
        del backend


def _shm_notes(max_batch: int, channels: int, max_size: tuple[int, int]) -> list[str]:
    """A warning when /dev/shm cannot hold a full batch of the largest image.

    Triton's Python backend moves every tensor through shared memory: a tensor request and its
    answer in float32, an image request and its answer in uint8 plus the float32 pair it sends on,
    about 18 bytes per sample when both models are busy. Docker gives containers 64 MiB."""
    need = 18 * max_batch * channels * max_size[0] * max_size[1]
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return []
    free = stat.f_bavail * stat.f_frsize
    if free >= need:
        return []
    return [f"/dev/shm has {free / 2**20:.0f} MiB free; a batch of {max_batch} at {max_size[0]}x{max_size[1]} needs "
            f"about {need / 2**20:.0f} MiB (in Docker: run with --shm-size={-(-need // 2**30)}g; or lower --max-size/--max-batch)"]


def _write_model(repository: Path, name: str, io: tuple[str, str], data_type: str, dims: tuple[int, ...],
                 max_batch: int, delay_us: int, parameters: dict[str, str], private: dict | None = None) -> None:
    """``<repository>/<name>``: a Python-backend model running :mod:`.python_model` (config checked
    by Triton's schema); ``private`` goes to a file beside ``model.py`` that no client can read."""
    import json

    from .config import _pb2, to_text

    pb = _pb2()
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch)
    for field, tensor in ((config.input, io[0]), (config.output, io[1])):
        field.add(name=tensor, data_type=pb.DataType.Value(data_type), dims=list(dims))
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.Kind.KIND_CPU)  # the backend picks its device
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(to_text(config))
    (repository / name / "1" / "model.py").write_text(MODEL_PY)
    if private is not None:
        (repository / name / "1" / pm.PRIVATE_FILE).write_text(json.dumps(private))


def _ipv4(host: str) -> str:
    """``host`` as the numeric IPv4 address Triton binds to (it does not resolve names itself:
    ``localhost`` made it listen on 255.255.255.255); IPv6 is refused in one line."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            return socket.gethostbyname(host)
        except OSError:
            raise ServingError(f"host {host!r} does not resolve to an IPv4 address") from None
    if address.version != 4:
        raise ServingError(f"host {host} is IPv6; irdeploy serve listens on IPv4 (e.g. 127.0.0.1 or 0.0.0.0)")
    return host


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
