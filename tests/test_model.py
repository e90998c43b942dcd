"""Tests of convforge.Sequential: Keras compatibility, the NHWC/NCHW bridge, fit/evaluate/predict,
callbacks, progress output and reproducibility.

Data is small and synthetic (seeded), so the file runs in seconds; PyTorch,
when installed, cross-checks a few training steps of a LeNet-like model.
"""

import io
import os
import sys

import numpy as np
import pytest

import convforge
from convforge import callbacks, layers, optimizers
from convforge import functional as F

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def keras_tutorial_model():
    """The model of the Keras/TensorFlow course notes, with tf.keras.layers -> convforge.layers."""
    return convforge.Sequential(
        [
            layers.Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)),
            layers.MaxPooling2D(2, 2),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D(2, 2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def blob_images(n, seed=0, size=12, channels=1):
    """(n, size, size, channels) images whose class (0..2) is where a bright square sits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.random((n, size, size, channels)).astype(np.float32) * 0.2
    half = size // 2
    for i, label in enumerate(y):
        r, c = [(0, 0), (0, half), (half, 0)][label]
        x[i, r : r + half, c : c + half] += 0.8
    return x, y


def small_cnn(dropout=0.0, channels=1, size=12):
    return convforge.Sequential(
        [
            layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(size, size, channels)),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(3, activation="softmax"),
        ]
    )


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


# ---------------------------------------------------------------------------
# Keras compatibility: the course-notes model
# ---------------------------------------------------------------------------

KERAS_SUMMARY = """\
Model: "sequential"
___________________________________________________________________
Layer (type)                   Output Shape              Param #
===================================================================
conv2d (Conv2D)                (None, 26, 26, 64)        640
___________________________________________________________________
max_pooling2d (MaxPooling2D)   (None, 13, 13, 64)        0
___________________________________________________________________
conv2d_1 (Conv2D)              (None, 11, 11, 64)        36,928
___________________________________________________________________
max_pooling2d_1 (MaxPooling2D) (None, 5, 5, 64)          0
___________________________________________________________________
flatten (Flatten)              (None, 1600)              0
___________________________________________________________________
dense (Dense)                  (None, 128)               204,928
___________________________________________________________________
dense_1 (Dense)                (None, 10)                1,290
===================================================================
Total params: 243,786 (952.29 KB)
Trainable params: 243,786 (952.29 KB)
Non-trainable params: 0 (0.00 B)
___________________________________________________________________"""


def test_keras_model_summary_matches_keras_shapes_and_counts(capsys):
    model = keras_tutorial_model()
    model.summary()
    assert capsys.readouterr().out == KERAS_SUMMARY + "\n"
    assert model.count_params() == 243_786
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    lines = []
    model.summary(print_fn=lines.append)
    assert lines == [KERAS_SUMMARY]


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (28, 28)], ids=["NHWC", "NHW"])
def test_keras_model_trains_on_channels_last_and_plain_images(image_shape):
    convforge.seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 96)
    x = rng.random((96, 28, 28)).astype(np.float32) * 0.1
    x[np.arange(96), y * 2 + 3, :] = 1.0  # the class is the bright row
    model = keras_tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x.reshape(96, *image_shape), y, epochs=3, batch_size=32, verbose=0)
    assert list(history.history) == ["loss", "accuracy"]
    assert len(history.history["loss"]) == 3 and history.epoch == [0, 1, 2]
    assert history.history["loss"][-1] < history.history["loss"][0]
    probs = model.predict(x.reshape(96, *image_shape), verbose=0)
    assert probs.shape == (96, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_model_builds_from_data_input_layer_or_build():
    plain = convforge.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError, match="This model has not yet been built"):
        plain.summary()
    plain.predict(np.zeros((2, 8, 8), np.float32), verbose=0)  # (N, H, W): one channel added
    assert plain.input_shape == (None, 8, 8) and plain.layers[0].params["kernel"].shape == (2, 1, 3, 3)

    with_input = convforge.Sequential([layers.Input(shape=(8, 8, 3)), layers.Conv2D(2, 3)])
    assert with_input.output_shape == (None, 6, 6, 2)
    # Input is not a layer; automatic names are numbered in the process, as Keras's
    assert [layer.name for layer in with_input.layers] == ["conv2d_1"]

    later = convforge.Sequential([layers.Conv2D(2, 3)])
    later.build((None, 8, 8, 3))
    assert later.layers[0].params["kernel"].shape == (2, 3, 3, 3)


def test_channels_first_models_take_nchw_unconverted():
    model = convforge.Sequential(
        [
            layers.Conv2D(4, 3, data_format="channels_first", input_shape=(2, 8, 8)),
            layers.MaxPooling2D(2, data_format="channels_first"),
        ]
    )
    assert model.output_shape == (None, 4, 3, 3)
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 8)).astype(np.float32)
    expected = F.max_pool2d(F.conv2d(x, model.layers[0].params["kernel"], model.layers[0].params["bias"]), 2)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    with pytest.raises(ValueError, match="must agree on data_format"):
        convforge.Sequential(
            [
                layers.Conv2D(4, 3, data_format="channels_first", input_shape=(2, 8, 8)),
                layers.MaxPooling2D(2, data_format="channels_last"),
            ]
        )


# ---------------------------------------------------------------------------
# The NHWC -> NCHW bridge
# ---------------------------------------------------------------------------


def test_channels_last_input_is_converted_once_at_the_entry():
    convforge.seed(1)
    model = convforge.Sequential(
        [
            layers.Conv2D(5, 3, activation="relu", input_shape=(9, 9, 3)),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(4),
        ]
    )
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)
    conv, dense = model.layers[0], model.layers[3]
    # Reference: NCHW by hand, flatten in (C, H, W) order.
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    h = F.max_pool2d(F.relu(F.conv2d(nchw, conv.params["kernel"], conv.params["bias"])), 2)
    expected = h.reshape(2, -1) @ dense.params["kernel"] + dense.params["bias"]
    # Model.
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # Feature maps come back channels-last, as summary() shows them.
    maps = model.activations(x)
    assert [m.shape for m in maps] == [(2, 7, 7, 5), (2, 3, 3, 5), (2, 45), (2, 4)]
    np.testing.assert_array_equal(maps[1], h.transpose(0, 2, 3, 1))


def test_uint8_images_are_converted_not_scaled():
    convforge.seed(2)
    model = small_cnn()
    x = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 1)).astype(np.uint8)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x.astype(np.float32), verbose=0))


def test_input_shape_errors_name_expected_and_found():
    model = keras_tutorial_model()
    with pytest.raises(
        ValueError, match=r"expected shape=\(None, 28, 28, 1\) or \(None, 28, 28\), found shape=\(5, 32, 32, 3\)"
    ):
        model.predict(np.zeros((5, 32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="must hold real numbers"):
        model.predict(np.zeros((5, 28, 28), complex))


def test_dense_after_conv_without_flatten_fails_at_add_with_a_hint():
    model = convforge.Sequential([layers.Conv2D(8, 3, input_shape=(10, 10, 1))])
    with pytest.raises(ValueError, match=r"got \(batch, 8, 8, 8\)\. Add a Flatten\(\) layer before it"):
        model.add(layers.Dense(10))
    assert len(model.layers) == 1  # the failed layer is not kept
    model.add(layers.Flatten())
    model.add(layers.Dense(10))
    assert model.output_shape == (None, 10)


def test_add_rejects_non_layers_duplicates_and_late_input():
    KerasDense = type("Dense", (), {"__module__": "keras.src.layers.core.dense"})
    with pytest.raises(TypeError, match="Use convforge.layers.Dense instead of the Keras layer"):
        convforge.Sequential([KerasDense()])
    dense = layers.Dense(2)
    with pytest.raises(ValueError, match="already in this model"):
        convforge.Sequential([dense, dense])
    with pytest.raises(ValueError, match="unique"):
        convforge.Sequential([layers.Dense(2, name="d"), layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="must be the first entry"):
        convforge.Sequential([layers.Dense(2), layers.Input(shape=(3,))])


# ---------------------------------------------------------------------------
# fit / evaluate / predict
# ---------------------------------------------------------------------------


def test_fit_reports_validation_on_the_last_samples():
    convforge.seed(3)
    x, y = blob_images(100)
    model = small_cnn()
    model.compile(
        optimizer=optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["accuracy"][-1] > 0.9
    # Keras holds out the last 20%, unshuffled; the epoch's val metrics use the final weights.
    val = model.evaluate(x[80:], y[80:], batch_size=16, verbose=0, return_dict=True)
    assert val == {"loss": history.history["val_loss"][-1], "accuracy": history.history["val_accuracy"][-1]}


def test_fit_with_one_hot_labels_and_validation_data():
    convforge.seed(4)
    x, y = blob_images(60)
    onehot = np.eye(3, dtype=np.float32)[y]
    model = small_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    history = model.fit(x[:40], onehot[:40], validation_data=(x[40:], onehot[40:]), epochs=2, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    loss, acc = model.evaluate(x[40:], onehot[40:], verbose=0)
    assert 0 <= acc <= 1 and np.isfinite(loss)


def test_evaluate_returns_keras_forms():
    convforge.seed(5)
    x, y = blob_images(20)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert model.metrics_names == ["loss", "accuracy"]
    assert len(model.evaluate(x, y, verbose=0)) == 2


def test_fit_before_compile_and_bad_arguments():
    model = small_cnn()
    x, y = blob_images(8)
    with pytest.raises(RuntimeError, match="You must compile the model before calling fit"):
        model.fit(x, y)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.fit(x, y, batch_size=0)
    with pytest.raises(ValueError, match="holds 8 samples but its targets hold 7"):
        model.fit(x, y[:7])
    with pytest.raises(ValueError, match=r"label 3 at index"):
        model.fit(x, np.full(8, 3))
    with pytest.raises(ValueError, match="verbose must be"):
        model.fit(x, y, verbose=3)


def test_predict_is_inference_mode():
    convforge.seed(6)
    model = small_cnn(dropout=0.5)
    x, _ = blob_images(10)
    state = convforge.random.get_state()
    a = model.predict(x, batch_size=4, verbose=0)
    np.testing.assert_array_equal(model.predict(x, batch_size=4, verbose=0), a)  # no dropout
    # Another batching changes only float32 rounding (BLAS blocks by batch size).
    np.testing.assert_allclose(model.predict(x, batch_size=3, verbose=0), a, rtol=1e-5)
    assert convforge.random.get_state() == state  # no random draws
    assert model.layers[0]._x is None and model.layers[1]._indices is None  # nothing kept for backward
    np.testing.assert_allclose(model(x), a, rtol=1e-5)


def test_first_weighted_layer_computes_no_input_gradient(monkeypatch):
    seen = []
    real_data, real_weights = F.conv2d_backward_data, F.conv2d_backward_weights
    monkeypatch.setattr(F, "conv2d_backward_data", lambda *a, **k: seen.append("dx") or real_data(*a, **k))
    monkeypatch.setattr(F, "conv2d_backward_weights", lambda *a, **k: seen.append("dw") or real_weights(*a, **k))
    convforge.seed(7)
    model = convforge.Sequential(
        [layers.Conv2D(2, 3, input_shape=(8, 8, 1)), layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)]
    )
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 8, 8, 1)), np.zeros((4, 2)), batch_size=4, verbose=0)
    assert seen == ["dx", "dw", "dw"]  # backward order: the second conv needs dx, the first does not


def test_frozen_layers_are_not_updated():
    convforge.seed(8)
    x, y = blob_images(16)
    model = small_cnn()
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    frozen = model.layers[0].get_weights()
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 40" in lines[0]
    model.fit(x, y, epochs=1, verbose=0)
    for before, after in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(before, after)


def test_float64_model():
    model = convforge.Sequential([layers.Dense(3, input_shape=(4,))], dtype="float64")
    assert model.predict(np.ones((2, 4), np.float32), verbose=0).dtype == np.float64
    model.astype("float32")
    assert model.layers[0].params["kernel"].dtype == np.float32
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        convforge.Sequential(dtype="float16")


# ---------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------


def _train(seed):
    convforge.seed(seed)
    x, y = blob_images(48, seed=1)
    model = small_cnn(dropout=0.3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model.get_weights()


def test_same_seed_same_weights_bit_for_bit():
    a, b, c = _train(11), _train(11), _train(12)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c))


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------


class Explode(layers.Layer):
    """A broken custom layer: its output is Inf."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        y = x.copy()
        y[:, 0] = np.inf
        return y

    def backward(self, dy):
        return dy


def _nan_model(extra=None):
    convforge.seed(9)
    stack = [layers.Dense(4, activation="relu", input_shape=(3,))]
    if extra is not None:
        stack.append(extra)
    stack += [layers.Dense(2, activation="softmax")]
    model = convforge.Sequential(stack)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_terminate_on_nan_names_the_layer_that_produced_it():
    model = _nan_model(Explode(name="explode"))
    before = model.get_weights()
    guard = callbacks.TerminateOnNaN()
    history = model.fit(np.ones((8, 3)), np.zeros(8, int), batch_size=2, epochs=3, callbacks=[guard], verbose=0)
    assert "Layer 'explode' (Explode) output holds NaN or Inf" in guard.message
    assert guard.message.startswith("Epoch 1, batch 1: invalid loss")
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    for a, b in zip(before, model.get_weights()):  # the bad batch was not applied
        np.testing.assert_array_equal(a, b)


def test_terminate_on_nan_blames_weights_and_inputs():
    model = _nan_model()
    model.layers[1].params["kernel"][0, 0] = np.nan
    guard = callbacks.TerminateOnNaN()
    model.fit(np.ones((4, 3)), np.zeros(4, int), callbacks=[guard], verbose=0)
    assert "Weight 'kernel' of layer 'dense_1' (Dense) holds NaN or Inf" in guard.message

    model = _nan_model()
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    guard = callbacks.TerminateOnNaN()
    model.fit(x, np.zeros(4, int), batch_size=4, shuffle=False, callbacks=[guard], verbose=0)
    assert "The input batch holds NaN or Inf (sample 2 of the batch)" in guard.message


def test_terminate_on_nan_reports_float32_overflow():
    model = _nan_model()
    guard = callbacks.TerminateOnNaN()
    model.fit(np.full((4, 3), 3e38, np.float32), np.zeros(4, int), callbacks=[guard], verbose=0)
    assert "Layer 'dense' (Dense) output holds NaN or Inf although its input (largest |value| 3e+38)" in guard.message


class _StubModel:
    def __init__(self):
        self.stop_training = False
        self.weights = None
        self.epoch = 0

    def get_weights(self):
        return [np.array(self.epoch)]

    def set_weights(self, weights):
        self.weights = weights


def test_early_stopping_keras_rules_and_restore():
    stub = _StubModel()
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    stop.set_model(stub)
    stop.on_train_begin()
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.7, 2.9]):
        stub.epoch = epoch
        stop.on_epoch_end(epoch, {"val_loss": loss})
        if stub.stop_training:
            break
    assert epoch == 3 and stop.best == 2.0 and stop.best_epoch == 1
    stop.on_train_end()
    assert stub.weights == [np.array(1)]  # the best epoch's weights are back
    assert callbacks.EarlyStopping(monitor="val_accuracy").mode == "max"


def test_early_stopping_in_fit():
    convforge.seed(10)
    x, y = blob_images(16)
    model = small_cnn()
    model.compile(optimizer=optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[callbacks.EarlyStopping(monitor="loss", patience=0)])
    assert len(history.history["loss"]) == 2  # no improvement at the second epoch (lr 0)


def test_callback_hooks_order_and_logs():
    events = []

    class Recorder(callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            events.append(f"batch {batch} {sorted(logs)}")

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch} {sorted(logs)}")

        def on_train_end(self, logs=None):
            events.append("train_end")

    convforge.seed(11)
    x, y = blob_images(10)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), callbacks=[Recorder()], verbose=0)
    assert events == [
        "train_begin",
        "epoch_begin 0",
        "batch 0 ['accuracy', 'loss']",
        "batch 1 ['accuracy', 'loss']",
        "epoch_end 0 ['accuracy', 'loss', 'val_accuracy', 'val_loss']",
        "train_end",
    ]


# ---------------------------------------------------------------------------
# Progress output
# ---------------------------------------------------------------------------


def _fit_quietly_sized(verbose, n=20, batch_size=8):
    convforge.seed(12)
    x, y = blob_images(n)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=batch_size, epochs=2, verbose=verbose)


@pytest.mark.parametrize("verbose", [1, 2, "auto"])
def test_progress_is_one_line_per_epoch_off_a_terminal(capsys, verbose):
    _fit_quietly_sized(verbose)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert lines[1].startswith("3/3 - ") and "/step - loss: " in lines[1] and " - accuracy: " in lines[1]
    assert "\r" not in "".join(lines) and "[" not in lines[1]


def test_progress_line_shows_what_callbacks_add_to_the_epoch_logs(capsys):
    # As Keras's, whose progress bar runs last: the line showed neither the learning_rate that
    # ReduceLROnPlateau logs nor a metric a callback computes (history held both).
    class F1(convforge.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_f1"] = 0.25

    convforge.seed(12)
    x, y = blob_images(20)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=2,
              callbacks=[F1(), convforge.callbacks.ReduceLROnPlateau(monitor="loss")])
    line = capsys.readouterr().out.splitlines()[1]
    assert line.endswith(" - val_f1: 0.2500 - learning_rate: 0.0100"), line


def test_progress_silent_with_verbose_0(capsys):
    _fit_quietly_sized(0)
    assert capsys.readouterr().out == ""


def test_progress_bar_on_a_terminal_is_throttled(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    # A clock that advances 1 ms each time it is read: every batch "takes" 1 ms.
    ticks = iter(range(10**9))
    monkeypatch.setattr(convforge.progress, "_clock", lambda: next(ticks) * 1e-3)
    _fit_quietly_sized(1, n=300, batch_size=1)  # 2 epochs of 300 batches
    out = terminal.getvalue()
    assert "ETA: " in out and "[" in out and "300/300 [==============================] - " in out
    # Redrawn at most every 0.1 s (100 batches here), plus the final line: about 4 per epoch, not 300.
    assert 6 <= out.count("\r") <= 8


def test_progress_bar_text():
    stream = FakeTerminal()
    bar = convforge.progress.ProgressBar(469, verbose=1, stream=stream)
    bar.update(120, {"loss": 0.41, "accuracy": 0.85}, finalize=False)
    line = stream.getvalue()
    assert line.startswith("\r120/469 [======>.......................] - ETA: ")
    assert line.endswith(" - loss: 0.4100 - accuracy: 0.8500")
    assert convforge.progress.format_duration(75) == "1:15"
    assert convforge.progress.format_duration(3725) == "1:02:05"


def test_progress_bar_shows_the_mean_of_a_per_class_metric():
    """F1Score() and Precision(thresholds=[...]) log arrays; the bar printed them as NumPy's
    "[0.2 0.6]"; Keras's bar shows their mean (the logs keep the array)."""
    stream = FakeTerminal()
    bar = convforge.progress.ProgressBar(10, verbose=1, stream=stream)
    bar.update(10, {"loss": 0.5, "f1_score": np.array([0.2, 0.6, 0.7])}, finalize=True)
    assert " - loss: 0.5000 - f1_score: 0.5000" in stream.getvalue()


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_of_a_generator_without_steps_counts_up_to_unknown(capsys, monkeypatch, terminal):
    """fit(generator) without steps_per_epoch, at the default verbose, raised TypeError from
    int(None) when the first epoch began; Keras 3.15.1 counts "3/Unknown" and ends at "3/3"."""
    convforge.seed(12)
    x, y = blob_images(20)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if terminal:
        monkeypatch.setattr(sys, "stdout", FakeTerminal())
    history = model.fit((batch for batch in [(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:], y[16:])]), epochs=1)
    assert len(history.history["loss"]) == 1
    out = sys.stdout.getvalue() if terminal else capsys.readouterr().out
    lines = out.replace("\r", "\n").split("\n")
    assert lines[0] == "Epoch 1/1"
    assert [line.split(" - ")[0].strip() for line in lines[1:] if line][-1] == "3/3"
    if terminal:
        assert "1/Unknown - " in out and "[" not in out


def test_evaluate_of_a_generator_shows_progress_as_of_arrays(capsys):
    # evaluate(generator, verbose=1 or 2) printed nothing; evaluate of arrays prints its line.
    convforge.seed(12)
    x, y = blob_images(20)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.evaluate(x, y, batch_size=8, verbose=2)
    arrays = capsys.readouterr().out
    model.evaluate(iter([(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:], y[16:])]), verbose=2)
    generated = capsys.readouterr().out
    assert arrays.startswith("3/3 - ") and generated.startswith("3/3 - ") and generated.count("\n") == 1
    assert arrays.split("/step")[1] == generated.split("/step")[1]  # the same loss and accuracy


# ---------------------------------------------------------------------------
# PyTorch cross-check
# ---------------------------------------------------------------------------


def test_training_steps_match_pytorch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    convforge.seed(13)
    model = convforge.Sequential(
        [
            layers.Conv2D(3, 5, padding="same", activation="relu", input_shape=(12, 12, 1)),
            layers.MaxPooling2D(2),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(6, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        dtype="float64",
    )
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9, nesterov=True), loss="sparse_categorical_crossentropy")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 6),
        torch.nn.ReLU(),
        torch.nn.Linear(6, 3),
    ).double()
    weighted = [layer for layer in model.layers if layer.params]
    torch_weighted = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        for ours, theirs in zip(weighted, torch_weighted):
            kernel = ours.params["kernel"]
            theirs.weight.copy_(torch.from_numpy(kernel if kernel.ndim == 4 else kernel.T.copy()))
            theirs.bias.copy_(torch.from_numpy(ours.params["bias"]))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x, y = blob_images(16, size=12)
    x = x.astype(np.float64)
    # Reference: three PyTorch steps on the NCHW batch, no shuffling.
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    # convforge: the same three steps through fit.
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    # Verify.
    for ours, theirs in zip(weighted, torch_weighted):
        kernel = ours.params["kernel"]
        expected = theirs.weight.detach().numpy()
        np.testing.assert_allclose(kernel if kernel.ndim == 4 else kernel.T, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.params["bias"], theirs.bias.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_fit_runs_numpy_blas_on_one_thread_and_restores_it():
    """OpenBLAS's pool would fight the kernels' OpenMP threads (see model._SingleThreadedBLAS)."""
    from convforge.model import _find_openblas

    controls = _find_openblas()
    if controls is None:
        pytest.skip("NumPy does not use a (findable) OpenBLAS here")
    get, put = controls
    seen = []

    class Probe(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(get())

    before = get()
    put(2)
    try:
        model = convforge.Sequential([layers.Dense(2, input_shape=(3,))])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0, callbacks=[Probe()])
        expected_inside = 2 if "OPENBLAS_NUM_THREADS" in os.environ else 1
        assert seen == [expected_inside] and get() == 2
    finally:
        put(before)


@pytest.mark.parametrize("standalone_relu", [False, True], ids=["conv-activation", "ReLU-layer"])
def test_relu_gradient_fused_into_max_pool_backward(standalone_relu):
    from convforge.model import _Batches

    # Sequential lets a MaxPooling2D apply the gradient of the ReLU just before it (the ReLU
    # then passes dy through): the weight gradients must be the bits of the unfused path.
    convforge.seed(3)
    first = (
        [layers.Conv2D(4, 3, input_shape=(10, 10, 2)), layers.ReLU()]
        if standalone_relu
        else [layers.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 2))]
    )
    model = convforge.Sequential(
        [*first, layers.MaxPooling2D(2), layers.Conv2D(3, 2, activation="relu"), layers.MaxPooling2D(2),
         layers.Flatten(), layers.Dense(5, activation="softmax")]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 10, 2)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    model._build_from_data(x)
    model._plan_backward()
    pools = [layer for layer in model.layers if isinstance(layer, layers.MaxPooling2D)]
    assert all(p._gates_relu for p in pools)  # the fusion is on for both pools

    def gradients():
        xb, yb = _Batches(model._entry, *model._prepare(x, y), 6).slice(0, 6)
        _, _, dhead = model._forward_loss(xb, yb, training=True, need_grad=True)
        model._backward(dhead)
        return [g.copy() for _, _, g in model._gradients()]

    fused = gradients()
    for p in pools:
        p._gates_relu = False
    for layer in model.layers:
        relu = layer if isinstance(layer, layers.ReLU) else getattr(layer, "activation", None)
        if isinstance(relu, layers.ReLU):
            relu._masked_by_next = False
    unfused = gradients()
    assert len(fused) == len(unfused) == 6
    for a, b in zip(fused, unfused):
        np.testing.assert_array_equal(a, b)


def _optimizer_cases(lib):
    O = lib.optimizers
    return {"sgd": lambda: O.SGD(), "sgd_momentum": lambda: O.SGD(momentum=0.9), "adam": lambda: O.Adam(),
            "amsgrad": lambda: O.Adam(amsgrad=True), "adamw": lambda: O.AdamW(), "rmsprop": lambda: O.RMSprop(),
            "centered": lambda: O.RMSprop(centered=True, momentum=0.5), "adagrad": lambda: O.Adagrad(),
            "nadam": lambda: O.Nadam(), "adamax": lambda: O.Adamax(), "adadelta": lambda: O.Adadelta(),
            "lion": lambda: O.Lion(), "schedule": lambda: O.Adam(learning_rate=O.schedules.ExponentialDecay(0.1, 10, 0.9))}


def _summary_counts(lib, make_optimizer):
    """The summary's count lines of a small model: before compile, compiled, after one fit."""
    import io
    from contextlib import redirect_stdout

    model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(8), lib.layers.BatchNormalization(), lib.layers.Dense(1)])
    texts = []

    def summary():
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            model.summary()
        texts.append([line.strip() for line in buffer.getvalue().splitlines() if "params:" in line])

    summary()
    model.compile(make_optimizer(), "mse")
    summary()
    model.fit(np.ones((8, 4), np.float32), np.ones((8, 1), np.float32), epochs=1, verbose=0)
    summary()
    return texts


def test_summary_counts_the_optimizer_once_it_has_run():
    texts = _summary_counts(convforge, lambda: convforge.optimizers.Adam())
    assert texts[0] == texts[1] == ["Total params: 81 (324.00 B)", "Trainable params: 65 (260.00 B)",
                                    "Non-trainable params: 16 (64.00 B)"]
    # Adam's two moments of each of the 65 trainable values, iterations and the learning rate.
    assert texts[2] == ["Total params: 213 (852.00 B)", "Trainable params: 65 (260.00 B)",
                        "Non-trainable params: 16 (64.00 B)", "Optimizer params: 132 (528.00 B)"]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside Keras's torch backend
def test_summary_counts_match_real_keras():
    from model_checks import real_keras

    keras = real_keras()
    for name in _optimizer_cases(convforge):
        ours = _summary_counts(convforge, _optimizer_cases(convforge)[name])
        theirs = _summary_counts(keras, _optimizer_cases(keras)[name])
        assert ours == theirs, name
