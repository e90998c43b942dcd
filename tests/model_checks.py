"""Checks of a whole model that several layer tests share."""

from __future__ import annotations

import numpy as np

import convforge


def fits_and_reloads(model, xs, ys, tmp_path, epochs=3, batch_size=8):
    """``model`` (compiled) trains on ``(xs, ys)`` with a falling loss; ``predict`` (the compiled
    inference plan, with whatever it leaves to Python) agrees with the layers called one by one;
    a saved and reloaded copy predicts the same bits. Returns the copy."""
    history = model.fit(xs, ys, epochs=epochs, batch_size=batch_size, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_allclose(model.predict(xs, verbose=0), model(xs), rtol=1e-5, atol=1e-6)
    path = tmp_path / "model.npz"
    model.save(path)
    back = convforge.load_model(path)
    np.testing.assert_array_equal(back.predict(xs, verbose=0), model.predict(xs, verbose=0))
    return back


def real_keras():
    """Real Keras 3 on its torch backend, for a side-by-side test; the test is skipped where it is not
    installed, or where this process already runs Keras on another backend."""
    import os

    import pytest

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    if keras.backend.backend() != "torch":
        pytest.skip(f"real Keras on its torch backend (this process's is {keras.backend.backend()})")
    return keras
