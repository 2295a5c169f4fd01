"""Restore images on a Triton server: ``restore(url, images)``.

Works with both kinds of irdeploy model a server can hold, told apart by the model's own
metadata: a uint8 image model (``irdeploy serve``'s ``<name>_image``: pixels in, pixels out)
or a float32 NCHW tensor model (``irdeploy serve``'s ``<name>``, or a repository written by
``irdeploy triton``). A repository model runs the raw graph, so H and W must be multiples of
the network's pad multiple: its ``config.pbtxt`` says which (``irdeploy.pad_multiple``), and
this client pads before sending and crops the answer. Needs ``tritonclient`` (the ``serve``
extra), not torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from irdeploy.core.images import from_batch, to_batch
from irdeploy.core.metadata import PAD_MODE_KEY, PAD_MULTIPLE_KEY
from irdeploy.core.padding import crop_batch, pad_batch

from .serving.errors import ServingError, require
from .serving.pixels import to_float, to_uint8
from .serving.server import DEFAULT_MODEL

PROTOCOLS = ("http", "grpc")
# "package.module.SomeError: what went wrong", the last line of a Python traceback.
_RAISED = re.compile(r"^[\w.]*(Error|Exception): \S")


def restore(url: str, images: Sequence[np.ndarray], *, model: str = DEFAULT_MODEL,
            timeout: float = 120.0) -> list[np.ndarray]:
    """Send each HxWxC float image in [0, 1] to ``model`` at ``url``; the restored images, in order.

    ``url``: ``http://host:port`` or ``grpc://host:port`` (no scheme: HTTP). Images may differ
    in size; each is one request. Raises :class:`~irdeploy.runtime.serving.ServingError` with
    the server's answer when a request fails.
    """
    protocol, address = _split(url)
    require("tritonclient")
    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException

    client = tc.InferenceServerClient(address, network_timeout=timeout) if protocol == "http" else tc.InferenceServerClient(address)
    try:
        contract = _contract(client, model, protocol)
        restored = []
        for image in images:
            image = np.asarray(image, dtype=np.float32)
            if image.ndim != 3 or image.shape[-1] != contract.channels:
                raise ServingError(f"expected HxWx{contract.channels} images, got shape {image.shape}")
            if min(image.shape[:2]) < 1:  # refused here, before a round trip, as the server would
                raise ServingError(f"image {image.shape[0]}x{image.shape[1]} is empty; H and W must be at least 1")
            payload = contract.encode(image)
            tensor = tc.InferInput(contract.input, list(payload.shape), contract.datatype)
            tensor.set_data_from_numpy(payload)
            extra = {"client_timeout": timeout} if protocol == "grpc" else {}
            answer = client.infer(model, [tensor], outputs=[tc.InferRequestedOutput(contract.output)], **extra)
            restored.append(contract.decode(answer.as_numpy(contract.output), image.shape[:2]))
        return restored
    except InferenceServerException as exc:
        raise ServingError(f"{url} model {model!r}: {_reason(exc.message() or str(exc))}") from None
    finally:
        client.close()


class _Contract:
    """How to talk to one served model: names, data type, channels and padding."""

    def __init__(self, meta: dict[str, Any], config: dict[str, Any]) -> None:
        if len(meta.get("inputs", [])) != 1 or len(meta.get("outputs", [])) != 1:
            raise ServingError(f"model {meta.get('name')!r} is not an irdeploy image model (one input, one output)")
        inp, out = meta["inputs"][0], meta["outputs"][0]
        self.input, self.output, self.datatype = inp["name"], out["name"], inp["datatype"]
        shape = [int(d) for d in inp["shape"]]
        self.image = self.datatype == "UINT8"
        if self.datatype not in ("UINT8", "FP32") or len(shape) != 4:
            raise ServingError(f"model {meta.get('name')!r} takes {self.datatype} {shape}; "
                               "expected uint8 NxHxWxC images or float32 NCHW tensors")
        self.channels = shape[-1] if self.image else shape[1]
        params = config.get("parameters", {})
        self.multiple = int(params.get(PAD_MULTIPLE_KEY, {}).get("string_value", 1))
        self.mode = params.get(PAD_MODE_KEY, {}).get("string_value", "constant")

    def encode(self, image: np.ndarray) -> np.ndarray:
        if self.image:
            return to_uint8(image)[None]
        return pad_batch(to_batch(image), self.multiple, self.mode)

    def decode(self, output: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if self.image:
            return to_float(output[0])
        return from_batch(crop_batch(output, *size))[0]


def _contract(client: Any, model: str, protocol: str) -> _Contract:
    as_json = {"as_json": True} if protocol == "grpc" else {}
    meta = client.get_model_metadata(model, **as_json)
    config = client.get_model_config(model, **as_json)
    return _Contract(meta, config.get("config", config))


def _reason(message: str) -> str:
    """One line from a server error: ``irdeploy serve`` sends one already; a Python-backend model
    of another server (PyTriton's, for one) may send a whole traceback: its exception line."""
    lines = [line.strip() for line in message.replace("\\n", "\n").splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED.match(line)]
    return (raised[-1] if raised else lines[0] if lines else "request failed")[:400]


def _split(url: str) -> tuple[str, str]:
    """``grpc://127.0.0.1:8001`` -> ("grpc", "127.0.0.1:8001"); no scheme means HTTP."""
    scheme, sep, rest = url.partition("://")
    protocol, address = (scheme.lower(), rest) if sep else ("http", url)
    if protocol not in PROTOCOLS:
        raise ServingError(f"bad URL {url!r}: the scheme must be http:// or grpc://")
    if not address or ":" not in address or "/" in address:
        raise ServingError(f"bad URL {url!r}: expected {protocol}://host:port")
    return protocol, address
