"""What each rank runs in tests/test_distributed.py: ``mpirun -n 2 python tests/mpi_worker.py SCENARIO OUTDIR``.

Every scenario builds the same small CNN on the same synthetic data as the
single-process reference in the test (``build``/``data`` below), calls
``convforge.distributed.init()``, runs, and writes what the test checks to
``OUTDIR/<scenario>-rank<r>.npz`` (test output, one file per rank on purpose).
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np

import convforge
from convforge import callbacks, distributed, layers

N_SAMPLES = 320  # 20 steps of a global batch of 16


def data(n=N_SAMPLES, seed=7):
    """Separable-ish 8x8 one-channel images of 4 classes, float32."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 8, 8, 1)).astype(np.float32) * 0.5
    for c in range(4):
        x[y == c, 2 * c : 2 * c + 2, :, 0] += 1.0
    return x, y


def build(seed=0, units=4, optimizer="sgd", metrics=("accuracy",)):
    convforge.seed(seed)
    model = convforge.Sequential(
        [
            layers.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1)),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(units, activation="softmax"),
        ]
    )
    opt = convforge.optimizers.SGD(0.05, momentum=0.9) if optimizer == "sgd" else convforge.optimizers.Adam(1e-2)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def counting_metrics():
    """Metrics made from counts, not means of batch values (AUC on 3 thresholds: 0, 0.5, 1, so that
    outputs a rounding apart from one process's fall on the same side of every threshold)."""
    return ("accuracy", convforge.metrics.Precision(), convforge.metrics.Recall(), convforge.metrics.AUC(3),
            # one value per threshold (an array in the logs), top_k and class_id: counts too
            convforge.metrics.Precision(thresholds=[0.3, 0.6], name="p_thresholds"),
            convforge.metrics.Recall(top_k=2, name="r_top2"), convforge.metrics.Precision(class_id=1, name="p1"),
            # a confusion matrix summed over the ranks
            convforge.metrics.MeanIoU(4, sparse_y_pred=False))


def graph_data(n=N_SAMPLES, seed=11):
    """Two inputs (8x8 images, 3 features) and two targets (4 classes, one value) for build_graph."""
    x, y = data(n, seed)
    rng = np.random.default_rng(seed + 1)
    features = rng.standard_normal((n, 3)).astype(np.float32)
    value = (features[:, :1] - 0.5 * features[:, 1:2]).astype(np.float32)
    return {"image": x, "features": features}, {"cls": y, "reg": value}


def build_graph(seed=0):
    """A Functional model with two inputs and two outputs, per-output losses, weights and metrics."""
    convforge.seed(seed)
    image = convforge.Input((8, 8, 1), name="image")
    features = convforge.Input((3,), name="features")
    h = layers.Flatten()(layers.MaxPooling2D(2)(layers.Conv2D(4, (3, 3), activation="relu")(image)))
    h = layers.Concatenate()([h, layers.Dense(4, activation="relu")(features)])
    cls = layers.Dense(4, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = convforge.Model([image, features], [cls, reg])
    model.compile(
        optimizer=convforge.optimizers.Adam(1e-2),
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
        # RMSE: a root of the global mean (its sums combine over ranks, not its per-rank roots)
        metrics={"cls": ["accuracy", "sparse_categorical_crossentropy"],
                 "reg": ["mae", convforge.metrics.RootMeanSquaredError(name="rmse")]},
    )
    return model


MARK = 0.75  # an exact float32 value no sample of data() holds at pixel (0, 0)


class PoisonGradient(layers.Layer):
    """y = x * alpha; the gradient of alpha is NaN for a batch holding a sample marked with MARK at pixel (0, 0).

    A non-finite gradient with a finite loss: the case a loss check alone misses.
    """

    def build(self, input_shape):
        self.add_weight("alpha", input_shape, initializer="ones")

    def forward(self, x, training=False):
        if training:
            self.x = x
        return x * self.params["alpha"]

    def backward(self, dy):
        grad = (dy * self.x).sum(axis=0)
        if (self.x[:, 0, 0, 0] == MARK).any():  # internal layout NCHW: channel 0, pixel (0, 0)
            grad[0, 0, 0] = np.nan
        self.grads["alpha"] = grad
        return dy * self.params["alpha"]


def build_poisoned(seed=0):
    convforge.seed(seed)
    model = convforge.Sequential(
        [
            PoisonGradient(input_shape=(8, 8, 1)),
            layers.Conv2D(4, (3, 3), activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(optimizer=convforge.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


class RecordDraws(layers.Layer):
    """Passes its input through; records one draw of convforge's generator per training step, as a
    Dropout mask or a random augmentation draws."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.draws = []

    def forward(self, x, training=False):
        if training:
            self.draws.append(convforge.random.get_generator().random())
        return x

    def backward(self, dy):
        return dy


def weights_dict(model) -> dict:
    return {f"w{i}": w for i, w in enumerate(model.get_weights())}


def dump(outdir, name, **arrays):
    np.savez(os.path.join(outdir, f"{name}-rank{distributed.rank()}.npz"), **arrays)


class StopOnRank(callbacks.Callback):
    """Sets stop_training on one rank only, at the end of one epoch: the others must follow."""

    def __init__(self, rank, epoch):
        super().__init__()
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, epoch, logs=None):
        if distributed.rank() == self.rank and epoch == self.epoch:
            self.model.stop_training = True


class RaiseOnRank(callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if distributed.rank() == 1 and batch == 3:
            raise RuntimeError("boom from rank 1 at batch 4")


def scenario_equivalence(outdir):
    x, y = data()
    model = build(seed=100 + distributed.rank())  # different seeds: the primary's weights must win
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    x_eval, y_eval = data(n=101, seed=3)  # odd: unequal blocks for evaluate and predict
    evaluation = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    prediction = model.predict(x_eval, batch_size=10, verbose=0)
    # Unequal shards: a global batch of 15 (8 + 7 samples), 22 steps, the last one of 5.
    model2 = build(seed=0, optimizer="adam")
    history2 = model2.fit(x, y, batch_size=15, epochs=2, verbose=0, validation_data=(x_eval, y_eval))
    dump(
        outdir,
        "equivalence",
        **weights_dict(model),
        prediction=prediction,
        history=json.dumps(history.history),
        evaluation=json.dumps(evaluation),
        history2=json.dumps(history2.history),
        iterations=model.optimizer.iterations,
        threads=convforge.get_num_threads(),
        **{f"b{i}": w for i, w in enumerate(model2.get_weights())},
    )


def scenario_second_fit(outdir):
    """A second fit of a model whose automatic layer names differ between the ranks (a preview
    model made on the primary only): Adam's moments, broadcast at the fit's start, must reach
    the same layers on every rank."""
    x, y = data()
    if distributed.rank() == 0:
        build(seed=0)
        convforge.metrics.MeanIoU(4)  # a report's metric: rank 0's next one is mean_io_u_1
    model = build(seed=0, optimizer="adam", metrics=("accuracy", convforge.metrics.MeanIoU(4, sparse_y_pred=False)))
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    # The same model under other automatic names must not be refused by the ranks' checks.
    evaluation = model.evaluate(x, y, verbose=0)
    prediction = model.predict(x[:7], verbose=0)
    dump(outdir, "second_fit", **weights_dict(model), names=json.dumps([layer.name for layer in model.layers]),
         metrics=json.dumps(model.metrics_names), evaluation=np.array(evaluation), prediction=prediction)


def scenario_stop_before_the_first_batch(outdir):
    """A stop set in on_epoch_begin on rank 0 only (a time budget), with no batch hooks: agreed."""
    x, y = data()

    class Budget(convforge.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and distributed.rank() == 0:
                self.model.stop_training = True

    history = build().fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Budget()])
    # class_weight given in another key order on each rank is the same class_weight
    weights = {0: 1.0, 1: 2.0, 2: 1.0, 3: 1.0}
    if distributed.rank():
        weights = dict(reversed(list(weights.items())))
    build().fit(x, y, batch_size=16, epochs=1, verbose=0, class_weight=weights)
    dump(outdir, "stop_before_the_first_batch", epochs=np.array(history.epoch),
         steps=np.array(history.model.optimizer.iterations))


def scenario_alone(outdir):
    """After a data-parallel fit, rank 0 alone evaluates and predicts within distributed.local()
    (a plot, a report): no collective, so no wait for rank 1, which has moved on."""
    x, y = data()
    model = build(seed=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    found = {}
    with distributed.local():
        if distributed.is_primary():
            found = {"evaluation": json.dumps(model.evaluate(x, y, verbose=0, return_dict=True)),
                     "prediction": model.predict(x[:5], verbose=0)}
    dump(outdir, "alone", **weights_dict(model), **found)


def scenario_counting_metrics(outdir):
    """Precision, recall and AUC in fit's logs and evaluate: from the counts of all ranks."""
    x, y = data()
    model = build(metrics=counting_metrics())
    history = model.fit(x, y, batch_size=15, epochs=1, verbose=0)
    x_eval, y_eval = data(n=101, seed=3)
    evaluation = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    as_json = functools.partial(json.dumps, default=np.ndarray.tolist)  # per-threshold values: arrays
    dump(outdir, "counting_metrics", **weights_dict(model), history=as_json(history.history),
         evaluation=as_json(evaluation))


def build_batch_norm(seed=0, learning_rate=0.05):
    """BatchNormalization between a conv and its ReLU: moving statistics updated in every training step."""
    convforge.seed(seed)
    model = convforge.Sequential(
        [
            layers.Conv2D(4, (3, 3), input_shape=(8, 8, 1)),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(optimizer=convforge.optimizers.SGD(learning_rate, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def scenario_batch_norm(outdir):
    """Unequal shards (15 = 8 + 7): each rank's moving statistics see its own shard only."""
    x, y = data()
    model = build_batch_norm()
    model.fit(x, y, batch_size=15, epochs=1, verbose=0)
    x_eval, y_eval = data(n=101, seed=3)
    evaluation = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    # Fixed weights, equal shards (16 = 8 + 8): the mean of the shards' means is the batch's.
    frozen = build_batch_norm(learning_rate=0.0)
    frozen.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    dump(outdir, "batch_norm", **weights_dict(model), evaluation=json.dumps(evaluation),
         frozen_moving_mean=frozen.layers[1].get_weights()[2])


def scenario_random_streams(outdir):
    """Every rank seeded alike (the same script), no shuffle: the draws of dropout and of random
    layers must still differ between the ranks' shards, as between the samples of one process."""
    x, y = data()
    convforge.seed(0)
    recorder = RecordDraws(input_shape=(8, 8, 1))
    model = convforge.Sequential(
        [recorder, layers.Flatten(), layers.Dropout(0.5), layers.Dense(4, activation="softmax")]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    dump(outdir, "random_streams", **weights_dict(model), draws=np.array(recorder.draws),
         state_after=json.dumps(convforge.random.get_state()))


def scenario_nan(outdir):
    x, y = data()
    # Sample 24 is in the second global batch (no shuffle), in rank 1's shard [24, 32).
    x[24, 0, 0, 0] = np.nan
    model = build()
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    nan_weights = model.get_weights()
    skipped = history.skipped_batches
    # A finite loss but a NaN gradient, in rank 1's shard of batch 2 of each epoch.
    x_marked = data()[0]
    x_marked[24, 0, 0, 0] = MARK
    poisoned = build_poisoned()
    history = poisoned.fit(x_marked, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    poisoned_skipped = history.skipped_batches
    model = build()
    stopper = callbacks.TerminateOnNaN()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[stopper])
    dump(
        outdir,
        "nan",
        **{f"w{i}": w for i, w in enumerate(nan_weights)},
        terminated_iterations=model.optimizer.iterations,
        terminated_epochs=len(history.epoch),
        skipped=np.array(skipped),
        poisoned_skipped=np.array(poisoned_skipped),
        poisoned_iterations=poisoned.optimizer.iterations,
        **{f"p{i}": w for i, w in enumerate(poisoned.get_weights())},
    )


def scenario_graph(outdir):
    """A Functional model with two inputs and two outputs: unequal shards, validation, evaluate, predict."""
    x, y = graph_data()
    if distributed.rank() == 0:
        # A model only the primary makes first (a preview): its automatic names move on
        # (dense_2, ...) where rank 1's do not, and the ranks must still agree on the architecture.
        build_graph(seed=0)
    model = build_graph(seed=100 + distributed.rank())  # the primary's weights must win
    history = model.fit(x, y, batch_size=15, epochs=2, verbose=0, validation_data=graph_data(n=41, seed=5))
    x_eval, y_eval = graph_data(n=101, seed=3)
    evaluation = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    p_cls, p_reg = model.predict(x_eval, batch_size=10, verbose=0)
    few_cls, few_reg = model.predict({k: v[:1] for k, v in x_eval.items()}, verbose=0)  # rank 1's block is empty
    dump(
        outdir,
        "graph",
        **weights_dict(model),
        history=json.dumps(history.history),
        evaluation=json.dumps(evaluation),
        p_cls=p_cls,
        p_reg=p_reg,
        few_cls=few_cls,
        few_reg=few_reg,
    )


def scenario_stop(outdir):
    x, y = data()
    model = build()
    early = callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)  # never improves after epoch 1
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0, callbacks=[early])
    model2 = build()
    history2 = model2.fit(x, y, batch_size=16, epochs=10, verbose=0, callbacks=[StopOnRank(1, 2)])
    r = distributed.rank()
    mean = distributed.allreduce_mean(np.array([r, 2 * r, 5], dtype=np.int32))
    distributed.barrier()
    dump(outdir, "stop", early_epochs=len(history.epoch), rank_stop_epochs=len(history2.epoch), mean=mean)


def scenario_writes(outdir):
    """Checkpoints and saves from every rank: only the primary's files appear; then resume from them."""
    x, y = data()
    model = build()
    ckpt = os.path.join(outdir, "ckpt-{epoch}.npz")
    log = callbacks.CSVLogger(os.path.join(outdir, "log.csv"), append=True)
    model.fit(
        x, y, batch_size=16, epochs=2, verbose=1, callbacks=[callbacks.ModelCheckpoint(ckpt, monitor="loss"), log]
    )
    model.save(os.path.join(outdir, "final.npz"))
    model.save_weights(os.path.join(outdir, "final-weights.npz"))
    distributed.barrier()
    # Resume a 1-process checkpoint (written by the test) on 2 ranks.
    resumed = build(seed=5)
    history = resumed.fit(x, y, batch_size=16, epochs=2, verbose=0, resume_from=os.path.join(outdir, "single-1.npz"))
    dump(outdir, "writes", **weights_dict(resumed), history=json.dumps(history.history))


def scenario_raise(outdir):
    x, y = data()
    model = build()
    model.fit(x, y, batch_size=16, epochs=50, verbose=0, callbacks=[RaiseOnRank()])


def scenario_weighted(outdir):
    """fit/evaluate with sample_weight and class_weight; what is refused in a data-parallel run."""
    x, y = data()
    weights = np.linspace(0.2, 2.0, len(x))
    model = build(seed=0, optimizer="adam")
    history = model.fit(x, y, batch_size=15, epochs=2, verbose=0, sample_weight=weights, class_weight={0: 3.0, 2: 0.5})
    evaluation = model.evaluate(x[:101], y[:101], batch_size=10, verbose=0, sample_weight=weights[:101],
                                return_dict=True)
    refused = {}
    for name, run in {
        "train_on_batch": lambda: model.train_on_batch(x[:16], y[:16]),
        "generator": lambda: model.fit(iter([(x[:16], y[:16])] * 4), steps_per_epoch=2, verbose=0),
        "evaluate_generator": lambda: model.evaluate(iter([(x[:16], y[:16])] * 2), verbose=0),
    }.items():
        try:
            run()
            refused[name] = "no error"
        except NotImplementedError as err:
            refused[name] = str(err)
    dump(outdir, "weighted", **weights_dict(model), history=json.dumps(history.history),
         evaluation=json.dumps(evaluation), refused=json.dumps(refused))


def scenario_bad_input(outdir):
    """Each mistake must raise a ValueError on every rank (caught here, so the job ends cleanly)."""
    r = distributed.rank()
    x, y = data()
    cases = {
        "sizes": lambda: build().fit(x[: 320 - 16 * r], y[: 320 - 16 * r], batch_size=16, verbose=0),
        "shapes": lambda: build().fit(
            np.zeros((320, 8, 8, 1 + r), np.float32) if r else x, y, batch_size=16, verbose=0
        ),
        "content": lambda: build().fit(x + r, y, batch_size=16, verbose=0),
        "batch": lambda: build().fit(x, y, batch_size=1, verbose=0),
        "architecture": lambda: build(units=4 + r).fit(x, y, batch_size=16, verbose=0),
        "predict": lambda: build().predict(x[: 320 - r], verbose=0),
        "evaluate": lambda: build().evaluate(x, np.roll(y, r), verbose=0),
        "evaluate_weights": lambda: build().evaluate(x, y, sample_weight=np.linspace(1, 2 + r, len(x)), verbose=0),
        # Each rank computes its rows with its own model: one result mixed of two models, silently.
        "predict_model_weights": lambda: build(seed=r).predict(x, verbose=0),
        "evaluate_model_weights": lambda: build(seed=r).evaluate(x, y, verbose=0),
        "predict_architecture": lambda: build(units=4 + r).predict(x, verbose=0),
        "evaluate_metrics": lambda: build(metrics=("accuracy",) if r == 0 else ("sparse_categorical_crossentropy",))
        .evaluate(x, y, verbose=0),
        "validation_weights": lambda: build().fit(
            x, y, batch_size=16, verbose=0, validation_data=(x, y, np.linspace(1, 2 + r, len(x)))
        ),
    }
    # Arguments that set how many collectives a fit makes: a rank that made more waited for good.
    cases["steps_per_epoch"] = lambda: build().fit(x, y, batch_size=16, steps_per_epoch=2 + r, verbose=0)
    cases["validation_steps"] = lambda: build().fit(x, y, batch_size=16, validation_data=(x, y),
                                                    validation_steps=1 + 3 * r, verbose=0)
    hook = {"on_train_batch_end": lambda batch, logs: None} if r == 0 else {"on_epoch_end": lambda epoch, logs: None}
    cases["batch_hooks"] = lambda: build().fit(x, y, batch_size=16, verbose=0,
                                               callbacks=[convforge.callbacks.LambdaCallback(**hook)])

    def resumed_apart():  # each rank resumes another checkpoint (a stale copy on one node's disk)
        paths = [os.path.join(outdir, f"at_{epoch}.npz") for epoch in (1, 2)]
        if r == 0:
            with distributed.local():
                build().fit(x[:32], y[:32], batch_size=16, epochs=2, verbose=0,
                            callbacks=[convforge.callbacks.ModelCheckpoint(os.path.join(outdir, "at_{epoch}.npz"))])
        distributed.barrier()
        build().fit(x, y, batch_size=16, epochs=3, resume_from=paths[r], verbose=0)

    cases["resume_from"] = resumed_apart
    # F1Score is refused (its per-class counts are sized by its first batch), by fit and evaluate
    onehot = np.eye(4, dtype=np.float32)[y]
    per_class = {
        "f1_fit": lambda: build_f1().fit(x, onehot, batch_size=16, verbose=0),
        "f1_evaluate": lambda: build_f1().evaluate(x, onehot, verbose=0),
        "r2_fit": lambda: build_r2().fit(x, onehot, batch_size=16, verbose=0),
    }
    messages = {}
    for name, run in cases.items():
        try:
            run()
            messages[name] = "no error"
        except ValueError as err:
            messages[name] = str(err)
    for name, run in per_class.items():
        try:
            run()
            messages[name] = "no error"
        except NotImplementedError as err:
            messages[name] = str(err)
    dump(outdir, "bad_input", messages=json.dumps(messages))


def build_f1():
    model = build()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[convforge.metrics.F1Score()])
    return model


def build_r2():
    model = build()
    model.compile(optimizer="sgd", loss="mse", metrics=[convforge.metrics.R2Score()])
    return model


if __name__ == "__main__":
    scenario, outdir = sys.argv[1], sys.argv[2]
    distributed.init()
    globals()[f"scenario_{scenario}"](outdir)
