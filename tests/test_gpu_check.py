"""``benchmarks/gpu_check.py --dry-run`` on this CPU: every stage runs against the simulator, so the
one-shot GPU check cannot rot between the rare runs on a real GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import requires_rtx

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


@requires_rtx
def test_the_dry_run_runs_every_stage(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "example-1.0-py3-none-any.whl").write_bytes(b"")  # listed, not installed, in a dry run
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--wheels", str(wheels), "--out", str(tmp_path / "out"),
                           "--site", str(tmp_path / "site")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary_path, = (tmp_path / "out").glob("gpu_check-dry-run-Simulated_NVIDIA_H200-*.json")
    summary = json.loads(summary_path.read_text())
    assert (tmp_path / "out" / summary["log"]).is_file()
    assert summary["install"]["wheels"] == ["example-1.0-py3-none-any.whl"]
    stages = {s["stage"]: s for s in summary["stages"]}
    planned = [s.name for s in _gpu_check().STAGES if not s.optional]  # stages others add (int8) included
    assert list(stages) == planned and planned[:4] == ["info", "cuda", "rtx", "tests"]
    assert all(s["status"] == "ok" and s["seconds"] <= s["limit"] for s in stages.values())
    assert stages["cuda"]["result"]["graph_replay_ok"] and stages["cuda"]["result"]["copy_ok"]
    steps = {r["step"]: r for r in stages["rtx"]["result"]["steps"]}
    assert steps["build fp16 for default RTX targets"]["ok"]
    assert "not a TensorRT-RTX" in steps["build fp16 for current GPU"]["error"]  # the simulated H200 is Hopper
    assert any(r["ok"] and r.get("psnr_db") for r in steps.values() if r["step"].startswith("run"))


def _gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return gpu_check


def test_a_stage_past_its_limit_is_killed_and_the_rest_still_run(tmp_path, monkeypatch):
    gpu_check = _gpu_check()
    sleeper = gpu_check.Stage("sleeper", 1, "a stage that hangs", lambda dry, ctx: [sys.executable, "-c", "import time; time.sleep(60)"])
    failing = gpu_check.Stage("failing", 30, "a stage that fails", lambda dry, ctx: [sys.executable, "-c", "raise SystemExit(3)"])
    after = gpu_check.Stage("after", 30, "a stage after them", lambda dry, ctx: [sys.executable, "-c", "print('ran')"])
    monkeypatch.setattr(gpu_check, "STAGES", [sleeper, failing, after])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--site", str(tmp_path / "site")]) == 1
    summary = json.loads(next(tmp_path.glob("gpu_check-*.json")).read_text())
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [("sleeper", "timeout"), ("failing", "failed"), ("after", "ok")]
    assert summary["stages"][0]["seconds"] < 10
    # a budget smaller than the stages' limits: the first gets what is left, the rest do not start
    monkeypatch.setattr(gpu_check, "STAGES", [gpu_check.Stage("sleeper", 60, "hangs", sleeper.argv), failing, after])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "b"), "--site", str(tmp_path / "site"), "--budget", "12"]) == 1
    summary = json.loads(next((tmp_path / "b").glob("gpu_check-*.json")).read_text())
    assert [s["status"] for s in summary["stages"]] == ["timeout", "not started", "not started"]
    assert summary["stages"][0]["limit"] <= 12
    assert gpu_check.main(["--stages", "nonsense"]) == 2
