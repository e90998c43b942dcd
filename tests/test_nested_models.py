"""A model nested in another (added to a Sequential, or called in a graph) is one entry of
``model.layers``, as in Keras 3: indexing, ``get_layer``, ``summary()``, ``pop``, freezing by
position, and saving, loading and cloning, which keep the nesting.

The lists below are Keras 3.15.1's for the same code (run with the torch backend when these
tests were written; ``tests/port/nested_transfer.py`` runs the transfer-learning recipe on both)."""

import json

import numpy as np
import pytest

import convforge
from convforge import gradcheck, layers


def _base(name="base"):
    return convforge.Sequential(
        [convforge.Input((8, 8, 3)), layers.Conv2D(4, 3, name=f"{name}_c1"), layers.Conv2D(4, 3, name=f"{name}_c2")],
        name=name)


def _images(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 8, 8, 3)).astype(np.float32)


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def _summary(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return lines[0]


def _nested_models():
    """One of each way to nest, with Keras's model.layers for it."""
    base = _base()
    seq = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten(), layers.Dense(2)])
    fi = convforge.Input((8, 8, 3))
    chain = convforge.Model(fi, layers.Conv2D(3, 1, name="chain_c")(fi), name="chain")
    seq_of_chain = convforge.Sequential([chain, layers.GlobalAveragePooling2D(), layers.Dense(2)])
    inp = convforge.Input((8, 8, 3))
    graph = convforge.Model(inp, layers.Dense(2)(layers.Flatten()(base(inp))))
    a, b = convforge.Input((8, 8, 3)), convforge.Input((8, 8, 3))
    siamese = convforge.Model([a, b], layers.Add()([base(a), base(b)]))
    bi = convforge.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, name="br_c1")(bi)
    branchy = convforge.Model(bi, layers.Add()([h, layers.Conv2D(4, 1, name="br_c2")(h)]), name="branchy")
    oi = convforge.Input((8, 8, 3))
    frozen_call = convforge.Model(oi, layers.Dense(2)(layers.GlobalAveragePooling2D()(branchy(oi, training=False))))
    branchy.trainable = False
    return {
        "sequential in sequential": (seq, ["Sequential", "Flatten", "Dense"]),
        "functional chain in sequential": (seq_of_chain, ["Functional", "GlobalAveragePooling2D", "Dense"]),
        "sequential in a graph": (graph, ["InputLayer", "Sequential", "Flatten", "Dense"]),
        "one model called twice": (siamese, ["InputLayer", "InputLayer", "Sequential", "Add"]),
        "a graph called with training=False, frozen": (frozen_call,
                                                        ["InputLayer", "Functional", "GlobalAveragePooling2D", "Dense"]),
    }


@pytest.mark.parametrize("case", list(_nested_models()))
def test_a_nested_model_is_one_entry_of_model_layers(case):
    model, keras_kinds = _nested_models()[case]
    assert _kinds(model) == keras_kinds
    nested = [entry for entry in model.layers if isinstance(entry, convforge.Model)]
    assert len(nested) == 1
    inner = nested[0]
    assert model.get_layer(inner.name) is inner and model.get_layer(index=keras_kinds.index(type(inner).__name__)) is inner
    # Its layers run as this model's own: one set of weights, found by name too.
    assert inner.layers[-1] is model.get_layer(inner.layers[-1].name)
    assert model.count_params() == sum(entry.count_params() for entry in model.layers)


@pytest.mark.parametrize("case", list(_nested_models()))
def test_saving_loading_and_cloning_keep_the_nesting(case, tmp_path):
    model, _ = _nested_models()[case]
    path = tmp_path / "m.npz"
    model.save(path)
    x = _images()
    xs = x if len(model.inputs) == 1 else [x, x[::-1].copy()]
    for again in (convforge.load_model(path), convforge.models.clone_model(model),
                  convforge.models.model_from_json(model.to_json())):
        assert _kinds(again) == _kinds(model) and [e.name for e in again.layers] == [e.name for e in model.layers]
        assert [e.trainable for e in again.layers] == [e.trainable for e in model.layers]
        assert len(again.trainable_weights) == len(model.trainable_weights)
        for flag in (False, True):
            assert _summary(again, expand_nested=flag) == _summary(model, expand_nested=flag)
    loaded = convforge.load_model(path)
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    inner = next(e for e in loaded.layers if isinstance(e, convforge.Model))
    assert inner.built and inner.layers[-1] is loaded.get_layer(inner.layers[-1].name)  # shared, not copies


def test_freezing_by_position_freezes_the_whole_nested_model():
    convforge.seed(0)
    base = _base()
    model = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten(), layers.Dense(2)])
    model.layers[0].trainable = False  # Keras: base.trainable = False; it was base's first layer alone
    assert base.trainable is False and [layer.trainable for layer in base.layers] == [False, False]
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 4
    before = [w.copy() for w in base.get_weights()]
    model.compile(optimizer=convforge.optimizers.SGD(0.1), loss="mse")
    model.fit(_images(8), np.ones((8, 2), np.float32), epochs=2, verbose=0)
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.layers[0].trainable = True
    model.fit(_images(8), np.ones((8, 2), np.float32), epochs=1, verbose=0)
    assert not np.array_equal(before[0], base.get_weights()[0])


def test_summary_shows_a_nested_model_as_one_row_and_its_layers_when_expanded():
    base = _base()
    model = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten(), layers.Dense(2)])
    table = _summary(model, show_trainable=True)
    rows = [line.split()[0] for line in table.splitlines()[4:] if line and line[0].isalpha()][:-3]
    assert rows == ["base", "flatten", "dense"], table
    assert "base (Sequential)            (None, 4, 4, 4)           260       Y" in table
    expanded = _summary(model, expand_nested=True)
    assert "\u2514 base_c1 (Conv2D)" in expanded and "\u2514 base_c2 (Conv2D)" in expanded
    assert expanded.index("base (Sequential)") < expanded.index("\u2514 base_c1") < expanded.index("flatten (")
    a, b = convforge.Input((8, 8, 3)), convforge.Input((8, 8, 3))
    siamese = convforge.Model([a, b], layers.Add()([base(a), base(b)]))
    table = _summary(siamese)
    # Keras's "Connected to": the model's calls by their inputs, its outputs as base[call][output].
    assert f"base (Sequential)" in table and f"{a.name}[0][0]," in table and f"{b.name}[0][0]" in table
    assert "base[0][0]," in table and "base[1][0]" in table and "base_c2[" not in table
    with pytest.raises(TypeError, match="expand_nested must be True or False"):
        model.summary(expand_nested="yes")


def test_pop_removes_a_nested_model_whole():
    base = _base()
    model = convforge.Sequential([convforge.Input((8, 8, 3)), layers.Conv2D(3, 1, name="stem"), base])
    assert model.pop() is base and [e.name for e in model.layers] == ["stem"]
    assert model.output_shape == (None, 8, 8, 3) and model.count_params() == 12
    model.add(base)
    assert model.layers[-1] is base and model.output_shape == (None, 4, 4, 4)


def test_an_older_file_without_the_nesting_loads_its_layers_one_by_one(tmp_path):
    model = _nested_models()["sequential in a graph"][0]
    config = model.get_config()
    del config["nested"]  # as files written before the nesting was saved
    old = convforge.Model.from_config(config)
    assert _kinds(old) == ["InputLayer", "Conv2D", "Conv2D", "Flatten", "Dense"]
    seq = _nested_models()["sequential in sequential"][0]
    config = seq.get_config()
    del config["nested"]
    assert _kinds(convforge.Sequential.from_config(config)) == ["Conv2D", "Conv2D", "Flatten", "Dense"]


@pytest.mark.parametrize("forged, message", [
    (lambda e: e.update(class_name="Lambda"), "nested model entry 0 must be"),
    (lambda e: e.update(trainable="yes"), "nested model entry 0 must be"),
    (lambda e: e["calls"][0].update(nodes=[999]), "nested model entry 0 must be"),
    (lambda e: e["calls"][0].update(nodes=[]), "nested model entry 0 must be"),
    (lambda e: e["calls"][1].update(nodes=e["calls"][0]["nodes"]), "claims node"),
    (lambda e: e["calls"][0].update(inputs=[["nowhere", 0, 0]]), "refers to"),
])
def test_a_forged_graph_nesting_is_a_value_error(forged, message):
    config = json.loads(json.dumps(_nested_models()["one model called twice"][0].get_config()))
    forged(config["nested"][0])
    with pytest.raises(ValueError, match=message):
        convforge.Model.from_config(config)


@pytest.mark.parametrize("forged, message", [
    (lambda e: e.update(layers=[0, 2]), "consecutive layer positions"),
    (lambda e: e.update(layers=[0, 1, 2, 3, 4]), "consecutive layer positions"),
    (lambda e: e.update(name=""), "nested model entry 0 must be"),
])
def test_a_forged_stack_nesting_is_a_value_error(forged, message):
    config = json.loads(json.dumps(_nested_models()["sequential in sequential"][0].get_config()))
    forged(config["nested"][0])
    with pytest.raises(ValueError, match=message):
        convforge.Sequential.from_config(config)


def test_a_layer_claimed_by_two_nested_entries_is_a_value_error():
    config = _nested_models()["sequential in sequential"][0].get_config()
    config["nested"].append(dict(config["nested"][0], name="again"))
    with pytest.raises(ValueError, match=r"nested model entry 1 \('again'\) claims layer\(s\) \[0, 1\]"):
        convforge.Sequential.from_config(config)


def test_gradcheck_replays_the_generators_of_a_nested_augmentation_block():
    # An augmentation layer given seed= draws from its own generator; inside a nested model it is
    # not an entry of model.layers, and gradcheck must still find it to replay its draws.
    convforge.seed(0)
    augment = convforge.Sequential([convforge.Input((8, 8, 3)), layers.RandomFlip("horizontal", seed=4),
                                    layers.RandomTranslation(0.2, 0.2, seed=5)], name="augment")
    model = convforge.Sequential([convforge.Input((8, 8, 3)), augment, layers.Conv2D(2, 3), layers.Flatten(),
                                  layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = _images(4).astype(np.float64)
    report = gradcheck.check_model_gradients(model, x, np.ones((4, 2)), num_coords=3)
    assert report.passed, report


def test_model_to_dot_draws_a_nested_model_as_one_box_per_call_unless_expanded():
    base = _base()
    a, b = convforge.Input((8, 8, 3)), convforge.Input((8, 8, 3))
    siamese = convforge.Model([a, b], layers.Add()([base(a), base(b)]))
    dot = convforge.utils.model_to_dot(siamese, show_shapes=True)
    assert dot.count("base (Sequential)|input: (None, 8, 8, 3)|output: (None, 4, 4, 4)") == 2
    assert "base_c1" not in dot and dot.count("->") == 4  # input -> base, twice; base -> add, twice
    expanded = convforge.utils.model_to_dot(siamese, expand_nested=True)
    assert "(Sequential)" not in expanded and expanded.count("base_c1 (Conv2D)") == 2 and expanded.count("->") == 6
    stack = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten()])
    assert convforge.utils.model_to_dot(stack).count("->") == 2 and "base (Sequential)" in convforge.utils.model_to_dot(stack)
    with pytest.raises(TypeError, match="expand_nested must be True or False"):
        convforge.utils.model_to_dot(stack, expand_nested=None)


def test_a_float64_model_keeps_its_nested_model_float64_through_load_and_clone(tmp_path):
    # Found by a review: the nested Sequential was made again in float32, converting the shared
    # layers: weights rounded, and a Conv2D's predict then failed (float32 weights, float64 data).
    base = convforge.Sequential([convforge.Input((8, 8, 3)), layers.Conv2D(4, 3, name="c64")], name="b64",
                                dtype="float64")
    stack = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten(), layers.Dense(2)],
                                 dtype="float64")
    x = convforge.Input((8, 8, 3), dtype="float64")
    graph = convforge.Model(x, layers.Dense(2)(layers.Flatten()(base(x))))
    data = _images().astype(np.float64)
    for model in (stack, graph):
        model.save(tmp_path / "m.npz")
        for again in (convforge.load_model(tmp_path / "m.npz"), convforge.models.clone_model(model)):
            assert {w.dtype.name for w in again.weights} == {"float64"}
        loaded = convforge.load_model(tmp_path / "m.npz")
        np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))


def test_a_model_cut_inside_a_nested_call_lists_its_layers_and_saves():
    # Found by a review: a graph ending inside a nested call listed the nested model (with all
    # its parameters in the summary) and its save failed with a KeyError.
    inner = convforge.Sequential([convforge.Input((6,)), layers.Dense(4, name="e1"), layers.Dense(3, name="e2")],
                                 name="enc")
    x = convforge.Input((6,))
    graph = convforge.Model(x, layers.Dense(1)(inner(x)))
    cut = [node for node in graph.get_layer("e1")._inbound_nodes if node.nested_model is inner][0].outputs[0]
    sub = convforge.Model(graph.inputs, cut)
    assert _kinds(sub) == ["InputLayer", "Dense"] and "enc" not in _summary(sub)
    assert _kinds(convforge.models.clone_model(sub)) == ["InputLayer", "Dense"]


@pytest.mark.parametrize("forge, message", [
    (lambda e, c: e["calls"][0].update(inputs=[c["outputs"][0]]), "refers to|reads a tensor"),
    (lambda e, c: e["calls"][0].update(outputs=[c["outputs"][0]]), "returns a tensor"),
    (lambda e, c: e["calls"][0].update(nodes=e["calls"][0]["nodes"][1:]), "reads a tensor the call neither takes"),
    (lambda e, c: e.update(name=c["layers"][-1]["name"]), "the name is taken"),
])
@pytest.mark.parametrize("kind", ["Functional", "Sequential"])
def test_a_saved_call_that_contradicts_its_graph_is_a_value_error(forge, message, kind):
    # Found by a review: these gave KeyErrors (Functional) or were taken silently (Sequential).
    config = json.loads(json.dumps(_nested_models()["one model called twice"][0].get_config()))
    config["nested"][0]["class_name"] = kind
    forge(config["nested"][0], config)
    with pytest.raises(ValueError, match=message):
        convforge.Model.from_config(config)


def test_a_failed_add_of_a_model_leaves_the_sequential_as_it_was():
    base = convforge.Sequential([convforge.Input((6,)), layers.Activation("relu", name="act"),
                                 layers.Dense(4, name="bd")], name="base")
    model = convforge.Sequential([convforge.Input((3,)), layers.Dense(3, name="md")])
    with pytest.raises(ValueError, match="cannot take"):
        model.add(base)
    assert [e.name for e in model.layers] == ["md"] and model.count_params() == 12
    assert "nested" in model.get_config() and model.get_config()["nested"] == []
    assert model.predict(np.zeros((2, 3), np.float32), verbose=0).shape == (2, 3)


def test_the_feature_map_recipe_lists_a_nested_sequential_by_its_output():
    # Found by a review: Model(m.inputs, [l.output for l in m.layers]) raised AttributeError for
    # a nested Sequential; Keras gives its output in m (its first call), as it does here now.
    inner = convforge.Sequential([convforge.Input((6,)), layers.Dense(3, name="i1")], name="inner")
    outer = convforge.Sequential([convforge.Input((6,)), inner, layers.Dense(2, name="o1")])
    features = convforge.Model(outer.inputs, [layer.output for layer in outer.layers])
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    first, last = features.predict(x, verbose=0)
    np.testing.assert_allclose(first, inner.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(last, outer.predict(x, verbose=0), rtol=1e-6)
    assert inner.input is outer.inputs[0]
    outer.pop()
    assert outer.pop() is inner and inner.output is inner.outputs[0]  # its own, once taken out
    again = convforge.Sequential([convforge.Input((6,)), layers.Dense(6, name="pre"), inner])
    assert convforge.Model(again.inputs, again.layers[-1].output).output_shape == (None, 3)


def test_models_nested_two_deep_keep_both_levels_through_saving_and_in_the_summary(tmp_path):
    # Found by a review: saving kept the outer nesting only (the middle model came back with its
    # inner model's layers one by one), and expand_nested did not go down to the inner model.
    enc = convforge.Sequential([convforge.Input((6,)), layers.Dense(4, name="e1"), layers.Dense(3, name="e2")],
                               name="enc")
    middle = convforge.Sequential([convforge.Input((6,)), enc, layers.Dense(2, name="l1d")], name="middle")
    stack = convforge.Sequential([convforge.Input((6,)), middle, layers.Dense(2, name="top")])
    i = convforge.Input((6,))
    graph = convforge.Model(i, layers.Dense(1, name="gd")(middle(i)))
    ti, tj = convforge.Input((6,), name="ti"), convforge.Input((6,), name="tj")
    pair = convforge.Model([ti, tj], layers.Concatenate()([enc(ti), layers.Dense(3, name="tj_d")(tj)]), name="pair")
    a, b = convforge.Input((6,)), convforge.Input((6,))
    outer = convforge.Model([a, b], layers.Dense(1, name="od")(pair([a, b])))
    expanded = _summary(stack, expand_nested=True)
    assert "   \u2514 enc (Sequential)" in expanded and "      \u2514 e1 (Dense)" in expanded
    for model in (stack, graph, outer):
        model.save(tmp_path / "m.npz")
        loaded = convforge.load_model(tmp_path / "m.npz")
        assert _summary(loaded, expand_nested=True) == _summary(model, expand_nested=True)
    loaded_pair = loaded.get_layer("pair")
    assert [t.name for t in loaded_pair.inputs] == ["ti", "tj"]  # Keras's names: predict takes them by name
    assert _kinds(loaded_pair) == _kinds(pair) and loaded_pair.get_layer("enc").layers[0].name == "e1"
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded_pair.predict({"ti": x, "tj": x}, verbose=0), pair.predict([x, x], verbose=0))


def test_nesting_deeper_than_the_limit_in_a_forged_file_is_a_value_error():
    config = _nested_models()["sequential in sequential"][0].get_config()
    entry = config["nested"][0]
    for _ in range(70):  # one layer nested in itself, level after level
        inner = dict(entry, nested=[])
        entry["nested"] = [dict(inner, name=f"{inner['name']}x", layers=[0])]
        entry = entry["nested"][0]
    with pytest.raises(ValueError, match="nested more than 64 deep"):
        convforge.Sequential.from_config(config)


def test_a_layer_of_a_nested_model_called_on_its_own_too_is_an_entry_as_in_keras():
    # Found by a review: the layer's first call decided, so one of the two entries vanished
    # (base(shared(x)) listed no base: it could not be frozen by position). Keras 3.15.1's lists.
    def names(model):
        return [(e.name, type(e).__name__) for e in model.layers][1:]

    shared = layers.Dense(6, name="shared")
    i = convforge.Input((6,))
    base = convforge.Model(i, shared(i), name="base")
    x = convforge.Input((6,))
    assert names(convforge.Model(x, shared(base(x)))) == [("base", "Functional"), ("shared", "Dense")]
    x = convforge.Input((6,))
    after = convforge.Model(x, base(shared(x)))
    assert names(after) == [("shared", "Dense"), ("base", "Functional")]
    assert names(convforge.Model.from_config(after.get_config())) == names(after)
    table = _summary(after)
    assert "shared[0][0]" in table.split("base (Functional)")[1] and table.count("input_layer") == 2  # its own call
    j = convforge.Input((6,))
    alias = convforge.Model(j, shared(j), name="alias")
    x = convforge.Input((6,))
    both = convforge.Model(x, layers.Add()([base(x), alias(x)]))
    assert [n for n, _ in names(both)][:2] == ["base", "alias"]


# A second review's findings, each failing before its fix.

def test_expand_nested_goes_through_a_graph_nested_in_a_graph_nested_in_a_graph():
    i = convforge.Input((6,))
    a = convforge.Model(i, layers.Dense(5, name="ga")(i), name="A")
    j = convforge.Input((6,))
    b = convforge.Model(j, layers.Dense(3, name="gb")(a(j)), name="B")
    k = convforge.Input((6,))
    m = convforge.Model(k, layers.Dense(1, name="gm")(b(k)))
    table = _summary(m, expand_nested=True)  # KeyError before: A's first layer is its InputLayer
    assert "   \u2514 A (Functional)" in table and "      \u2514 ga (Dense)" in table


def test_a_nested_sequential_without_an_input_is_built_with_the_model_holding_it():
    inner = convforge.Sequential([layers.Dense(3)], name="inner")
    model = convforge.Sequential([inner, layers.Dense(2)])
    model.build((None, 6))
    row = next(line for line in _summary(model).splitlines() if line.startswith("inner (Sequential)"))
    assert inner.built and row.split()[2:] == ["(None,", "3)", "21"]


def test_adding_a_model_already_in_the_sequential_is_refused_and_changes_nothing():
    base = convforge.Sequential([convforge.Input((6,)), layers.Dense(6, name="q")], name="base")
    model = convforge.Sequential([base, layers.Dense(6, name="o")])
    with pytest.raises(ValueError, match="'base' is already in this model"):
        model.add(base)
    assert [e.name for e in model.layers] == ["base", "o"] and [layer.name for layer in base.layers] == ["q"]
    assert model.get_config()["nested"][0]["layers"] == [0]
    assert _kinds(convforge.models.clone_model(model)) == ["Sequential", "Dense"]


def test_a_training_false_call_inside_a_training_false_call_stays_so_through_saving(tmp_path):
    convforge.seed(0)
    i = convforge.Input((4,))
    inner = convforge.Model(i, layers.BatchNormalization(name="deep_bn")(layers.Dense(4)(i)), name="inner_bn")
    j = convforge.Input((4,))
    middle = convforge.Model(j, layers.Dense(4)(inner(j, training=False)), name="middle_bn")
    k = convforge.Input((4,))
    model = convforge.Model(k, layers.Dense(4)(middle(k, training=False)))
    model.save(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    for source in (model, convforge.load_model(tmp_path / "m.npz")):
        taken = source.get_layer("middle_bn")
        bn = taken.get_layer("inner_bn").get_layer("deep_bn")
        moving = bn.params["moving_mean"].copy()
        taken.compile(optimizer="sgd", loss="mse")
        taken.fit(x, np.zeros((16, 4), np.float32), epochs=1, verbose=0)
        np.testing.assert_array_equal(bn.params["moving_mean"], moving)  # inner's own training=False call


def test_a_loaded_nested_models_layers_give_their_output_in_its_own_graph(tmp_path):
    i = convforge.Input((6,))
    base = convforge.Model(i, layers.Dense(3)(layers.Dense(5, name="lo_a")(i)), name="lo_base")
    p = convforge.Input((6,))
    model = convforge.Model(p, layers.Dense(2)(base(p)))
    for again in (convforge.models.clone_model(model), convforge.models.model_from_json(model.to_json())):
        taken = again.get_layer("lo_base")
        assert convforge.Model(taken.inputs, taken.get_layer("lo_a").output).output_shape == (None, 5)


def test_model_layers_and_weights_follow_keras_order_around_a_nested_call():
    # Keras 3.15.1: [input, 'z', 'base', 'add'] and get_weights() in that order (z's, then base's),
    # so that set_weights(keras_model.get_weights()) puts every array where Keras has it.
    i = convforge.Input((4,))
    base = convforge.Model(i, layers.Dense(4, name="wo_b")(layers.Dense(4, name="wo_a")(i)), name="wo_base")
    p = convforge.Input((4,))
    model = convforge.Model(p, layers.Add()([layers.Dense(4, name="wo_z")(p), base(p)]))
    assert [e.name for e in model.layers][1:] == ["wo_z", "wo_base", model.layers[-1].name]
    z, a, b = (model.get_layer(n) for n in ("wo_z", "wo_a", "wo_b"))
    expected = [*z.get_weights(), *a.get_weights(), *b.get_weights()]
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), expected))
    assert [w is v for w, v in zip(model.weights, [*z.weights, *a.weights, *b.weights])] == [True] * 6


def test_a_forged_call_that_claims_a_node_of_the_graph_is_a_value_error():
    i = convforge.Input((6,))
    base = convforge.Model(i, layers.Dense(3, name="fc_b")(i), name="fc_base")
    x = convforge.Input((6,))
    model = convforge.Model(x, layers.Concatenate()([base(x), layers.Dense(6, name="fc_side")(x)]))
    config = model.get_config()
    side = next(k for k, n in enumerate(config["nodes"]) if config["layers"][n[0]]["name"] == "fc_side")
    config["nested"][0]["calls"][0]["nodes"] = sorted([side, *config["nested"][0]["calls"][0]["nodes"]])
    # fc_side reads the call's input, so only "leads to nothing it returns" tells it is not the base's.
    with pytest.raises(ValueError, match="holds node\\(s\\) of \\['fc_side'\\], which lead to nothing"):
        convforge.Model.from_config(config)


def test_nesting_past_what_a_file_can_hold_is_refused_when_nesting():
    model = convforge.Sequential([convforge.Input((2,)), layers.Dense(2)], name="level_0")
    for level in range(1, 65):  # 64 levels nested in the last one: the most a file holds
        model = convforge.Sequential([convforge.Input((2,)), model], name=f"level_{level}")
    assert _kinds(convforge.models.clone_model(model)) == ["Sequential"]
    with pytest.raises(ValueError, match="models nested 64 deep at most"):
        convforge.Sequential([convforge.Input((2,)), model])
    x = convforge.Input((2,))
    with pytest.raises(ValueError, match="models nested 64 deep at most"):
        model(x)


def test_a_nested_model_takes_the_dtype_of_the_model_holding_it():
    # Found by a review: a float64 base nested in a float32 model had its layers converted while
    # it still said float64, and its own predict then failed on its float32 weights.
    base = convforge.Sequential([convforge.Input((8, 8, 3)), layers.Conv2D(2, 3)], name="b64", dtype="float64")
    model = convforge.Sequential([convforge.Input((8, 8, 3)), base, layers.Flatten(), layers.Dense(2)])
    assert base.dtype == np.float32 and base.predict(_images(), verbose=0).dtype == np.float32
    model.astype("float64")  # and follows it after (gradcheck's float64 round trip)
    assert base.dtype == np.float64 and base.predict(_images(), verbose=0).dtype == np.float64


def test_layers_order_of_a_nested_model_read_before_its_last_layer_runs():
    """`two` returns [h, g(h)]; h is read (by dp, then `other`) before g's output is: Keras 3.15.1
    lists ['i', 'two', 'dp', 'other', 'add'] (recorded with the same code). convforge listed
    ['dp', 'i', 'other', 'two', 'add'] (a nested call's depth came from its last node), and a
    .keras file's weights then went to the wrong nested model."""
    ii = convforge.Input((4,), name="ii")
    h = layers.Dense(4, name="h")(ii)
    two = convforge.Model(ii, [h, layers.Dense(4, name="g")(h)], name="two")
    oi = convforge.Input((4,), name="oi")
    other = convforge.Model(oi, layers.Dense(4, name="o2")(layers.Dense(4, name="o1")(oi)), name="other")
    i = convforge.Input((4,), name="i")
    p, q = two(i)
    model = convforge.Model(i, layers.Add(name="add")([other(layers.Dense(4, name="dp")(p)), q]))
    assert [layer.name for layer in model.layers] == ["i", "two", "dp", "other", "add"]


def test_a_gan_of_two_unnamed_sequentials_wires_as_in_keras(tmp_path):
    # Model(z, discriminator(generator(z))): each Sequential named its layers from 'dense' on,
    # so the graph refused two layers named 'dense'. Names are now numbered in the process, as
    # Keras's (checked on 3.15.1: the same lists, in a fresh session).
    generator = convforge.Sequential([convforge.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(6)])
    discriminator = convforge.Sequential([convforge.Input((6,)), layers.Dense(3, activation="relu"),
                                          layers.Dense(1, activation="sigmoid")])
    z = convforge.Input((4,))
    gan = convforge.Model(z, discriminator(generator(z)))
    assert [layer.name for layer in generator.layers] == ["dense", "dense_1"]
    assert [layer.name for layer in discriminator.layers] == ["dense_2", "dense_3"]
    assert [layer.name for layer in gan.layers] == ["input_layer_2", "sequential", "sequential_1"]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(gan.predict(x, verbose=0), discriminator.predict(generator.predict(x, verbose=0),
                                                                                  verbose=0), rtol=1e-6)
    gan.save(tmp_path / "gan.keras")
    back = convforge.models.load_model(tmp_path / "gan.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), gan.predict(x, verbose=0))


def test_unnamed_models_get_numbered_names_and_an_ensemble_of_them_saves(tmp_path):
    # The Functional API guide's ensemble: get_model() three times, unnamed, averaged. All three
    # were 'functional': get_layer(name) found the first, and the saved file loaded in neither
    # convforge nor Keras (one name for three entries).
    def get_model():
        i = convforge.Input((6,))
        return convforge.Model(i, layers.Dense(2)(i))

    models = [get_model() for _ in range(3)]
    assert [m.name for m in models] == ["functional", "functional_1", "functional_2"]
    inputs = convforge.Input((6,))
    ensemble = convforge.Model(inputs, layers.average([m(inputs) for m in models]))
    assert [ensemble.get_layer(m.name) is m for m in models] == [True] * 3
    assert [convforge.Sequential().name, convforge.Sequential().name] == ["sequential", "sequential_1"]
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    ensemble.save(tmp_path / "ensemble.keras")
    back = convforge.models.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), ensemble.predict(x, verbose=0))


def test_a_sequential_keeps_its_input_s_name_across_rebuilds():
    # Each build made an InputLayer of the next number (input_layer_2 where Keras keeps its one
    # input layer, input_layer_1).
    first = convforge.Input((3,))
    model = convforge.Sequential([convforge.Input((3,)), layers.Dense(2)])
    model.add(layers.Dense(4))
    assert first.name == "input_layer" and model.inputs[0].name == "input_layer_1"
    assert convforge.Model(model.inputs, model.outputs).layers[0].name == "input_layer_1"
    unnamed = convforge.Sequential([layers.Dense(2)])
    unnamed.build((None, 3))
    unnamed.add(layers.Dense(1))
    assert unnamed.inputs[0].name == "input_layer_2"
