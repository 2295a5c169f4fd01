"""Train or fine-tune a zoo model on paired folders, writing checkpoints in the upstream layout.

The recipe follows the seed papers where they agree: Charbonnier loss (MPRNet adds 0.05 x an
edge loss on Laplacian-of-Gaussian details for deblurring and deraining, summed with the main
loss over its three stage outputs), random square crops with the eight flips/rotations, AdamW
with a cosine schedule after a linear warm-up. A PSNR loss (NAFNet's, the objective M3SNet's
code base inherits) is the alternative.

The schedule is a function of *progress* in [0, 1], not of the step alone: with an iteration
count progress is ``step / iters``; with a time budget (``max_seconds``, what the quickstart
uses) it is the fraction of the budget spent, so the learning rate anneals to its floor exactly
when the time is up. Batches depend only on ``(seed, step)`` (see :mod:`irdeploy.model.data`),
so resuming from ``train_state.pth`` continues the same run.

Files in ``out``: ``last.pth`` and ``best.pth`` (best validation PSNR), loadable by
``load_model`` and every other command; ``train_state.pth`` (the same weights plus optimizer,
step and elapsed time) to resume; ``log.json``, the loss and validation curves.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from irdeploy.core.images import psnr, read_image
from irdeploy.core.pairs import find_pairs
from irdeploy.core.fileio import atomic_path, atomic_write

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .data import PairedCrops, StepBatchSampler
from .registry import create, final_image
from .spec import spec_of

LOSSES = ("charbonnier", "psnr")
AMP_MODES = ("auto", "off", "bf16", "fp16")
STATE_NAME = "train_state.pth"
# What a resumable training state holds besides the weights (see ``save`` in :func:`_train`).
RESUME_KEYS = ("state_dict", "optimizer", "step", "seconds", "model_name", "model_args", "log")


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in ``log.json`` and in the resume state."""

    model: str
    data: str
    out: str
    model_args: dict[str, Any] = field(default_factory=dict)
    val: str | None = None
    iters: int | None = 1000
    max_seconds: float | None = None
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-7
    warmup: float = 0.05  # fraction of the run
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.9)
    loss: str = "charbonnier"
    edge_weight: float | None = None  # None: 0.05 for MPRNet, as its recipes, else 0
    grad_clip: float | None = None
    amp: str = "auto"  # CUDA only: bf16 where supported, else fp16 with a gradient scaler
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    val_every: int = 0  # validate (with val) and save every N steps; 0: at the end only
    log_every: int = 10
    checkpoint: str | None = None
    resume: str | None = None
    identity_init: bool = False  # see zero_residual_convs
    progress: bool = True

    def check(self) -> None:
        """Reject impossible settings before any work starts (one ValueError per problem)."""
        if self.iters is None and self.max_seconds is None:
            raise ValueError("give an iteration count (iters) or a time budget (max_seconds)")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters must be positive, got {self.iters}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.batch < 1:
            raise ValueError(f"batch must be positive, got {self.batch}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the run in [0, 1), got {self.warmup}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; expected one of {', '.join(AMP_MODES)}")
        if self.checkpoint and self.resume:
            raise ValueError("--checkpoint (initial weights) and --resume (continue a run) exclude each other")
        if self.identity_init and (self.checkpoint or self.resume):
            raise ValueError("identity_init starts from scratch; it would overwrite the weights being loaded")


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    best: Path | None
    log: Path
    steps: int
    start_step: int
    seconds: float
    losses: list[dict[str, float]]
    val: list[dict[str, float]]
    val_input_psnr: float | None

    def summary(self) -> str:
        lines = [f"trained {self.steps - self.start_step} steps (to step {self.steps}) in {self.seconds:.0f} s"]
        if self.losses:
            lines.append(f"loss        {self.losses[0]['loss']:.4f} -> {self.losses[-1]['loss']:.4f}")
        if self.val:
            lines.append(f"val PSNR    {self.val[0]['psnr']:.2f} -> {self.val[-1]['psnr']:.2f} dB"
                         + (f" (degraded inputs {self.val_input_psnr:.2f} dB)" if self.val_input_psnr is not None else ""))
        lines.append(f"checkpoint  {self.checkpoint}" + (f" (best: {self.best})" if self.best else ""))
        lines.append(f"log         {self.log}")
        return "\n".join(lines)


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((x - y)^2 + eps^2)``: L1 away from zero, smooth at it."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def psnr_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative PSNR (dB, peak 1) averaged over the batch: minimising it maximises PSNR."""
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return (10.0 / math.log(10.0)) * torch.log(mse + 1e-8).mean()


def laplacian_detail(x: torch.Tensor) -> torch.Tensor:
    """One Laplacian-pyramid level: the image minus its blurred, down- and re-upsampled copy."""
    g = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=x.dtype, device=x.device)
    kernel = torch.outer(g, g).expand(x.shape[1], 1, 5, 5)

    def smooth(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (2, 2, 2, 2), mode="replicate"), kernel, groups=t.shape[1])

    blurred = smooth(x)
    sparse = torch.zeros_like(blurred)
    sparse[..., ::2, ::2] = 4.0 * blurred[..., ::2, ::2]
    return x - smooth(sparse)


def edge_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return charbonnier(laplacian_detail(x), laplacian_detail(y))


def restoration_loss(output: Any, target: torch.Tensor, kind: str = "charbonnier", edge_weight: float = 0.0) -> torch.Tensor:
    """The training objective over every image a model returns (MPRNet: one per stage, summed)."""
    outputs = output if isinstance(output, (list, tuple)) else [output]
    main = charbonnier if kind == "charbonnier" else psnr_loss
    total = sum(main(o, target) for o in outputs)
    if edge_weight:
        total = total + edge_weight * sum(edge_loss(o, target) for o in outputs)
    return total


def default_edge_weight(model: nn.Module) -> float:
    """The published recipe's edge-loss weight (the spec's; MPRNet 0.05, the others none)."""
    return spec_of(model).edge_loss_weight


def zero_residual_convs(model: nn.Module) -> list[str]:
    """Zero the convolutions that write each output's residual; returns their names.

    Every zoo network ends in ``conv(features) + input``. With those convolutions at zero the
    untrained network is the identity, so training starts at the degraded input's PSNR instead
    of the 10 dB below it that a random output layer costs; a run of a few minutes on a CPU
    then improves on its input rather than spending its budget getting back to it. The
    gradients of everything upstream are zero only for the first step.
    """
    names = list(spec_of(model).identity_convs)
    if not names:
        raise ValueError(f"{spec_of(model).name}: its spec names no identity_convs to zero for identity_init")
    for name in names:
        conv = model.get_submodule(name)
        nn.init.zeros_(conv.weight)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return names


def learning_rate(progress: float, config: TrainConfig) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine from ``lr`` to ``min_lr``."""
    progress = min(max(progress, 0.0), 1.0)
    if config.warmup and progress < config.warmup:
        return config.lr * max(progress / config.warmup, 1e-3)
    span = (progress - config.warmup) / (1.0 - config.warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * span))


def _progress(step: int, seconds: float, config: TrainConfig) -> float:
    fractions = []
    if config.iters:
        fractions.append(step / config.iters)
    if config.max_seconds:
        fractions.append(seconds / config.max_seconds)
    return max(fractions)


def _device_and_amp(config: TrainConfig) -> tuple[torch.device, torch.dtype | None]:
    """Mixed precision only on CUDA: CPU autocast is slower than float32 for these networks."""
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda requested but torch sees no CUDA GPU")
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return device, None
    if device.type != "cuda":
        raise ValueError(f"mixed precision ({config.amp}) is for CUDA; this run is on {device.type}")
    if config.amp == "fp16" or (config.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return device, torch.float16
    return device, torch.bfloat16


def _state_path(resume: str) -> Path:
    path = Path(resume)
    path = path / STATE_NAME if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"{resume}: no training state ({STATE_NAME}) to resume; to start from weights only, "
                              "use --checkpoint")
    return path


class _Validator:
    """Mean PSNR of the model on whole validation images (decoded once, kept in memory)."""

    def __init__(self, folder: str, device: torch.device, amp: torch.dtype | None) -> None:
        pairs = find_pairs(folder)
        self.images = [(read_image(p.input), read_image(p.target)) for p in pairs]
        self.device, self.amp = device, amp
        self.input_psnr = float(np.mean([psnr(a, b) for a, b in self.images]))

    def __call__(self, model: nn.Module) -> float:
        model.eval()
        scores = []
        with torch.inference_mode(), torch.autocast(self.device.type, self.amp or torch.float32, enabled=self.amp is not None):
            for degraded, clean in self.images:
                x = torch.from_numpy(degraded.transpose(2, 0, 1)[None].copy()).to(self.device)
                y = final_image(model(x), model).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
                scores.append(psnr(y, clean))
        model.train()
        return float(np.mean(scores))


def train(config: TrainConfig) -> TrainResult:
    """Run ``config`` to its iteration count or time budget; returns where everything was written.

    ``threads`` applies for the duration of the run only (torch's thread count is process-wide).
    """
    config.check()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; --out is the folder the run writes into")
    created = not out.exists()
    previous = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # a run that failed before writing leaves no folder
            out.rmdir()
        raise
    finally:
        torch.set_num_threads(previous)


def _train(config: TrainConfig) -> TrainResult:
    from irdeploy.core.progress import stderr_console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    device, amp = _device_and_amp(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = PairedCrops.from_folder(config.data, config.crop)
    validator = _Validator(config.val, device, amp) if config.val else None

    torch.manual_seed(config.seed)
    model = create(config.model, **config.model_args)
    step, seconds, log = 0, 0.0, {"train": [], "val": []}
    state = None
    if config.resume:
        state_file = _state_path(config.resume)
        state = read_checkpoint(state_file)
        missing = [k for k in RESUME_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise CheckpointError(f"{state_file}: not an irdeploy training state (no {', '.join(missing)}); "
                                  "to start from its weights, use --checkpoint")
        trained = (state.get("model_name"), state.get("model_args"))
        if trained != (config.model, config.model_args):
            raise ValueError(f"{state_file}: trained as {trained[0]} {trained[1]}, not {config.model} {config.model_args}")
        load_checkpoint(model, state_file)
        step, seconds, log = state["step"], state["seconds"], json.loads(state["log"])
    elif config.checkpoint:
        load_checkpoint(model, config.checkpoint)
    elif config.identity_init:
        zero_residual_convs(model)
    model.to(device).train()

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    edge_weight = default_edge_weight(model) if config.edge_weight is None else config.edge_weight
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatchSampler(len(dataset), config.batch, config.seed, step),
                                         num_workers=config.workers, pin_memory=device.type == "cuda")
    log.update(config=asdict(config), parameters=sum(p.numel() for p in model.parameters()), device=str(device),
               amp=str(amp).replace("torch.", "") if amp else "off", edge_weight=edge_weight, pairs=len(dataset))
    if validator:
        log["val_input_psnr"] = validator.input_psnr
        if not log["val"]:
            log["val"].append({"step": step, "seconds": seconds, "psnr": validator(model)})
    best_psnr = max((v["psnr"] for v in log["val"]), default=-math.inf)
    paths = {"last": out / "last.pth", "best": out / "best.pth", "state": out / STATE_NAME, "log": out / "log.json"}

    def save() -> None:
        epoch = step * config.batch // len(dataset)
        state_dict = {"module." + k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_path(paths["state"]) as tmp:
            torch.save({"epoch": epoch, "state_dict": state_dict, "optimizer": optimizer.state_dict(), "step": step,
                        "seconds": seconds, "model_name": config.model, "model_args": config.model_args,
                        "log": json.dumps(log)}, tmp)
        save_checkpoint(model, paths["last"], epoch=epoch)
        atomic_write(paths["log"], json.dumps(log, indent=1))

    window: list[float] = []
    val_text = f"{log['val'][-1]['psnr']:.2f} dB" if log["val"] else "-"
    columns = [TextColumn("[bold]train[/bold] step {task.fields[step]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"), TimeElapsedColumn()]
    start_step, started = step, time.perf_counter() - seconds
    with Progress(*columns, console=stderr_console(), disable=not config.progress) as bar:  # shared: nests in the quickstart
        task = bar.add_task("train", total=100, step=step, loss="-", val=val_text)
        for inputs, targets in loader:
            progress = _progress(step, seconds, config)
            if progress >= 1.0:
                break
            lr = learning_rate(progress, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.autocast(device.type, amp or torch.float32, enabled=amp is not None):
                loss = restoration_loss(model(inputs), targets, config.loss, edge_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ValueError(f"loss became {value} at step {step}; lower --lr or set grad_clip")
            window.append(value)
            step += 1
            seconds = time.perf_counter() - started
            if step % config.log_every == 0:
                log["train"].append({"step": step, "seconds": round(seconds, 3), "loss": float(np.mean(window)), "lr": lr})
                window = []
            if config.val_every and step % config.val_every == 0:
                if validator:
                    best_psnr = _validate(validator, model, log, step, seconds, best_psnr, paths["best"])
                    bar.update(task, val=f"{log['val'][-1]['psnr']:.2f} dB")
                save()
            bar.update(task, completed=100 * _progress(step, seconds, config), step=step, loss=f"{value:.4f}")
        if window:
            log["train"].append({"step": step, "seconds": round(seconds, 3), "loss": float(np.mean(window)), "lr": lr})
        if validator and log["val"][-1]["step"] != step:
            best_psnr = _validate(validator, model, log, step, seconds, best_psnr, paths["best"])
            bar.update(task, val=f"{log['val'][-1]['psnr']:.2f} dB")
    save()
    return TrainResult(out=out, checkpoint=paths["last"], best=paths["best"] if paths["best"].exists() else None,
                       log=paths["log"], steps=step, start_step=start_step, seconds=seconds,
                       losses=log["train"], val=log["val"], val_input_psnr=log.get("val_input_psnr"))


def _validate(validator: _Validator, model: nn.Module, log: dict, step: int, seconds: float,
              best_psnr: float, best_path: Path) -> float:
    score = validator(model)
    log["val"].append({"step": step, "seconds": round(seconds, 3), "psnr": score})
    if score > best_psnr:
        save_checkpoint(model, best_path, epoch=step)
        return score
    return best_psnr
