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


def _size(text: str) -> tuple[int, ...]:
    """``HxW`` or ``NxHxW`` -> ints (argparse type)."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or NxHxW, got {text!r}") from None
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or NxHxW with positive sizes, got {text!r}")
    return dims


def _kwarg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a JSON value (``width=16``, ``enc_blk_nums=[1,1,1,2]``, ``bias=false``)."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    for label, value in report.lines():
        table.add_row(f"[bold]{label}[/bold]", value)
    Console(width=140).print(table)


def _cmd_export(args: argparse.Namespace) -> int:
    from irdeploy.export import to_onnx
    from irdeploy.model import load_model, to_local

    model = load_model(args.model, args.checkpoint, **dict(args.arg))
    if args.checkpoint is None:
        print(f"irdeploy export: warning: no --checkpoint, exporting {args.model} with random weights", file=sys.stderr)
    if args.tlc:
        h, w = args.tlc[-2:]
        to_local(model, train_size=(1, 3, h, w))
    static = args.static if args.static is None or len(args.static) == 3 else (args.batch, *args.static)
    report = to_onnx(model, args.output, opset=args.opset, static_shape=static, precision=args.precision,
                     attention=args.attention, parity=not args.no_parity, tensorrt=not args.no_tensorrt)
    _print_report(report)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from irdeploy.export import inspect_onnx

    report = inspect_onnx(args.onnx, tensorrt=not args.no_tensorrt)
    _print_report(report)
    if report.metadata is not None:
        for key, value in vars(report.metadata).items():
            print(f"  {key}: {value}")
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

    p = sub.add_parser("export", help="export a model to a checked ONNX graph")
    p.add_argument("--model", required=True, help="preset or architecture, e.g. m3snet-32")
    p.add_argument("--checkpoint", help="weights (upstream, BasicSR, bare or .safetensors); default: random")
    p.add_argument("--arg", type=_kwarg, action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument (upstream name, JSON value), e.g. --arg width=16; repeatable")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--attention", choices=("matmul", "onnx23"), default="matmul",
                   help="attention core: MatMul-Softmax-MatMul (opset 18) or the opset-23 Attention op")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18, 23 for --attention onnx23)")
    p.add_argument("--static", type=_size, metavar="HxW", help="fixed input size instead of dynamic N/H/W")
    p.add_argument("--batch", type=int, default=1, help="batch size of a --static export (default 1)")
    p.add_argument("--tlc", type=_size, metavar="HxW", help="apply the test-time local converter for this training crop")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs eager parity gate")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT parser check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("inspect", help="report on any ONNX file (ops, folding, precision, metadata)")
    p.add_argument("onnx")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT parser check")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from irdeploy.export import ExportError
    from irdeploy.model import CheckpointError

    try:
        return args.func(args)
    except (CheckpointError, ExportError, ValueError, TypeError, OSError) as exc:
        print(f"irdeploy {args.command}: error: {exc}", file=sys.stderr)
        return 2
