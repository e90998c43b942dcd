"""The compiled inference pass (convforge.models.compiled, csrc/plan/inference_plan.cpp).

``predict`` runs a model's inference steps as one C++ call. It must give the very bits the layers
give one by one (the same kernels on the same arguments) when it keeps no transformed weights,
on every ISA path and thread count; with them (the default: a small batch may take Winograd
where a layer alone does not) the bits of a plan made afresh, whatever was edited in place
before; see weights changed in place (training, set_weights) and notice replaced weight arrays;
hand the steps it has no op for to the layers (the tail); and refuse bad plans with clear errors.
"""

import importlib.util
import os
import threading
import time

import numpy as np
import pytest

import convforge
from convforge import _core, layers
from convforge import functional as F
from convforge.layers.base import WeightDict
from convforge.models import compiled
from convforge.train import lenet5
from winograd_bound import forward_magnitude

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def graph_of(model):
    return getattr(model, "_graph", model)


def layer_by_layer(model, xs):
    """The model's outputs from its layers' own inference path (no plan), internal layout."""
    g = graph_of(model)
    values = g._run([g._entries[k].convert(x) for k, x in enumerate(xs)], False, logits=False)
    return [values[i] for i in g._outputs_index]


def planned(model, xs, keep_prepared=True):
    """The plan's outputs; keep_prepared=False: with nothing kept and every batch whole, the
    layers' own algorithm choices (a chunk of the batch may choose otherwise)."""
    g = graph_of(model)
    plan = g._inference_plan()
    assert plan is not None, "the model should compile"
    chunks = [p.chunk_samples for p in plan.plans]  # the first plan's, and those after Python steps
    for p in plan.plans:
        p.keep_prepared = keep_prepared
        if not keep_prepared:
            p.chunk_samples = 0
    try:
        return plan, plan.run([g._entries[k].convert(x) for k, x in enumerate(xs)])
    finally:
        for p, chunk in zip(plan.plans, chunks):
            p.keep_prepared = True
            p.chunk_samples = chunk


def fresh_plan(model, xs):
    """The outputs of a plan made now from the model's current weights (nothing kept yet)."""
    g = graph_of(model)
    plan = compiled.compile_inference(g, g.dtype)
    return plan.run([g._entries[k].convert(x) for k, x in enumerate(xs)])


def assert_same_bits(model, xs):
    """Without kept transformed weights, the plan takes the layers' algorithms: their bits."""
    plan, got = planned(model, xs, keep_prepared=False)
    want = layer_by_layer(model, xs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    return plan


def randomize_batchnorm(model, rng):
    """Moving statistics and affine weights away from their initial 0/1 (else folding is trivial)."""
    for layer in graph_of(model).layers:
        p = layer.params
        if "moving_variance" in p:
            p["moving_variance"][...] = rng.uniform(0.5, 2.0, p["moving_variance"].shape)
            p["moving_mean"][...] = rng.standard_normal(p["moving_mean"].shape)
            for name in ("gamma", "beta"):
                if name in p:
                    p[name][...] = rng.standard_normal(p[name].shape)


def randomize_biases(model, rng):
    # Fresh layers' biases are zeros, which an op that forgot them would match: make them count.
    for layer in graph_of(model).layers:
        bias = getattr(layer, "params", {}).get("bias")
        if bias is not None:
            bias[...] = rng.standard_normal(bias.shape)


def example_resnet():
    spec = importlib.util.spec_from_file_location("train_resnet", os.path.join(ROOT, "examples", "train_resnet.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.resnet()


def inception_net(dtype="float32"):
    """Every lowered layer kind: branches joined by Concatenate, a standalone BatchNormalization,
    the merge layers, Dropout, global pooling kept as (C, 1, 1), two outputs of which one feeds on."""
    x = convforge.Input((12, 12, 3), name="x", dtype=dtype)
    stem = layers.Conv2D(8, 3, padding="same", name="stem")(x)
    stem = layers.BatchNormalization(name="stem_bn")(stem)
    stem = layers.ReLU(name="stem_relu")(stem)
    b1 = layers.Conv2D(4, 1, activation="relu", name="b1")(stem)
    b2 = layers.Conv2D(4, 3, padding="same", dilation_rate=2, name="b2")(stem)
    b2 = layers.BatchNormalization(name="b2_bn", center=False)(b2)
    b3 = layers.MaxPooling2D(3, strides=1, padding="same", name="b3_pool")(stem)
    cat = layers.Concatenate(name="cat")([b1, b2, layers.Conv2D(4, 1, name="b3")(b3)])
    pooled = layers.MaxPooling2D(2, name="pool")(cat)
    a = layers.Conv2D(12, 1, name="a")(pooled)
    b = layers.Conv2D(12, 1, name="b")(pooled)
    merged = layers.Add(name="add")([a, b, layers.Subtract(name="sub")([a, b])])
    merged = layers.Average(name="avg")([merged, layers.Multiply(name="mul")([a, b])])
    merged = layers.Dropout(0.5, name="drop")(merged)
    gmp = layers.GlobalMaxPooling2D(keepdims=True, name="gmp")(merged)
    gap = layers.GlobalAveragePooling2D(name="gap")(merged)
    features = layers.Concatenate(name="feat")([layers.Flatten(name="flat")(gmp), gap])
    features = layers.BatchNormalization(name="feat_bn")(features)
    hidden = layers.Dense(16, activation="relu", name="hidden")(features)
    head = layers.Dense(5, activation="softmax", name="head")(hidden)
    return convforge.Model(x, [head, hidden], name="inception_net")


@pytest.fixture
def plans_on(monkeypatch):
    monkeypatch.delenv("CONVFORGE_COMPILED_INFERENCE", raising=False)


# ------------------------------------------------------------------ the same bits as the layers


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_lenet5_bits_on_every_isa(isa, batch, rng, plans_on):
    model = lenet5()
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    plan = assert_same_bits(model, [x])
    steps = len(graph_of(model)._inference_steps)
    assert plan.lowered == steps  # every layer in the plan, the softmax included
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("batch", [1, 3, 40])
def test_resnet_example_folds_and_matches(isa, batch, rng, plans_on):
    model = example_resnet()
    randomize_batchnorm(model, rng)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    plan = assert_same_bits(model, [x])
    assert plan.lowered == len(graph_of(model)._inference_steps)
    text = plan.plan.describe()
    assert text.count("+batchnorm") == 9 and "global_avg_pool" in text
    # Each block's Add and the ReLU after it run in the conv that feeds the Add last.
    assert text.count("+residual") == 3 and "add(" not in text and "relu(" not in text


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_lowered_kind(dtype, rng, plans_on):
    model = inception_net(dtype)
    randomize_batchnorm(model, rng)
    x = rng.standard_normal((6, 12, 12, 3)).astype(dtype)
    plan = assert_same_bits(model, [x])
    text = plan.plan.describe()
    for op in ("conv2d", "concat", "maxpool2d", "add", "subtract", "average", "multiply", "global_max_pool",
               "global_avg_pool", "batchnorm", "dense"):
        assert op + "(" in text, op
    assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
    assert "softmax(" in text


AUGMENTED_FRONTS = {
    # Keras's image-classification tutorials: the augmentation block, then Rescaling, then convs.
    "tutorial": lambda: [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
                         layers.RandomTranslation(0.1, 0.1), layers.Rescaling(1.0 / 255)],
    "offset": lambda: [layers.Rescaling(1.0 / 127.5, offset=-1.0)],  # MobileNet's [-1, 1]
    "noise": lambda: [layers.GaussianNoise(0.1), layers.Rescaling(0.5), layers.GaussianDropout(0.2)],
}


@pytest.mark.parametrize("front", list(AUGMENTED_FRONTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_augmentation_and_rescaling_fronts_lower(front, dtype, rng, plans_on, threads):
    # They ran layer by layer, and with them the whole model (nothing after an unlowered first
    # step compiles): a one-image LeNet-5 behind a RandomFlip took 67 us against 9.5. Now the
    # augmentation and noise layers are the identity in the plan and Rescaling is its own op,
    # with the layers' bits (x * (T)scale, then + (T)offset) on any thread count and batch.
    convforge.seed(1)
    model = convforge.Sequential([layers.Input((12, 12, 3)), *AUGMENTED_FRONTS[front](),
                                  layers.Conv2D(4, 3, activation="relu"), layers.SpatialDropout2D(0.3),
                                  layers.Flatten(), layers.Dense(5)], dtype=dtype)
    for n_threads in (1, 2, 3):
        convforge.set_num_threads(n_threads)
        for batch in (1, 7, 300):  # 300 x 432 values: the rescale splits between threads
            x = rng.uniform(0, 255, (batch, 12, 12, 3)).astype(dtype)
            plan = assert_same_bits(model, [x])
            assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
    text = plan.plan.describe()
    assert text.count("rescale(") == sum(isinstance(layer, layers.Rescaling) for layer in model.layers)


def test_rescaling_in_place_and_of_the_input(rng, plans_on):
    # A Rescaling after a conv may write over the conv's output (its input dies there); one of
    # the model input must not write into the caller's array.
    model = convforge.Sequential([layers.Input((6, 6, 2)), layers.Rescaling(2.0, offset=0.5), layers.Conv2D(3, 3),
                                  layers.Rescaling(0.25, offset=-1.0), layers.Flatten(), layers.Dense(2)])
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    before = x.copy()
    assert_same_bits(model, [x])
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(before, verbose=0))


def test_a_changed_rescaling_makes_a_new_plan(rng, plans_on):
    model = convforge.Sequential([layers.Input((5, 5, 1)), layers.Rescaling(1 / 255), layers.Conv2D(2, 3)])
    x = rng.uniform(0, 255, (2, 5, 5, 1)).astype(np.float32)
    first = model.predict(x, verbose=0)
    model.layers[0].scale = 2 / 255
    np.testing.assert_allclose(model.predict(x, verbose=0) - model.layers[1].bias, 2 * (first - model.layers[1].bias),
                               rtol=1e-5)
    model.layers[0].scale = float("inf")  # not lowered: the layers' NumPy gives their infs and NaNs
    with np.errstate(all="ignore"):
        want = layer_by_layer(model, [x])[0]
        got = model.predict(x, verbose=0)
    np.testing.assert_array_equal(np.moveaxis(want, 1, -1), got)


DEPTHWISE_FRONTS = {
    "same": lambda: [layers.DepthwiseConv2D(3, padding="same")],
    "strided_multiplier": lambda: [layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu")],
    "dilated_no_bias": lambda: [layers.DepthwiseConv2D((3, 2), dilation_rate=2, padding="same", use_bias=False)],
    "separable": lambda: [layers.SeparableConv2D(6, 3, padding="same", activation="relu"),
                          layers.SeparableConv2D(5, (2, 3), strides=(2, 1), depth_multiplier=2, use_bias=False)],
    "mobilenet_block": lambda: [layers.DepthwiseConv2D(3, padding="same", use_bias=False), layers.BatchNormalization(),
                                layers.ReLU(), layers.Conv2D(8, 1)],
}


@pytest.mark.parametrize("front", list(DEPTHWISE_FRONTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_and_separable_lower_with_the_layers_bits(isa, front, dtype, rng, plans_on, threads):
    # They stopped the plan (MobileNet's blocks ran layer by layer from there on). The plan's
    # depthwise op calls the layers' kernel, SeparableConv2D's pointwise step is a 1x1 conv2d.
    convforge.seed(2)
    model = convforge.Sequential([layers.Input((11, 10, 3)), layers.Conv2D(4, 3, activation="relu"),
                                  *DEPTHWISE_FRONTS[front](), layers.GlobalAveragePooling2D(), layers.Dense(3)],
                                 dtype=dtype)
    randomize_batchnorm(model, rng)
    randomize_biases(model, rng)
    for n_threads in (1, 2, 3):
        convforge.set_num_threads(n_threads)
        for batch in (1, 5, 70):
            x = rng.standard_normal((batch, 11, 10, 3)).astype(dtype)
            plan = assert_same_bits(model, [x])
            assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
    assert "depthwise(" in plan.plan.describe()


WINDOW_FRONTS = {
    # Keras's ResNet50 stem: ZeroPadding2D(3), a 'valid' 7x7 conv of stride 2, ZeroPadding2D(1), max-pooling.
    "resnet_stem": lambda: [layers.ZeroPadding2D(3), layers.Conv2D(4, 7, strides=2), layers.ZeroPadding2D(1),
                            layers.MaxPooling2D(3, strides=2)],
    "asymmetric": lambda: [layers.ZeroPadding2D(((0, 1), (2, 0))), layers.Conv2D(3, 3, strides=2)],
    "crop": lambda: [layers.Cropping2D(((1, 2), (0, 3)))],
    "pad_then_crop": lambda: [layers.ZeroPadding2D((2, 1)), layers.Cropping2D(1)],
    # UpSampling2D (a U-Net's or an autoencoder's decoder) and AveragePooling2D: 'valid', Inception's
    # 3x3 'same' branch of stride 1 (the padding not counted, as Keras), asymmetric 'same', GoogLeNet's
    # 5x5 stride 3 auxiliary pooling.
    "upsampling": lambda: [layers.UpSampling2D((2, 3)), layers.Conv2D(2, 3), layers.UpSampling2D(1)],
    "avg_valid": lambda: [layers.AveragePooling2D()],
    "avg_same_stride1": lambda: [layers.AveragePooling2D(3, strides=1, padding="same")],
    "avg_same_asymmetric": lambda: [layers.AveragePooling2D((3, 2), strides=(2, 1), padding="same")],
    "avg_5x5_stride3": lambda: [layers.AveragePooling2D(5, strides=3)],
    "avg_pool_past_the_input": lambda: [layers.AveragePooling2D(16, padding="same")],  # 13x12 input
    "avg_stride_past_the_pool": lambda: [layers.AveragePooling2D(2, strides=5, padding="same")],
}


@pytest.mark.parametrize("front", list(WINDOW_FRONTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_padding_cropping_upsampling_and_average_pooling_lower_with_the_layers_bits(isa, front, dtype, rng, plans_on,
                                                                                    threads):
    convforge.seed(3)
    model = convforge.Sequential([layers.Input((13, 12, 2)), *WINDOW_FRONTS[front](), layers.Conv2D(3, 1),
                                  layers.Flatten(), layers.Dense(2)], dtype=dtype)
    randomize_biases(model, rng)
    for n_threads in (1, 2):
        convforge.set_num_threads(n_threads)
        for batch in (1, 6, 400):  # 400 x 312 values: the window op splits between threads
            x = rng.standard_normal((batch, 13, 12, 2)).astype(dtype)
            plan = assert_same_bits(model, [x])
            assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
    text = plan.plan.describe()
    assert any(op + "(" in text for op in ("window", "upsample", "avgpool"))


RESHAPE_MODELS = {
    # Old Keras MNIST tutorials: flat pixels in, Reshape to an image as the first layer.
    "flat_to_image": ((36,), lambda: [layers.Reshape((6, 6, 1)), layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(2)]),
    "image_to_flat": ((5, 4, 3), lambda: [layers.Conv2D(4, 3, padding="same"), layers.Reshape((-1,)), layers.Dense(2)]),
    "image_to_image": ((4, 6, 2), lambda: [layers.Conv2D(3, 1), layers.Reshape((6, 4, 3)), layers.Conv2D(2, 3)]),
    "image_to_sequence": ((5, 4, 3), lambda: [layers.Conv2D(4, 1), layers.Reshape((20, 4)), layers.Flatten()]),
    "dense_to_image": ((7,), lambda: [layers.Dense(48), layers.Reshape((4, 3, 4)), layers.Conv2D(2, 2)]),
}


@pytest.mark.parametrize("name", list(RESHAPE_MODELS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reshape_lowers_in_keras_element_order(name, dtype, rng, plans_on, threads):
    shape, make = RESHAPE_MODELS[name]
    convforge.seed(4)
    model = convforge.Sequential([layers.Input(shape), *make()], dtype=dtype)
    for n_threads in (1, 2):
        convforge.set_num_threads(n_threads)
        for batch in (1, 3, 900):
            x = rng.standard_normal((batch, *shape)).astype(dtype)
            plan = assert_same_bits(model, [x])
            assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
    assert "reorder(" in plan.plan.describe()


def test_reshape_of_a_channels_first_model_is_a_plain_reshape(rng, plans_on):
    model = convforge.Sequential([layers.Input((3, 5, 4)), layers.Conv2D(4, 3, padding="same", data_format="channels_first"),
                                  layers.Reshape((4, 4, 5)), layers.Conv2D(2, 1, data_format="channels_first")])
    x = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    plan = assert_same_bits(model, [x])
    assert "reorder(" not in plan.plan.describe() and "copy(" in plan.plan.describe()


TRANSPOSE_LAYERS = [
    "Conv2DTranspose(4, 3)",
    "Conv2DTranspose(4, 3, strides=2, padding='same', activation='relu')",  # the denoising autoencoder's
    "Conv2DTranspose(2, (2, 3), strides=(2, 1), use_bias=False)",
    "Conv2DTranspose(3, 2, strides=3)",  # 'valid', stride > kernel
    "Conv2DTranspose(3, 3, strides=2, padding='same', output_padding=1)",
    "Conv2DTranspose(2, (2, 4), strides=(3, 3), output_padding=(1, 2), activation='tanh')",  # tanh: the tail
]


@pytest.mark.parametrize("spec", TRANSPOSE_LAYERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_transpose_lowers_with_the_layers_bits(isa, spec, dtype, rng, plans_on, threads):
    convforge.seed(5)
    model = convforge.Sequential([layers.Input((6, 5, 3)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                                  eval("layers." + spec), layers.Conv2D(2, 1)], dtype=dtype)  # noqa: S307
    randomize_biases(model, rng)
    for n_threads in (1, 2, 3):
        convforge.set_num_threads(n_threads)
        for batch in (1, 4, 64):
            x = rng.standard_normal((batch, 6, 5, 3)).astype(dtype)
            plan = assert_same_bits(model, [x])
    assert "conv_transpose(" in plan.plan.describe()
    if "tanh" not in spec:
        assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail


def test_the_denoising_autoencoder_compiles_whole(rng, plans_on):
    # tests/port/denoising_autoencoder.py's model (Keras's tutorial), up to its sigmoid head.
    inputs = layers.Input((28, 28, 1))
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    model = convforge.Model(inputs, x)
    randomize_biases(model, rng)
    plan = assert_same_bits(model, [rng.random((3, 28, 28, 1), dtype=np.float32)])
    assert plan.plan.describe().count("conv_transpose(") == 2 and len(plan._tail) == 1  # the sigmoid


def same_bits_up_to_nan_sign(a, b):
    """Equal bit patterns, NaN for NaN (a NaN's sign follows the compiler's operand order: not checked)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    bits = np.uint64 if a.dtype == np.float64 else np.uint32
    np.testing.assert_array_equal(a.view(bits)[~nan], b.view(bits)[~nan])  # -0.0 and +0.0 told apart


@pytest.mark.parametrize("arithmetic", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_new_ops_carry_nan_inf_and_signed_zeros_as_the_layers(arithmetic, dtype, rng, plans_on):
    # assert_array_equal takes -0.0 for +0.0: compare bit patterns. Inputs with NaN, +-inf and
    # -0.0 through every new op: the copies and Rescaling keep infs and signed zeros to the
    # output; average pooling and the depthwise conv turn them into NaNs. (A Rescaling whose
    # input dies there runs in place.)
    x = rng.standard_normal((3, 9, 8, 2)).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 60, replace=False)] = rng.choice([np.nan, np.inf, -np.inf, -0.0, 0.0], 60)
    middle = [layers.AveragePooling2D(3, strides=1, padding="same"), layers.DepthwiseConv2D(2, depth_multiplier=2)]
    model = convforge.Sequential([layers.Input((9, 8, 2)), layers.Rescaling(1.0, offset=-0.0),
                                  layers.ZeroPadding2D(((1, 0), (2, 1))), *(middle if arithmetic else []),
                                  layers.Cropping2D(((0, 2), (1, 0))), layers.UpSampling2D((1, 2)),
                                  layers.Rescaling(-2.0), layers.Reshape((-1,))], dtype=dtype)
    plan, got = planned(model, [x], keep_prepared=False)
    assert plan.lowered == len(graph_of(model)._inference_steps)
    with np.errstate(all="ignore"):  # inf - inf in the layers' NumPy
        want = layer_by_layer(model, [x])[0]
    assert np.isnan(want).any()
    if not arithmetic:
        assert np.isinf(want).any() and (np.signbit(want) & (want == 0)).any()
    same_bits_up_to_nan_sign(got[0], want)


def planned_bits_match_the_layers(model, rng, dtype, specials, scale=1, check_plan=None):
    """On 1 and 2 threads and batches of 1, 3 and 300 (the first 40 values ``specials``), the
    plan's outputs have the layers' bits (NaN signs aside); ``check_plan(plan)`` checks how it
    lowered (default: every inference step, no Python step). Returns the last plan and input."""
    for n_threads in (1, 2):
        convforge.set_num_threads(n_threads)
        for batch in (1, 3, 300):
            x = scale * rng.standard_normal((batch, 8, 7, 3)).astype(dtype)
            x.reshape(-1)[:40] = rng.choice(specials, 40)
            plan, got = planned(model, [x], keep_prepared=False)
            if check_plan is None:
                assert plan.lowered == len(graph_of(model)._inference_steps) and not plan._tail
            else:
                check_plan(plan)
            with np.errstate(all="ignore"):
                want = layer_by_layer(model, [x])[0]
            same_bits_up_to_nan_sign(got[0], want)
    return plan, x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_leaky_relu_lowers_with_the_layers_bits(isa, dtype, rng, plans_on, threads):
    # GANs' activation, as a layer, an Activation and a conv's, dense's, depthwise's or transposed
    # conv's activation: the plan's op computes LeakyReLU's np.where(x > 0, x, x * slope).
    convforge.seed(6)
    model = convforge.Sequential([
        layers.Input((8, 7, 3)), layers.Conv2D(4, 3, padding="same", activation="leaky_relu"), layers.LeakyReLU(),
        layers.DepthwiseConv2D(3, activation="leaky_relu"), layers.LeakyReLU(negative_slope=0.01),
        layers.Conv2DTranspose(3, 2, strides=2, activation="leaky_relu"), layers.Activation("leaky_relu"),
        layers.Flatten(), layers.Dense(5, activation="leaky_relu")], dtype=dtype)
    randomize_biases(model, rng)
    plan, _ = planned_bits_match_the_layers(model, rng, dtype, [np.nan, np.inf, -np.inf, -0.0, 0.0])
    assert plan.plan.describe().count("leaky_relu(") == 7
    model.layers[1].negative_slope = 0.5  # a changed slope makes a new plan
    x = rng.standard_normal((2, 8, 7, 3)).astype(dtype)
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer_by_layer(model, [x])[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu6_lowers_with_the_layers_bits(isa, dtype, rng, plans_on, threads):
    # MobileNetV2's activation, as a layer, an Activation and a conv's, depthwise's or dense's
    # activation: the plan's relu and clip_max ops compute ReLU(max_value)'s relu and np.minimum.
    convforge.seed(7)
    model = convforge.Sequential([
        layers.Input((8, 7, 3)), layers.Conv2D(4, 3, padding="same", activation="relu6"), layers.ReLU(6.0),
        layers.DepthwiseConv2D(3, activation="relu6"), layers.ReLU(max_value=0.25), layers.Conv2D(3, 1),
        layers.Activation("relu6"), layers.Flatten(), layers.Dense(5, activation="relu6")], dtype=dtype)
    randomize_biases(model, rng)
    # Values on both sides of the bounds.
    plan, x = planned_bits_match_the_layers(model, rng, dtype, [np.nan, np.inf, -np.inf, -0.0, 0.0, 6.0], scale=4)
    assert plan.plan.describe().count("clip_max(") == 6
    # Alone on the input, the bound is reached, tied and passed (the model's last ReLU6 may not be).
    alone = convforge.Sequential([layers.Input((8, 7, 3)), layers.ReLU(6.0)], dtype=dtype)
    plan, got = planned(alone, [x], keep_prepared=False)
    want = layer_by_layer(alone, [x])[0]
    assert plan.lowered == 1 and (x == 6).any() and (x > 6).any() and (x < 0).any()
    same_bits_up_to_nan_sign(got[0], want)
    model.layers[1].max_value = 0.5  # a changed bound makes a new plan
    x = rng.standard_normal((2, 8, 7, 3)).astype(dtype)
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer_by_layer(model, [x])[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_gelu_lowers_with_the_layers_bits(isa, dtype, rng, plans_on, threads):
    # GELU (exact) as a layer, an Activation and a conv's, depthwise's or dense's activation: the
    # plan's gelu op runs the layer's kernel. The tanh form is NumPy's: a Python step between plans.
    convforge.seed(8)
    model = convforge.Sequential([
        layers.Input((8, 7, 3)), layers.Conv2D(4, 3, padding="same", activation="gelu"), layers.GELU(),
        layers.DepthwiseConv2D(3, activation="gelu"), layers.GELU(approximate=True), layers.Conv2D(3, 1),
        layers.Activation("gelu"), layers.Flatten(), layers.Dense(5, activation="gelu")], dtype=dtype)
    randomize_biases(model, rng)

    def tanh_form_between_plans(plan):
        assert plan.lowered == len(graph_of(model)._inference_steps) - 1
        assert tail_kinds(plan) == ["python", "plan"]  # the tanh form, then the rest

    plan, _ = planned_bits_match_the_layers(model, rng, dtype, [np.nan, np.inf, -np.inf, -0.0, 0.0], scale=4,
                                            check_plan=tanh_form_between_plans)
    described = "".join(p.describe() for p in plan.plans)
    assert described.count("gelu(") == 5
    model.layers[1].approximate = True  # a changed form makes a new plan
    x = rng.standard_normal((2, 8, 7, 3)).astype(dtype)
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer_by_layer(model, [x])[0])
    assert "".join(p.describe() for p in graph_of(model)._compiled.plans).count("gelu(") == 4


def test_relu6_keeps_keras_values_and_gradient():
    # The layer's relu6 is the relu kernel and np.minimum: Keras's clip(max(x, 0), 0, 6) values.
    x = np.array([[-3.0, -0.0, 0.0, 1.5, 6.0, 7.0, np.inf, -np.inf]], np.float32)
    relu6 = layers.ReLU(6.0)
    np.testing.assert_array_equal(relu6.forward(x.copy()), [[0, 0, 0, 1.5, 6, 6, 6, 0]])
    assert np.isnan(relu6.forward(np.array([[np.nan]], np.float32))).all()
    y = relu6.forward(x.copy(), training=True)
    np.testing.assert_array_equal(relu6.backward(np.ones_like(y)), [[0, 0, 0, 1, 0, 0, 0, 0]])


def test_a_changed_relu_setting_makes_a_new_plan(rng, plans_on):
    # The lowering asks whether an activation is a plain max(x, 0); a max_value set on it after
    # a predict must make a new plan (it kept the unclipped ReLU).
    model = convforge.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"), layers.ReLU(),
                                  layers.DepthwiseConv2D(2, activation="relu"), layers.Flatten(),
                                  layers.Dense(4, activation="relu")])
    randomize_biases(model, rng)
    x = 4 * rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    model.predict(x, verbose=0)
    for layer in (model.layers[0].activation, model.layers[1], model.layers[2].activation, model.layers[4].activation):
        layer.max_value = 0.5
        got = model.predict(x, verbose=0)
        want = layer_by_layer(model, [x])[0]
        np.testing.assert_array_equal(got, want)


def test_window_with_margins_of_both_signs(rng):
    # Not made by a layer, but the plan API takes it: no write outside the rows (it crashed).
    x = rng.standard_normal((2, 1, 3, 5)).astype(np.float32)
    for margins in [(0, 0, 10, -10), (0, 0, -10, 10), (2, -1, -3, 4), (-1, 1, 2, -2)]:
        plan = _core.InferencePlan("float32")
        y = plan.window(plan.input([1, 3, 5]), *margins)
        plan.finish([y])
        t, b, l, r = margins
        padded = np.pad(x, ((0, 0), (0, 0), (max(t, 0), max(b, 0)), (max(l, 0), max(r, 0))))
        want = padded[:, :, max(-t, 0) : padded.shape[2] - max(-b, 0), max(-l, 0) : padded.shape[3] - max(-r, 0)]
        np.testing.assert_array_equal(plan.run([x])[0], want)


def test_window_margins_are_checked():
    plan = _core.InferencePlan("float32")
    x = plan.input([2, 4, 5])
    with pytest.raises(ValueError, match=r"window leaves nothing of \(2, 4, 5\)"):
        plan.window(x, -2, -2, 0, 0)
    with pytest.raises(ValueError, match="within 2"):
        plan.window(x, 1 << 40, 0, 0, 0)
    with pytest.raises(ValueError, match=r"window expects \(C, H, W\) per sample"):
        plan.window(plan.input([7]), 1, 1, 1, 1)


def test_depthwise_non_finite_weights_meet_padding_as_the_layers(rng, plans_on):
    # 0 * inf is NaN where a padded tap meets an infinite weight: the kernel skips padded taps,
    # and the plan writes those NaNs as functional.depthwise_conv2d does, run after run.
    model = convforge.Sequential([layers.Input((6, 7, 2)), layers.DepthwiseConv2D(3, padding="same",
                                                                                   depth_multiplier=2)])
    x = rng.standard_normal((3, 6, 7, 2)).astype(np.float32)
    kernel = model.layers[0].params["kernel"]
    assert_same_bits(model, [x])
    kernel[1, 0, 0, 2] = np.inf  # top-right tap of filter 1: the top row and the right column read padding
    kernel[3, 0, 1, 1] = np.nan  # the centre tap reads no padding (at stride 1)
    got = model.predict(x, verbose=0)
    assert np.isnan(got[:, 0, :, 1]).all() and np.isnan(got[:, :, -1, 1]).all() and np.isnan(got[..., 3]).all()
    assert_same_bits(model, [x])
    kernel[1, 0, 0, 2] = 0.5  # edited back in place: the next run is finite again
    kernel[3, 0, 1, 1] = 0.5
    assert np.isfinite(model.predict(x, verbose=0)).all()
    assert_same_bits(model, [x])


@pytest.mark.parametrize("special", [np.inf, np.nan, 3e38])
def test_a_non_finite_winograd_layer_hands_over_without_its_kept_filters(special, rng, plans_on, threads):
    # A Winograd layer whose outputs come out non-finite is recomputed by the next algorithm,
    # which transforms or packs the weights itself: given the plan's kept Winograd filters as
    # its own pack (until the forty-second stop), the direct form made every output of the
    # layer wrong (~1e29 off) wherever a plan ran an inf, a NaN or an overflow through Winograd
    # (3e38: Winograd's transforms overflow where the direct form's sums do not).
    model = convforge.Sequential([layers.Input((28, 28, 16)), layers.Conv2D(16, 3, padding="same"),
                                  layers.Conv2D(16, 3, padding="same")])
    randomize_biases(model, rng)
    x = rng.standard_normal((2, 28, 28, 16)).astype(np.float32)
    x[0, 4, 3, 5] = special
    want = layer_by_layer(model, [x])[0].transpose(0, 2, 3, 1)  # the layers' own path: no kept filters
    for n in (1, 2):
        convforge.set_num_threads(n)
        got = model.predict(x, batch_size=2, verbose=0)  # the plan: Winograd with its kept filters
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert np.isfinite(got[1]).all() and (special == 3e38) == np.isfinite(got[0]).all()


def test_a_team_larger_than_its_jobs_wakes_and_sleeps(rng, plans_on, threads):
    # After a run on four threads the team keeps three workers; on two threads one of them has a
    # share in each job, the others none. Runs after the workers went to sleep (gaps past their
    # ~2 ms of spinning) wake only the worker a job needs: every run finishes, with the bits of
    # one thread, whoever runs the shares.
    model = example_resnet()
    randomize_batchnorm(model, rng)
    xs = [rng.random((1, 28, 28, 1), dtype=np.float32) for _ in range(2)]
    convforge.set_num_threads(1)
    want = [model.predict(x, verbose=0) for x in xs]
    convforge.set_num_threads(4)
    np.testing.assert_array_equal(model.predict(xs[0], verbose=0), want[0])
    for n in (2, 3, 2):
        convforge.set_num_threads(n)
        for i, gap in enumerate((0.0, 0.005, 0.0, 0.02, 0.0, 0.0)):
            time.sleep(gap)
            np.testing.assert_array_equal(model.predict(xs[i % 2], verbose=0), want[i % 2], err_msg=f"{n} threads")


def test_threads_do_not_change_bits(threads, rng, plans_on):
    model = example_resnet()
    randomize_batchnorm(model, rng)
    x = rng.random((9, 28, 28, 1), dtype=np.float32)
    results = []
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        results.append(model.predict(x, verbose=0))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_predict_and_call_use_the_plan(rng, plans_on):
    model = lenet5()
    x = rng.random((4, 28, 28, 1), dtype=np.float32)
    p = model.predict(x, verbose=0)
    assert graph_of(model)._compiled  # made at the first predict
    np.testing.assert_array_equal(model(x), p)
    np.testing.assert_array_equal(layer_by_layer(model, [x])[0], p)


def test_switched_off(monkeypatch, rng):
    monkeypatch.setenv("CONVFORGE_COMPILED_INFERENCE", "0")
    model = lenet5()
    model.predict(rng.random((2, 28, 28, 1), dtype=np.float32), verbose=0)
    assert graph_of(model)._compiled is False


# ------------------------------------------------------------------ weights that change


def test_sees_training_and_set_weights(rng, plans_on):
    model = example_resnet()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    before = model.predict(x, verbose=0)
    plan = graph_of(model)._compiled
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # weights and moving statistics change in place
    after = model.predict(x, verbose=0)
    assert graph_of(model)._compiled is plan  # the same plan, reading the new values
    assert not np.array_equal(before, after)
    # What the plan kept (folds, Winograd's filters) was made again: a fresh plan's bits.
    np.testing.assert_array_equal(after, fresh_plan(model, [x])[0])
    np.testing.assert_allclose(after, layer_by_layer(model, [x])[0], rtol=1e-4, atol=1e-6)
    weights = model.get_weights()
    model.set_weights([w * 0.5 for w in weights])
    np.testing.assert_array_equal(model.predict(x, verbose=0), fresh_plan(model, [x])[0])
    _, kept_off = planned(model, [x], keep_prepared=False)
    np.testing.assert_array_equal(kept_off[0], layer_by_layer(model, [x])[0])


def test_in_place_edit_and_replaced_array(rng, plans_on):
    model = lenet5()
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    first = model.predict(x, verbose=0)
    c1 = model.get_layer("c1")
    c1.kernel[...] *= -1.0  # in place: the plan reads it
    edited = model.predict(x, verbose=0)
    assert not np.array_equal(first, edited)
    np.testing.assert_array_equal(edited, layer_by_layer(model, [x])[0])
    plan = graph_of(model)._compiled
    c1.params["kernel"] = np.ascontiguousarray(c1.params["kernel"] * 2.0)  # another array
    replaced = model.predict(x, verbose=0)
    assert graph_of(model)._compiled is not plan  # noticed, made again
    np.testing.assert_array_equal(replaced, layer_by_layer(model, [x])[0])


def test_astype_makes_a_new_plan(rng, plans_on):
    model = lenet5()
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    model.predict(x, verbose=0)
    model.astype("float64")
    out = model.predict(x.astype(np.float64), verbose=0)
    assert out.dtype == np.float64 and graph_of(model)._compiled.plan.dtype == "float64"


# ------------------------------------------------------------------ what the plan leaves to the layers


def tail_kinds(plan) -> list:
    """The tail's pieces in order: "plan" for a later plan, "python" for a step run by its layer."""
    return ["plan" if type(out) is list else "python" for _, _, _, out in plan._tail]


def test_python_steps_between_plans(rng, plans_on):
    # Classic LeNet-5: each conv's and dense's tanh is NumPy's, in Python; the products, the
    # average poolings and the flatten between them lower into a plan each.
    model = lenet5(classic=True)
    for batch in (1, 3, 300):  # 300: the plans run chunks
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        plan = assert_same_bits(model, [x])
    assert plan.lowered == len(graph_of(model)._inference_steps) == 8
    assert tail_kinds(plan) == ["python", "plan"] * 4


def test_a_later_plan_reads_tensors_from_before_the_python_step(rng, plans_on, threads):
    # A residual branch around a tanh, and an output taken before it: the second plan takes the
    # first plan's tensor as an input, and the model outputs come from both plans.
    x = convforge.Input((7, 6, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    t = layers.Activation("tanh")(layers.Conv2D(4, 3, padding="same")(a))
    b = layers.Add()([a, layers.Conv2D(4, 1, name="after_tanh")(t)])
    y = layers.Dense(3, activation="softmax")(layers.Flatten()(layers.MaxPooling2D(2)(b)))
    model = convforge.Model(x, [y, a, t])
    randomize_biases(model, rng)
    for n_threads in (1, 2):
        convforge.set_num_threads(n_threads)
        for batch in (1, 5, 200):
            data = rng.standard_normal((batch, 7, 6, 3)).astype(np.float32)
            data.reshape(-1)[:9] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e30, 3.0, -3.0]
            plan, got = planned(model, [data], keep_prepared=False)
            with np.errstate(all="ignore"):
                want = layer_by_layer(model, [data])
            for g, w in zip(got, want):
                same_bits_up_to_nan_sign(g, w)
    assert plan.lowered == len(graph_of(model)._inference_steps) - 1 and tail_kinds(plan) == ["python", "plan"]
    # A weight of the second plan's layers changed in place, or replaced, is seen.
    conv = model.get_layer("after_tanh")
    conv.params["kernel"][...] *= -1.0
    data = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(data, verbose=0)[0], layer_by_layer(model, [data])[0])
    conv.params["kernel"] = np.ascontiguousarray(conv.params["kernel"] * 0.5)
    np.testing.assert_array_equal(model.predict(data, verbose=0)[0], layer_by_layer(model, [data])[0])


def test_a_python_step_of_another_dtype_runs_the_layers(rng, plans_on):
    # Found by the second reviewer: a custom layer returning float64 in a float32 model made the
    # next plan raise a TypeError where the layers after it take float64.
    class ToFloat64(layers.Layer):
        def compute_output_shape(self, shape):
            return shape

        def forward(self, x, training=False):
            return x.astype(np.float64)

    convforge.seed(0)
    model = convforge.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3), ToFloat64(), layers.Flatten(),
                                  layers.Dense(2)])
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    got = model.predict(x, verbose=0)
    assert graph_of(model)._compiled.plans[1:], "a later plan was made"
    graph_of(model)._compiled = False  # no plan: the layers' predict
    np.testing.assert_array_equal(got, model.predict(x, verbose=0))


def test_relu_bound_of_minus_zero_has_the_layers_bits(rng, plans_on):
    # Found by the second reviewer: ReLU(max_value=-0.0) gave -0.0 in the layers (np.minimum's
    # tie) and +0.0 in the plan. Both take the bound as +0.0.
    model = convforge.Sequential([layers.Input((4,)), layers.Dense(4), layers.ReLU(max_value=-0.0)])
    x = rng.standard_normal((3, 4)).astype(np.float32)
    plan, got = planned(model, [x])
    want = layer_by_layer(model, [x])[0]
    assert plan.lowered == 2 and (want == 0).all()
    np.testing.assert_array_equal(np.signbit(got[0]), np.signbit(want))


def test_tail_after_an_asymmetric_pool(rng, plans_on):
    x = convforge.Input((9, 9, 3))
    h = layers.Conv2D(4, 3, activation="relu")(x)
    h = layers.MaxPooling2D(2, strides=1, padding="same")(h)  # the -inf border on one side: the layers' own
    y = layers.Dense(2)(layers.Flatten()(layers.Conv2D(3, 1)(h)))
    model = convforge.Model(x, y)
    plan = assert_same_bits(model, [rng.standard_normal((4, 9, 9, 3)).astype(np.float32)])
    assert plan.lowered == 4 and tail_kinds(plan) == ["python", "plan"]  # the pool, then a plan again


def test_not_compiled_when_nothing_lowers(rng, plans_on):
    x = convforge.Input((4, 4, 2))
    model = convforge.Model(x, layers.Activation("tanh")(layers.Flatten()(x)))
    model.predict(rng.random((2, 4, 4, 2), dtype=np.float32), verbose=0)
    assert graph_of(model)._compiled is not None
    plan = graph_of(model)._inference_plan()
    # Flatten lowers; the tanh runs on its result.
    assert plan is None or plan.lowered == 1


def test_input_passed_through_and_shared_outputs(rng, plans_on):
    x = convforge.Input((6,), name="x")
    same = layers.Dropout(0.2, name="drop")(x)
    y = layers.Dense(3, name="d")(same)
    model = convforge.Model(x, [same, y, y])
    data = rng.random((4, 6), dtype=np.float32)
    out = model.predict(data, verbose=0)
    np.testing.assert_array_equal(out[0], data)
    np.testing.assert_array_equal(out[1], out[2])
    out[1][...] = 0  # two arrays, not one
    assert not np.array_equal(out[1], out[2])


def test_an_input_as_an_output(rng, plans_on):
    x = convforge.Input((6,), name="x")
    model = convforge.Model(x, [x, layers.Dense(2, activation="softmax", name="d")(x)])
    data = rng.random((3, 6), dtype=np.float32)
    same, probabilities = model.predict(data, verbose=0)
    np.testing.assert_array_equal(same, data)
    assert same is not data
    np.testing.assert_array_equal(probabilities, layer_by_layer(model, [data])[1])


def test_inputs_the_plan_does_not_take_still_work(rng, plans_on):
    model = lenet5()
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    want = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), verbose=0), model.predict(x.astype(np.float64), verbose=0))
    g = graph_of(model)
    xb = g._entries[0].convert(x)
    assert not g._inference_plan().accepts([xb[:, :, ::2]])
    assert not g._inference_plan().accepts([xb.astype(np.float64)])
    np.testing.assert_array_equal(model._to_user(g._forward([xb], False)[0]), want)


def run_at_once(work, n):
    """work(0) ... work(n - 1) on n threads at once; the first exception any of them raised."""
    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as err:  # noqa: BLE001 - raised below
            errors.append(err)

    workers = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_predicts(rng, plans_on):
    model = example_resnet()
    randomize_batchnorm(model, rng)
    # Batches of one chunk and of several (each thread of each predict running chunks).
    xs = [rng.random((n, 28, 28, 1), dtype=np.float32) for n in (3, 21, 3, 21)]
    want = [model.predict(x, verbose=0) for x in xs]
    got = [None] * 4

    def work(k):
        for _ in range(20):
            got[k] = model.predict(xs[k], verbose=0)

    run_at_once(work, 4)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ a large batch runs in chunks


def check_chunk_sizes(plan, mb):
    sizes = plan.chunk_sizes(mb)
    limit = plan.chunk_samples
    assert sum(sizes) == mb and min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, (mb, sizes)
    if limit == 0 or mb <= limit:
        assert sizes == [mb]
        return
    assert max(sizes) <= limit
    n = len(sizes)
    # A count 2, 4, 8 and 16 threads share evenly (unless there are fewer samples than that).
    assert n == mb or (n <= 16 and n & (n - 1) == 0) or n % 16 == 0, (mb, limit, n)
    # Any run of consecutive chunks (one thread's share) holds its share of the samples.
    starts = np.cumsum([0] + sizes)
    assert all(starts[k] == k * mb // n for k in range(n + 1))


def test_chunk_sizes(rng):
    plan = graph_of(example_resnet())._inference_plan().plan
    # About 768 KiB of the ResNet's values (some 150 KB an image) a chunk.
    assert 2 <= plan.chunk_samples <= 8
    for limit in (0, 1, 3, 4, 7, plan.chunk_samples, 40):
        plan.chunk_samples = limit
        for mb in list(range(1, 70)) + [127, 1000, 10000]:
            check_chunk_sizes(plan, mb)
    plan.chunk_samples = 3
    assert plan.chunk_sizes(64) == [2] * 32
    assert plan.chunk_sizes(7) == [1, 2, 2, 2]
    with pytest.raises(ValueError, match="chunk_samples must be >= 0"):
        plan.chunk_samples = -1
    assert plan.chunk_samples == 3


def loops_of(model, x):
    """The parallel loops on more than one thread that model.predict(x) starts (and its result)."""
    before = _core._parallel_loops()
    y = model.predict(x, batch_size=len(x), verbose=0)
    return _core._parallel_loops() - before, y


def test_serial_samples_is_the_batch_no_op_splits(rng, threads):
    # The largest batch a plan keeps on one thread at any count: its convs' and dense layers'
    # operations under 1e6 (kMinParallelFlops), its largest value under 64 KiB. Checked against
    # the loops a run starts: none up to the bound, two threads or one; some in a batch that
    # splits (with OpenMP).
    lenet = lenet5()
    dense = convforge.Sequential([convforge.Input((100,)), layers.Dense(10)])
    # A tall, narrow image: max-pooling's work estimate (~400 an output row) passes 1e6 within the
    # bound, but its 16K-value grains keep it whole there.
    tall = convforge.Sequential([convforge.Input((256, 2, 1)), layers.Conv2D(16, (3, 1)),
                                 layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10)])
    expected = {
        "lenet": 1,  # 0.85 MFLOP an image: one under the floor, two over
        "dense": 163,  # 2,000 operations a sample; the 100-float input the largest value: 163 * 400 < 65,536
        "tall": 2,  # its largest value the conv's 16 x 254 x 2 floats: 2 * 32,512 < 65,536 (pooling work 853,440 a sample)
    }
    shapes = {"lenet": (28, 28, 1), "dense": (100,), "tall": (256, 2, 1)}
    for name, model in (("lenet", lenet), ("dense", dense), ("tall", tall)):
        model.predict(np.zeros((1, *shapes[name]), np.float32), verbose=0)
        bound = model._compiled_plan().plan.serial_samples()
        assert bound == expected[name], name
        x = rng.random((bound + 1, *shapes[name]), dtype=np.float32)
        for n in (1, 2):
            convforge.set_num_threads(n)
            loops, y = loops_of(model, x[:bound])
            assert loops == 0, (name, n)
            if n == 1:
                want = y
            np.testing.assert_array_equal(y, want)
        convforge.set_num_threads(2)
        big = rng.random((max(64, 8 * (bound + 1)), *shapes[name]), dtype=np.float32)
        assert (loops_of(model, big)[0] > 0) == convforge.build_info()["openmp"], name
    assert graph_of(example_resnet())._inference_plan().plan.serial_samples() == 0  # 18.6 MFLOP an image


@pytest.mark.parametrize("limit", [None, 4, 1])
def test_chunked_batch_gives_each_chunks_bits(isa, limit, rng, threads):
    # A batch run in chunks (each thread running whole chunks, or one after another) has the
    # bits of each chunk run alone as a whole batch, at every thread count.
    model = example_resnet()
    randomize_batchnorm(model, rng)
    g = graph_of(model)
    plan = g._inference_plan()
    if limit is not None:
        plan.plan.chunk_samples = limit
    x = g._entries[0].convert(rng.random((37, 28, 28, 1), dtype=np.float32))
    sizes = plan.plan.chunk_sizes(len(x))
    assert len(sizes) > 1
    chunk = plan.plan.chunk_samples
    plan.plan.chunk_samples = 0
    starts = np.cumsum([0] + sizes)
    want = np.concatenate([plan.run([x[lo:hi]])[0] for lo, hi in zip(starts[:-1], starts[1:])])
    plan.plan.chunk_samples = chunk
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        for _ in range(2):
            np.testing.assert_array_equal(plan.run([x])[0], want)


def test_chunks_choose_their_algorithms_for_their_own_size(isa, rng, threads):
    # 16-channel 28x28 3x3 layers take the direct form for one or two images and Winograd from
    # four on AVX-512: a batch of 8 in chunks of 2 has the two-image layer's bits, not the
    # 8-image one's (where the two choices differ).
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    x = rng.standard_normal((8, 16, 28, 28)).astype(np.float32)
    plan = _core.InferencePlan("float32")
    hidden = plan.conv2d(plan.input([16, 28, 28]), w, b, (1, 1), (1, 1, 1, 1), (1, 1), relu=True)
    plan.finish([plan.relu(hidden)])
    plan.keep_prepared = False
    plan.chunk_samples = 2
    pairs = np.concatenate([F.conv2d(x[k : k + 2], w, b, padding=1, relu=True) for k in range(0, 8, 2)])
    whole = F.conv2d(x, w, b, padding=1, relu=True)
    for n in (1, 2):
        convforge.set_num_threads(n)
        np.testing.assert_array_equal(plan.run([x])[0], pairs)
    if F.conv2d_algorithms((2, 16, 28, 28), w.shape, padding=1)["fwd"][0] != \
            F.conv2d_algorithms((8, 16, 28, 28), w.shape, padding=1)["fwd"][0]:
        assert not np.array_equal(pairs, whole)
    plan.chunk_samples = 0
    np.testing.assert_array_equal(plan.run([x])[0], whole)


def test_an_error_in_a_chunk_is_raised_once(rng, threads):
    # A forced algorithm that does not apply, found by the threads running the chunks (LeNet-5's
    # 5x5 convs keep nothing, so nothing is checked before the chunks run): a ValueError, and
    # the plan runs on afterwards.
    model = lenet5()
    g = graph_of(model)
    plan = g._inference_plan()
    plan.plan.chunk_samples = 2
    x = g._entries[0].convert(rng.random((16, 28, 28, 1), dtype=np.float32))
    want = plan.run([x])[0]
    for n in (1, 2):
        convforge.set_num_threads(n)
        with pytest.raises(ValueError, match="winograd_f4x3"):
            plan.plan.run([x], conv_algorithm="winograd_f4x3")
        np.testing.assert_array_equal(plan.run([x])[0], want)


def test_an_error_in_a_thread_team_is_raised_once(rng, threads):
    # A batch run whole with every op on all threads runs inside one thread team (the waiting
    # threads spin between the ops): an error in an op leaves the team, is raised once, and
    # the plan runs on afterwards, on the same and on other thread counts.
    model = lenet5()
    g = graph_of(model)
    plan = g._inference_plan()
    plan.plan.chunk_samples = 0
    x = g._entries[0].convert(rng.random((6, 28, 28, 1), dtype=np.float32))  # ~5 MFLOP: a team
    want = plan.run([x])[0]
    for n in (2, 3, 1, 2):
        convforge.set_num_threads(n)
        with pytest.raises(ValueError, match="winograd_f4x3"):
            plan.plan.run([x], conv_algorithm="winograd_f4x3")
        np.testing.assert_array_equal(plan.run([x])[0], want)


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_small_batches_same_bits_on_any_thread_count(batch, threads, rng, plans_on):
    # One to three images run whole, every op split over the threads of one team, the small
    # ops too (the stem's rows in bands, the 1x1 projections' channels in groups): 1-4 threads
    # (more than this host's CPUs: the waiting threads then yield) give the same bits.
    model = example_resnet()
    randomize_batchnorm(model, rng)
    xs = [rng.random((batch, 28, 28, 1), dtype=np.float32) for _ in range(2)]
    results = [[], []]
    # Two inputs in turn: the arena's values of the run before come from the other input, so
    # an item some split leaves out cannot hide behind what an earlier run wrote there.
    plan = graph_of(model)._inference_plan().plan
    for n in (4, 3, 2, 1):
        convforge.set_num_threads(n)
        # Split among a team, each value has a place of its own (the bits are the slots' bits);
        # a build without OpenMP runs one thread, shared slots.
        assert plan.own_places(batch) == (convforge.get_num_threads() > 1)
        for k in (0, 1, 0, 1):
            results[k].append(model.predict(xs[k], batch_size=batch, verbose=0))
    for k in (0, 1):
        for r in results[k][1:]:
            np.testing.assert_array_equal(r, results[k][0])
        np.testing.assert_allclose(results[k][0], layer_by_layer(model, [xs[k]])[0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ evaluate's forward runs the plan


def layers_evaluate(model, *args, **kwargs):
    """evaluate with the plan's forward switched off: the layers one by one, as before."""
    g = graph_of(model)
    g._planned_logits = lambda xbs: None
    try:
        return model.evaluate(*args, **kwargs)
    finally:
        del g._planned_logits


def test_evaluate_runs_the_logits_plan(rng, plans_on):
    model = lenet5()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((40, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    got = model.evaluate(x, y, batch_size=20, verbose=0)
    g = graph_of(model)
    plan = g._compiled_logits
    assert isinstance(plan, compiled.CompiledInference) and plan is not g._compiled
    # Its output is the softmax head's logits, the layers' own bit for bit (LeNet-5's 5x5 convs
    # keep nothing, and 20 images are one chunk).
    xb = g._entries[0].convert(x[:20])
    np.testing.assert_array_equal(plan.run([xb])[0], g._run([xb], False, logits=True)[g._outputs_index[0]])
    assert got == layers_evaluate(model, x, y, batch_size=20, verbose=0)


def test_evaluate_through_the_plan_agrees_with_the_layers(rng, plans_on):
    # The ResNet (folded BatchNormalization, kept Winograd filters, 37 images in chunks) and a
    # graph of two outputs, a fused softmax head and a plain one.
    model = example_resnet()
    randomize_batchnorm(model, rng)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((37, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 37)
    got = model.evaluate(x, y, batch_size=37, verbose=0)
    assert isinstance(graph_of(model)._compiled_logits, compiled.CompiledInference)
    np.testing.assert_allclose(got, layers_evaluate(model, x, y, batch_size=37, verbose=0), rtol=1e-5)

    net = inception_net()
    randomize_batchnorm(net, rng)
    net.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"])
    x = rng.random((9, 12, 12, 3), dtype=np.float32)
    ys = [rng.integers(0, 5, 9), rng.random((9, 16), dtype=np.float32)]
    got = net.evaluate(x, ys, verbose=0)
    assert graph_of(net)._compiled_logits._direct is not None
    np.testing.assert_allclose(got, layers_evaluate(net, x, ys, verbose=0), rtol=1e-5)


def test_evaluate_follows_a_recompiled_loss(rng, plans_on):
    # The logits plan leaves out the softmax of the heads the loss fuses: compiled again with a
    # loss on probabilities, evaluate's plan is made again and gives probabilities.
    model = lenet5()
    x = rng.random((16, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    onehot = np.eye(10, dtype=np.float32)[y]
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.evaluate(x, y, verbose=0)
    first = graph_of(model)._compiled_logits
    model.compile(optimizer="sgd", loss="mse")
    got = model.evaluate(x, onehot, verbose=0)
    assert graph_of(model)._compiled_logits is not first
    assert got == layers_evaluate(model, x, onehot, verbose=0)
    np.testing.assert_allclose(got, np.mean((model.predict(x, verbose=0) - onehot) ** 2), rtol=1e-5)


def test_evaluate_without_a_whole_plan_runs_the_layers(rng, plans_on):
    # Classic LeNet-5's tanh is not a plan op: the plan has a Python tail, and evaluate runs
    # the layers (as it did before there was a plan).
    model = lenet5(classic=True)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    got = model.evaluate(x, y, verbose=0)
    plan = graph_of(model)._compiled_logits
    assert plan is False or plan._direct is None
    assert got == layers_evaluate(model, x, y, verbose=0)


# ------------------------------------------------------------------ the private plan refuses bad plans


def test_plan_checks_its_operands():
    plan = _core.InferencePlan("float32")
    x = plan.input([2, 8, 8])
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="does not have"):
        plan.relu(99)
    with pytest.raises(TypeError, match="float32"):
        plan.conv2d(x, w.astype(np.float64), None, (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="channels"):
        plan.conv2d(x, np.zeros((3, 5, 3, 3), np.float32), None, (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="b must have shape"):
        plan.conv2d(x, w, np.zeros(4, np.float32), (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="C-contiguous"):
        plan.conv2d(x, np.zeros((3, 2, 3, 6), np.float32)[..., ::2], None, (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="stride"):
        plan.conv2d(x, w, None, (0, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="larger than the padded input"):
        plan.conv2d(x, np.zeros((3, 2, 9, 9), np.float32), None, (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match="features"):
        plan.dense(x, np.zeros((128, 4), np.float32), None)
    with pytest.raises(ValueError, match="equal shapes"):
        plan.elementwise("add", [x, plan.input([2, 8, 4])])
    with pytest.raises(ValueError, match="kind"):
        plan.elementwise("divide", [x, x])
    with pytest.raises(ValueError, match="changes the number"):
        plan.reshape(x, [100])
    with pytest.raises(ValueError, match="positive"):
        plan.reshape(x, [-128, -1])
    with pytest.raises(ValueError, match="not finished"):
        plan.run([np.zeros((1, 2, 8, 8), np.float32)])
    with pytest.raises(ValueError, match="computed by an op"):
        plan.finish([x])
    y = plan.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), relu=True)
    plan.finish([y])
    with pytest.raises(ValueError, match="after finish"):
        plan.relu(y)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        plan.run([np.zeros((1, 2, 8, 8), np.float32)])


def test_plan_checks_run_inputs():
    plan = _core.InferencePlan("float64")
    x = plan.input([4])
    plan.finish([plan.relu(x)])
    with pytest.raises(TypeError, match="float64"):
        plan.run([np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"\(4,\) per sample"):
        plan.run([np.zeros((2, 5))])
    with pytest.raises(ValueError, match="at least one sample"):
        plan.run([np.zeros((0, 4))])
    with pytest.raises(ValueError, match="C-contiguous"):
        plan.run([np.zeros((2, 8))[:, ::2]])
    with pytest.raises(TypeError, match="dtype"):
        _core.InferencePlan("int8")
    np.testing.assert_array_equal(plan.run([np.array([[-1.0, 2.0, -0.0, np.nan]])])[0], [[0.0, 2.0, 0.0, np.nan]])


def test_profile_times_each_op_and_checks_its_arguments(rng, plans_on):
    model = example_resnet()
    x = rng.standard_normal((2, 28, 28, 1)).astype(np.float32)
    want = model.predict(x, verbose=0)
    plan = model._whole_plan().plan
    xin = [np.ascontiguousarray(x.transpose(0, 3, 1, 2))]
    start = time.perf_counter()
    seconds = F.profile_inference_plan(plan, xin, 3)
    elapsed = time.perf_counter() - start
    lines = plan.describe().splitlines()
    assert seconds.dtype == np.float64 and seconds.shape == (len(lines),)
    assert np.all(np.isfinite(seconds)) and np.all(seconds >= 0)
    assert seconds[["conv2d" in line for line in lines]].min() > 0  # every conv was timed
    assert 3 * seconds.sum() <= elapsed  # per-op means of 3 runs, all inside the call
    # The timed runs are plain runs: the outputs after them are the same bits.
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    with pytest.raises(ValueError, match="runs must be between 1 and 1000000, got 0"):
        plan.profile(xin, 0)
    with pytest.raises(TypeError, match="runs must be an int, got float"):
        plan.profile(xin, 2.0)
    with pytest.raises(TypeError, match="runs must be an int, got bool"):
        plan.profile(xin, True)
    with pytest.raises(ValueError, match=r"\(1, 28, 28\) per sample"):
        plan.profile([np.zeros((1, 2, 28, 28), np.float32)], 1)
    with pytest.raises(TypeError, match="conv_algorithm must be a str or None"):
        plan.profile(xin, 1, 3)
    with pytest.raises(ValueError):
        plan.profile(xin, 1, "no_such_algorithm")
    unfinished = _core.InferencePlan("float32")
    v = unfinished.input([4])
    unfinished.relu(v)
    with pytest.raises(ValueError, match="not finished"):
        unfinished.profile([np.zeros((1, 4), np.float32)], 1)


def test_profile_per_thread_times_each_threads_part(rng, plans_on):
    # per_thread: each op's time, then each thread's time in its parallel loops. On two threads
    # the example ResNet's one-image 28x28 convs run on the thread team: a worker's time that
    # went unrecorded (or was added to the caller's) fails here. On one thread, or without
    # OpenMP, no op runs on the team: zeros. (Which later convs split depends on the ISA's
    # algorithms; a worker that finds no CPU, on a busy machine, leaves its shares to the caller:
    # hence profiles until one has the worker's part, for up to 10 s.)
    model = example_resnet()
    x = rng.standard_normal((1, 28, 28, 1)).astype(np.float32)
    model.predict(x, verbose=0)
    plan = model._whole_plan().plan
    xin = [np.ascontiguousarray(x.transpose(0, 3, 1, 2))]
    convs = np.array(["conv2d" in line for line in plan.describe().splitlines()])
    convforge.set_num_threads(1)
    one = F.profile_inference_plan(plan, xin, 3, per_thread=True)
    assert one.shape == (len(convs), 2) and one[:, 0].min() > 0
    np.testing.assert_array_equal(one[:, 1], 0.0)
    np.testing.assert_array_equal(F.profile_inference_plan(plan, xin, 1).shape, (len(convs),))
    convforge.set_num_threads(2)
    if convforge.get_num_threads() < 2:  # a build without OpenMP: one thread, one column
        one = F.profile_inference_plan(plan, xin, 3, per_thread=True)
        assert one.shape == (len(convs), 2)
        np.testing.assert_array_equal(one[:, 1], 0.0)
        return
    deadline = time.perf_counter() + 10
    while True:
        two = F.profile_inference_plan(plan, xin, 5, per_thread=True)
        assert two.shape == (len(convs), 3)
        # Each thread's part lies inside the op's wall time (1 us for the clock reads).
        assert np.all(two[:, 1:] <= two[:, 0:1] + 1e-6)
        if (two[convs, 1:].min(axis=1) > 0).any():
            break
        assert time.perf_counter() < deadline, f"no conv with time on both threads in 10 s of profiles: {two}"
    split = two[:, 2] > 0
    assert np.all(two[split, 1] > 0)  # the calling thread's part of every op the worker had a part of


def test_plan_keeps_weights_alive():
    plan = _core.InferencePlan("float32")
    x = plan.input([3])
    plan.finish([plan.dense(x, np.eye(3, dtype=np.float32) * 2, np.ones(3, np.float32))])
    import gc

    gc.collect()  # the weight arrays above have no other owner
    np.testing.assert_array_equal(plan.run([np.ones((2, 3), np.float32)])[0], np.full((2, 3), 3.0, np.float32))


def test_slots_are_reused_without_clobbering(rng):
    """A long chain with a skip from the start: the skip's value must survive every slot reuse."""
    plan = _core.InferencePlan("float32")
    x = plan.input([5])
    first = plan.relu(plan.reshape(x, [5]))
    v = first
    for _ in range(6):
        v = plan.relu(plan.reshape(v, [5]))
    total = plan.elementwise("add", [v, first])
    plan.finish([total, first])
    data = rng.standard_normal((3, 5)).astype(np.float32)
    got_total, got_first = plan.run([data])
    np.testing.assert_array_equal(got_first, np.maximum(data, 0))
    np.testing.assert_array_equal(got_total, np.maximum(data, 0) * 2)
    assert "slot" in plan.describe()


def test_own_places_where_a_team_splits_a_small_batch(rng, threads):
    # A batch small enough to run whole in a thread team gives each value a place of its own
    # (up to 1 MiB of them; the example ResNet has 263 KB an image); a batch whose values
    # would take more shares slots, and so does any batch on one thread (a build without
    # OpenMP has one). 'slots' and 'own' force either, with the same bits; a name for neither
    # is refused.
    model = example_resnet()
    randomize_batchnorm(model, rng)
    plan = graph_of(model)._inference_plan()
    x = graph_of(model)._entries[0].convert(rng.random((3, 28, 28, 1), dtype=np.float32))
    assert plan.plan.places == "auto"
    convforge.set_num_threads(2)
    team = convforge.get_num_threads() == 2
    assert plan.plan.own_places(1) == team and plan.plan.own_places(3) == team
    assert not plan.plan.own_places(64)
    want = plan.run([x])[0]
    for places in ("slots", "own", "auto"):
        plan.plan.places = places
        assert plan.plan.own_places(3) == (places == "own" or (places == "auto" and team))
        assert plan.plan.own_places(64) == (places == "own")
        np.testing.assert_array_equal(plan.run([x])[0], want)
    convforge.set_num_threads(1)
    assert not plan.plan.own_places(1)
    np.testing.assert_array_equal(plan.run([x])[0], want)
    with pytest.raises(ValueError, match="'auto', 'slots' or 'own'"):
        plan.plan.places = "shared"
    with pytest.raises(ValueError, match="at least one sample"):
        plan.plan.own_places(0)


def test_sigmoid_head_is_split(rng, plans_on):
    x = convforge.Input((8,))
    model = convforge.Model(x, layers.Dense(1, activation="sigmoid")(layers.Dense(4, activation="relu")(x)))
    plan = assert_same_bits(model, [rng.standard_normal((5, 8)).astype(np.float32)])
    assert plan.lowered == 2 and len(plan._tail) == 1  # the head's product in the plan, its sigmoid after


# ------------------------------------------------------------------ the softmax kernel (layer and plan)


def softmax_oracle(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [1, 2, 10, 17, 1000, 5000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_against_float64(classes, dtype, rng):
    x = (rng.standard_normal((7, classes)) * 20).astype(dtype)
    y = convforge.functional.softmax(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, softmax_oracle(x), rtol=4e-6 if dtype == np.float32 else 1e-13, atol=1e-30)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(layers.Softmax().forward(x.copy()), y)


def test_softmax_non_finite_rows():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf], [1000.0, -1000.0, 1000.0]],
                 np.float32)
    y = convforge.functional.softmax(x)
    assert np.isnan(y[:3]).all()  # as NumPy's max-shifted formula
    np.testing.assert_allclose(y[3], [0.5, 0.0, 0.5])


def test_softmax_threads_and_bad_input(threads, rng):
    x = rng.standard_normal((3000, 100)).astype(np.float32)  # enough rows for threads
    convforge.set_num_threads(1)
    one = convforge.functional.softmax(x)
    convforge.set_num_threads(2)
    np.testing.assert_array_equal(convforge.functional.softmax(x), one)
    with pytest.raises(ValueError, match="2 dimensions"):
        convforge.functional.softmax(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        convforge.functional.softmax(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="empty"):
        convforge.functional.softmax(np.zeros((2, 0), np.float32))
    assert convforge.functional.softmax(np.zeros((0, 3), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError, match="2 dimensions"):
        _core.softmax_fwd(np.zeros((2, 3, 4), np.float32))


# ------------------------------------------------------------------ found in review


def test_refused_finish_leaves_the_plan_as_it_was():
    plan = _core.InferencePlan("float32")
    big, small = plan.input([1 << 12]), plan.input([4])
    rbig, rsmall = plan.relu(big), plan.relu(small)
    with pytest.raises(ValueError, match="once only"):
        plan.finish([rbig, rbig])
    with pytest.raises(ValueError, match="does not have"):
        plan.finish([rsmall, 99])
    plan.finish([rsmall])  # not refused for the marks of the calls before
    out = plan.run([np.ones((3, 1 << 12), np.float32), -np.ones((3, 4), np.float32)])
    assert len(out) == 1
    np.testing.assert_array_equal(out[0], np.zeros((3, 4), np.float32))


def test_forced_conv_algorithm_applies_in_the_plan(rng, plans_on):
    x = convforge.Input((16, 16, 16))
    model = convforge.Model(x, layers.Conv2D(32, 3, padding="same")(x))
    data = rng.standard_normal((2, 16, 16, 16)).astype(np.float32)
    forced = "winograd_f4x3"
    if forced not in _core.conv2d_algorithms((2, 16, 16, 16), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1))["fwd"]:
        forced = "im2col_gemm"
    with convforge.functional.force_conv2d_algorithm(fwd=forced):
        got = model.predict(data, verbose=0)
        want = layer_by_layer(model, [data])[0]
        np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))
        with convforge.functional.force_conv2d_algorithm(fwd="no_such_algorithm"):
            with pytest.raises(ValueError, match="no_such_algorithm"):
                model.predict(data, verbose=0)


def test_relu_subclass_activation_is_its_own(rng, plans_on):
    class ReLU6(layers.ReLU):
        def forward(self, x, training=False):
            return np.minimum(super().forward(x, training), 6.0)

    x = convforge.Input((3,))
    dense = layers.Dense(3, name="d")
    model = convforge.Model(x, dense(x))
    dense.activation = ReLU6()
    model._make_steps()
    dense.params["kernel"][...] = np.eye(3, dtype=np.float32) * 10
    data = np.full((2, 3), 4.0, np.float32)
    np.testing.assert_array_equal(model.predict(data, verbose=0), np.full((2, 3), 6.0, np.float32))


def test_changed_layer_settings_make_a_new_plan(rng, plans_on):
    x = convforge.Input((10, 10, 2))
    h = layers.Conv2D(4, 3, use_bias=False, name="c")(x)
    h = layers.BatchNormalization(name="bn")(h)
    head = layers.Dense(3, activation="softmax", name="head")
    model = convforge.Model(x, head(layers.Flatten()(h)))
    randomize_batchnorm(model, rng)
    data = rng.standard_normal((4, 10, 10, 2)).astype(np.float32)
    probabilities = model.predict(data, verbose=0)
    head.activation = None  # the logits, Keras's idiom
    logits = model.predict(data, verbose=0)
    np.testing.assert_array_equal(logits, layer_by_layer(model, [data])[0])
    assert not np.allclose(logits, probabilities)
    model.get_layer("bn").epsilon = 10.0
    np.testing.assert_array_equal(model.predict(data, verbose=0), layer_by_layer(model, [data])[0])


def test_misaligned_input_takes_the_layers(rng, plans_on):
    x = convforge.Input((4,))
    model = convforge.Model(x, layers.Dense(2, name="d")(x))
    raw = np.zeros(2 * 4 * 4 + 1, np.uint8)[1:]
    data = raw.view(np.float32).reshape(2, 4)
    data[...] = rng.standard_normal((2, 4))
    assert not data.flags.aligned
    np.testing.assert_array_equal(model.predict(data, verbose=0), model.predict(data.copy(), verbose=0))
    np.testing.assert_array_equal(model(data), model.predict(data.copy(), verbose=0))


def test_plan_bn_argument_errors():
    plan = _core.InferencePlan("float32")
    x = plan.input([2, 4, 4])
    c = np.ones(2, np.float32)
    with pytest.raises(TypeError, match="epsilon must be a number"):
        plan.batchnorm(x, (c, c, None, None, "0.001"))
    with pytest.raises(TypeError, match="bn must be a tuple"):
        plan.batchnorm(x, c)
    with pytest.raises(ValueError, match="bn must be"):
        plan.batchnorm(x, (c, c, None))
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        plan.batchnorm(x, [c, c, None, None, -1.0])
    y = plan.batchnorm(x, [c, c, None, None, 0.001])  # a list as well as a tuple
    plan.finish([y])


@pytest.mark.parametrize("kind", ["add", "multiply", "average"])
def test_elementwise_in_place_with_a_repeated_input(kind, rng):
    """y takes the first input's slot (it dies here), and that input comes again later."""
    plan = _core.InferencePlan("float32")
    x = plan.input([3000])  # more than a block, and a partial one
    a, b = plan.relu(x), plan.relu(plan.reshape(x, [3000]))
    y = plan.elementwise(kind, [a, b, a, a])
    plan.finish([plan.relu(y)])  # y itself in a slot: a's
    assert f"{kind}(v1, v3, v1, v1) -> v4 (3000,) [slot 0]" in plan.describe()
    data = rng.standard_normal((2, 3000)).astype(np.float32)
    r = np.maximum(data, 0)
    want = {"add": r + r + r + r, "multiply": r * r * r * r, "average": (r + r + r + r) * np.float32(0.25)}[kind]
    np.testing.assert_array_equal(plan.run([data])[0], want)


@pytest.mark.parametrize("seed", range(60))
def test_random_plans_against_numpy(seed):
    """Random chains and branches of plan ops (values reused far apart, in-place ops on dying
    values, repeated inputs, several outputs, values nobody reads): the arena's slot reuse must
    never hand a live value's memory to another, nor write into the input."""
    r = np.random.default_rng(seed)
    plan = _core.InferencePlan("float64")
    batch = int(r.choice([1, 2, 5]))
    first = int(r.choice([3, 16, 40]))
    x = r.standard_normal((batch, first))
    x_copy = x.copy()
    values, refs = [plan.input([first])], [x]
    for _ in range(int(r.integers(1, 25))):
        i = int(r.integers(len(values)))
        kind = r.choice(["dense", "relu", "copy", "softmax", "add", "multiply", "average", "concat"])
        a = refs[i]
        if kind == "dense":
            w = r.standard_normal((a.shape[1], int(r.choice([2, 16, 33]))))
            relu = bool(r.integers(2))
            v, ref = plan.dense(values[i], w, None, relu=relu), a @ w
            ref = np.maximum(ref, 0) if relu else ref
        elif kind == "relu":
            v, ref = plan.relu(values[i]), np.maximum(a, 0)
        elif kind == "copy":
            v, ref = plan.reshape(values[i], [a.shape[1]]), a
        elif kind == "softmax":
            e = np.exp(a - a.max(axis=1, keepdims=True))
            v, ref = plan.softmax(values[i]), e / e.sum(axis=1, keepdims=True)
        elif kind == "concat":
            j = int(r.integers(len(values)))
            v, ref = plan.concat([values[i], values[j]]), np.concatenate([a, refs[j]], axis=1)
        else:
            same = [k for k in range(len(values)) if refs[k].shape == a.shape]
            picks = [i] + [int(r.choice(same)) for _ in range(int(r.integers(0, 3)))]
            v = plan.elementwise(str(kind), [values[k] for k in picks])
            ref = refs[picks[0]].copy()
            for k in picks[1:]:
                ref = ref * refs[k] if kind == "multiply" else ref + refs[k]
            if kind == "average":
                ref = ref * (1.0 / len(picks))
        values.append(v)
        refs.append(ref)
    produced = list(range(1, len(values)))
    outputs = sorted(set(int(k) for k in r.choice(produced, size=min(3, len(produced)), replace=False)))
    plan.finish([values[k] for k in outputs])
    got = plan.run([x])
    np.testing.assert_array_equal(x, x_copy)
    for g, k in zip(got, outputs):
        np.testing.assert_allclose(g, refs[k], rtol=1e-9, atol=1e-9 * (1 + np.abs(refs[k]).max()))
    # Each value in a place of its own (a small batch on a thread team) runs the same ops on the
    # same values: the same bits, the input untouched.
    plan.places = "own"
    assert plan.own_places(batch)
    for g, o in zip(got, plan.run([x])):
        np.testing.assert_array_equal(o, g)
    np.testing.assert_array_equal(x, x_copy)


# ------------------------------------------------------------------ residual Add fused into the conv
# conv2d -> Add -> ReLU runs as one conv op that adds the shortcut and applies the ReLU in its
# epilogue (inference_plan.cpp, fuse_residual_adds): direct and Winograd add it as they write,
# the other forms in one pass after the conv. The bits must be the layers' (Add, then ReLU).


def residual_block(dtype="float32", side=10, channels=16, order="conv_first", project=False, tail_relu=True,
                   extra_reader=False, return_sum=False):
    x = convforge.Input((side, side, channels), dtype=dtype, name="x")
    y = layers.Conv2D(channels, 3, padding="same", activation="relu", name="c1")(x)
    y = layers.Conv2D(channels, 3, padding="same", name="c2")(y)
    y = layers.BatchNormalization(name="bn")(y)
    shortcut = layers.Conv2D(channels, 1, name="proj")(x) if project else x
    total = layers.Add(name="add")([y, shortcut] if order == "conv_first" else [shortcut, y])
    out = layers.ReLU(name="relu")(total) if tail_relu else total
    outputs = [layers.GlobalAveragePooling2D(name="gap")(out)]
    if extra_reader:  # the conv's output read by another layer too: not fused
        outputs.append(layers.GlobalMaxPooling2D(name="gmp")(y))
    if return_sum:  # the Add's output returned: the Add fused, not the ReLU
        outputs.append(total)
    return convforge.Model(x, outputs if len(outputs) > 1 else outputs[0], name="residual_block")


def forward_algorithms(x_shape, w_shape, dtype):
    return list(_core.conv2d_algorithms(x_shape, w_shape, (1, 1), (1, 1, 1, 1), (1, 1), dtype)["fwd"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3])
def test_residual_add_fused_in_every_forward_algorithm(isa, dtype, batch, rng, plans_on):
    model = residual_block(dtype)
    randomize_batchnorm(model, rng)
    x = rng.standard_normal((batch, 10, 10, 16)).astype(dtype)
    names = forward_algorithms((batch, 16, 10, 10), (16, 16, 3, 3), dtype)
    assert "implicit_gemm" in names and "im2col_gemm" in names
    for name in names:
        with convforge.functional.force_conv2d_algorithm(fwd=name):
            plan = assert_same_bits(model, [x])
        text = plan.plan.describe()
        assert "+residual(v0) +relu" in text and "add(" not in text and "relu(" not in text, (name, text)


@pytest.mark.parametrize("order", ["conv_first", "shortcut_first"])
@pytest.mark.parametrize("project", [False, True])
def test_residual_add_either_order_and_projection(order, project, rng, plans_on, threads):
    model = residual_block(order=order, project=project, side=12)
    randomize_batchnorm(model, rng)
    x = rng.standard_normal((5, 12, 12, 16)).astype(np.float32)
    for n in (1, 2):
        convforge.set_num_threads(n)
        plan = assert_same_bits(model, [x])
    text = plan.plan.describe()
    # With a projection, the conv made last (the graph's order decides which) takes the sum.
    assert text.count("+residual") == 1 and "add(" not in text, text


def test_residual_add_not_fused_where_it_cannot_be(rng, plans_on):
    # The conv's output also read by another layer: the Add stays an op.
    model = residual_block(extra_reader=True)
    x = rng.standard_normal((2, 10, 10, 16)).astype(np.float32)
    text = assert_same_bits(model, [x]).plan.describe()
    assert "+residual" not in text and "add(" in text, text
    # The sum returned by the model: the Add is fused, the ReLU after it stays an op.
    model = residual_block(return_sum=True)
    text = assert_same_bits(model, [x]).plan.describe()
    assert "+residual" in text and "relu(" in text and "+residual(v0) +relu" not in text, text
    # A conv with its own ReLU feeding the Add: the ReLU comes before the sum, no fusion.
    inp = convforge.Input((10, 10, 16))
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    model = convforge.Model(inp, layers.ReLU()(layers.Add()([y, inp])))
    text = assert_same_bits(model, [x]).plan.describe()
    assert "+residual" not in text and "add(" in text, text
    # Three inputs: an elementwise op as before.
    model = convforge.Model(inp, layers.Add()([layers.Conv2D(16, 1)(inp), inp, inp]))
    text = assert_same_bits(model, [x]).plan.describe()
    assert "+residual" not in text and "add(" in text, text


def test_residual_add_without_tail_relu_and_with_non_finite_input(rng, plans_on):
    model = residual_block(tail_relu=False, side=16)
    x = rng.standard_normal((16, 16, 16, 16)).astype(np.float32)
    text = assert_same_bits(model, [x]).plan.describe()
    assert "+residual(v0) [" in text, text
    # An inf sends Winograd back to the direct forms (its non-finite check): the residual too.
    x[3, 5, 7, 2] = np.inf
    x[9, 0, 0, 0] = np.nan
    for name in forward_algorithms((16, 16, 16, 16), (16, 16, 3, 3), "float32"):
        with convforge.functional.force_conv2d_algorithm(fwd=name):
            assert_same_bits(model, [x])


# ------------------------------------------------------------------ predict of one batch
# predict of at most batch_size samples without a progress bar runs the plan once, without the
# batch loop (trainer._predict_at_once); it must give what the loop gives (verbose=1 takes it).


def test_one_batch_predict_equals_the_batch_loop(rng, plans_on, capsys):
    x_in = convforge.Input((10, 10, 16), name="x")
    y = layers.Conv2D(16, 3, padding="same", name="c")(x_in)
    pooled = layers.GlobalAveragePooling2D(name="gap")(y)
    head = layers.Dense(4, activation="softmax", name="head")(pooled)
    models = [lenet5(), convforge.Model(x_in, [head, y, pooled])]  # a channels-last image output too
    for model in models:
        shape = (7, *model.input_shape[1:])
        x = rng.standard_normal(shape).astype(np.float32)
        fast = model.predict(x, verbose=0)
        loop = model.predict(x, verbose=1)
        capsys.readouterr()
        for a, b in zip(fast if isinstance(fast, list) else [fast], loop if isinstance(loop, list) else [loop]):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
            assert not np.shares_memory(a, x)
        np.testing.assert_array_equal(model.predict(x, verbose=0, batch_size=7)[0], np.asarray(fast[0]))


def test_one_call_predict_takes_only_what_the_general_path_would_take(rng, plans_on, monkeypatch):
    # predict(x, verbose=0) of one array that the general path takes as it is runs the plan
    # after a few attribute reads (trainer._predict_ready); anything else goes the general way,
    # with its checks and messages. Where both apply they give the same bits (a batch_size that
    # is a NumPy integer, valid, makes predict take the general path).
    from convforge import distributed

    model = lenet5()
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    model.predict(x, verbose=0)
    for arg in (x, x[..., 0], x.astype(np.float64), np.asfortranarray(x), x[::-1], x[:1]):
        got = model._predict_ready(arg, None)
        assert got is not None
        np.testing.assert_array_equal(got, model.predict(arg, batch_size=np.int64(32), verbose=0))
        np.testing.assert_array_equal(model.predict(arg, verbose=0), got)
    declined = [(x, 2), (x, 2.0), (x, np.int64(8)), (x[:0], None), (x[:, :27], None), (x[0], None),
                (x.astype(np.complex64), None), (x.reshape(3, 28, 28, 1, 1), None)]
    for arg, batch_size in declined:
        assert model._predict_ready(arg, batch_size) is None, (arg.shape, arg.dtype, batch_size)
    with pytest.raises(ValueError, match="incompatible with the model"):
        model.predict(x[:, :27], verbose=0)
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(x.astype(np.complex64), verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.predict(x, batch_size=0, verbose=0)
    assert model.predict(x[:0], verbose=0).shape == (0, 10)

    # Two inputs, and a data-parallel run: the general path.
    a, b = convforge.Input((4,)), convforge.Input((4,))
    two = convforge.Model([a, b], layers.Dense(2)(layers.Add()([a, b])))
    assert two._predict_ready(np.ones((2, 4), np.float32), None) is None

    class TwoRanks:
        size = 2

    monkeypatch.setattr(distributed, "strategy", lambda: TwoRanks())
    assert model._predict_ready(x, None) is None
    monkeypatch.undo()
    # A Sequential model not built yet: predict builds it on the general path.
    fresh = convforge.Sequential([layers.Dense(3)])
    assert fresh._predict_ready(np.ones((2, 5), np.float32), None) is None
    assert fresh.predict(np.ones((2, 5), np.float32), verbose=0).shape == (2, 3)
    assert fresh._predict_ready(np.ones((2, 5), np.float32), None) is not None


def test_ready_predict_runs_what_the_python_path_would_and_declines_the_rest(rng, plans_on, threads):
    # After one predict, the plan's `ready` (functional.ready_predict) makes predict's checks
    # and the run in one C++ call; every array it declines goes the Python way, which gives
    # the same result or the same error.
    model = lenet5()
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    assert model._compiled_plan() is None  # no plan before the first predict
    first = model.predict(x, verbose=0)
    compiled = model._compiled_plan()
    ready = compiled.ready
    assert ready is not None
    np.testing.assert_array_equal(ready(x, None), first)
    np.testing.assert_array_equal(ready(x[..., 0], 3), first)  # (N, H, W): a reshape too
    assert ready(x, None) is not ready(x, None)  # a fresh array each call
    declined = [(x, 2), (x, np.int64(8)), (x, True), (x, 0), (x, 2**70), (x[:0], None), (x.astype(np.float64), None),
                (np.asfortranarray(x), None), (x[::-1], None), (x[:, :27], None), (x[0], None),
                (x.reshape(3, 28, 28, 1, 1), None), (x.view(np.recarray), None), ([x], None)]
    for arg, batch_size in declined:
        assert ready(arg, batch_size) is None, (getattr(arg, "shape", None), batch_size)
    # ... and predict answers those as before.
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), verbose=0), first)
    np.testing.assert_array_equal(model.predict(x[::-1], verbose=0), first[::-1])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.predict(x, batch_size=True, verbose=0)
    # The forced algorithm is read at each call: here one LeNet-5's 5x5 layers cannot take.
    with F.force_conv2d_algorithm(fwd="winograd_f4x3"):
        with pytest.raises(ValueError, match="winograd_f4x3"):
            ready(x, None)
        with pytest.raises(ValueError, match="winograd_f4x3"):
            model.predict(x, verbose=0)
    np.testing.assert_array_equal(ready(x, None), first)
    # An edit in place is seen (the plan's compare); a replaced array makes ready decline, and
    # the model then builds a new plan with its own.
    conv = model.layers[0]
    conv.params["kernel"][0, 0, 0, 0] += 1.0
    edited = ready(x, None)
    assert not np.array_equal(edited, first)
    np.testing.assert_array_equal(model.predict(x, verbose=0, batch_size=np.int64(32)), edited)
    conv.params["kernel"] = conv.params["kernel"].copy()
    assert ready(x, None) is None
    np.testing.assert_array_equal(model.predict(x, verbose=0), edited)
    assert model._compiled_plan() is not compiled and model._compiled_plan().ready is not None
    # Only where predict returns the plan's one output as it is, from a reshaped input.
    image = convforge.Input((8, 8, 3))
    rgb = convforge.Model(image, layers.Dense(2)(layers.Flatten()(layers.Conv2D(4, 3)(image))))
    rgb.predict(rng.random((2, 8, 8, 3), dtype=np.float32), verbose=0)
    assert rgb._compiled_plan().ready is None  # NHWC -> NCHW is a transpose
    gray = convforge.Input((8, 8, 1))
    maps = convforge.Model(gray, layers.Conv2D(4, 3)(gray))
    maps.predict(rng.random((2, 8, 8, 1), dtype=np.float32), verbose=0)
    assert maps._compiled_plan().ready is None  # an image output goes back channels-last
    with pytest.raises(ValueError, match="values per sample"):
        F.ready_predict(compiled.plan, [], [], [(28, 28, 2)])


@pytest.mark.parametrize(
    "change",
    [
        lambda p, w: p.__setitem__("kernel", w),
        lambda p, w: p.update(kernel=w),
        lambda p, w: p.update([("kernel", w)]),
        lambda p, w: p.__ior__({"kernel": w}),
        lambda p, w: (p.pop("kernel"), p.setdefault("kernel", w)),
        lambda p, w: (p.__delitem__("kernel"), p.__setitem__("kernel", w)),
    ],
    ids=["setitem", "update", "update_pairs", "ior", "pop_setdefault", "delitem"],
)
def test_ready_predict_sees_a_weight_replaced_by_any_dict_method(change, rng, plans_on):
    # ready checks the layers' objects only after a counted change (WeightDict, Layer.__setattr__):
    # every way of replacing a weight in layer.params must count, or ready would run the old plan.
    model = lenet5()
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    model.predict(x, verbose=0)
    ready = model._compiled_plan().ready
    assert ready is not None and model._compiled_plan()._changes_counted()
    first = ready(x, None)
    np.testing.assert_array_equal(ready(x, None), first)  # checked once, then by the count
    conv = model.layers[0]
    params = conv.params
    before = _core.layer_changes()
    change(params, params["kernel"] * 2)
    assert _core.layer_changes() > before
    assert ready(x, None) is None  # declined: predict's Python path builds a new plan
    got = model.predict(x, verbose=0)
    assert not np.allclose(got, first)
    np.testing.assert_array_equal(got, layer_by_layer(model, [x])[0])


def test_calling_the_model_takes_the_one_call_path(rng, plans_on):
    # model(x) (and predict_on_batch) in inference mode run the plan's `ready` for the whole batch,
    # as predict does for one batch; training=True, or an input ready declines, goes the general
    # way, with the same results.
    model = lenet5()
    x = rng.random((40, 28, 28, 1), dtype=np.float32)  # more than predict's default batch of 32
    want = model.predict(x, verbose=0, batch_size=40)
    compiled = model._compiled_plan()
    ready, calls = compiled.ready, []
    assert ready is not None
    compiled.ready = lambda xb, batch_size: calls.append(batch_size) or ready(xb, batch_size)
    np.testing.assert_array_equal(model(x), want)
    np.testing.assert_array_equal(model.predict_on_batch(x[:3]), want[:3])
    assert calls == [40, 3]
    np.testing.assert_array_equal(model(x.astype(np.float64)), want)  # declined (float64): the general path
    assert calls == [40, 3, 40]
    model(x[:2], training=True)
    assert calls == [40, 3, 40]
    assert model(x[:0]).shape == (0, 10)


def test_weight_dict_counts_every_change():
    # Each of dict's methods that changes entries counts the change (after making it).
    mutators = {"__setitem__", "__delitem__", "__ior__", "pop", "popitem", "setdefault", "update", "clear"}
    assert mutators <= set(WeightDict.__dict__)
    calls = [("__setitem__", ("a", 3)), ("__delitem__", ("a",)), ("__ior__", ({"a": 3},)), ("pop", ("a",)),
             ("popitem", ()), ("setdefault", ("c", 3)), ("update", ({"a": 3},)), ("clear", ())]
    assert {name for name, _ in calls} == mutators
    for name, args in calls:
        d = WeightDict(a=1, b=2)
        before = _core.layer_changes()
        getattr(d, name)(*args)
        assert _core.layer_changes() == before + 1, name
    d = WeightDict(a=1)
    d |= {"b": 2}
    assert type(d) is WeightDict and d == {"a": 1, "b": 2}
    assert type(layers.Dense(3).params) is WeightDict


def test_ready_predict_sees_settings_and_a_replaced_weights_dict(rng, plans_on):
    model = lenet5()
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    first = model.predict(x, verbose=0)
    ready = model._compiled_plan().ready
    np.testing.assert_array_equal(ready(x, None), first)
    # A setting replaced (an attribute the lowering read): counted by Layer.__setattr__.
    dense = model.layers[-2]
    relu = dense.activation
    dense.activation = None
    assert ready(x, None) is None
    without = model.predict(x, verbose=0)
    assert not np.array_equal(without, first)
    dense.activation = relu
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    # The whole weights dict replaced, even by a plain dict (which counts nothing itself): the
    # plan records the dict, so it is made again, and a plan over a plain dict checks every call.
    ready = model._compiled_plan().ready
    conv = model.layers[0]
    conv.params = dict(conv.params, kernel=conv.params["kernel"] * 2)
    assert ready(x, None) is None
    doubled = model.predict(x, verbose=0)
    assert not np.allclose(doubled, first)
    compiled = model._compiled_plan()
    assert not compiled._changes_counted()
    model.predict(x, verbose=0)
    ready = compiled.ready
    assert ready is not None
    np.testing.assert_array_equal(ready(x, None), doubled)
    dict.__setitem__(conv.params, "kernel", conv.params["kernel"] / 2)  # not counted: a plain dict
    assert ready(x, None) is None
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    # A layer attribute deleted counts too.
    before = _core.layer_changes()
    conv.scratch = 1
    del conv.scratch
    assert _core.layer_changes() == before + 2


def test_one_batch_predict_returns_each_output_its_own_array(rng, plans_on):
    x_in = convforge.Input((6,))
    hidden = layers.Dense(3, activation="relu")(x_in)
    model = convforge.Model(x_in, [hidden, hidden])  # one tensor, two outputs
    x = rng.standard_normal((2, 6)).astype(np.float32)
    a, b = model.predict(x, verbose=0)
    np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(a, b)
    # A tail (a tanh the plan has no op for) still runs in Python after the plan.
    tail = convforge.Model(x_in, layers.Dense(2, activation="tanh")(hidden))
    assert tail._whole_plan() is None
    np.testing.assert_allclose(tail.predict(x, verbose=0), layer_by_layer(tail, [x])[0], rtol=0, atol=0)


def test_residual_add_whose_shortcut_is_an_earlier_fused_sum(rng):
    # Ops in this order: a = conv_p(x), b = conv_q(x), s = a + x, t = b + s, relu(t). The first Add
    # fuses into conv_p, which then makes s before conv_q runs: the second Add fuses into conv_q
    # with s as its shortcut. Compared with the sums computed from single-conv plans.
    def one_conv(w):
        plan = _core.InferencePlan("float32")
        v = plan.input([16, 8, 8])
        plan.finish([plan.conv2d(v, w, None, (1, 1), (1, 1, 1, 1), (1, 1))])
        return plan

    wp, wq = (rng.standard_normal((16, 16, 3, 3)).astype(np.float32) for _ in range(2))
    plan = _core.InferencePlan("float32")
    x = plan.input([16, 8, 8])
    a = plan.conv2d(x, wp, None, (1, 1), (1, 1, 1, 1), (1, 1))
    b = plan.conv2d(x, wq, None, (1, 1), (1, 1, 1, 1), (1, 1))
    s = plan.elementwise("add", [a, x])
    t = plan.elementwise("add", [b, s])
    plan.finish([plan.relu(t)])
    text = plan.describe()
    assert text.count("+residual") == 2 and "add(" not in text and "relu(" not in text, text
    data = rng.standard_normal((3, 16, 8, 8)).astype(np.float32)
    pa, = one_conv(wp).run([data])
    pb, = one_conv(wq).run([data])
    got, = plan.run([data])
    np.testing.assert_array_equal(got, np.maximum(pb + (pa + data), 0))


# ------------------------------------------------------------------ kept transformed weights


def one_conv_plan(w, b, side, bn=None, relu=False):
    plan = _core.InferencePlan(w.dtype.name)
    y = plan.conv2d(plan.input([w.shape[1], side, side]), w, b, (1, 1), (1, 1, 1, 1), (1, 1), bn=bn, relu=relu)
    plan.finish([y])
    return plan


@pytest.mark.parametrize("side", [28, 9, 14, 21])
def test_winograd_items_that_split_rows_of_tiles_give_the_same_bits(side, rng, threads):
    # The channel form's work items are equal runs of tiles that may start and end inside a row
    # of tiles (one 28x28 image: 7 rows of 7 tiles, 25 and 24 on two threads), the outputs
    # stored row by row there, the residual added and the ReLU applied on the way: every thread
    # count and batch gives one thread's bits, and they agree with the oracle's sums. Winograd
    # forced (a 9x9 image would take the direct form); the channel form where AVX-512 runs, the
    # tile form elsewhere.
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    plan = _core.InferencePlan("float32")
    x = plan.input([16, side, side])
    shortcut = plan.input([32, side, side])
    y = plan.conv2d(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1))
    plan.finish([plan.relu(plan.elementwise("add", [y, shortcut]))])
    assert "+residual" in plan.describe()
    for batch in (1, 2, 3, 5):
        data = rng.standard_normal((batch, 16, side, side)).astype(np.float32)
        res = rng.standard_normal((batch, 32, side, side)).astype(np.float32)
        convforge.set_num_threads(1)
        want, = plan.run([data, res], conv_algorithm="winograd_f4x3")
        for n in (2, 3, 4):
            convforge.set_num_threads(n)
            got, = plan.run([data, res], conv_algorithm="winograd_f4x3")
            np.testing.assert_array_equal(got, want, err_msg=f"batch {batch}, {n} threads")
        # Within the transforms' bound (tests/winograd_bound.py) plus the residual sum's rounding.
        conv = F.conv2d(data.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1)
        eps = np.finfo(np.float32).eps
        bound = (16 + 25) * eps * forward_magnitude(data, w, b, (1, 1, 1, 1), (side, side)) + eps * (np.abs(conv) + np.abs(res))
        assert np.all(np.abs(want - np.maximum(conv + res, 0)) <= bound)


# Channel-form shapes (16-channel multiples: 7x7 has 4 tiles an image, 28x28 49), an odd side
# with the last tiles part outside, and 8 -> 24 channels (the tile form on AVX-512).
KEPT_CASES = [(16, 16, 28), (32, 32, 14), (64, 64, 7), (16, 48, 9), (8, 24, 10)]


@pytest.mark.parametrize("ic,oc,side", KEPT_CASES)
def test_kept_winograd_weights_give_the_forced_layers_bits(isa, ic, oc, side, rng, threads):
    # The plan's Winograd with its kept filters against a layer call forced to Winograd (which
    # transforms them itself) on one thread: the same transform, the same products, the same
    # bits, the first run (made) and the next (kept), on 1 to 3 threads (one small image on more
    # threads than rows of tiles splits the filters too).
    w = rng.standard_normal((oc, ic, 3, 3)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    plan = one_conv_plan(w, b, side, relu=True)
    for batch in (1, 3):
        x = rng.standard_normal((batch, ic, side, side)).astype(np.float32)
        convforge.set_num_threads(1)
        with convforge.functional.force_conv2d_algorithm(fwd="winograd_f4x3"):
            want = F.conv2d(x, w, b, padding=1, relu=True)
        for n in (1, 2, 3):
            convforge.set_num_threads(n)
            for _ in range(2):
                np.testing.assert_array_equal(plan.run([x], conv_algorithm="winograd_f4x3")[0], want)


# The direct form's kept pack: stride-2 3x3 and 1x1 layers of the example ResNet (channel groups
# on two and three threads at one image), a 5x5 with a tail of taps past the last block of 16,
# and 48 filters (three vectors: groups of two and one).
DIRECT_KEPT_CASES = [(16, 32, 28, 3, 2), (32, 64, 14, 1, 2), (6, 16, 14, 5, 1), (32, 48, 9, 3, 1)]


@pytest.mark.parametrize("ic,oc,side,k,stride", DIRECT_KEPT_CASES)
def test_kept_direct_pack_gives_the_layers_bits_and_follows_edits(isa, ic, oc, side, k, stride, rng, threads):
    # A plan's direct conv reads its filters packed once and kept (no pack per run, none per
    # thread): the layer's bits on 1 to 3 threads, the first run (packed) and the next (kept),
    # and an edit of one weight in place is seen at the next run.
    w = rng.standard_normal((oc, ic, k, k)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    pad = (k // 2,) * 4
    plan = _core.InferencePlan("float32")
    y = plan.conv2d(plan.input([ic, side, side]), w, b, (stride, stride), pad, (1, 1), relu=True)
    plan.finish([y])
    args = ((stride, stride), pad, (1, 1))
    if "direct" not in _core.conv2d_algorithms((1, ic, side, side), w.shape, *args)["fwd"]:
        pytest.skip(f"direct is not compiled for {isa}")
    for edit in range(2):
        if edit:
            w[oc - 1, ic - 1, k - 1, k - 1] += 1.0  # the bank's last weight: the pack's last tap
        for batch in (1, 3):
            x = rng.standard_normal((batch, ic, side, side)).astype(np.float32)
            convforge.set_num_threads(1)
            want = _core.conv2d_fwd(x, w, b, *args, None, True, "direct")
            for n in (3, 2, 1):
                convforge.set_num_threads(n)
                for _ in range(2):
                    np.testing.assert_array_equal(plan.run([x], conv_algorithm="direct")[0], want)


def test_kept_weights_let_one_image_take_winograd(rng):
    # On AVX-512 a 64-channel 7x7 image takes Winograd in the plan (its 4 tiles pay once the
    # filters are kept) and the direct form in a layer call and in a plan that keeps nothing.
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    x = rng.standard_normal((1, 64, 7, 7)).astype(np.float32)
    plan = one_conv_plan(w, b, 7)
    layer = F.conv2d(x, w, b, padding=1)
    with convforge.functional.force_conv2d_algorithm(fwd="winograd_f4x3"):
        winograd = F.conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(plan.run([x])[0], winograd if convforge.build_info()["isa"] == "avx512" else layer)
    plan.keep_prepared = False
    assert plan.keep_prepared is False
    np.testing.assert_array_equal(plan.run([x])[0], layer)
    assert not np.array_equal(layer, winograd)  # the two choices are told apart


@pytest.mark.parametrize("edit", ["kernel", "bias", "mean", "variance", "gamma", "beta"])
def test_kept_weights_follow_every_in_place_edit(isa, edit, rng):
    # Each array the fold and Winograd's filters come from, edited in place by one element
    # after runs that kept what came of it: the next run has a fresh plan's bits.
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    mean, gamma, beta = (rng.standard_normal(32).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 32).astype(np.float32)
    arrays = {"kernel": w, "bias": b, "mean": mean, "variance": var, "gamma": gamma, "beta": beta}
    bn = (mean, var, gamma, beta, 1e-3)
    plan = one_conv_plan(w, b, 14, bn=bn, relu=True)
    x = rng.standard_normal((1, 16, 14, 14)).astype(np.float32)
    before = plan.run([x])[0]
    np.testing.assert_array_equal(plan.run([x])[0], before)
    a = arrays[edit]
    a.reshape(-1)[a.size // 2] *= 1.5  # one element of the array the plan holds
    after = plan.run([x])[0]
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, one_conv_plan(w, b, 14, bn=bn, relu=True).run([x])[0])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_kept_weights_follow_an_edit_anywhere_in_a_large_bank(n_threads, rng, threads):
    # A 144 KiB bank with its bias and BatchNormalization vectors, on one and two threads: an
    # edit in the first, last or any middle value of the weights (the first and last of each
    # 16 KiB, its halves) or of a vector is seen at the next run. Two images (7 MFLOP) run in
    # a thread team on two threads, which shares the digests in blocks of 4096 values of the
    # sources one after another: 4095 | 4096 is a block's end and the next one's start, and
    # the last block joins the bias and the four vectors.
    convforge.set_num_threads(n_threads)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)  # 36,864 values
    b = rng.standard_normal(64).astype(np.float32)
    mean, gamma, beta = (rng.standard_normal(64).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 64).astype(np.float32)
    bn = (mean, var, gamma, beta, 1e-3)
    plan = one_conv_plan(w, b, 7, bn=bn)
    x = rng.standard_normal((2, 64, 7, 7)).astype(np.float32)
    every_block = [(w, 4096 * k + 7) for k in range(9)]  # the bank's nine blocks
    for array, index in [(w, 0), (w, 4095), (w, 4096), (w, 18431), (w, 18432), (w, w.size - 1), (b, 0),
                         (mean, 31), (beta, beta.size - 1), *every_block]:
        before = plan.run([x])[0]
        np.testing.assert_array_equal(plan.run([x])[0], before)
        array.reshape(-1)[index] = array.reshape(-1)[index] * 1.5 + 0.25
        after = plan.run([x])[0]
        assert not np.array_equal(after, before), index
        np.testing.assert_array_equal(after, one_conv_plan(w, b, 7, bn=bn).run([x])[0])


def stem_and_bank_plan(dtype, stem, stem_bn, bank, bank_bn):
    # A small first conv (1 -> 64 channels, 7x7 images) and a 64 -> 64 bank after it: two
    # images are ~7 MFLOP, a thread team on two threads, whose compare of the bank's sources
    # (295 KB in float64, 148 in float32) runs beside the first conv on another thread.
    plan = _core.InferencePlan(dtype)
    y = plan.conv2d(plan.input([1, 7, 7]), stem, None, (1, 1), (1, 1, 1, 1), (1, 1), bn=stem_bn, relu=True)
    y = plan.conv2d(y, bank, None, (1, 1), (1, 1, 1, 1), (1, 1), bn=bank_bn)
    plan.finish([y])
    return plan


def random_bn(rng, channels, dtype):
    mean, gamma, beta = (rng.standard_normal(channels).astype(dtype) for _ in range(3))
    return mean, rng.uniform(0.5, 2.0, channels).astype(dtype), gamma, beta, 1e-3


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_kept_weights_follow_edits_when_the_first_conv_runs_beside_the_compare(n_threads, rng, threads):
    # On two or more threads the first conv runs on one of them while the others compare the
    # later convs' kept sources (its own are compared first): an edit of the first conv's
    # weights or BatchNormalization vectors, or of the bank's (first, last and piece-boundary
    # values: the bank's pieces now start at its first value), is seen at the next run, and
    # every run has a fresh plan's bits on any thread count.
    convforge.set_num_threads(n_threads)
    stem = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    bank = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    stem_bn, bank_bn = random_bn(rng, 64, np.float32), random_bn(rng, 64, np.float32)
    plan = stem_and_bank_plan("float32", stem, stem_bn, bank, bank_bn)
    x = rng.standard_normal((2, 1, 7, 7)).astype(np.float32)
    assert plan.first_op_beside_compare(2)  # in a team (2+ threads), the path under test
    edits = [(stem, 0), (stem, stem.size - 1), (stem_bn[0], 5), (stem_bn[1], 63), (stem_bn[3], 0), (bank, 0),
             (bank, 4095), (bank, 4096), (bank, bank.size - 1), (bank_bn[2], 17)]
    for array, index in edits:
        before = plan.run([x])[0]
        np.testing.assert_array_equal(plan.run([x])[0], before)
        array.reshape(-1)[index] = array.reshape(-1)[index] * 1.5 + 0.25
        after = plan.run([x])[0]
        assert not np.array_equal(after, before), (array.shape, index)
        fresh = stem_and_bank_plan("float32", stem, stem_bn, bank, bank_bn)
        convforge.set_num_threads(1)
        np.testing.assert_array_equal(after, fresh.run([x])[0])
        convforge.set_num_threads(n_threads)


def test_an_error_in_the_first_conv_beside_the_compare_is_raised_once(rng, threads):
    # A first conv that keeps nothing (float64, no BatchNormalization: nothing to fold or
    # prepare) fails inside the team's compare job, where it runs (a kept conv would fail
    # before, making its fold): the error leaves the team once, after the other threads are
    # done comparing, and the plan runs on afterwards with its bits, on the same and on other
    # counts.
    stem = rng.standard_normal((64, 1, 3, 3))
    bank = rng.standard_normal((64, 64, 3, 3))
    plan = stem_and_bank_plan("float64", stem, None, bank, random_bn(rng, 64, np.float64))
    x = rng.standard_normal((2, 1, 7, 7))
    assert plan.first_op_beside_compare(2)
    convforge.set_num_threads(1)
    want = plan.run([x])[0]
    for n in (2, 3, 1, 2):
        convforge.set_num_threads(n)
        with pytest.raises(ValueError, match="direct"):  # float32 only (on AVX-512)
            plan.run([x], conv_algorithm="direct")
        np.testing.assert_array_equal(plan.run([x])[0], want)


def test_objects_unchanged():
    # CompiledInference.current()'s check: identity, not equality; a missing key reads as None.
    a, b = np.zeros(3), np.zeros(3)
    holder = {"kernel": a, "bias": None}

    class Layer:
        epsilon = 1e-3

    layer = Layer()
    value = layer.epsilon
    assert _core.objects_unchanged([(holder, "kernel", a), (holder, "bias", None), (holder, "gone", None)],
                                   [(layer, "epsilon", value)])
    assert not _core.objects_unchanged([(holder, "kernel", b)], [])  # equal values, another array
    layer.epsilon = float("1e-3")  # an equal float, another object
    assert not _core.objects_unchanged([], [(layer, "epsilon", value)])
    with pytest.raises(AttributeError):
        _core.objects_unchanged([], [(layer, "no_such_setting", None)])
    for bad in ([(holder, "kernel")], [("not a dict", "kernel", a)], [[holder, "kernel", a]]):
        with pytest.raises(TypeError):
            _core.objects_unchanged(bad, [])
    with pytest.raises(TypeError):
        _core.objects_unchanged([], [(layer, "epsilon")])


def test_kept_weights_follow_the_isa(rng):
    # Filters kept in one ISA's layout are made again for another's (AVX-512's channel form and
    # the tile form pack them differently).
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    x = rng.standard_normal((2, 32, 14, 14)).astype(np.float32)
    plan = one_conv_plan(w, b, 14)
    previous = _core._isa_cap()
    try:
        detected = convforge.build_info()["isa_detected"]
        isas = ["ref", "avx2", "avx512"]
        for isa in reversed(isas[: isas.index(detected) + 1]):
            _core._set_isa_cap(isa)
            want = one_conv_plan(w, b, 14).run([x], conv_algorithm="winograd_f4x3")[0]
            np.testing.assert_array_equal(plan.run([x], conv_algorithm="winograd_f4x3")[0], want)
    finally:
        _core._set_isa_cap(previous)


def test_kept_weights_with_concurrent_runs(rng, threads):
    # Two threads running one plan use two arenas, each with its own kept filters.
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    plan = one_conv_plan(w, b, 28)
    xs = [rng.standard_normal((1, 16, 28, 28)).astype(np.float32) for _ in range(2)]
    want = [one_conv_plan(w, b, 28).run([x])[0] for x in xs]

    def work(k):
        for _ in range(200):
            np.testing.assert_array_equal(plan.run([xs[k]])[0], want[k])

    run_at_once(work, 2)


_ONE_CPU_TEAM = r"""
import os, sys, time
import numpy as np
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # this thread, and every thread made after it
sys.path.insert(0, sys.argv[1])
import convforge
from test_compiled_inference import example_resnet, graph_of, randomize_batchnorm
rng = np.random.default_rng(7)
model = example_resnet()
randomize_batchnorm(model, rng)
xs = [rng.random((1, 28, 28, 1), dtype=np.float32) for _ in range(2)]
convforge.set_adaptive_threads(False)
convforge.set_num_threads(1)
want = [model.predict(x, verbose=0) for x in xs]
plan = graph_of(model)._inference_plan().plan
for n in (2, 3, 4):
    convforge.set_num_threads(n)
    assert plan.own_places(1), "a team run"
    for i, gap in enumerate((0.0, 0.01, 0.0, 0.05, 0.0, 0.0)):  # the workers spinning, then asleep
        time.sleep(gap)
        # Two inputs in turn: an item left out would not hide behind the same values of the run before.
        got = model.predict(xs[i % 2], verbose=0)
        assert np.array_equal(got, want[i % 2]), (n, gap)
# Kernels called alone: each parallel loop a run of its own on the team.
from convforge import functional as F
x = rng.random((8, 16, 14, 14), dtype=np.float32)
w = rng.random((32, 16, 3, 3), dtype=np.float32)
a = rng.random((64, 300), dtype=np.float32)
b = rng.random((300, 70), dtype=np.float32)
calls = [lambda: F.conv2d(x, w, padding=1), lambda: F.conv2d_backward_weights(F.conv2d(x, w), x, w.shape)[0],
         lambda: F.dense(a, b)]
convforge.set_num_threads(1)
want = [call() for call in calls]
for n in (2, 3):
    convforge.set_num_threads(n)
    for gap in (0.0, 0.01, 0.0):
        time.sleep(gap)
        for call, expected in zip(calls, want):
            assert np.array_equal(call(), expected), (n, gap)
print("same bits")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or convforge.build_info()["openmp"] is False,
                    reason="needs sched_setaffinity and a build with threads")
def test_a_team_on_one_cpu_gives_the_same_bits(tmp_path):
    # Two to four team threads on one CPU: a worker gets the CPU only when the caller yields or
    # is preempted, so the caller runs most shares itself (the ones no worker has claimed), a
    # worker some. Each share is the same items with the same scratch whoever runs it: the same
    # bits as one thread, its workers awake or asleep; for a plan's run and for kernels called
    # alone.
    import subprocess
    import sys

    script = tmp_path / "one_cpu_team.py"
    script.write_text(_ONE_CPU_TEAM)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), tests) if p))
    done = subprocess.run([sys.executable, str(script), tests], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same bits" in done.stdout
