"""``config.pbtxt`` for an irdeploy artifact, built and checked with Triton's protobuf schema.

The configuration is built as a ``ModelConfig`` message from ``tritonclient``'s
``model_config_pb2`` (the schema Triton itself parses ``config.pbtxt`` with), printed as text,
then parsed back and checked against the artifact: a field Triton does not know fails the parse,
and a tensor name, type or dims that differ from the graph's, or a batch size outside an
engine's profile, fails the check. Either way nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irdeploy.core.metadata import PAD_MODE_KEY, PAD_MULTIPLE_KEY

from ..registry import triton_backend

from .artifact import ArtifactSpec, TensorSpec
from .errors import ServingError, require

INSTANCE_KINDS = ("auto", "gpu", "cpu")
ACCELERATORS = ("tensorrt", "cuda")
# Config parameters that tell a client the padding contract of the raw tensor model (Triton
# runs the graph as it is: H and W must be multiples of the pad multiple).
DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class ConfigOptions:
    """What ``irdeploy triton`` lets a user choose; the rest comes from the artifact.

    ``kind``: instance kind; ``auto`` is GPU for an engine or an ONNX graph with an
    ``accelerator`` (TensorRT or CUDA execution provider in Triton's ONNX Runtime backend),
    CPU otherwise.
    """

    max_batch: int | None = None  # None: the engine profile's max N, else DEFAULT_MAX_BATCH
    instances: int = 1
    kind: str = "auto"
    delay_us: int = 500
    accelerator: str | None = None
    warmup: bool = True


def _pb2() -> Any:
    require("tritonclient")
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def build_config(spec: ArtifactSpec, name: str, options: ConfigOptions = ConfigOptions()) -> Any:
    """The ``ModelConfig`` message serving ``spec`` as model ``name`` (checked; see module doc)."""
    pb = _pb2()
    _check_options(spec, options)
    config = pb.ModelConfig(name=name)
    config.platform, config.backend = triton_backend(spec.kind).triton
    config.max_batch_size = max_batch(spec, options) if spec.batched else 0
    for tensor, field in ((spec.input, config.input), (spec.output, config.output)):
        field.add(name=tensor.name, data_type=pb.DataType.Value(tensor.data_type), dims=_dims(spec, tensor))
    if spec.batched:
        config.dynamic_batching.max_queue_delay_microseconds = options.delay_us
    kind = _kind(spec, options)
    config.instance_group.add(count=options.instances, kind=pb.ModelInstanceGroup.Kind.Value(f"KIND_{kind.upper()}"))
    if options.accelerator:
        config.optimization.execution_accelerators.gpu_execution_accelerator.add(name=options.accelerator)
    config.parameters[PAD_MULTIPLE_KEY].string_value = str(spec.pad_multiple)
    config.parameters[PAD_MODE_KEY].string_value = spec.pad_mode
    if options.warmup:
        h, w = spec.warmup_hw
        warm = config.model_warmup.add(name="irdeploy_random_image", batch_size=1 if spec.batched else 0)
        dims = [*spec.input.dims[1:2], h, w] if spec.batched else [*spec.input.dims[:2], h, w]
        warm.inputs[spec.input.name].data_type = pb.DataType.Value(spec.input.data_type)
        warm.inputs[spec.input.name].dims.extend(dims)
        warm.inputs[spec.input.name].random_data = True
    return validate_config(to_text(config), spec)


def to_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig`` message."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def validate_config(text: str, spec: ArtifactSpec) -> Any:
    """Parse ``text`` with Triton's schema and check it against ``spec``; the parsed message."""
    from google.protobuf import text_format

    pb = _pb2()
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ServingError(f"config.pbtxt does not parse with Triton's model-config schema: {exc}") from None
    want_platform = triton_backend(spec.kind).triton
    if (config.platform, config.backend) != want_platform:
        raise ServingError(f"config names platform {config.platform!r} backend {config.backend!r}; "
                           f"a{'n engine' if spec.kind == 'engine' else 'n ONNX graph'} needs {want_platform}")
    batch = config.max_batch_size
    if batch < 0 or (batch > 0) != spec.batched:
        raise ServingError(f"max_batch_size {batch}: the artifact's batch dimension is "
                           f"{'dynamic (needs max_batch_size >= 1)' if spec.batched else 'fixed (needs max_batch_size 0)'}")
    if spec.max_batch is not None and batch > spec.max_batch:
        raise ServingError(f"max_batch_size {batch} is larger than the engine profile's max batch {spec.max_batch} "
                           f"({spec.profile.describe() if spec.profile else ''}); rebuild the engine or lower --max-batch")
    for label, tensors, want in (("input", config.input, spec.input), ("output", config.output, spec.output)):
        if len(tensors) != 1:
            raise ServingError(f"config has {len(tensors)} {label}s; the artifact has one ({want.name!r})")
        got = tensors[0]
        if got.name != want.name:
            raise ServingError(f"config {label} {got.name!r} is not the artifact's {label} {want.name!r}")
        if pb.DataType.Name(got.data_type) != want.data_type:
            raise ServingError(f"config {label} {got.name!r} is {pb.DataType.Name(got.data_type)}, the artifact's is {want.data_type}")
        if tuple(got.dims) != _dims(spec, want):
            raise ServingError(f"config {label} {got.name!r} has dims {list(got.dims)}, the artifact's are {list(_dims(spec, want))}")
    for warm in config.model_warmup:
        for name, value in warm.inputs.items():
            if name != spec.input.name or any(d <= 0 for d in value.dims):
                raise ServingError(f"warm-up {warm.name!r} must feed input {spec.input.name!r} with concrete dims, "
                                   f"got {name!r} {list(value.dims)}")
            if spec.profile is not None and not spec.profile.contains([warm.batch_size, *value.dims]):
                raise ServingError(f"warm-up {warm.name!r} shape {[warm.batch_size, *value.dims]} is outside the engine "
                                   f"profile {spec.profile.describe()}")
    return config


def _dims(spec: ArtifactSpec, tensor: TensorSpec) -> tuple[int, ...]:
    """Triton's dims: without the batch dimension when Triton batches."""
    return tensor.dims[1:] if spec.batched else tensor.dims


def max_batch(spec: ArtifactSpec, options: ConfigOptions) -> int:
    """The batch size to serve: the user's, else the engine profile's max N, else 8."""
    if options.max_batch is not None:
        return options.max_batch
    return spec.max_batch if spec.max_batch is not None else DEFAULT_MAX_BATCH


def _kind(spec: ArtifactSpec, options: ConfigOptions) -> str:
    if options.kind != "auto":
        return options.kind
    return "gpu" if spec.kind == "engine" or options.accelerator else "cpu"


def _check_options(spec: ArtifactSpec, options: ConfigOptions) -> None:
    if options.kind not in INSTANCE_KINDS:
        raise ServingError(f"unknown instance kind {options.kind!r}; choose from {', '.join(INSTANCE_KINDS)}")
    if options.accelerator is not None and options.accelerator not in ACCELERATORS:
        raise ServingError(f"unknown accelerator {options.accelerator!r}; choose from {', '.join(ACCELERATORS)}")
    if options.accelerator and spec.kind == "engine":
        raise ServingError("execution accelerators belong to ONNX Runtime models; an engine already is TensorRT")
    if _kind(spec, options) == "cpu" and (spec.kind == "engine" or options.accelerator):
        raise ServingError(f"{'a TensorRT engine' if spec.kind == 'engine' else options.accelerator + ' acceleration'} "
                           "runs on GPU instances (KIND_GPU), not KIND_CPU")
    if options.instances < 1:
        raise ServingError(f"instances must be at least 1, got {options.instances}")
    if options.delay_us < 0:
        raise ServingError(f"dynamic batching delay must be >= 0 microseconds, got {options.delay_us}")
    if spec.batched and max_batch(spec, options) < 1:
        raise ServingError(f"max batch must be at least 1, got {options.max_batch}")
    if not spec.batched and (options.max_batch or 1) > 1:
        raise ServingError(f"{spec.onnx_path.name} has a fixed batch of {spec.input.dims[0]}: Triton cannot batch it "
                           f"(export with a dynamic batch, or use --max-batch 1)")
    if spec.batched and spec.min_batch > 1:
        raise ServingError(f"the engine profile's min batch is {spec.min_batch}, but Triton sends batches from 1: "
                           "rebuild with min=1xCxHxW")
