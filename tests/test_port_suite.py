"""The port suite: tutorial-style Keras scripts (tests/port/*.py) run with `import convforge as keras`.

Each script is Keras code whose only difference is the import (``import convforge as keras``,
``from convforge import layers``); it asserts its own summary shapes, parameter counts and a
plausible accuracy on a subset of Fashion-MNIST. Run here in-process, in a scratch directory,
with warnings as errors (pytest's setting): a tutorial must run clean.
"""

import pathlib
import runpy

import pytest

SCRIPTS = sorted((pathlib.Path(__file__).parent / "port").glob("*.py"))


def test_there_are_at_least_eight_scripts():
    assert len(SCRIPTS) >= 8


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_port_script_runs(script, tmp_path, monkeypatch, capsys):
    text = script.read_text()
    assert "import convforge as keras" in text and "import keras" not in text.replace("import convforge as keras", "")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
