"""Bad input on the command line: one line on stderr, exit code 2, nothing left behind, nothing changed.

Each case runs ``irdeploy.runtime.cli.main`` in this process on real files (a tiny exported
M3SNet, its checkpoint, photographs, corrupt files made here). Around every case the whole
working folder is hashed: a case passes only if no file appeared, vanished or changed, so "no
partial output" and "existing files untouched" are checked for every verb, not only where one
thinks of it. A few cases also run as ``python -m irdeploy`` to prove there is no traceback
outside pytest either.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from irdeploy.core.images import read_image, sample_path, write_image
from irdeploy.core.metadata import ExportMetadata
from irdeploy.model import save_checkpoint
from irdeploy.runtime.cli import main

from conftest import tiny_model

TINY_ARGS = ("--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]")
MARKER = "payload-ran"


class _Payload:
    """A pickle that runs a shell command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def world(tiny_onnx, tmp_path_factory) -> Path:
    """One folder of real inputs, good and bad, shared by every case (cases must not change it)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    graph, model = tiny_onnx("m3snet")
    ck = save_checkpoint(model, root / "ck.pth")
    save_checkpoint(tiny_model("m3snet", seed=1), root / "other.pth")
    # The graph of ck.pth's weights, recording them as `irdeploy export --checkpoint ck.pth` does.
    proto = onnx.load(str(graph))
    meta = ExportMetadata.read(proto)
    meta.checkpoint_sha256 = hashlib.sha256(ck.read_bytes()).hexdigest()
    meta.write(proto)
    onnx.save(proto, str(root / "m.onnx"))
    shutil.copyfile(graph, root / "random.onnx")  # exported from random weights: records no checkpoint
    onnx.save(proto, str(root / "ext.onnx"), save_as_external_data=True, location="ext.weights", size_threshold=0)
    (root / "ext.weights").unlink()
    data = (root / "m.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(data[: len(data) // 2])
    rank3 = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8])]))
    onnx.save(rank3, str(root / "rank3.onnx"))
    (root / "notes.txt").write_text("these are not weights\n")
    (root / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "payload.pth").write_bytes(pickle.dumps(_Payload(root / MARKER), protocol=2))
    photo = read_image(sample_path("chelsea.png"))
    for folder in ("pairs", "empty", "bomb"):
        for sub in ("input", "target"):
            (root / folder / sub).mkdir(parents=True)
    (root / "clean").mkdir()
    for sub in ("input", "target"):
        write_image(root / "pairs" / sub / "a.png", photo[:48, :48])
        Image.new("L", (15000, 15000)).save(root / "bomb" / sub / "b.png")  # 225 Mpixel in 200 kB
    write_image(root / "clean" / "a.png", photo[:64, :64])
    write_image(root / "clean" / "z.png", photo[:20, :20])  # sorted last: too small for --size 32
    write_image(root / "photo.png", photo[:40, :56])
    (root / "restored.png").write_bytes(b"an existing file")
    (root / "jsondir").mkdir()
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("was here before")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _error_lines(stderr: str) -> list[str]:
    """stderr without progress lines (``irdeploy: step ...``): what the user reads as the outcome."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("irdeploy: ")]


def _no_cuda_torch() -> bool:
    return not torch.cuda.is_available()


def _cpu_only_onnxruntime() -> bool:
    import onnxruntime as ort

    from irdeploy.runtime.devices import GPU_PROVIDERS

    return not set(GPU_PROVIDERS) & set(ort.get_available_providers())


# (id, arguments with {w} for the world folder, text the one error line must contain)
CASES = [
    # --checkpoint / --resume contents
    ("checkpoint-text", ["export", *TINY_ARGS, "--checkpoint", "{w}/notes.txt", "-o", "{w}/out.onnx"],
     "notes.txt: not a readable PyTorch checkpoint"),
    ("checkpoint-random-bytes", ["validate", *TINY_ARGS, "--checkpoint", "{w}/random.bin", "--onnx", "{w}/m.onnx"],
     "random.bin: not a readable PyTorch checkpoint"),
    ("checkpoint-pickle-payload", ["restore", "{w}/photo.png", "-o", "{w}/out", *TINY_ARGS, "--checkpoint", "{w}/payload.pth"],
     "weights-only unpickling refused it"),
    ("checkpoint-is-onnx", ["export", *TINY_ARGS, "--checkpoint", "{w}/m.onnx", "-o", "{w}/out.onnx"],
     "is an ONNX graph, not a checkpoint: pass it as --onnx"),
    ("resume-random-bytes", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "32", "--resume", "{w}/random.bin"],
     "random.bin: not a readable PyTorch checkpoint"),
    ("resume-pickle-payload", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "32", "--resume", "{w}/payload.pth"],
     "weights-only unpickling refused it"),
    ("resume-weights-only-file", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "32", "--resume", "{w}/ck.pth"],
     "not an irdeploy training state"),
    # constructor values and sizes
    ("arg-negative-width", ["export", "--model", "m3snet", "--arg", "width=-8", "-o", "{w}/out.onnx"], "width=-8 (must be at least 1)"),
    ("arg-zero-width", ["export", "--model", "m3snet", "--arg", "width=0", "-o", "{w}/out.onnx"], "width=0 (must be at least 1)"),
    ("arg-text-width", ["export", "--model", "m3snet", "--arg", "width=banana", "-o", "{w}/out.onnx"], "width='banana' (expected a whole number)"),
    ("arg-int-for-list", ["export", "--model", "m3snet", "--arg", "enc_blk_nums=3", "-o", "{w}/out.onnx"], "enc_blk_nums=3 (expected a list"),
    ("arg-constructor-refuses", ["export", "--model", "run", "--arg", "num_heads=[2]", "-o", "{w}/out.onnx"],
     "run: cannot build it with num_heads=[2]"),
    ("static-too-large", ["export", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--static", "300000x300000", "-o", "{w}/out.onnx",
                          "--no-tensorrt"], "is too large to export on this machine"),
    # ONNX files
    ("inspect-missing-external-data", ["inspect", "{w}/ext.onnx", "--no-tensorrt"], "ext.weights, which is missing"),
    ("triton-missing-external-data", ["triton", "--onnx", "{w}/ext.onnx", "-o", "{w}/repo", "--name", "m"], "ext.weights, which is missing"),
    ("serve-missing-external-data", ["serve", "--onnx", "{w}/ext.onnx"], "ext.weights, which is missing"),
    ("validate-not-onnx", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/notes.txt"], "notes.txt: not an ONNX model"),
    ("validate-truncated", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/truncated.onnx"],
     "truncated.onnx: not an ONNX model"),
    ("validate-other-rank", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/rank3.onnx"], "has rank 3"),
    ("validate-missing-external-data", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/ext.onnx"],
     "ext.weights, which is missing"),
    # section 5: the weights validate compares with are the graph's
    ("validate-no-checkpoint-where-recorded", ["validate", *TINY_ARGS, "--onnx", "{w}/m.onnx"],
     "was exported from the checkpoint with sha256"),
    ("validate-other-checkpoint", ["validate", *TINY_ARGS, "--checkpoint", "{w}/other.pth", "--onnx", "{w}/m.onnx"],
     "other.pth (sha256"),
    ("validate-checkpoint-for-random-graph", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/random.onnx"],
     "was made from random weights"),
    # threads and devices
    ("threads-negative", ["restore", "{w}/photo.png", "-o", "{w}/out", "--onnx", "{w}/m.onnx", "--threads", "-1"],
     "argument --threads: must be at least 1, got -1"),
    ("threads-zero-train", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--threads", "0"], "must be at least 1, got 0"),
    ("device-banana", ["restore", "{w}/photo.png", "-o", "{w}/out", "--onnx", "{w}/m.onnx", "--device", "banana"],
     "unknown device 'banana'"),
    ("device-banana-train", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--device", "banana"], "unknown device 'banana'"),
    pytest.param("device-cuda-cpu-torch", ["restore", "{w}/photo.png", "-o", "{w}/out", *TINY_ARGS, "--device", "cuda"],
                 "sees no CUDA GPU", marks=pytest.mark.skipif(not _no_cuda_torch(), reason="torch sees a GPU here"),
                 id="device-cuda-cpu-torch"),
    pytest.param("device-cuda-cpu-onnxruntime", ["restore", "{w}/photo.png", "-o", "{w}/out", "--onnx", "{w}/m.onnx", "--device", "cuda"],
                 "install onnxruntime-gpu", marks=pytest.mark.skipif(not _cpu_only_onnxruntime(), reason="ONNX Runtime has a GPU provider"),
                 id="device-cuda-cpu-onnxruntime"),
    # data folders and outputs
    ("eval-decompression-bomb", ["eval", "{w}/bomb", "--onnx", "{w}/m.onnx"], "could be decompression bomb"),
    ("train-empty-data", ["train", *TINY_ARGS, "--data", "{w}/empty", "--out", "{w}/run"], "no images"),
    ("train-crop-too-large", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "64"], "smaller than the 64x64 crop"),
    ("train-corrupt-checkpoint", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "32",
                                  "--checkpoint", "{w}/random.bin"], "random.bin: not a readable PyTorch checkpoint"),
    ("degrade-later-image-too-small", ["degrade", "{w}/clean", "-o", "{w}/dataset", "--crops", "1", "--size", "32"],
     "z.png: 20x20 is smaller than the crop size 32"),
    ("degrade-into-existing-folder", ["degrade", "{w}/clean", "-o", "{w}/existing", "--crops", "1", "--size", "32"],
     "smaller than the crop size 32"),
    ("restore-output-is-a-file", ["restore", "{w}/photo.png", "-o", "{w}/restored.png", *TINY_ARGS, "--checkpoint", "{w}/ck.pth",
                                  "--backend", "ort", "--cache-dir", "{w}/cache"], "restored.png is a file"),
    ("eval-json-is-a-folder", ["eval", "{w}/pairs", "--onnx", "{w}/m.onnx", "--json", "{w}/jsondir"], "jsondir is a folder"),
    ("eval-json-in-a-missing-folder", ["eval", "{w}/pairs", "--onnx", "{w}/m.onnx", "--json", "{w}/nowhere/scores.json"],
     "nowhere does not exist"),
    ("serve-max-batch-negative", ["serve", "--onnx", "{w}/m.onnx", "--max-batch", "-1"], "must be at least 1, got -1"),
    ("serve-max-batch-zero", ["serve", "--onnx", "{w}/m.onnx", "--max-batch", "0"], "must be at least 1, got 0"),
    ("serve-port-out-of-range", ["serve", "--onnx", "{w}/m.onnx", "--http-port", "99999"], "a TCP port is 1-65535, got 99999"),
    ("serve-negative-delay", ["serve", "--onnx", "{w}/m.onnx", "--dynamic-batching-delay-us", "-5"], "must be at least 0, got -5"),
    ("export-min-psnr-nan", ["export", *TINY_ARGS, "--min-psnr", "nan", "-o", "{w}/out.onnx"], "must be above 0, got nan"),
    ("validate-min-psnr-negative", ["validate", *TINY_ARGS, "--checkpoint", "{w}/ck.pth", "--onnx", "{w}/m.onnx", "--min-psnr", "-5"],
     "must be above 0, got -5"),
    ("train-val-every-negative", ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--val-every", "-1"],
     "must be at least 0, got -1"),
    ("quickstart-negative-training-time", ["quickstart", "--out", "{w}/qs", "--train-seconds", "-5"], "must be at least 0, got -5"),
    ("serve-device-banana", ["serve", "--onnx", "{w}/m.onnx", "--device", "banana"], "unknown device 'banana'"),
    ("triton-max-batch-zero", ["triton", "--onnx", "{w}/m.onnx", "-o", "{w}/repo", "--name", "m", "--max-batch", "0"],
     "must be at least 1, got 0"),
]


def _case(case):
    return case if hasattr(case, "values") else pytest.param(*case, id=case[0])


@pytest.mark.parametrize(("label", "argv", "message"), [_case(c) for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, capsys, label, argv, message) -> None:
    before = _snapshot(world)
    argv = [a.replace("{w}", str(world)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"irdeploy {argv[0]}: error: ") and message in lines[0], err
    assert ".partial" not in lines[0]  # never an internal temporary name
    assert _snapshot(world) == before, "a file appeared, vanished or changed"
    assert not (world / MARKER).exists(), "the pickle's payload ran"


@pytest.mark.parametrize("argv", [
    ["train", *TINY_ARGS, "--data", "{w}/pairs", "--out", "{w}/run", "--crop", "32", "--resume", "{w}/payload.pth"],
    ["export", *TINY_ARGS, "--checkpoint", "{w}/notes.txt", "-o", "{w}/out.onnx"],
    ["export", "--model", "m3snet", "--arg", "width=-8", "-o", "{w}/out.onnx"],
], ids=["resume-pickle", "checkpoint-text", "negative-width"])
def test_bad_input_as_a_user_runs_it(world, argv) -> None:
    """The same refusals through ``python -m irdeploy``: exit code 2, one line, no traceback."""
    before = _snapshot(world)
    result = subprocess.run([sys.executable, "-m", "irdeploy", *(a.replace("{w}", str(world)) for a in argv)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(_error_lines(result.stderr)) == 1, result.stderr
    assert _snapshot(world) == before and not (world / MARKER).exists()


def test_train_keeps_an_existing_output_folder(world, capsys) -> None:
    """An early failure removes only a folder the run itself created; the user's stays, with its files."""
    before = _snapshot(world)
    assert main(["train", *TINY_ARGS, "--data", "{w}/empty".format(w=world), "--out", str(world / "existing")]) == 2
    assert "no images" in capsys.readouterr().err and _snapshot(world) == before


def test_degrade_that_succeeds_publishes_every_pair(world, tmp_path) -> None:
    """The staging folder is invisible on success too: the dataset is complete, readable, with no leftovers."""
    from irdeploy.model.degrade import degrade_folder

    clean = tmp_path / "clean"
    shutil.copytree(world / "clean", clean)
    (clean / "z.png").unlink()
    result = degrade_folder(clean, tmp_path / "data", "box", crops=2, size=32)
    assert sorted(p.name for p in (tmp_path / "data" / "input").iterdir()) == ["a_000.png", "a_001.png"] == result.pairs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "data"]
    assert read_image(tmp_path / "data" / "target" / "a_001.png").shape == (32, 32, 3)


def test_server_settings_are_refused_before_triton_starts(world) -> None:
    """The library owns the rule: TritonServer refuses a batch limit below 1 in its constructor."""
    from irdeploy.runtime.serving import ServingError, TritonServer

    for kwargs, message in (({"max_batch": 0}, "max batch must be at least 1, got 0"),
                            ({"threads": -1}, "threads must be at least 1"),
                            ({"delay_us": -5}, "delay must be >= 0"),
                            ({"open_statistics": True, "host": "0.0.0.0"}, "loopback host")):
        with pytest.raises(ServingError, match=message):
            TritonServer(world / "m.onnx", **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx is not installed")
def test_validate_engine_compares_the_sidecar_checkpoint(world, tmp_path, capsys) -> None:
    """An engine's sidecar names the checkpoint of the graph it was built from; validate checks it
    before it needs a GPU (TensorRT-RTX builds on CPU)."""
    engine = tmp_path / "m.engine"
    assert main(["build", str(world / "m.onnx"), "-o", str(engine), "--precision", "fp32", "--trt", "rtx",
                 "--shapes", "min=1x3x32x32", "opt=1x3x32x32", "max=1x3x64x64"]) == 0
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert sidecar["checkpoint_sha256"] == hashlib.sha256((world / "ck.pth").read_bytes()).hexdigest()
    capsys.readouterr()
    for extra, message in (((), "was exported from the checkpoint with sha256"), (("--checkpoint", str(world / "other.pth")), "other.pth")):
        assert main(["validate", *TINY_ARGS, *extra, "--engine", str(engine)]) == 2
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0]



def test_an_atomic_write_onto_a_folder_names_the_folder(tmp_path) -> None:
    """Library callers (eval's write_json, bench, sidecars) get the user's path, not the temporary name."""
    from irdeploy.core.fileio import atomic_write

    with pytest.raises(IsADirectoryError) as caught:
        atomic_write(tmp_path, b"{}")
    assert str(tmp_path) in str(caught.value) and ".partial" not in str(caught.value)
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write(tmp_path / "nowhere" / "x.json", b"{}")
    assert "nowhere does not exist" in str(caught.value) and ".partial" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_validate_runs_a_graph_whose_weights_are_external(world, tmp_path, capsys) -> None:
    """The loader that names a missing external-data file also loads a present one for the parity run."""
    proto = onnx.load(str(world / "m.onnx"))
    onnx.save(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.weights", size_threshold=0)
    assert main(["validate", *TINY_ARGS, "--checkpoint", str(world / "ck.pth"), "--onnx", str(tmp_path / "ext.onnx")]) == 0
    assert "parity passed" in " ".join(capsys.readouterr().out.split())
