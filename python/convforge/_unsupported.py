"""Keras names convforge does not have, and what to use instead.

Each Keras-like namespace (``convforge.layers``, ``.optimizers``, ...) ends with
``__getattr__ = unsupported.module_getattr(__name__, lambda: globals())``: an unknown
name then raises an ``AttributeError`` saying "convforge does not support X"
and what to use, instead of Python's bare "has no attribute".
"""

from __future__ import annotations

import dis
import functools
import inspect
import itertools
import numbers
import sys

_RNN = "convforge has no recurrent layers; for sequences use Conv1D + GlobalAveragePooling1D"

_SCHEDULE = ("use ExponentialDecay, InverseTimeDecay, CosineDecay, PiecewiseConstantDecay or StepDecay, or pass "
             "learning_rate=f, a function step -> lr of your own")

_DATASET = "convforge reads MNIST, Fashion-MNIST and CIFAR-10 (local files); load other data with NumPy"

HINTS: dict[str, dict[str, str]] = {
    "convforge.layers": {
        "LSTM": _RNN,
        "GRU": _RNN,
        "SimpleRNN": _RNN,
        "Bidirectional": _RNN,
        "TimeDistributed": _RNN,
        "MultiHeadAttention": "convforge has no attention layers",
        "Attention": "convforge has no attention layers",
        "Conv3D": "convforge convolves 1-D and 2-D data only",
        "MaxPooling3D": "convforge pools 1-D and 2-D data only",
        "TextVectorization": "convforge has no text preprocessing",
        "StringLookup": "convforge has no text preprocessing",
        "IntegerLookup": "map values to indices with NumPy",
    },
    "convforge.optimizers": {
        "Ftrl": "use Adam, AdamW, RMSprop, Adagrad, Nadam, Adadelta, Adamax, Lion or SGD",
        "Lamb": "use Adam, AdamW, RMSprop, Adagrad, Nadam, Adadelta, Adamax, Lion or SGD",
        "LossScaleOptimizer": "convforge trains in float32 or float64, no mixed precision",
    },
    "convforge.initializers": {
        "STFT": "use GlorotUniform, HeNormal, Orthogonal, VarianceScaling or another initializer, or a function "
                "f(shape, dtype) -> array",
    },
    "convforge.optimizers.schedules": {
        "PolynomialDecay": _SCHEDULE,
        "CosineDecayRestarts": _SCHEDULE,
    },
    "convforge.datasets": {
        "imdb": "convforge has no text data sets",
        "reuters": "convforge has no text data sets",
        "cifar100": _DATASET,
        "boston_housing": _DATASET,
        "california_housing": _DATASET,
    },
    "convforge.activations": {
        name: "use relu, relu6, leaky_relu, elu, celu, selu, gelu, swish, silu, hard_silu, mish, softplus, "
              "squareplus, sparse_plus, softsign, sigmoid, hard_sigmoid, sparse_sigmoid, log_sigmoid, tanh, "
              "hard_tanh, tanh_shrink, hard_shrink, soft_shrink, exponential, softmax, log_softmax or linear, or a "
              "Layer subclass of your own"
        for name in ("glu", "sparsemax", "threshold")
    },
    "convforge.regularizers": {
        "OrthogonalRegularizer": "use l1, l2 or l1_l2",
        "orthogonal_regularizer": "use l1, l2 or l1_l2",
    },
    "convforge.losses": {
        "Dice": "subclass convforge.losses.Loss and implement value_and_grad",
        "Tversky": "subclass convforge.losses.Loss and implement value_and_grad",
        "CTC": "convforge has no recurrent layers or CTC decoding",
        "Circle": "subclass convforge.losses.Loss and implement value_and_grad",
        "CategoricalGeneralizedCrossEntropy": "use CategoricalCrossentropy, or subclass convforge.losses.Loss",
    },
    "convforge.metrics": {
        "PearsonCorrelation": "compute it after training with numpy.corrcoef(y_true, model.predict(x))",
        "ConcordanceCorrelation": "compute it after training with NumPy",
    },
    "convforge.callbacks": {
        "TensorBoard": "use CSVLogger, or plot model.history.history with matplotlib",
        "RemoteMonitor": "use CSVLogger or a Callback of your own",
        "SwapEMAWeights": "convforge has no weight averaging",
    },
    "convforge.random": {
        name: "convforge's layers draw from one process-wide generator: seed it with convforge.utils.set_random_seed "
              "(or convforge.random.seed), draw with convforge.random.get_generator() (a NumPy Generator)"
        for name in ("SeedGenerator", "normal", "uniform", "dropout", "shuffle", "categorical", "randint",
                     "truncated_normal", "gamma", "beta", "binomial")
    },
    "convforge.utils": {
        "normalize": "normalise with NumPy: x / np.linalg.norm(x, axis=-1, keepdims=True)",
        "split_dataset": "slice the arrays with NumPy, or use fit(validation_split=...)",
        "image_dataset_from_directory": "load the images into NumPy arrays (Pillow) and pass them to fit",
        "text_dataset_from_directory": "convforge has no text preprocessing",
        "timeseries_dataset_from_array": "cut the windows with NumPy (numpy.lib.stride_tricks.sliding_window_view)",
        "array_to_img": "convert with Pillow: PIL.Image.fromarray(np.uint8(x))",
        "img_to_array": "convert with NumPy: np.asarray(image, dtype=np.float32)",
        "load_img": "load with Pillow: PIL.Image.open(path)",
        "save_img": "save with Pillow: PIL.Image.fromarray(np.uint8(x)).save(path)",
        "get_file": "convforge never downloads: fetch the file yourself and pass its path",
        "Sequence": "fit takes any object with __len__ and __getitem__ returning (x, y) batches, or a generator",
        "PyDataset": "fit takes any object with __len__ and __getitem__ returning (x, y) batches, or a generator",
        "Progbar": "convforge.progress.ProgressBar draws fit's bar",
    },
    "convforge": {
        "ops": "use NumPy functions on NumPy arrays",
        "applications": "convforge has no pretrained models; build the network with convforge.layers",
        "preprocessing": "load and scale data with NumPy; augmentation layers are in convforge.layers",
        "mixed_precision": "convforge trains in float32 or float64",
        "distribution": "for data-parallel training on several processes use convforge.distributed (MPI)",
        "Variable": "weights are NumPy arrays: layer.kernel, layer.bias, model.weights",
    },
}


_IMPORT_FROM = dis.opmap.get("IMPORT_FROM")


def _in_from_import() -> bool:
    """Whether the code asking for the attribute runs ``from module import name``: the first
    frame above the ``__getattr__`` functions is at an IMPORT_FROM instruction. Python turns an
    AttributeError there into its own bare "cannot import name 'ops' from 'convforge'", dropping
    the message; an ImportError raised instead keeps it. (False wherever this cannot be told.)"""
    try:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name in ("__getattr__", "_in_from_import"):
            frame = frame.f_back
        return frame is not None and frame.f_code.co_code[frame.f_lasti] == _IMPORT_FROM
    except (AttributeError, IndexError, ValueError):
        return False


def module_getattr(module_name: str, namespace):
    """A module ``__getattr__`` for ``module_name`` whose public names are in ``namespace()``."""
    hints = HINTS.get(module_name, {})

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        if name in hints:
            message = f"convforge does not support {module_name}.{name}: {hints[name]}"
        else:
            # Capitalised names, less constants such as losses.EPSILON (a package's lazily imported
            # names are given as None: they count).
            available = sorted(k for k, v in namespace().items() if not k.startswith("_") and k[:1].isupper()
                               and not isinstance(v, (numbers.Number, str)))
            suffix = f"; its classes are {', '.join(available)}" if available else ""
            message = f"convforge does not support {module_name}.{name} (Keras name?){suffix}"
        if _in_from_import():  # `from convforge import ops`: an ImportError, with the message
            raise ImportError(message, name=module_name)
        raise AttributeError(message)

    return __getattr__


# Keras arguments of optimizers, losses, metrics and callbacks that convforge does not take,
# with what to do instead (the layers' own list is layers/base.py's _UNSUPPORTED_ARGUMENTS).
ARGUMENT_HINTS: dict[str, str] = {
    "use_ema": "convforge keeps no moving average of the weights",
    "ema_momentum": "convforge keeps no moving average of the weights",
    "ema_overwrite_frequency": "convforge keeps no moving average of the weights",
    "loss_scale_factor": "convforge trains in float32 or float64, no loss scaling",
    "gradient_accumulation_steps": "use a larger batch_size",
    "reduction": "convforge's losses are the mean over the batch (Keras's default); weight samples with "
                 "fit(sample_weight=...)",
    "ignore_class": "give those samples sample_weight 0 in fit",
    "dtype": "losses and metrics compute in the model's dtype",
    "multi_label": "convforge's AUC is single-label",
    "label_weights": "convforge's AUC takes no label weights",
    "initial_value_threshold": "start from the first epoch's value (convforge's default)",
    # Model methods
    "include_optimizer": "model.save keeps the optimizer state; model.save_weights writes the weights alone",
    "save_format": "the file name chooses the format: .keras (Keras 3's), .npz (convforge's, which resumes fit "
                   "exactly); model.export(path, format='onnx') for other runtimes",
    "skip_mismatch": "convforge loads weights into the architecture they were saved from; copy the arrays that fit "
                     "with layer.set_weights",
    "zipped": "convforge writes .keras files zipped (Keras's default); .npz is convforge's own format",
    "validation_freq": "convforge validates after every epoch",
}


# Keras's own defaults of those arguments, which switch the feature off: convforge does exactly
# that, so code (or a Keras config) that spells the default out, Adam(use_ema=False) or
# SparseCategoricalCrossentropy(reduction="sum_over_batch_size"), runs; any other value is refused.
NEUTRAL_VALUES: dict[str, object] = {
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
    "reduction": "sum_over_batch_size",
    "axis": -1,  # the losses' class axis: convforge's is the last one
    "ignore_class": None,
    "dtype": None,
    "multi_label": False,
    "num_labels": None,
    "label_weights": None,
    "thresholds": None,  # AUC's list of thresholds (Precision and Recall take the argument)
    "summation_method": "interpolation",
    "from_sorted_ids": False,
    "input_axes": None,  # VarianceScaling's axes of the fans: convforge computes them from the layout
    "output_axes": None,
}


def ignored_keras_call(cls: type, runs: str, root: type) -> str | None:
    """The built-in class ``cls`` subclasses where the user's classes before it (a mixin after it
    is never reached first) define Keras's ``call()`` while the method convforge runs, ``runs``
    (a layer's forward, a loss's value_and_grad), is still convforge's own, not ``root``'s stub:
    that call would never run (a DoubleDense gave Dense's outputs, a ScaledMSE trained as MSE).
    None otherwise. A ``__call__`` of the user's is left alone: one that calls super() works."""
    user = itertools.takewhile(lambda k: not k.__module__.startswith("convforge."), cls.__mro__)
    if not any("call" in k.__dict__ for k in user):
        return None
    owner = next(k for k in cls.__mro__ if runs in k.__dict__)
    if owner is root or not owner.__module__.startswith("convforge."):
        return None
    return next(k for k in cls.__mro__ if k.__module__.startswith("convforge.")).__name__


def _is_neutral(name: str, value, table=None) -> bool:
    """Is ``value`` the Keras default of argument ``name`` that switches its feature off (in
    ``table``, default NEUTRAL_VALUES)?"""
    table = NEUTRAL_VALUES if table is None else table
    if name not in table:
        return False
    default = table[name]
    if default is None or isinstance(default, bool):
        return value is default
    # 0.99, -1, 'interpolation': equal and of a like type (not True for 1, not '0' for 0)
    return type(value) in (int, float, str) and type(value) is not bool and value == default \
        and isinstance(value, str) == isinstance(default, str)


def refuse_unless_default(who: str, name: str, value, hint: str | None = None) -> None:
    """A TypeError for a Keras argument that a class takes by position (its signature has it) but
    supports at Keras's default only (NEUTRAL_VALUES): ``Hinge('h', 'float64')``'s dtype, a
    metric's ``axis=1``. The message as :func:`check_arguments` gives it for a keyword."""
    if _is_neutral(name, value):
        return
    hint = hint or ARGUMENT_HINTS.get(name, "convforge takes Keras's default only")
    raise TypeError(f"convforge does not support the argument {name!r} of {who}; {hint} (only Keras's default "
                    f"{name}={NEUTRAL_VALUES[name]!r} is accepted; got {value!r})")


def check_arguments(cls, hints=None, method: str = "__init__") -> None:
    """Make ``cls.<method>`` (if ``cls`` defines it without ``**kwargs``; an ``__init__`` that is
    ``object``'s counts as one without arguments) raise, for a keyword it lacks, a TypeError
    naming the argument and what to do instead (``hints``, else ARGUMENT_HINTS, else its
    arguments), not Python's bare "unexpected keyword argument"."""
    init = cls.__dict__.get(method)
    if init is None and method == "__init__" and cls.__init__ is object.__init__:
        def init(self):  # noqa: E306 - object.__init__'s, with a signature to check against
            pass
    if init is None or getattr(init, "_convforge_checked", False):
        return
    try:
        params = inspect.signature(init).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    names = set(params)
    table = ARGUMENT_HINTS if hints is None else hints

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        unknown = [k for k in kwargs if k not in names]
        # Keras's defaults that switch a feature off: convforge's behaviour. Constructors only (the
        # table is theirs), not the Model methods that share ARGUMENT_HINTS.
        if unknown and hints is None and method == "__init__":
            neutral = [k for k in unknown if _is_neutral(k, kwargs[k])]
            if neutral:
                kwargs = {k: v for k, v in kwargs.items() if k not in neutral}
                unknown = [k for k in unknown if k not in neutral]
        if unknown:
            name = unknown[0]
            hint = table.get(name) or "its arguments are " + str(
                [p for p, v in params.items() if p != "self" and v.kind is not v.VAR_POSITIONAL])
            if hints is None and method == "__init__" and name in NEUTRAL_VALUES:
                hint += f" (only Keras's default {name}={NEUTRAL_VALUES[name]!r} is accepted; got {kwargs[name]!r})"
            where = type(self).__name__ if method == "__init__" else f"{type(self).__name__}.{method}"
            raise TypeError(f"convforge does not support the argument {name!r} of {where}; {hint}")
        return init(self, *args, **kwargs)

    checked._convforge_checked = True
    setattr(cls, method, checked)
