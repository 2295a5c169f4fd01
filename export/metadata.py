"""What an exported graph says about itself, in ONNX ``metadata_props``.

A graph on disk must be usable without the code that made it: which network and checkpoint it
came from, its precision, and the input contract (value range, layout, padding) a runtime has
to honour. Keys are prefixed ``irdeploy.``; values are strings (JSON for structured ones).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

PREFIX = "irdeploy."


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
        for key, value in asdict(self).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            model.metadata_props.add(key=PREFIX + key, value=text)

    @classmethod
    def read(cls, model: onnx.ModelProto) -> ExportMetadata | None:
        """The metadata irdeploy wrote, or ``None`` for a graph from elsewhere."""
        props = {p.key[len(PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
        if not props:
            return None
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in props:
                continue
            raw = props[name]
            values[name] = raw if f.type in ("str", "str | None") else json.loads(raw)
        return cls(**values)
