"""Tests of convforge.metrics against hand-computed values."""

import numpy as np
import pytest

from convforge import metrics

# Ten samples, three classes, counted by hand:
#   true 0: predicted 0, 0, 1        true 1: predicted 1, 1, 2, 0
#   true 2: predicted 2, 2, 1
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2, 1])
CONFUSION = np.array([[2, 1, 0], [1, 2, 1], [0, 1, 2]])


def scores_for(labels, classes=3):
    """Scores whose argmax is `labels` (as predict() would return)."""
    s = np.full((len(labels), classes), 0.1)
    s[np.arange(len(labels)), labels] = 0.8
    return s


def test_confusion_matrix_hand_computed():
    np.testing.assert_array_equal(metrics.confusion_matrix(Y_TRUE, Y_PRED), CONFUSION)
    # Scores and one-hot rows are reduced by argmax.
    np.testing.assert_array_equal(metrics.confusion_matrix(np.eye(3)[Y_TRUE], scores_for(Y_PRED)), CONFUSION)
    # An unseen class still gets its row and column.
    cm = metrics.confusion_matrix([0, 1], [1, 1], num_classes=4)
    assert cm.shape == (4, 4) and cm[0, 1] == 1 and cm[1, 1] == 1 and cm.sum() == 2
    with pytest.raises(ValueError, match="does not fit num_classes=2"):
        metrics.confusion_matrix([0, 2], [0, 1], num_classes=2)


def test_precision_recall_f1_hand_computed():
    precision, recall, f1, support = metrics.precision_recall_f1(Y_TRUE, Y_PRED)
    # precision = tp / predicted: class 0 2/3, class 1 2/4, class 2 2/3
    np.testing.assert_allclose(precision, [2 / 3, 2 / 4, 2 / 3])
    # recall = tp / true: class 0 2/3, class 1 2/4, class 2 2/3
    np.testing.assert_allclose(recall, [2 / 3, 2 / 4, 2 / 3])
    np.testing.assert_allclose(f1, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_array_equal(support, [3, 4, 3])


def test_zero_denominators_give_zero():
    precision, recall, f1, support = metrics.precision_recall_f1([0, 0], [0, 0], num_classes=2)
    np.testing.assert_array_equal(precision, [1, 0])
    np.testing.assert_array_equal(recall, [1, 0])
    np.testing.assert_array_equal(f1, [1, 0])
    np.testing.assert_array_equal(support, [2, 0])


def test_accuracy_forms():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == 0.6
    assert metrics.accuracy(Y_TRUE, scores_for(Y_PRED)) == 0.6
    assert metrics.accuracy(np.eye(3)[Y_TRUE], scores_for(Y_PRED)) == 0.6
    # One sigmoid output: thresholded at 0.5 (binary accuracy).
    assert metrics.accuracy([1, 0, 1, 1], np.array([[0.9], [0.4], [0.2], [0.51]])) == 0.75
    with pytest.raises(ValueError, match="must match"):
        metrics.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="negative label -1 at index 1"):
        metrics.accuracy([0, -1], [0, 1])


def test_classification_report_text():
    report = metrics.classification_report(Y_TRUE, scores_for(Y_PRED), target_names=["cat", "dog", "emu"])
    assert report == "\n".join(
        [
            "              precision    recall  f1-score   support",
            "",
            "         cat       0.67      0.67      0.67         3",
            "         dog       0.50      0.50      0.50         4",
            "         emu       0.67      0.67      0.67         3",
            "",
            "    accuracy                           0.60        10",
            "   macro avg       0.61      0.61      0.61        10",
            "weighted avg       0.60      0.60      0.60        10",
        ]
    )
    assert "0.6667" in metrics.classification_report(Y_TRUE, Y_PRED, digits=4)
    with pytest.raises(ValueError, match="target_names has 2 names for 3 classes"):
        metrics.classification_report(Y_TRUE, Y_PRED, target_names=["a", "b"], num_classes=3)


def test_running_metrics_are_sample_weighted():
    acc = metrics.get("accuracy")
    acc.update_state(np.array([0, 1]), scores_for([0, 0]))  # 1/2
    acc.update_state(np.array([2, 2, 2, 2]), scores_for([2, 2, 2, 2]))  # 4/4
    assert acc.result() == pytest.approx(5 / 6)
    acc.reset_state()
    assert np.isnan(acc.result())
    custom = metrics.get(lambda y_true, y_pred: float(np.mean(y_pred)))
    custom.update_state(None, np.array([1.0, 3.0]))
    assert custom.result() == 2.0
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics.get("f1_score")


def test_pr_auc_of_a_perfect_and_of_a_constant_classifier():
    y = np.array([0, 0, 1, 1, 0, 1], np.float32)
    perfect = metrics.AUC(curve="PR")
    perfect.update_state(y, np.where(y > 0, 0.9, 0.1))
    assert perfect.result() == pytest.approx(1.0)
    constant = metrics.AUC(curve="pr")  # Keras accepts either case
    constant.update_state(y, np.full(6, 0.5, np.float32))
    assert constant.result() == pytest.approx(0.5)  # precision is the positive rate everywhere
    with pytest.raises(ValueError, match="convforge does not support AUC curve='PRGAIN'"):
        metrics.AUC(curve="PRGAIN")


@pytest.mark.parametrize(
    "make,name",
    [
        # Keras 3's default names: the logs and history keys of compile(metrics=[keras.metrics.X()]).
        (metrics.MeanAbsoluteError, "mean_absolute_error"),
        (metrics.MeanSquaredError, "mean_squared_error"),
        (lambda: metrics.get("MeanAbsoluteError"), "mean_absolute_error"),
        (metrics.CategoricalAccuracy, "categorical_accuracy"),
        (metrics.AUC, "auc"),
        # A name string keeps its spelling, as in Keras.
        (lambda: metrics.get("mae"), "mae"),
        (lambda: metrics.get("mse"), "mse"),
        (lambda: metrics.get("mean_squared_error"), "mean_squared_error"),
    ],
)
def test_metric_objects_have_keras_default_names(make, name):
    assert make().name == name


def test_a_keras_style_metric_subclass_passes_its_name_to_the_base_class():
    """The training guide's custom metric: ``super().__init__(name=name, **kwargs)``, then
    update_state / result / reset_state (here in NumPy); fit logs it under its name."""
    import convforge
    from convforge import layers

    class CategoricalTruePositives(metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = 0.0

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.true_positives += float(np.sum(np.argmax(y_pred, axis=1) == np.asarray(y_true).reshape(-1)))

        def result(self):
            return self.true_positives

        def reset_state(self):
            self.true_positives = 0.0

    assert CategoricalTruePositives().name == "categorical_true_positives"
    assert metrics.Metric().name == "metric"
    model = convforge.Sequential([convforge.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[CategoricalTruePositives()])
    history = model.fit(np.zeros((8, 4), np.float32), np.zeros(8, np.int64), batch_size=4, epochs=1, verbose=0)
    assert history.history["categorical_true_positives"] == [8.0]  # a tie picks class 0 every time
    with pytest.raises(TypeError, match="convforge does not support the argument 'dtype' of CategoricalTruePositives"):
        CategoricalTruePositives(dtype="float32")


def test_a_metric_function_may_return_one_value_per_sample():
    """Keras's metric functions return one value per sample (e.g. a mean over the last axis); compile
    averages them over the samples, as Keras does, instead of failing to make a float of the array."""
    def per_sample_abs(y_true, y_pred):
        return np.mean(np.abs(y_true - y_pred), axis=-1)

    metric = metrics.get(per_sample_abs)
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.standard_normal((10, 2)), rng.standard_normal((10, 2))
    metric.update_state(y_true[:7], y_pred[:7])
    metric.update_state(y_true[7:], y_pred[7:])
    assert metric.name == "per_sample_abs"
    assert metric.result() == pytest.approx(np.mean(np.abs(y_true - y_pred)))


def test_auc_from_logits_applies_the_sigmoid_as_keras():
    # Keras 3.15.1 on these scores: AUC(from_logits=True) 0.6035531, curve='PR' 0.6136985.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    z = rng.standard_normal(200) * 3 + y
    for curve, keras_value in (("ROC", 0.6035531), ("PR", 0.6136985)):
        logits = metrics.AUC(curve=curve, from_logits=True)
        logits.update_state(y, z)
        probabilities = metrics.AUC(curve=curve)
        probabilities.update_state(y, 1 / (1 + np.exp(-z)))
        assert logits.result() == pytest.approx(probabilities.result(), abs=1e-12)
        assert logits.result() == pytest.approx(keras_value, abs=1e-6)
    big = metrics.AUC(from_logits=True)
    big.update_state([0, 1], [-1e4, 1e4])  # no overflow warning, a perfect ranking
    assert big.result() == pytest.approx(1.0)
    assert metrics.AUC(from_logits=True).get_config()["from_logits"] is True
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        metrics.AUC(from_logits="yes")


def test_a_metric_description_of_no_known_class_is_a_value_error():
    # Model files keep metrics as {"class_name", "config"}: a damaged one must not be a TypeError.
    for bad in ({"class_name": {"a": 1}}, {"class_name": ["AUC"]}, {"class_name": "Ghost"}):
        with pytest.raises(ValueError, match="unknown metric description"):
            metrics.get(bad)


def test_accuracy_object_takes_lists_as_keras_users_pass_them():
    """Keras's docs call ``m.update_state([1, 2, 3, 4], [0, 2, 3, 4])`` with lists; the object once
    failed on ``list.ndim``. convforge's Accuracy is compile's 'accuracy' (see help(Accuracy))."""
    acc = metrics.Accuracy()
    acc.update_state([0, 1, 1], [0, 1, 0])  # integer predictions: equality
    assert acc.result() == pytest.approx(2 / 3)
    acc.reset_state()
    acc.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])  # scores: argmax
    assert acc.result() == pytest.approx(1 / 2)
    assert "keras.metrics.Accuracy()" in metrics.Accuracy.__doc__


# One batch with sample weights, then the same batch without, against Keras 3.15's values
# (keras.metrics.X().update_state(y, p, sample_weight=W); update_state(y, p); result()).
_Y = np.array([0, 2, 1, 2, 0])
_P = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
_W = np.array([1.0, 2.0, 0.5, 3.0, 0.0])
_YB = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]])
_PB = np.array([[0.8], [0.6], [0.3], [0.9], [0.1]])


@pytest.mark.parametrize(
    "make,y,p,keras_value",
    [
        (metrics.SparseCategoricalAccuracy, _Y, _P, 0.43478259444236755),
        (metrics.Accuracy, _Y, _P, 0.43478259444236755),
        (metrics.CategoricalAccuracy, np.eye(3)[_Y], _P, 0.43478259444236755),
        (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), _Y, _P, 1.0),
        (lambda: metrics.TopKCategoricalAccuracy(k=2), np.eye(3)[_Y], _P, 1.0),
        (metrics.BinaryAccuracy, _YB, _PB, 0.6086956262588501),
        (metrics.MeanSquaredError, np.eye(3)[_Y], _P, 0.2165217399597168),
        (metrics.MeanAbsoluteError, np.eye(3)[_Y], _P, 0.39420294761657715),
        (metrics.Precision, np.eye(3)[_Y], _P, 0.5555555820465088),
        (metrics.Recall, _YB, _PB, 0.800000011920929),
        (metrics.AUC, np.eye(3)[_Y], _P, 0.6710774898529053),
        (lambda: metrics.AUC(curve="PR", num_thresholds=5), _YB, _PB, 0.9383397698402405),
    ],
)
def test_update_state_weighs_samples_as_keras(make, y, p, keras_value):
    """Keras's ``update_state(y_true, y_pred, sample_weight=None)``: once a TypeError here."""
    m = make()
    m.update_state(y, p, sample_weight=_W)
    m.update_state(y, p)
    assert m.result() == pytest.approx(keras_value, rel=1e-6)
    m.reset_state()
    m.update_state(y, p, _W)  # positional, as Keras allows
    m.update_state(y, p)
    assert m.result() == pytest.approx(keras_value, rel=1e-6)
    m.reset_state()
    m.update_state(y, p)
    unweighted = make()
    unweighted.update_state(y, p)
    assert m.result() == unweighted.result()


def test_update_state_refuses_bad_sample_weights():
    m = metrics.Precision()
    with pytest.raises(ValueError, match=r"precision: sample_weight must be a number or have shape \(5,\)"):
        m.update_state(_YB, _PB, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        metrics.SparseCategoricalAccuracy().update_state(_Y, _P, sample_weight=-_W)


def test_mean_and_sum_of_values_as_keras():
    """Keras's ``Mean().update_state(values, sample_weight)`` and ``Sum``; Mean() once required
    a y_pred (TypeError) and Sum did not exist. Values from Keras 3.15."""
    m = metrics.Mean()
    m.update_state(np.array([[1.0, 2.0], [3.0, 4.0]]), sample_weight=np.array([1.0, 3.0]))  # rows weighted
    assert m.result() == pytest.approx(3.0)
    m = metrics.Mean()
    m.update_state(5.0)
    m.update_state([1, 2])
    assert m.result() == pytest.approx(8 / 3)
    m = metrics.Mean("running")  # Keras's positional name; a second positional argument is the weights
    m.update_state([1.0, 2.0], [0.5, 1.5])
    assert (m.name, m.result()) == ("running", pytest.approx(1.75))
    m.reset_state()
    assert np.isnan(m.result())
    s = metrics.Sum()
    assert (s.name, s.result()) == ("sum", 0.0)
    s.update_state([1, 2, 3], sample_weight=[1, 0, 2])
    s.update_state(0.5)
    assert s.result() == pytest.approx(7.5)
    with pytest.raises(ValueError, match=r"mean: sample_weight of shape \(3,\) does not fit values of shape \(2,\)"):
        metrics.Mean().update_state([1, 2], sample_weight=[1, 2, 3])
    with pytest.raises(TypeError, match="update_state takes numbers"):
        metrics.Sum().update_state("abc")


def test_metric_arguments_are_checked():
    """k=0 gave an accuracy of 0, k=2.5 was truncated to 2, thresholds=2 never fired and a list
    of thresholds or a string threshold gave float()'s message naming no argument; Keras refuses
    thresholds outside [0, 1] too."""
    for make in (metrics.TopKCategoricalAccuracy, metrics.SparseTopKCategoricalAccuracy):
        for k in (0, 2.5, True):
            with pytest.raises(ValueError, match="k must be an int >= 1"):
                make(k=k)
        assert make(k=np.int64(3)).k == 3
    with pytest.raises(ValueError, match=r"thresholds must be in \[0, 1\]; got 2"):
        metrics.Precision(thresholds=2)
    with pytest.raises(TypeError, match="take one threshold"):
        metrics.Recall(thresholds=[0.3, 0.6])
    with pytest.raises(TypeError, match="threshold must be a number in"):
        metrics.BinaryAccuracy(threshold="a")
    assert metrics.BinaryAccuracy(threshold=0.7).threshold == 0.7


@pytest.mark.parametrize("make", [metrics.SparseCategoricalAccuracy,
                                  lambda: metrics.SparseTopKCategoricalAccuracy(k=1)])
def test_sparse_metrics_refuse_labels_outside_the_classes(make):
    """Label 5 for two classes was an IndexError in the top-k metric, and -1 read the last
    column's score (a silent hit); the accuracy counted both as misses."""
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    for bad in (5, -1):
        with pytest.raises(ValueError, match=f"label {bad} at index 1 is out of range"):
            make().update_state(np.array([0, bad]), scores)
    m = make()
    m.update_state(np.array([[0.0], [0.0]]), scores)  # (N, 1) float labels, as Keras users have them
    assert m.result() == 0.5


def test_results_are_python_floats_as_in_keras_logs():
    """Accuracy with scores gave np.float64 (NumPy 2's count_nonzero is an np.intp), so fit's
    history and evaluate(return_dict=True) printed {'accuracy': np.float64(0.25)}."""
    scores = np.array([[0.2, 0.8], [0.3, 0.7], [0.9, 0.1]])
    for make, y in [(metrics.Accuracy, np.array([0, 1, 0])), (metrics.Accuracy, np.eye(2)[[0, 1, 0]]),
                    (metrics.SparseCategoricalAccuracy, np.array([0, 1, 0])), (metrics.Precision, np.eye(2)[[0, 1, 0]]),
                    (metrics.AUC, np.eye(2)[[0, 1, 0]]), (metrics.MeanSquaredError, np.eye(2)[[0, 1, 0]])]:
        m = make()
        m.update_state(y, scores)
        assert type(m.result()) is float, make


@pytest.mark.parametrize("make", [metrics.Precision, metrics.Recall, metrics.AUC, metrics.BinaryAccuracy])
def test_elementwise_metrics_check_integer_labels_before_one_hot_encoding_them(make):
    """Integer labels against (N, C) scores are one-hot encoded: 5 of two classes was an
    IndexError, and -1 (the last class) or 1.5 (class 1) were silently taken."""
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    for bad, message in ((5, "label 5 at index 1 is out of range"), (-1, "label -1 at index 1 is out of range"),
                         (1.5, "got 1.5 at index 1")):
        with pytest.raises(ValueError, match=message):
            make().update_state(np.array([0, bad]), scores)
    m = make()
    m.update_state(np.array([1, 0]), scores)
    reference = make()
    reference.update_state(np.array([[0, 1], [1, 0]]), scores)
    assert m.result() == reference.result()


def test_compile_refuses_mean_and_sum_of_values():
    """Mean() and Sum() take update_state(values, sample_weight); fit would have passed y_pred as
    the weights (a shape error about sample_weight, or a silent wrong mean)."""
    import convforge
    from convforge import layers

    model = convforge.Sequential([layers.Input((3,)), layers.Dense(2, activation="softmax")])
    for metric in (metrics.Mean(), metrics.Sum(name="total")):
        with pytest.raises(TypeError, match=r"cannot be one of compile's metrics.*use Mean\(fn\)"):
            model.compile("sgd", "sparse_categorical_crossentropy", metrics=[metric])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[metrics.Mean(lambda t, p: p.max(axis=1))])


@pytest.mark.parametrize("make", [metrics.AUC, lambda: metrics.AUC(curve="PR", num_thresholds=7, name="pr"),
                                  lambda: metrics.Precision(thresholds=0.3), metrics.BinaryAccuracy,
                                  lambda: metrics.SparseTopKCategoricalAccuracy(k=2), metrics.MeanSquaredError,
                                  metrics.Sum])
def test_metric_from_config_rebuilds_it(make):
    """Keras's ``type(m).from_config(m.get_config())`` (an AttributeError before)."""
    m = make()
    again = type(m).from_config(m.get_config())
    assert type(again) is type(m) and again.get_config() == m.get_config()


@pytest.mark.parametrize("weights", [None, np.array([1.0, 2.0, 0.5, 1.5])])
def test_auc_counts_a_nan_prediction_as_below_every_threshold(weights):
    """NaN sorts last, so AUC counted it above every threshold (a positive prediction): 0.5 here
    where Keras 3.15 gives 0.25 (NaN > t is false, as in Precision)."""
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, np.nan, np.nan, 0.7])
    m = metrics.AUC()
    m.update_state(y, p, sample_weight=weights)
    if weights is None:
        assert m.result() == pytest.approx(0.25)
    # The same as a score below every threshold (-1: below Keras's first one, -1e-7).
    reference = metrics.AUC()
    reference.update_state(y, np.where(np.isnan(p), -1.0, p), sample_weight=weights)
    assert m.result() == reference.result()
    np.testing.assert_array_equal(m.counts(), reference.counts())
