"""What an exported graph says about itself, in ONNX ``metadata_props``.

A graph on disk must be usable without the code that made it: which network and checkpoint it
came from, its precision, and the input contract (value range, layout, padding) a runtime has
to honour. Keys are prefixed ``irdeploy.``; values are strings (JSON for structured ones).

The keys are spelled here only: the export writes them, ONNX Runtime's backend and Triton's
config read them (:func:`key`, :data:`PAD_MULTIPLE_KEY`, :data:`PAD_MODE_KEY`). Torch-free and
onnx-free at import: a runtime reads a ``{key: value}`` map with :meth:`ExportMetadata.from_props`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

PREFIX = "irdeploy."


def key(name: str) -> str:
    """The metadata key of field ``name`` (``"pad_multiple"`` -> ``"irdeploy.pad_multiple"``)."""
    return PREFIX + name


PAD_MULTIPLE_KEY = key("pad_multiple")
PAD_MODE_KEY = key("pad_mode")


@dataclass
class ExportMetadata:
    model: str
    arch: str
    config: dict[str, Any]
    precision: str
    attention: str
    opset: int
    pad_multiple: int
    pad_mode: str
    irdeploy_version: str
    checkpoint_sha256: str | None = None
    tlc: dict[str, Any] | None = None
    input_range: str = "[0, 1]"
    layout: str = "NCHW, float32, RGB"
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, model: onnx.ModelProto) -> None:
        """Store every field in ``model.metadata_props`` (replacing earlier irdeploy entries)."""
        kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        for name, value in asdict(self).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            model.metadata_props.add(key=key(name), value=text)

    @classmethod
    def read(cls, model: onnx.ModelProto) -> ExportMetadata | None:
        """The metadata irdeploy wrote, or ``None`` for a graph from elsewhere."""
        return cls.from_props({p.key: p.value for p in model.metadata_props})

    @classmethod
    def from_props(cls, metadata: Mapping[str, str]) -> ExportMetadata | None:
        """The same from a plain ``{key: value}`` map (ONNX Runtime's ``custom_metadata_map``)."""
        props = {k[len(PREFIX):]: v for k, v in metadata.items() if k.startswith(PREFIX)}
        if not props:
            return None
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in props:
                continue
            raw = props[name]
            values[name] = raw if f.type in ("str", "str | None") else json.loads(raw)
        return cls(**values)
