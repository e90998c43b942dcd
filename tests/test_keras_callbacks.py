"""CSVLogger and ReduceLROnPlateau inside fit."""

import csv

import numpy as np
import pytest

import convforge
from convforge import callbacks, layers


def tiny_model():
    convforge.seed(0)
    model = convforge.Sequential([layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dense(2)])
    model.compile(optimizer=convforge.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 3)), rng.standard_normal((64, 2))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_writes_keras_columns(tmp_path):
    path = tmp_path / "log.csv"
    model = tiny_model()
    model.fit(*data(), epochs=3, verbose=0, validation_split=0.25, callbacks=[callbacks.CSVLogger(path)])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    history = model.history.history
    assert float(rows[3][1]) == pytest.approx(history["loss"][2])
    model.fit(*data(), epochs=1, verbose=0, validation_split=0.25, callbacks=[callbacks.CSVLogger(path, append=True)])
    rows = read_rows(path)
    assert len(rows) == 5 and rows[4][0] == "0"


def test_reduce_lr_on_plateau_lowers_the_rate_in_fit():
    model = tiny_model()
    # Epoch 0 sets the first best; with min_delta=10 no later epoch improves: halve after each.
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    history = model.fit(*data(), epochs=4, verbose=0, callbacks=[cb])
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025, 0.0125])  # the rate used
    assert model.optimizer.learning_rate == pytest.approx(0.00625)


def test_reduce_lr_on_plateau_checks_its_arguments():
    with pytest.raises(ValueError, match="factor must be a number in"):
        callbacks.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="mode must be"):
        callbacks.ReduceLROnPlateau(mode="up")
