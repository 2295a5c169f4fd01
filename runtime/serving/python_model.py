"""The model ``irdeploy serve`` runs inside Triton's Python backend (one stub process per model).

Why not PyTriton's proxy model: it answers a failed call with one error for every request of the
batch, formatted as a Python traceback with the server's file paths, and its request transport
cannot carry a tensor with a zero dimension. Here each request gets its own response: a bad
request gets one line (``INVALID_ARG``: HTTP 400, gRPC ``INVALID_ARGUMENT``) and the requests
batched with it still run; an unexpected failure gets one line naming it (``INTERNAL``) and its
traceback goes to Triton's log only.

Two roles, set by the model configuration's ``irdeploy.role`` parameter:

- ``tensor``: float32 NCHW in [0, 1]; holds the irdeploy backend (which pads and crops) and runs
  each scheduled batch one backend call per image size (:func:`.batching.infer_by_size`);
- ``image``: uint8 HxWxC pixels; converts them and sends them to the tensor model through
  Triton's business-logic scripting (BLS), one request per image size, so image requests share
  the tensor model's one backend and its batches.

``triton_python_backend_utils`` exists only inside the stub, so it is imported there, lazily.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.padding import aligned

from .batching import infer_by_size, size_groups
from .pixels import to_float, to_uint8

# Model-configuration parameters (any client can read a model's configuration: nothing private).
ROLE_KEY = "irdeploy.role"
MIN_SIZE_KEY = "irdeploy.min_size"
MAX_SIZE_KEY = "irdeploy.max_size"
LIMIT_KEY = "irdeploy.size_limit"  # "image": H, W as sent; "padded": after padding (an engine's profile)
# The multiple this server pads to itself. Not irdeploy.pad_multiple: that one tells a client the
# model runs the raw graph and the client must pad (a repository from ``irdeploy triton``).
MULTIPLE_KEY = "irdeploy.server_pad_multiple"
TENSOR_MODEL_KEY = "irdeploy.tensor_model"
# What only the server sees: the artifact's path, device and threads, in the version folder.
PRIVATE_FILE = "irdeploy.json"
TENSOR_IO = ("input", "output")
IMAGE_IO = ("image", "restored")


class RequestError(ValueError):
    """A request this server refuses; its message is what the client reads."""


@dataclass(frozen=True)
class SizeRule:
    """Which image sizes a server takes: ``min_size``..``max_size`` (H, W), compared as sent
    (an ONNX graph, where the maximum is a policy) or after padding to ``multiple`` (an engine,
    whose profile bounds the padded tensor)."""

    min_size: tuple[int, int]
    max_size: tuple[int, int]
    multiple: int
    padded: bool

    def error(self, h: int, w: int) -> str | None:
        """Why an ``h`` x ``w`` image cannot be served, or None (the one rule of both roles)."""
        size = (aligned(h, self.multiple), aligned(w, self.multiple)) if self.padded else (h, w)
        if h >= 1 and w >= 1 and all(lo <= v <= hi for v, lo, hi in zip(size, self.min_size, self.max_size)):
            return None
        (min_h, min_w), (max_h, max_w) = self.min_size, self.max_size
        how = (f"after padding to multiples of {self.multiple} (the engine's profile)" if self.padded
               else "as sent")
        return f"image {h}x{w} is outside what this server accepts ({min_h}x{min_w} to {max_h}x{max_w} {how})"

    def parameters(self) -> dict[str, str]:
        return {MIN_SIZE_KEY: "x".join(map(str, self.min_size)), MAX_SIZE_KEY: "x".join(map(str, self.max_size)),
                MULTIPLE_KEY: str(self.multiple), LIMIT_KEY: "padded" if self.padded else "image"}

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> SizeRule:
        def size(text: str) -> tuple[int, int]:
            h, w = text.split("x")
            return int(h), int(w)

        return cls(size(params[MIN_SIZE_KEY]), size(params[MAX_SIZE_KEY]), int(params[MULTIPLE_KEY]),
                   params[LIMIT_KEY] == "padded")


def failure_line(exc: BaseException) -> str:
    """One line for an unexpected failure (its lines joined): irdeploy's own errors say it all."""
    reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:400]
    if isinstance(exc, ValueError):  # irdeploy's errors (ServingError, GPUError, ...) are ValueErrors
        return reason or type(exc).__name__
    return f"{type(exc).__name__}: {reason} (the server log has the traceback)" if reason else type(exc).__name__


def respond_by_size(arrays: Sequence[np.ndarray | str], run: Callable[[list[np.ndarray]], list[np.ndarray]],
                    log_error: Callable[[str], None]) -> list[np.ndarray | str]:
    """``run`` over the arrays, one call per image size; a string is a request already refused.

    A call that raises fails only the requests of its size, each with :func:`failure_line`, and
    its traceback goes to ``log_error``. What comes back: an output array or an error line per
    request, in order."""
    results: list[np.ndarray | str] = list(arrays)
    for indices in size_groups((i, a) for i, a in enumerate(arrays) if not isinstance(a, str)):
        try:
            outputs = run([arrays[i] for i in indices])  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - every failure becomes the requests' one line
            log_error(traceback.format_exc())
            outputs = [failure_line(exc)] * len(indices)  # type: ignore[list-item]
        for i, out in zip(indices, outputs):
            results[i] = out
    return results


class TritonPythonModel:
    """Triton's Python-backend entry points (``initialize``, ``execute``, ``finalize``)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.role = params[ROLE_KEY]
        self.max_batch = int(config["max_batch_size"])
        self.sizes = SizeRule.from_parameters(params)
        self.backend: Any = None
        if self.role == "tensor":
            from .artifact import open_artifact_backend

            private = json.loads((Path(args["model_repository"]) / args["model_version"] / PRIVATE_FILE).read_text())
            self.backend = open_artifact_backend(private["artifact"], device=private["device"], threads=private["threads"])
        else:
            self.tensor_model = params[TENSOR_MODEL_KEY]

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        pb = self._pb
        name, layout = (TENSOR_IO[0], "nchw") if self.role == "tensor" else (IMAGE_IO[0], "nhwc")
        arrays: list[np.ndarray | str] = []
        for request in requests:
            array = pb.get_input_tensor_by_name(request, name).as_numpy()
            h, w = array.shape[-2:] if layout == "nchw" else array.shape[1:3]
            arrays.append(self.sizes.error(h, w) or array)
        log = pb.Logger.log_error
        if self.role == "tensor":
            results = respond_by_size(arrays, lambda batches: infer_by_size(self.backend, batches, self.max_batch), log)
            out_name = TENSOR_IO[1]
        else:
            results = respond_by_size(arrays, self._restore_images, log)
            out_name = IMAGE_IO[1]
        responses = []
        for array, result in zip(arrays, results):
            if isinstance(result, str):
                code = pb.TritonError.INVALID_ARG if isinstance(array, str) else pb.TritonError.INTERNAL
                responses.append(pb.InferenceResponse(error=pb.TritonError(result, code)))
            else:
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(out_name, np.ascontiguousarray(result))]))
        return responses

    def _restore_images(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Same-size uint8 NHWC batches through the tensor model, at most ``max_batch`` rows a call."""
        pb = self._pb
        stacked = np.ascontiguousarray(to_float(np.concatenate(images)).transpose(0, 3, 1, 2))
        rows = []
        for start in range(0, len(stacked), self.max_batch):
            request = pb.InferenceRequest(model_name=self.tensor_model, requested_output_names=[TENSOR_IO[1]],
                                          inputs=[pb.Tensor(TENSOR_IO[0], stacked[start:start + self.max_batch])])
            response = request.exec()
            if response.has_error():
                raise RequestError(response.error().message())
            rows.append(pb.get_output_tensor_by_name(response, TENSOR_IO[1]).as_numpy())
        restored = to_uint8(np.concatenate(rows).transpose(0, 2, 3, 1))
        counts = np.cumsum([len(image) for image in images])[:-1]
        return list(np.split(restored, counts))

    def finalize(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
