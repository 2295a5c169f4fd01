"""Start and stop NVIDIA's ``tritonserver`` binary on a model repository irdeploy writes.

The binary, its Python backend and the backend's stub for each Python version come from the
``nvidia-pytriton`` wheel (the ``serve`` extra): its files are used, not its Python API (see
:mod:`.python_model` for why). What the stub needs to run irdeploy's model:

- the stub links ``libpython3.x``: this interpreter's own libpython goes first on
  ``LD_LIBRARY_PATH``, so the stub runs the same Python as this process;
- the stub's embedded interpreter finds its ``sys.prefix`` through ``python3`` on ``PATH``: this
  interpreter's folder goes first, so the stub sees this virtual environment (and irdeploy);
- Triton looks for the stub only in its backend folder, so a private backend folder links the
  wheel's Python backend and the stub of this Python version.

Admin endpoints (model repository, shared memory, trace, logging, and statistics unless opened)
need a random access token, as PyTriton does; inference, health and metadata do not.
"""

from __future__ import annotations

import collections
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
from collections.abc import Callable
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


def stub_environment(workspace: Path) -> dict[str, str]:
    """This process's environment with libpython and this interpreter first (see module doc).

    Only libpython itself goes on ``LD_LIBRARY_PATH``, through a link in ``workspace``: the whole
    library folder of a conda or custom Python also holds its own ``libstdc++``, which would
    shadow the system's for ``tritonserver`` (it needs a newer GLIBCXX)."""
    env = dict(os.environ)
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        links = workspace / "libpython"
        links.mkdir(exist_ok=True)
        if not (links / soname).exists():
            (links / soname).symlink_to(Path(libdir) / soname)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(links), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def _parent_death_signal() -> Callable[[], None]:
    """What the child runs before exec: Linux sends it SIGTERM when the thread that started it
    ends, and it exits if that already happened (the gap between fork and prctl). ``prctl`` is
    looked up here, before the fork."""
    import ctypes

    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal, the server is stopped by stop()
        return lambda: None

    def arm() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return arm


class TritonProcess:
    """One ``tritonserver`` serving ``repository``; ``start`` waits until every model is ready.

    The process is started, and its console read, by one thread that lives exactly as long as the
    server: the parent-death signal follows the thread that forked, so a server started from a
    short-lived caller thread is not killed when that thread ends, and is when this process dies.
    """

    def __init__(self, repository: Path, backends: Path, *, host: str, http_port: int, grpc_port: int,
                 open_statistics: bool, log_file: Path | None, shm_prefix: str) -> None:
        self.token = secrets.token_urlsafe(24)
        restricted = [e for e in ADMIN_ENDPOINTS if not (open_statistics and e == "statistics")]
        rule = f"{','.join(restricted)}:{ACCESS_HEADER}={self.token}"
        self.url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{http_port}"
        self.workspace = repository.parent
        self.args = [str(distribution() / "bin" / "tritonserver"), f"--model-repository={repository}",
                     f"--backend-directory={backends}", f"--http-address={host}", f"--http-port={http_port}",
                     f"--grpc-address={host}", f"--grpc-port={grpc_port}", "--allow-metrics=false",
                     "--exit-timeout-secs=5", f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}",
                     "--pinned-memory-pool-byte-size=0",  # the Python backend's tensors live in /dev/shm
                     f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
                     f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
                     f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}"]
        if log_file is not None:
            self.args.append(f"--log-file={log_file}")
        self.log_file = log_file
        self._log_start = log_file.stat().st_size if log_file is not None and log_file.is_file() else 0
        self._tail: collections.deque[str] = collections.deque(maxlen=400)
        self._proc: subprocess.Popen[str] | None = None
        self._launched = threading.Event()
        self._launch_error: BaseException | None = None
        self._owner: threading.Thread | None = None
        self.exit_code: int | None = None
        # no proxy for the readiness checks: an http_proxy in the environment would get them
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, models: list[str]) -> None:
        """Run the server; :class:`ServingError` with Triton's own reason if it stops or stalls."""
        self._owner = threading.Thread(target=self._own, name="tritonserver", daemon=True)
        self._owner.start()
        self._launched.wait()
        if self._launch_error is not None:
            raise ServingError(f"cannot run {self.args[0]}: {self._launch_error}")
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(models)
        while waiting:
            waiting = [m for m in waiting if not self._ready(f"/v2/models/{m}/ready")]
            if waiting and (self._proc.poll() is not None or time.monotonic() > deadline):
                stalled = self._proc.poll() is None
                self.stop()
                what = (f"was not ready after {START_TIMEOUT_S:.0f} s (not ready: {', '.join(waiting)})" if stalled
                        else "stopped")
                raise ServingError(f"Triton {what}: {self.reason()}")
            if waiting:
                time.sleep(0.2)

    def wait(self) -> int | None:
        """Block until the server exits; its exit code."""
        assert self._owner is not None
        while self._owner.is_alive():  # a timed join keeps this thread open to KeyboardInterrupt
            self._owner.join(0.5)
        return self.exit_code

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
        if self._owner is not None:
            self._owner.join(5)

    def reason(self) -> str:
        """Triton's own reason for a failed start, in one line (glog prefix and escapes stripped).

        A model that failed to load says why; else Triton's closing ``error:`` line; else the last
        line it printed (on a machine without a GPU every start logs a CUDA error that stops nothing,
        so the first error line is not the reason)."""
        lines = list(self._tail)
        if self.log_file is not None and self.log_file.is_file():
            with open(self.log_file, errors="replace") as log:
                log.seek(self._log_start)  # this start's lines only: Triton appends to the file
                lines += log.read().splitlines()
        texts = [_LOG_PREFIX.sub("", line).strip().strip('"') for line in lines
                 if line.startswith("error:") or line.startswith("E") and _LOG_PREFIX.match(line)]
        where = f" (log: {self.log_file})" if self.log_file else ""
        for wanted in ("failed to load '", "error:"):
            found = next((t for t in texts if wanted in t), None)
            if found is not None:
                return found.split("\\n")[0][:300] + where
        last = next((line.strip() for line in reversed(list(self._tail)) if line.strip()), "")
        return (last[:300] or "it printed no reason") + where

    def _own(self) -> None:
        """The owning thread: start Triton, then forward its console to this process's stdout
        (whole lines; the last ones kept) until it exits."""
        try:
            proc = self._proc = subprocess.Popen(
                self.args, env=stub_environment(self.workspace), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                preexec_fn=_parent_death_signal())
        except (OSError, subprocess.SubprocessError) as exc:
            self._launch_error = exc
            return
        finally:
            self._launched.set()
        assert proc.stdout is not None
        echo = True
        for line in proc.stdout:  # drained to the end even when stdout is gone: a full pipe would stall Triton
            self._tail.append(line.rstrip("\n"))
            if echo:
                try:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                except (OSError, ValueError):  # the reader of stdout went away (a closed pipe)
                    echo = False
        self.exit_code = proc.wait()

    def _ready(self, path: str) -> bool:
        try:
            with self._opener.open(self.url + path, timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False


WORKSPACE_PREFIX = "irdeploy-serve-"


def workspace() -> Path:
    """A private folder for one server's repository and links (removed by :func:`remove`).

    Named with this process's id; folders of processes that are gone (killed before they could
    clean up) are removed here."""
    root = Path(tempfile.gettempdir())
    for old in root.glob(f"{WORKSPACE_PREFIX}*-*"):
        pid = old.name[len(WORKSPACE_PREFIX):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
