"""Help and install text that works when pasted: every option explained, hints that run from a clone."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from irdeploy.runtime.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("core", "model", "export", "runtime")


def _verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_verb_has_a_help_line() -> None:
    missing = []
    for verb, parser in _verbs().items():
        for action in parser._actions:
            text = (action.help or "").strip()
            # A bare "(default: ...)" says what the value is, not what it is for.
            if action.help == argparse.SUPPRESS or not text or text.startswith("(default"):
                missing.append(f"{verb} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without a help line: {', '.join(missing)}"


def test_every_verb_has_a_help_line() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(helps) == set(_verbs()) and all(h and h.strip() for h in helps.values()), helps


def test_quickstart_help_states_the_bundled_checkpoint(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quickstart", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--checkpoint CHECKPOINT weights to restore with" in text and "(default: the bundled checkpoint" in text
    assert "default: random" not in text


def test_install_hints_work_from_a_clone() -> None:
    """irdeploy is not on PyPI: `pip install "irdeploy[rtx]"` fails, `pip install ".[rtx]"` in the clone works.
    And a command in backticks is only the command (prose outside them)."""
    files = [p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py")] + [ROOT / "README.md"]
    wrong = [f"{p.relative_to(ROOT)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"pip install\W+irdeploy\[", line)]
    assert not wrong, f"install hints naming irdeploy on PyPI: {', '.join(wrong)}"
    readme = (ROOT / "README.md").read_text()
    for command in re.findall(r"`(pip install [^`]*)`", readme):
        assert not re.search(r"\b(in a|or the|from the|extra)\b", command), f"prose inside a command: `{command}`"
    extras = re.findall(r'pip install "\.\[(\w+)\]"', readme)
    declared = re.findall(r"^(\w+) = \[", (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
                          .split("\n[")[0], flags=re.M)
    assert extras and set(extras) <= set(declared), (extras, declared)


def test_an_onnx_file_as_checkpoint_is_a_complete_sentence(tmp_path) -> None:
    from irdeploy.model import CheckpointError, load_model

    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError) as caught:
        load_model("m3snet", graph, width=8)
    message = str(caught.value)
    assert message.endswith(".") and "is an ONNX graph, not a checkpoint: pass it as --onnx" in message
    assert "\n" not in message and "(" not in message  # no truncated library text in parentheses
