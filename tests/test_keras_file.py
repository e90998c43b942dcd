"""Keras 3's files: ``model.save("m.keras")``, ``load_model("m.keras")``, ``save_weights("m.weights.h5")``
and ``load_weights``: convforge's own round trips, files made by real Keras 3 read by convforge and
convforge's files read by real Keras (where Keras is installed: the ``keras`` extra, which CI
installs with torch), and hostile files.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

import convforge
from convforge import layers as L
from convforge.saving import ModelFileError

h5py = pytest.importorskip("h5py")  # a test dependency ([test]); the formats need it


def _keras():
    """Real Keras on its torch backend, or None where it is not installed (its checks then skip)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import keras
    except ImportError:
        return None
    return keras if keras.backend.backend() == "torch" else None


def _graph(M, L_):
    """The same graph in either library: a nested Sequential called with training=False, a nested
    functional model making an output, a shared layer, Add, Concatenate, two outputs, a Flatten ->
    Dense (Keras's row order)."""
    base = M.Sequential([M.Input((8, 8, 3)), L_.Conv2D(4, 3, padding="same"), L_.BatchNormalization()], name="base")
    i = M.Input((8, 8, 3), name="img")
    y = base(i, training=False)
    shared = L_.Conv2D(4, 1, name="shared")
    a = shared(y)
    b = shared(L_.Activation("relu", name="act")(a))
    z = L_.Concatenate()([L_.Add()([a, b]), y])
    flat = L_.Dense(5, activation="relu")(L_.Flatten()(L_.MaxPooling2D()(z)))
    g = L_.GlobalAveragePooling2D(name="gap")(z)
    hi = M.Input((8,))
    head = M.Model(hi, L_.Dense(2, name="head_dense")(hi), name="head")  # a nested graph: Keras counts its node
    return M.Model(i, [L_.Dense(3, activation="softmax", name="probs")(flat), head(g)])


def _sequential(M, L_):
    return M.Sequential([M.Input((10, 10, 1)), L_.Conv2D(6, 3, activation="relu",
                                                        kernel_regularizer=M.regularizers.l2(1e-4)),
                         L_.BatchNormalization(), L_.MaxPooling2D(), L_.Flatten(), L_.Dropout(0.5),
                         L_.Dense(4, activation="softmax")], name="lenet_like")


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model._flat_layers:
        new = []
        for name, w in zip(layer.params, layer.get_weights()):
            new.append(rng.uniform(0.5, 2.0, w.shape) if name == "moving_variance" else rng.standard_normal(w.shape))
        if new:
            layer.set_weights([w.astype(np.float32) for w in new])


def _same(a, b, tol=1e-5):
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=tol, atol=tol)


X_IMG = np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype(np.float32)
X_SEQ = np.random.default_rng(2).standard_normal((4, 10, 10, 1)).astype(np.float32)


# --------------------------------------------------------------------------- convforge alone

def test_sequential_round_trip_keeps_weights_and_compile_settings(tmp_path):
    model = _sequential(convforge, L)
    _randomise(model)
    model.compile(optimizer=convforge.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = convforge.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    _same(loaded.predict(X_SEQ, verbose=0), model.predict(X_SEQ, verbose=0), 0)
    assert type(loaded.optimizer).__name__ == "SGD" and loaded.optimizer.momentum == 0.9
    assert loaded.optimizer.learning_rate == pytest.approx(0.05)
    assert type(loaded.loss).__name__ == "SparseCategoricalCrossentropy"
    assert loaded.layers[0].kernel_regularizer.l2 == pytest.approx(1e-4)
    loaded.fit(X_SEQ, np.arange(4) % 4, epochs=1, verbose=0)  # trains
    uncompiled = convforge.load_model(path, compile=False)
    assert uncompiled.optimizer is None


@pytest.mark.parametrize("optimizer", [
    lambda: convforge.optimizers.Adam(1e-2), lambda: convforge.optimizers.Adam(1e-2, amsgrad=True),
    lambda: convforge.optimizers.AdamW(1e-2), lambda: convforge.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: convforge.optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
    lambda: convforge.optimizers.Adam(convforge.optimizers.schedules.ExponentialDecay(1e-2, 1, 0.5))])
def test_training_resumes_from_a_keras_file_with_the_optimizer_state(tmp_path, optimizer):
    """Saved after two steps and loaded, the model's third step is the one it would have taken."""
    model = _graph(convforge, L)
    model.get_layer("base").layers[0].trainable = False  # a frozen layer has no optimizer variables
    model.compile(optimizer(), ["sparse_categorical_crossentropy", "mse"])
    y = [np.arange(4) % 3, np.ones((4, 2), np.float32)]
    for _ in range(2):
        model.train_on_batch(X_IMG, y)
    model.save(tmp_path / "m.keras")
    loaded = convforge.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.iterations == 2
    model.train_on_batch(X_IMG, y)
    loaded.train_on_batch(X_IMG, y)
    _same(loaded.get_weights(), model.get_weights(), 0)


def test_a_schedule_keras_lacks_saves_the_model_uncompiled(tmp_path):
    model = _sequential(convforge, L)
    model.compile(convforge.optimizers.SGD(convforge.optimizers.schedules.StepDecay(0.1, 2)),
                  "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="loads uncompiled"):
        model.save(tmp_path / "s.keras")
    assert convforge.load_model(tmp_path / "s.keras").optimizer is None


def test_scalar_weights_relu6_and_spatial_dropout_round_trip(tmp_path):
    """Normalization's 0-d sample count stays 0-d (it became shape (1,), and the file could not be
    opened); relu6 is saved by that name; SpatialDropout's config has no `trainable` (Keras's
    constructor refuses one)."""
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))
    model = convforge.Sequential([convforge.Input((4,)), norm, L.Dense(4, activation="relu6"), L.Activation("relu6"),
                                  L.Reshape((4, 1)), L.SpatialDropout1D(0.2), L.Flatten()])
    model.save(tmp_path / "n.keras")
    with zipfile.ZipFile(tmp_path / "n.keras") as zf:
        config = json.loads(zf.read("config.json"))
    layers = config["config"]["layers"]
    assert layers[2]["config"]["activation"] == "relu6" and layers[3]["config"]["activation"] == "relu6"
    assert "trainable" not in layers[5]["config"]
    loaded = convforge.load_model(tmp_path / "n.keras")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32) * 5
    _same(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 0)
    loaded.save(tmp_path / "again.keras")  # relu6 saves again


def test_a_layer_shared_by_a_nested_call_and_the_outer_graph_is_refused_at_save(tmp_path):
    ii = convforge.Input((4,))
    h = L.Dense(4, name="h")
    two = convforge.Model(ii, [h(ii), L.Dense(4)(h(ii))], name="two")
    i = convforge.Input((4,))
    p, q = two(i)
    model = convforge.Model(i, L.Add()([h(p), q]))
    with pytest.raises(ValueError, match="called both inside a nested model's call and on its own"):
        model.save(tmp_path / "s.keras")
    assert not os.listdir(tmp_path)


def test_a_weights_file_of_a_partly_used_nested_model_is_refused(tmp_path):
    """Keras would load it by place into a model that lists the nested model as one entry, where
    convforge lists the used layers: the whole model (.keras) describes the graph as it runs."""
    ii = convforge.Input((4,))
    h = L.Dense(4)(ii)
    two = convforge.Model(ii, [h, L.Dense(4)(h)], name="two")
    i = convforge.Input((4,))
    p, _ = two(i)
    model = convforge.Model(i, L.Dense(4)(p))
    with pytest.raises(ValueError, match="uses only part of nested model 'two'"):
        model.save_weights(tmp_path / "w.weights.h5")
    model.save(tmp_path / "m.keras")
    x = np.ones((2, 4), np.float32)
    _same(convforge.load_model(tmp_path / "m.keras").predict(x, verbose=0), model.predict(x, verbose=0), 0)
    assert os.listdir(tmp_path) == ["m.keras"]


def test_a_graph_listed_backwards_rebuilds(tmp_path):
    """Calls resolve as their inputs are made, whatever order the file lists the layers in."""
    x = convforge.Input((4,))
    y = x
    for _ in range(30):
        y = L.Dense(4)(y)
    model = convforge.Model(x, y)
    _randomise(model)
    model.save(tmp_path / "f.keras")
    with zipfile.ZipFile(tmp_path / "f.keras") as zf:
        config = json.loads(zf.read("config.json"))
    config["config"]["layers"].reverse()
    _rewrite(tmp_path / "f.keras", tmp_path / "r.keras", config=config)
    data = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    _same(convforge.load_model(tmp_path / "r.keras").predict(data, verbose=0), model.predict(data, verbose=0), 0)


def test_graph_round_trip(tmp_path):
    model = _graph(convforge, L)
    _randomise(model)
    model.save(tmp_path / "g.keras")
    loaded = convforge.load_model(tmp_path / "g.keras")
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.get_layer("base").layers[0].name == model.get_layer("base").layers[0].name
    _same(loaded.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0), 0)
    # The nested base still runs in inference mode inside fit (its call had training=False).
    loaded.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    before = loaded.get_layer("base").layers[1].get_weights()[2].copy()
    loaded.fit(X_IMG, [np.arange(4) % 3, np.zeros((4, 2), np.float32)], epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.get_layer("base").layers[1].get_weights()[2], before)


def test_weights_h5_round_trip_and_keras_file_weights(tmp_path):
    model = _graph(convforge, L)
    _randomise(model)
    model.save_weights(tmp_path / "g.weights.h5")
    model.save(tmp_path / "g.keras")
    for path in ("g.weights.h5", "g.keras"):
        fresh = _graph(convforge, L)
        fresh.load_weights(tmp_path / path)
        _same(fresh.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0), 0)


def test_file_layout_is_keras_s(tmp_path):
    """The paths Keras's saving walk gives: per class in snake case, numbered in model.layers order."""
    model = _graph(convforge, L)
    model.save(tmp_path / "g.keras")
    with zipfile.ZipFile(tmp_path / "g.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        h5 = h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")
    assert config["class_name"] == "Functional" and config["config"]["output_layers"] == [["probs", 0, 0],
                                                                                          ["head", 1, 0]]
    names = []
    h5.visit(lambda n: names.append(n) if isinstance(h5[n], h5py.Dataset) else None)
    assert sorted(names) == sorted([
        "layers/sequential/layers/conv2d/vars/0", "layers/sequential/layers/conv2d/vars/1",
        *[f"layers/sequential/layers/batch_normalization/vars/{i}" for i in range(4)],
        "layers/conv2d/vars/0", "layers/conv2d/vars/1",
        "layers/dense/vars/0", "layers/dense/vars/1", "layers/dense_1/vars/0", "layers/dense_1/vars/1",
        "layers/functional/layers/dense/vars/0", "layers/functional/layers/dense/vars/1"])
    assert h5["layers/sequential/layers/conv2d/vars/0"].shape == (3, 3, 3, 4)  # Keras's HWIO
    assert h5["layers/conv2d/vars"].attrs["name"] == "shared"
    base = next(e for e in config["config"]["layers"] if e["name"] == "base")
    assert base["inbound_nodes"][0]["kwargs"] == {"training": False}
    shared = next(e for e in config["config"]["layers"] if e["name"] == "shared")
    assert [n["args"][0]["config"]["keras_history"] for n in shared["inbound_nodes"]] == [["base", 0, 0],
                                                                                        ["act", 0, 0]]


def test_float64_model_round_trips_in_float64(tmp_path):
    model = convforge.Sequential([convforge.Input((5,)), L.Dense(3)]).astype("float64")
    _randomise(model)
    model.save(tmp_path / "d.keras")
    loaded = convforge.load_model(tmp_path / "d.keras")
    assert loaded.dtype == np.float64
    _same(loaded.get_weights(), model.get_weights(), 0)


def test_model_checkpoint_writes_keras_files(tmp_path):
    model = _sequential(convforge, L)
    model.compile("adam", "sparse_categorical_crossentropy")
    y = np.arange(4) % 4
    model.fit(X_SEQ, y, epochs=2, verbose=0, callbacks=[
        convforge.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss"),
        convforge.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), monitor="loss", save_weights_only=True)])
    _same(convforge.load_model(tmp_path / "best.keras").predict(X_SEQ, verbose=0), model.predict(X_SEQ, verbose=0), 0)
    with pytest.raises(ValueError, match="save_weights_only=True"):
        convforge.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"))
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        convforge.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_weights_only=True)


def test_what_keras_cannot_describe_is_refused_at_save(tmp_path):
    lam = convforge.Sequential([convforge.Input((3,)), L.Lambda(lambda x: x * 2), L.Dense(2)])
    with pytest.raises(ValueError, match="Lambda"):
        lam.save(tmp_path / "l.keras")
    gelu = convforge.Sequential([convforge.Input((3,)), L.GELU(approximate=True)])
    with pytest.raises(ValueError, match="approximate"):
        gelu.save(tmp_path / "g.keras")
    assert not os.listdir(tmp_path)
    with pytest.raises(ValueError, match="not built"):
        convforge.Sequential([L.Dense(2)]).save(tmp_path / "u.keras")


def test_activation_layers_keras_lacks_are_saved_as_activation(tmp_path):
    model = convforge.Sequential([convforge.Input((4,)), L.Dense(3), L.GELU(), L.Dense(3), L.Tanh()])
    model.save(tmp_path / "a.keras")
    loaded = convforge.load_model(tmp_path / "a.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Activation", "Dense", "Activation"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    _same(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 1e-6)


def test_legacy_keras_names_stay_refused(tmp_path):
    model = _sequential(convforge, L)
    for name in ("m.h5", "m.hdf5"):
        with pytest.raises(ValueError, match="under Keras's"):
            model.save(tmp_path / name)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- hostile files

def _rewrite(src, dst, config=None, weights=None, members=None):
    with zipfile.ZipFile(src) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    if config is not None:
        parts["config.json"] = json.dumps(config).encode()
    if weights is not None:
        parts["model.weights.h5"] = weights
    if members is not None:
        parts = members(parts)
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in parts.items():
            zf.writestr(n, data)


def _h5_edit(data: bytes, edit) -> bytes:
    out = io.BytesIO(data)
    with h5py.File(out, "a") as h5:
        edit(h5)
    return out.getvalue()


@pytest.fixture
def saved(tmp_path):
    model = _sequential(convforge, L)
    _randomise(model)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.train_on_batch(X_SEQ, np.arange(4) % 4)
    path = tmp_path / "ok.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        return path, json.loads(zf.read("config.json")), zf.read("model.weights.h5")


def test_hostile_archives_raise_model_file_error(tmp_path, saved):
    path, config, weights = saved
    bad = tmp_path / "bad.keras"
    cases = {
        "not a zip": lambda: bad.write_bytes(b"hello"),
        "truncated": lambda: bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
        "no config": lambda: _rewrite(path, bad, members=lambda p: {k: v for k, v in p.items() if k != "config.json"}),
        "no weights": lambda: _rewrite(path, bad, members=lambda p: {k: v for k, v in p.items()
                                                                     if k != "model.weights.h5"}),
        "bad json": lambda: _rewrite(path, bad, members=lambda p: {**p, "config.json": b"{nope"}),
        "weights not hdf5": lambda: _rewrite(path, bad, weights=b"\x89HDF\r\n\x1a\n" + b"\0" * 100),
        "unknown class": lambda: _rewrite(path, bad, config={**config, "config": {**config["config"], "layers": [
            config["config"]["layers"][0], {"module": "keras.layers", "class_name": "Nope", "config": {}}]}}),
        "subclassed model": lambda: _rewrite(path, bad, config={**config, "class_name": "MyModel"}),
        "layers not a list": lambda: _rewrite(path, bad, config={**config, "config": {"layers": 3}}),
        "variable size": lambda: _rewrite(path, bad, config=_with_input(config, [None, None, None, 1])),
        "mixed precision": lambda: _rewrite(path, bad, config=_with_dtype(config, "mixed_float16")),
        "huge layer": lambda: _rewrite(path, bad, config=_with_units(config, 10**9)),
        "wrong shape": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: (
            h.__delitem__("layers/dense/vars/0"), h.create_dataset("layers/dense/vars/0", data=np.zeros((3, 4)))))),
        "missing array": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: h.__delitem__(
            "layers/dense/vars/1"))),
        "nan weight": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: h["layers/dense/vars/1"].__setitem__(
            0, np.nan))),
        "optimizer vars a dataset": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: (
            h.__delitem__("optimizer/vars"), h.create_dataset("optimizer/vars", data=np.zeros(5))))),
        "negative second moment": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: h[
            "optimizer/vars/3"].__setitem__(Ellipsis, -np.abs(h["optimizer/vars/3"][()]) - 1))),
        "infinite first moment": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: h[
            "optimizer/vars/2"].__setitem__(Ellipsis, np.inf))),
        "soft link": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: (
            h.__setitem__("x", h["layers/dense/vars/1"][()]), h.__delitem__("layers/dense/vars/1"),
            h.__setitem__("layers/dense/vars/1", h5py.SoftLink("/x"))))),
        "string weight": lambda: _rewrite(path, bad, weights=_h5_edit(weights, lambda h: (
            h.__delitem__("layers/dense/vars/1"), h.create_dataset("layers/dense/vars/1", data=np.array([b"ab"] * 4))))),
    }
    for what, make in cases.items():
        if bad.exists():
            bad.unlink()
        make()
        with pytest.raises(ModelFileError) as info:
            convforge.load_model(bad)
        assert str(bad) in str(info.value) and "_KerasFileError" not in str(info.value), what


def _with_input(config, batch_shape):
    config = json.loads(json.dumps(config))
    config["config"]["layers"][0]["config"]["batch_shape"] = batch_shape
    return config


def _with_dtype(config, name):
    config = json.loads(json.dumps(config))
    config["config"]["layers"][1]["config"]["dtype"]["config"]["name"] = name
    return config


def _with_units(config, units):
    config = json.loads(json.dumps(config))
    config["config"]["layers"][-1]["config"]["units"] = units
    return config


def test_a_decompression_bomb_is_refused_before_it_is_read(tmp_path, saved):
    path, config, weights = saved
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"\0" * (200 * 2**20))  # 200 MB of zeros, ~200 KB stored
    # The weights member must be stored (as Keras writes it): the weight memory a description may
    # ask for is then what the file holds on disk.
    with pytest.raises(ModelFileError, match="is compressed"):
        convforge.load_model(bomb)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", b" " * (100 * 2**20))  # a deflated 100 MB config: over the 64 MiB cap
        zf.writestr("model.weights.h5", weights, compress_type=zipfile.ZIP_STORED)
    with pytest.raises(ModelFileError, match="declares"):
        convforge.load_model(bomb)


def test_hdf5_links_and_external_data_are_refused(tmp_path, saved):
    """HDF5 can keep a dataset's bytes in another file (a FIFO would block the load forever) or link
    to another file's objects: a weights file must hold its arrays itself."""
    path, config, weights = saved
    (tmp_path / "outside.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())

    def external(h):
        del h["layers/dense/vars/1"]
        h.create_dataset("layers/dense/vars/1", (4,), dtype="f4", external=[(str(tmp_path / "outside.bin"), 0, 16)])

    def soft(h):
        h["elsewhere"] = h["layers/dense/vars/1"][()]
        del h["layers/dense/vars/1"]
        h["layers/dense/vars/1"] = h5py.SoftLink("/elsewhere")

    def external_link(h):
        del h["layers/dense"]
        h["layers/dense"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/layers/dense")

    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_group("layers/dense/vars")
    for edit in (external, soft, external_link):
        _rewrite(path, tmp_path / "bad.keras", weights=_h5_edit(weights, edit))
        with pytest.raises(ModelFileError, match="outside the file|Link"):
            convforge.load_model(tmp_path / "bad.keras")


def test_a_damaged_member_is_a_model_file_error(tmp_path, saved):
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.h5")
    data[info.header_offset + 30 + len(info.filename) + info.file_size // 2] ^= 0xFF  # a flipped byte: the CRC fails
    (tmp_path / "flip.keras").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="cannot be read"):
        convforge.load_model(tmp_path / "flip.keras")


def test_a_graph_whose_calls_never_resolve_is_refused(tmp_path):
    model = _graph(convforge, L)
    model.save(tmp_path / "g.keras")
    with zipfile.ZipFile(tmp_path / "g.keras") as zf:
        config = json.loads(zf.read("config.json"))
    layers = config["config"]["layers"]
    act = next(e for e in layers if e["name"] == "act")
    shared = next(e for e in layers if e["name"] == "shared")
    # A cycle: the activation now reads the shared layer's second call, which reads the activation.
    act["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["shared", 1, 0]
    assert shared["inbound_nodes"][1]["args"][0]["config"]["keras_history"] == ["act", 0, 0]
    _rewrite(tmp_path / "g.keras", tmp_path / "c.keras", config=config)
    with pytest.raises(ModelFileError, match="never get their inputs"):
        convforge.load_model(tmp_path / "c.keras")


def test_weights_of_another_model_are_refused_and_change_nothing(tmp_path):
    model = _graph(convforge, L)
    _randomise(model)
    model.save_weights(tmp_path / "g.weights.h5")
    other = _sequential(convforge, L)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(ModelFileError):
        other.load_weights(tmp_path / "g.weights.h5")
    _same(other.get_weights(), before, 0)
    (tmp_path / "junk.weights.h5").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="HDF5"):
        other.load_weights(tmp_path / "junk.weights.h5")


# --------------------------------------------------------------------------- real Keras 3

@pytest.fixture(scope="module")
def keras():
    k = _keras()
    if k is None:
        pytest.skip("real Keras 3 on the torch backend is not installed (the keras extra)")
    return k


def _keras_predict(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.predict(x, verbose=0)
    return list(out) if isinstance(out, (list, tuple)) else out


def test_keras_opens_convforge_files(tmp_path, keras):
    for make, x in ((_sequential, X_SEQ), (_graph, X_IMG)):
        model = make(convforge, L)
        _randomise(model)
        model.compile("adam", "sparse_categorical_crossentropy" if make is _sequential else
                      ["sparse_categorical_crossentropy", "mse"], metrics=["accuracy"] if make is _sequential else None)
        model.save(tmp_path / "m.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras: "Skipping variable loading for optimizer" (no state saved)
            theirs = keras.models.load_model(tmp_path / "m.keras")
        _same(_keras_predict(theirs, x), model.predict(x, verbose=0))
        assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]
        assert theirs.count_params() == model.count_params()
        assert type(theirs.optimizer).__name__ == "Adam"
        model.save_weights(tmp_path / "m.weights.h5")
        twin = make(keras, keras.layers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin.load_weights(tmp_path / "m.weights.h5")
        _same(_keras_predict(twin, x), model.predict(x, verbose=0))


def test_convforge_opens_keras_files(tmp_path, keras):
    for make, x, y in ((_sequential, X_SEQ, np.arange(4) % 4), (_graph, X_IMG, None)):
        theirs = make(keras, keras.layers)
        if y is not None:
            theirs.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NumPy 2's notices about Keras's own variables
                theirs.fit(x, y, epochs=1, verbose=0)  # moving statistics move, the optimizer has a state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs.save(tmp_path / "k.keras")
            theirs.save_weights(tmp_path / "k.weights.h5")
        if y is not None:
            ours = convforge.load_model(tmp_path / "k.keras")
            assert ours.optimizer.iterations == 1
            assert ours.optimizer.learning_rate == pytest.approx(2e-3)
            assert type(ours.loss).__name__ == "SparseCategoricalCrossentropy"
        else:
            ours = convforge.load_model(tmp_path / "k.keras")
        _same(ours.predict(x, verbose=0), _keras_predict(theirs, x))
        assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
        twin = make(convforge, L)
        twin.load_weights(tmp_path / "k.weights.h5")
        _same(twin.predict(x, verbose=0), _keras_predict(theirs, x))


def test_optimizer_state_moves_both_ways_with_keras(tmp_path, keras):
    """Keras trains two steps and saves; convforge loads and takes the third step as Keras does,
    and saves; Keras loads that and takes the fourth step as convforge does."""
    y = np.arange(4) % 4
    # No Dropout: its random masks differ between the libraries.
    theirs = keras.Sequential([keras.Input((10, 10, 1)), keras.layers.Conv2D(6, 3, activation="relu"),
                               keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
                               keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        for _ in range(2):
            theirs.train_on_batch(X_SEQ, y)
        theirs.save(tmp_path / "k.keras")
        ours = convforge.load_model(tmp_path / "k.keras")
        assert ours.optimizer.iterations == 2
        theirs.train_on_batch(X_SEQ, y)
    ours.train_on_batch(X_SEQ, y)
    _same(ours.get_weights(), [v.value.detach().cpu().numpy() for v in theirs.weights], 2e-5)
    ours.save(tmp_path / "c.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "Skipping variable loading for optimizer"
        back = keras.models.load_model(tmp_path / "c.keras")
        back.train_on_batch(X_SEQ, y)
    ours.train_on_batch(X_SEQ, y)
    _same(ours.get_weights(), [v.value.detach().cpu().numpy() for v in back.weights], 2e-5)


def test_compile_settings_move_both_ways_with_keras(tmp_path, keras):
    """Loss settings, metric objects with their arguments and RMSprop's state, each way."""
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    y = np.arange(8) % 2

    def build(M, L_):
        return M.Sequential([M.Input((6,)), L_.Dense(4, activation="relu"), L_.Dense(1, activation="sigmoid")])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = build(keras, keras.layers)
        theirs.compile(keras.optimizers.RMSprop(1e-3, momentum=0.2), keras.losses.BinaryCrossentropy(label_smoothing=0.1),
                       metrics=[keras.metrics.Precision(), keras.metrics.Recall(thresholds=0.3), "binary_accuracy"])
        theirs.fit(x, y, verbose=0)
        theirs.save(tmp_path / "k.keras")
        expected = theirs.evaluate(x, y, verbose=0)
    ours = convforge.load_model(tmp_path / "k.keras")
    assert [type(m).__name__ for m in ours.compiled_metrics] == ["Precision", "Recall", "BinaryAccuracy"]
    assert list(np.ravel(ours.compiled_metrics[1].thresholds)) == [0.3] and ours.loss.label_smoothing == 0.1
    assert ours.optimizer.momentum == 0.2 and ours.optimizer.iterations == 1
    _same(ours.evaluate(x, y, verbose=0), expected)
    ours.save(tmp_path / "c.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = keras.models.load_model(tmp_path / "c.keras")
        _same(back.evaluate(x, y, verbose=0), expected)


@pytest.mark.parametrize("schedule", ["ExponentialDecay", "PiecewiseConstantDecay"])
def test_learning_rate_schedules_and_their_state_move_both_ways(tmp_path, keras, schedule):
    arguments = {"ExponentialDecay": {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5},
                 "PiecewiseConstantDecay": {"boundaries": [1, 3], "values": [0.05, 0.02, 0.01]}}[schedule]
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    y = np.arange(8) % 2

    def build(M, L_):
        return M.Sequential([M.Input((6,)), L_.Dense(4, activation="relu"), L_.Dense(1, activation="sigmoid")])

    def keras_weights(m):
        return [v.value.detach().cpu().numpy() for v in m.weights]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = build(keras, keras.layers)
        theirs.compile(keras.optimizers.Adam(getattr(keras.optimizers.schedules, schedule)(**arguments)),
                       "binary_crossentropy")
        for _ in range(2):
            theirs.train_on_batch(x, y)
        theirs.save(tmp_path / "k.keras")
        ours = convforge.load_model(tmp_path / "k.keras")
        assert type(ours.optimizer.schedule).__name__ == schedule and ours.optimizer.iterations == 2
        theirs.train_on_batch(x, y)
        ours.train_on_batch(x, y)
        _same(ours.get_weights(), keras_weights(theirs))
        ours.save(tmp_path / "c.keras")
        back = keras.models.load_model(tmp_path / "c.keras")
        back.train_on_batch(x, y)
        ours.train_on_batch(x, y)
        _same(ours.get_weights(), keras_weights(back))


def test_training_flags_keras_records_on_layers_do_not_stop_a_load(tmp_path, keras):
    """Keras writes each Dropout's or augmentation layer's default training flag into its call, and
    overrides it when the model runs: such a file loads, and its Dropout drops in training."""
    i = keras.Input((50,))
    x = keras.layers.Dropout(0.5)(i)
    x = keras.layers.GaussianNoise(0.1)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.Model(i, keras.layers.Dense(50)(x))
        model.save(tmp_path / "d.keras")
    ours = convforge.load_model(tmp_path / "d.keras")
    ones = np.ones((4, 50), np.float32)
    np.testing.assert_allclose(ours.predict(ones, verbose=0), _keras_predict(model, ones), atol=1e-5)
    dropout = ours.layers[1]
    assert type(dropout).__name__ == "Dropout"
    assert (dropout(ones, training=True) == 0).any()


def test_a_partly_used_nested_model_loads_by_name_and_load_weights_refuses_a_swap(tmp_path, keras):
    """Keras lists a nested model whose second output is unused as one entry; convforge lists its
    used layer. load_model takes each layer's arrays by name; load_weights (Keras's rule, by
    place) refuses rather than swap them."""
    def build(M, L_):
        ii = M.Input((4,), name="ii")
        h = L_.Dense(4, name="h")(ii)
        two = M.Model(ii, [h, L_.Dense(4, name="g")(h)], name="two")
        i = M.Input((4,), name="i")
        p, _ = two(i)
        return M.Model(i, L_.Dense(4, name="top")(p))

    theirs = build(keras, keras.layers)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save(tmp_path / "k.keras")
        theirs.save_weights(tmp_path / "k.weights.h5")
    _same(convforge.load_model(tmp_path / "k.keras").predict(x, verbose=0), _keras_predict(theirs, x))
    with pytest.raises(ModelFileError, match="another order"):
        build(convforge, L).load_weights(tmp_path / "k.weights.h5")


def test_keras_nested_multi_input_model_loads(tmp_path, keras):
    """Keras records mask=[None, None] for a call on two tensors."""
    def build(M, L_):
        a, b = M.Input((4,)), M.Input((4,))
        inner = M.Model([a, b], L_.Dense(3)(L_.Concatenate()([a, b])), name="inner")
        p, q = M.Input((4,)), M.Input((4,))
        return M.Model([p, q], L_.Dense(2)(inner([p, q])))

    theirs = build(keras, keras.layers)
    x = [np.random.default_rng(k).standard_normal((3, 4)).astype(np.float32) for k in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save(tmp_path / "k.keras")
    _same(convforge.load_model(tmp_path / "k.keras").predict(x, verbose=0), _keras_predict(theirs, x))


def test_keras_opens_spatial_dropout_relu6_and_normalization(tmp_path, keras):
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))
    model = convforge.Sequential([convforge.Input((4,)), norm, L.Dense(4, activation="relu6"), L.Reshape((4, 1)),
                                  L.SpatialDropout1D(0.2), L.Flatten()])
    model.save(tmp_path / "n.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.models.load_model(tmp_path / "n.keras")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32) * 5
    _same(_keras_predict(theirs, x), model.predict(x, verbose=0))


def test_a_keras_model_with_outputs_in_a_dict_is_refused_by_name(tmp_path, keras):
    i = keras.Input((6,))
    model = keras.Model(i, {"a": keras.layers.Dense(2)(i)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp_path / "d.keras")
    with pytest.raises(ModelFileError, match="output_layers are a dict"):
        convforge.load_model(tmp_path / "d.keras")


def test_every_keras_layer_convforge_has_loads_from_keras_s_description(keras):
    """Each Keras layer class convforge also has, as Keras's get_config writes it (defaults spelled
    out, initializers and dtype policies as objects), rebuilds into a convforge layer."""
    from convforge.models import keras_file

    arguments = {"Conv2D": (4, 3), "Conv1D": (4, 3), "Conv2DTranspose": (4, 3), "Conv1DTranspose": (4, 3),
                 "Dense": (4,), "DepthwiseConv2D": (3,), "SeparableConv2D": (4, 3), "SeparableConv1D": (4, 3),
                 "DepthwiseConv1D": (3,), "Dropout": (0.5,), "SpatialDropout2D": (0.5,), "SpatialDropout1D": (0.5,),
                 "Activation": ("relu",), "Reshape": ((4,),), "Permute": ((2, 1),), "GaussianNoise": (0.1,),
                 "GaussianDropout": (0.1,), "AlphaDropout": (0.1,), "Rescaling": (1 / 255,), "Resizing": (4, 4),
                 "CenterCrop": (4, 4), "RandomCrop": (4, 4), "RandomRotation": (0.1,), "RandomZoom": (0.1,),
                 "RandomTranslation": (0.1, 0.1), "RandomContrast": (0.1,), "RandomBrightness": (0.1,),
                 "Embedding": (10, 4), "GroupNormalization": (2,), "RepeatVector": (2,), "AveragePooling2D": (2,),
                 "AveragePooling1D": (2,), "Dot": (1,)}
    names = sorted(n for n in dir(L) if isinstance(getattr(L, n), type) and n[:1].isupper()
                   and hasattr(keras.layers, n) and n not in ("Lambda", "InputLayer", "Layer")
                   and getattr(keras.layers, n).__name__ == n)  # Keras's aliases (MaxPool2D) are the same class
    assert len(names) > 50
    for name in names:
        theirs = getattr(keras.layers, name)(*arguments.get(name, ()))
        ours = keras_file._Reader({}).layer(keras.saving.serialize_keras_object(theirs))
        assert type(ours).__name__ == name


def test_a_convforge_file_listing_layers_in_another_order_loads_by_name(tmp_path):
    """convforge's .npz lists a graph's layers in model.layers order, which now follows Keras's
    rule exactly; a file written under the earlier rule lists some graphs otherwise. Rebuilt from
    the file, the model has the same names: each layer takes its own weights, not its position's."""
    from convforge.models import state

    model = _graph(convforge, L)
    _randomise(model)
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    model.train_on_batch(X_IMG, [np.arange(4) % 3, np.zeros((4, 2), np.float32)])
    meta, arrays = state.model_state(model)
    entries = meta["model"]["config"]["layers"]
    order = list(range(len(entries)))[::-1]  # the file lists them backwards
    meta["model"]["config"]["layers"] = [entries[i] for i in order]
    new_index = {old: new for new, old in enumerate(order)}
    for entry in meta["weights"]:
        entry["index"] = new_index[int(entry["index"])]
    for entry in (meta.get("optimizer") or {}).get("slots", []):
        i, _, rest = entry["variable"].partition("/")
        entry["variable"] = f"{new_index[int(i)]}/{rest}"
    twin = _graph(convforge, L)
    for a, b in zip(twin._flat_layers, model._flat_layers):
        a.name = b.name  # a model rebuilt from the file carries its names
    state.assign_weights(twin, meta, arrays, "file", rebuilt=True)  # load_model's case
    _same(twin.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0), 0)
    # load_weights into a model of one's own goes by position, as Keras's: names from another
    # session say nothing there (the backwards file no longer fits this model).
    with pytest.raises(ModelFileError, match="wrong architecture"):
        state.assign_weights(_graph(convforge, L), meta, arrays, "file")


def test_load_weights_goes_by_place_whatever_the_names(tmp_path):
    """Keras's rule for weights files: each layer's place, not its name (a model built again in
    another session has other automatic names, or names given otherwise)."""
    first = convforge.Sequential([convforge.Input((4,)), L.Dense(4, name="a"), L.Dense(4, name="b")])
    _randomise(first)
    second = convforge.Sequential([convforge.Input((4,)), L.Dense(4, name="b2"), L.Dense(4, name="a2")])
    third = convforge.Sequential([convforge.Input((4,)), L.Dense(4, name="b"), L.Dense(4, name="a")])
    x = np.ones((2, 4), np.float32)
    for name in ("w.weights.h5", "w.npz"):
        first.save_weights(tmp_path / name)
        for other in (second, third):
            other.load_weights(tmp_path / name)
            _same(other.predict(x, verbose=0), first.predict(x, verbose=0), 0)


def test_keras_saving_functions_pick_the_format_by_name(tmp_path):
    """keras.saving.save_model / save_weights / load_weights are the model's methods, so a .keras
    name writes Keras's format there too (they wrote convforge's .npz whatever the name)."""
    from convforge import saving

    model = _sequential(convforge, L)
    _randomise(model)
    saving.save_model(model, tmp_path / "m.keras")
    saving.save_weights(model, tmp_path / "w.weights.h5")
    twin = _sequential(convforge, L)
    saving.load_weights(twin, tmp_path / "w.weights.h5")
    _same(twin.get_weights(), model.get_weights(), 0)
    _same(saving.load_model(tmp_path / "m.keras").predict(X_SEQ, verbose=0), model.predict(X_SEQ, verbose=0), 0)
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert "config.json" in zf.namelist()
    with pytest.raises(TypeError, match="zipped"):
        saving.save_model(model, tmp_path / "d.keras", zipped=False)


def test_each_method_refuses_the_other_kind_of_keras_name(tmp_path):
    model = _sequential(convforge, L)
    with pytest.raises(ValueError, match="is a weights file name"):
        model.save(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match="save_weights writes Keras's .weights.h5"):
        model.save_weights(tmp_path / "m.keras")
    assert not os.listdir(tmp_path)


def test_standalone_activation_layers_are_saved_as_keras_activation(tmp_path):
    """An ONNX file's Celu, Exp, Mish or Softsign comes in as a standalone activation layer, which
    Keras has as Activation(name) only: written so (it was written as keras.layers.CELU, which
    Keras cannot load); one with settings Keras's function does not take is refused."""
    from convforge.layers import activations as acts

    model = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(5), acts.CELU(), acts.Exponential(),
                                  acts.Mish(), acts.Softsign(), acts.Squareplus(), convforge.layers.Dense(2)])
    path = tmp_path / "m.keras"
    model.save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    layers = config["config"]["layers"]
    assert [(entry["class_name"], entry["config"].get("activation")) for entry in layers[2:7]] == [
        ("Activation", "celu"), ("Activation", "exponential"), ("Activation", "mish"), ("Activation", "softsign"),
        ("Activation", "squareplus")]
    back = convforge.load_model(path)
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    odd = convforge.Sequential([convforge.Input((4,)), acts.CELU(alpha=0.5)])
    with pytest.raises(ValueError, match=r"CELU with \{'alpha': 0.5\} has no Keras layer; Keras's Activation\('celu'\) "
                                         r"takes \{'alpha': 1.0\}"):
        odd.save(tmp_path / "odd.keras")


def _channels_first_cnn(M, L_):
    return M.Sequential([M.Input((3, 8, 8)), L_.Conv2D(4, 3, data_format="channels_first"),
                         L_.MaxPooling2D(data_format="channels_first"), L_.Flatten(), L_.Dense(2)])


def test_a_flatten_that_says_channels_last_sits_in_a_channels_first_model():
    # Keras's files store every Flatten's data_format, 'channels_last' by default, and Keras
    # flattens the maps as laid out: convforge refused the mix ("must agree on data_format").
    model = convforge.Sequential([convforge.Input((3, 8, 8)), L.Conv2D(4, 3, data_format="channels_first"),
                                  L.Flatten(data_format="channels_last"), L.Dense(2)])
    assert model._data_format() == "channels_first"
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    maps = np.asarray(model.layers[0](x))  # channels-first, flattened as they are
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), maps.reshape(2, -1) @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_a_keras_channels_first_cnn_file_loads(tmp_path, keras):
    theirs = _channels_first_cnn(keras, keras.layers)
    x = np.random.default_rng(4).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy 2's notices about Keras's own variables
        theirs.save(tmp_path / "cf.keras")
    ours = convforge.models.load_model(tmp_path / "cf.keras")
    _same(ours.predict(x, verbose=0), _keras_predict(theirs, x))


def _flatten_then_features(M, L_):
    """Flatten -> BatchNormalization -> PReLU -> Dense, and Concatenate([Flatten(maps), a
    metadata vector]) -> Dense: layers whose weights follow the Flatten's order."""
    image, meta = M.Input((6, 6, 2), name="image"), M.Input((3,), name="meta")
    flat = L_.Flatten()(L_.Conv2D(3, 3)(image))
    tail = L_.Dense(4)(L_.PReLU()(L_.BatchNormalization()(flat)))
    both = L_.Dense(2)(L_.Concatenate()([flat, L_.Dense(5)(meta)]))
    return M.Model([image, meta], [tail, both])


def test_flatten_then_batchnorm_or_a_concatenate_moves_both_ways_with_keras(tmp_path, keras):
    # Predictions 3 to 21 off, silently, in both directions until stop 40.
    rng = np.random.default_rng(5)
    x = [rng.standard_normal((4, 6, 6, 2)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy 2's notices about Keras's own variables
        theirs = _flatten_then_features(keras, keras.layers)
        weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in theirs.get_weights()]
        theirs.set_weights(weights)
        theirs.save(tmp_path / "k.keras")
    want = _keras_predict(theirs, x)
    _same(convforge.load_model(tmp_path / "k.keras").predict(x, verbose=0), want, 1e-4)
    ours = _flatten_then_features(convforge, L)
    ours.set_weights(weights)
    _same(ours.predict(x, verbose=0), want, 1e-4)
    ours.save(tmp_path / "c.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = keras.models.load_model(tmp_path / "c.keras")
    _same(_keras_predict(back, x), want, 1e-4)


_HOLE_IN_THE_GLOBAL_HEAP = r"""
import io, sys, zipfile
import convforge
from convforge import layers, models
from convforge.saving import ModelFileError

def model():
    return models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                              layers.BatchNormalization(), layers.Flatten(), layers.Dense(3, activation="softmax")])

def holed(h5):
    h5 = bytearray(h5)
    g = h5.find(b"GCOL")  # the global heap: the layers' names
    h5[g + 99 : g + 151] = bytes(52)
    return bytes(h5)

folder = sys.argv[1]
model().save_weights(f"{folder}/w.weights.h5")
with open(f"{folder}/w.weights.h5", "rb") as f:
    data = f.read()
with open(f"{folder}/bad.weights.h5", "wb") as f:
    f.write(holed(data))
model().save(f"{folder}/m.keras")
with zipfile.ZipFile(f"{folder}/m.keras") as z:
    members = {n: z.read(n) for n in z.namelist()}
members["model.weights.h5"] = holed(members["model.weights.h5"])
with zipfile.ZipFile(f"{folder}/bad.keras", "w") as z:
    for n, d in members.items():
        z.writestr(n, d)
for load in (lambda: model().load_weights(f"{folder}/bad.weights.h5"), lambda: convforge.load_model(f"{folder}/bad.keras")):
    try:
        load()
        print("loaded")
    except ModelFileError as err:
        print("refused:", err)
model().load_weights(f"{folder}/w.weights.h5")  # the undamaged file still loads
with open(f"{folder}/tail.weights.h5", "wb") as f:  # 'GCOL' in its last bytes: data, not a heap (h5py reads it)
    f.write(data + b"GCOL")
model().load_weights(f"{folder}/tail.weights.h5")
print("intact loads")
"""


def test_a_hole_in_the_hdf5_global_heap_is_refused_not_read_forever(tmp_path):
    # libhdf5 walks a global heap collection object by object; a zeroed object header is a step of
    # 0 and it looped for good (h5py/h5py#2088), in load_weights and load_model. A subprocess with
    # a timeout, so that a return of the hang fails the test instead of stopping the suite.
    import subprocess
    import sys

    pytest.importorskip("h5py")
    here = os.path.dirname(os.path.dirname(os.path.abspath(convforge.__file__)))  # the convforge this test runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _HOLE_IN_THE_GLOBAL_HEAP, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[2] == "intact loads", done.stdout
    for line in lines[:2]:
        assert line.startswith("refused:") and "global heap at byte" in line and "HDF5 would read it forever" in line
