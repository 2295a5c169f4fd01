"""The one parser for ``NxCxHxW`` shapes typed on the command line (bench shapes, build profiles)."""

from __future__ import annotations

from collections.abc import Sequence

Shape = tuple[int, ...]


def parse_shape(text: str, rank: int = 4) -> Shape:
    """``"1x3x256x256"`` -> ``(1, 3, 256, 256)``; ``ValueError`` unless ``rank`` positive sizes."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != rank or min(dims) < 1:
        raise ValueError(f"bad shape {text!r}: expected {rank} positive sizes NxCxHxW, e.g. 1x3x256x256")
    return dims


def format_shape(shape: Sequence[int]) -> str:
    """``(1, 3, 64, 64)`` -> ``"1x3x64x64"``, the form :func:`parse_shape` reads."""
    return "x".join(str(d) for d in shape)
