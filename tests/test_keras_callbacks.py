"""CSVLogger and ReduceLROnPlateau inside fit."""

import csv
import json
import re

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


def test_csv_logger_writes_a_per_class_metric_as_one_list_cell(tmp_path):
    """F1Score() logs 12 values: NumPy's str() wrote them without commas over two lines."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((48, 3)), np.eye(12)[rng.integers(0, 12, 48)]
    convforge.seed(0)
    model = convforge.Sequential([layers.Dense(12, activation="softmax", input_shape=(3,))])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[convforge.metrics.F1Score()])
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "f1_score", "loss"] and len(rows) == 2
    cell = rows[1][1]
    assert re.fullmatch(r"\[[^\n]*\]", cell) and cell.count(",") == 11
    np.testing.assert_allclose(json.loads(cell), model.history.history["f1_score"][0])


@pytest.mark.parametrize("make", [lambda: callbacks.EarlyStopping("f1_score"),
                                  lambda: callbacks.ReduceLROnPlateau("f1_score"),
                                  lambda: callbacks.ModelCheckpoint("best.npz", "f1_score", save_best_only=True)])
def test_monitoring_a_per_class_metric_says_to_average_it(make, tmp_path, monkeypatch):
    """F1Score()'s value is an array: comparing it with the best so far failed inside the callback."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((24, 3)), np.eye(3)[rng.integers(0, 3, 24)]
    convforge.seed(0)
    model = convforge.Sequential([layers.Dense(3, activation="softmax", input_shape=(3,))])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[convforge.metrics.F1Score()])
    with pytest.raises(ValueError, match=r"monitors 'f1_score', which holds 3 values .* F1Score\(average='macro'\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[make()])
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=[convforge.metrics.F1Score(average="macro")])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[make()])


def test_reduce_lr_on_plateau_lowers_the_rate_in_fit():
    model = tiny_model()
    # Epoch 0 sets the first best; with min_delta=10 no later epoch improves: halve after each.
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    history = model.fit(*data(), epochs=4, verbose=0, callbacks=[cb])
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025, 0.0125])  # the rate used
    assert model.optimizer.learning_rate == pytest.approx(0.00625)


def test_auto_mode_follows_the_monitored_metric_as_keras_3(tmp_path):
    """mode='auto' (the default) maximises what the model's metric says goes up, as Keras 3's
    EarlyStopping, ModelCheckpoint and ReduceLROnPlateau do: AUC, precision, recall (under any name,
    for each output) as well as accuracies; losses and errors are minimised. Monitoring val_auc used
    to stop training as soon as the AUC improved, and restore the worst epoch."""
    convforge.seed(0)
    inputs = convforge.Input((3,))
    hidden = layers.Dense(4, activation="relu")(inputs)
    model = convforge.Model(inputs, [layers.Dense(1, activation="sigmoid", name="p")(hidden),
                                     layers.Dense(2, name="r")(hidden)])
    model.compile("sgd", ["binary_crossentropy", "mse"],
                  metrics=[[convforge.metrics.AUC(name="prc", curve="PR"), "precision"], ["mae"]])
    cases = {"val_p_prc": "max", "p_precision": "max", "val_r_mae": "min", "val_p_loss": "min", "loss": "min",
             "val_unknown": "min", "val_acc_made_up": "max"}
    for monitor, mode in cases.items():
        made = [callbacks.EarlyStopping(monitor=monitor), callbacks.ReduceLROnPlateau(monitor=monitor),
                callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor=monitor, save_best_only=True)]
        for cb in made:
            cb.set_model(model)
            cb.on_train_begin()
            assert (cb.mode, cb.best) == (mode, -np.inf if mode == "max" else np.inf), (type(cb).__name__, monitor)
    explicit = callbacks.EarlyStopping(monitor="val_p_prc", mode="min")
    explicit.set_model(model)
    explicit.on_train_begin()
    assert explicit.mode == "min"
    # In fit: an AUC that rises every epoch never stops training.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 3))
    single = convforge.Sequential([convforge.Input((3,)), layers.Dense(1, activation="sigmoid")])
    single.compile(convforge.optimizers.SGD(0.5), "binary_crossentropy", metrics=[convforge.metrics.AUC()])
    stop = callbacks.EarlyStopping(monitor="auc", patience=0)
    history = single.fit(x, (x[:, 0] > 0).astype(float), epochs=4, batch_size=64, verbose=0, callbacks=[stop])
    assert np.all(np.diff(history.history["auc"]) > 0) and len(history.history["auc"]) == 4


def test_reduce_lr_on_plateau_checks_its_arguments():
    with pytest.raises(ValueError, match="factor must be a number in"):
        callbacks.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="mode must be"):
        callbacks.ReduceLROnPlateau(mode="up")


@pytest.mark.parametrize("make, message", [
    (lambda: callbacks.ReduceLROnPlateau(patience=-1), "ReduceLROnPlateau patience must be an int >= 0; got -1"),
    (lambda: callbacks.ReduceLROnPlateau(patience=1.5), "ReduceLROnPlateau patience must be an int >= 0; got 1.5"),
    (lambda: callbacks.ReduceLROnPlateau(cooldown=-2), "ReduceLROnPlateau cooldown must be an int >= 0; got -2"),
    (lambda: callbacks.ReduceLROnPlateau(min_lr=-1), "ReduceLROnPlateau min_lr must be a finite number >= 0; got -1"),
    (lambda: callbacks.ReduceLROnPlateau(min_delta="x"), "ReduceLROnPlateau min_delta must be a finite number"),
    (lambda: callbacks.EarlyStopping(start_from_epoch=-1), "EarlyStopping start_from_epoch must be an int >= 0"),
    (lambda: callbacks.EarlyStopping(baseline="0.5"), "EarlyStopping baseline must be a finite number; got '0.5'"),
    (lambda: callbacks.EarlyStopping(min_delta=float("nan")), "EarlyStopping min_delta must be a finite number"),
    (lambda: callbacks.EarlyStopping(monitor=None), "EarlyStopping monitor must be the name of a log"),
    (lambda: callbacks.ModelCheckpoint("a.npz", monitor=["val_loss"]), "ModelCheckpoint monitor must be the name"),
    (lambda: callbacks.CSVLogger("log.csv", separator=""), "CSVLogger separator must be one character"),
])
def test_callbacks_check_their_arguments_when_made(make, message):
    # They were taken as they came (int(1.5) made a patience of 1, a negative one counted as 0) and
    # failed, if at all, at the end of the first epoch, with an error naming no argument.
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_callbacks_take_numpy_numbers():
    stop = callbacks.EarlyStopping(patience=np.int64(2), baseline=np.float32(0.5), start_from_epoch=np.int32(1))
    assert (stop.patience, stop.baseline, stop.start_from_epoch) == (2, 0.5, 1)


class _Hooks(callbacks.Callback):
    """Records every hook Keras's Callback has, in order (batch hooks with their batch index)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _note(name):
        def hook(self, *args):
            self.seen.append(name if len(args) < 2 else (name, args[0]))
        return hook

    on_batch_end = _note("on_batch_end")  # Keras's old name: on_train_batch_end calls it
    on_test_begin = _note("on_test_begin")
    on_test_end = _note("on_test_end")
    on_test_batch_begin = _note("on_test_batch_begin")
    on_test_batch_end = _note("on_test_batch_end")
    on_predict_begin = _note("on_predict_begin")
    on_predict_end = _note("on_predict_end")
    on_predict_batch_begin = _note("on_predict_batch_begin")
    on_predict_batch_end = _note("on_predict_batch_end")


def test_evaluation_and_prediction_hooks_fire_as_in_keras():
    x, y = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32), np.arange(20) % 2
    m = convforge.Sequential([convforge.Input((4,)), layers.Dense(2, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = _Hooks()
    m.fit(x, y, epochs=1, batch_size=10, validation_split=0.5, callbacks=[h], verbose=0)
    assert h.seen == [("on_batch_end", 0), "on_test_begin", ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                      "on_test_end"]
    h = _Hooks()
    logs = {}
    h.on_test_end = lambda logs_=None: logs.update(logs_)
    m.evaluate(x, y, batch_size=8, callbacks=h, verbose=0)
    assert h.seen == ["on_test_begin", *[(hook, b) for b in range(3) for hook in ("on_test_batch_begin",
                                                                                  "on_test_batch_end")]]
    assert set(logs) == {"loss", "accuracy"}
    h = _Hooks()
    outputs = []
    h.on_predict_batch_end = lambda batch, logs_=None: outputs.append(logs_["outputs"])
    out = m.predict(x, batch_size=8, callbacks=[h], verbose=0)
    assert h.seen == ["on_predict_begin", ("on_predict_batch_begin", 0), ("on_predict_batch_begin", 1),
                      ("on_predict_batch_begin", 2), "on_predict_end"]
    np.testing.assert_array_equal(np.concatenate(outputs), out)
    np.testing.assert_array_equal(out, m.predict(x, verbose=0))
    with pytest.raises(TypeError, match="callbacks must be convforge.callbacks.Callback instances"):
        m.evaluate(x, y, callbacks=[print], verbose=0)


def test_learning_rate_assign_in_a_callback_as_keras_3():
    """Keras 3 callbacks write ``self.model.optimizer.learning_rate.assign(lr)``: the float
    learning rate reads as a LearningRate with ``assign`` and ``numpy``."""

    class Freeze(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate.assign(0.0 if epoch == 1 else 0.05)

    model = tiny_model()
    x, y = data()
    rate = model.optimizer.learning_rate
    assert isinstance(rate, convforge.optimizers.LearningRate) and rate == 0.05 and rate.numpy() == 0.05
    weights = []

    class Keep(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights.append(self.model.get_weights())

    model.fit(x, y, epochs=2, callbacks=[Freeze(), Keep()], verbose=0)
    assert model.optimizer.learning_rate == 0.0 and type(model.optimizer.current_learning_rate()) is float
    for a, b in zip(*weights):  # the second epoch ran at rate 0
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="learning_rate"):
        rate.assign(-1.0)


@pytest.mark.parametrize(
    "monitor,mode",
    [("val_loss", "min"), ("val_accuracy", "max"), ("val_auc", "max"), ("precision", "max"), ("val_recall", "max"),
     ("val_sparse_top_k_categorical_accuracy", "max"), ("val_mae", "min"), ("mse", "min")],
)
def test_auto_mode_follows_keras_metric_direction(monitor, mode):
    """Keras 3's mode='auto' maximises AUC, precision and recall (direction 'up'), not only accuracies."""
    assert callbacks.EarlyStopping(monitor=monitor).mode == mode
    assert callbacks.ModelCheckpoint("m.npz", monitor=monitor).mode == mode
    assert callbacks.ReduceLROnPlateau(monitor=monitor).mode == mode


def _graph_model():
    convforge.seed(0)
    inp = convforge.Input((3,))
    out_a = layers.Dense(2, name="a")(inp)
    out_b = layers.Dense(2, name="b")(inp)
    model = convforge.Model(inp, [out_a, out_b])
    model.compile(optimizer=convforge.optimizers.SGD(0.05), loss=["mse", "mse"], metrics=[["mae"], ["mae"]])
    return model


@pytest.mark.parametrize("make", [tiny_model, _graph_model], ids=["sequential", "functional"])
def test_evaluate_in_a_callback_leaves_fits_metrics_alone(make):
    """An ``evaluate`` of the same model from inside ``fit`` (a callback's batch hook, or a hook of
    fit's own validation) returns its own numbers and leaves fit's running metrics as they were:
    they are one set of metric objects, and evaluate reset them and added its batches to them, so
    fit's logs and history (and what EarlyStopping saw) held the evaluation's samples mixed in."""
    x, y = data()
    targets = (lambda v: [v, v]) if make is _graph_model else (lambda v: v)

    def history(callback_list):
        model = make()
        convforge.seed(1)
        seen = model.fit(x, targets(y), epochs=2, batch_size=16, validation_split=0.25, verbose=0,
                         callbacks=callback_list).history
        return model, seen

    alone_model, alone = history([])
    inside = []

    class EvaluateInside(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                inside.append(self.model.evaluate(x[:20], targets(y[:20]), verbose=0, return_dict=True))

        def on_test_batch_end(self, batch, logs=None):
            if batch == 0:
                inside.append(self.model.evaluate(x[:8], targets(y[:8]), verbose=0, return_dict=True))

    model, seen = history([EvaluateInside()])
    assert seen == alone
    for a, b in zip(model.get_weights(), alone_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and evaluate's own numbers are its own: those of a model with the same weights, outside fit
    assert len(inside) == 4
    assert inside[-1] == model.evaluate(x[:8], targets(y[:8]), verbose=0, return_dict=True)


def test_fit_from_inside_fit_is_refused_and_one_batch_calls_keep_fits_metrics():
    """A ``fit`` of the same model from one of its fit's callbacks replaced ``model.history``, reset
    the metrics the outer epoch was adding to and cleared the outer fit's callbacks when it
    returned: it is refused with a message. ``train_on_batch``/``test_on_batch`` there report their
    own batch (from reset metrics) and leave fit's running metrics as they were."""
    x, y = data()

    def run(callback_list):
        model = tiny_model()
        convforge.seed(1)
        return model, model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=callback_list)

    errors = []

    class FitInside(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            try:
                self.model.fit(x[:16], y[:16], epochs=1, verbose=0)
            except RuntimeError as e:
                errors.append(str(e))

    model, history = run([FitInside()])
    assert len(errors) == 8 and "fit cannot run from inside this model's fit" in errors[0]
    assert model.history is history
    _, alone = run([])
    assert history.history == alone.history

    def alone_on(weights, call):
        twin = tiny_model()
        twin.set_weights(weights)
        return getattr(twin, call)(x[:8], y[:8], return_dict=True)

    for call in ("test_on_batch", "train_on_batch"):
        seen = []

        class OneBatchInside(callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 1:
                    weights = [w.copy() for w in self.model.get_weights()]
                    seen.append((weights, getattr(self.model, call)(x[:8], y[:8], return_dict=True)))

        model, history = run([OneBatchInside()])
        weights, result = seen[0]
        assert result == alone_on(weights, call)  # the batch's own metrics, not fit's epoch mixed in
        if call == "test_on_batch":
            assert history.history == alone.history  # and fit's metrics are its own


def test_a_metric_referring_to_its_model_keeps_that_model_across_a_nested_evaluate():
    # The nested evaluate's set-aside copies a metric's arrays and containers only: a metric of
    # one's own that refers to the model (or anything else) keeps that very object.
    x, y = data()
    model = tiny_model()

    class Refers(convforge.metrics.Mean):
        def __init__(self, owner):
            super().__init__(fn=lambda y_true, y_pred: 0.0, name="refers")
            self.owner = owner

    metric = Refers(model)
    model.compiled_metrics.append(metric)

    class EvaluateInside(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.model.evaluate(x[:8], y[:8], verbose=0)

    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[EvaluateInside()])
    assert metric.owner is model


def test_learning_rate_scheduler_passes_the_rate_whenever_the_schedule_takes_two_arguments():
    """Keras 3.15.1 calls schedule(epoch, lr) whenever that call works: a schedule with a default
    for lr, or taking *args, gets the current rate (convforge called it with the epoch alone, so
    its rate stayed at the default); a one-argument schedule gets the epoch alone."""
    x, y = data()
    seen = {}

    def record(name):
        def schedule(*args):
            seen.setdefault(name, []).append(args)
            return 0.01
        return schedule

    def halve(epoch, lr=1.0):
        seen.setdefault("default", []).append(lr)
        return lr / 2

    for schedule in (halve, record("star")):
        model = tiny_model()
        model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.LearningRateScheduler(schedule)])
    assert seen["default"] == [0.05, 0.025, 0.0125]
    assert seen["star"] == [(0, 0.05), (1, 0.01), (2, 0.01)]
    epochs = []
    tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(
        lambda epoch: epochs.append(epoch) or 0.01)])
    assert epochs == [0, 1]


def test_every_hook_gets_a_dict_of_logs_as_keras():
    """Keras 3.15.1 passes {} to the hooks that have no logs (on_train_begin, on_epoch_begin, the
    batch-begin hooks, on_test_begin, on_predict_begin/end); convforge passed None, so a callback
    written for Keras that reads or adds to them failed (AttributeError, TypeError)."""
    x, y = data()
    seen = []

    class Reads(callbacks.Callback):
        pass

    def hook(name):
        def method(self, *args):
            seen.append((name, type(args[-1]).__name__))
            args[-1].get("loss")  # as a Keras callback may
        return method

    names = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
             "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
             "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"]
    for name in names:
        setattr(Reads, name, hook(name))
    model = tiny_model()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, validation_split=0.5, callbacks=[Reads()])
    model.evaluate(x, y, verbose=0, callbacks=[Reads()])
    model.predict(x, verbose=0, callbacks=[Reads()])
    assert {name for name, _ in seen} == set(names)
    assert all(kind == "dict" for _, kind in seen), seen


def test_a_history_or_progress_logger_given_is_the_one_fit_uses(capsys):
    """Keras 3.15.1 uses a History or ProgbarLogger found among the callbacks instead of adding
    its own: convforge printed two progress lines per epoch, and returned another History."""
    x, y = data()
    history = callbacks.History()
    model = tiny_model()
    returned = model.fit(x, y, epochs=2, verbose=2, callbacks=[callbacks.ProgbarLogger(verbose=2), history])
    assert returned is history and model.history is history and history.epoch == [0, 1]
    assert len(history.history["loss"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("Epoch")] == ["Epoch 1/2", "Epoch 2/2"] and len(lines) == 4


def test_hooks_set_on_a_callback_instance_run():
    # Keras calls whatever cb.on_train_batch_end is (its LambdaCallback sets hooks on the
    # instance); convforge chose the batch hooks to call by the class only, so such a hook never ran.
    x, y = data()
    seen = []
    cb = callbacks.Callback()
    cb.on_train_batch_end = lambda batch, logs=None: seen.append(("end", batch))
    cb.on_batch_begin = lambda batch, logs=None: seen.append(("begin", batch))
    cb.on_test_batch_end = lambda batch, logs=None: seen.append(("test", batch))
    tiny_model().fit(x, y, epochs=1, batch_size=32, verbose=0, validation_data=(x[:8], y[:8]), callbacks=[cb])
    assert seen == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1), ("test", 0)]


def test_callback_params_are_keras_s():
    """Keras 3.15.1's self.params: {'verbose', 'epochs', 'steps'} in fit (its validation too), with
    'epochs': 1 in evaluate and predict, and None before any run (convforge added 'batch_size',
    left 'epochs' out of evaluate's and predict's, and started at {})."""
    import numpy as np

    import convforge

    seen = []

    class Params(convforge.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(("fit", dict(self.params)))

        def on_test_begin(self, logs=None):
            seen.append(("test", dict(self.params)))

        def on_predict_begin(self, logs=None):
            seen.append(("predict", dict(self.params)))

    assert convforge.callbacks.Callback().params is None
    model = convforge.Sequential([convforge.Input((3,)), convforge.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.ones((10, 3), np.float32), np.ones((10, 2), np.float32)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[Params()], validation_data=(x, y))
    model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[Params()])
    model.predict(x, batch_size=4, verbose=0, callbacks=[Params()])
    fit = {"verbose": 0, "epochs": 2, "steps": 3}
    one = {"verbose": 0, "epochs": 1, "steps": 3}
    assert seen == [("fit", fit), ("test", fit), ("test", fit), ("test", one), ("predict", one)]
    assert [list(params) for _, params in seen] == [["verbose", "epochs", "steps"]] * 5


def test_lambda_callback_calls_its_functions_where_keras_does():
    """Keras 3.15.1's order for the same fit (2 epochs of 2 batches, validation): a hook given by
    its old name (on_batch_begin) through **kwargs runs as the training batch hook, as in Keras."""
    seen = []
    cb = convforge.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append("begin"),
        on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, "val_loss" in logs)),
        on_train_batch_end=lambda batch, logs: seen.append(("batch", batch)),
        on_batch_begin=lambda batch, logs: seen.append(("batch_begin", batch)),
        on_test_end=lambda logs: seen.append("test_end"),
    )
    model = convforge.Sequential([convforge.Input((3,)), convforge.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.ones((8, 3)), np.ones(8), batch_size=4, epochs=2, verbose=0, callbacks=[cb],
              validation_data=(np.ones((4, 3)), np.ones(4)))
    epoch = [("batch_begin", 0), ("batch", 0), ("batch_begin", 1), ("batch", 1), "test_end"]
    assert seen == ["begin", *epoch, ("epoch", 0, True), *epoch, ("epoch", 1, True)]
    with pytest.raises(TypeError, match="LambdaCallback got 'on_epoch_ends', which is no callback hook"):
        convforge.callbacks.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="LambdaCallback on_epoch_end must be a function; got 3"):
        convforge.callbacks.LambdaCallback(on_epoch_end=3)


def _backup_model():
    convforge.seed(1)
    model = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(8, activation="relu"),
                                  convforge.layers.Dense(3, activation="softmax")])
    model.compile(convforge.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class _Killed(Exception):
    pass


class _KillAt(convforge.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed(epoch)


def test_backup_and_restore_continues_a_killed_run_as_if_never_killed(tmp_path):
    """A run killed in its third epoch, started again with the same BackupAndRestore: it goes on
    from the backup and ends with the weights and history of a run never killed; the backup is
    deleted at the end (the directory too, once empty)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    reference = _backup_model()
    expected = reference.fit(x, y, epochs=5, batch_size=16, verbose=0)
    directory = tmp_path / "backup"
    with pytest.raises(_Killed):
        _backup_model().fit(x, y, epochs=5, batch_size=16, verbose=0,
                            callbacks=[convforge.callbacks.BackupAndRestore(directory), _KillAt(2)])
    assert sorted(p.name for p in directory.iterdir()) == ["latest.npz"]
    model = _backup_model()
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0,
                        callbacks=[convforge.callbacks.BackupAndRestore(directory)])
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history.history == expected.history and history.epoch == [0, 1, 2, 3, 4]
    assert not directory.exists()


def test_backup_and_restore_falls_back_on_the_backup_before(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    directory = tmp_path / "backup"
    (tmp_path / "backup").mkdir()
    (directory / "notes.txt").write_text("mine")  # a file of one's own: kept
    with pytest.raises(_Killed):
        _backup_model().fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[
            convforge.callbacks.BackupAndRestore(directory, double_checkpoint=True), _KillAt(2)])
    assert sorted(p.name for p in directory.iterdir()) == ["latest.npz", "latest.npz.bkp", "notes.txt"]
    (directory / "latest.npz").write_bytes(b"not a zip")  # a disk that failed under it
    with pytest.warns(RuntimeWarning, match="cannot be read .* continuing from the one before it"):
        history = _backup_model().fit(x, y, epochs=4, batch_size=16, verbose=0,
                                      callbacks=[convforge.callbacks.BackupAndRestore(directory)])
    assert history.epoch == [0, 1, 2, 3]  # epoch 0's backup, then epochs 1 to 3 trained again
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]  # not rmtree, unlike Keras


def test_backup_and_restore_refuses_what_it_cannot_do(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    backup = convforge.callbacks.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    with pytest.raises(ValueError, match="save_freq='epoch' only"):
        convforge.callbacks.BackupAndRestore(tmp_path, save_freq=10)
    with pytest.raises(ValueError, match="backup_dir must be a directory name"):
        convforge.callbacks.BackupAndRestore("")
    with pytest.raises(ValueError, match="give resume_from or a BackupAndRestore callback, not both"):
        _backup_model().fit(x, y, verbose=0, callbacks=[backup], resume_from=tmp_path / "x.npz")
    with pytest.raises(NotImplementedError, match="BackupAndRestore with arrays and steps_per_epoch"):
        _backup_model().fit(x, y, steps_per_epoch=1, verbose=0, callbacks=[backup])
    _backup_model().fit(x, y, epochs=1, verbose=0, callbacks=[backup])
    assert (tmp_path / "b" / "latest.npz").exists()  # delete_checkpoint=False keeps it
    (tmp_path / "b" / "latest.npz").write_bytes(b"junk")
    with pytest.raises(convforge.saving.ModelFileError, match="BackupAndRestore cannot continue from this backup"):
        _backup_model().fit(x, y, epochs=2, verbose=0, callbacks=[backup])


def test_backup_and_restore_keeps_the_other_callbacks_state_of_its_epoch(tmp_path):
    """Found by a review: listed before a ModelCheckpoint(save_best_only) the backup held the
    checkpoint's best of the epoch before, and after a restart a worse model overwrote the best
    file. And a run stopped by EarlyStopping, then killed before its end, resumed at an epoch the
    run never trained. Both restarts now end as the run never killed."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = x[:, :1].copy()

    def model():
        convforge.seed(1)
        m = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(1)])
        m.compile("sgd", "mse")
        return m

    class Score(convforge.callbacks.Callback):  # a monitored value whose best is epoch 1
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = [3.0, 1.0, 2.0, 9.0, 9.0][epoch]

    class KillAtStart(convforge.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise _Killed(epoch)

    def checkpoint(name):
        return convforge.callbacks.ModelCheckpoint(str(tmp_path / name), monitor="score", mode="min",
                                                   save_best_only=True)

    backup = tmp_path / "backup"
    model().fit(x, y, epochs=5, verbose=0, callbacks=[Score(), checkpoint("a.npz")])
    with pytest.raises(_Killed):
        model().fit(x, y, epochs=5, verbose=0, callbacks=[
            Score(), convforge.callbacks.BackupAndRestore(backup), checkpoint("b.npz"), KillAtStart()])
    model().fit(x, y, epochs=5, verbose=0,
                callbacks=[Score(), convforge.callbacks.BackupAndRestore(backup), checkpoint("b.npz")])
    for a, b in zip(convforge.load_model(tmp_path / "a.npz").get_weights(),
                    convforge.load_model(tmp_path / "b.npz").get_weights()):
        np.testing.assert_array_equal(a, b)

    class DieAtEnd(convforge.callbacks.Callback):
        armed = False

        def on_train_end(self, logs=None):
            if DieAtEnd.armed:
                raise _Killed("end")

    def stopper():
        return convforge.callbacks.EarlyStopping(monitor="loss", min_delta=100.0, patience=1)

    def log(name):
        return convforge.callbacks.CSVLogger(str(tmp_path / name), append=True)

    expected = model().fit(x, y, epochs=10, verbose=0, callbacks=[log("a.csv"), stopper()])
    DieAtEnd.armed = True
    killed_log = log("b.csv")
    with pytest.raises(_Killed):
        model().fit(x, y, epochs=10, verbose=0,
                    callbacks=[DieAtEnd(), killed_log, stopper(), convforge.callbacks.BackupAndRestore(backup)])
    killed_log.on_train_end()  # the file a killed process would have left: closed
    DieAtEnd.armed = False
    resumed = model().fit(x, y, epochs=10, verbose=0,
                          callbacks=[DieAtEnd(), log("b.csv"), stopper(), convforge.callbacks.BackupAndRestore(backup)])
    assert resumed.epoch == expected.epoch == [0, 1] and resumed.history == expected.history
    # The stopping epoch is not trained again on the restart: its row is not logged twice (it was).
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    assert not backup.exists()


def test_a_kept_backup_of_a_stopped_run_lets_a_longer_fit_go_on(tmp_path):
    """delete_checkpoint=False keeps the backup of a run EarlyStopping ended: a later fit asking for
    more epochs goes on from it, as Keras's does (it trained nothing, sent to the end)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    backup = tmp_path / "backup"
    first = _backup_model().fit(x, y, epochs=10, verbose=0, callbacks=[
        convforge.callbacks.EarlyStopping(monitor="loss", min_delta=100.0, patience=1),
        convforge.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])
    assert first.epoch == [0, 1]
    later = _backup_model().fit(x, y, epochs=20, verbose=0,
                                callbacks=[convforge.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])
    assert later.epoch == list(range(20))  # epochs 2 to 19 trained after the two of the backup
