"""One TensorRT flavour per process (issue #15, defect 9).

``tensorrt`` and ``tensorrt_rtx`` register the same pybind11 type names; importing the second
fails (``generic_type: type "ILogger" is already registered!``) or mixes types. The stand-in
data-centre ``tensorrt`` package below encodes that rule: its import fails exactly that way when
TensorRT-RTX is already loaded, and loading TensorRT-RTX after it is caught by the test. Each case
runs in a fresh interpreter, since the rule is about what one process has loaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt_rtx") is None, reason="needs tensorrt_rtx")

STAND_IN = '''
import sys
if "tensorrt_rtx_bindings" in sys.modules or "tensorrt_rtx" in sys.modules:
    raise ImportError('generic_type: type "ILogger" is already registered!')
__version__ = "10.13.3.9"
'''


def _run(tmp_path, code: str, with_tensorrt: bool) -> subprocess.CompletedProcess:
    if with_tensorrt:
        (tmp_path / "tensorrt").mkdir(exist_ok=True)
        (tmp_path / "tensorrt" / "__init__.py").write_text(STAND_IN)
    prelude = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n" if with_tensorrt else ""
    prelude += "from irdeploy.core.tensorrt import TensorRTUnavailable, auto_choice, import_tensorrt\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_auto_keeps_data_centre_tensorrt_and_refuses_rtx_beside_it(tmp_path):
    done = _run(tmp_path, """
        trt = import_tensorrt("auto")
        assert trt.__name__ == "tensorrt", trt.__name__
        assert auto_choice() == "TensorRT 10.13.3.9", auto_choice()
        try:
            import_tensorrt("rtx")
        except TensorRTUnavailable as exc:
            assert "already loaded in this process" in str(exc) and "\\n" not in str(exc), exc
        else:
            raise SystemExit("TensorRT-RTX was imported beside TensorRT")
        assert "tensorrt_rtx" not in sys.modules and "tensorrt_rtx_bindings" not in sys.modules
        assert import_tensorrt("auto") is trt
    """, with_tensorrt=True)
    assert done.returncode == 0, done.stderr


def test_after_rtx_auto_stays_rtx_and_tensorrt_is_refused(tmp_path):
    done = _run(tmp_path, """
        rtx = import_tensorrt("rtx")
        assert import_tensorrt("auto") is rtx
        assert auto_choice().startswith("TensorRT-RTX 1.7") and "already loaded" in auto_choice(), auto_choice()
        try:
            import_tensorrt("tensorrt")
        except TensorRTUnavailable as exc:
            assert "TensorRT-RTX is already loaded" in str(exc), exc
        else:
            raise SystemExit("data-centre TensorRT was imported beside TensorRT-RTX")
    """, with_tensorrt=True)
    assert done.returncode == 0, done.stderr


def test_auto_says_why_it_fell_back_to_rtx(tmp_path):
    done = _run(tmp_path, """
        import_tensorrt("auto")
        print(auto_choice())
    """, with_tensorrt=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("TensorRT-RTX 1.7") and "tensorrt: ModuleNotFoundError" in done.stdout


@pytest.mark.parametrize("with_tensorrt", [True, False], ids=["both-flavours", "rtx-only"])
def test_asking_whether_the_trt_backend_is_available_pins_no_flavour(tmp_path, with_tensorrt):
    """The backend registry's availability probe looks for TensorRT without importing it: an
    import would pin the process to one flavour, so a later build with the other would be refused."""
    done = _run(tmp_path, """
        import sys
        from irdeploy.core.tensorrt import loaded_flavour
        from irdeploy.runtime.registry import get_backend

        why = get_backend("trt").probe()  # no GPU on the CI machines: why not, in one line
        assert why is None or ("\\n" not in why and "no TensorRT found" not in why), why
        assert loaded_flavour() is None, loaded_flavour()
        assert not {"tensorrt", "tensorrt_rtx", "tensorrt_bindings", "tensorrt_rtx_bindings"} & set(sys.modules)
        assert import_tensorrt("rtx").__name__ == "tensorrt_rtx"  # either flavour can still be chosen
    """, with_tensorrt=with_tensorrt)
    assert done.returncode == 0, done.stderr


def test_the_trt_probe_says_what_to_install_when_neither_flavour_is_there():
    # None in sys.modules is the import system's "not available": import and find_spec both honour it
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.modules["tensorrt"] = sys.modules["tensorrt_rtx"] = None
        from irdeploy.runtime.registry import get_backend
        print(get_backend("trt").probe())
    """)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no TensorRT found") and "tensorrt-rtx-cu13" in done.stdout, done.stdout
