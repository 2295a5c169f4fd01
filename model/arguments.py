"""Constructor arguments checked against the constructor's own defaults, before anything is built.

``--arg width=-8`` reached ``torch.empty`` as a negative dimension, ``width=banana`` became a
string-formatting error and ``enc_blk_nums=3`` a ``len()`` of an int: tracebacks that never
name the argument. Every zoo constructor documents its types through its defaults (an int
width, a list of int block counts, a bool bias), so a value is checked against the default of
the same parameter: the same kind of value, and counts that are not negative. Whatever the
constructor still rejects is reported in one line that names the arguments given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where the constructor's ``default`` stands, or ``None``."""
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected {_kind(default)}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected {_kind(default)}"
        floor = 1 if default >= 1 else 0  # a size or count; 0 where the constructor's own default is 0
        return None if value >= floor else f"must be at least {floor}"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"expected {_kind(default)}"
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return f"expected a list like {list(default)}"
        for item in value:
            sample = default[0] if default else None
            if isinstance(sample, int) and not isinstance(sample, bool):
                if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                    return f"expected a list of whole numbers >= 0 like {list(default)}"
        return None
    if isinstance(default, str):
        return None if isinstance(value, str) else f"expected {_kind(default)}"
    return None


def check_arguments(name: str, constructor: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise one ``ValueError`` naming every argument whose value does not fit its default's kind."""
    parameters = inspect.signature(constructor).parameters
    problems = []
    for key, value in kwargs.items():
        parameter = parameters.get(key)
        why = _problem(value, parameter.default) if parameter is not None else None
        if why:
            problems.append(f"{key}={value!r} ({why})")
    if problems:
        raise ValueError(f"{name}: invalid argument(s) {'; '.join(problems)}")


def build(name: str, constructor: Callable[..., nn.Module], settings: Mapping[str, Any],
          given: Mapping[str, Any]) -> nn.Module:
    """``constructor(**settings)``; a constructor's own refusal becomes one line naming ``given``."""
    try:
        return constructor(**settings)
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError, ZeroDivisionError, AssertionError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "its default arguments"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{name}: cannot build it with {shown} ({type(exc).__name__}: {reason})") from None
