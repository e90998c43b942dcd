"""The inference plan's channel blocks (NCHW16c) between convs (csrc/plan/inference_plan.cpp,
ConvTensors::src_blocked / dst_blocked).

A float32 plan keeps a value in blocks of 16 channels where the conv that makes it and every op
that reads it are convs whose algorithms take that layout (the AVX-512 direct, pixels and
Winograd channel forms). The arithmetic is the same as in NCHW: the outputs must be the very
bits of the same plan with the blocks switched off, on every ISA, thread count, batch size and
chunking, for finite and non-finite data; and the blocks must be used where they apply (the
figures in bench/BEFORE_AFTER.md depend on it), never for a value another kind of op reads.
"""

import re

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge import functional as F
from test_compiled_inference import example_resnet, graph_of, randomize_batchnorm, randomize_biases


def residual_net():
    """Odd sizes and every conv form the blocks take: a 3-channel stem (direct), 3x3 'same'
    convs (Winograd) with BatchNormalization and a projection shortcut added before a ReLU, a
    stride-2 3x3, a 5x5 'valid', a 1x1 stride-2 (the compact frame), 48 channels (three blocks)."""
    x = convforge.Input((13, 11, 3))
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    a = layers.Conv2D(32, 3, padding="same")(y)
    a = layers.BatchNormalization()(a)
    a = layers.ReLU()(a)
    a = layers.Conv2D(32, 3, padding="same")(a)
    short = layers.Conv2D(32, 1)(y)
    y = layers.ReLU()(layers.Add()([a, short]))
    y = layers.Conv2D(48, 3, strides=2, padding="same", activation="relu")(y)
    y = layers.Conv2D(48, 5, padding="valid")(y)
    y = layers.Conv2D(16, 1, strides=2)(y)
    y = layers.GlobalAveragePooling2D()(y)
    return convforge.Model(x, layers.Dense(5, activation="softmax")(y))


def mixed_net():
    """Values the blocks must leave in NCHW: a max pool's input, a Concatenate's, a conv of 24
    channels (not whole blocks), a Flatten's; and a pixels-form stem of one channel."""
    x = convforge.Input((20, 20, 1))
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(y)
    p = layers.MaxPooling2D(2)(y)
    b1 = layers.Conv2D(32, 3, padding="same")(p)
    b2 = layers.Conv2D(24, 1)(p)
    y = layers.Concatenate()([b1, b2])
    y = layers.Conv2D(32, 3, padding="same", activation="relu")(y)
    y = layers.Conv2D(32, 3, strides=2, padding="valid")(y)
    return convforge.Model(x, layers.Dense(3)(layers.Flatten()(y)))


MODELS = {"resnet_example": (example_resnet, (28, 28, 1)), "residual": (residual_net, (13, 11, 3)),
          "mixed": (mixed_net, (20, 20, 1))}


def prepared(name, rng):
    make, shape = MODELS[name]
    model = make()
    randomize_batchnorm(model, rng)
    randomize_biases(model, rng)
    return model, shape


def plan_of(model, x):
    model.predict(x, batch_size=len(x), verbose=0)
    compiled = graph_of(model)._inference_plan()
    assert compiled is not None and len(compiled.plans) == 1, "the whole model should be one plan"
    return compiled.plans[0]


def both_layouts(model, x):
    """predict with the blocks on, then off: the two outputs."""
    plan = plan_of(model, x)
    try:
        plan.blocked_layout = True
        on = model.predict(x, batch_size=len(x), verbose=0)
        plan.blocked_layout = False
        off = model.predict(x, batch_size=len(x), verbose=0)
    finally:
        plan.blocked_layout = True
    return on, off


def ops_of(plan):
    """(kind, input values, output value, is a plan output) per line of describe()."""
    ops = []
    for line in plan.describe().splitlines():
        head, tail = line.split(" -> ")
        ops.append((head.split("(")[0], [int(v) for v in re.findall(r"v(\d+)", head)],
                    int(re.match(r"v(\d+)", tail).group(1)), "[output" in tail))
    return ops


def blocks_apply():
    """Whether this build's active ISA has the convs that take channel blocks."""
    return convforge.build_info()["isa"] == "avx512"


@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("name", list(MODELS))
def test_same_bits_with_and_without_blocks(isa, name, batch, rng, threads):
    model, shape = prepared(name, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        on, off = both_layouts(model, x)
        np.testing.assert_array_equal(on, off, err_msg=f"{n} threads")


@pytest.mark.parametrize("name", list(MODELS))
def test_blocks_only_between_convs(isa, name, rng):
    # Where the blocks apply they are used (on the values between convs that take them), and
    # never for a value that another kind of op reads, an input or an output.
    model, shape = prepared(name, rng)
    plan = plan_of(model, rng.standard_normal((2, *shape)).astype(np.float32))
    ops = ops_of(plan)
    producer = {out: (kind, ins) for kind, ins, out, _ in ops}
    outputs = {out for _, _, out, is_output in ops if is_output}
    for batch in (1, 2, 64):
        blocked = plan.blocked_values(batch)
        if not blocks_apply():
            assert blocked == []
            continue
        assert blocked, f"no value in channel blocks at batch {batch}"
        for v in blocked:
            assert v in producer and producer[v][0] == "conv2d", v
            assert v not in outputs
            assert plan.dims(v)[0] % 16 == 0
            for kind, ins, _, _ in ops:
                if v in ins:
                    assert kind == "conv2d", (v, kind)
    plan.blocked_layout = False
    try:
        assert plan.blocked_values(1) == []
    finally:
        plan.blocked_layout = True


def test_example_resnet_blocks(rng):
    # The example ResNet (bench/onnxbench.py's row): every value from the stem to the last
    # block's first conv; the last conv writes NCHW for the global average pooling, and so does
    # the conv whose output it adds as the residual.
    if not blocks_apply():
        pytest.skip("channel blocks are taken by the AVX-512 convs only")
    model, shape = prepared("resnet_example", rng)
    plan = plan_of(model, rng.standard_normal((1, *shape)).astype(np.float32))
    ops = ops_of(plan)
    convs = [out for kind, _, out, _ in ops if kind == "conv2d"]
    assert plan.blocked_values(1) == convs[:7]


def test_mixed_net_leaves_the_other_ops_nchw(rng):
    if not blocks_apply():
        pytest.skip("channel blocks are taken by the AVX-512 convs only")
    model, shape = prepared("mixed", rng)
    plan = plan_of(model, rng.standard_normal((1, *shape)).astype(np.float32))
    ops = ops_of(plan)
    blocked = set(plan.blocked_values(1))
    first, second = [out for kind, _, out, _ in ops if kind == "conv2d"][:2]
    assert first in blocked  # the pixels-form stem writes blocks for the next conv
    assert second not in blocked  # the max pool reads it
    for kind, ins, out, _ in ops:
        if kind != "conv2d":
            assert not blocked.intersection(ins), kind


@pytest.mark.parametrize("fwd", ["direct", "winograd_f4x3"])
def test_forced_algorithms_same_bits(fwd, rng, threads):
    if not blocks_apply():
        pytest.skip("channel blocks are taken by the AVX-512 convs only")
    model, shape = prepared("resnet_example", rng)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    convforge.set_num_threads(2)
    # The stem (one channel) and the stride-2 layers are not Winograd problems: force the
    # 16-channel 3x3 model's convs only where the algorithm applies to all of them.
    if fwd == "winograd_f4x3":
        inp = convforge.Input((14, 14, 16))
        y = layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
        y = layers.Conv2D(32, 3, padding="same")(y)
        model = convforge.Model(inp, layers.Conv2D(16, 3, padding="same")(y))
        x = rng.standard_normal((3, 14, 14, 16)).astype(np.float32)
    with F.force_conv2d_algorithm(fwd=fwd):
        plan = plan_of(model, x)
        assert plan.blocked_values(3, fwd)
        on, off = both_layouts(model, x)
    np.testing.assert_array_equal(on, off)


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_non_finite_values_same_bits(special, rng, threads):
    # An inf or NaN reaching a Winograd layer hands the layer to the direct form, in the same
    # layouts: the same NaNs and infinities as without the blocks.
    model, shape = prepared("resnet_example", rng)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    x[0, 5, 7, 0] = special
    x[1, 20, 3, 0] = 1e30
    for n in (1, 2):
        convforge.set_num_threads(n)
        on, off = both_layouts(model, x)
        assert np.isnan(on).any() or np.isinf(on).any() or special is np.nan
        np.testing.assert_array_equal(on.view(np.uint32), off.view(np.uint32))


def test_chunked_batch_same_bits(rng, threads):
    # A large batch runs in chunks, several threads each running whole chunks: each chunk
    # chooses its own layouts (its algorithms at its size).
    model, shape = prepared("residual", rng)
    x = rng.standard_normal((37, *shape)).astype(np.float32)
    plan = plan_of(model, x)
    plan.chunk_samples = 4
    convforge.set_num_threads(2)
    on, off = both_layouts(model, x)
    np.testing.assert_array_equal(on, off)
    convforge.set_num_threads(1)
    np.testing.assert_array_equal(model.predict(x, batch_size=37, verbose=0), on)


def test_blocked_values_arguments(rng):
    model, shape = prepared("residual", rng)
    plan = plan_of(model, rng.standard_normal((1, *shape)).astype(np.float32))
    with pytest.raises(ValueError, match="at least one sample"):
        plan.blocked_values(0)
    with pytest.raises(ValueError, match="no_such_algo"):
        plan.blocked_values(1, "no_such_algo")
