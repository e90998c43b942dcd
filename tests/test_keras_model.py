"""Keras model-level API on Sequential (and, at the end, functional models): *_on_batch, weights, sample/class weights, generators,
regularizers in the loss, the from_logits warning, single callbacks, verbose=True/False."""

import copy
import json
import warnings

import numpy as np
import pytest

import convforge
from convforge import callbacks, gradcheck, layers, losses, regularizers
from convforge.gradcheck import check_model_gradients


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x.astype(np.float32), y


def model(**dense):
    convforge.seed(0)
    m = convforge.Sequential(
        [layers.Dense(8, activation="relu", input_shape=(6,), **dense), layers.Dense(3, activation="softmax")]
    )
    m.compile(optimizer=convforge.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_train_test_predict_on_batch_and_reset_metrics():
    m = model()
    x, y = data()
    before = m.get_weights()
    loss, acc = m.train_on_batch(x[:32], y[:32])
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    logs = m.test_on_batch(x[32:64], y[32:64], return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    # Keras 3.15.1 resets the metrics at each train_on_batch/test_on_batch: the accuracy is this
    # batch's alone (the 32 samples of the last call), not a mean over the calls so far.
    assert m.compiled_metrics[0]._count == 32
    batch_accuracy = np.mean(m.predict(x[32:64], verbose=0).argmax(1) == y[32:64])
    assert logs["accuracy"] == pytest.approx(batch_accuracy)
    m.reset_metrics()
    assert np.isnan(m.compiled_metrics[0].result())
    np.testing.assert_allclose(m.predict_on_batch(x[:5]), m.predict(x[:5], verbose=0), rtol=1e-6)
    # test_on_batch's loss is evaluate's on the same batch.
    assert m.test_on_batch(x[:32], y[:32])[0] == pytest.approx(m.evaluate(x[:32], y[:32], verbose=0)[0], rel=1e-6)


def test_weights_properties_and_trainable_toggling():
    m = model()
    assert len(m.weights) == 4 and m.weights[0] is m.layers[0].kernel
    assert m.layers[0].bias.shape == (8,)
    m.layers[0].trainable = False
    assert len(m.trainable_weights) == 2 and len(m.non_trainable_weights) == 2
    frozen = m.layers[0].kernel.copy()
    m.fit(*data(), epochs=1, verbose=False)
    np.testing.assert_array_equal(m.layers[0].kernel, frozen)
    m.layers[0].trainable = True
    m.fit(*data(), epochs=1, verbose=False)
    assert not np.array_equal(m.layers[0].kernel, frozen)


def test_sample_weight_zero_drops_samples_and_class_weight_is_per_class():
    x, y = data()
    # Weights 0 on half the batch give the same update as training on the other half (times 1/2 in the loss).
    a = model()
    a.train_on_batch(x[:32], y[:32], sample_weight=np.r_[np.ones(16), np.zeros(16)] * 2)
    b = model()
    b.train_on_batch(x[:16], y[:16])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    # class_weight is the sample_weight of each sample's class.
    cw = {0: 0.5, 1: 2.0, 2: 1.0}
    c = model()  # seeds: the same shuffles in both runs
    c.fit(x, y, epochs=2, batch_size=16, verbose=0, class_weight=cw)
    d = model()
    d.fit(x, y, epochs=2, batch_size=16, verbose=0, sample_weight=np.vectorize(cw.get)(y))
    for wc, wd in zip(c.get_weights(), d.get_weights()):
        np.testing.assert_array_equal(wc, wd)
    # A class no target holds weighs no sample, however large its index (it was a table entry:
    # 8 TiB for 2**40).
    e = model()
    e.fit(x, y, epochs=2, batch_size=16, verbose=0, class_weight={**cw, 2**40: 3.0})
    for wc, we in zip(c.get_weights(), e.get_weights()):
        np.testing.assert_array_equal(wc, we)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(96,\)"):
        c.fit(x, y, sample_weight=np.ones(3), verbose=0)
    # A class weight is refused as a sample weight is: a NaN one made every batch holding that
    # class NaN (skipped, never trained on), a negative one trained away from the labels.
    for bad in (float("nan"), float("inf"), -1.0, "a", None):
        with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number >= 0; got"):
            c.fit(x, y, class_weight={0: 1.0, 1: bad}, verbose=0)


def test_validation_loss_is_weighted_by_the_validation_samples_own_weights():
    """As Keras: validation_split holds out sample_weight's values with the samples (class_weight
    weights the training only), and validation_data takes a third item, the validation weights."""
    x, y = data()
    w = np.linspace(0.1, 3.0, len(x))
    m = model()
    h = m.fit(x, y, sample_weight=w, class_weight={0: 5.0}, validation_split=0.25, epochs=1, verbose=0)
    held = slice(72, None)
    weighted = m.evaluate(x[held], y[held], sample_weight=w[held], verbose=0)[0]
    assert h.history["val_loss"][0] == pytest.approx(weighted, rel=1e-6)
    assert h.history["val_loss"][0] != pytest.approx(m.evaluate(x[held], y[held], verbose=0)[0], rel=1e-3)
    m = model()
    h = m.fit(x[:72], y[:72], validation_data=(x[held], y[held], w[held]), epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(
        m.evaluate(x[held], y[held], sample_weight=w[held], verbose=0)[0], rel=1e-6)
    with pytest.raises(ValueError, match=r"validation_data\[2\] must have shape \(24,\)"):
        m.fit(x[:72], y[:72], validation_data=(x[held], y[held], w[:3]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\) or"):
        m.fit(x[:72], y[:72], validation_data=(x[held],), epochs=1, verbose=0)


def test_validation_steps_with_arrays_takes_the_first_batches_as_keras():
    # Keras 3.15.1: fit(validation_data=(x, y), validation_steps=2, validation_batch_size=5)
    # evaluates x[:10]; convforge ignored validation_steps with arrays and evaluated all of them.
    x, y = data(30)
    m = model()
    m.compile(optimizer=convforge.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    first = m.evaluate(x[:10], y[:10], verbose=0, return_dict=True)
    assert first["loss"] != pytest.approx(m.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    history = m.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), validation_steps=2, validation_batch_size=5)
    assert history.history["val_loss"] == [pytest.approx(first["loss"])]
    assert history.history["val_accuracy"] == [pytest.approx(first["accuracy"])]
    history = m.fit(x, y, epochs=1, verbose=0, validation_split=0.5, validation_steps=1, validation_batch_size=5)
    assert history.history["val_loss"] == [pytest.approx(m.evaluate(x[15:20], y[15:20], verbose=0)[0])]
    with pytest.raises(ValueError, match="validation_steps must be a positive int; got 0"):
        m.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), validation_steps=0)


def test_class_weight_refuses_negative_labels():
    # Regression targets or -1/1 labels indexed the weight table from its end (the last class's
    # weight, silently): -3.0 took class_weight[3]'s weight.
    x, _ = data(16)
    m = convforge.Sequential([layers.Dense(1, input_shape=(6,))])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="class_weight weighs class indices >= 0, but the targets hold -3"):
        m.fit(x, np.linspace(-3, 3, 16), epochs=1, verbose=0, class_weight={0: 1.0, 3: 10.0})
    with pytest.raises(ValueError, match="the targets hold -1"):
        m.train_on_batch(x, np.where(np.arange(16) % 2, 1.0, -1.0), class_weight={1: 2.0})


def test_generators_and_sequences():
    x, y = data()

    def forever():
        while True:
            for i in range(0, 96, 32):
                yield x[i : i + 32], y[i : i + 32]

    a, b = model(), model()
    a.fit(forever(), steps_per_epoch=3, epochs=2, verbose=0)
    b.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)

    class Batches:  # keras.utils.Sequence's protocol
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32]

    history = a.fit(Batches(), epochs=1, verbose=0, validation_data=Batches())
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert a.evaluate(Batches(), verbose=0)[0] == pytest.approx(a.evaluate(x, y, verbose=0)[0], rel=1e-5)
    with pytest.raises(ValueError, match="ran out of batches after 1 of steps_per_epoch=2"):
        a.fit(iter([(x[:8], y[:8])]), steps_per_epoch=2, verbose=0)
    # evaluate's argument is called steps (it was called steps_per_epoch there).
    with pytest.raises(ValueError, match="ran out of batches after 1 of steps=2: .* loops forever \\(and steps\\)"):
        a.evaluate(iter([(x[:8], y[:8])]), steps=2, verbose=0)
    with pytest.raises(ValueError, match="^steps must be a positive int; got 0"):
        a.evaluate(Batches(), steps=0, verbose=0)
    with pytest.raises(ValueError, match="^validation_steps must be a positive int; got 0"):
        a.fit(x, y, verbose=0, validation_data=Batches(), validation_steps=0)
    with pytest.warns(RuntimeWarning, match=r"ran out of batches \(it has 3\): 3 read of steps=5$"):
        a.evaluate(Batches(), steps=5, verbose=0)
    with pytest.raises(ValueError, match="must yield tuples"):
        a.fit(iter([x[:8]]), verbose=0)


def test_a_re_iterable_with_a_length_is_read_in_passes_like_a_torch_dataloader():
    # Keras 3's fit, evaluate and predict take a torch DataLoader (iter() and len(), no
    # getitem); convforge read it as an array: "x must hold real numbers; got ... dtype object".
    x, y = data()

    class Loader:
        def __init__(self):
            self.passes = 0

        def __len__(self):
            return 3

        def __iter__(self):
            self.passes += 1
            return iter([(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)])

    a, b, loader = model(), model(), Loader()
    a.fit(loader, epochs=2, verbose=0)
    b.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert loader.passes == 3  # the first batch read to build the model, then one pass an epoch
    assert a.evaluate(loader, verbose=0)[0] == pytest.approx(a.evaluate(x, y, verbose=0)[0], rel=1e-5)
    np.testing.assert_array_equal(a.predict(loader, verbose=0), a.predict(x, verbose=0))
    history = a.fit(x, y, epochs=1, verbose=0, validation_data=loader)
    assert history.history["val_loss"][0] == pytest.approx(a.evaluate(x, y, verbose=0)[0], rel=1e-5)


def test_a_re_iterable_that_ends_early_or_has_no_length():
    # len() over-counting: "generator raised StopIteration" from fit and predict (Keras warns and
    # goes on); len() failing (a DataLoader over an IterableDataset): a bare TypeError.
    x, y = data()

    class Short:
        def __len__(self):
            return 5  # says 5, gives 3

        def __iter__(self):
            return iter([(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)])

    a, b = model(), model()
    with pytest.warns(RuntimeWarning, match="ran out of batches after 3 of the 5 its len\\(\\) gives"):
        a.fit(Short(), epochs=2, verbose=0)
    b.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict(Short(), verbose=0), a.predict(x, verbose=0))

    class Endless:
        def __len__(self):
            raise TypeError("IterableDataset has no len()")

        def __iter__(self):
            return iter([(x[:32], y[:32])])

    with pytest.raises(TypeError, match="x is an iterable of batches without a length \\(Endless: len\\(\\) fails\\)"):
        a.fit(Endless(), verbose=0)


def test_a_sequence_is_read_as_keras_reads_a_pydataset():
    """Keras 3.15.1 (a PyDataset of 4 batches): with steps_per_epoch=2 the second epoch trains on
    batches 2 and 3 (convforge started every epoch at 0: batches 2 and 3 were never trained on);
    with steps_per_epoch=3 the second epoch ends at batch 3, with a warning; on_epoch_end() (where
    a Sequence reshuffles) runs after every epoch. Validation starts at batch 0 every time."""
    x, y = data()
    read = []

    class Batches:  # keras.utils.Sequence's protocol
        def __len__(self):
            return 4

        def __getitem__(self, i):
            read.append(i)
            return x[24 * i : 24 * i + 24], y[24 * i : 24 * i + 24]

        def on_epoch_end(self):
            read.append("end")

    m = model()
    m.fit(Batches(), steps_per_epoch=2, epochs=3, verbose=0)
    assert read == [0, 0, 1, "end", 2, 3, "end", 0, 1, "end"]  # the first 0: fit's look at the shapes
    twin = model()
    twin.fit(x, y, batch_size=24, epochs=1, shuffle=False, verbose=0)
    twin.fit(x[:48], y[:48], batch_size=24, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    read.clear()
    with pytest.warns(RuntimeWarning, match="ran out of batches \\(it has 4\\): 1 read of steps_per_epoch=3; the next epoch starts"):
        history = model().fit(Batches(), steps_per_epoch=3, epochs=3, verbose=0)
    assert read == [0, 0, 1, 2, "end", 3, "end", 0, 1, 2, "end"] and len(history.history["loss"]) == 3
    read.clear()
    model().fit(x, y, epochs=2, verbose=0, validation_data=Batches(), validation_steps=2)
    assert read == [0, 1, "end", 0, 1, "end"]


def test_an_empty_sequence_is_refused_with_a_message():
    # fit and evaluate raised a bare IndexError (from item 0); as validation_data it gave a
    # val_loss of NaN every epoch.
    x, y = data(16)

    class Empty:
        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

    m = model()
    for call, argument in ((lambda: m.fit(Empty(), verbose=0), "x"), (lambda: m.evaluate(Empty(), verbose=0), "x"),
                           (lambda: m.fit(x, y, verbose=0, validation_data=Empty()), "validation_data")):
        with pytest.raises(ValueError, match=f"the Sequence given as {argument} has no batches"):
            call()
    with pytest.raises(ValueError, match=r"yields no batch \(its len\(\) is 0\)"):
        m.predict(Empty(), verbose=0)


def test_predict_takes_generators_and_sequences_as_keras():
    """Keras 3.15.1's predict takes a generator or a PyDataset (batches of x, or (x, y) tuples);
    convforge made an object array of it: "must hold real numbers", or a Sequence read item by
    item until memory ran out."""
    x, y = data(40)
    m = model()
    expected = m.predict(x, verbose=0)

    class Batches:  # keras.utils.Sequence's protocol
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[16 * i : 16 * i + 16], y[16 * i : 16 * i + 16]

    np.testing.assert_array_equal(m.predict(Batches(), verbose=0), expected)
    np.testing.assert_array_equal(m.predict(Batches(), steps=2, verbose=0), expected[:32])
    np.testing.assert_array_equal(m.predict((x[i : i + 7] for i in range(0, 40, 7)), verbose=0), expected)
    np.testing.assert_array_equal(m.predict(iter([(x[:5],), (x[5:9],)]), steps=1, verbose=0), expected[:5])
    ends = []

    class Outputs(callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            ends.append((batch, logs["outputs"].shape))

    m.predict(Batches(), verbose=0, callbacks=[Outputs()])
    assert ends == [(0, (16, 3)), (1, (16, 3)), (2, (8, 3))]
    with pytest.raises(ValueError, match="yields no batch"):
        m.predict(iter([]), verbose=0)
    inputs = convforge.Input(shape=(6,))
    two = convforge.Model(inputs, [layers.Dense(3, name="a")(inputs), layers.Dense(2, name="b")(inputs)])
    got = two.predict((x[i : i + 16] for i in range(0, 40, 16)), verbose=0)
    for a, b in zip(got, two.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_regularizers_enter_the_loss_and_the_gradient():
    x, y = data(16)
    m = model(kernel_regularizer=regularizers.l2(0.01), bias_regularizer=regularizers.l1(0.02))
    plain = model()
    reg = 0.01 * float((m.layers[0].kernel.astype(np.float64) ** 2).sum()) + 0.02 * float(
        np.abs(m.layers[0].bias).sum()
    )
    assert m.evaluate(x, y, verbose=0)[0] == pytest.approx(plain.evaluate(x, y, verbose=0)[0] + reg, rel=1e-5)
    m.layers[0].params["bias"][...] = np.linspace(-1, 1, 8)  # away from l1's kink at 0
    report = check_model_gradients(m, x.astype(np.float64), y)
    assert report.passed, str(report)


def test_from_logits_warning_once_and_from_logits_models_are_quiet():
    x, y = data(16)
    m = convforge.Sequential([layers.Dense(3, input_shape=(6,))])
    with pytest.warns(UserWarning, match="probably meant loss=SparseCategoricalCrossentropy\\(from_logits=True\\)"):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(x, y, epochs=1, verbose=0)  # once only
        ok = convforge.Sequential([layers.Dense(3, input_shape=(6,))])
        ok.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        ok.fit(x, y, epochs=1, verbose=0)
    binary = convforge.Sequential([layers.Dense(1, input_shape=(6,))])
    with pytest.warns(UserWarning, match="activation=sigmoid"):
        binary.compile(optimizer="sgd", loss="binary_crossentropy")


def test_single_callback_and_compile_arguments():
    m = model()
    history = m.fit(*data(), epochs=3, verbose=0, callbacks=callbacks.EarlyStopping(monitor="loss", patience=0))
    assert len(history.history["loss"]) >= 1
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True, jit_compile=False)
    with pytest.raises(TypeError, match="convforge does not support compile\\(loss_weights=...\\)"):
        m.compile(optimizer="adam", loss="mse", loss_weights=[1.0])
    with pytest.raises(ValueError, match="verbose must be"):
        m.fit(*data(), verbose=3)


def test_a_sequential_nested_in_a_sequential():
    convforge.seed(0)
    block = convforge.Sequential([layers.Dense(8, activation="relu"), layers.Dense(8, activation="relu")])
    outer = convforge.Sequential([convforge.Input((6,)), layers.Dense(8), block, layers.Dense(3, activation="softmax")])
    assert [type(layer).__name__ for layer in outer.layers] == ["Dense", "Sequential", "Dense"]  # as Keras lists it
    assert outer.layers[1] is block and outer.get_layer(block.name) is block
    assert outer.count_params() == 56 + 72 + 72 + 27
    assert [w is v for w, v in zip(outer.weights[2:6], block.weights)] == [True] * 4  # shared, as in Keras
    outer.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    outer.fit(*data(), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="cannot be added to itself"):
        outer.add(outer)


def test_pop_takes_keras_rebuild_argument():
    """Keras 3's ``model.pop(rebuild=True)`` (the guide's "remove the last layer" step) runs; the model
    is rebuilt without the layer whatever rebuild says, and a new head can be added."""
    for rebuild in (True, False):
        m = convforge.Sequential([convforge.Input((6,)), layers.Dense(8), layers.Dense(3)])
        head = m.layers[-1]
        assert m.pop(rebuild=rebuild) is head
        assert len(m.layers) == 1 and m.output_shape == (None, 8) and m.count_params() == 56
        m.add(layers.Dense(2))
        assert m.predict(np.zeros((4, 6), np.float32), verbose=0).shape == (4, 2)
    with pytest.raises(TypeError, match="rebuild must be True or False"):
        m.pop(rebuild="yes")


def test_sequential_takes_keras_trainable_argument():
    """Keras 3's Sequential(layers, trainable=True, name=None): trainable=False freezes the layers given,
    as model.trainable = False does."""
    frozen = convforge.Sequential([convforge.Input((6,)), layers.Dense(8), layers.Dense(3)], trainable=False, name="f")
    assert frozen.trainable is False and frozen.name == "f"
    assert not frozen.trainable_weights and len(frozen.non_trainable_weights) == 4
    assert len(convforge.Sequential([convforge.Input((6,)), layers.Dense(8)], trainable=True).trainable_weights) == 2


def test_model_trainable_freezes_and_unfreezes_every_layer():
    """Keras's ``model.trainable = False``: a frozen base under a new head keeps its weights
    through fit (before or after the stack is made) and counts as non-trainable; True again
    trains it; a frozen whole model trains nothing."""
    convforge.seed(0)
    base = convforge.Sequential([convforge.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(8)])
    assert base.trainable is True
    base.trainable = False
    assert base.trainable is False and all(not layer.trainable for layer in base.layers)
    stacked = convforge.Sequential([base, layers.Dense(3, activation="softmax")])
    stacked.compile(optimizer=convforge.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    assert len(stacked.trainable_weights) == 2 and len(stacked.non_trainable_weights) == 4
    frozen, head = base.get_weights(), stacked.layers[-1].get_weights()
    stacked.fit(*data(), epochs=1, verbose=0)
    for a, b in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head[0], stacked.layers[-1].kernel)
    base.trainable = True  # after the stack is made: the next fit trains the base too
    stacked.fit(*data(), epochs=1, verbose=0)
    assert not np.array_equal(frozen[0], base.layers[0].kernel)
    m = functional_model()
    m.trainable = False
    assert m.trainable_weights == [] and all(not layer.trainable for layer in m.layers)
    before = m.get_weights()
    m.fit(*data(), epochs=1, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="trainable must be True or False; got 0"):
        m.trainable = 0


def _changed(before, model):
    return [not np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights)]


def test_model_trainable_reaches_nested_models_and_gates_the_whole_model_as_keras():
    """The transfer-learning guide's nested freeze: ``model.trainable = False`` sets a nested
    model's ``trainable`` too (its assert ``inner_model.trainable == False`` failed); a frozen
    model trains nothing even after ``inner.trainable = True`` (it trained the inner layers while
    saying trainable False); under a trainable model, a nested model's own flag does not gate a
    layer set trainable again (Keras 3 trains it). Each line checked against Keras 3.15.1."""
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    inner = convforge.Sequential([convforge.Input((3,)), layers.Dense(3, activation="relu"), layers.Dense(3)])
    outer = convforge.Sequential([convforge.Input((3,)), inner, layers.Dense(2)])
    outer.trainable = False
    assert inner.trainable is False and inner.layers[0].trainable is False
    inner.trainable = True
    assert inner.layers[0].trainable is True
    assert outer.trainable_weights == [] and len(outer.non_trainable_weights) == 6
    lines = []
    outer.summary(print_fn=lines.append)
    assert "Trainable params: 0" in "\n".join(lines) and "Non-trainable params: 32" in "\n".join(lines)
    outer.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in outer.weights]
    outer.fit(x, y, epochs=1, verbose=0)
    assert _changed(before, outer) == [False] * 6
    outer.trainable = True  # every layer, the nested model's included
    assert inner.trainable is True and len(outer.trainable_weights) == 6

    base = convforge.Sequential([convforge.Input((3,)), layers.Dense(3)])
    inputs = convforge.Input((3,))
    m = convforge.Model(inputs, layers.Dense(2)(base(inputs, training=False)))
    m.compile(optimizer="sgd", loss="mse")
    m.trainable = False
    assert base.trainable is False
    base.trainable = True
    before = [w.copy() for w in m.weights]
    m.fit(x, y, epochs=1, verbose=0)
    assert _changed(before, m) == [False] * 4 and m.trainable_weights == []
    m.trainable = True
    base.trainable = False
    base.layers[0].trainable = True  # Keras 3: the layer's own flag decides under a trainable model
    before = [w.copy() for w in m.weights]
    m.fit(x, y, epochs=1, verbose=0)
    assert _changed(before, m) == [True] * 4 and len(m.trainable_weights) == 4


def test_a_frozen_model_stays_frozen_through_save_and_load(tmp_path):
    """The model's own ``trainable`` is in its description (Keras's config has it): a frozen model
    whose layers were set trainable again loads frozen; older files (no entry) load trainable."""
    model = convforge.Sequential([convforge.Input((3,)), layers.Dense(3), layers.Dense(2)])
    model.trainable = False
    model.layers[0].trainable = True
    assert model.get_config()["trainable"] is False
    model.save(tmp_path / "m.npz")
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert loaded.trainable is False and loaded.layers[0].trainable is True and loaded.trainable_weights == []
    inputs = convforge.Input((3,))
    graph = convforge.Model(inputs, layers.Dense(2)(inputs))
    graph.trainable = False
    again = convforge.Model.from_config(graph.get_config())
    assert again.trainable is False and again.trainable_weights == []
    config = graph.get_config()
    del config["trainable"]
    assert convforge.Model.from_config(config).trainable is True
    config["trainable"] = "no"
    with pytest.raises(ValueError, match="'trainable' must be true or false; got 'no'"):
        convforge.Model.from_config(config)


def test_a_model_called_on_tensors_is_its_layers_in_the_new_graph():
    """Keras's nested models (transfer learning): ``base(x)`` in a graph calls the base's layers
    on x, shared; a frozen base stays as it is through fit, BatchNormalization included, and the
    new model saves and loads; training=False is accepted where it changes nothing."""
    convforge.seed(0)
    base_in = convforge.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, activation="relu")(base_in)
    h = layers.BatchNormalization()(h)
    base = convforge.Model(base_in, layers.GlobalAveragePooling2D()(h))
    stem = convforge.Sequential([convforge.Input((8, 8, 1)), layers.Conv2D(2, 1)])
    inputs = convforge.Input((8, 8, 1))
    # Dropout in a training=False call passes its input through in fit too, as in Keras (it was refused).
    dropped = convforge.Model(base_in, layers.Dropout(0.5)(base.outputs[0]))
    head = convforge.Model(inputs, layers.Dense(3)(dropped(inputs, training=False)))
    head.compile(optimizer="sgd", loss="mse")
    xd = np.random.default_rng(3).standard_normal((6, 8, 8, 1)).astype(np.float32)
    yd = np.zeros((6, 3), np.float32)
    loss_a, _ = head.loss_and_gradients(xd, yd)
    loss_b, _ = head.loss_and_gradients(xd, yd)
    assert loss_a == loss_b == pytest.approx(head.evaluate(xd, yd, verbose=0), rel=1e-6)  # no dropout mask
    trained = convforge.Model(inputs, base(inputs))  # not frozen, no training flag: trains with the new model
    assert len(trained.layers) == 2 and trained.layers[1] is base  # one entry, as in Keras
    base.trainable = False
    with pytest.raises(ValueError, match=r"input 0 has shape \(None, 8, 8, 1\); the tensor it was called on has"):
        base(stem(inputs))  # (None, 8, 8, 2)
    features = base(inputs, training=False)
    model = convforge.Model(inputs, layers.Dense(3, activation="softmax")(features))
    assert model.layers[1] is base and len(model.layers) == 3  # Input, base, Dense: Keras's list
    assert model.get_layer(base.name) is base and model.get_layer(index=1) is base
    assert model.get_layer(base.layers[1].name) is base.layers[1]  # a layer inside it too (Keras: not found)
    with pytest.raises(ValueError, match="no layer named 'nothing'"):
        model.get_layer("nothing")
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype(np.float32)
    y = np.arange(16) % 3
    np.testing.assert_array_equal(convforge.Model(inputs, features).predict(x, verbose=0), base.predict(x, verbose=0))
    model.compile(optimizer=convforge.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    frozen = base.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(frozen, base.get_weights()):  # moving statistics included
        np.testing.assert_array_equal(a, b)
    again = convforge.models.clone_model(model)
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in model.layers]
    assert model.predict(x, verbose=0).shape == (16, 3)
    with pytest.raises(NotImplementedError, match="training=True"):
        base(inputs, training=True)


def test_fine_tuning_keeps_a_batch_norm_called_with_training_false_in_inference_mode(tmp_path):
    """Keras's fine-tuning step (base(x, training=False) frozen, then base.trainable = True) keeps the
    base's BatchNormalization in inference mode: normalised by its moving statistics, which stay,
    while gamma and beta learn. convforge first switched it to batch statistics without a word,
    then refused to train it; it now trains it as Keras does, saved and loaded too, with the
    gradients of gamma, beta and the layers before it checked against central differences."""
    convforge.seed(1)
    base_in = convforge.Input((8, 8, 1))
    h = layers.Conv2D(4, 3)(base_in)
    h = layers.ReLU()(layers.BatchNormalization(name="ft_bn")(h))  # BN -> ReLU: the fused training path
    base = convforge.Model(base_in, layers.GlobalAveragePooling2D()(h), name="ft_base")
    bn = base.get_layer("ft_bn")
    rng = np.random.default_rng(1)
    bn.params["moving_mean"][...] = rng.uniform(-0.5, 0.5, 4)
    bn.params["moving_variance"][...] = rng.uniform(0.5, 2.0, 4)
    base.trainable = False
    inputs = convforge.Input((8, 8, 1))
    model = convforge.Model(inputs, layers.Dense(2)(base(inputs, training=False)))
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((8, 8, 8, 1)).astype(np.float32)
    y = np.ones((8, 2), np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "ft.npz")
    base.trainable = True
    moving = [bn.params[k].copy() for k in ("moving_mean", "moving_variance")]
    gamma, beta = bn.params["gamma"].copy(), bn.params["beta"].copy()
    model.fit(x, y, epochs=2, verbose=0)
    for before, k in zip(moving, ("moving_mean", "moving_variance")):
        np.testing.assert_array_equal(bn.params[k], before)  # inference mode: the statistics stay
    assert not np.array_equal(bn.params["gamma"], gamma) and not np.array_equal(bn.params["beta"], beta)
    # The training forward is the inference forward (the moving statistics), so the loss fit
    # minimises is the one evaluate reports.
    loss, _ = model.loss_and_gradients(x, y)
    np.testing.assert_allclose(loss, model.evaluate(x, y, verbose=0), rtol=1e-5)
    # Saved and loaded, the call keeps its mode.
    loaded = convforge.load_model(tmp_path / "ft.npz")
    for layer in loaded.layers:
        layer.trainable = True
    assert [type(layer).__name__ for layer in loaded.layers] == ["InputLayer", "Functional", "Dense"]
    loaded_bn = loaded.get_layer("ft_base").get_layer("ft_bn")
    kept = loaded_bn.params["moving_mean"].copy()
    loaded.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded_bn.params["moving_mean"], kept)
    # Called without training=False, the base's BatchNormalization trains on batch statistics.
    free = convforge.Model(inputs, layers.Dense(2)(base(inputs)))
    free.compile(optimizer="sgd", loss="mse")
    free.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(bn.params["moving_mean"], moving[0])
    # Gradients in float64 against central differences: gamma, beta, the conv and the head (last:
    # astype converts the layers the models share).
    model64 = model.astype("float64")
    report = gradcheck.check_model_gradients(model64, x.astype(np.float64), y.astype(np.float64), num_coords=4)
    assert report.passed, report
    assert {"ft_bn/gamma", "ft_bn/beta"} <= {r.key for r in report.results}, [r.key for r in report.results]


def test_a_training_false_call_with_dropout_and_augmentation_trains_in_inference_mode():
    """Dropout and the augmentation layers of a ``base(x, training=False)`` call are the identity in
    fit too, forward and backward (Keras's inference mode); the gradients in float64 against
    central differences (the BatchNormalization of the call on its moving statistics)."""
    convforge.seed(4)
    base_in = convforge.Input((6, 6, 2), dtype="float64")
    h = layers.RandomFlip("horizontal")(base_in)
    h = layers.Conv2D(3, 3, padding="same")(h)
    h = layers.Dropout(0.5)(layers.BatchNormalization()(h))
    base = convforge.Model(base_in, layers.GlobalAveragePooling2D()(h))
    inputs = convforge.Input((6, 6, 2), dtype="float64")
    model = convforge.Model(inputs, layers.Dense(2)(base(inputs, training=False)))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((5, 2))
    report = gradcheck.check_model_gradients(model, x, y, num_coords=4)
    assert report.passed, report
    loss, _ = model.loss_and_gradients(x, y)
    assert loss == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)


# ---------------------------------------------------------------- the same API on functional models


def functional_model(**dense):
    """model()'s network as a functional Model: the same weights (same seed, same layer order)."""
    convforge.seed(0)
    inputs = convforge.Input(shape=(6,))
    hidden = layers.Dense(8, activation="relu", **dense)(inputs)
    m = convforge.Model(inputs, layers.Dense(3, activation="softmax")(hidden))
    m.compile(optimizer=convforge.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_functional_models_train_as_the_sequential_one_with_every_keras_feature():
    x, y = data()
    reg = {"kernel_regularizer": regularizers.l2(0.01)}
    seq, fun = model(**reg), functional_model(**reg)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    w = np.linspace(0.0, 2.0, 32)
    assert fun.train_on_batch(x[:32], y[:32], sample_weight=w) == seq.train_on_batch(x[:32], y[:32], sample_weight=w)
    assert fun.test_on_batch(x[32:64], y[32:64], return_dict=True) == seq.test_on_batch(
        x[32:64], y[32:64], return_dict=True
    )
    fun.reset_metrics()
    assert np.isnan(fun.compiled_metrics[0].result())
    np.testing.assert_array_equal(fun.predict_on_batch(x[:5]), seq.predict_on_batch(x[:5]))
    cw = {0: 0.5, 1: 2.0}
    fit = {"epochs": 2, "batch_size": 16, "verbose": 0, "shuffle": False, "class_weight": cw, "sample_weight": np.ones(96)}
    hs = seq.fit(x, y, **fit)
    hf = fun.fit(x, y, **fit)
    assert hf.history == hs.history

    def forever():
        while True:
            for i in range(0, 96, 32):
                yield x[i : i + 32], y[i : i + 32], np.full(32, 0.5)

    assert fun.fit(forever(), steps_per_epoch=3, verbose=0).history == seq.fit(
        forever(), steps_per_epoch=3, verbose=0
    ).history
    assert fun.evaluate(forever(), steps=3, verbose=0) == seq.evaluate(forever(), steps=3, verbose=0)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(fun.weights) == 4 and fun.weights[0] is fun.layers[1].kernel
    fun.layers[1].trainable = False
    assert len(fun.trainable_weights) == 2 and len(fun.non_trainable_weights) == 2
    # The regularizer's penalty is in the functional model's loss and gradient too.
    report = check_model_gradients(functional_model(**reg), x[:16].astype(np.float64), y[:16])
    assert report.passed, str(report)


def test_functional_json_clone_and_several_outputs():
    m = functional_model()
    again = convforge.models.model_from_json(m.to_json())
    assert type(again).__name__ == "Functional" and again.count_params() == m.count_params()
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in m.layers]
    clone = convforge.models.clone_model(m)
    assert type(clone).__name__ == "Functional" and clone.count_params() == m.count_params()
    # Keras's other arguments: a NotImplementedError with the way round, not Python's "unexpected
    # keyword argument"; recursive changes nothing (a nested model's layers are cloned anyway).
    assert convforge.models.clone_model(m, recursive=True).count_params() == m.count_params()
    with pytest.raises(NotImplementedError, match=r"input_tensors is not supported.*clone\(new_inputs\)"):
        convforge.models.clone_model(m, input_tensors=[convforge.Input((6,))])
    with pytest.raises(NotImplementedError, match="clone_function is not supported"):
        convforge.models.clone_model(m, clone_function=lambda layer: layer)
    with pytest.raises(TypeError, match="recursive must be True or False"):
        convforge.models.clone_model(m, recursive="yes")
    x, y = data(32)
    inputs = convforge.Input(shape=(6,))
    a = layers.Dense(3, activation="softmax", name="a")(inputs)
    b = layers.Dense(2, activation="softmax", name="b")(inputs)
    two = convforge.Model(inputs, [a, b])
    two.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    # A list of one output predicts one array, as in Keras (Model(x, [y]).predict(x).argmax(1) works).
    one = convforge.Model([inputs], [a])
    assert isinstance(one.predict(x, verbose=0), np.ndarray) and one.predict(x, verbose=0).shape == (32, 3)
    assert isinstance(one(x), np.ndarray)
    logs = two.train_on_batch(x, [y, y % 2], return_dict=True)
    assert set(logs) == {"loss", "a_loss", "b_loss"}
    assert logs["loss"] == pytest.approx(logs["a_loss"] + logs["b_loss"], rel=1e-6)
    # A second call's per-output losses are its batch's too (reset first, as Keras 3), so they
    # still add up to its loss.
    logs = two.train_on_batch(x[:8], [y[:8], y[:8] % 2], return_dict=True)
    assert logs["loss"] == pytest.approx(logs["a_loss"] + logs["b_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="class_weight is for a model with one output; this one has 2"):
        two.fit(x, [y, y % 2], class_weight={0: 2.0}, verbose=0)
    # One sample weight per sample weights every output's loss.
    half = two.test_on_batch(x, {"a": y, "b": y % 2}, sample_weight=np.full(32, 0.5))
    full = two.test_on_batch(x, {"a": y, "b": y % 2})
    assert half[0] == pytest.approx(full[0] / 2, rel=1e-6)


def test_logged_metric_values_are_python_floats_as_keras():
    # Keras 3.15.1's history, evaluate and *_on_batch hold Python floats; accuracy's NumPy scalar
    # made print(history.history) show [np.float64(0.6), ...] (and evaluate return them).
    x, y = data(40)
    b = (y > 0).astype(np.int64)
    for m, targets, metrics in (
        (model(), y, ["accuracy", "sparse_categorical_accuracy", lambda t, p: np.mean(p, axis=1)]),
        (convforge.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(6,))]), b,
         ["accuracy", "precision", "recall", "auc"]),
    ):
        m.compile(optimizer="sgd", loss=m.loss or "binary_crossentropy", metrics=metrics)
        history = m.fit(x, targets, epochs=1, batch_size=16, verbose=0, validation_split=0.25)
        values = [v for lst in history.history.values() for v in lst]
        values += list(m.evaluate(x, targets, verbose=0, return_dict=True).values())
        values += m.train_on_batch(x, targets) + m.test_on_batch(x, targets)
        assert len(values) == 5 * (1 + len(metrics))
        assert all(type(v) is float for v in values), [type(v) for v in values]


def test_steps_with_arrays_takes_the_first_batches_as_keras():
    # Keras 3.15.1: predict(x of 20, steps=2, batch_size=4) gives 8 rows; steps past the data, all
    # of them; evaluate(steps=2, batch_size=4) equals evaluate of the first 8 samples.
    m = model()
    x, y = data(20)
    full = m.predict(x, verbose=0)
    np.testing.assert_array_equal(m.predict(x, steps=2, batch_size=4, verbose=0), full[:8])
    np.testing.assert_array_equal(m.predict(x, steps=10, batch_size=4, verbose=0), full)
    w = np.linspace(0.5, 2.0, 20)
    assert m.evaluate(x, y, steps=2, batch_size=4, sample_weight=w, verbose=0) == m.evaluate(
        x[:8], y[:8], batch_size=4, sample_weight=w[:8], verbose=0)
    with pytest.raises(ValueError, match="steps"):
        m.predict(x, steps=0, verbose=0)
    two = convforge.Model(*(lambda i: (i, [layers.Dense(2, name="p")(i), layers.Dense(3, name="q")(i)]))(
        convforge.Input(shape=(6,), name="features")))
    out = two.predict({"features": x}, steps=1, batch_size=5, verbose=0)
    assert [o.shape for o in out] == [(5, 2), (5, 3)]
    np.testing.assert_array_equal(out[0], two.predict(x, verbose=0)[0][:5])


def test_model_from_config_rebuilds_a_graph_as_keras():
    """The Keras idiom ``keras.Model.from_config(model.get_config())`` (convforge.Model is the base class
    both model kinds share): a graph's description gives a Functional model, a Sequential's is refused
    with the class to use."""
    m = functional_model()
    again = convforge.Model.from_config(m.get_config())
    assert type(again).__name__ == "Functional" and again.count_params() == m.count_params()
    again.set_weights(m.get_weights())
    x, _ = data(8)
    np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))
    with pytest.raises(ValueError, match="Sequential.from_config"):
        convforge.Model.from_config(model().get_config())


def test_a_malformed_model_config_is_a_value_error_naming_the_entry():
    """from_config, model_from_json and clone_model take descriptions a user may have edited: a wrong
    one is a ValueError that says which entry is wrong, not the KeyError, IndexError or TypeError
    (or a silent acceptance) the replay of the graph met."""
    x = convforge.Input((4,), name="mc_in")
    h = layers.Dense(3, name="mc_h")(x)
    m = convforge.Model(x, layers.Add(name="mc_add")([h, h]))
    good = json.loads(m.to_json())

    def edited(change):
        description = copy.deepcopy(good)
        change(description["config"])
        return json.dumps(description)

    cases = [
        (lambda c: c["nodes"][0].__setitem__(0, 99), r"node 0 must be \[layer index below 3"),
        (lambda c: c["nodes"][0].__setitem__(2, "yes"), r"node 0 must be .*many \(bool\)"),
        (lambda c: c["nodes"].__setitem__(0, 5), r"node 0 must be"),
        (lambda c: c["nodes"][0].__setitem__(1, [["zz", 0, 0]]), r"node 0 refers to \['zz', 0, 0\].*no input layer"),
        (lambda c: c.__setitem__("outputs", [["mc_h", 5, 0]]), r"an output refers to \['mc_h', 5, 0\]"),
        (lambda c: c.__setitem__("outputs", []), r"must have an 'outputs' list"),
        (lambda c: c.pop("nodes"), r"must have a 'nodes' list; got None"),
        (lambda c: c.__setitem__("layers", 5), r"must have a 'layers' list; got 5"),
        (lambda c: c["layers"].__setitem__(1, "x"), r"layer entry 1 must be a dict with a 'class_name'"),
        (lambda c: c.__setitem__("inference_nodes", [True]), r"inference_nodes must be a list of node positions"),
        (lambda c: c.__setitem__("inference_nodes", [7]), r"inference_nodes must be a list of node positions"),
        (lambda c: c.__setitem__("output_models", ["a/b"]), r"name must be a string without '/'"),
        (lambda c: c.__setitem__("output_models", [None, None]), r"output_models must be a list of 1 names"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            convforge.models.model_from_json(edited(change))
    with pytest.raises(ValueError, match="must be a dict"):
        convforge.models.model_from_json('{"convforge": true, "class_name": "Functional", "config": 5}')
    sequential = model().get_config()
    sequential["layers"][0] = ["Dense"]
    with pytest.raises(ValueError, match="layer entry 0 must be a dict"):
        convforge.Sequential.from_config(sequential)


def test_functional_from_logits_warning_and_compile_arguments():
    inputs = convforge.Input(shape=(6,))
    m = convforge.Model(inputs, layers.Dense(3)(inputs))
    with pytest.warns(UserWarning, match="probably meant loss=SparseCategoricalCrossentropy\\(from_logits=True\\)"):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(*data(16), epochs=1, verbose=0)  # once per compile
        m.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    with pytest.raises(TypeError, match="unexpected argument 'bogus'"):
        m.compile(optimizer="adam", loss="mse", bogus=1)


def test_depthwise_and_separable_regularizers_enter_the_loss_gradient_and_config():
    convforge.seed(3)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 7, 7, 2)), rng.integers(0, 2, 6)
    stack = [
        layers.DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer=regularizers.l2(0.05),
                               bias_regularizer=regularizers.l1(0.01), input_shape=(7, 7, 2)),
        layers.SeparableConv2D(3, 3, pointwise_regularizer=regularizers.l1_l2(0.01, 0.02)),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2, activation="softmax"),
    ]
    m = convforge.Sequential(stack, dtype="float64")
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    plain = convforge.Sequential.from_config(m.get_config())
    assert plain.layers[0].depthwise_regularizer.get_config() == m.layers[0].depthwise_regularizer.get_config()
    dw, sep = m.layers[0], m.layers[1]
    dw.params["bias"][...] = np.linspace(-1, 1, 4)  # away from l1's kink at 0
    pw = sep.params["pointwise_kernel"]
    penalty = 0.05 * (dw.kernel ** 2).sum() + 0.01 * np.abs(dw.params["bias"]).sum() + (
        0.01 * np.abs(pw).sum() + 0.02 * (pw ** 2).sum()
    )
    assert sum(layer.regularization_penalty() for layer in m.layers) == pytest.approx(penalty, rel=1e-12)
    unregularized = convforge.Sequential(
        [layers.DepthwiseConv2D(3, depth_multiplier=2, input_shape=(7, 7, 2)), layers.SeparableConv2D(3, 3),
         layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax")], dtype="float64")
    unregularized.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    unregularized.set_weights(m.get_weights())
    assert m.evaluate(x, y, verbose=0) == pytest.approx(unregularized.evaluate(x, y, verbose=0) + penalty, rel=1e-10)
    report = check_model_gradients(m, x, y)
    assert report.passed, str(report)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_image_targets_are_channels_last_like_the_outputs(kind):
    """An autoencoder's or a segmentation net's targets are images shaped as predict's outputs."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    y = rng.random((6, 8, 8, 3)).astype(np.float32)
    if kind == "sequential":
        model = convforge.Sequential([layers.InputLayer((8, 8, 1)), layers.Conv2D(3, 3, padding="same")])
    else:
        inputs = convforge.Input((8, 8, 1))
        model = convforge.Model(inputs, layers.Conv2D(3, 3, padding="same")(inputs))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), np.mean((model.predict(x, verbose=0) - y) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match=r"targets of shape \(6, 3, 8, 8\) do not match the model output \(batch, 8, 8, 3\)"):
        model.fit(x, y.transpose(0, 3, 1, 2), verbose=0)


def test_fit_and_evaluate_take_their_arguments_in_keras_order():
    """Keras 3.15.1's order: fit(..., shuffle, class_weight, sample_weight, initial_epoch,
    steps_per_epoch, validation_steps, validation_batch_size, ...) and evaluate(..., steps,
    callbacks, return_dict). convforge had initial_epoch after shuffle and return_dict before
    callbacks, so a positional class_weight became initial_epoch (an error) and evaluate's
    positional callbacks became return_dict (a dict came back, no hook ran)."""
    import inspect

    fit = list(inspect.signature(convforge.Sequential.fit).parameters)[1:]
    assert fit == ["x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split", "validation_data",
                   "shuffle", "class_weight", "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
                   "validation_batch_size", "resume_from"]
    evaluate = list(inspect.signature(convforge.Sequential.evaluate).parameters)[1:]
    assert evaluate == ["x", "y", "batch_size", "verbose", "sample_weight", "steps", "callbacks", "return_dict"]
    x, y = data(32)
    a, b = model(), model()
    a.fit(x, y, 16, 1, 0, None, 0.0, None, False, {0: 2.0})
    b.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, class_weight={0: 2.0})
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    ends = []

    class Ends(callbacks.Callback):
        def on_test_end(self, logs=None):
            ends.append(logs)

    logs = a.evaluate(x, y, 32, 0, None, None, [Ends()])
    assert isinstance(logs, list) and len(ends) == 1


class _RecordingLoss(losses.Loss):
    """MSE that records the targets of each batch it is given (the batches fit trains on)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        self.seen.append([int(v) for v in np.asarray(y_true).reshape(-1)])
        d = y_pred - y_true
        return float(np.mean(d ** 2)), (2 * d / d.size if need_grad else None)


def test_steps_per_epoch_with_arrays_goes_on_where_the_last_epoch_stopped():
    """The callbacks guide's fit(x, y, steps_per_epoch=5) was refused ("steps_per_epoch is for
    generators"). As Keras 3.15.1 (each batch sequence below is what it trained on, recorded with a
    loss of its own on 10 samples in batches of 3, shuffle=False): an epoch takes the next
    steps_per_epoch batches of the pass over the data, ends at the pass's last batch, and the next
    pass starts again at batch 0 (more steps than batches: a warning, epochs of all of them)."""
    x = np.arange(10, dtype=np.float32)[:, None]
    keras_batches = {
        2: [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], [0, 1, 2], [3, 4, 5]],
        3: [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], [0, 1, 2], [3, 4, 5], [6, 7, 8]],
        6: [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] * 3,
    }
    for steps, want in keras_batches.items():
        loss = _RecordingLoss()
        model = convforge.Sequential([convforge.Input((1,)), layers.Dense(1)])
        model.compile("sgd", loss)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(x, x, batch_size=3, epochs=3, steps_per_epoch=steps, shuffle=False, verbose=0)
        assert loss.seen == want and len(history.history["loss"]) == 3
        assert [str(w.message) for w in caught if "steps_per_epoch" in str(w.message)] == (
            ["fit: steps_per_epoch=6 is more than the 4 batches of x: each epoch ends at the data's last batch "
             "(4 steps), as Keras's"] if steps == 6 else [])
    loss = _RecordingLoss()
    model = convforge.Sequential([convforge.Input((1,)), layers.Dense(1)])
    model.compile("sgd", loss)
    model.fit(x, x, batch_size=3, epochs=2, steps_per_epoch=2, verbose=0)  # shuffled: one pass over two epochs
    assert sorted(v for batch in loss.seen for v in batch) == list(range(10)) and loss.seen != keras_batches[2][:4]
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        model.fit(x, x, steps_per_epoch=0, verbose=0)
    with pytest.raises(NotImplementedError, match="resume_from with arrays and steps_per_epoch is not supported"):
        model.fit(x, x, steps_per_epoch=2, resume_from="nothing.npz", verbose=0)
