"""Start and stop NVIDIA's ``tritonserver`` binary on a model repository irdeploy writes.

The binary, its Python backend and the backend's stub for each Python version come from the
``nvidia-pytriton`` wheel (the ``serve`` extra): its files are used, not its Python API (see
:mod:`.python_model` for why). What the stub needs to run irdeploy's model:

- the stub links ``libpython3.x``: this interpreter's library folder goes first on
  ``LD_LIBRARY_PATH``, or a stub built against another patch release fails to load the model;
- the stub's embedded interpreter finds its ``sys.prefix`` through ``python3`` on ``PATH``: this
  interpreter's folder goes first, so the stub sees this virtual environment (and irdeploy);
- Triton looks for the stub only in its backend folder, so a private backend folder links the
  wheel's Python backend and the stub of this Python version.

Admin endpoints (model repository, shared memory, trace, logging, and statistics unless opened)
need a random access token, as PyTriton does; inference, health and metadata do not.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ServingError, require

ACCESS_HEADER = "triton-access-token"
ADMIN_ENDPOINTS = ("shared-memory", "model-repository", "statistics", "trace", "logging")
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
# Python-backend shared memory per model: start small (containers often have a 64 MiB /dev/shm)
# and grow in steps large enough that a 4K float32 batch does not grow it a megabyte at a time.
SHM_DEFAULT_BYTES = 4 << 20
SHM_GROWTH_BYTES = 16 << 20
_LOG_PREFIX = re.compile(r'^[EWI]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ')


def distribution() -> Path:
    """The ``tritonserver`` folder of the nvidia-pytriton wheel (one line if it is not there)."""
    require("pytriton")
    spec = importlib.util.find_spec("pytriton")
    root = Path(next(iter(spec.submodule_search_locations or []))) / "tritonserver"  # type: ignore[union-attr]
    if not (root / "bin" / "tritonserver").is_file():
        raise ServingError(f"no tritonserver binary in {root}; reinstall the serve extra: pip install \".[serve]\"")
    return root


def backend_folder(workspace: Path) -> Path:
    """A backend folder in ``workspace`` holding the wheel's Python backend and this Python's stub."""
    dist = distribution()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (dist / "python_backend_stubs").iterdir())
        raise ServingError(f"nvidia-pytriton has no Triton Python-backend stub for Python {version} (it has {', '.join(have)})")
    python = workspace / "backends" / "python"
    python.mkdir(parents=True)
    for source in [*(dist / "backends" / "python").iterdir(), stub]:
        if source.is_file():
            (python / source.name).symlink_to(source)
    return python.parent


def stub_environment() -> dict[str, str]:
    """This process's environment with libpython and this interpreter first (see module doc)."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when this process dies (no orphan server)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class TritonProcess:
    """One ``tritonserver`` serving ``repository``; ``start`` waits until every model is ready."""

    def __init__(self, repository: Path, backends: Path, *, host: str, http_port: int, grpc_port: int,
                 open_statistics: bool, log_file: Path | None, shm_prefix: str) -> None:
        self.token = secrets.token_urlsafe(24)
        restricted = [e for e in ADMIN_ENDPOINTS if not (open_statistics and e == "statistics")]
        rule = f"{','.join(restricted)}:{ACCESS_HEADER}={self.token}"
        self.url = f"http://{host}:{http_port}"
        self.args = [str(distribution() / "bin" / "tritonserver"), f"--model-repository={repository}",
                     f"--backend-directory={backends}", f"--http-address={host}", f"--http-port={http_port}",
                     f"--grpc-address={host}", f"--grpc-port={grpc_port}", "--allow-metrics=false",
                     "--exit-timeout-secs=5", f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}",
                     f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
                     f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
                     f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}"]
        if log_file is not None:
            self.args.append(f"--log-file={log_file}")
        self.log_file = log_file
        self._tail: collections.deque[str] = collections.deque(maxlen=400)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, models: list[str]) -> None:
        """Run the server; :class:`ServingError` with Triton's own reason if it stops or stalls."""
        self._proc = subprocess.Popen(self.args, env=stub_environment(), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                      start_new_session=True, preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._forward, name="tritonserver-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(self._ready(f"/v2/models/{m}/ready") for m in models):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                stalled = self._proc.poll() is None
                self.stop()
                what = f"was not ready after {START_TIMEOUT_S:.0f} s" if stalled else "stopped"
                raise ServingError(f"Triton {what}: {self.reason()}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self) -> None:
        """SIGINT (Triton's graceful stop), then SIGKILL after :data:`STOP_TIMEOUT_S`; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)

    def reason(self) -> str:
        """Triton's own reason for a failed start, in one line (glog prefix and escapes stripped).

        A model that failed to load says why; else Triton's closing ``error:`` line; else its first
        error line (on a machine without a GPU every start logs a CUDA error that stops nothing)."""
        lines = list(self._tail)
        if self.log_file is not None and self.log_file.is_file():
            lines += self.log_file.read_text(errors="replace").splitlines()
        texts = [_LOG_PREFIX.sub("", line).strip().strip('"') for line in lines
                 if line.startswith("error:") or line.startswith("E") and _LOG_PREFIX.match(line)]
        where = f" (log: {self.log_file})" if self.log_file else ""
        for wanted in ("failed to load '", "error:", ""):
            found = next((t for t in texts if wanted in t), None)
            if found is not None:
                return found.split("\\n")[0][:300] + where
        return f"no error in its log{where}"

    def _forward(self) -> None:
        """Triton's console output to this process's stdout, whole lines, and the last ones kept."""
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._tail.append(line.rstrip("\n"))
            sys.stdout.write(line)
            sys.stdout.flush()

    def _ready(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False


def workspace() -> Path:
    """A private folder for one server's repository and backend links (removed by :func:`remove`)."""
    return Path(tempfile.mkdtemp(prefix="irdeploy-serve-"))


def remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
