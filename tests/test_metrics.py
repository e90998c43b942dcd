"""Tests of convforge.metrics against hand-computed values."""

import re
import warnings

import numpy as np
import pytest

import convforge
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
        metrics.get("no_such_metric")


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
        # A class name as a string logs under that string, as Keras 3.15.1's compile does.
        (lambda: metrics.get("MeanAbsoluteError"), "MeanAbsoluteError"),
        (lambda: metrics.get("AUC"), "AUC"),
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


def test_auc_clips_scores_outside_0_1_as_keras_and_says_so_once():
    # Logits given to AUC without from_logits: Keras 3.15.1 clips them into [0, 1] (ROC 0.5759186,
    # PR 0.6040012 on these); convforge counted them as they were and gave ~0.1 on a model's logits.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    z = rng.standard_normal(200) * 3 + y
    for curve, keras_value in (("ROC", 0.5759186), ("PR", 0.6040012)):
        auc = metrics.AUC(curve=curve)
        with pytest.warns(UserWarning, match="outside \\[0, 1\\] \\(logits\\?\\).*from_logits=True"):
            auc.update_state(y[:100], z[:100])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per metric object
            auc.update_state(y[100:], z[100:])
        assert auc.result() == pytest.approx(keras_value, abs=1e-6)


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
    with pytest.raises(ValueError, match=r"thresholds\[1\] must be in \[0, 1\]; got 1.5"):
        metrics.Recall(thresholds=[0.3, 1.5])
    with pytest.raises(TypeError, match=r"thresholds\[0\] must be a number in \[0, 1\]; got 'a'"):
        metrics.Recall(thresholds=["a"])
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
    # A NaN counts below every threshold (a score can no longer be: they are clipped into [0, 1],
    # and 0 is above Keras's first threshold, -1e-7): the other samples' counts, plus each NaN's
    # weight in the negatives' column of its class (FN for a positive, TN for a negative) throughout.
    w = np.ones(4) if weights is None else weights
    known = ~np.isnan(p)
    reference = metrics.AUC()
    reference.update_state(y[known], p[known], sample_weight=w[known])
    np.testing.assert_array_equal(m.tp, reference.tp)
    np.testing.assert_array_equal(m.fp, reference.fp)
    np.testing.assert_array_equal(m.fn, reference.fn + w[1])
    np.testing.assert_array_equal(m.tn, reference.tn + w[2])


# --------------------------------------------------------------------------- Precision and Recall with
# thresholds lists, top_k and class_id; F1Score and FBetaScore (Keras 3.15's semantics). The
# expected values are worked out by hand in the comments; the same cases against real Keras are
# in test_keras_reference.py.

_LABELS3 = np.array([0, 2, 1])
_SCORES3 = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5]])


def _precision_recall(y, p, sample_weight=None, **kwargs):
    results = []
    for make in (metrics.Precision, metrics.Recall):
        m = make(**kwargs)
        m.update_state(y, p, sample_weight=sample_weight)
        results.append(m.result())
    return results


def test_precision_and_recall_give_one_value_per_threshold():
    """thresholds=[0.3, 0.7] was a TypeError ("take one threshold"). At 0.3 the positives are
    0.9, 0.8, 0.4, 0.6: tp 3, fp 1, fn 0; at 0.7 they are 0.9, 0.8: tp 1, fp 1, fn 2."""
    y, p = np.array([1, 0, 1, 0, 1]), np.array([0.9, 0.8, 0.4, 0.2, 0.6])
    precision, recall = _precision_recall(y, p, thresholds=[0.3, 0.7])
    np.testing.assert_allclose(precision, [0.75, 0.5])
    np.testing.assert_allclose(recall, [1.0, 1 / 3])
    # A list of one threshold gives a number, as Keras's result()[0].
    assert _precision_recall(y, p, thresholds=[0.3]) == [0.75, 1.0]
    # The counts accumulate per threshold over batches; reset_state zeroes them.
    m = metrics.Precision(thresholds=(0.3, 0.7))
    m.update_state(y[:2], p[:2])
    m.update_state(y[2:], p[2:])
    np.testing.assert_allclose(m.result(), [0.75, 0.5])
    m.reset_state()
    np.testing.assert_array_equal(m.result(), [0.0, 0.0])


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        # top 1 = the argmax: rows predict 0, 1, 2 for labels 0, 2, 1: one hit of 3.
        ({"top_k": 1}, [1 / 3, 1 / 3]),
        # top 2: {0, 1}, {1, 2}, {2, 1}: every label in, tp 3 of 6 positives.
        ({"top_k": 2}, [0.5, 1.0]),
        # top 2 and above 0.35: 0.5 (label), 0.6 (not), 0.5 (not): tp 1, fp 2, fn 2.
        ({"top_k": 2, "thresholds": 0.35}, [1 / 3, 1 / 3]),
        # column 2 alone: targets [0, 1, 0], scores [0.2, 0.3, 0.5]; 0.5 is not above 0.5.
        ({"class_id": 2}, [0.0, 0.0]),
        ({"class_id": 2, "thresholds": 0.25}, [0.5, 1.0]),
        # class 0 predicted (the argmax) only in row 0, which is class 0.
        ({"top_k": 1, "class_id": 0}, [1.0, 1.0]),
        # column 1 is in every row's top 2; only row 2 is class 1.
        ({"top_k": 2, "class_id": 1}, [1 / 3, 1.0]),
        ({"class_id": 1, "thresholds": [0.25, 0.5]}, [[1 / 3, 0.0], [1.0, 0.0]]),
    ],
)
def test_precision_and_recall_with_top_k_and_class_id(kwargs, expected):
    """Precision(top_k=...) and Precision(class_id=...) were refused (compute them after training)."""
    for y in (np.eye(3)[_LABELS3], _LABELS3):  # one-hot, or integer labels (convforge's extension)
        for value, want in zip(_precision_recall(y, _SCORES3, **kwargs), expected):
            np.testing.assert_allclose(value, want)


def test_top_k_breaks_ties_towards_the_lower_column():
    """Keras's documented examples: the top 2 of four equal scores are the first two."""
    assert _precision_recall([0, 0, 1, 1], [1.0, 1.0, 1.0, 1.0], top_k=2)[0] == 0.0
    assert _precision_recall([0, 0, 1, 1], [1.0, 1.0, 1.0, 1.0], top_k=4)[0] == 0.5
    assert _precision_recall([[0, 1, 0]], [[0.4, 0.4, 0.2]], top_k=1)[0] == 0.0


def test_precision_follows_keras_at_the_edges():
    """Keras casts targets to bool (0.3 is a positive target), compares in float32 (a float32
    0.3 is not above the threshold 0.3; in float64 it is), and for evenly spaced thresholds
    0, 1/(n-1), ..., 1 clips the scores to [0, 1] (1.5 is not above the threshold 1 there, but
    is when the thresholds are not evenly spaced). Values from Keras 3.15."""
    assert _precision_recall([[0.3], [0.0], [1.0]], [[0.9], [0.9], [0.9]])[0] == pytest.approx(2 / 3)
    score = np.array([np.float32(0.3)])
    assert _precision_recall([1], score, thresholds=0.3) == [0.0, 0.0]
    assert _precision_recall([1], score, thresholds=0.3, dtype="float64") == [1.0, 1.0]
    y, p = np.array([[1], [0], [1]]), np.array([[1.5], [-0.5], [1.0]])
    np.testing.assert_array_equal(_precision_recall(y, p, thresholds=[0, 0.5, 1])[0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(_precision_recall(y, p, thresholds=[0, 0.4, 1])[0], [1.0, 1.0, 1.0])
    # Not clipped below: a score 0 is not above the threshold 0.
    np.testing.assert_array_equal(_precision_recall(y, [[0.0], [0.5], [1.0]], thresholds=[0, 0.5, 1])[1],
                                  [0.5, 0.5, 0.0])


def test_precision_weighs_each_output_with_weights_of_y_pred_shape():
    """Keras's sample_weight may have y_pred's shape. Above 0.5: (0,0) w1 hit, (0,2) w3 miss,
    (1,1) w5 hit, (1,2) w6 miss, (2,0) w7 miss, (2,2) w9 hit: 15 / 31 (Keras 3.15: 0.48387095)."""
    p = np.array([[0.6, 0.5, 0.7], [0.2, 0.9, 0.6], [0.8, 0.1, 0.9]])
    w = np.arange(1.0, 10.0).reshape(3, 3)
    assert _precision_recall(np.eye(3), p, sample_weight=w)[0] == pytest.approx(15 / 31)
    # With class_id the column's weights: column 1 holds (1,1) w5 above 0.5, a hit.
    assert _precision_recall(np.eye(3), p, sample_weight=w, class_id=1) == [1.0, 1.0]
    # One weight per sample weighs the sample's outputs alike.
    assert _precision_recall(np.eye(3), p, sample_weight=[1.0, 0.0, 0.0])[0] == 0.5


def test_precision_of_sequences_weighs_steps_or_samples():
    """(batch, steps, classes) scores: weights per step, as Keras, or per sample (Keras fails on
    those). Above 0.5: (0,0) class 0 hit, (0,1) class 0 miss (label 1), (1,0) and (1,1) class 1
    hits: 3 / 4; weighted by steps [[1, 2], [3, 4]] tp 1 + 3 + 4, fp 2: 0.8; by samples [1, 0]:
    1 / 2."""
    y = np.eye(2)[[[0, 1], [1, 1]]]
    p = np.array([[[0.8, 0.2], [0.6, 0.4]], [[0.3, 0.7], [0.1, 0.9]]])
    assert _precision_recall(y, p)[0] == 0.75
    assert _precision_recall(y, p, sample_weight=np.array([[1.0, 2.0], [3.0, 4.0]]))[0] == pytest.approx(0.8)
    assert _precision_recall(y, p, sample_weight=np.array([1.0, 0.0]))[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"precision_\d+: sample_weight must be a number or have shape \(2,\)"):
        _precision_recall(y, p, sample_weight=np.ones((2, 3)))


@pytest.mark.parametrize(
    "make,update,error,message",
    [
        (lambda: metrics.Precision(class_id=3), True, ValueError,
         r"precision: class_id=3 is out of range for y_pred with 3 classes \(columns 0 to 2\)"),
        (lambda: metrics.Recall(class_id=0), "1d", ValueError, r"recall: with class_id, y_pred must have shape"),
        (lambda: metrics.Recall(top_k=4), True, ValueError, r"recall: top_k=4 is more than the 3 scores"),
        (lambda: metrics.Precision(class_id=-1), False, ValueError, r"class_id must be None or an int >= 0 .*; got -1"),
        (lambda: metrics.Precision(class_id=1.5), False, ValueError, r"class_id must be None .*; got 1.5"),
        (lambda: metrics.Precision(top_k=0), False, ValueError, r"top_k must be an int >= 1 .*; got 0"),
        (lambda: metrics.Recall(top_k=True), False, ValueError, r"top_k must be an int >= 1"),
        (lambda: metrics.Precision(thresholds=-0.1), False, ValueError, r"thresholds must be in \[0, 1\]; got -0.1"),
        (lambda: metrics.Precision(thresholds=[]), False, ValueError, r"thresholds must be a number or a non-empty"),
        (lambda: metrics.Precision(dtype="float16"), False, ValueError, r"Precision: dtype must be None, 'float32'"),
        (lambda: metrics.F1Score(average="samples"), False, ValueError,
         r"average must be None, 'micro', 'macro' or 'weighted'; got 'samples'"),
        (lambda: metrics.FBetaScore(beta=0.0), False, ValueError, r"beta must be a number > 0 .*; got 0.0"),
        (lambda: metrics.FBetaScore(beta="2"), False, ValueError, r"beta must be a number > 0"),
        (lambda: metrics.F1Score(threshold=0.0), False, ValueError, r"threshold must be None .* 0 < threshold <= 1"),
        (lambda: metrics.F1Score(threshold=1.5), False, ValueError, r"0 < threshold <= 1; got 1.5"),
    ],
)
def test_bad_arguments_of_the_classification_metrics_are_named(make, update, error, message):
    with pytest.raises(error, match=message):
        m = make()
        if update == "1d":
            m.update_state([1, 0], [0.7, 0.2])
        elif update:
            m.update_state(np.eye(3)[_LABELS3], _SCORES3)


def test_precision_and_recall_configs_are_keras_s():
    """Keras 3.15's get_config: name, dtype ('float32' for None), thresholds as given."""
    assert metrics.Precision().get_config() == {"name": "precision", "dtype": "float32", "thresholds": None,
                                                "top_k": None, "class_id": None}
    m = metrics.Recall([0.2, 0.6], 2, 1, "r", "float64")  # Keras's positional order
    assert m.get_config() == {"name": "r", "dtype": "float64", "thresholds": [0.2, 0.6], "top_k": 2, "class_id": 1}
    again = metrics.Recall.from_config(m.get_config())
    assert again.get_config() == m.get_config()
    assert metrics.get(metrics.serialize(m)).get_config() == m.get_config()


# F1Score and FBetaScore. Rows: ties (0.5, 0.5) predict classes 0 and 1; all-zero scores predict
# nothing; then class 2 and class 1. Per class, tp/fp/fn: class 0 1/0/0, class 1 1/1/1, class 2
# 1/0/0, so F1 = [1, 0.5, 1]; micro from tp 3, fp 1, fn 1: 0.75; macro 2.5 / 3; weighted by the
# classes' targets [1, 2, 1]: 3 / 4. Keras 3.15 gives the same (to its epsilon, 1e-7).
_F_Y = np.eye(3)[[0, 1, 2, 1]]
_F_P = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
_F_W = np.array([1.0, 2.0, 0.5, 3.0])


@pytest.mark.parametrize("average,expected", [(None, [1.0, 0.5, 1.0]), ("micro", 0.75), ("macro", 2.5 / 3),
                                              ("weighted", 0.75)])
def test_f1_score_as_keras(average, expected):
    m = metrics.F1Score(average=average)
    m.update_state(_F_Y[:2], _F_P[:2])
    m.update_state(_F_Y[2:], _F_P[2:])  # counts accumulate over batches
    np.testing.assert_allclose(m.result(), expected, rtol=1e-6)
    assert (type(m.result()) is float) == (average is not None)
    m.reset_state()  # keeps the number of classes, as Keras
    np.testing.assert_array_equal(m.result(), np.zeros(3) if average is None else 0.0)
    # A threshold: 0.3 is not above 0.3, so the same predictions here.
    m = metrics.F1Score(average=average, threshold=0.3)
    m.update_state(_F_Y, _F_P)
    np.testing.assert_allclose(m.result(), expected, rtol=1e-6)


@pytest.mark.parametrize("average,expected", [
    # class 1: tp 3 (row 3), fp 1 (row 0), fn 2 (row 1): P 3/4, R 3/5, F2 = 5 P R / (4 P + R) = 0.625
    (None, [1.0, 0.625, 1.0]),
    # tp 1 + 0.5 + 3, fp 1, fn 2: P 4.5/5.5, R 4.5/6.5
    ("micro", 5 * (4.5 / 5.5) * (4.5 / 6.5) / (4 * 4.5 / 5.5 + 4.5 / 6.5)),
    ("macro", 2.625 / 3),
    # weights of the classes' targets: 1, 2 + 3, 0.5
    ("weighted", (1.0 + 0.625 * 5 + 0.5) / 6.5),
])
def test_fbeta_score_weighs_samples_as_keras(average, expected):
    m = metrics.FBetaScore(average=average, beta=2.0)
    m.update_state(_F_Y, _F_P, sample_weight=_F_W)
    np.testing.assert_allclose(m.result(), expected, rtol=1e-6)


def test_f1_score_of_multi_label_targets_with_a_threshold():
    """threshold=0.5, several classes per row: class 0 tp 2; class 1 tp 1, fp 1; class 2 fn 1."""
    y = np.array([[1, 1, 0], [1, 0, 1]])
    p = np.array([[0.9, 0.7, 0.2], [0.6, 0.8, 0.4]])
    m = metrics.F1Score(threshold=0.5)
    m.update_state(y, p)
    np.testing.assert_allclose(m.result(), [1.0, 2 / 3, 0.0], rtol=1e-6, atol=1e-6)
    assert m.get_config() == {"name": "f1_score", "dtype": "float32", "average": None, "threshold": 0.5}


def test_f1_score_wants_one_hot_targets_as_keras():
    """Keras requires y_true and y_pred of shape (batch, classes); (N, 1) labels against (N, 3)
    scores broadcast silently there, a wrong score: here an error that says what to pass."""
    for y in (np.array([0, 1, 2, 1]), np.array([[0], [1], [2], [1]])):
        with pytest.raises(ValueError, match=r"f1_score: y_true and y_pred must both have shape \(batch, classes\).*"
                                             r"np.eye\(classes\)\[labels\]"):
            metrics.F1Score().update_state(y, _F_P)
    m = metrics.F1Score()
    assert m.result().shape == (0,) and metrics.F1Score(average="macro").result() == 0.0  # nothing seen yet
    m.update_state(_F_Y, _F_P)
    with pytest.raises(ValueError, match="its first batch had 3 classes, this one 4"):
        m.update_state(np.eye(4), np.eye(4))
    m.reset_state()
    with pytest.raises(ValueError, match="its first batch had 3 classes"):
        m.update_state(np.eye(4), np.eye(4))


def test_f1_and_fbeta_names_and_configs_are_keras_s():
    assert metrics.FBetaScore(beta=2.0).get_config() == {"name": "fbeta_score", "dtype": "float32", "average": None,
                                                         "beta": 2.0, "threshold": None}
    m = metrics.F1Score("macro", 0.4, "f1")
    assert m.get_config() == {"name": "f1", "dtype": "float32", "average": "macro", "threshold": 0.4}
    assert metrics.F1Score.from_config(m.get_config()).get_config() == m.get_config()
    assert type(metrics.get("f1_score")) is metrics.F1Score and metrics.get("f1_score").name == "f1_score"
    assert type(metrics.get("FBetaScore")) is metrics.FBetaScore
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics.get("fbeta_score")  # as Keras: no such function
    again = metrics.get(metrics.serialize(metrics.FBetaScore(average="weighted", beta=0.5, name="f05")))
    assert again.get_config() == {"name": "f05", "dtype": "float32", "average": "weighted", "beta": 0.5,
                                  "threshold": None}


class _TruePositives(metrics.Metric):
    """The training guide's CategoricalTruePositives, in NumPy: state in add_variable, the variable
    itself returned by result(), no reset_state of its own."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        hits = (np.argmax(y_pred, axis=1) == np.asarray(y_true).reshape(-1)).astype(np.float32)
        if sample_weight is not None:
            hits = hits * np.asarray(sample_weight, np.float32).reshape(-1)
        self.true_positives.assign_add(np.sum(hits))

    def result(self):
        return self.true_positives


def test_a_metric_of_ones_own_keeps_keras_3_variables():
    """``Metric.add_variable`` (and ``add_weight``), Keras 3's way to keep a metric's state, was
    missing (a bare AttributeError at the guide's metric). The variable takes assign/assign_add,
    reads as its number, resets to its initial value by default, and a result() returning it
    gives fit's logs a float."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    convforge.seed(1)
    model = convforge.Sequential([convforge.Input((8,)), convforge.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[_TruePositives()])
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert all(type(v) is float for v in history.history["categorical_true_positives"])
    metric = _TruePositives()
    metric.update_state(y, model.predict(x, verbose=0))
    assert metric.result() == float((model.predict(x, verbose=0).argmax(1) == y).sum())
    assert float(metric.true_positives) == metric.result() and metric.true_positives.numpy().shape == ()
    metric.reset_state()  # the default: every variable back to its initial value
    assert metric.result() == 0.0
    counts = metric.add_weight(shape=(3,), initializer="ones", name="counts")
    counts.assign_add([1, 2, 3])
    np.testing.assert_array_equal(np.asarray(counts), [2, 3, 4])
    assert (counts * 2).tolist() == [4, 6, 8] and [v.name for v in metric.variables] == ["ctp", "counts"]
    metric.reset_state()
    np.testing.assert_array_equal(counts.numpy(), [1, 1, 1])
    with pytest.raises(ValueError, match=r"assign: metric variable 'counts' has shape \(3,\); got a value of shape \(2,\)"):
        counts.assign([1, 2])
    with pytest.raises(NotImplementedError, match="must implement reset_state"):
        metrics.Metric().reset_state()


class _Count(metrics.Metric):
    def __init__(self, name="count", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n = self.add_variable(shape=(), initializer="zeros", name="n")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n.assign_add(len(y_true))

    def result(self):
        return self.n


def test_metric_variables_survive_an_evaluate_inside_fit():
    """The second read: an evaluate from a callback set the metrics' state aside and back by copies,
    which unlinked a variable from the metric's list of them: fit's counts came out [11, 27] for [10,
    10], and reset_state reset the copies. The variables keep their identity and values now."""
    x, y = np.ones((10, 3), np.float32), np.ones((10, 2), np.float32)
    model = convforge.Sequential([convforge.Input((3,)), convforge.layers.Dense(2)])
    metric = _Count()
    model.compile("sgd", "mse", metrics=[metric])
    inner = []

    class EvaluateInside(convforge.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            inner.append(self.model.evaluate(x[:3], y[:3], verbose=0, return_dict=True)["count"])

    history = model.fit(x, y, epochs=2, batch_size=5, verbose=0, callbacks=[EvaluateInside()])
    assert history.history["count"] == [10.0, 10.0] and inner == [3.0] * 4
    assert metric.n is metric.variables[0] and float(metric.n) == 10.0
    metric.reset_state()
    assert metric.result() == 0.0


def test_metric_variables_read_and_refuse_as_keras_s():
    metric = metrics.Metric()
    n = metric.add_variable((), "zeros", name="n")
    assert (n == 0) and not (n != 0) and n ** 2 == 0 and abs(n - 3) == 3 and n // 2 == 0
    v = metric.add_variable((3,), "ones", dtype="int32", name="v")
    v.assign_add(2)
    assert v[0] == 3 and len(v) == 3 and v.numpy().tolist() == [3, 3, 3]
    with pytest.raises(TypeError, match="cannot be used as a boolean"):
        bool(n)  # Keras's rule: `if self.count:` read 0 as True
    for bad, message in ((lambda: n.assign(None), "holds float32 numbers; got NoneType None"),
                         (lambda: v.assign_add(0.7), "holds int32 numbers; got float 0.7"),
                         (lambda: metric.add_variable((2.5,), "zeros"), "shape must be a tuple of non-negative ints"),
                         (lambda: metric.add_variable(True, "zeros"), "shape must be a tuple of non-negative ints"),
                         (lambda: metric.add_variable((), "zeros", dtype="str"),
                          "dtype must be a number type such as 'float32' or 'int32'; got 'str'")):
        with pytest.raises(ValueError, match=re.escape(message)):
            bad()


# ---------------------------------------------------------------- regression and loss metrics


def test_root_mean_squared_error_is_the_root_of_everything_seen():
    """Not the mean of the batches' roots: sqrt(sum w_i mean_k (y - p)^2 / sum w_i)."""
    rng = np.random.default_rng(0)
    metric = metrics.RootMeanSquaredError()
    ys, ps, ws = [], [], []
    for n in (3, 7, 5):
        y, p, w = rng.standard_normal((n, 2)), rng.standard_normal((n, 2)), rng.uniform(0, 2, n)
        metric.update_state(y, p, sample_weight=w)
        ys.append(y), ps.append(p), ws.append(w)
    y, p, w = np.concatenate(ys), np.concatenate(ps), np.concatenate(ws)
    assert metric.result() == pytest.approx(np.sqrt((w * ((y - p) ** 2).mean(axis=1)).sum() / w.sum()), rel=1e-12)
    metric.reset_state()
    assert np.isnan(metric.result())
    metric.update_state([1.0, 2.0], [[1.0], [4.0]])  # targets (n,) against a column output
    assert metric.result() == pytest.approx(np.sqrt(2.0))


def test_r2_score_matches_its_formula_per_output():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((40, 3)) * [1.0, 2.0, 5.0]
    p = y + rng.standard_normal((40, 3)) * 0.5
    per_output = 1 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    for aggregation, expected in [("uniform_average", per_output.mean()),
                                  ("variance_weighted_average",
                                   np.average(per_output, weights=((y - y.mean(axis=0)) ** 2).sum(axis=0))),
                                  (None, per_output)]:
        metric = metrics.R2Score(class_aggregation=aggregation)
        for part in np.array_split(np.arange(40), 3):  # over batches
            metric.update_state(y[part], p[part])
        np.testing.assert_allclose(metric.result(), expected, rtol=1e-12)
    adjusted = metrics.R2Score(num_regressors=4)
    adjusted.update_state(y[:, :1], p[:, :1])
    assert adjusted.result() == pytest.approx(1 - (1 - per_output[0]) * 39 / 35, rel=1e-12)
    constant = metrics.R2Score()
    constant.update_state(np.ones((4, 1)), np.zeros((4, 1)))
    assert constant.result() == 0.0  # Keras's value for a constant target (no variance), not -inf
    with pytest.raises(ValueError, match="class_aggregation must be"):
        metrics.R2Score(class_aggregation="macro")
    with pytest.raises(ValueError, match="num_regressors must be an int >= 0"):
        metrics.R2Score(num_regressors=-1)
    with pytest.raises(ValueError, match=r"targets and outputs of one shape \(batch, outputs\)"):
        metrics.R2Score().update_state(np.ones((4, 2)), np.ones((4, 3)))
    with pytest.warns(UserWarning, match="adjusted R2 is undefined"):
        few = metrics.R2Score(num_regressors=5)
        few.update_state(y[:3, :1], p[:3, :1])
        few.result()


@pytest.mark.parametrize("name,cls,logged", [
    ("mape", metrics.MeanAbsolutePercentageError, "mape"),
    ("msle", metrics.MeanSquaredLogarithmicError, "msle"),
    ("root_mean_squared_error", metrics.RootMeanSquaredError, "root_mean_squared_error"),
    ("r2_score", metrics.R2Score, "r2_score"),
    ("kl_divergence", metrics.KLDivergence, "kl_divergence"),
    ("cosine_similarity", metrics.CosineSimilarity, "cosine_similarity"),
    ("binary_crossentropy", metrics.BinaryCrossentropy, "binary_crossentropy"),
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalCrossentropy, "sparse_categorical_crossentropy"),
    ("log_cosh_error", metrics.LogCoshError, "log_cosh_error"),
    ("bce", metrics.BinaryCrossentropy, "bce"),
    ("LogCoshError", metrics.LogCoshError, "LogCoshError"),  # a class name logs as given, as in Keras
    ("RootMeanSquaredError", metrics.RootMeanSquaredError, "RootMeanSquaredError"),
])
def test_regression_and_loss_metrics_by_name(name, cls, logged):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == logged
    again = metrics.get(metrics.serialize(metric))
    assert type(again) is cls and again.get_config() == metric.get_config()


def test_loss_metrics_are_the_losses_values_and_cosine_is_positive():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 12)
    z = rng.standard_normal((12, 4))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    metric = metrics.SparseCategoricalCrossentropy()
    metric.update_state(labels, probs)
    assert metric.result() == pytest.approx(-np.log(probs[np.arange(12), labels]).mean(), rel=1e-12)
    logits = metrics.CategoricalCrossentropy(from_logits=True)
    logits.update_state(np.eye(4)[labels], z)
    assert logits.result() == pytest.approx(metric.result(), rel=1e-12)
    cosine = metrics.CosineSimilarity()
    cosine.update_state(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [0.0, -1.0]]))
    assert cosine.result() == pytest.approx(0.0) and cosine.direction == "up"
    with pytest.raises(ValueError, match="categorical_crossentropy expects one-hot labels"):
        metrics.CategoricalCrossentropy().update_state(labels, probs)


def test_regression_metrics_in_fit_history():
    convforge.seed(0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1).astype(np.float32)
    model = convforge.Sequential([convforge.Input((3,)), convforge.layers.Dense(1)])
    model.compile(convforge.optimizers.SGD(0.1), loss="log_cosh",
                  metrics=["mse", metrics.RootMeanSquaredError(), metrics.R2Score(), "mape"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "mse", "root_mean_squared_error", "r2_score", "mape"}
    assert history.history["r2_score"][-1] > 0.95 > history.history["r2_score"][0]
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    assert scores["root_mean_squared_error"] == pytest.approx(np.sqrt(scores["mse"]), rel=1e-5)


def _confusion(t, p, classes, w=None):
    m = np.zeros((classes, classes))
    for i, (a, b) in enumerate(zip(np.ravel(t), np.ravel(p))):
        if 0 <= a < classes and 0 <= b < classes:
            m[a, b] += 1 if w is None else np.ravel(w)[i]
    return m


def test_mean_iou_is_the_mean_overlap_of_the_classes_present():
    rng = np.random.default_rng(4)
    t = rng.integers(0, 3, (6, 4, 4))  # a class per pixel; class 3 of 4 never occurs
    scores = rng.random((6, 4, 4, 4))
    scores[..., 3] = 0  # ... nor is it predicted: left out of the mean
    p = scores.argmax(axis=-1)
    m = _confusion(t, p, 4)
    union = m.sum(axis=0) + m.sum(axis=1) - np.diag(m)
    expected = np.mean(np.diag(m)[:3] / union[:3])
    metric = metrics.MeanIoU(num_classes=4, sparse_y_pred=False)
    metric.update_state(t[:3], scores[:3])
    metric.update_state(t[3:], scores[3:])
    assert metric.result() == pytest.approx(expected, rel=1e-6)
    ids = metrics.MeanIoU(4)
    ids.update_state(t, p)
    assert ids.result() == pytest.approx(expected, rel=1e-6)
    one = metrics.IoU(4, target_class_ids=[1])
    one.update_state(t, p)
    assert one.result() == pytest.approx(m[1, 1] / union[1], rel=1e-6)
    w = rng.integers(0, 3, t.shape).astype(float)
    weighted = metrics.OneHotMeanIoU(4)
    weighted.update_state(np.eye(4)[t], scores, sample_weight=w)
    mw = _confusion(t, p, 4, w)
    union_w = mw.sum(axis=0) + mw.sum(axis=1) - np.diag(mw)
    assert weighted.result() == pytest.approx(np.mean(np.diag(mw)[:3] / union_w[:3]), rel=1e-6)
    mask = metrics.BinaryIoU(target_class_ids=[1], threshold=0.3)
    mask.update_state(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.4, 0.1]))  # tp 1, fn 1, fp 1
    assert mask.result() == pytest.approx(1 / 3, rel=1e-6)


def test_iou_metrics_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"pass sparse_y_pred=False"):
        metrics.MeanIoU(3).update_state(np.array([0, 1, 2]), np.random.default_rng(0).random((3, 3)))
    with pytest.raises(ValueError, match=r"y_pred must be class ids \(whole numbers\); got 0\.7"):
        metrics.MeanIoU(3).update_state(np.array([0, 1]), np.array([0.7, 1.0]))
    with pytest.raises(ValueError, match=r"target class id 3 is out of range: class ids are in \[0, 3\)"):
        metrics.IoU(3, target_class_ids=[0, 3])
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        metrics.MeanIoU(0)
    with pytest.raises(ValueError, match="does not fit targets"):
        metrics.MeanIoU(3).update_state(np.zeros((2, 4), int), np.zeros((2, 4), int), sample_weight=np.ones(3))
    saved = metrics.serialize(metrics.OneHotIoU(5, [1, 2]))
    fresh = metrics.OneHotIoU(5, [1, 2]).get_config()  # 'one_hot_io_u_1': the process's second
    assert metrics.get(saved).get_config() == {**fresh, "name": "one_hot_io_u"}


def test_new_metrics_take_name_none_and_check_their_inputs():
    """name=None is the default name (it was '_batch_mean' or None); RMSE's inputs: a number is a
    batch of one, an empty batch adds nothing, shapes that do not match say so."""
    for cls, default in [(metrics.MeanAbsolutePercentageError, "mean_absolute_percentage_error"),
                         (metrics.KLDivergence, "kl_divergence"), (metrics.RootMeanSquaredError, "root_mean_squared_error"),
                         (metrics.R2Score, "r2_score")]:
        assert cls(name=None).name == default
    assert metrics.MeanIoU(3, name=None).name == "mean_io_u" and metrics.BinaryIoU(name=None).name == "binary_io_u"
    rmse = metrics.RootMeanSquaredError()
    rmse.update_state(1.0, 2.0)
    rmse.update_state(np.zeros((0, 1)), np.zeros((0, 1)))
    assert rmse.result() == 1.0
    with pytest.raises(ValueError, match=r"root_mean_squared_error: y_true of shape \(2, 2\) does not match y_pred"):
        rmse.update_state(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="does not match"):
        rmse.update_state(np.ones(6), np.ones((2, 3)))  # not silently reshaped
    mape = metrics.MeanAbsolutePercentageError()
    mape.update_state(np.zeros((0, 2)), np.zeros((0, 2)))
    assert np.isnan(mape.result())
    with pytest.raises(ValueError, match="metric 'MeanIoU' needs num_classes: pass the object"):
        metrics.get("MeanIoU")


def test_confusion_counts_add_up():
    """TruePositives, FalsePositives, TrueNegatives, FalseNegatives of one batch: each output in
    one cell; their sum is every output, and Precision and Recall are made of them."""
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], dtype=np.float32)
    p = np.array([[0.9, 0.2], [0.6, 0.1], [0.4, 0.8], [0.3, 0.7]], dtype=np.float32)
    cells = {}
    for cls in (metrics.TruePositives, metrics.FalsePositives, metrics.TrueNegatives, metrics.FalseNegatives):
        metric = cls()
        metric.update_state(y, p)
        cells[metric.name] = metric.result()
    assert cells == {"true_positives": 3.0, "false_positives": 1.0, "true_negatives": 3.0, "false_negatives": 1.0}
    per_threshold = metrics.TruePositives(thresholds=[0.5, 0.85])
    per_threshold.update_state(y, p, sample_weight=[2, 1, 1, 1])
    np.testing.assert_array_equal(per_threshold.result(), [4.0, 2.0])
    assert metrics.get("false_negatives").name == "false_negatives" and metrics.FalseNegatives().direction == "down"


def test_precision_at_recall_is_the_best_precision_where_recall_reaches_it():
    """Four scores, thresholds 0, 1/3, 2/3, 1: at 0 recall 1 and precision 2/4; at 1/3 (scores above
    it: 0.4, 0.9) recall 1/2, precision 1/2; at 2/3 (0.9) recall 1/2, precision 1."""
    y = np.array([1.0, 0.0, 0.0, 1.0])
    p = np.array([0.9, 0.4, 0.2, 0.1])
    metric = metrics.PrecisionAtRecall(0.5, num_thresholds=4)
    metric.update_state(y, p)
    assert metric.result() == 1.0
    strict = metrics.PrecisionAtRecall(1.0, num_thresholds=4)
    strict.update_state(y, p)
    assert strict.result() == 0.5
    recall = metrics.RecallAtPrecision(0.9, num_thresholds=4)
    recall.update_state(y, p)
    assert recall.result() == 0.5
    with pytest.raises(ValueError, match=r"PrecisionAtRecall recall must be a number in \[0, 1\]; got 1.5"):
        metrics.PrecisionAtRecall(1.5)
    with pytest.raises(ValueError, match="num_thresholds must be an int in \\[1, 2\\*\\*24\\]; got 0"):
        metrics.SensitivityAtSpecificity(0.5, num_thresholds=0)
    assert metrics.get(metrics.serialize(metrics.SpecificityAtSensitivity(0.3, 50))).get_config()["sensitivity"] == 0.3


def test_early_stopping_on_a_count_knows_which_way_is_better():
    """mode='auto' maximises true positives and negatives and minimises false ones (it minimised
    all four, silently; Keras 3.15.1 asks for a mode)."""
    import convforge

    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    y = (x[:, :1] > 0.5).astype(np.float32)
    for metric, mode in ((metrics.TruePositives(), "max"), (metrics.FalseNegatives(), "min"),
                         (metrics.TrueNegatives(), "max"), (metrics.FalsePositives(), "min")):
        model = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="bce", metrics=[metric])
        stop = convforge.callbacks.EarlyStopping(monitor=f"val_{metric.name}", patience=0)
        model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0, callbacks=[stop])
        assert stop.mode == mode, metric.name


def test_loss_metrics_take_keras_positional_arguments():
    """Keras's order is (name, dtype, ...): Hinge('h', None) and BinaryCrossentropy('b', None, True)
    run as in Keras (the second was from_logits here, and an extra argument named the private base)."""
    assert metrics.Hinge("h", None).name == "h"
    assert metrics.BinaryCrossentropy("b", None, True).get_config()["from_logits"] is True
    with pytest.raises(TypeError, match="the argument 'dtype' of Hinge"):
        metrics.Hinge("h", "float64")


def test_metrics_take_keras_axis_and_ignore_class_at_their_defaults():
    assert metrics.CosineSimilarity("c", None, -1).name == "c"
    assert metrics.CategoricalCrossentropy("c", None, True, 0.1, -1).get_config()["label_smoothing"] == 0.1
    assert metrics.SparseCategoricalCrossentropy("s", None, True, None, -1).name == "s"
    assert metrics.MeanSquaredError("m", None).name == "m" and metrics.RootMeanSquaredError("r", None).name == "r"
    with pytest.raises(TypeError, match="the argument 'axis' of CategoricalCrossentropy"):
        metrics.CategoricalCrossentropy(axis=1)
    with pytest.raises(TypeError, match="the argument 'ignore_class' of SparseCategoricalCrossentropy"):
        metrics.SparseCategoricalCrossentropy(ignore_class=0)


# ---- names of metrics made without one, and of repeated names in the logs, as Keras 3 gives them

def _history_keys(keras, metrics, x, y):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=metrics())
    return sorted(model.fit(x, y, epochs=1, batch_size=16, verbose=0).history)


def _naming_runs(keras):
    """The same five compiles, one after another in one session (each one's names depend on what
    the process made before it)."""
    M = keras.metrics
    return [lambda: ["auc"], lambda: ["auc"], lambda: [M.AUC()], lambda: [M.AUC(), M.Precision(), "precision"],
            lambda: ["AUC", "Precision", "recall", M.TruePositives(), M.TruePositives()]]


def test_metrics_made_without_a_name_are_numbered_in_the_process():
    assert [metrics.AUC().name, metrics.AUC().name, metrics.Precision().name] == ["auc", "auc_1", "precision"]
    assert metrics.MeanIoU(3).name == "mean_io_u" and metrics.MeanIoU(3).name == "mean_io_u_1"
    assert metrics.AUC(name="roc").name == "roc" and metrics.AUC().name == "auc_2"  # a given name takes no number
    assert metrics.get("precision").name == "precision" and metrics.Precision().name == "precision_2"
    assert metrics.get("accuracy").name == "accuracy"
    convforge.backend.clear_session()
    assert metrics.AUC().name == "auc"


def test_repeated_metric_names_are_numbered_in_the_logs():
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    y = (np.random.default_rng(1).random((32, 1)) > 0.5).astype(np.float32)
    got = [_history_keys(convforge, m, x, y) for m in _naming_runs(convforge)]
    assert got == [["auc", "loss"], ["auc", "loss"], ["auc_2", "loss"], ["auc_3", "loss", "precision", "precision_1"],
                   ["AUC", "Precision", "loss", "recall", "true_positives", "true_positives_1"]]
    model = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["mae", "mae"])
    assert model.metrics_names == ["loss", "mae", "mae_1"]
    assert list(model.evaluate(x, y, verbose=0, return_dict=True)) == ["loss", "mae", "mae_1"]
    with pytest.raises(ValueError, match=r"metric names must be unique and not 'loss'; got \['mae', 'mae_1', 'mae_1'\]"):
        model.compile("sgd", "binary_crossentropy", metrics=["mae", "mae", metrics.MeanAbsoluteError(name="mae_1")])


def test_metric_names_match_real_keras():
    from model_checks import real_keras

    keras = real_keras()
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    y = (np.random.default_rng(1).random((32, 1)) > 0.5).astype(np.float32)
    keras.backend.clear_session()
    theirs = [_history_keys(keras, m, x, y) for m in _naming_runs(keras)]
    convforge.backend.clear_session()
    ours = [_history_keys(convforge, m, x, y) for m in _naming_runs(convforge)]
    assert ours == theirs
