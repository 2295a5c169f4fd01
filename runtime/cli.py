"""The ``irdeploy`` command line: a thin argparse layer over the library API.

Every verb parses its arguments, calls one library function, prints its result, and turns the
library's own errors (bad checkpoint, bad image, unknown model) into one line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from irdeploy.model import PRESETS, architectures, create

    print(f"{'preset':<16}{'architecture':<14}{'parameters':>12}  description")
    for name, preset in PRESETS.items():
        with torch.device("meta"):
            params = sum(p.numel() for p in create(name).parameters())
        print(f"{name:<16}{preset.arch:<14}{params / 1e6:>10.2f} M  {preset.description}")
    print(f"\narchitectures (create(name, **upstream_kwargs)): {', '.join(architectures())}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from . import quickstart

    result = quickstart.run(args.out, model_name=args.model, checkpoint=args.checkpoint,
                            image=args.image, threads=args.threads)
    print(quickstart.summary(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irdeploy", description="Image-restoration networks to ONNX and TensorRT.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model presets")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("quickstart", help="build a model, load a checkpoint, restore a sample photograph")
    p.add_argument("--out", default="irdeploy-quickstart", help="output folder (default: %(default)s)")
    p.add_argument("--model", default="m3snet-32", help="preset or architecture (default: %(default)s)")
    p.add_argument("--checkpoint", help="trained checkpoint; default: the model's own untrained weights")
    p.add_argument("--image", help="image to degrade and restore; default: a shipped photograph")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from irdeploy.model import CheckpointError

    from .images import ImageError

    try:
        return args.func(args)
    except (CheckpointError, ImageError, ValueError, TypeError, OSError) as exc:
        print(f"irdeploy {args.command}: error: {exc}", file=sys.stderr)
        return 2
