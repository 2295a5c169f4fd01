"""Progress on long steps (issue #17, section 2): what is said, when, and how it looks.

Library code reports through :mod:`irdeploy.core.progress`; the command line draws it on
stderr. Checked here on real work (a tiny export with its parity gate, a tiny benchmark, the
CLI): the steps are announced as they start (the first within 2 s of the call), plain lines
without control codes when stderr is not a terminal, a live display with them when it is, and
nothing with ``--quiet``.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from conftest import tiny_model
from irdeploy.core import progress
from irdeploy.core.progress import ConsoleReporter, Event, reporting, step
from irdeploy.runtime.cli import main

ANSI = re.compile(r"\x1b\[")
TINY_M3SNET = ["--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]"]


def test_export_announces_each_step_as_it_starts(tmp_path) -> None:
    from irdeploy.export import to_onnx

    events: list[tuple[float, Event]] = []
    start = time.perf_counter()
    with reporting(lambda e: events.append((time.perf_counter() - start, e))):
        to_onnx(tiny_model("m3snet"), tmp_path / "m.onnx", static_shape=(1, 32, 32), tensorrt=False)
    starts = [e.message for _, e in events if e.kind == "start"]
    assert events[0][0] < 2.0 and starts[0].startswith("tracing M3SNet at 1x3x32x32")
    for expected in ("folding constants", "checking the graph's structure"):
        assert any(m.startswith(expected) for m in starts), (expected, starts)
    parity = [m for m in starts if m.startswith("parity: ")]
    assert len(parity) == 6 and {"parity: torch on 1x3x32x32", "parity: torch on 1x3x24x32",
                                  "parity: ort (CPUExecutionProvider) on 1x3x24x32"} <= set(parity)
    ends = {e.key: e for _, e in events if e.kind == "end"}
    assert all(e.key in ends for _, e in events if e.kind == "start")  # every step is closed, errors or not
    assert ends[events[0][1].key].seconds > 0


def test_cli_plain_lines_without_control_codes_and_quiet(tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", *TINY_M3SNET, "-o", str(out), "--static", "32x32", "--no-tensorrt"]) == 0
    err = capsys.readouterr().err
    assert not ANSI.search(err)
    assert "irdeploy: tracing M3SNet at 1x3x32x32 (torch.onnx dynamo exporter) ...\n" in err
    assert "irdeploy:   parity: ort" not in err and "irdeploy: parity: ort (CPUExecutionProvider)" in err
    assert main(["inspect", str(out), "--no-tensorrt"]) == 0
    assert "irdeploy: checking the graph's structure" in capsys.readouterr().err
    assert main(["inspect", str(out), "--no-tensorrt", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "LayerNormalization" in captured.out


def test_bench_reports_reference_warmup_and_timing(capsys) -> None:
    from irdeploy.runtime.bench import BenchConfig, bench_model
    from irdeploy.runtime.bench.console import progress_bar

    lines = io.StringIO()
    reporter = ConsoleReporter(Console(file=lines, width=200))
    with reporting(reporter), progress_bar() as on_progress:
        bench_model(tiny_model("m3snet"), model_name="tiny", workdir="/tmp", backends=("torch",), shapes=[(1, 3, 32, 32)],
                    config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0.0), progress=on_progress)
    text = lines.getvalue()
    assert not ANSI.search(text)
    for expected in ("irdeploy: bench: counting GMACs and the eager float32 reference at 1x3x32x32 ...",
                     "irdeploy: bench tiny 1x3x32x32: loading", "irdeploy: bench tiny 1x3x32x32: warm-up: first call of torch fp32",
                     "irdeploy: bench tiny 1x3x32x32: timing (2 to do)"):
        assert expected in text, text
    assert text.count("timing") == 1  # one line per phase, not one per sample


def test_terminal_display_and_nesting() -> None:
    screen = io.StringIO()
    reporter = ConsoleReporter(Console(file=screen, force_terminal=True, width=80))
    assert not reporter.plain
    with reporting(reporter):
        with step("outer stage"):
            with step("inner step"):
                progress.advance("task", "counted work", 1, 4)
                time.sleep(0.3)  # the live display refreshes on its own thread
            progress.finish("task")
        assert reporter._bar is None  # closed with its last step: other rich displays may follow
    drawn = screen.getvalue()
    assert "outer stage" in drawn and "  inner step" in drawn and "counted work" in drawn and ANSI.search(drawn)


def test_silent_without_reporter_and_errors_close_steps() -> None:
    with step("nobody listens"):  # no reporter: a no-op
        pass
    events: list[Event] = []
    with reporting(events.append), pytest.raises(ValueError):
        with step("fails"):
            raise ValueError("boom")
    assert [e.kind for e in events] == ["start", "end"]
    assert not progress.active()
