"""`import convforge as keras`: the Keras namespaces exist, and missing Keras names and formats say so."""

import numpy as np
import pytest

import convforge as keras


@pytest.mark.parametrize(
    "name",
    [
        "utils.to_categorical", "utils.set_random_seed", "models.Sequential", "models.load_model",
        "models.clone_model", "models.model_from_json", "Input", "layers.Conv1D", "layers.ZeroPadding1D",
        "layers.Cropping1D", "layers.UpSampling1D", "callbacks.ReduceLROnPlateau",
        "callbacks.CSVLogger", "callbacks.History", "callbacks.LearningRateScheduler", "optimizers.AdamW",
        "optimizers.Nadam", "losses.BinaryCrossentropy", "losses.Huber", "metrics.AUC", "activations.gelu",
        "regularizers.l1_l2", "regularizers.L2", "initializers.HeNormal", "initializers.he_normal",
        "datasets.mnist.load_data", "datasets.fashion_mnist.load_data", "datasets.cifar10.load_data",
    ],
)
def test_keras_names_exist(name):
    obj = keras
    for part in name.split("."):
        obj = getattr(obj, part)
    assert obj is not None


@pytest.mark.parametrize("alias,name", [("Convolution1D", "Conv1D"), ("Convolution2D", "Conv2D"),
                                        ("Convolution2DTranspose", "Conv2DTranspose"),
                                        ("SeparableConvolution2D", "SeparableConv2D"),
                                        ("MaxPool2D", "MaxPooling2D"), ("GlobalAvgPool1D", "GlobalAveragePooling1D"),
                                        ("GlobalMaxPool1D", "GlobalMaxPooling1D")])
def test_keras_layer_aliases_are_the_same_classes(alias, name):
    """Keras 3 keeps Keras 1's long names (Convolution2D, ...) as aliases; they were missing."""
    assert getattr(keras.layers, alias) is getattr(keras.layers, name)
    assert alias in keras.layers.__all__


@pytest.mark.parametrize(
    "namespace,name,message",
    [
        ("layers", "LSTM", "convforge does not support convforge.layers.LSTM: convforge has no recurrent layers"),
        # Keras's layers of the sequence and image tutorials: a hint, not "(Keras name?)".
        ("layers", "NoSuchLayer", r"\(Keras name\?\); its classes are .*Conv2D"),
        ("optimizers", "Ftrl", "use Adam, AdamW"),
        ("callbacks", "TensorBoard", "use CSVLogger"),
        ("losses", "Dice", "subclass convforge.losses.Loss"),
        ("metrics", "PearsonCorrelation", "compute it after training with numpy.corrcoef"),
        ("initializers", "STFT", r"convforge does not support convforge.initializers.STFT: use .*VarianceScaling"),
        ("initializers", "NoSuchInit", r"\(Keras name\?\); its classes are .*GlorotUniform"),
        # The classes only: losses.EPSILON (a float) was listed among them.
        ("losses", "NoSuchLoss", r"its classes are BinaryCrossentropy, BinaryFocalCrossentropy, CategoricalCrossentropy, "
                                 r"CategoricalFocalCrossentropy, CategoricalHinge, CosineSimilarity, Hinge, Huber, "
                                 r"KLDivergence, LogCosh, Loss, MeanAbsoluteError, MeanAbsolutePercentageError, "
                                 r"MeanSquaredError, MeanSquaredLogarithmicError, Poisson, "
                                 r"SparseCategoricalCrossentropy, SquaredHinge$"),
        (None, "ops", "convforge does not support convforge.ops: use NumPy functions"),
        # the subclassing guide's CustomDropout and VAE Sampling layer
        ("random", "SeedGenerator", "convforge.random.SeedGenerator: convforge's layers draw from one process-wide"),
        ("datasets", "imdb", "convforge does not support convforge.datasets.imdb: convforge has no text data sets"),
        ("datasets", "cifar100", "convforge.datasets.cifar100: convforge reads MNIST, Fashion-MNIST and CIFAR-10"),
        ("activations", "glu", "convforge does not support convforge.activations.glu: use relu, "),
        ("regularizers", "OrthogonalRegularizer", "OrthogonalRegularizer: use l1, l2 or l1_l2"),
        ("utils", "image_dataset_from_directory", "convforge does not support convforge.utils.image_dataset_from_direc"),
        ("utils", "NoSuchHelper", r"convforge does not support convforge.utils.NoSuchHelper \(Keras name\?\)$"),
        # the top level lists its own classes (Model and Sequential load lazily), not another module's
        (None, "NoSuchModel", r"\(Keras name\?\); its classes are Input, Model, Sequential$"),
    ],
)
def test_missing_keras_names_say_what_to_use(namespace, name, message):
    module = keras if namespace is None else getattr(keras, namespace)
    with pytest.raises(AttributeError, match=message):
        getattr(module, name)
    assert not hasattr(module, name)  # still an AttributeError: hasattr and tools keep working
    # `from convforge.layers import LSTM`, as the guides write it: the same message, as an ImportError
    # (Python's own for an AttributeError there is a bare "cannot import name 'LSTM' from ...").
    where = "convforge" if namespace is None else f"convforge.{namespace}"
    with pytest.raises(ImportError, match=message):
        exec(f"from {where} import {name}", {})
    with pytest.raises(ImportError, match=message):
        exec(f"from {where} import {'__version__' if namespace is None else '__name__'}, {name}", {})


def test_learning_rate_schedules_are_a_keras_namespace():
    """``keras.optimizers.schedules`` as Keras code uses it: attribute access and ``from ... import``
    both work, and a Keras schedule convforge lacks says so, as the other namespaces do."""
    from convforge.optimizers.schedules import ExponentialDecay

    assert ExponentialDecay is keras.optimizers.schedules.ExponentialDecay
    with pytest.raises(AttributeError, match="convforge does not support convforge.optimizers.schedules."
                                             "PolynomialDecay: use ExponentialDecay"):
        keras.optimizers.schedules.PolynomialDecay(0.1, 1000)
    with pytest.raises(AttributeError, match=r"schedules.NoSuchDecay \(Keras name\?\); its classes are .*CosineDecay"):
        keras.optimizers.schedules.NoSuchDecay


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda s: s.ExponentialDecay(0.1, 100, 0.9, decay="x"), "'decay' of ExponentialDecay; its arguments"),
        (lambda s: s.PiecewiseConstantDecay([10], [0.1, 0.01], nme="pw"), "'nme' of PiecewiseConstantDecay"),
    ],
)
def test_keras_schedule_arguments_convforge_lacks_say_so(make, message):
    with pytest.raises(TypeError, match=f"convforge does not support the argument {message}"):
        make(keras.optimizers.schedules)


def test_keras_initializer_arguments_convforge_lacks_say_so():
    with pytest.raises(TypeError, match="convforge does not support the argument 'scale' of HeNormal; its arguments"):
        keras.initializers.HeNormal(scale=2.0)


def test_to_categorical_is_keras():
    np.testing.assert_array_equal(keras.utils.to_categorical([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert keras.utils.to_categorical(np.array([[1], [0]])).shape == (2, 2)
    with pytest.raises(ValueError, match="label 3 does not fit num_classes=3"):
        keras.utils.to_categorical([3], 3)
    with pytest.raises(ValueError, match="plot_model needs a built model"):
        keras.utils.plot_model(keras.Sequential(), to_file="model.dot")


@pytest.mark.parametrize("name", ["model.h5", "ckpt.hdf5", "model.tf"])
def test_legacy_keras_file_names_are_refused_with_the_format_used(tmp_path, name):
    """Keras 2's whole-model HDF5 and TensorFlow's format are not read or written (Keras 3's
    .keras and .weights.h5 are: tests/test_keras_file.py)."""
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    path = tmp_path / name
    with pytest.raises(ValueError, match=r"under Keras's .* name .* Use a name such as '.*(model|ckpt)\.npz'"):
        model.save(path)
    with pytest.raises(ValueError, match="under Keras's"):
        model.save_weights(path)
    with pytest.raises(ValueError, match="under Keras's"):
        keras.callbacks.ModelCheckpoint(path)
    path.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(ValueError, match="under Keras's"):
        keras.models.load_model(path)
    assert not (tmp_path / (name + ".npz")).exists()


def test_to_json_round_trip_and_keras_json_refused():
    model = keras.Sequential([keras.layers.Conv1D(4, 3, input_shape=(10, 2)), keras.layers.Flatten(),
                              keras.layers.Dense(2, kernel_regularizer=keras.regularizers.l2(1e-3))])
    clone = keras.models.model_from_json(model.to_json())
    # The input shape moves from the first layer to the model; everything else is the same.
    assert clone.input_shape == model.input_shape
    for ours, theirs in zip(model.get_config()["layers"], clone.get_config()["layers"]):
        ours["config"].pop("input_shape", None)
        assert ours == theirs
    assert keras.models.clone_model(model).count_params() == model.count_params()
    with pytest.raises(ValueError, match="written by Keras"):
        keras.models.model_from_json('{"class_name": "Sequential", "config": {}}')


def test_backend_clear_session_and_settings_as_keras():
    # keras.backend.clear_session() (tutorials call it between experiments) was an AttributeError.
    import convforge
    from convforge import layers

    first = layers.Dense(2)(convforge.Input((3,)))
    second = layers.Dense(2)(convforge.Input((3,)))
    assert second.name != first.name
    convforge.backend.clear_session()
    assert layers.Dense(2)(convforge.Input((3,))).name == "dense/output_0"  # counters reset, as Keras's
    convforge.utils.clear_session(free_memory=False)
    assert layers.Dense(2)(convforge.Input((3,))).name == "dense/output_0"
    assert (convforge.backend.image_data_format(), convforge.backend.floatx(), convforge.backend.epsilon()) == (
        "channels_last", "float32", 1e-7)
    with pytest.raises(NotImplementedError, match="no global image layout"):
        convforge.backend.set_image_data_format("channels_first")
    with pytest.raises(TypeError, match="free_memory must be True or False"):
        convforge.backend.clear_session(free_memory="yes")


def test_pad_sequences_cuts_and_fills_as_keras():
    """keras.utils.pad_sequences (Keras 3.15.1's results, worked out here): the last steps kept,
    filled up in front, by default; 'post' for either; maxlen 0 and empty inputs give empty rows."""
    pad = keras.utils.pad_sequences
    sequences = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    assert pad(sequences).tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4], [0] * 5, [5, 6, 7, 8, 9]]
    assert pad(sequences).dtype == np.int32
    assert pad(sequences, maxlen=3).tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 0], [7, 8, 9]]
    assert pad(sequences, maxlen=2, padding="post", truncating="post", value=-1).tolist() == \
        [[1, 2], [4, -1], [-1, -1], [5, 6]]
    frames = pad([np.ones((2, 3)), np.zeros((4, 3))], dtype="float32")  # steps that are vectors
    assert frames.shape == (2, 4, 3) and frames[0, :2].sum() == 0 and frames[0, 2:].sum() == 6
    assert pad([], maxlen=4).shape == (0, 4) and pad(sequences, maxlen=0).shape == (4, 0)
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post'; got 'left'"):
        pad(sequences, padding="left")
    with pytest.raises(ValueError, match="maxlen must be None or an int >= 0; got -1"):
        pad(sequences, maxlen=-1)
    with pytest.raises(ValueError, match=r"sequences\[1\] must be a list or array of steps; got 7"):
        pad([[1], 7])
    with pytest.raises(ValueError, match=r"sequences\[1\] has steps of shape \(2,\)"):
        pad([np.ones((2, 3)), np.ones((1, 2))])


def test_variance_scaling_orthogonal_and_identity_initializers():
    """Keras's general initializer and the two matrix ones: their statistics and structure,
    their arguments checked, by name and object."""
    init = keras.initializers
    keras.utils.set_random_seed(0)
    for kwargs, std in [({}, np.sqrt(1 / 400)), ({"scale": 2.0, "mode": "fan_out", "distribution": "uniform"},
                                                 np.sqrt(2 / 300)),
                        ({"mode": "fan_avg", "distribution": "untruncated_normal"}, np.sqrt(1 / 350))]:
        w = init.VarianceScaling(**kwargs)((400, 300))
        assert abs(w.std() / std - 1) < 0.02, kwargs
    assert np.abs(init.VarianceScaling(distribution="normal")((400, 300))).max() <= 2 * np.sqrt(1 / 400) / 0.8796 + 1e-6
    tall = init.Orthogonal()((64, 32))
    np.testing.assert_allclose(tall.T @ tall, np.eye(32), atol=1e-5)
    wide = init.orthogonal(gain=2.0)((16, 40))
    np.testing.assert_allclose(wide @ wide.T, 4 * np.eye(16), atol=1e-5)
    filters = init.get("orthogonal")((8, 3, 3, 3)).reshape(8, -1)  # a conv kernel, OIHW: filters orthonormal
    np.testing.assert_allclose(filters @ filters.T, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(init.Orthogonal(seed=4)((5, 5)), init.Orthogonal(seed=4)((5, 5)))
    np.testing.assert_array_equal(init.Identity(gain=3.0)((2, 3)), [[3, 0, 0], [0, 3, 0]])
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5, kernel_initializer="identity", use_bias=False)])
    np.testing.assert_array_equal(model.predict(np.arange(5.0)[None], verbose=0), [[0, 1, 2, 3, 4]])
    with pytest.raises(ValueError, match="VarianceScaling mode must be 'fan_in', 'fan_out' or 'fan_avg'; got 'fan'"):
        init.VarianceScaling(mode="fan")
    with pytest.raises(ValueError, match="VarianceScaling scale must be a number > 0; got 0"):
        init.VarianceScaling(scale=0)
    with pytest.raises(ValueError, match="distribution must be 'truncated_normal', 'untruncated_normal' or 'uniform'"):
        init.VarianceScaling(distribution="gamma")
    with pytest.raises(ValueError, match=r"Identity initializes 2-D weights \(a Dense kernel\) only"):
        keras.layers.Conv2D(2, 3, kernel_initializer="identity").build((None, 5, 5, 1))
    with pytest.raises(ValueError, match="Orthogonal initializes weights of two axes or more"):
        init.Orthogonal()((4,))
    assert init.deserialize(init.serialize(init.VarianceScaling(2.0, "fan_avg", "uniform", seed=1))).get_config() == \
        {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform", "seed": 1}


def test_initializers_by_keras_class_name_and_description():
    """Keras takes 'VarianceScaling' and 'GlorotUniform' as strings, and {'class_name', 'config'}
    dicts (its serialize()'s) as initializers; convforge refused them (found by a review)."""
    layer = keras.layers.Dense(3, kernel_initializer="VarianceScaling")
    assert type(layer.kernel_initializer).__name__ == "VarianceScaling"
    assert type(keras.initializers.get("GlorotUniform")) is keras.initializers.GlorotUniform
    described = keras.initializers.get({"class_name": "VarianceScaling", "config": {"scale": 2.0}})
    assert described.get_config()["scale"] == 2.0
    from_keras = {"module": "keras.initializers", "class_name": "Orthogonal", "config": {"seed": None, "gain": 2.0},
                  "registered_name": None}
    assert keras.initializers.deserialize(from_keras).gain == 2.0
    with pytest.raises(ValueError, match="unknown initializer description"):
        keras.initializers.deserialize({"class_name": "NoSuch"})
    with pytest.raises(ValueError, match="kernel_initializer must be one of"):
        keras.layers.Dense(3, kernel_initializer="no_such")


def test_initializer_errors_name_the_argument_and_keras_aliases_work():
    with pytest.raises(ValueError, match=r"kernel_initializer: unknown initializer description"):
        keras.layers.Dense(3, kernel_initializer={"class_name": "Foo", "config": {}})
    with pytest.raises(ValueError, match=r"or Keras's class name, such as 'GlorotUniform'"):
        keras.layers.Dense(3, kernel_initializer="GlorotUniformm")
    assert type(keras.initializers.get("OrthogonalInitializer")) is keras.initializers.Orthogonal
    assert type(keras.initializers.get("IdentityInitializer")) is keras.initializers.Identity
