"""Tests of model files (convforge.saving): round trips, damaged files, atomic writes, and resuming
training from a checkpoint with the same result as an uninterrupted run, bit for bit."""

import errno
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

import convforge
from convforge import callbacks, layers, metrics, optimizers, saving
from convforge import losses as losses_module
from convforge.saving import ModelFileError

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def make_model(filters=3, dropout=0.25, dtype="float32"):
    return convforge.Sequential(
        [
            layers.Conv2D(filters, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(3, activation="softmax"),
        ],
        dtype=dtype,
    )


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, n)


def trained(tmp_path=None, seed=0):
    convforge.seed(seed)
    model = make_model()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


def test_save_weights_load_weights_round_trip(tmp_path):
    model = trained()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    convforge.seed(99)
    other = make_model()
    x, _ = data()
    assert not np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_paths_may_be_bytes_as_open_takes_them(tmp_path):
    """A bytes path failed inside the Keras-suffix check: 'endswith first arg must be bytes'."""
    model = trained()
    path = os.fsencode(tmp_path / "m.npz")
    model.save(path)
    model.save_weights(path + b".weights.npz")
    loaded = convforge.load_model(path)
    loaded.load_weights(path + b".weights.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.save(os.fsencode(tmp_path / "m.keras"))  # Keras's format (tests/test_keras_file.py)
    for a, b in zip(model.get_weights(), convforge.load_model(os.fsencode(tmp_path / "m.keras")).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_weights_builds_an_unbuilt_model(tmp_path):
    model = trained()
    model.save_weights(tmp_path / "w.npz")
    bare = convforge.Sequential(
        [
            layers.Conv2D(3, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(3, activation="softmax"),
        ]
    )
    bare.load_weights(tmp_path / "w.npz")
    x, _ = data()
    np.testing.assert_array_equal(bare.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_rebuilds_and_compiles(tmp_path):
    model = trained()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    x, y = data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    lines_a, lines_b = [], []
    model.summary(print_fn=lines_a.append)
    loaded.summary(print_fn=lines_b.append)
    assert lines_a == lines_b
    # Compiled as saved, optimizer state included.
    assert type(loaded.optimizer) is optimizers.Adam and loaded.optimizer.learning_rate == 0.01
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    assert loaded.metrics_names == ["loss", "accuracy"]
    for key, arr in model.optimizer.get_state()[1].items():
        np.testing.assert_array_equal(loaded.optimizer.get_state()[1][key], arr)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert loaded.epochs_completed == 2


def test_built_in_metric_objects_are_saved_with_their_settings(tmp_path):
    """compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc"), ...]): every built-in metric
    object comes back from load_model with its name and settings (a renamed one once made the file
    unloadable, the others were dropped); functions are still left out."""
    model = trained()
    chosen = [metrics.SparseCategoricalAccuracy(name="acc"), metrics.SparseTopKCategoricalAccuracy(k=2),
              metrics.Accuracy(name="hits"), metrics.Precision(thresholds=0.3, name="p30"), "accuracy",
              metrics.AUC(num_thresholds=50, curve="PR", name="prc")]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=chosen)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    assert loaded.metrics_names == model.metrics_names == ["loss", "acc", "sparse_top_k_categorical_accuracy", "hits",
                                                           "p30", "accuracy", "prc"]
    assert loaded.compiled_metrics[1].k == 2 and loaded.compiled_metrics[3].thresholds == [0.3]
    assert (loaded.compiled_metrics[5].curve, loaded.compiled_metrics[5].num_thresholds) == ("PR", 50)
    x, y = data()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[lambda y_true, y_pred: 0.0, "accuracy"])
    model.save(path)
    assert convforge.load_model(path).metrics_names == ["loss", "accuracy"]


def test_per_class_and_per_threshold_metrics_are_saved_and_resumed(tmp_path):
    """F1Score, FBetaScore and Precision/Recall with top_k, class_id or a list of thresholds come
    back from load_model with their settings (get_config / from_config, no pickle); their logs are
    arrays (one value per class or threshold, as Keras's), which model.save once could not write
    into the file's history (ndarray is not JSON) and resuming gives back as arrays."""
    x, labels = data()
    y = np.eye(3, dtype=np.float32)[labels]
    chosen = [metrics.F1Score(), metrics.FBetaScore(average="weighted", beta=2.0, threshold=0.4),
              metrics.Precision(thresholds=[0.2, 0.6]), metrics.Recall(top_k=1, class_id=2, name="r2"),
              metrics.F1Score(average="macro", name="f1_macro")]
    convforge.seed(0)
    model = make_model()
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=chosen)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert model.metrics_names == ["loss", "f1_score", "fbeta_score", "precision", "r2", "f1_macro"]
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    assert [type(m) for m in loaded.compiled_metrics] == [type(m) for m in chosen]
    assert [m.get_config() for m in loaded.compiled_metrics] == [m.get_config() for m in chosen]
    ours, theirs = model.evaluate(x, y, verbose=0, return_dict=True), loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert np.shape(ours["f1_score"]) == (3,) and np.shape(ours["precision"]) == (2,)
    assert np.ndim(ours["fbeta_score"]) == np.ndim(ours["r2"]) == 0
    history = model.history.history
    resumed = convforge.load_model(path)
    resumed.fit(x, y, epochs=3, batch_size=8, verbose=0, resume_from=path)
    assert isinstance(resumed.history.history["f1_score"][0], np.ndarray)
    np.testing.assert_array_equal(resumed.history.history["f1_score"][:2], history["f1_score"])
    assert len(resumed.history.history["precision"]) == 3


def test_keras_save_spellings(tmp_path):
    """keras.models.save_model(model, path) and Keras 3's overwrite= argument of save / save_weights:
    overwrite=False refuses an existing file (Keras asks on the terminal; convforge never blocks);
    other Keras arguments are named as unsupported, not Python's bare TypeError."""
    model = trained()
    path = tmp_path / "model.npz"
    convforge.models.save_model(model, path)
    np.testing.assert_array_equal(convforge.load_model(path).get_weights()[0], model.get_weights()[0])
    model.save(path, overwrite=True)
    model.save_weights(tmp_path / "w.npz", overwrite=True)
    with pytest.raises(FileExistsError, match="model.npz exists and overwrite=False"):
        model.save(path, overwrite=False)
    with pytest.raises(FileExistsError, match="w.npz exists and overwrite=False"):
        model.save_weights(tmp_path / "w.npz", overwrite=False)
    model.save(tmp_path / "new.npz", overwrite=False)
    with pytest.raises(TypeError, match="convforge does not support the argument 'include_optimizer' of Sequential.save"):
        model.save(path, include_optimizer=False)
    with pytest.raises(AttributeError, match="convforge does not support convforge.models.NoSuchModel"):
        convforge.models.NoSuchModel
    # load_model's and load_weights' Keras 3 signatures: filepath=, safe_mode= (convforge's files
    # hold no code to run, so it changes nothing), skip_mismatch named as unsupported.
    for safe_mode in (True, False):
        loaded = convforge.models.load_model(filepath=path, safe_mode=safe_mode)
        np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with pytest.raises(TypeError, match="convforge does not support the argument 'skip_mismatch' of Sequential.load_"):
        model.load_weights(path, skip_mismatch=True)
    model.load_weights(path, skip_mismatch=False)  # Keras's default, written out: accepted


def test_float64_model_round_trip(tmp_path):
    convforge.seed(1)
    model = make_model(dtype="float64")
    model.save(tmp_path / "m.npz")
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert loaded.dtype == np.float64
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


class Scale(layers.Layer):
    """A custom NumPy layer with a get_config, so that it can be saved."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.add_weight("alpha", input_shape, initializer="ones")

    def forward(self, x, training=False):
        self.x = x if training else None
        return x * self.params["alpha"] * self.factor

    def backward(self, dy):
        self.grads["alpha"] = (dy * self.x * self.factor).sum(axis=0)
        return dy * self.params["alpha"] * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_custom_layers_load_by_name(tmp_path):
    convforge.seed(2)
    model = convforge.Sequential([layers.Dense(4, input_shape=(3,)), Scale(2.0), layers.Dense(2)])
    model.layers[1].params["alpha"][:] = [1, 2, 3, 4]
    model.save(tmp_path / "m.npz")
    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    for kwargs in ({}, {"custom_objects": {"Scale": Scale}}):
        loaded = convforge.load_model(tmp_path / "m.npz", **kwargs)
        assert loaded.layers[1].factor == 2.0
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ---------------------------------------------------------------------------
# pickle and copy.deepcopy (Keras's models take both, through their saved form)
# ---------------------------------------------------------------------------


def _copies(model):
    import copy
    import pickle

    return {"deepcopy": copy.deepcopy(model), "pickle": pickle.loads(pickle.dumps(model))}


def test_deepcopy_and_pickle_of_a_trained_model_predict_and_train_on_alike():
    # After fit and predict a model holds a compiled inference plan and graph indexes keyed by
    # object identity: deepcopy raised "cannot pickle 'convforge._core.InferencePlan'".
    model = trained()
    x, y = data(seed=1)
    want = model.predict(x, verbose=0)
    model.predict(x[:1], verbose=0)  # the one-image path too
    copies = _copies(model)
    for how, copied in copies.items():
        assert type(copied) is type(model), how
        np.testing.assert_array_equal(copied.predict(x, verbose=0), want, err_msg=how)
        assert copied.optimizer.iterations == model.optimizer.iterations > 0, how
        for w, v in zip(copied.get_weights(), model.get_weights()):
            assert not np.shares_memory(w, v), how
        convforge.seed(5)
        copied.fit(x, y, epochs=1, batch_size=24, shuffle=False, verbose=0)
    # The original is untouched by its copies' training; one more step of it from the same
    # state (its Adam moments included) lands on the copies' weights.
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    convforge.seed(5)
    model.fit(x, y, epochs=1, batch_size=24, shuffle=False, verbose=0)
    for how, copied in copies.items():
        for w, v in zip(copied.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(w, v, err_msg=how)


def test_deepcopy_of_a_graph_model_with_shared_layers_and_batch_norm():
    inp = convforge.Input((8, 8, 1))
    conv = layers.Conv2D(2, 3, padding="same")
    y = layers.BatchNormalization()(layers.Add()([conv(inp), conv(inp)]))
    out = layers.Dense(3)(layers.GlobalAveragePooling2D()(y))
    model = convforge.Model(inp, out)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.zeros((8, 3), np.float32), epochs=1, verbose=0)  # moves the moving statistics
    model.predict(x, verbose=0)
    for how, copied in _copies(model).items():
        np.testing.assert_array_equal(copied.predict(x, verbose=0), model.predict(x, verbose=0), err_msg=how)
        assert [layer.name for layer in copied.layers] == [layer.name for layer in model.layers]


def test_deepcopy_of_a_model_compiled_with_a_custom_loss_comes_back_uncompiled_and_says_so():
    class MyLoss(losses_module.MeanSquaredError):
        pass

    model = make_model()
    model.compile(optimizer="sgd", loss=MyLoss())
    x, _ = data()
    model.predict(x, verbose=0)
    for how, copied in _copies_warning(model, "uncompiled: compile it again").items():
        assert copied.optimizer is None, how
        np.testing.assert_array_equal(copied.predict(x, verbose=0), model.predict(x, verbose=0), err_msg=how)


def _copies_warning(model, message):
    import copy

    with pytest.warns(UserWarning, match=message):
        copied = copy.deepcopy(model)
    return {"deepcopy": copied}


def test_deepcopy_keeps_non_finite_weights_and_unbuilt_models():
    model = trained()
    model.layers[-1].params["bias"][0] = np.nan  # save() refuses it; a copy in memory takes it as it is
    model.predict(data()[0], verbose=0)
    for how, copied in _copies(model).items():
        assert np.isnan(copied.layers[-1].params["bias"][0]), how
    unbuilt = convforge.Sequential([layers.Dense(3)])
    for how, copied in _copies(unbuilt).items():
        assert not copied.built and len(copied.layers) == 1, how


def test_deepcopy_of_a_built_sequential_subclass_says_why_not():
    class Net(convforge.Sequential):
        pass

    net = Net([layers.Dense(2, input_shape=(3,))])
    net.predict(np.zeros((1, 3), np.float32), verbose=0)
    with pytest.raises(TypeError, match="Net.*set_weights"):
        _copies(net)
def test_keras_register_keras_serializable_decorator_is_accepted(tmp_path):
    # Keras's custom-layer guides decorate the class; convforge finds it by name without, and the
    # decorator (keras.saving. and keras.utils.) once failed with an AttributeError.
    assert convforge.utils.register_keras_serializable is convforge.saving.register_keras_serializable

    @convforge.saving.register_keras_serializable(package="MyLayers")
    class Doubled(layers.Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    @convforge.utils.register_keras_serializable()
    def my_loss(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean()

    assert Doubled.__name__ == "Doubled" and my_loss.__name__ == "my_loss"  # returned as they are
    model = convforge.Sequential([convforge.Input((3,)), Doubled(), layers.Dense(2)])
    model.save(tmp_path / "d.npz")
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(convforge.load_model(tmp_path / "d.npz").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="package must be a non-empty string without '>'; got 3"):
        convforge.saving.register_keras_serializable(package=3)
    with pytest.raises(TypeError, match="decorates a class or a function; got 5"):
        convforge.saving.register_keras_serializable()(5)


def test_file_layout_is_plain_npz_with_versioned_json(tmp_path):
    model = trained()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        meta = json.loads(npz["__meta__"].tobytes())
        assert npz["weights/0/kernel"].shape == (3, 1, 3, 3)
    assert meta["format"] == "convforge" and meta["format_version"] == saving.FORMAT_VERSION
    assert meta["kind"] == "model" and meta["training"]["epoch"] == 2
    assert [w["key"] for w in meta["weights"]] == [
        "weights/0/kernel",
        "weights/0/bias",
        "weights/4/kernel",
        "weights/4/bias",
    ]


# ---------------------------------------------------------------------------
# Damaged and foreign files: one error type, naming the path and the reason
# ---------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    trained().save(path)
    return path


def _expect_model_file_error(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        convforge.load_model(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


def test_truncated_file(saved):
    content = saved.read_bytes()
    saved.write_bytes(content[: len(content) // 2])
    _expect_model_file_error(saved, "corrupt or truncated")


def test_corrupt_array_bytes(saved):
    content = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("weights/4/kernel.npy")
    # Flip bytes inside the stored array data (past its local header): CRC mismatch.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    content[start : start + 8] = bytes(b ^ 0xFF for b in content[start : start + 8])
    saved.write_bytes(bytes(content))
    _expect_model_file_error(saved, "corrupt or truncated")


def test_empty_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    _expect_model_file_error(empty, "the file is empty")
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    _expect_model_file_error(text, r"not an \.npz \(zip\) archive")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    _expect_model_file_error(plain, "no '__meta__' entry")
    with pytest.raises(FileNotFoundError):
        convforge.load_model(tmp_path / "missing.npz")


def test_pickled_arrays_are_refused(saved, tmp_path):
    with np.load(saved) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["weights/0/kernel"] = np.array([{"evil": True}], dtype=object)
    bad = tmp_path / "pickled.npz"
    np.savez(bad, **arrays)
    _expect_model_file_error(bad, "pickled Python objects")


def test_newer_format_version(saved, tmp_path):
    with np.load(saved) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["format_version"] = saving.FORMAT_VERSION + 1
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    _expect_model_file_error(newer, "written by a newer convforge")


def test_wrong_architecture(saved):
    convforge.seed(3)
    wider = make_model(filters=5)
    with pytest.raises(
        ModelFileError,
        match=r"layer 0 \('conv2d_1', Conv2D\) weight 'kernel' has shape \(3, 1, 3, 3\) in the file but \(5, 1, 3, 3\)",
    ):
        wider.load_weights(saved)
    shorter = convforge.Sequential([layers.Flatten(input_shape=(8, 8, 1)), layers.Dense(3)])
    with pytest.raises(ModelFileError, match="holds a model of 5 layers .* but this model has 2"):
        shorter.load_weights(saved)
    other = convforge.Sequential(
        [
            layers.Conv2D(3, 3, padding="same", input_shape=(8, 8, 1)),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.1),
            layers.Dense(3),
        ]
    )
    with pytest.raises(ModelFileError, match="layer 1 is a MaxPooling2D in the file but a AveragePooling2D"):
        other.load_weights(saved)


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def test_save_leaves_no_temporary_files_and_replaces(tmp_path):
    model = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    model.save(path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half written")
        raise OSError("disk full")

    monkeypatch.setattr(saving.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


@pytest.mark.parametrize("where", ["create", "write"])
def test_a_failed_save_names_the_file_not_its_temporary(tmp_path, monkeypatch, where):
    """A directory the process may not write to, a full disk: the error named the hidden
    temporary file ('.m.npz.1234.0a1b2c3d.tmp'), not the file being saved."""
    model = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    if where == "create":
        real_open = os.open

        def refuse_temporary(name, flags, *args, **kwargs):
            if str(name).endswith(".tmp"):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
            return real_open(name, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse_temporary)
        kind, code = PermissionError, errno.EACCES
    else:

        def disk_full(file, **arrays):
            file.write(b"PK\x03\x04 half written")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(saving.np, "savez", disk_full)
        kind, code = OSError, errno.ENOSPC
    with pytest.raises(kind) as raised:
        model.save(path)
    assert raised.value.errno == code and raised.value.filename == str(path)
    assert str(path) in str(raised.value) and ".tmp" not in str(raised.value), str(raised.value)
    assert os.strerror(code) in str(raised.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


# ---------------------------------------------------------------------------
# Checkpoints and resuming
# ---------------------------------------------------------------------------


def _resume_setup(seed):
    convforge.seed(seed)
    model = make_model(dropout=0.3)
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_resume_gives_the_uninterrupted_weights_bit_for_bit(tmp_path):
    x, y = data(40)
    # Reference: four epochs in one go, with a checkpoint at the end of each.
    uninterrupted = _resume_setup(seed=5)
    stop_a = callbacks.EarlyStopping(monitor="loss", patience=10)
    history_a = uninterrupted.fit(
        x,
        y,
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[stop_a, callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))],
    )
    assert sorted(os.listdir(tmp_path)) == [f"ckpt-{e}.npz" for e in range(1, 5)]
    # A new process: other initial weights and random state, then resume after epoch 2.
    resumed = _resume_setup(seed=123)
    convforge.random.get_generator().random(17)
    stop_b = callbacks.EarlyStopping(monitor="loss", patience=10)
    history_b = resumed.fit(
        x, y, epochs=4, batch_size=8, verbose=0, callbacks=[stop_b], resume_from=tmp_path / "ckpt-2.npz"
    )
    # Verify: same weights, optimizer state, history and callback state.
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.iterations == uninterrupted.optimizer.iterations == 20
    assert history_b.history == history_a.history and history_b.epoch == [0, 1, 2, 3]
    assert (stop_b.best, stop_b.best_epoch, stop_b.wait) == (stop_a.best, stop_a.best_epoch, stop_a.wait)
    assert resumed.epochs_completed == 4


def test_resume_continues_at_the_learning_rate_the_checkpoint_was_saved_with(tmp_path):
    """ReduceLROnPlateau (or a user) lowered the rate before the checkpoint: the resumed run goes on
    at that rate, not at the one the new process compiled with (Keras's load_model keeps it too)."""
    x, y = data(40)

    def plateau():  # halves the rate after every epoch but the first (none improves by 1e9)
        return callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)

    uninterrupted = _resume_setup(seed=5)
    history_a = uninterrupted.fit(
        x, y, epochs=4, batch_size=8, verbose=0,
        callbacks=[plateau(), callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))],
    )
    resumed = _resume_setup(seed=123)
    history_b = resumed.fit(
        x, y, epochs=4, batch_size=8, verbose=0, callbacks=[plateau()], resume_from=tmp_path / "ckpt-2.npz"
    )
    assert history_b.history["learning_rate"] == history_a.history["learning_rate"] == [0.01, 0.01, 0.005, 0.0025]
    assert float(resumed.optimizer.learning_rate) == float(uninterrupted.optimizer.learning_rate)
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_finds_the_callbacks_states_when_a_callback_is_added(tmp_path):
    """A TerminateOnNaN put first on resuming shifted every index: EarlyStopping started its patience
    anew and ModelCheckpoint(save_best_only) forgot its best, so the next epoch overwrote the best
    checkpoint with a worse model. A state goes to the one callback of its class when the index
    no longer fits."""
    x, y = data(40)
    model = _resume_setup(seed=5)
    stop = callbacks.EarlyStopping(monitor="loss", patience=10)
    best = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss", save_best_only=True)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[stop, best, callbacks.ModelCheckpoint(str(tmp_path / "last.npz"))])
    resumed = _resume_setup(seed=6)
    stop_again = callbacks.EarlyStopping(monitor="loss", patience=10)
    best_again = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss", save_best_only=True)
    resumed.fit(x, y, epochs=2, batch_size=8, verbose=0, resume_from=tmp_path / "last.npz",
                callbacks=[callbacks.TerminateOnNaN(), stop_again, best_again])
    assert (stop_again.best, stop_again.best_epoch, stop_again.wait) == (stop.best, stop.best_epoch, stop.wait)
    assert best_again.best == best.best


def test_resume_keeps_the_checkpoints_skipped_batch_counts(tmp_path):
    """history.skipped_batches after a resume covers the checkpoint's epochs too, one count per
    entry of history.epoch (it held only the resumed fit's)."""
    x, y = data(40)
    x[3, 2, 2, 0] = np.nan  # one batch of five skipped every epoch
    model = _resume_setup(seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                  callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "ckpt.npz"))])
        history = _resume_setup(seed=6).fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                                            resume_from=tmp_path / "ckpt.npz")
    assert history.epoch == [0, 1, 2] and history.skipped_batches == [1, 1, 1]

    def forged(meta):
        meta["training"]["history_skipped"] = ["one"]
        return np.frombuffer(json.dumps(meta).encode(), np.uint8)

    _rewrite_entry(tmp_path / "ckpt.npz", "__meta__", lambda a: forged(json.loads(a.tobytes())))
    with pytest.raises(ModelFileError, match="malformed training state"):
        _resume_setup(seed=6).fit(x, y, epochs=3, verbose=0, resume_from=tmp_path / "ckpt.npz")


def test_resume_needs_a_full_checkpoint_and_the_same_optimizer(tmp_path):
    x, y = data()
    model = _resume_setup(seed=6)
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    model.save(tmp_path / "full.npz")
    with pytest.raises(ModelFileError, match="holds weights only"):
        _resume_setup(seed=6).fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "w.npz")
    sgd = make_model(dropout=0.3)
    sgd.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(
        ModelFileError, match="optimizer state in the file is for Adam but the model is compiled with SGD"
    ):
        sgd.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "full.npz")
    # resume_from sets the first epoch: an initial_epoch beside it is refused, not silently overridden.
    with pytest.raises(ValueError, match="leave initial_epoch out"):
        _resume_setup(seed=6).fit(x, y, epochs=3, initial_epoch=2, verbose=0, resume_from=tmp_path / "full.npz")
    # A NaN optimizer slot (Adam's moments) would make every update NaN; an infinite one is a
    # second moment that overflowed, a state to continue from.
    _rewrite_entry(tmp_path / "full.npz", "optimizer/1", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0,
                                                                             np.nan, a).astype(a.dtype))
    with pytest.raises(ModelFileError, match="holds NaN"):
        _resume_setup(seed=6).fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "full.npz")


@pytest.mark.filterwarnings("ignore:the Sequence given as x ran out of batches")  # every third epoch
def test_resume_of_a_sequence_read_a_few_batches_an_epoch_goes_on_at_its_batch(tmp_path):
    """fit(Sequence, steps_per_epoch) below its length goes on where the last epoch stopped (as
    Keras): a resumed fit starts its first epoch at the batch the uninterrupted run did."""
    x, y = data(40)

    class Batches:  # keras.utils.Sequence's protocol: 5 batches of 8
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]

    uninterrupted = _resume_setup(seed=5)
    uninterrupted.fit(Batches(), steps_per_epoch=2, epochs=5, verbose=0,
                      callbacks=[callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", monitor="loss")])
    resumed = _resume_setup(seed=5)
    resumed.fit(Batches(), steps_per_epoch=2, epochs=5, verbose=0, resume_from=tmp_path / "ckpt-2.npz")
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = data()
    model = _resume_setup(seed=7)
    losses = iter([1.0, 0.5, 0.7, 0.4])

    class FakeLoss(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)

    checkpoint = callbacks.ModelCheckpoint(
        tmp_path / "best-{epoch:02d}.npz", save_best_only=True, save_weights_only=True
    )
    model.fit(x, y, epochs=4, verbose=0, callbacks=[FakeLoss(), checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["best-01.npz", "best-02.npz", "best-04.npz"]
    assert checkpoint.best == 0.4 and checkpoint.last_saved == str(tmp_path / "best-04.npz")
    with pytest.raises(ValueError, match="names 'val_acc', which is not in the logs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(tmp_path / "{val_acc}.npz")])


def test_model_checkpoint_save_best_only_without_the_monitor_saves_as_keras(tmp_path):
    """Keras 3.15.1 saves every epoch (with a warning) while the logs lack the monitored value;
    convforge skipped, so a fit without validation data ended with no checkpoint at all."""
    x, y = data()
    model = _resume_setup(seed=7)
    checkpoint = callbacks.ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", save_best_only=True)
    with pytest.warns(RuntimeWarning, match="only with 'val_loss' available.*saving this epoch's model"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["best-01.npz", "best-02.npz"]
    np.testing.assert_array_equal(convforge.load_model(tmp_path / "best-02.npz").get_weights()[0],
                                  model.get_weights()[0])


def test_model_checkpoint_creates_its_directory(tmp_path):
    """As Keras's: a tutorial's ModelCheckpoint('checkpoints/...') raised FileNotFoundError after
    the first epoch had trained, instead of writing the file."""
    x, y = data()
    model = _resume_setup(seed=7)
    pattern = str(tmp_path / "runs" / "{epoch}" / "ckpt.npz")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(pattern, monitor="loss")])
    assert sorted(os.listdir(tmp_path / "runs")) == ["1", "2"]
    assert os.listdir(tmp_path / "runs" / "2") == ["ckpt.npz"]
    convforge.load_model(tmp_path / "runs" / "2" / "ckpt.npz")


def test_unknown_layer_class_and_compile_false(saved, tmp_path):
    with np.load(saved) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["model"]["config"]["layers"][3]["class_name"] = "Ghost"
    meta["model"]["config"]["layers"][3]["module"] = "nowhere"
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    ghost = tmp_path / "ghost.npz"
    np.savez(ghost, **arrays)
    _expect_model_file_error(ghost, r"layer class 'Ghost' .* custom_objects=\{'Ghost': Ghost\}")
    bare = convforge.load_model(saved, compile=False)
    assert bare.loss is None and bare.optimizer is None


def _rewrite_entry(path, key, transform):
    """Re-save the .npz at ``path`` with entry ``key`` replaced by ``transform(old)``."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays[key] = transform(arrays[key])
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "transform, match",
    [
        (lambda a: a.astype(np.int32), "is int32"),
        (lambda a: a.astype(np.float16), "is float16"),
        (lambda a: a.astype(np.complex64), "is complex64"),
        (lambda a: a[..., :-1], "the description says"),  # forged shape
        (lambda a: a.reshape(-1), "the description says"),
        (lambda a: np.full_like(a, np.nan), "holds .* NaN or infinite values"),
        (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.inf, a).astype(a.dtype), "holds 1 NaN"),
    ],
    ids=["int32", "float16", "complex", "forged-shape", "flattened", "nan-filled", "one-inf"],
)
def test_forged_weight_arrays_are_refused(saved, transform, match):
    _rewrite_entry(saved, "weights/4/kernel.npy".removesuffix(".npy"), transform)
    _expect_model_file_error(saved, match)


@pytest.mark.parametrize(
    "transform, match",
    [
        (lambda a: np.full_like(a, np.nan), "the best weights hold NaN or infinite values"),
        (lambda a: a[..., :-1], r"the best weights do not fit this model: shapes \["),
    ],
    ids=["nan-filled", "forged-shape"],
)
def test_resume_refuses_early_stopping_best_weights_the_model_cannot_take(tmp_path, transform, match):
    """restore_best_weights puts them into the model when training ends: a NaN copy made a silently
    NaN model, a wrong shape a ValueError after the whole run, the file not named."""
    x, y = data(40)
    model = _resume_setup(seed=5)
    stop = callbacks.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[stop, callbacks.ModelCheckpoint(str(tmp_path / "ckpt.npz"), monitor="loss")])
    _rewrite_entry(tmp_path / "ckpt.npz", "callbacks/0/0", transform)  # the first of the best weights
    resumed = _resume_setup(seed=6)
    before = resumed.get_weights()
    again = callbacks.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    with pytest.raises(ModelFileError, match=match):
        resumed.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[again], resume_from=tmp_path / "ckpt.npz")
    assert all(np.array_equal(a, b) for a, b in zip(resumed.get_weights(), before))
    assert again.best_weights is None


class _NamelessConfigDense(convforge.layers.Layer):
    """The Keras guide's CustomDense: its get_config() gives its own argument only, no name."""

    def __init__(self, units=3):
        super().__init__()
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")

    def forward(self, x, training=False):
        return x @ self.w

    def get_config(self):
        return {"units": self.units}


def test_a_layer_whose_config_has_no_name_rebuilds_under_its_name_in_the_same_process(tmp_path):
    """The rebuilt layer was named anew (``_nameless_config_dense_1``, the first name being taken
    in this process), so the graph's references to it failed: ``from_config`` and ``load_model``
    of such a model worked only in a fresh process. Entries now carry the layer's name."""
    custom = {"_NamelessConfigDense": _NamelessConfigDense}
    x = np.ones((2, 4), np.float32)
    inputs = convforge.Input((4,))
    model = convforge.Model(inputs, _NamelessConfigDense(3)(inputs))
    again = convforge.Model.from_config(model.get_config(), custom_objects=custom)
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    model.save(tmp_path / "graph.npz")
    loaded = convforge.load_model(tmp_path / "graph.npz", custom_objects=custom)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    stack = convforge.Sequential([convforge.Input((4,)), _NamelessConfigDense(2)])
    stack.save(tmp_path / "stack.npz")
    loaded = convforge.load_model(tmp_path / "stack.npz", custom_objects=custom)
    assert loaded.layers[0].name == stack.layers[0].name
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stack.predict(x, verbose=0))
