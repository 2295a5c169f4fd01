"""``irdeploy restore`` on clips and image sequences: timing, audio, colour, sizes, bad input.

Every clip is made here with PyAV (a photograph panned across the frame, a moving pattern, a
sine tone), its YUV made by FFmpeg's swscale, so that irdeploy's own colour code is checked
against an independent converter. Most runs use a real ONNX Runtime session of an Identity
graph (what comes out must be what went in); the acceptance test runs the bundled quickstart
checkpoint, exported once per session.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import av  # the video extra, part of the test extra: its absence is an error here, not a skip

from irdeploy.core.images import psnr, read_image, sample_path, write_image
from irdeploy.model.degrade import motion_blur
from irdeploy.runtime.cli import main
from irdeploy.runtime.video.clips import panned, pattern, sine, write_clip
from irdeploy.runtime.video.colour import layout, planes_to_rgb, resolve, rgb_to_planes
from irdeploy.runtime.video.decode import read_planes

SIZE = (48, 64)  # H, W
FRAMES = 12
FPS = 25


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> str:
    """An ONNX graph that returns its input: any change in a round trip is the video path's."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["N", 3, "H", "W"]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("identity") / "identity.onnx"
    onnx.save(model, path)
    return str(path)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(sample_path("astronaut.png"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photo) -> Path:
    """A panned photograph, H.264 yuv420p BT.709, with a sine tone in AAC, in MP4."""
    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    return write_clip(path, panned(photo, SIZE, FRAMES), fps=FPS, audio=sine(FRAMES / FPS))


def restore(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``irdeploy restore``; its summary must fit 80 columns (a line over 80 is one word: a
    path), and is returned with the wrapped lines joined again."""
    code = main(["restore", *map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    assert all(len(line) <= 80 or len(line.split()) == 1 for line in out.splitlines()), out
    return code, out.replace("\n  ", " "), err


def frames_of(path: Path) -> list:
    """Every decoded video frame of ``path`` (pts, time base, duration, rotation, RGB from swscale, planes)."""
    with av.open(str(path)) as container:
        out = []
        for f in container.decode(video=0):
            planes = [p.copy() for p in read_planes(f, layout(f.format.name))] if layout(f.format.name) else None
            out.append({"pts": f.pts, "time": f.time, "duration": f.duration, "rotation": f.rotation,
                        "format": f.format.name, "size": (f.width, f.height), "planes": planes,
                        "rgb": f.to_ndarray(format="rgb24").astype(np.float32) / 255.0})
        return out


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {"duration": c.duration, "video_duration": v.duration * v.time_base if v.duration else None,
                "rate": v.average_rate, "codec": v.codec_context.name, "pix_fmt": v.codec_context.format.name,
                "colorspace": v.codec_context.colorspace, "color_range": v.codec_context.color_range,
                "audio": [s.codec_context.name for s in c.streams.audio]}


def audio_packets(path: Path) -> list[tuple]:
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, p.duration, hashlib.sha256(bytes(p)).hexdigest()) for p in c.demux(audio=0) if p.size]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- colour


@pytest.mark.parametrize("matrix", [5, 1, 9], ids=["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv444p10le"])
def test_yuv_to_rgb_matches_swscale(matrix, full, pix_fmt) -> None:
    """Our YUV -> RGB of a frame swscale made from RGB gives the RGB back (4:4:4: no chroma
    resampling in the way), and decoding with another matrix visibly does not."""
    from av.video.reformatter import VideoReformatter

    rgb = pattern(SIZE, 1)[0]  # saturated ramps: a wrong matrix shows
    deep = "10" in pix_fmt
    samples = (rgb * (65535 if deep else 255) + 0.5).astype(np.uint16 if deep else np.uint8)
    frame = av.VideoFrame.from_ndarray(samples, format="rgb48le" if deep else "rgb24")
    yuv = VideoReformatter().reformat(frame, format=pix_fmt, dst_colorspace={5: "itu601", 1: "itu709", 9: "bt2020"}[matrix],
                                      dst_color_range="JPEG" if full else "MPEG", interpolation="BICUBIC")
    lay = layout(pix_fmt)
    planes = read_planes(yuv, lay)
    ours = planes_to_rgb(planes, lay, resolve(matrix, 2 if full else 1, 48, lay))
    assert psnr(ours, rgb) > 48  # measured 49.6-54.1 dB: swscale's own precision (its decode of our YUV scores the same)
    other = planes_to_rgb(planes, lay, resolve(9 if matrix != 9 else 5, 2 if full else 1, 48, lay))
    assert psnr(other, rgb) < 40
    # and back: our RGB -> YUV lands on swscale's code values (within rounding)
    again = rgb_to_planes(ours, lay, resolve(matrix, 2 if full else 1, 48, lay))
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(again, planes)) <= (4 if deep else 1)
    if deep:  # 10 bits are kept: our own round trip is far finer than 8-bit quantisation (~50 dB)
        colour = resolve(matrix, 2 if full else 1, 48, lay)
        assert psnr(planes_to_rgb(rgb_to_planes(rgb, lay, colour), lay, colour), rgb) > 60


def test_odd_sized_420_round_trip_keeps_every_row(photo) -> None:
    """A 65x49 picture in 4:2:0 has 33x25 chroma samples; nothing is cropped away either way."""
    lay, colour = layout("yuv420p"), resolve(1, 1, 49)
    rgb = photo[:49, :65]
    planes = rgb_to_planes(rgb, lay, colour)
    assert [p.shape for p in planes] == [(49, 65), (25, 33), (25, 33)]
    back = planes_to_rgb(planes, lay, colour)
    assert back.shape == (49, 65, 3)
    assert psnr(back[-1], rgb[-1]) > 30 and psnr(back[:, -1], rgb[:, -1]) > 30  # the last row and column are real
    assert psnr(back, rgb) > 35


# ---------------------------------------------------------------- round trips


def test_identity_round_trip_h264(tmp_path, clip, identity, capsys) -> None:
    """Frame count, every timestamp, duration and the audio packets equal the input's; the
    pictures match at high PSNR through yuv420p H.264 (CRF 17)."""
    out = tmp_path / "restored.mp4"
    code, stdout, err = restore([clip, "-o", out, "--onnx", identity, "--batch", "4"], capsys)
    assert code == 0, err
    assert "restored 12 frames (64x48)" in stdout
    stages = {line.split()[0]: line for line in stdout.splitlines() if line.startswith(("decode ", "infer ", "encode "))}
    assert sorted(stages) == ["decode", "encode", "infer"] and sum("bounds the throughput" in v for v in stages.values()) == 1
    assert leftovers(tmp_path) == ["restored.mp4"]
    a, b = frames_of(clip), frames_of(out)
    assert len(b) == len(a) == FRAMES
    assert [f["pts"] for f in b] == [f["pts"] for f in a] and [f["time"] for f in b] == [f["time"] for f in a]
    fa, fb = stream_facts(clip), stream_facts(out)
    assert fb["video_duration"] == fa["video_duration"] and fb["rate"] == fa["rate"]
    assert abs(fb["duration"] - fa["duration"]) <= 1000  # container duration, microseconds
    assert (fb["codec"], fb["pix_fmt"], fb["colorspace"], fb["color_range"]) == ("h264", "yuv420p", 1, 1)
    assert audio_packets(out) == audio_packets(clip) and fb["audio"] == ["aac"]
    mean_psnr = np.mean([psnr(x["rgb"], y["rgb"]) for x, y in zip(a, b)])
    assert mean_psnr > 38, mean_psnr  # measured 39.6 dB on this 64x48 pan (CRF 17 on top of the input's CRF 12)


def test_subtitles_and_pcm_audio_copied_in_stream_order(tmp_path, photo, identity, capsys) -> None:
    """Matroska with SubRip cues and PCM audio: both copied byte for byte, streams kept in order."""
    cues = [(0, 100, "first"), (160, 120, "second"), (320, 80, "third")]
    src = write_clip(tmp_path / "talk.mkv", panned(photo, SIZE, 10), audio=sine(0.4), audio_codec="pcm_s16le",
                     subtitles=cues)
    code, _, err = restore([src, "-o", tmp_path / "out.mkv", "--onnx", identity], capsys)
    assert code == 0, err

    def streams(path: Path) -> tuple[list, list]:
        with av.open(str(path)) as c:
            kinds = [(s.type, s.codec_context.name) for s in c.streams]
            packets = [(p.stream.type, p.pts, bytes(p)) for p in c.demux() if p.size and p.stream.type != "video"]
            return kinds, packets

    assert streams(tmp_path / "out.mkv") == streams(src)
    assert [p[2] for p in streams(src)[1] if p[0] == "subtitle"] == [b"first", b"second", b"third"]


def test_lossless_ten_bit_stays_ten_bit_and_lossless(tmp_path, photo, identity, capsys) -> None:
    """FFV1 10-bit in: FFV1 10-bit out by default; luma within 2 of 1023 code values (the only
    loss: RGB clipped to [0, 1] where the YUV lies outside the RGB cube)."""
    src = write_clip(tmp_path / "deep.mkv", panned(photo, SIZE, 4), codec="ffv1", pix_fmt="yuv420p10le")
    out = tmp_path / "out" / "deep.mkv"
    code, _, err = restore([src, "-o", tmp_path / "out", "--onnx", identity], capsys)  # a folder: the input's name
    assert code == 0, err
    facts = stream_facts(out)
    assert (facts["codec"], facts["pix_fmt"]) == ("ffv1", "yuv420p10le")
    a, b = frames_of(src), frames_of(out)
    assert all(int(np.abs(x["planes"][0].astype(int) - y["planes"][0].astype(int)).max()) <= 2 for x, y in zip(a, b))
    assert min(psnr(x["planes"][0], y["planes"][0], 1023) for x, y in zip(a, b)) > 80  # measured 88.6 dB
    assert min(psnr(x["planes"][k], y["planes"][k], 1023) for x, y in zip(a, b) for k in (1, 2)) > 50  # 55.6 / 67.9 dB


def test_ten_bit_to_hevc_and_vp9(tmp_path, photo, identity, capsys) -> None:
    """10-bit stays 10-bit where the encoder has it (x265), and says so where it does not (VP9 here)."""
    src = write_clip(tmp_path / "deep.mkv", panned(photo, SIZE, 3), codec="ffv1", pix_fmt="yuv420p10le")
    code, out, err = restore([src, "-o", tmp_path / "x265.mkv", "--onnx", identity, "--codec", "libx265"], capsys)
    assert code == 0, err
    assert stream_facts(tmp_path / "x265.mkv")["pix_fmt"] == "yuv420p10le"
    code, out, err = restore([src, "-o", tmp_path / "vp9.webm", "--onnx", identity], capsys)
    assert code == 0, err
    assert stream_facts(tmp_path / "vp9.webm")["codec"] == "vp9" and "10-bit source written as 8-bit" in out


def test_packed_sources_keep_their_depth_and_colour_tags(tmp_path, photo, identity, capsys) -> None:
    """Formats read through FFmpeg's repacking: a 16-bit PNG-in-MOV clip (rgb48be) stays 16-bit
    and lossless in FFV1 and goes 10-bit into H.264; a YUV-with-alpha FFV1 clip (yuva420p,
    BT.601) keeps its planes and its BT.601 tags instead of turning into tagged RGB or BT.709."""
    frames = panned(photo, SIZE, 3)
    deep = write_clip(tmp_path / "deep.mov", frames, codec="png", pix_fmt="rgb48be")
    code, out, err = restore([deep, "-o", tmp_path / "deep.mkv", "--onnx", identity], capsys)
    assert code == 0, err
    assert "rgb48be (RGB)" in out and stream_facts(tmp_path / "deep.mkv")["pix_fmt"] == "gbrp16le"
    with av.open(str(deep)) as a, av.open(str(tmp_path / "deep.mkv")) as b:
        assert all(np.array_equal(x.to_ndarray(format="rgb48le"), y.to_ndarray(format="rgb48le"))
                   for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True))
    code, _, err = restore([deep, "-o", tmp_path / "deep.mp4", "--onnx", identity], capsys)
    assert code == 0, err
    assert stream_facts(tmp_path / "deep.mp4")["pix_fmt"] == "yuv420p10le"

    alpha = write_clip(tmp_path / "alpha.mkv", frames, codec="ffv1", pix_fmt="yuva420p", colorspace=5)
    for name in ("alpha-out.mkv", "alpha-out.mp4"):
        code, _, err = restore([alpha, "-o", tmp_path / name, "--onnx", identity], capsys)
        assert code == 0, err
        facts = stream_facts(tmp_path / name)
        assert (facts["pix_fmt"], facts["colorspace"], facts["color_range"]) == ("yuv420p", 5, 1), name
    a, b = frames_of(alpha), frames_of(tmp_path / "alpha-out.mkv")
    with av.open(str(alpha)) as a, av.open(str(tmp_path / "alpha-out.mkv")) as b:
        for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True):
            ours, theirs = (read_planes(f, layout("yuv420p"))[:3] for f in (y, x))  # yuva420p: Y, U, V, then A
            assert all(np.array_equal(p, q) for p, q in zip(ours, theirs))  # an identity model: the same code values


def test_odd_size(tmp_path, photo, identity, capsys) -> None:
    """65x49: FFV1 keeps the size; H.264 4:2:0 pads to 66x50 and says so, the real pixels intact."""
    frames = panned(photo, (49, 65), 4)
    src = write_clip(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="yuv420p")
    code, out, err = restore([src, "-o", tmp_path / "same.mkv", "--onnx", identity], capsys)
    assert code == 0, err
    assert {f["size"] for f in frames_of(tmp_path / "same.mkv")} == {(65, 49)}
    code, out, err = restore([src, "-o", tmp_path / "h264.mp4", "--onnx", identity], capsys)
    assert code == 0, err
    assert "65x49 frames padded to 66x50" in out
    a, b = frames_of(src), frames_of(tmp_path / "h264.mp4")
    assert {f["size"] for f in b} == {(66, 50)}
    # measured 37.0 dB (an even 64x48 crop of the same lossless source: 37.8); the last row and column as good
    assert np.mean([psnr(x["rgb"], y["rgb"][:49, :65]) for x, y in zip(a, b)]) > 35
    assert np.mean([psnr(x["rgb"][-1], y["rgb"][48, :65]) for x, y in zip(a, b)]) > 35


def test_rotation_and_variable_frame_rate(tmp_path, photo, identity, capsys) -> None:
    pts = [0, 40, 80, 200, 240, 400, 440, 520]  # milliseconds: pauses of 120 and 160 ms
    src = write_clip(tmp_path / "vfr.mp4", panned(photo, SIZE, len(pts)), pts=pts, time_base=Fraction(1, 1000), rotation=90)
    code, _, err = restore([src, "-o", tmp_path / "out.mp4", "--onnx", identity], capsys)
    assert code == 0, err
    a, b = frames_of(src), frames_of(tmp_path / "out.mp4")
    assert [f["time"] for f in b] == [f["time"] for f in a] == [p / 1000 for p in pts]
    assert {f["rotation"] for f in b} == {90}
    assert stream_facts(tmp_path / "out.mp4")["video_duration"] == stream_facts(src)["video_duration"]


def test_image_sequence_in_and_out(tmp_path, photo, identity, capsys) -> None:
    """A folder of PNG frames -> an MP4 at --fps; a printf pattern -> a PNG sequence (16-bit kept)."""
    frames = pattern(SIZE, 6)
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(frames):
        write_image(tmp_path / "frames" / f"f{i + 1:03d}.png", f, bit_depth=16)
    code, out, err = restore([tmp_path / "frames", "-o", tmp_path / "seq.mp4", "--onnx", identity, "--fps", "30"], capsys)
    assert code == 0, err
    decoded = frames_of(tmp_path / "seq.mp4")
    assert len(decoded) == 6 and [f["time"] for f in decoded] == [float(Fraction(i, 30)) for i in range(6)]
    assert stream_facts(tmp_path / "seq.mp4")["pix_fmt"] == "yuv420p10le"  # 16-bit frames: a 10-bit H.264
    assert "lossless source is written as lossy libx264" in out
    code, out, err = restore([tmp_path / "frames", "-o", tmp_path / "seq.mkv", "--onnx", identity], capsys)
    assert code == 0, err
    assert stream_facts(tmp_path / "seq.mkv")["pix_fmt"] == "gbrp16le"  # lossless RGB stays lossless RGB in FFV1
    with av.open(str(tmp_path / "seq.mkv")) as c:
        assert all(np.array_equal(f.to_ndarray(format="rgb48le"), np.floor(x * 65535 + 0.5).astype(np.uint16))
                   for f, x in zip(c.decode(video=0), frames, strict=True))
    code, out, err = restore([tmp_path / "frames" / "f%03d.png", "-o", tmp_path / "png" / "%04d.png", "--onnx", identity], capsys)
    assert code == 0, err
    written = sorted((tmp_path / "png").iterdir())
    assert [p.name for p in written] == [f"{i:04d}.png" for i in range(1, 7)]
    from irdeploy.core.images import load_image

    again = load_image(written[2])
    assert again.bit_depth == 16 and np.abs(again.pixels - frames[2]).max() < 1 / 65535 + 1e-6
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_sequence_folder_keeps_frame_names_past_a_skipped_frame(tmp_path, identity) -> None:
    """A folder of frames into a folder (the library's sequence-to-sequence path): with
    ``on_error="skip"`` every written frame carries its own source name, none shifts into the
    skipped frame's place."""
    from irdeploy.runtime.artifacts import open_backend
    from irdeploy.runtime.video import VideoOptions, restore_video

    frames, src = pattern(SIZE, 4), tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames):
        write_image(src / f"shot{i}.png", f)
    (src / "shot1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # unreadable
    with open_backend("ort", onnx=identity) as backend:
        report = restore_video(src, tmp_path / "out", backend, VideoOptions(on_error="skip"))
    assert report.frames == 3 and len(report.problems) == 1 and "shot1.png" in report.problems[0]
    assert leftovers(tmp_path / "out") == ["shot0.png", "shot2.png", "shot3.png"]
    for i in (0, 2, 3):
        assert np.abs(read_image(tmp_path / "out" / f"shot{i}.png") - frames[i]).max() <= 1 / 255 + 1e-6


def test_tiled_and_torch_backends(tmp_path, clip, identity, capsys) -> None:
    """Frames larger than a tile go through runtime.tiling; the torch backend runs the same pipeline."""
    code, out, err = restore([clip, "-o", tmp_path / "tiled.mp4", "--onnx", identity, "--tile", "32", "--overlap", "8",
                              "--batch", "3"], capsys)
    assert code == 0, err
    assert "(64x48, tiled)" in out
    assert np.mean([psnr(x["rgb"], y["rgb"]) for x, y in zip(frames_of(clip), frames_of(tmp_path / "tiled.mp4"))]) > 38
    code, out, err = restore([clip, "-o", tmp_path / "torch.mkv", "--backend", "torch", "--model", "m3snet",
                              "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]", "--batch", "2"], capsys)
    assert code == 0, err
    assert "with torch" in out and len(frames_of(tmp_path / "torch.mkv")) == FRAMES
    assert audio_packets(tmp_path / "torch.mkv") and stream_facts(tmp_path / "torch.mkv")["audio"] == ["aac"]


# ---------------------------------------------------------------- damaged and bad input


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, photo) -> Path:
    """A PNG-in-MOV clip whose 4th packet is garbage: the decoder must fail on exactly that frame."""
    root = tmp_path_factory.mktemp("damaged")
    good = write_clip(root / "good.mov", panned(photo, SIZE, 6), codec="png", pix_fmt="rgb24")
    bad = root / "bad.mov"
    with av.open(str(good)) as src, av.open(str(bad), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if i == 3:
                broken = av.Packet(b"\x89PNG\r\n\x1a\n" + bytes(200))
                broken.pts, broken.dts, broken.time_base = packet.pts, packet.dts, packet.time_base
                broken.duration, packet = packet.duration, broken
            packet.stream = stream
            dst.mux(packet)
    return bad


def test_corrupt_frame_policies(tmp_path, damaged, identity, capsys) -> None:
    code, _, err = restore([damaged, "-o", tmp_path / "fail.mkv", "--onnx", identity, "--codec", "ffv1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "corrupt frame at 00:00:00.120" in err, err
    assert leftovers(tmp_path) == []
    code, out, err = restore([damaged, "-o", tmp_path / "skip.mkv", "--onnx", identity, "--on-error", "skip"], capsys)
    assert code == 0, err
    assert "corrupt frame at 00:00:00.120" in out and "skipped" in out
    assert [f["time"] for f in frames_of(tmp_path / "skip.mkv")] == [0.0, 0.04, 0.08, 0.16, 0.2]
    code, out, err = restore([damaged, "-o", tmp_path / "repeat.mkv", "--onnx", identity, "--on-error", "repeat"], capsys)
    assert code == 0, err
    got = frames_of(tmp_path / "repeat.mkv")
    assert [f["time"] for f in got] == [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]
    assert np.array_equal(got[3]["rgb"], got[2]["rgb"]) and not np.array_equal(got[4]["rgb"], got[2]["rgb"])


def _zero_frames(path: Path) -> Path:
    """A Matroska file with a video track header and no frame."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return path


def _truncated(clip: Path, path: Path) -> Path:
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case", ["not a video", "truncated", "truncated mkv", "zero frames", "codec", "unwritable", "audio"])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, clip, identity, case, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target, extra = out_dir / "x.mp4", []
    if case == "not a video":
        src = inputs / "text.mp4"
        src.write_text("this is not a video\n")
        expect = "not a video FFmpeg can read"
    elif case == "truncated":
        src, expect = _truncated(clip, inputs / "cut.mp4"), "not a video FFmpeg can read"
    elif case == "truncated mkv":  # Matroska decodes up to the cut: refused by default (--on-error skip keeps it)
        whole = write_clip(tmp_path / "whole.mkv", pattern(SIZE, 30))
        src, expect = _truncated(whole, inputs / "cut.mkv"), "frames its header promises (truncated?)"
    elif case == "zero frames":
        src, expect = _zero_frames(inputs / "empty.mkv"), "no frames"
    elif case == "codec":
        src, target, extra, expect = clip, out_dir / "x.webm", ["--codec", "libx264"], "cannot hold libx264"
    elif case == "unwritable":
        (out_dir / "file").write_text("a file, not a folder")
        src, target, expect = clip, out_dir / "file" / "x.mp4", "cannot write"
    else:  # AAC audio cannot be copied into WebM
        src, target, expect = clip, out_dir / "x.webm", "cannot hold the source's audio stream (aac)"
    before = leftovers(out_dir)
    code, stdout, err = restore([src, "-o", target, "--onnx", identity, *extra], capsys)
    assert code == 2 and expect in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert leftovers(out_dir) == before and leftovers(inputs) == ([] if src == clip else [src.name])


def test_without_pyav_one_line(tmp_path, clip, identity) -> None:
    """PyAV is an optional extra: without it a clip gets one line naming the extra."""
    code = ("import sys; sys.modules['av'] = None\n"
            "from irdeploy.runtime.cli import main\n"
            f"raise SystemExit(main(['restore', {str(clip)!r}, '-o', {str(tmp_path / 'x.mp4')!r}, '--onnx', {identity!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "video needs PyAV" in result.stderr and '.[video]' in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and leftovers(tmp_path) == []


def test_existing_output_is_kept(tmp_path, clip, identity, capsys) -> None:
    target = tmp_path / "kept.mp4"
    target.write_bytes(b"precious")
    code, _, err = restore([clip, "-o", target, "--onnx", identity], capsys)
    assert code == 2 and "exists (--overwrite replaces it)" in err and target.read_bytes() == b"precious"
    code, _, err = restore([clip, "-o", target, "--onnx", identity, "--overwrite"], capsys)
    assert code == 0 and len(frames_of(target)) == FRAMES


# ---------------------------------------------------------------- acceptance: the quickstart checkpoint


@pytest.fixture(scope="module")
def quickstart_onnx(tmp_path_factory) -> str:
    """The bundled quickstart M3SNet, exported once through open_backend's cache."""
    from irdeploy.runtime.artifacts import open_backend
    from irdeploy.runtime.quickstart import _bundled_checkpoint, bundled_recipe

    recipe = bundled_recipe()
    backend = open_backend("ort", model=recipe["model"], model_args=recipe["args"],
                           checkpoint=str(_bundled_checkpoint(recipe)), cache_dir=str(tmp_path_factory.mktemp("cache")))
    return str(backend.artifact.path)


def test_blurred_clip_restored_with_quickstart_gains_psnr(tmp_path, quickstart_onnx, capsys) -> None:
    """The held-out photograph, panned and blurred with the 9-pixel box blur the checkpoint
    learned: through ONNX Runtime the restored clip is closer to the clean clip (same encode),
    with the input's frame count, duration and audio."""
    coffee = read_image(sample_path("coffee.png"))
    clean = panned(coffee, (128, 160), 8, step=(3, 4))
    audio = sine(8 / FPS)
    write_clip(tmp_path / "clean.mp4", clean, audio=audio)
    blurred = write_clip(tmp_path / "blurred.mp4", [motion_blur(f) for f in clean], audio=audio)
    code, out, err = restore([blurred, "-o", tmp_path / "restored.mp4", "--onnx", quickstart_onnx, "--batch", "4"], capsys)
    assert code == 0, err
    ref, before, after = (frames_of(tmp_path / n) for n in ("clean.mp4", "blurred.mp4", "restored.mp4"))
    gain = np.mean([psnr(r["rgb"], a["rgb"]) - psnr(r["rgb"], b["rgb"]) for r, a, b in zip(ref, after, before)])
    assert gain > 2.0, gain  # measured +3.2 dB (27.3 -> 30.5 dB)
    assert len(after) == len(before) == 8 and [f["pts"] for f in after] == [f["pts"] for f in before]
    assert stream_facts(tmp_path / "restored.mp4")["video_duration"] == stream_facts(blurred)["video_duration"]
    assert audio_packets(tmp_path / "restored.mp4") == audio_packets(blurred)


def test_interrupted_run_leaves_no_file(tmp_path, quickstart_onnx) -> None:
    """A real SIGINT to ``irdeploy restore`` mid-clip: exit 130, one line, no output, no partial."""
    src = write_clip(tmp_path / "long.mp4", pattern((64, 96), 400), crf=30)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    command = [sys.executable, "-m", "irdeploy", "restore", str(src), "-o", str(out_dir / "r.mkv"), "--onnx",
               quickstart_onnx, "--codec", "ffv1", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out_dir / ".r.irdeploy-partial.mkv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 20_000:  # some frames are in: mid-run
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()}"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "nothing written" in stderr and stderr.count("\n") == 1, stderr
    assert leftovers(out_dir) == []


def test_bench_video_rows_and_table(clip, identity) -> None:
    """bench --video's library: a row per backend x batch with fps and the stage split; a backend
    that cannot open (TensorRT without a GPU) is a skipped row with its reason, not a failure."""
    from irdeploy.runtime.video.bench import bench_video, format_table

    from irdeploy.core.progress import reporting

    events = []
    with reporting(events.append):
        rows = bench_video(clip, model=None, onnx=identity, backends=["ort", "trt"], batches=[1, 3], rounds=2)
    warmups = [e.message for e in events if e.kind == "start" and e.message.startswith("warming up")]
    assert warmups == ["warming up ort fp32 (64x48, batch 1)", "warming up ort fp32 (64x48, batch 3)"], warmups
    ort = [r for r in rows if r.backend == "ort"]
    assert [r.batch for r in ort] == [1, 3] and all(r.frames == FRAMES and len(r.fps) == 2 and r.median_fps > 0 for r in ort)
    assert all(set(r.ms_per_frame) == {"decode", "infer", "encode"} and r.bound in r.ms_per_frame for r in ort)
    trt = [r for r in rows if r.backend == "trt"]
    try:
        from irdeploy.runtime.tensorrt.device import current_gpu

        current_gpu(0)
        gpu = True
    except Exception:  # noqa: BLE001 - no GPU, no driver, no TensorRT: each means no engine can run
        gpu = False
    if not gpu:
        assert len(trt) == 2 and all(r.skipped and not r.fps for r in trt)
    table = format_table(rows, "title")
    assert max(map(len, table.splitlines())) <= 80 and "bound" in table
