"""The LeNet-5 training entry point (python -m convforge.train / examples/train_lenet5.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import convforge
from convforge import train

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)


@pytest.mark.parametrize("classic", [False, True])
def test_lenet5_has_61706_parameters(classic):
    model = train.lenet5(classic=classic)
    model.build()
    assert model.count_params() == train.LENET5_PARAMS == 61_706
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--batch-size", "-1"], "--batch-size must be >= 1"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--validation-split", "1.5"], "--validation-split must be in [0, 1)"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--optimizer", "rmsprop"], "invalid choice"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_explains_how_to_get_it(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "CONVFORGE_DATA" in err


@needs_fashion
def test_short_real_training_clears_accuracy_floor(tmp_path, capsys):
    # 300 steps of batch 64 on real Fashion-MNIST: enough for LeNet-5 to pass 75% test accuracy
    # (it reaches about 82% here); a broken gradient or kernel stays near 10-60%.
    out = tmp_path / "run"
    argv = ["--limit-train", "9600", "--epochs", "2", "--validation-split", "0", "--seed", "3",
            "--output-dir", str(out), "--no-plots", "--verbose", "2"]
    assert train.main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "history.json").read_text())
    assert summary["test_accuracy"] >= 0.75, summary
    assert len(summary["history"]["loss"]) == 2 and summary["history"]["loss"][1] < summary["history"]["loss"][0]
    for text in ("Total params: 61,706", "test accuracy:", "precision", "confusion matrix", "Ankle boot"):
        assert text in printed
    # The saved model reloads and predicts exactly what the trained one did.
    model = convforge.load_model(out / "lenet5.npz")
    (_, _), (x_test, y_test) = convforge.datasets.fashion_mnist.load_data()
    x = x_test[:500, :, :, None].astype(np.float32) / np.float32(255)
    accuracy = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y_test[:500]))
    assert abs(accuracy - summary["test_accuracy"]) < 0.05


def test_every_option_has_help():
    parser = train._parser()
    missing = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not missing, missing


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_curves_are_readable_for_any_number_of_epochs(epochs):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    h = {k: list(rng.uniform(0.2, 0.9, epochs)) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    fig = train.curves_figure(h, plt)
    try:
        for ax in fig.axes:
            # A visible mark for every epoch, even a single one.
            assert all(line.get_marker() == "o" and len(line.get_xdata()) == epochs for line in ax.get_lines())
            fig.canvas.draw()
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert ax.get_xlim() == (0.5, epochs + 0.5)
    finally:
        plt.close(fig)
