"""examples/train_resnet.py and examples/train_inception.py: Keras-consistent architectures, and a
short run of each through the shared command line (convforge.train.run). The full runs (15
epochs, the >= 93% target) take far longer than a test: see the examples' docstrings."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import convforge

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import train_inception  # noqa: E402
import train_resnet  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION), reason="Fashion-MNIST not installed")


def test_resnet_architecture():
    model = train_resnet.resnet()
    # By Keras's formulas: convs kh*kw*cin*cout (no bias), BatchNorm 4*c (2*c non-trainable), Dense 64*10+10.
    convs = 9 * 1 * 16 + 9 * 16 * 16 * 2 + (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32) + (9 * 32 * 64 + 9 * 64 * 64 + 32 * 64)
    bn_channels = 16 + 16 * 2 + 32 * 3 + 64 * 3
    assert model.count_params() == convs + 4 * bn_channels + 650
    assert model.count_params() - sum(layer.count_trainable_params() for layer in model.layers) == 2 * bn_channels
    assert model.output_shape == (None, 10)
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 3


def test_inception_architecture():
    model = train_inception.inception()
    assert model.output_shape == (None, 10)
    concat = model.get_layer("mixed3_concat")
    assert concat.output.shape == (None, 7, 7, 160)
    assert model.get_layer("mixed1_concat").output.shape == (None, 28, 28, 48)


@needs_fashion
@pytest.mark.parametrize("example, name", [(train_resnet, "resnet"), (train_inception, "inception")])
def test_short_run_writes_model_history_and_report(example, name, tmp_path, capsys):
    out = tmp_path / name
    argv = ["--limit-train", "256", "--limit-test", "200", "--epochs", "1", "--batch-size", "64",
            "--validation-split", "0", "--output-dir", str(out), "--verbose", "2"]
    if name == "inception":
        argv.append("--no-plots")
    assert example.main(argv) == 0
    printed = capsys.readouterr().out
    for text in ("Connected to", "Non-trainable params", "test accuracy:", "confusion matrix"):
        assert text in printed
    summary = json.loads((out / "history.json").read_text())
    assert summary["model"] == name and 0.0 <= summary["test_accuracy"] <= 1.0
    model = convforge.load_model(out / f"{name}.npz")
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_resnet_graph_float64_gradient_check():
    """A tiny ResNet (BatchNorm, projection and identity shortcuts, Add, global pooling): the
    backpropagated gradients of every weight match central differences in float64."""
    from convforge.gradcheck import check_model_gradients

    model = train_resnet.resnet(3, widths=(3, 4), blocks=2, input_shape=(6, 6, 2))
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    report = check_model_gradients(model, rng.standard_normal((5, 6, 6, 2)), rng.integers(0, 3, 5), num_coords=4)
    assert report.passed, str(report)


def test_every_example_answers_help_without_running(capsys):
    """``python examples/X.py --help`` prints usage and exits 0, for every script the README points to."""
    import demo_kernels  # noqa: E402 - examples/ is on sys.path above

    for module in (demo_kernels, train_resnet, train_inception):
        with pytest.raises(SystemExit) as exit_:
            module.main(["--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage:") and "isa=" not in out  # demo_kernels printed its timings instead
