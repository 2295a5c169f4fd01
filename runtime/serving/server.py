"""``irdeploy serve``: a real Triton Inference Server (through PyTriton) running an irdeploy backend.

Two models are bound to one backend (a :class:`~irdeploy.core.backend.Backend`, which pads and crops):

- ``<name>``: float32 NCHW in [0, 1] (input ``input``, output ``output``), any H and W;
- ``<name>_image``: uint8 HxWxC images (input ``image``, output ``restored``), so clients
  send plain pixels and the server converts, pads and crops.

Both batch dynamically. Images of different sizes cannot share one tensor, so each scheduled
batch is split by image size (:func:`~irdeploy.runtime.serving.batching.infer_by_size`):
requests of one size run as one backend batch, other sizes as further batches in the same
round, and every request gets its own result back. Triton itself
rejects a wrong data type, rank, channel count or a batch above ``max_batch`` before any of
that; an image larger than ``max_size`` (an engine's profile max by default) fails in the
server. PyTriton reports a failure to every request of the batch it was scheduled in (it has
no per-request errors), so a too-large image can fail same-moment requests with it; the server
keeps serving either way. What a client reads is PyTriton's text: irdeploy's one-line reason
inside PyTriton's traceback (irdeploy's own client, :mod:`irdeploy.runtime.triton_client`,
extracts the line); a tensor with a zero H or W fails in PyTriton's transport before
:meth:`TritonServer._restore` can refuse it (the client refuses it before sending).

Triton's Python-backend stub links ``libpython3.x``: the server is started with the running
interpreter's own library folder first on ``LD_LIBRARY_PATH``, or a stub built against another
patch release of Python fails to load the model.
"""

from __future__ import annotations

import os
import socket
import sysconfig
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.padding import aligned

from .artifact import open_artifact_backend
from .batching import infer_by_size
from .errors import ServingError, require
from .pixels import to_float, to_uint8

DEFAULT_MODEL = "irdeploy"
IMAGE_SUFFIX = "_image"
DEFAULT_MAX_BATCH = 8
# Largest H x W served from an ONNX graph (an engine's comes from its profile): 4K UHD.
DEFAULT_MAX_SIZE = (2160, 3840)
TENSOR_IO = ("input", "output")
IMAGE_IO = ("image", "restored")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be bound now (Triton would otherwise fail after a long start)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class TritonServer:
    """A Triton server for one ONNX graph or engine; ``start``/``stop`` or a ``with`` block.

    ``max_batch``: Triton's max batch (default: the engine profile's max N, else 8).
    ``max_size``: largest (H, W) accepted (default: the engine profile's, else 2160x3840).
    ``delay_us``: how long the dynamic batcher waits to fill a batch. Ports 0 pick free ones.
    ``device``: ``cpu`` (ONNX Runtime CPU) or ``cuda[:N]``; ``threads``: ONNX Runtime threads.
    ``log_file``: where Triton writes its log (default: this process's stdout).
    ``open_statistics``: serve Triton's statistics endpoint without PyTriton's access token, so
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
        self._lock = threading.Lock()  # a TensorRT engine's buffers and stream serve one call at a time
        self._backend: Any = None
        self._triton: Any = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def start(self) -> TritonServer:
        """Load the backend, start Triton and wait until both models are ready."""
        require("pytriton")
        for port in (self.http_port, self.grpc_port):
            if not port_is_free(self.host, port):
                raise ServingError(f"port {port} on {self.host} is in use; choose another (--http-port/--grpc-port)")
        from pytriton.exceptions import PyTritonError
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

        self._backend = open_artifact_backend(self.artifact, device=self.device, threads=self.threads)
        limit = self._backend.max_shape
        self.max_batch = self._max_batch if self._max_batch is not None else (limit[0] if limit else DEFAULT_MAX_BATCH)
        self.max_size = self._max_size or (tuple(limit[2:]) if limit else DEFAULT_MAX_SIZE)
        if limit and self.max_batch > limit[0]:
            self._backend.close()
            raise ServingError(f"max batch {self.max_batch} is larger than the engine profile's max batch {limit[0]}")
        channels = self._backend.channels
        _prepend_libpython()
        config = TritonConfig(http_address=self.host, http_port=self.http_port, grpc_address=self.host,
                              grpc_port=self.grpc_port, allow_metrics=False, exit_timeout_secs=5,
                              log_file=self.log_file)
        batching = ModelConfig(max_batch_size=self.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=self.delay_us))
        protected = [e for e in DEFAULT_PROTECTED_ENDPOINTS if not (self.open_statistics and e == "statistics")]
        self._triton = Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=protected))
        try:
            self._triton.bind(self.name, self._infer_tensors,
                              inputs=[Tensor(name=TENSOR_IO[0], dtype=np.float32, shape=(channels, -1, -1))],
                              outputs=[Tensor(name=TENSOR_IO[1], dtype=np.float32, shape=(channels, -1, -1))],
                              config=batching)
            self._triton.bind(self.name + IMAGE_SUFFIX, self._infer_images,
                              inputs=[Tensor(name=IMAGE_IO[0], dtype=np.uint8, shape=(-1, -1, channels))],
                              outputs=[Tensor(name=IMAGE_IO[1], dtype=np.uint8, shape=(-1, -1, channels))],
                              config=batching)
            self._triton.run()
        except (PyTritonError, TimeoutError) as exc:
            self.stop()
            raise ServingError(f"Triton did not start: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> None:
        """Serve until interrupted (Ctrl-C) or until Triton exits, then stop."""
        try:
            self._triton.serve()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop Triton and release the backend (idempotent)."""
        if self._triton is not None:
            self._triton.stop()
            self._triton = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _infer_tensors(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        outputs = self._restore([np.asarray(r[TENSOR_IO[0]], dtype=np.float32) for r in requests])
        return [{TENSOR_IO[1]: out} for out in outputs]

    def _infer_images(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        batches = [np.ascontiguousarray(to_float(r[IMAGE_IO[0]]).transpose(0, 3, 1, 2)) for r in requests]
        return [{IMAGE_IO[1]: to_uint8(out.transpose(0, 2, 3, 1))} for out in self._restore(batches)]

    def _restore(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Refuse images over ``max_size``, then run the batches one backend call per image size."""
        max_h, max_w = self.max_size
        multiple = self._backend.pad_multiple
        for batch in batches:
            h, w = batch.shape[-2:]
            if h < 1 or w < 1 or aligned(h, multiple) > max_h or aligned(w, multiple) > max_w:
                raise ServingError(f"image {h}x{w} is outside what this server accepts "
                                   f"(1x1 to {max_h}x{max_w}, padded to multiples of {multiple})")
        with self._lock:
            return infer_by_size(self._backend, batches, self.max_batch)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prepend_libpython() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH (inherited by Triton's stub)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and current.split(":")[0] != libdir:
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir
