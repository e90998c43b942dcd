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
    """predict with the blocks on, then off: the two outputs (the same plan object both times,
    so that the switch is not lost on a plan made afresh)."""
    plan = plan_of(model, x)
    try:
        plan.blocked_layout = True
        on = model.predict(x, batch_size=len(x), verbose=0)
        plan.blocked_layout = False
        off = model.predict(x, batch_size=len(x), verbose=0)
    finally:
        plan.blocked_layout = True
    assert graph_of(model)._inference_plan().plans[0] is plan
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


def one_image_plan(model, shape, rng):
    """The plan of a one-image predict and its convs' outputs, in op order (AVX-512 builds only)."""
    if not blocks_apply():
        pytest.skip("channel blocks are taken by the AVX-512 convs only")
    plan = plan_of(model, rng.standard_normal((1, *shape)).astype(np.float32))
    return plan, [out for kind, _, out, _ in ops_of(plan) if kind == "conv2d"]


def test_example_resnet_blocks(rng):
    # The example ResNet (bench/onnxbench.py's row): every value from the stem to the last
    # block's first conv; the last conv writes NCHW for the global average pooling, and so does
    # the conv whose output it adds as the residual.
    plan, convs = one_image_plan(*prepared("resnet_example", rng), rng)
    assert plan.blocked_values(1) == convs[:7]


def test_mixed_net_leaves_the_other_ops_nchw(rng):
    plan, convs = one_image_plan(*prepared("mixed", rng), rng)
    ops = ops_of(plan)
    blocked = set(plan.blocked_values(1))
    first, second = convs[:2]
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
        assert not np.isfinite(on[0]).all()  # the special value reached the output
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


C = layers.Conv2D
# (input shape, the convs of a chain ended by a 1x1 conv and a Flatten): shapes the blocked fills
# and stores must get right at their edges (odd sizes, asymmetric and cropping paddings, strides
# and kernels per axis, dilation, 1-row and 1x1 images, three blocks, Winograd's tile form).
SHAPES = {
    "odd_17x33": ((17, 33, 16), [lambda: C(16, 3, padding="same"), lambda: C(32, 3, padding="same")]),
    "stride2_same_even": ((20, 18, 16), [lambda: C(32, 3, strides=2, padding="same"),
                                         lambda: C(32, 3, strides=2, padding="same")]),
    "stride_per_axis": ((19, 21, 16), [lambda: C(32, 3, strides=(1, 2), padding="same"),
                                       lambda: C(32, 3, strides=(2, 1), padding="valid")]),
    "kernels_per_axis": ((23, 30, 16), [lambda: C(32, (5, 3), padding="same"), lambda: C(32, (1, 7), padding="same"),
                                        lambda: C(16, (3, 1), padding="valid")]),
    "dilated_rows": ((21, 19, 16), [lambda: C(32, 3, dilation_rate=(2, 1), padding="same"),
                                    lambda: C(32, 3, dilation_rate=(3, 1), padding="valid")]),
    "pointwise_stride2_odd": ((15, 35, 16), [lambda: C(32, 1, strides=2), lambda: C(32, 1, strides=2)]),
    "7x7_stride2_48": ((37, 41, 16), [lambda: C(48, 7, strides=2, padding="same"), lambda: C(48, 5, padding="same")]),
    "one_pixel": ((1, 1, 16), [lambda: C(32, 1), lambda: C(32, 1)]),
    "3x3_on_2x2": ((2, 2, 16), [lambda: C(32, 3, padding="same"), lambda: C(32, 3, padding="same")]),
    "one_row": ((1, 70, 32), [lambda: C(32, (1, 3), padding="same"), lambda: C(32, (1, 5), padding="same")]),
    "winograd_tile_form_128": ((14, 14, 128), [lambda: C(128, 3, padding="same"), lambda: C(128, 3, padding="same")]),
    "stem_5x5_valid": ((33, 19, 1), [lambda: C(16, 5), lambda: C(32, 3, strides=2)]),
}


def chain(shape, convs):
    x = convforge.Input(shape)
    y = x
    for conv in convs:
        y = conv()(y)
    return convforge.Model(x, layers.Flatten()(C(16, 1)(y)))


@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes_same_bits(name, rng, threads):
    shape, convs = SHAPES[name]
    model = chain(shape, convs)
    randomize_biases(model, rng)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        for n in (1, 2):
            convforge.set_num_threads(n)
            on, off = both_layouts(model, x)
            np.testing.assert_array_equal(on, off, err_msg=f"batch {batch}, {n} threads")


def conv_plus_its_input():
    # conv(y) + y: the residual is the conv's own source
    x = convforge.Input((12, 12, 16))
    y = C(16, 3, padding="same")(x)
    z = layers.ReLU()(layers.Add()([C(16, 3, padding="same")(y), y]))
    return convforge.Model(x, layers.GlobalAveragePooling2D()(C(32, 3, padding="same")(z)))


def read_by_the_pixels_form():
    # v read by a 32-filter conv and by an 8-filter one (the pixels form, which writes NCHW
    # only from NCHW): v stays NCHW
    x = convforge.Input((12, 12, 16))
    v = C(16, 3, padding="same")(x)
    return convforge.Model(x, [layers.Flatten()(C(32, 3, padding="same")(v)),
                               layers.Flatten()(C(8, 3, padding="same")(v))])


def residual_into_an_output():
    x = convforge.Input((12, 12, 16))
    v = C(16, 3, padding="same")(x)
    w = C(16, 3, padding="same")(v)
    return convforge.Model(x, layers.Add()([C(16, 3, padding="same")(w), v]))


def an_output_read_by_a_conv():
    x = convforge.Input((12, 12, 16))
    w = C(32, 3, padding="same")(C(16, 3, padding="same")(x))
    return convforge.Model(x, [w, C(16, 1)(w)])


def the_input_as_a_residual():
    x = convforge.Input((12, 12, 16))
    w = C(16, 3, padding="same")(C(16, 3, padding="same")(x))
    out = layers.ReLU()(layers.Add()([C(16, 3, padding="same")(w), x]))
    return convforge.Model(x, layers.Flatten()(C(16, 3, padding="same")(out)))


def residual_chains():
    x = convforge.Input((9, 9, 32))
    a = C(32, 3, padding="same")(x)
    b = C(32, 1)(a)
    c = layers.Add()([C(32, 3, padding="same")(a), b])
    d = layers.Add()([C(32, 3, padding="same")(c), a])
    e = layers.Add()([C(32, 1)(d), c])
    return convforge.Model(x, layers.GlobalMaxPooling2D()(e))


def a_python_step_between_plans():
    # a tanh runs in Python: two plans, each with its own values
    x = convforge.Input((12, 12, 16))
    y = C(32, 3, padding="same")(C(16, 3, padding="same")(x))
    y = layers.Activation("tanh")(y)
    y = C(32, 3, padding="same")(C(16, 3, padding="same")(y))
    return convforge.Model(x, layers.Flatten()(C(16, 1)(y)))


GRAPHS = [conv_plus_its_input, read_by_the_pixels_form, residual_into_an_output, an_output_read_by_a_conv,
          the_input_as_a_residual, residual_chains, a_python_step_between_plans]


@pytest.mark.parametrize("make", GRAPHS, ids=lambda f: f.__name__)
def test_graphs_same_bits(make, rng, threads):
    model = make()
    randomize_biases(model, rng)
    shape = tuple(model.inputs[0].shape[1:])
    for batch in (1, 3, 9):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        model.predict(x, batch_size=batch, verbose=0)
        plans = graph_of(model)._inference_plan().plans
        for n in (1, 2):
            convforge.set_num_threads(n)
            outs = []
            for on in (True, False):
                for plan in plans:
                    plan.blocked_layout = on
                outs.append(model.predict(x, batch_size=batch, verbose=0))
            for plan in plans:
                plan.blocked_layout = True
            assert graph_of(model)._inference_plan().plans == plans
            on, off = ([o] if not isinstance(o, list) else o for o in outs)
            for a, b in zip(on, off):
                np.testing.assert_array_equal(a, b, err_msg=f"batch {batch}, {n} threads")
        if blocks_apply() and make is not read_by_the_pixels_form:  # its convs' values are outputs or v
            assert all(plan.blocked_values(batch) for plan in plans), "no value in channel blocks"


def test_a_value_the_pixels_form_reads_stays_nchw(rng):
    plan, convs = one_image_plan(read_by_the_pixels_form(), (12, 12, 16), rng)
    assert convs[0] not in plan.blocked_values(1)
