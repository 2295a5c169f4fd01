"""The ``irdeploy`` command line: a thin argparse layer over the library API.

Every verb parses its arguments, calls one library function, prints its result, and turns the
library's own errors (bad checkpoint, bad image, unknown model) into one line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence

from irdeploy.core.padding import INFERENCE_PAD_MODE, PAD_MODES

from irdeploy.core.precision import (
    CALIBRATION_METHODS,
    ENGINE_PRECISIONS,
    EXPORT_PRECISIONS,
    QUANTIZED,
    REDUCED,
)
from irdeploy.core.tensorrt import FLAVOURS
from irdeploy.runtime.registry import backend_for_file, backend_names, backends, get_backend


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from irdeploy.model import PRESETS, architectures, create, record_of
    from irdeploy.core.progress import step
    from irdeploy.model.stats import model_stats, parameter_count

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in ("preset", "arch", "params", *(("GMACs@256",) if args.stats else ()), "description"):
        table.add_column(header, no_wrap=header != "description", justify="right" if header in ("params", "GMACs@256") else "left")
    for name, preset in PRESETS.items():
        with torch.device("meta"):
            model = create(name)
        params = parameter_count(model)
        cells = [name, preset.arch, f"{params / 1e6:.2f} M"]
        if args.stats:
            with step(f"counting GMACs of {name} at 256x256"):
                cells.append(f"{model_stats(model, channels=record_of(model).channels).gmacs:.1f}")
        table.add_row(*(Text(c) for c in (*cells, preset.description)))
    console = Console()
    console.print(table)
    console.print(Text(f"architectures (create(name, **upstream_kwargs)): {', '.join(architectures())}"))
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from . import quickstart

    result = quickstart.run(args.out, model_name=args.model, checkpoint=args.checkpoint, model_args=dict(args.arg),
                            train_seconds=args.train_seconds, threads=args.threads,
                            progress=not args.quiet and sys.stderr.isatty())  # bars; the stages report regardless
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


def _positive(text: str) -> int:
    """A count that must be at least 1 (threads, batch sizes, instances): argparse type."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    """A TCP port, 1-65535 (argparse type; 0 would let the OS pick one nobody is told about)."""
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535, got {value}")
    return value


def _number(text: str, *, floor: float, strict: bool, whole: bool) -> float:
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if whole else 'a number'}, got {text!r}") from None
    if not math.isfinite(value) or value < floor or (strict and value == floor):
        raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {floor:g}, got {text}")
    return value


def _not_negative(text: str) -> int:
    """A count that may be 0 (warm-up runs, a delay, "every N steps" where 0 means never): argparse type."""
    return int(_number(text, floor=0, strict=False, whole=True))


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more (argparse type)."""
    return _number(text, floor=0, strict=False, whole=False)


def _positive_number(text: str) -> float:
    """A finite number above 0: a PSNR floor in dB, a learning rate (argparse type; nan is refused)."""
    return _number(text, floor=0, strict=True, whole=False)


def _device(allow_auto: bool = False):
    """argparse type for ``--device``: the spelling only; availability is checked by the verb."""
    from .devices import check_spelling

    def parse(text: str) -> str:
        try:
            return check_spelling(text, allow_auto=allow_auto)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _output_file(text: str) -> str:
    """A file to write: refused when it is a folder, before any work is done (argparse type)."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name to write")
    if not os.path.isdir(os.path.dirname(text) or "."):
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {os.path.dirname(text)} does not exist")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``irdeploy VERB: error: ...`` and exit code 2, no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_report(report) -> None:
    _print_rows(report.lines())


def _print_rows(rows) -> None:
    """(label, value) rows: labels whole, values wrapped at spaces within the terminal (80 piped)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(Text(label), Text(value))
    Console().print(table)


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
    fp32_nodes = args.fp32_nodes.split(",") if args.fp32_nodes else None
    report = to_onnx(model, args.output, opset=args.opset, static_shape=static, precision=args.precision,
                     attention=args.attention, parity=not args.no_parity, min_psnr=args.min_psnr,
                     fp32_nodes=fp32_nodes, tensorrt=not args.no_tensorrt, pad_mode=args.pad_mode,
                     calibration=args.calibration, calibration_method=args.calibration_method,
                     int8_input_convs=args.int8_input_convs)
    _print_report(report)
    return 0


def _cmd_fp16_audit(args: argparse.Namespace) -> int:
    import json

    from irdeploy.core.fileio import atomic_write, json_ready

    from irdeploy.export.audit import audit_model, format_table
    from irdeploy.export.eager_audit import format_eager_table
    from irdeploy.model import load_model

    model = load_model(args.model, args.checkpoint, **dict(args.arg))
    h, w = args.size[-2:]
    if args.precision == "int8":
        from irdeploy.export.int8_audit import format_int8_table, int8_audit, prepare

        graph, quantized, inputs, references = prepare(model, (h, w), calibration=args.calibration)
        rows = int8_audit(graph, quantized, inputs, references)
        print(format_int8_table(rows, title=f"{args.model}: one layer at a time in int8 (ONNX Runtime), "
                                            f"PSNR vs eager float32 on two photographs {h}x{w}"))
        if args.json:
            atomic_write(args.json, json.dumps(json_ready({"int8": [r.to_dict() for r in rows]}), indent=1, allow_nan=False))
        return 0
    rows, eager_rows = audit_model(model, (h, w), args.precision, eager=not args.no_eager)
    print(format_table(rows, title=f"{args.model}: one op family at a time in {args.precision} "
                                   f"(emulated storage rounding), PSNR vs eager float32 on two photographs {h}x{w}"))
    if eager_rows:
        print()
        print(format_eager_table(eager_rows, title="cross-check with eager PyTorch CPU kernels: one module family "
                                                   f"at a time in {args.precision}"))
    if args.json:
        report = {"graph": [r.to_dict() for r in rows], "eager": [vars(r) for r in eager_rows]}
        atomic_write(args.json, json.dumps(json_ready(report), indent=1, allow_nan=False))
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .tensorrt import build_engine, parse_shapes

    result = build_engine(
        args.onnx, args.output, precision=args.precision, shapes=parse_shapes(args.shapes) if args.shapes else None,
        flavour=args.trt, workspace=args.workspace, opt_level=args.opt_level, timing_cache=args.timing_cache,
        compute_capabilities=args.compute_capability, attention=args.attention, force=args.force,
        device=args.device, kernel_specialization=args.kernel_specialization,
    )
    if args.trt == "auto":  # one flavour per process: say which one auto took, and why
        from irdeploy.core.tensorrt import auto_choice

        print(f"irdeploy build: --trt auto: {auto_choice()}", file=sys.stderr)
    print(result.summary())
    return 0


def _print_parity(result, how: str) -> None:
    """Per-input parity figures as a table within 80 columns, then the verdict and what was run."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, caption=f"vs eager float32; {how}",
                  caption_justify="left")
    for header in ("input", "max abs", "mean abs", "PSNR dB", "8-bit changed"):
        table.add_column(header, justify="left" if header == "input" else "right", no_wrap=True)
    for case in result.cases:
        table.add_row(Text(case.name), f"{case.max_abs:.3g}", f"{case.mean_abs:.3g}", f"{case.psnr:.1f}",
                      f"{case.pixels_changed:.2%}")
    console = Console()
    console.print(table)
    console.print(Text(result.summary()))


def _cmd_validate(args: argparse.Namespace) -> int:
    from irdeploy.export.parity import compare, make_inputs
    from irdeploy.model import load_model, record_of

    from .backends import TensorRTBackend

    if args.engine:
        from .tensorrt.sidecar import read_sidecar

        sidecar = read_sidecar(args.engine)
        recorded = (sidecar["checkpoint_sha256"],) if "checkpoint_sha256" in sidecar else ()
    else:
        from irdeploy.core.metadata import ExportMetadata
        from irdeploy.core.onnx_files import load_onnx

        graph = load_onnx(args.onnx, load_external_data=True)  # the parity gate runs this proto
        _check_image_graph(args.onnx, graph)
        meta = ExportMetadata.read(graph)
        recorded = (meta.checkpoint_sha256,) if meta is not None else ()
    model = load_model(args.model, args.checkpoint, **dict(args.arg))
    if recorded:
        _check_weights(args.engine or args.onnx, recorded[0], args.checkpoint, record_of(model).checkpoint_sha256)
    if args.engine:
        backend = TensorRTBackend(args.engine)
        precision = backend.engine.sidecar.get("precision", "fp32")
        precision = {"best": "fp16", "tf32": "fp32"}.get(precision, precision)  # their parity floors
        with backend:
            sizes = _profile_sizes(backend.engine.profile, backend.pad_multiple)
            result = compare(model, backend, make_inputs(backend.channels, sizes), precision=precision,
                             min_psnr=args.min_psnr)
        how = "the engine as built, on this GPU"
    else:
        from irdeploy.export.parity import graph_parity

        result, how = graph_parity(graph, model, min_psnr=args.min_psnr)  # the export's gate: same inputs, same figure
        precision = result.precision
    _print_parity(result, how)
    if not result.passed and args.bisect:
        if precision == "fp32":
            print("bisect: the artifact is float32; there is no low-precision node to move")
        elif precision == "int8":
            from irdeploy.export.int8_audit import bisect_int8, prepare

            floor = args.min_psnr or result.tolerance.min_psnr
            print(bisect_int8(*prepare(model), min_psnr=floor).summary())
        else:
            from irdeploy.export.bisect import bisect_model

            print(bisect_model(model, precision=precision, min_psnr=args.min_psnr or result.tolerance.min_psnr).summary())
    return 0 if result.passed else 1


def _profile_sizes(profile, multiple: int) -> list[tuple[int, int, int]]:
    """The parity inputs (``parity_sizes``) inside an engine's profile: a dimension the profile
    fixes keeps its value, a dynamic one is clamped into [min, max] (the default profile takes
    batch 1 only, so no batch of 2; min and max are multiples of ``multiple``, so a clamped
    size still pads inside the profile)."""
    from irdeploy.export.parity import parity_sizes

    lows, highs = (profile.min[0], *profile.min[2:]), (profile.max[0], *profile.max[2:])
    sizes = parity_sizes(multiple, *(lo if lo == hi else None for lo, hi in zip(lows, highs)))
    return [tuple(min(max(d, lo), hi) for d, lo, hi in zip(size, lows, highs)) for size in sizes]


def _check_image_graph(path: str, graph) -> None:
    """validate feeds NCHW image batches: refuse a graph with another input rank before running it."""
    inits = {t.name for t in graph.graph.initializer}
    inputs = [v for v in graph.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{path}: the graph has {len(inputs)} inputs; validate compares image networks with one NCHW input")
    rank = len(inputs[0].type.tensor_type.shape.dim)
    if rank != 4:
        raise ValueError(f"{path}: input {inputs[0].name!r} has rank {rank}; validate compares image networks with an NCHW input (rank 4)")


def _check_weights(artifact: str, recorded: str | None, checkpoint: str | None, given: str | None) -> None:
    """Parity against other weights than the artifact's proves nothing: refuse it in one line.

    ``recorded`` is the sha256 the graph's metadata (or the engine's sidecar) names, ``None``
    for an artifact made from random weights; ``given`` is the sha256 of ``--checkpoint``."""
    if recorded == given:
        return
    if recorded is None:
        raise ValueError(f"{artifact} was made from random weights (it records no checkpoint), so it cannot match "
                         f"--checkpoint {checkpoint}; export it from that checkpoint first")
    if given is None:
        raise ValueError(f"{artifact} was exported from the checkpoint with sha256 {recorded[:16]}...; give that file "
                         "as --checkpoint (without one, validate would compare it with random weights)")
    raise ValueError(f"--checkpoint {checkpoint} (sha256 {given[:16]}...) is not the checkpoint {artifact} was exported "
                     f"from (sha256 {recorded[:16]}...); give that one")


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from irdeploy.model import load_model

    from irdeploy.core.shapes import parse_shape

    from .bench import BenchConfig, bench_model, parse_threads
    from .bench.console import print_table, progress_bar

    if args.video:  # end to end on a clip: decode -> infer -> encode (irdeploy.runtime.video.bench)
        from .video.bench import run_cli

        return run_cli(args)
    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    if args.batch:  # --batch 1,4 replaces N of every shape
        shapes = [(int(n), c, h, w) for n in args.batch.split(",") for (_, c, h, w) in shapes]
    threads = parse_threads(args.threads) if args.threads else None
    model = load_model(args.model, args.checkpoint, **dict(args.arg))
    config = BenchConfig(iterations=args.iterations, warmup_iters=args.warmup, warmup_seconds=args.warmup_seconds)
    with tempfile.TemporaryDirectory(prefix="irdeploy-bench-") as tmp, progress_bar(not args.quiet) as progress:
        result = bench_model(model, model_name=args.model, workdir=args.workdir or tmp,
                             backends=args.backends.split(","), precisions=args.precisions.split(","),
                             shapes=shapes, threads=threads, device=args.device, config=config, progress=progress)
    if args.checkpoint is None:
        result.notes.append(f"{args.model}: random weights (no --checkpoint)")
    print_table(result, f"irdeploy bench: {args.model}")
    if args.out:
        for path in result.write(args.out, title=f"irdeploy bench: {args.model}"):
            print(f"wrote {path}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from irdeploy.export import inspect_onnx

    report = inspect_onnx(args.onnx, tensorrt=not args.no_tensorrt)
    _print_report(report)
    if report.metadata is not None:  # the graph's irdeploy.* metadata, one wrapped row per key
        _print_rows([(f"  {key}", str(value)) for key, value in vars(report.metadata).items()])
    return 0


def _cmd_triton(args: argparse.Namespace) -> int:
    from .serving import ConfigOptions, write_repository

    options = ConfigOptions(max_batch=args.max_batch, instances=args.instances, kind=args.kind,
                            delay_us=args.dynamic_batching_delay_us, accelerator=args.accelerator,
                            warmup=not args.no_warmup)
    print(write_repository(args.output, args.name, args.onnx, args.engine, options, force=args.force).summary())
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serving import TritonServer
    from .serving.errors import ServerExited

    server = TritonServer(args.onnx or args.engine, name=args.name, host=args.host, http_port=args.http_port,
                          grpc_port=args.grpc_port, max_batch=args.max_batch,
                          max_size=args.max_size[-2:] if args.max_size else None,
                          delay_us=args.dynamic_batching_delay_us, device=args.device, threads=args.threads,
                          log_file=args.log_file, open_statistics=args.open_statistics)
    for stop in (signal.SIGINT, signal.SIGTERM):  # SIGTERM too: `docker stop`, and PID 1 ignores it unhandled
        signal.signal(stop, _interrupt_once)
    try:
        server.start()
    except KeyboardInterrupt:
        print("irdeploy serve: interrupted while starting; nothing is left running", file=sys.stderr)
        return 130
    for note in server.notes:
        print(f"irdeploy serve: warning: {note}", file=sys.stderr)
    sizes = server.sizes
    print(f"serving {args.name} (float32 NCHW) and {args.name}_image (uint8 HxWxC), max batch {server.max_batch}, "
          f"images {sizes.min_size[0]}x{sizes.min_size[1]} to {sizes.max_size[0]}x{sizes.max_size[1]}"
          f"{' padded' if sizes.padded else ''}: {server.http_url} {server.grpc_url}; Ctrl-C stops", flush=True)
    try:
        server.wait()
    except ServerExited as exc:
        print(f"irdeploy serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _interrupt_once(signum: int, frame: object) -> None:
    """First Ctrl-C (or SIGTERM) stops the server; more while it shuts down are ignored, not a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--model / --checkpoint / --arg: how every verb that builds a network names it.

    ``--model`` may be left out (or be ``auto``) when ``--checkpoint`` is given: :func:`_detect_model`
    names the architecture from the weights. ``required`` verbs need one or the other."""
    p.add_argument("--model", help="preset or architecture, e.g. m3snet-32; 'auto' (the default with --checkpoint) "
                                   "detects it from the checkpoint")
    p.set_defaults(model_required=required)
    p.add_argument("--checkpoint", help="weights (upstream, BasicSR, bare or .safetensors); default: random")
    p.add_argument("--arg", type=_kwarg, action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument (upstream name, JSON value), e.g. --arg width=16; repeatable")


def _detect_model(args: argparse.Namespace) -> None:
    """--model auto (or none) with --checkpoint: name the architecture, preset or constructor
    arguments from the weights, say what was found, and go on as if they had been given."""
    if not hasattr(args, "model_required") or args.model not in (None, "auto"):
        return
    if args.checkpoint is None:
        if args.model == "auto" or args.model_required:
            raise ValueError("give --model (a preset or architecture, see `irdeploy models`) or a --checkpoint to detect it from")
        return
    if getattr(args, "onnx", None) or getattr(args, "engine", None):
        return  # the graph or engine runs; the checkpoint only vouches for its weights
    import dataclasses

    from irdeploy.model.checkpoint import detect_checkpoint

    found = detect_checkpoint(args.checkpoint)
    given = {key for key, _ in args.arg}  # an --arg the user passed is not assumed
    found = dataclasses.replace(found, assumed=tuple(a for a in found.assumed if a.name not in given))
    print(f"irdeploy {args.command}: detected {found.describe()} in {args.checkpoint}", file=sys.stderr)
    args.model = found.name
    args.arg = [*found.kwargs.items(), *args.arg]


def _set_help(p: argparse.ArgumentParser, option: str, text: str) -> None:
    """Reword a shared option's help where a verb's default differs (the quickstart's checkpoint)."""
    next(a for a in p._actions if option in a.option_strings).help = text


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    """What runs the images, for every verb that runs them (``irdeploy.runtime.artifacts.open_backend``)."""
    p.add_argument("--backend", choices=backend_names(),
                   help="; ".join(f"{b.name}: {b.description}" for b in backends())
                   + "; default: the backend of the --engine or --onnx file, else torch")
    _add_model_args(p, required=False)
    p.add_argument("--onnx", help="ONNX graph to run (ort) or to build an engine from (trt)")
    p.add_argument("--engine", help="TensorRT engine to run (trt)")
    p.add_argument("--precision", choices=ENGINE_PRECISIONS, default="fp32",
                   help="of the ONNX graph (ort) or engine (trt) made on the fly from --model/--checkpoint (default: %(default)s)")
    p.add_argument("--cache-dir", help="where graphs and engines made on the fly are kept (default: $XDG_CACHE_HOME/irdeploy)")
    p.add_argument("--threads", type=_positive, help="intra-op threads (torch, ONNX Runtime)")
    p.add_argument("--device", type=_device(), default="cpu", help="cpu, cuda or cuda:N (default: %(default)s; trt always runs on a GPU)")
    p.add_argument("--pad-mode", choices=PAD_MODES,
                   help="padding of sizes off the network's multiple (default: the graph's or engine's recorded mode; "
                        "replicate for torch and graphs made on the fly; constant = upstream's zeros)")


def _require_device(kind: str, device: str) -> None:
    """Before any export or build: can ``kind`` run on ``device`` here (TensorRT checks its own GPU)."""
    from .devices import require_onnxruntime_device, require_torch_device

    artifact = get_backend(kind).artifact
    if artifact is None:
        require_torch_device(device)
    elif artifact == "onnx":
        require_onnxruntime_device(device)


def _open_backend(args: argparse.Namespace):
    from .artifacts import open_backend

    given = args.engine or args.onnx
    kind = args.backend or (backend_for_file(given).name if given else "torch")
    _require_device(kind, args.device)
    if args.model and args.checkpoint is None and not (args.onnx or args.engine):
        print(f"irdeploy {args.command}: warning: no --checkpoint, running {args.model} with random weights", file=sys.stderr)
    backend = open_backend(kind, model=args.model, checkpoint=args.checkpoint, model_args=dict(args.arg), onnx=args.onnx,
                           engine=args.engine, precision=args.precision, cache_dir=args.cache_dir, threads=args.threads,
                           device=args.device, pad_mode=args.pad_mode)
    if backend.artifact is not None:
        print(f"irdeploy {args.command}: {backend.artifact.describe()}", file=sys.stderr)
    return backend


def _cmd_restore(args: argparse.Namespace) -> int:
    from . import video
    from .restore import restore

    if video.command.wants_video(args):  # a clip or image sequence: decode -> infer -> encode (irdeploy.runtime.video)
        return video.command.run(args, lambda: _open_backend(args))
    if os.path.exists(args.output) and not os.path.isdir(args.output):  # before a model is loaded or exported
        raise ValueError(f"{args.output} is a file; -o is the folder restored images are written into")
    with _open_backend(args) as backend:
        report = restore(args.inputs, args.output, backend, tile=args.tile, overlap=args.overlap, batch=args.batch,
                         fmt=args.format, overwrite=args.overwrite, workers=args.workers,
                         progress=not args.quiet and sys.stderr.isatty())
    print(report.summary())
    return report.exit_code


def _cmd_degrade(args: argparse.Namespace) -> int:
    from irdeploy.model.degrade import degrade_folder

    print(degrade_folder(args.clean, args.output, args.kind, seed=args.seed, crops=args.crops, size=args.size).summary())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from irdeploy.model.train import TrainConfig, train

    from .devices import require_torch_device

    require_torch_device(args.device)
    iters = args.iters if args.iters is not None or args.seconds else 1000
    config = TrainConfig(model=args.model, model_args=dict(args.arg), data=args.data, val=args.val, out=args.out,
                         iters=iters, max_seconds=args.seconds, batch=args.batch, crop=args.crop, lr=args.lr,
                         loss=args.loss, amp=args.amp, device=args.device, seed=args.seed, workers=args.workers,
                         threads=args.threads, val_every=args.val_every, checkpoint=args.checkpoint,
                         resume=args.resume, identity_init=args.identity_init,
                         progress=not args.quiet and sys.stderr.isatty())
    print(train(config).summary())
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from rich.console import Console

    from irdeploy.core.pairs import find_pairs

    from .artifacts import open_backend
    from .evaluate import evaluate

    pairs = find_pairs(args.data, limit=args.limit)
    if args.reference and not args.model:
        raise ValueError("--reference torch runs the eager model: give --model (and --checkpoint)")
    if args.reference:
        _require_device("torch", args.device)
    with _open_backend(args) as backend, (  # the reference pads as the backend does: ΔPSNR compares like with like
            open_backend("torch", model=args.model, checkpoint=args.checkpoint, model_args=dict(args.arg),
                         threads=args.threads, device=args.device, pad_mode=backend.pad_mode)
            if args.reference else nullcontext()) as ref:
        result = evaluate(backend, pairs, reference=ref, quantized=not args.no_quantize, data=args.data,
                          progress=not args.quiet and sys.stderr.isatty())
    Console().print(result.table())  # fits 80 columns; every per-image score is in --json
    print(result.summary())
    if args.json:
        print(f"wrote {result.write_json(args.json)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="irdeploy", description="Image-restoration networks to ONNX and TensorRT.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model presets")
    p.add_argument("--stats", action="store_true", help="also count GMACs at 256x256 (same counter for every model)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("quickstart", help="blur shipped photographs, restore them through export, ONNX Runtime, "
                                          "eval and bench; write a report folder")
    p.add_argument("--out", default="irdeploy-quickstart", help="report folder (default: %(default)s)")
    _add_model_args(p, required=False)
    _set_help(p, "--model", "preset or architecture of --checkpoint (default: the bundled checkpoint's M3SNet, width 16)")
    _set_help(p, "--checkpoint", "weights to restore with, together with --model (default: the bundled checkpoint, "
                                 "trained on CPU on the shipped photographs; not random weights)")
    p.add_argument("--train-seconds", type=_seconds, default=0.0,
                   help="train the quickstart model from scratch for this long instead of using the bundled checkpoint")
    p.add_argument("--threads", type=_positive, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("export", help="export a model to a checked ONNX graph")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32",
                   help="what the graph computes in: fp32, or fp16/bf16 inside with float32 inputs and outputs, "
                        "or int8 (calibrated Q/DQ on Conv/MatMul inputs) (default: %(default)s)")
    p.add_argument("--calibration", metavar="DIR",
                   help="int8: calibrate on crops of the images in DIR (default: the shipped photographs)")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS,
                   help="int8: activation-range calibrator (default: percentile, measured best)")
    p.add_argument("--int8-input-convs", choices=("float", "int8"),
                   help="int8: the convolutions reading the input image stay float (default) or are quantized")
    p.add_argument("--attention", choices=("matmul", "onnx23"), default="matmul",
                   help="attention core: MatMul-Softmax-MatMul (opset 18) or the opset-23 Attention op")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18, 23 for --attention onnx23)")
    p.add_argument("--static", type=_size, metavar="HxW", help="fixed input size instead of dynamic N/H/W")
    p.add_argument("--batch", type=_positive, default=1, help="batch size of a --static export (default 1)")
    p.add_argument("--tlc", type=_size, metavar="HxW", help="apply the test-time local converter for this training crop")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs eager parity gate")
    p.add_argument("--min-psnr", type=_positive_number, help="parity floor in dB vs eager fp32 (default: 80 fp32, 40 fp16, 30 bf16)")
    p.add_argument("--fp32-nodes", help="comma-separated node names to keep float32 (from validate --bisect)")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT parser check")
    p.add_argument("--pad-mode", choices=PAD_MODES, default=INFERENCE_PAD_MODE,
                   help="how runtimes pad sizes off the network's multiple, recorded in the graph (default: %(default)s; "
                        "constant = upstream's zeros, which leave a line near the right/bottom edge)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("fp16-audit", help="rank op families by the error low precision adds")
    _add_model_args(p)
    p.add_argument("--precision", choices=(*REDUCED, *QUANTIZED), default="fp16",
                   help="the low precision to audit; int8 ranks single layers (default: %(default)s)")
    p.add_argument("--calibration", metavar="DIR", help="int8: calibration images (default: the shipped photographs)")
    p.add_argument("--size", type=_size, default=(128, 128), metavar="HxW", help="image crop size (default 128x128)")
    p.add_argument("--json", type=_output_file, help="also write the rows as JSON")
    p.add_argument("--no-eager", action="store_true", help="skip the eager PyTorch cross-check")
    p.set_defaults(func=_cmd_fp16_audit)

    p = sub.add_parser("build", help="build a strongly typed TensorRT engine from an ONNX graph")
    p.add_argument("onnx", help="the ONNX graph to build (from irdeploy export, or any NCHW image graph)")
    p.add_argument("-o", "--output", required=True, help="engine file (a .json sidecar is written beside it)")
    p.add_argument("--precision", choices=ENGINE_PRECISIONS, default="fp16",
                   help="engine precision: fp32, tf32, fp16, bf16, best (fp16 with tf32) or int8 (a Q/DQ graph) (default: %(default)s)")
    p.add_argument("--shapes", nargs="+", metavar="KIND=NxCxHxW",
                   help="min=1x3x64x64 opt=1x3x720x1280 max=1x3x1088x1920 (default; rounded to the pad multiple)")
    p.add_argument("--trt", choices=FLAVOURS, default="auto",
                   help="TensorRT flavour: auto = data-centre TensorRT if importable, else TensorRT-RTX")
    p.add_argument("--workspace", type=int, help="builder workspace limit in bytes")
    p.add_argument("--opt-level", type=int, help="builder optimization level 0-5")
    p.add_argument("--timing-cache", help="timing cache file, read and updated (TensorRT)")
    p.add_argument("--compute-capability", action="append", metavar="X.Y",
                   help="TensorRT-RTX target (repeatable, or 'current'); default: every supported RTX architecture")
    p.add_argument("--attention", choices=("auto", "fused", "decomposable"), default="auto",
                   help="attention layers: a fused kernel where TensorRT has one, else decomposed (auto); "
                        "fused only (fail without a kernel); or always decomposed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.add_argument("--device", type=int, default=0,
                   help="CUDA device index a data-centre (or --compute-capability current) build is for (default: %(default)s)")
    p.add_argument("--kernel-specialization", choices=("eager", "lazy", "none"), default="eager",
                   help="TensorRT-RTX dynamic-shape kernels the runner uses: eager (bit-exact from the first run), "
                        "lazy (fallback kernels until compiled) or none (default: %(default)s)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("validate", help="compare an ONNX graph or engine with the eager model")
    _add_model_args(p)
    artifact = p.add_mutually_exclusive_group(required=True)
    artifact.add_argument("--onnx", help="the ONNX graph to compare (its metadata names the checkpoint it was exported from)")
    artifact.add_argument("--engine", help="the TensorRT engine to compare (needs a GPU; its sidecar names the checkpoint)")
    p.add_argument("--min-psnr", type=_positive_number, help="PSNR floor in dB (default by precision: 80 / 40 / 30)")
    p.add_argument("--bisect", action="store_true",
                   help="on failure, find the nodes to keep float32 (binary search, ONNX Runtime CPU emulation)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("bench", help="latency, throughput and parity across backends and precisions")
    _add_model_args(p)
    p.add_argument("--backends", default="torch,ort", help=f"comma-separated: {','.join(backend_names())} (default: %(default)s)")
    p.add_argument("--precisions", default="fp32", help=f"comma-separated: {','.join(EXPORT_PRECISIONS)} (default: %(default)s)")
    p.add_argument("--shapes", default="1x3x256x256", help="comma-separated NxCxHxW (default: %(default)s)")
    p.add_argument("--batch", help="comma-separated batch sizes replacing N of every shape, e.g. 1,4")
    p.add_argument("--iterations", type=_positive, default=20, help="timed runs per candidate (default: %(default)s)")
    p.add_argument("--warmup", type=_not_negative, default=2, help="minimum warm-up runs per candidate (default: %(default)s)")
    p.add_argument("--warmup-seconds", type=_seconds, default=0.2, help="minimum warm-up time per candidate (default: %(default)s)")
    p.add_argument("--threads", help="intra-op threads for torch and ONNX Runtime alike; a comma list "
                   "(e.g. 1,2) measures the CPU backends once per count")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the torch backends run (default: %(default)s, CUDA when torch sees a GPU)")
    p.add_argument("--out", help="folder for results.json, results.csv, results.md and the chart results.png")
    p.add_argument("--workdir", help="keep the exported ONNX graphs and engines here (default: a temporary folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.add_argument("--video", metavar="CLIP", help="instead: restore this clip end to end per backend and precision "
                   "(fps and per-stage time; --batch, --threads, --workdir as the export cache apply)")
    p.add_argument("--rounds", type=int, default=1, help="with --video: interleaved rounds, medians reported (default: %(default)s)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("restore", help="restore image files, folders and globs with any backend")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (PNG, JPEG, BMP, TIFF), folders (recursive) or globs")
    p.add_argument("-o", "--output", required=True,
                   help="output folder; files keep their names (and sub-folders). For a clip: a video file, or a folder or pattern for PNG frames")
    _add_backend_args(p)
    p.add_argument("--tile", type=int, help="process larger images in tiles of this size (default: an engine's profile max, else whole images)")
    p.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default: %(default)s)")
    p.add_argument("--batch", type=_positive, default=1, help="same-size images (or tiles) per inference call (default: %(default)s)")
    p.add_argument("--format", default="png", help="output format: png, jpg, bmp or tiff (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--workers", type=_positive, default=2, help="decode/encode threads (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .video import command as video_command

    video_command.add_arguments(p)
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("degrade", help="make paired training data (input/ + target/) from clean images")
    p.add_argument("clean", metavar="CLEAN_DIR", help="folder of clean images (used whole, or cropped with --crops/--size)")
    p.add_argument("-o", "--output", required=True, metavar="DATA_DIR", help="writes DATA_DIR/input and DATA_DIR/target")
    p.add_argument("--kind", choices=("blur", "box", "rain"), default="blur",
                   help="random camera-shake blur, a fixed 9-pixel horizontal blur, or synthetic rain streaks")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files (default: %(default)s)")
    p.add_argument("--crops", type=int, help="random crops per image (with --size)")
    p.add_argument("--size", type=int, help="crop side in pixels (with --crops)")
    p.set_defaults(func=_cmd_degrade)

    p = sub.add_parser("train", help="train or fine-tune a model on paired folders (upstream checkpoint layout)")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="training pairs: DIR/input and DIR/target")
    p.add_argument("--val", help="validation pairs (whole images), scored in PSNR")
    p.add_argument("--out", required=True, help="folder for last.pth, best.pth, train_state.pth and log.json")
    p.add_argument("--iters", type=_positive, help="training steps (default 1000, or none with --seconds)")
    p.add_argument("--seconds", type=float, help="time budget; the schedule anneals to its end")
    p.add_argument("--batch", type=_positive, default=8, help="crops per step (default: %(default)s)")
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels (default: %(default)s)")
    p.add_argument("--lr", type=_positive_number, default=1e-3, help="peak learning rate (default: %(default)s)")
    p.add_argument("--loss", choices=("charbonnier", "psnr"), default="charbonnier",
                   help="training loss: Charbonnier (smooth L1, the papers' choice) or negative PSNR (default: %(default)s)")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                   help="mixed precision on CUDA (auto: bf16 where supported, else fp16; never on CPU)")
    p.add_argument("--device", type=_device(allow_auto=True), default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batches (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: %(default)s)")
    p.add_argument("--threads", type=_positive, help="CPU threads for torch")
    p.add_argument("--val-every", type=_not_negative, default=0, help="validate and save every N steps (default: at the end only)")
    p.add_argument("--resume", help="continue a run: its --out folder or train_state.pth")
    p.add_argument("--identity-init", action="store_true",
                   help="from scratch: zero the output convolutions so training starts from the identity (short runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="PSNR/SSIM (RGB and Y) over paired folders on any backend")
    p.add_argument("data", metavar="DATA_DIR", help="pairs: DATA_DIR/input and DATA_DIR/target (GoPro, HIDE, Rain100, Test100 layout)")
    _add_backend_args(p)
    p.add_argument("--reference", choices=("torch",), help="also run eager PyTorch (--model/--checkpoint) and report ΔPSNR")
    p.add_argument("--limit", type=_positive, help="only the first N pairs by name")
    p.add_argument("--json", type=_output_file, help="write every score to this JSON file")
    p.add_argument("--no-quantize", action="store_true", help="score outputs unrounded (default: rounded to 8 bits as saved)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("inspect", help="report on any ONNX file (ops, folding, precision, metadata)")
    p.add_argument("onnx", help="the ONNX file to report on (external-data files beside it)")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT parser check")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("triton", help="write a Triton model repository for an ONNX graph or engine")
    p.add_argument("--onnx", required=True, help="the ONNX graph (for an engine: the graph it was built from)")
    p.add_argument("--engine", help="serve this TensorRT engine (model.plan) instead of the graph")
    p.add_argument("-o", "--output", required=True, help="model repository folder")
    p.add_argument("--name", required=True, help="model name (folder and URL name)")
    p.add_argument("--max-batch", type=_positive, help="Triton max_batch_size (default: the engine profile's max N, else 8)")
    p.add_argument("--instances", type=_positive, default=1, help="model instances (default: %(default)s)")
    p.add_argument("--kind", choices=("auto", "gpu", "cpu"), default="auto",
                   help="instance kind; auto: GPU for engines and accelerated graphs, else CPU")
    p.add_argument("--dynamic-batching-delay-us", type=_not_negative, default=500, help="batcher queue delay (default: %(default)s)")
    p.add_argument("--accelerator", choices=("tensorrt", "cuda"), help="ONNX Runtime execution provider block (GPU)")
    p.add_argument("--no-warmup", action="store_true", help="no warm-up request in the config")
    p.add_argument("--force", action="store_true", help="replace an existing model of that name")
    p.set_defaults(func=_cmd_triton)

    p = sub.add_parser("serve", help="serve an ONNX graph or engine with Triton Inference Server, dynamic batching")
    artifact = p.add_mutually_exclusive_group(required=True)
    artifact.add_argument("--onnx", help="serve this ONNX graph with ONNX Runtime")
    artifact.add_argument("--engine", help="serve this TensorRT engine (needs a GPU)")
    p.add_argument("--name", default="irdeploy", help="model name (default: %(default)s; images: NAME_image)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--http-port", type=_port, default=8000, help="Triton's HTTP/REST port (default: %(default)s)")
    p.add_argument("--grpc-port", type=_port, default=8001, help="Triton's gRPC port (default: %(default)s)")
    p.add_argument("--max-batch", type=_positive, help="dynamic batch limit (default: the engine profile's max N, else 8)")
    p.add_argument("--max-size", type=_size, metavar="HxW", help="largest image (default: the engine profile's, else 2160x3840)")
    p.add_argument("--dynamic-batching-delay-us", type=_not_negative, default=500, help="batcher queue delay (default: %(default)s)")
    p.add_argument("--device", type=_device(), default="cpu", help="cpu or cuda[:N] (ONNX Runtime); engines run on cuda:N")
    p.add_argument("--threads", type=_positive, help="ONNX Runtime intra-op threads")
    p.add_argument("--log-file", help="Triton's log (default: standard output)")
    p.add_argument("--open-statistics", action="store_true",
                   help="serve Triton's statistics endpoint without an access token, so perf_analyzer can run "
                        "(loopback --host only; the other admin endpoints keep the server's access token)")
    p.set_defaults(func=_cmd_serve)
    for verb in sub.choices.values():  # every verb: --quiet silences the progress messages on stderr
        if not any("--quiet" in action.option_strings for action in verb._actions):
            verb.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from irdeploy.export import ExportError
    from irdeploy.core.tensorrt import TensorRTUnavailable
    from irdeploy.model import CheckpointError

    from .tensorrt import GPUError, NoGPUError

    from irdeploy.core.progress import ConsoleReporter, reporting

    try:
        with reporting(None if args.quiet else ConsoleReporter()):
            _detect_model(args)
            return args.func(args)
    except (CheckpointError, ExportError, TensorRTUnavailable, NoGPUError, ValueError, TypeError, OSError) as exc:
        print(f"irdeploy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except GPUError as exc:  # the input was fine; CUDA or TensorRT failed while running it
        print(f"irdeploy {args.command}: error: {exc}", file=sys.stderr)
        return 1
