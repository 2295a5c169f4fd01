"""The one error of serving: a repository, config or server request that cannot work.

A ``ValueError`` so the command line prints it as one line (exit code 2).
"""

from __future__ import annotations


class ServingError(ValueError):
    """A Triton repository, model configuration or server setting that Triton would reject."""


class ServerExited(RuntimeError):
    """Triton exited by itself while serving (a crash, or killed): the input was fine (exit code 1)."""


def require(module: str) -> None:
    """Fail in one line, naming the extra to install, when a serving dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ServingError(f"{module} is not installed; in the irdeploy clone, run: pip install \".[serve]\"")
