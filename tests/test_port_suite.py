"""The port suite: tutorial-style Keras scripts (tests/port/*.py) run with `import convforge as keras`.

Each script is Keras code whose only difference is the import (``import convforge as keras``,
``from convforge import layers``); it asserts its own summary shapes, parameter counts and a
plausible accuracy on a subset of Fashion-MNIST. Run here in-process, in a scratch directory,
with warnings as errors (pytest's setting): a tutorial must run clean.
"""

import importlib.util
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

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


KERAS_PORT = os.environ.get("CONVFORGE_KERAS_PORT") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PORT, reason="set CONVFORGE_KERAS_PORT=1 to run the scripts on real Keras too (minutes)")
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_port_script_is_real_keras_code(script, tmp_path):
    """The same script with the import put back (``import keras``) passes its own asserts on Keras 3
    (torch backend): the scripts are Keras code, not convforge code that looks like it."""
    if importlib.util.find_spec("keras") is None:  # not imported here: it runs in the subprocess
        pytest.skip("keras is not installed")
    text = script.read_text().replace("import convforge as keras\n", "import keras\n")
    text = re.sub(r"^from convforge import ", "from keras import ", text, flags=re.M)
    (tmp_path / script.name).write_text(text)
    # Keras reads Fashion-MNIST from its cache directory; give it the local files (it would download).
    cache = tmp_path / "keras_home" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for f in pathlib.Path("/usr/share/datasets/fashion-mnist").glob("*.gz"):
        shutil.copy(f, cache / f.name)
    env = {**os.environ, "KERAS_BACKEND": "torch", "KERAS_HOME": str(tmp_path / "keras_home")}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
