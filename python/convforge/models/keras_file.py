"""Keras 3's own files: ``model.save("model.keras")``, ``load_model("model.keras")``,
``model.save_weights("model.weights.h5")`` and ``model.load_weights(...)``.

A ``.keras`` file is a zip archive of three members:

- ``metadata.json``: the Keras version that wrote it and when;
- ``config.json``: the model as Keras's ``serialize_keras_object`` describes it (class, layers,
  for a graph each layer's calls as ``inbound_nodes``, the compile settings);
- ``model.weights.h5``: HDF5, each layer's variables under ``layers/<class in snake case>[_n]/vars/<i>``
  in Keras's layouts (a nested model's under ``layers/<its class>/layers/...``), the path numbered
  per class in ``model.layers`` order, as Keras's ``saving_lib`` walks the model.

A ``.weights.h5`` file is that HDF5 member alone. convforge writes what Keras 3 writes for the same
model and reads what Keras writes, so that a model moves either way with its weights (checked
against Keras 3.15.1 in tests/test_keras_file.py). h5py reads and writes the HDF5 part.

The optimizer's state goes both ways for SGD, Adam, AdamW and RMSprop, with a constant rate or
one of Keras's schedules (``optimizer/vars``: ``iterations``, ``learning_rate`` unless a schedule
gives it, then the slots in the order Keras's ``build`` makes them), so that training resumes
from a ``.keras`` checkpoint as from the step it stopped at. Not carried (documented in ``help(Model.save)``): the state of the other
optimizers (the model loads compiled, with a fresh optimizer and a warning; Keras likewise); the
training history, epoch count and random state, which Keras's format has no place for
(convforge's own ``.npz`` keeps them); Lambda layers, which Keras stores as Python bytecode.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import io
import json
import os
import re
import warnings
import zipfile
import zlib

import numpy as np

from .._files import NotARegularFileError, open_regular_file
from .._warnings import user_stacklevel
from ..layers.core import InputLayer, integer_dtype
from ..saving import ModelFileError, write_file_atomic
from .state import LayerConfigError, layer_class, within_budget

__all__ = ["is_keras_file", "is_keras_weights_file", "load_keras_model", "load_keras_weights", "save_keras_model",
           "save_keras_weights", "writer"]

_CONFIG = "config.json"
_METADATA = "metadata.json"
_WEIGHTS = "model.weights.h5"
# The JSON members: a model's description is a few hundred KB at most.
_JSON_MAX_BYTES = 64 * 2**20
# Deflate expands at most ~1032:1; a member claiming more than this over its stored size is a bomb.
_MAX_EXPANSION = 1100
# Keras's format version names the Keras that wrote it; convforge writes as this one.
_KERAS_VERSION = "3.15.1"

# convforge's activation layers that Keras has as Activation(name) only.
_AS_ACTIVATION = {"GELU": "gelu", "SiLU": "silu", "Swish": "silu", "Sigmoid": "sigmoid", "Softplus": "softplus",
                  "Tanh": "tanh", "SELU": "selu", "HardSigmoid": "hard_sigmoid", "HardSiLU": "hard_silu",
                  "Mish": "mish", "Softsign": "softsign", "Exponential": "exponential", "CELU": "celu",
                  "HardTanh": "hard_tanh", "HardShrink": "hard_shrink", "SoftShrink": "soft_shrink",
                  "TanhShrink": "tanh_shrink", "LogSigmoid": "log_sigmoid", "Squareplus": "squareplus",
                  "SparsePlus": "sparse_plus", "SparseSigmoid": "sparse_sigmoid"}
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def is_keras_file(path) -> bool:
    """Does ``path`` name Keras's ``.keras`` format?"""
    return os.fsdecode(path).endswith(".keras")  # as Keras: 'm.KERAS' is not one


def is_keras_weights_file(path) -> bool:
    """Does ``path`` name Keras 3's weights format (``.weights.h5``)?"""
    return os.fsdecode(path).endswith(".weights.h5")


def writer(path, whole_model: bool):
    """The Keras-format writer a file name asks for (``save_keras_model`` for ``.keras``,
    ``save_keras_weights`` for ``.weights.h5``), None for any other name (convforge's own); a
    ValueError where the name is Keras's other kind, as Keras refuses it."""
    if is_keras_file(path):
        if not whole_model:
            raise ValueError(f"{os.fsdecode(path)!r}: save_weights writes Keras's .weights.h5 (or convforge's .npz), "
                             "as Keras requires; model.save writes a whole model to a .keras file")
        return save_keras_model
    if is_keras_weights_file(path):
        if whole_model:
            raise ValueError(f"{os.fsdecode(path)!r} is a weights file name (.weights.h5): model.save writes a whole "
                             "model (.keras, or convforge's .npz); model.save_weights writes weights alone")
        return save_keras_weights
    return None


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is in the test environment
        raise ImportError(
            "Keras's .keras and .weights.h5 files hold their weights as HDF5, which needs the h5py package: "
            "pip install h5py (or convforge's .npz format: model.save('model.npz'))"
        ) from err
    return h5py


def _snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: ``Conv2D`` -> ``conv2d``, ``BatchNormalization`` -> ``batch_normalization``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name: str, used: dict) -> str:
    """Keras's ``_get_unique_name``: ``conv2d``, then ``conv2d_1``, ``conv2d_2``, ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _is_model(obj) -> bool:
    # The model classes say which Keras class they are (this module imports none of them: the
    # models import it to save, and loading.py hands it the classes to rebuild with).
    return getattr(type(obj), "_keras_model_class", None) is not None


def _model_class(model) -> str:
    """``'Sequential'`` or ``'Functional'``: the Keras class ``model`` is saved as."""
    return type(model)._keras_model_class


def _keras_class(layer) -> str:
    """The Keras class a convforge layer is saved as (its own name, or Activation for convforge's
    activation layers), whose snake case names its weights' path."""
    if _is_model(layer):
        return _model_class(layer)
    name = type(layer).__name__
    return "Activation" if name in _AS_ACTIVATION else name


def _weight_paths(model, prefix: str = "layers"):
    """``(path, entry)`` for each entry of ``model.layers`` at every depth, as Keras's saving walks
    a model: each list entry is named by its class in snake case, numbered per class."""
    used: dict = {}
    for entry in model.layers:
        path = f"{prefix}/{_unique(_snake_case(_keras_class(entry)), used)}"
        yield path, entry
        if _is_model(entry):
            yield from _weight_paths(entry, f"{path}/layers")


# =========================================================================== the optimizer's state

def _contiguous(value) -> np.ndarray:
    """``value`` as a C-ordered array of its own shape (np.ascontiguousarray makes a 0-d array,
    Normalization's sample count, one of shape (1,))."""
    value = np.asarray(value)
    return value if value.flags.c_contiguous else np.ascontiguousarray(value)


def _slot_groups(optimizer) -> list[tuple[str, ...]] | None:
    """convforge's slot names of ``optimizer`` in the order Keras's ``build`` makes its variables
    (after ``iterations`` and ``learning_rate``): one ``add_optimizer_variables`` call per group,
    whose names interleave per model variable (Adam's ``[m_0, v_0, m_1, v_1, ...]``), the calls one
    after another (RMSprop's velocities, then its momentums). None where the state is not carried:
    another optimizer class (their updates are Keras's, their variable lists not checked against
    Keras here)."""
    if optimizer is None:
        return None
    kind = type(optimizer).__name__
    if kind == "SGD":
        return [("momentum",)] if optimizer.momentum != 0 else []
    if kind in ("Adam", "AdamW"):
        return [("m", "v")] + ([("v_hat",)] if optimizer.amsgrad else [])
    if kind == "RMSprop":
        return ([("velocity",)] + ([("momentum",)] if optimizer.momentum > 0 else [])
                + ([("average_gradient",)] if optimizer.centered else []))
    return None


# Slots that are means of squared gradients: never negative (their square roots are taken).
_SECOND_MOMENTS = ("v", "v_hat", "velocity")


def _trained(model) -> list:
    """``(layer, weight name)`` of each weight the optimizer updates, in Keras's
    ``model.trainable_variables`` order (that of ``model.trainable_weights``)."""
    frozen = model._frozen_layer_ids()
    return [(layer, name) for layer in model._weight_layers() if id(layer) not in frozen
            for name in layer.trainable_param_names()]


def _keras_layout(layer, name, value, to_keras: bool):
    layout = layer._keras_layouts.get(name)
    return _contiguous(layout[0 if to_keras else 1](value)) if layout else value


def _scalars(optimizer) -> int:
    """Keras's optimizer variables before the slots: ``iterations``, and ``learning_rate`` unless
    a schedule gives the rate (Keras then keeps no variable for it)."""
    return 1 if optimizer.schedule is not None else 2


def _optimizer_arrays(model) -> list | None:
    """Keras's ``optimizer.variables`` of ``model``'s optimizer, or None where not carried."""
    optimizer = model.optimizer
    groups = _slot_groups(optimizer)
    if groups is None:
        return None
    iterations, state = optimizer.get_state()
    out = [np.array(iterations, dtype=np.int64)]
    if _scalars(optimizer) == 2:
        out.append(np.array(optimizer.current_learning_rate(), dtype=np.float32))
    trained = _trained(model)
    for group in groups:
        for layer, name in trained:
            for slot in group:
                value = state.get(f"{layer.name}/{name}/{slot}")
                if value is None:  # a weight not updated yet: Keras's slots start at zero
                    value = np.zeros_like(layer.params[name])
                out.append(_keras_layout(layer, name, value, to_keras=True))
    return out


def _read_optimizer(model, group, path) -> bool:
    """Put a Keras file's optimizer variables (``group``: ``optimizer/vars``) into the compiled
    model's optimizer; False (nothing changed) where they are not of this model and optimizer."""
    groups = _slot_groups(model.optimizer)
    if groups is None or not isinstance(group, _h5py().Group):
        return False
    trained = _trained(model)
    first = _scalars(model.optimizer)
    count = first + sum(len(g) for g in groups) * len(trained)
    if sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(count)]:
        return False
    h5py = _h5py()
    datasets = [_hard(group, str(i)) for i in range(count)]
    for i, dataset in enumerate(datasets):
        if not isinstance(dataset, h5py.Dataset):
            return False
        if dataset.external or dataset.is_virtual:
            raise ModelFileError(path, f"optimizer/vars/{i} keeps its data outside the file: refused")
    iterations = datasets[0]
    if iterations.shape != () or iterations.dtype.kind not in "iuf":
        return False
    state, k = {}, first
    for slots in groups:
        for layer, name in trained:
            for slot in slots:
                dataset = datasets[k]
                k += 1
                want = _keras_layout(layer, name, layer.params[name], to_keras=True).shape
                if dataset.shape != want or dataset.dtype.kind != "f":
                    return False
                value = np.asarray(dataset[()], dtype=layer.params[name].dtype)
                if np.isnan(value).any():
                    raise ModelFileError(path, f"the optimizer's {slot} of {layer.name}/{name} holds NaN")
                if slot not in _SECOND_MOMENTS and not np.isfinite(value).all():
                    raise ModelFileError(path, f"the optimizer's {slot} of {layer.name}/{name} holds infinite values")
                if slot in _SECOND_MOMENTS and (value < 0).any():
                    raise ModelFileError(path, f"the optimizer's {slot} of {layer.name}/{name} holds negative values "
                                               "(a mean of squares)")
                state[f"{layer.name}/{name}/{slot}"] = _keras_layout(layer, name, value, to_keras=False)
    steps = float(iterations[()])
    if not (0 <= steps < 2**53 and steps == int(steps)):
        raise ModelFileError(path, f"the optimizer's iteration count {steps!r} is not a count")
    model.optimizer.set_state(int(steps), state)
    return True


# =========================================================================== writing

def _policy(dtype) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": np.dtype(dtype).name},
            "registered_name": None}


def _keras_initializer(value):
    """convforge's initializer description -> Keras's (a name stays a name, which Keras takes)."""
    if isinstance(value, dict):
        from ..layers.initializers import _BY_NAME

        cls = _BY_NAME.get(value.get("class_name"))
        return {"module": "keras.initializers", "class_name": cls.__name__ if cls else value.get("class_name"),
                "config": dict(value.get("config", {})), "registered_name": None}
    return value


def _keras_regularizer(value):
    if isinstance(value, dict):
        return {"module": "keras.regularizers", "class_name": value.get("class_name"),
                "config": dict(value.get("config", {})), "registered_name": None}
    return value


# Keras layers whose constructor takes no `trainable` (it refuses the file otherwise).
_NO_TRAINABLE_ARGUMENT = ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")

# Keras's activation functions' own defaults: a layer's activation is saved by name only, so an
# activation with other settings has no Keras description.
_ACTIVATION_DEFAULTS = {"softmax": {"axis": -1}, "log_softmax": {"axis": -1}, "leaky_relu": {"negative_slope": 0.2},
                        "elu": {"alpha": 1.0}, "gelu": {"approximate": False},
                        "relu": {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}}


def _keras_activation(value, layer):
    if not isinstance(value, dict):
        return value
    name, config = value.get("class_name"), value.get("config") or {}
    if name == "relu" and config == {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}:
        return "relu6"  # convforge's relu6 is its relu with max_value=6
    defaults = _ACTIVATION_DEFAULTS.get(name, {})
    if all(key in defaults and config[key] == defaults[key] for key in config):
        return name
    raise ValueError(f"layer {layer.name!r}: activation {name!r} with {config} has no Keras description (Keras saves "
                     "an activation by name, with its defaults): save in convforge's format (.npz)")


def _layer_entry(layer, dtype) -> dict:
    """A layer as Keras's ``serialize_keras_object`` writes it."""
    from ..layers import Lambda

    cls = type(layer).__name__
    if isinstance(layer, Lambda):
        raise ValueError(
            f"layer {layer.name!r} is a Lambda: Keras's format stores its function as Python bytecode, which "
            "convforge neither writes nor runs; save this model in convforge's format (model.save('model.npz')), or "
            "make the function a layer class of your own"
        )
    config = layer.get_config()
    if cls in _AS_ACTIVATION:
        if config.get("approximate"):
            raise ValueError(f"layer {layer.name!r}: GELU(approximate=True) has no Keras layer; Keras's 'gelu' "
                             "activation is the exact one")
        from ..layers.activations import _STRING_CONFIG

        settings = {k: v for k, v in config.items() if k not in ("name", "trainable", "input_shape", "approximate")}
        default = _STRING_CONFIG.get(_AS_ACTIVATION[cls], {})
        if settings != default:  # CELU(alpha=2), an ONNX file's Celu: Keras's Activation takes the defaults
            raise ValueError(f"layer {layer.name!r}: {cls} with {settings} has no Keras layer; Keras's "
                             f"Activation({_AS_ACTIVATION[cls]!r}) takes {default or 'no settings'}")
        return {"module": "keras.layers", "class_name": "Activation",
                "config": {"name": layer.name, "trainable": layer.trainable, "dtype": _policy(dtype),
                           "activation": _AS_ACTIVATION[cls]},
                "registered_name": None}
    out = {}
    for key, value in config.items():
        if key.endswith("_initializer"):
            value = _keras_initializer(value)
        elif key.endswith("_regularizer"):
            value = _keras_regularizer(value)
        elif key == "activation":
            value = _keras_activation(value, layer)
        out[key] = value
    out["name"] = layer.name
    out["dtype"] = _policy(dtype)
    if cls in _NO_TRAINABLE_ARGUMENT:
        out.pop("trainable", None)
    builtin = type(layer).__module__.startswith("convforge.")
    return {"module": "keras.layers" if builtin else type(layer).__module__, "class_name": cls, "config": out,
            "registered_name": None if builtin else getattr(type(layer), "_registered_name", cls)}


def _input_entry(name: str, shape, dtype) -> dict:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *shape], "dtype": np.dtype(dtype).name, "sparse": False,
                       "ragged": False, "name": name, "optional": False},
            "registered_name": None}


def _tensor(model, t, dtype) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(model._as_model_tensor(t).shape), "dtype": np.dtype(dtype).name,
                       "keras_history": _history(model, t, output=False)}}


def _history(model, t, output: bool) -> list:
    """Keras's ``[producer, node, tensor]`` of a graph tensor: a node counts the producer's calls
    in this graph; as a model's input or output a nested graph model counts its own first node
    too (Keras's ``functional_from_config`` subtracts it)."""
    t = model._as_model_tensor(t)
    call = t._node.nested_call
    if call is not None and id(call) in model._whole_calls:
        position = next(i for i, out in enumerate(call.outputs) if out is t)
        node = model._nested_calls(call.model).index(call)
        if output and _model_class(call.model) == "Functional":
            node += 1
        return [call.model.name, node, position]
    layer = t._node.layer
    return [layer.name, 0 if isinstance(layer, InputLayer) else _own_calls(model, layer).index(t._node), t._index]


def _own_calls(model, layer) -> list:
    """The calls of ``layer`` that ``model``'s description lists as the layer's own (not inside a
    nested model's call), in call order: Keras numbers a layer's nodes among these."""
    return [n for n in model._node_ids.get(id(layer), []) if model._node_owner(n) is None]


def _check_describable(model, weights_only: bool) -> None:
    """Refuse a graph whose layers Keras's format cannot place as convforge runs them (at every
    depth): a layer called both inside a nested model's call and on its own (Keras's file would
    make two unshared layers of it); and, for a weights file, which Keras loads into a model of
    its own by each layer's place in ``model.layers``, a nested model used in part (Keras lists
    it as one entry, convforge its used layers one by one)."""
    seen: dict = {}
    for where, entry in _weight_paths(model):
        if id(entry) in seen:
            raise ValueError(
                f"{type(entry).__name__} {entry.name!r} is listed twice in model.layers as Keras walks them "
                f"({seen[id(entry)]} and {where}): called both inside a nested model's call and on its own, or "
                "inside a nested call whose outputs are not all used (convforge lists that call's layers one by "
                "one). Keras's format would make two unshared copies of it: save this model in convforge's format "
                "(.npz)")
        seen[id(entry)] = where
    _check_partial_use(model, weights_only)


def _check_partial_use(model, weights_only: bool) -> None:
    for entry in model.layers:
        if _is_model(entry):
            _check_partial_use(entry, weights_only)
    if _model_class(model) != "Functional":
        return
    if weights_only:
        for node in model._nodes:
            if node.nested_call is not None and id(node.nested_call) not in model._whole_calls:
                raise ValueError(f"model {model.name!r} uses only part of nested model {node.nested_model.name!r} "
                                 "(Keras lists that model as one entry, convforge its used layers), so Keras would "
                                 "load a .weights.h5 file of it into the wrong places: save the whole model "
                                 "(model.save('m.keras')), or use convforge's format (.npz)")


def _functional_config(model) -> dict:
    dtype = model.dtype
    entries = []
    for entry in model.layers:
        if isinstance(entry, InputLayer):
            spec = entry.output
            item = _input_entry(entry.name, spec.shape[1:], entry._given_dtype or dtype)
            item.update(name=entry.name, inbound_nodes=[])
            entries.append(item)
            continue
        if _is_model(entry):
            item = _model_entry(entry)
            calls = [(call.inputs, call.inference) for call in model._nested_calls(entry)]
            many = [len(entry.inputs) > 1] * len(calls) if _model_class(entry) == "Functional" else [False] * len(calls)
        else:
            item = _layer_entry(entry, dtype)
            nodes = _own_calls(model, entry)
            calls = [(n.inputs, False) for n in nodes]
            many = [n.many for n in nodes]
        item["name"] = entry.name
        item["inbound_nodes"] = [
            {"args": [[_tensor(model, t, dtype) for t in inputs] if is_list else _tensor(model, inputs[0], dtype)],
             "kwargs": {"training": False} if inference else {}}
            for (inputs, inference), is_list in zip(calls, many)
        ]
        entries.append(item)

    def io_refs(tensors, single):
        refs = [_history(model, t, output=True) for t in tensors]
        return refs[0] if single else refs

    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": io_refs(model.inputs, model._single_input),
            "output_layers": io_refs(model.outputs, model._single_output)}


def _sequential_config(model) -> dict:
    dtype = model.dtype
    entries = []
    shape = model.get_config().get("input_shape")
    if shape is not None:
        taken = {layer.name for layer in model._flat_layers}
        name = next(n for n in ("input_layer", *(f"input_layer_{i}" for i in range(1, len(taken) + 2)))
                    if n not in taken)
        entries.append(_input_entry(name, list(shape), model._input_given_dtype or dtype))
    for entry in model.layers:
        entries.append(_model_entry(entry) if _is_model(entry) else _layer_entry(entry, dtype))
    config = {"name": model.name, "trainable": model.trainable, "dtype": _policy(dtype), "layers": entries}
    if shape is not None:
        config["build_input_shape"] = [None, *shape]
    return config


def _model_entry(model) -> dict:
    kind = _model_class(model)
    if kind == "Sequential":
        return {"module": "keras", "class_name": "Sequential", "config": _sequential_config(model),
                "registered_name": None}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": _functional_config(model),
            "registered_name": "Functional"}


# convforge's learning-rate schedules that are Keras's too (same names, arguments and formulas).
_KERAS_SCHEDULES = ("ExponentialDecay", "InverseTimeDecay", "CosineDecay", "PiecewiseConstantDecay")


def _compile_config(model) -> dict:
    """convforge's compile settings as Keras writes them ({} for an uncompiled model). What has no
    Keras description (a loss or optimizer class of your own) is left out, with a warning: Keras
    then loads the model uncompiled."""
    config = model.get_compile_config()
    if not config:
        return {}
    from .. import losses as losses_module

    optimizer = config.get("optimizer")
    loss = config.get("loss")

    def keras_loss(value):
        if isinstance(value, dict):
            cls = losses_module._BY_NAME.get(str(value.get("class_name")).lower())
            return {"module": "keras.losses", "class_name": cls.__name__ if cls else value.get("class_name"),
                    "config": dict(value.get("config", {})), "registered_name": None}
        return value

    lr = (optimizer or {}).get("config", {}).get("learning_rate")
    keras_lr = lr if not isinstance(lr, dict) else (
        {"module": "keras.optimizers.schedules", "class_name": lr["class_name"], "config": dict(lr.get("config", {})),
         "registered_name": None} if lr.get("class_name") in _KERAS_SCHEDULES else None)
    if optimizer is None or loss is None or (isinstance(loss, list) and None in loss) or keras_lr is None:
        warnings.warn("the optimizer, its learning-rate schedule or the loss is one of your own (or convforge's "
                      "StepDecay), which Keras's format cannot describe: the file's model loads uncompiled",
                      UserWarning, stacklevel=user_stacklevel())
        return {}

    def keras_metrics(value):
        if isinstance(value, dict):
            return {"module": "keras.metrics", "class_name": value.get("class_name"),
                    "config": dict(value.get("config", {})), "registered_name": None}
        if isinstance(value, list):
            return [keras_metrics(v) for v in value]
        return value

    return {
        "optimizer": {"module": "keras.optimizers", "class_name": optimizer["class_name"],
                      "config": {**optimizer.get("config", {}), "learning_rate": keras_lr}, "registered_name": None},
        "loss": [keras_loss(v) for v in loss] if isinstance(loss, list) else keras_loss(loss),
        "loss_weights": config.get("loss_weights"),
        "metrics": keras_metrics(config.get("metrics")) or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def keras_model_config(model) -> dict:
    """``config.json`` of ``model``'s ``.keras`` file: what Keras's ``serialize_keras_object`` gives."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: give it an Input (or call build) before saving it")
    _check_describable(model, weights_only=False)
    entry = _model_entry(model)
    if entry["class_name"] == "Sequential":
        entry["build_config"] = {"input_shape": entry["config"].get("build_input_shape")}
    else:
        entry["build_config"] = {"input_shape": None}
    entry["compile_config"] = _compile_config(model)
    return entry


def _write_weights(model, f, with_optimizer: bool) -> None:
    """``model.weights.h5``: each entry's weights (Keras's layouts) at its Keras path, and (where
    asked and carried) the optimizer's variables as Keras lists them."""
    h5py = _h5py()
    with h5py.File(f, "w") as h5:
        layers = h5.create_group("layers")
        for path, entry in _weight_paths(model):
            group = h5.require_group(path)
            own = group.create_group("vars")
            own.attrs["name"] = entry.name
            if _is_model(entry):
                group.require_group("layers")
                continue
            for i, value in enumerate(entry.get_weights()):
                own.create_dataset(str(i), data=_contiguous(value))
        del layers
        h5.create_group("vars").attrs["name"] = model.name
        arrays = _optimizer_arrays(model) if with_optimizer and model.optimizer is not None else None
        if arrays is not None:
            own = h5.create_group("optimizer").create_group("vars")
            own.attrs["name"] = model.optimizer.name
            for i, value in enumerate(arrays):
                own.create_dataset(str(i), data=value)


def _finite_weights(model) -> None:
    for layer in model._flat_layers:
        for name, value in layer.params.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"not saved: weight {name!r} of layer {layer.name!r} holds NaN or infinite values")


def save_keras_model(model, path) -> None:
    """Write ``model`` as Keras 3's ``.keras`` file at ``path``, atomically."""
    from .. import distributed

    if not distributed.is_primary():
        return
    config = keras_model_config(model)
    _finite_weights(model)
    weights = io.BytesIO()
    _write_weights(model, weights, with_optimizer=bool(config["compile_config"]))
    metadata = {"keras_version": _KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_METADATA, json.dumps(metadata))
            zf.writestr(_CONFIG, json.dumps(config))
            zf.writestr(_WEIGHTS, weights.getvalue())

    write_file_atomic(path, write)


def save_keras_weights(model, path) -> None:
    """Write ``model``'s weights as Keras 3's ``.weights.h5`` file at ``path``, atomically."""
    from .. import distributed

    if not distributed.is_primary():
        return
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: it has no weights to save yet")
    _check_describable(model, weights_only=True)
    _finite_weights(model)
    weights = io.BytesIO()
    _write_weights(model, weights, with_optimizer=False)
    write_file_atomic(path, lambda f: f.write(weights.getvalue()))


# =========================================================================== reading

class _KerasFileError(LayerConfigError):
    """What is wrong with a Keras description (the loader adds the file's path)."""


def _named_class(entry, what: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise _KerasFileError(f"{what} must be a dict with a 'class_name' string; got {entry!r:.120}")
    if not isinstance(entry.get("config", {}), dict):
        raise _KerasFileError(f"{what}: 'config' must be a dict; got {entry.get('config')!r:.120}")
    return entry["class_name"]


def _dtype_name(value, where: str) -> str | None:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if value is None or value in ("float32", "float64"):
        return value
    raise _KerasFileError(f"{where}: dtype {value!r:.60} is not supported: convforge computes in float32 or float64")


def _from_keras_initializer(value, where: str):
    if not isinstance(value, dict):
        return value
    name = _named_class(value, where)
    config = dict(value.get("config") or {})
    for axis_key in ("input_axes", "output_axes"):  # Keras 3.11+'s fan axes: None is the usual fans
        if config.get(axis_key, None) is None:
            config.pop(axis_key, None)
    return {"class_name": _snake_case(name), "config": config}


def _from_keras_regularizer(value, where: str):
    if not isinstance(value, dict):
        return value
    return {"class_name": _named_class(value, where), "config": dict(value.get("config") or {})}


def _set_trainable(model, config) -> None:
    value = config.get("trainable", True)
    if not isinstance(value, bool):
        raise _KerasFileError(f"model {model.name!r}: trainable must be true or false; got {value!r:.60}")
    if not value:
        model.trainable = False


class _NotYet(Exception):
    """A call reads a call not made yet: ``args[0]`` is ``(producer, call number)``."""


def _no_mask(value) -> bool:
    """Keras's mask argument of a call, with nothing in it (None, or a None per input)."""
    return value is None or (isinstance(value, list) and all(_no_mask(v) for v in value))


def _is_history(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:]))


class _Reader:
    """Rebuilds a model from Keras's description: ``classes`` are the model classes to build
    (``{'Sequential': ..., 'Functional': ...}``); the float dtypes the layers name are collected in
    ``dtypes``."""

    def __init__(self, classes: dict, custom_objects=None):
        self.classes = classes
        self.custom_objects = custom_objects
        self.dtypes: set = set()

    def layer(self, entry):
        """A convforge layer (or nested model) from a Keras layer entry."""
        name = _named_class(entry, "a layer entry")
        if name in _MODEL_CLASSES:
            return self.model(entry)
        config = dict(entry.get("config") or {})
        where = f"layer {config.get('name', '?')!r} ({name})"
        if name == "Lambda":
            raise _KerasFileError(f"{where}: a Lambda layer's function is stored as Python bytecode, which convforge does "
                                  "not run: rebuild that model in convforge with the function as a layer class")
        dtype = _dtype_name(config.pop("dtype", None), where)
        if dtype:
            self.dtypes.add(dtype)
        for key, value in list(config.items()):
            if key.endswith("_initializer"):
                config[key] = _from_keras_initializer(value, f"{where}: {key}")
            elif key.endswith("_regularizer") and key != "activity_regularizer":
                config[key] = _from_keras_regularizer(value, f"{where}: {key}")
            elif key == "activation" and not (value is None or isinstance(value, str)):
                raise _KerasFileError(f"{where}: activation {value!r:.100} is a function of your own, which convforge "
                                      "cannot rebuild from the file")
        registered = entry.get("registered_name")
        if self.custom_objects and isinstance(registered, str) and registered in self.custom_objects:
            cls = self.custom_objects[registered]
        else:
            cls = layer_class(name, entry.get("module"), self.custom_objects)
        return cls.from_config(config)

    def input(self, entry):
        import convforge

        config = entry.get("config") or {}
        shape = config.get("batch_shape")
        if shape is None and config.get("shape") is not None:
            shape = [None, *config["shape"]]
        if not isinstance(shape, list) or len(shape) < 2:
            raise _KerasFileError(f"input {config.get('name')!r}: batch_shape must be a list [batch, ...]; got {shape!r:.80}")
        if any(d is None for d in shape[1:]):
            raise _KerasFileError(f"input {config.get('name')!r} has shape {shape}: convforge's models take inputs of "
                                  "one size (no None beyond the batch)")
        for key, neutral in (("sparse", False), ("ragged", False), ("optional", False)):
            if config.get(key, neutral) is not neutral:
                raise _KerasFileError(f"input {config.get('name')!r}: {key}={config[key]!r} is not supported")
        given = config.get("dtype")
        if isinstance(given, str) and integer_dtype(given) is not None:  # token ids: they enter as float32 values
            return convforge.Input(shape=tuple(shape[1:]), name=config.get("name"), dtype=given)
        dtype = _dtype_name(given, f"input {config.get('name')!r}")
        if dtype:
            self.dtypes.add(dtype)
        return convforge.Input(shape=tuple(shape[1:]), name=config.get("name"))

    def sequential(self, config):
        entries = config.get("layers")
        if not isinstance(entries, list):
            raise _KerasFileError(f"Sequential {config.get('name')!r}: 'layers' must be a list")
        items = []
        for i, entry in enumerate(entries):
            if _named_class(entry, f"layer entry {i}") == "InputLayer":
                if i:
                    raise _KerasFileError(f"Sequential {config.get('name')!r}: an InputLayer at position {i}")
                items.append(self.input(entry))
            else:
                items.append(self.layer(entry))
        model = self.classes["Sequential"](items, name=config.get("name"))
        shape = config.get("build_input_shape")
        if not model.built and isinstance(shape, list) and len(shape) > 1:
            model.build(tuple(shape))
        _set_trainable(model, config)
        return model

    def functional(self, config):
        name = config.get("name")
        entries = config.get("layers")
        if not isinstance(entries, list):
            raise _KerasFileError(f"model {name!r}: 'layers' must be a list")
        made: dict = {}  # layer name -> (object, [outputs of each call in this graph])
        pending: list = []  # (layer name, [node data]) in the file's order
        for i, entry in enumerate(entries):
            kind = _named_class(entry, f"layer entry {i}")
            layer_name = entry.get("name", (entry.get("config") or {}).get("name"))
            if not isinstance(layer_name, str) or layer_name in made:
                raise _KerasFileError(f"model {name!r}: layer entry {i} has no name or a name used before ({layer_name!r:.60})")
            if kind == "InputLayer":
                made[layer_name] = (None, [[self.input(entry)]])
                continue
            layer = self.layer(entry)
            made[layer_name] = (layer, [])
            nodes = entry.get("inbound_nodes", [])
            if not isinstance(nodes, list):
                raise _KerasFileError(f"model {name!r}: layer {layer_name!r}'s inbound_nodes must be a list")
            pending.append((layer_name, list(nodes)))

        def tensor_of(value):
            """The graph tensor a call's argument names; _NotYet(producer, call) where that call
            is not made yet."""
            if isinstance(value, list):
                return [tensor_of(v) for v in value]
            if not (isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"):
                raise _KerasFileError(f"model {name!r}: a layer's argument {value!r:.100} is not a tensor of the graph "
                                      "(convforge's layers take tensors only)")
            history = (value.get("config") or {}).get("keras_history")
            if not _is_history(history) or history[0] not in made:
                raise _KerasFileError(f"model {name!r}: bad keras_history {history!r:.100}")
            calls = made[history[0]][1]
            if history[1] >= len(calls):
                raise _NotYet((history[0], history[1]))
            outputs = calls[history[1]]
            if history[2] >= len(outputs):
                raise _KerasFileError(f"model {name!r}: {history[0]!r} has no output {history[2]}")
            return outputs[history[2]]

        # Each layer's calls in order, each made once the calls it reads are: a layer waiting for
        # a call is woken when that call is made, so a graph listed in any order is rebuilt in
        # time linear in its calls (Keras rescans the list until nothing moves).
        queue = collections.deque(layer_name for layer_name, _ in pending)
        waiting = collections.defaultdict(list)  # (producer, call) -> layers whose next call reads it
        calls_left = dict(pending)
        while queue:
            layer_name = queue.popleft()
            nodes, layer = calls_left[layer_name], made[layer_name][0]
            while nodes:
                node = nodes[0]
                if not isinstance(node, dict) or not isinstance(node.get("args"), list) or len(node["args"]) != 1:
                    raise _KerasFileError(f"model {name!r}: layer {layer_name!r} has a call convforge cannot read "
                                          f"(one argument expected): {node!r:.120}")
                kwargs = node.get("kwargs") or {}
                if not isinstance(kwargs, dict) or any(
                        (k != "training" or v not in (None, False, True)) and not (k == "mask" and _no_mask(v))
                        for k, v in kwargs.items()):
                    raise _KerasFileError(f"model {name!r}: layer {layer_name!r} is called with {kwargs!r:.100}; "
                                          "convforge takes training=True/False only")
                try:
                    args = tensor_of(node["args"][0])
                except _NotYet as missing:
                    waiting[missing.args[0]].append(layer_name)
                    break
                # Keras records a layer's training default in its call and overrides it with the
                # model's mode when it runs (keras-team/keras#20285): only a nested model's
                # training=False means something here (inference for good, see Model.layers).
                call = {"training": False} if _is_model(layer) and kwargs.get("training") is False else {}
                out = layer(args, **call)
                made[layer_name][1].append(list(out) if isinstance(out, (list, tuple)) else [out])
                nodes.pop(0)
                queue.extend(waiting.pop((layer_name, len(made[layer_name][1]) - 1), ()))
        stuck = [layer_name for layer_name, nodes in calls_left.items() if nodes]
        if stuck:
            raise _KerasFileError(f"model {name!r}: the calls of {stuck[:5]} never get their inputs "
                                  "(a cycle, or a layer the file does not list)")

        def io_tensors(refs, what):
            if isinstance(refs, dict):
                raise _KerasFileError(f"model {name!r}: its {what} are a dict (Keras's Model(inputs, {{name: "
                                      "tensor})), which convforge's models do not take: give them as a list")
            single = _is_history(refs)
            refs = [refs] if single else refs
            if not isinstance(refs, list) or not refs or not all(_is_history(r) for r in refs):
                raise _KerasFileError(f"model {name!r}: bad {what} {refs!r:.100}")
            tensors = []
            for ref in refs:
                if ref[0] not in made:
                    raise _KerasFileError(f"model {name!r}: {what} names {ref[0]!r}, which it does not list")
                layer, calls = made[ref[0]]
                node = ref[1] - 1 if _is_model(layer) and _model_class(layer) == "Functional" else ref[1]
                if not 0 <= node < len(calls) or ref[2] >= len(calls[node]):
                    raise _KerasFileError(f"model {name!r}: {what} names {ref!r}, which the graph does not make")
                tensors.append(calls[node][ref[2]])
            return tensors[0] if single else tensors

        model = self.classes["Functional"](io_tensors(config.get("input_layers"), "input_layers"),
                           io_tensors(config.get("output_layers"), "output_layers"), name=name)
        _set_trainable(model, config)
        return model

    def check_names(self, entry) -> None:
        """Keras wants one name per model level, convforge one per model with its nested
        layers: refuse a file whose levels share a layer name, saying which."""
        seen: dict = {}

        def walk(item, where):
            config = item.get("config") if isinstance(item, dict) else None
            for layer in (config or {}).get("layers") or []:
                if not isinstance(layer, dict):
                    continue
                name = layer.get("name", (layer.get("config") or {}).get("name"))
                if layer.get("class_name") in _MODEL_CLASSES:
                    walk(layer, f"{where}/{name}")
                elif layer.get("class_name") != "InputLayer" and isinstance(name, str):
                    if name in seen and seen[name] != where:
                        raise _KerasFileError(
                            f"two layers are named {name!r} ({seen[name] or 'the model'} and {where or 'the model'}): "
                            "Keras takes one name per model level, convforge one per model with the models nested "
                            "in it. Rename one in Keras (layer.name before saving, or name= when building) and "
                            "save again")
                    seen.setdefault(name, where)

        walk(entry, "")

    def model(self, entry):
        kind = _named_class(entry, "the model")
        config = entry.get("config") or {}
        if kind == "Sequential":
            return self.sequential(config)
        if kind in ("Functional", "Model") and "input_layers" in config:
            return self.functional(config)
        raise _KerasFileError(f"the model is a {kind!r}: convforge reads Sequential and functional models (a subclassed "
                              "Keras model has no description of its layers' calls)")


def _hard(parent, name: str):
    """``parent[name]`` where it is there through a hard link, else None. HDF5's soft and external
    links can point anywhere, another file included: refused."""
    h5py = _h5py()
    link = parent.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise _KerasFileError(f"{parent.name}/{name} is a {type(link).__name__}: a weights file holds its arrays itself")
    return parent[name]


def _at(h5, path: str):
    """The object at ``path`` through hard links only, or None."""
    h5py = _h5py()
    node = h5
    for part in path.split("/"):
        if not isinstance(node, h5py.Group):
            return None
        node = _hard(node, part)
        if node is None:
            return None
    return node


def _file_layers(h5) -> dict:
    """``{path: name}`` of each layer the file holds (a group with ``vars`` under a ``layers``
    group, at any depth), ``name`` the ``vars`` group's ``name`` attribute (Keras 3.x writes the
    layer's name there; None where absent)."""
    h5py = _h5py()
    found: dict = {}

    def walk(group, prefix: str, depth: int) -> None:
        if depth > 64:
            raise _KerasFileError(f"{prefix}: models nested more than 64 deep")
        for key in list(group.keys()):
            child = _hard(group, key)
            if not isinstance(child, h5py.Group):
                continue
            own = _hard(child, "vars")
            if isinstance(own, h5py.Group):
                name = own.attrs.get("name")
                if isinstance(name, bytes):
                    name = name.decode("utf-8", "replace")
                found[f"{prefix}/{key}"] = str(name) if isinstance(name, (str, np.str_)) else None
            inner = _hard(child, "layers")
            if isinstance(inner, h5py.Group):
                walk(inner, f"{prefix}/{key}/layers", depth + 1)

    top = _hard(h5, "layers")
    if isinstance(top, h5py.Group):
        walk(top, "layers", 0)
    return found


def _read_array(dataset, want: np.ndarray, where: str, layer, path) -> np.ndarray:
    h5py = _h5py()
    if not isinstance(dataset, h5py.Dataset):
        raise ModelFileError(path, f"{where} ({layer.name!r}) is not an array")
    if dataset.external or dataset.is_virtual:  # data in other files: HDF5 would read them, or block on a pipe
        raise ModelFileError(path, f"{where} ({layer.name!r}) keeps its data outside the file: refused")
    if dataset.shape != want.shape or dataset.dtype.kind not in "fiu":
        raise ModelFileError(path, f"{where} ({layer.name!r}) is {dataset.shape} {dataset.dtype}; the layer's weight is "
                                   f"{want.shape} float")
    value = np.asarray(dataset[()], dtype=want.dtype)
    if not np.all(np.isfinite(value)):
        raise ModelFileError(path, f"{where} ({layer.name!r}) holds NaN or infinite values")
    return value


def _read_weights(model, h5, path, by_name: bool) -> None:
    """Copy the HDF5 file's weights into ``model`` (Keras's paths and layouts), each array's shape
    checked before it is read; nothing is set until all are read.

    Keras matches a file's arrays to layers by path (each layer's class and place in
    ``model.layers``). Where the file names its layers (Keras 3 does) and the layer at a path is
    not this one: with ``by_name`` (``load_model``: the model was rebuilt from this file, its
    names are the file's) the layer's arrays are taken from where its name is, so that a model
    convforge lists otherwise than Keras (a nested model used in part) still gets its own;
    without (``load_weights``, Keras's rule), a layer whose name sits at another path is an
    error rather than a silent swap.
    """
    files = _file_layers(h5)
    places: dict = {}
    for where, name in files.items():
        places.setdefault(name, []).append(where)
    named = any(name is not None for name in files.values())
    # Without by_name, Keras's rule: places. Names decide nothing, unless the file's places are
    # not this model's (it nests a model this one lists layer by layer: a nested model used in
    # part) and it names every layer of this model that has weights: then a layer found at
    # another place is a swap, refused. Names given by another session (dense_1, dense_2 for
    # dense, dense_1), or permuted by hand in a model of the same places, leave Keras's rule alone.
    weighted = {where: entry for where, entry in _weight_paths(model) if not _is_model(entry) and entry.params}
    holding = {where for where in files if len(_at(h5, f"{where}/vars") or ())}
    same_model = set(weighted) != holding and {entry.name for entry in weighted.values()} <= set(places)
    values = []
    for where, entry in _weight_paths(model):
        expected = [] if _is_model(entry) else entry.get_weights()
        if not expected:  # a model's own group, an Input, an activation: nothing to read or to match
            continue
        chosen = where
        if named and files.get(where) != entry.name:
            kind = _snake_case(_keras_class(entry))
            elsewhere = [p for p in places.get(entry.name, []) if re.sub(r"_\d+$", "", p.rsplit("/", 1)[-1]) == kind]
            if by_name:
                if len(elsewhere) != 1:
                    raise ModelFileError(path, f"the file holds {len(elsewhere)} sets of weights for layer "
                                               f"{entry.name!r} ({type(entry).__name__}); expected one")
                chosen = elsewhere[0]
            elif elsewhere and same_model:
                holder = "another layer's" if files.get(where) is None else f"layer {files.get(where)!r}'s"
                raise ModelFileError(path, f"the file's weights at {where} are {holder} and those of layer "
                                           f"{entry.name!r} are at {elsewhere[0]}: it lists its layers in another "
                                           "order than this model (load_model matches them by name)")
        group = _at(h5, f"{chosen}/vars")
        found = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1) if group is not None else []
        if found != [str(i) for i in range(len(expected))]:
            raise ModelFileError(path, f"{chosen} ({entry.name!r}, {type(entry).__name__}) holds arrays "
                                       f"{found[:8]} where the layer has {len(expected)} (0 to {len(expected) - 1}): "
                                       "not this model's weights")
        arrays = [_read_array(_hard(group, str(i)), want, f"{chosen}/vars/{i}", entry, path)
                  for i, want in enumerate(expected)]
        values.append((entry, arrays))
    for entry, arrays in values:  # all checked first: a bad file changes nothing
        if arrays:
            entry.set_weights(arrays)


@contextlib.contextmanager
def _reading(path, what: str = "its weights"):
    """Any failure while reading the HDF5 member as a ModelFileError naming the file (a real
    shortage of memory stays a MemoryError)."""
    try:
        yield
    except (ModelFileError, MemoryError):
        raise
    except _KerasFileError as err:
        raise ModelFileError(path, str(err)) from err
    except Exception as err:
        raise ModelFileError(path, f"cannot read {what}: {type(err).__name__}: {err!s:.300}") from err


def _global_heaps_loop(data: bytes) -> int | None:
    """The offset of a global heap collection whose objects HDF5 would walk forever, or None.

    Keras writes each layer's name as a variable-length string, kept in a global heap collection
    ('GCOL'). HDF5 reads a collection object by object, each header giving the next one's
    distance; one zeroed (index 0, size 0) gives 0, and libhdf5 loops there for good, in
    C, holding the interpreter (h5py/h5py#2088: upstream's bug, not worked around by h5py): a
    52-byte hole in a .weights.h5 hung load_weights. So each collection is walked here first:
    every step must move forward and stay inside it. A 'GCOL' that is not a collection's header
    (version 1, three zero bytes, a size HDF5 could have written) is data and is not looked at.
    """
    if data[:8] != b"\x89HDF\r\n\x1a\n" or len(data) < 16:
        return None
    length = data[14] if data[8] in (0, 1) else data[10]  # the superblock's size of lengths
    if length not in (2, 4, 8):
        return None  # HDF5 refuses the file itself
    header = 8 + length  # index, references, reserved, then the object's size
    at = data.find(b"GCOL")
    while at >= 0:
        size = int.from_bytes(data[at + 8 : at + 8 + length], "little") if at + 8 + length <= len(data) else 0
        if 4096 <= size <= len(data) - at and data[at + 4] == 1 and data[at + 5 : at + 8] == b"\0\0\0":
            p, end = at + 8 + length, at + size
            while p + header <= end:
                index = int.from_bytes(data[p : p + 2], "little")
                object_size = int.from_bytes(data[p + 8 : p + header], "little")
                step = header + (object_size + 7) // 8 * 8 if index > 0 else object_size
                if step <= 0 or step > end - p:
                    return at
                p += step
        at = data.find(b"GCOL", at + 1)
    return None


def _open_h5(data: bytes, path):
    h5py = _h5py()
    loop = _global_heaps_loop(data)
    if loop is not None:
        raise ModelFileError(path, f"its weights' HDF5 file is damaged: the global heap at byte {loop} of it has an "
                                   "object of size 0 or one that overruns it (HDF5 would read it forever)")
    try:
        return h5py.File(io.BytesIO(data), "r")
    except Exception as err:
        raise ModelFileError(path, f"its weights are not a readable HDF5 file ({type(err).__name__}: {err!s:.200})") from err


def _info(zf: zipfile.ZipFile, name: str, path) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(name)
    except KeyError:
        raise ModelFileError(path, f"a .keras archive needs a {name} member; it has {zf.namelist()[:10]}") from None


def _member(zf: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    info = _info(zf, name, path)
    if info.file_size > limit or info.file_size > _MAX_EXPANSION * max(info.compress_size, 1) + 4096:
        raise ModelFileError(path, f"{name} declares {info.file_size} bytes ({info.compress_size} stored), more than "
                                   "a model of this description holds: refused")
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
        # A damaged archive (a CRC that does not match, a truncated or foreign compression).
        raise ModelFileError(path, f"{name} cannot be read: {type(err).__name__}: {err!s:.200}") from None
    if len(data) != info.file_size:  # pragma: no cover - zipfile checks sizes and CRCs itself
        raise ModelFileError(path, f"{name} is truncated")
    return data


def _stored(zf: zipfile.ZipFile, path) -> int:
    """The weights member's size, which must be stored uncompressed (as Keras writes it): so the
    weight memory a description may ask for (the model is built within it) is what the file on
    disk holds, not what a deflated run of zeros claims to expand to."""
    info = _info(zf, _WEIGHTS, path)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
        raise ModelFileError(path, f"{_WEIGHTS} is compressed; Keras stores it uncompressed and so must a file "
                                   "convforge reads (re-zip it without compression: zip -0)")
    return info.file_size


def _open_archive(path):
    path = os.fsdecode(path)
    try:
        f = open_regular_file(path)
    except NotARegularFileError as err:
        raise ModelFileError(path, f"it is {err.kind}, not a regular file") from None
    try:
        return f, zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        f.close()
        raise ModelFileError(path, f"not a .keras archive (a zip file): {err}") from None


def _plain(entry: dict) -> dict:
    """A Keras loss or metric description as convforge's ``deserialize`` takes it: class name and
    config, less the float dtype Keras writes (convforge computes in the model's)."""
    config = dict(entry.get("config") or {})
    if config.get("dtype") is not None:
        _dtype_name(config.pop("dtype"), f"{entry.get('class_name')!r:.60}")
    return {"class_name": entry.get("class_name"), "config": config}


def _keras_function(value):
    """The name of a Keras function a file refers to (``compile(loss=keras.losses.huber)`` is
    saved as ``{'module': 'builtins', 'class_name': 'function', 'config': 'huber'}``), else None."""
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str):
        return value["config"]
    return None


def _metrics_from_keras(value):
    if (name := _keras_function(value)) is not None:  # the function's name: a metric convforge knows by it
        return name
    if isinstance(value, dict) and "class_name" in value:
        from .. import metrics as metrics_module

        return metrics_module.get(_plain(value))
    if isinstance(value, list):
        return [_metrics_from_keras(v) for v in value]
    return value


def _restore_compile(model, config: dict, path) -> bool:
    """Compile ``model`` as the file's ``compile_config`` says; False where it says nothing."""
    from .. import losses as losses_module
    from .. import metrics as metrics_module  # noqa: F401 - compile resolves the names
    from .. import optimizers as optimizers_module

    if not isinstance(config, dict) or not config.get("optimizer") or config.get("loss") is None:
        return False
    try:
        opt = config["optimizer"]
        if isinstance(opt, str):
            optimizer = opt
        else:
            opt_config = dict(opt.get("config") or {})
            if isinstance(opt_config.get("learning_rate"), dict):  # a schedule
                opt_config["learning_rate"] = _plain(opt_config["learning_rate"])
            optimizer = optimizers_module.deserialize({"class_name": opt.get("class_name"), "config": opt_config})

        def loss_of(value):
            if (name := _keras_function(value)) is not None:
                return name
            if isinstance(value, dict):
                return losses_module.deserialize(_plain(value))
            return value

        loss = config["loss"]
        loss = [loss_of(v) for v in loss] if isinstance(loss, list) else (
            {k: loss_of(v) for k, v in loss.items()} if isinstance(loss, dict) and "class_name" not in loss
            else loss_of(loss))
        metrics = _metrics_from_keras(config.get("metrics"))
        if config.get("weighted_metrics"):
            raise ValueError("weighted_metrics is not supported")
        extra = {"loss_weights": config["loss_weights"]} if config.get("loss_weights") is not None else {}
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None, **extra)
    except Exception as err:
        raise ModelFileError(path, f"cannot restore the compile settings ({type(err).__name__}: {err!s:.300}); "
                                   "load with compile=False and compile the model yourself") from err
    return True


def load_keras_model(path, classes: dict, custom_objects=None, compile=True):  # noqa: A002 - Keras's name
    """The model of a Keras 3 ``.keras`` file (written by Keras or by convforge), rebuilt with
    ``classes`` (``{'Sequential': Sequential, 'Functional': Functional}``)."""
    f, zf = _open_archive(path)
    with f, zf:
        metadata = _member(zf, _METADATA, _JSON_MAX_BYTES, path) if _METADATA in zf.namelist() else b"{}"
        raw = _member(zf, _CONFIG, _JSON_MAX_BYTES, path)
        try:
            config = json.loads(raw)
            json.loads(metadata)
        except (ValueError, RecursionError) as err:
            raise ModelFileError(path, f"its JSON is not readable: {err!s:.200}") from None
        if _WEIGHTS not in zf.namelist():
            raise ModelFileError(path, f"a .keras archive needs {_WEIGHTS} (convforge reads HDF5 weights only); "
                                       f"it has {zf.namelist()[:10]}")
        declared = _stored(zf, path)
        reader = _Reader(classes, custom_objects)
        # Built within the weights member's size: a forged description cannot outgrow the file.
        with within_budget(path, max(declared, 1), "cannot rebuild the model"):
            reader.check_names(config)
            model = reader.model(config)
        if reader.dtypes == {"float64"}:
            model.astype("float64")
        data = _member(zf, _WEIGHTS, declared, path)  # stored: no larger than the file
    with _open_h5(data, path) as h5:
        with _reading(path):
            _read_weights(model, h5, path, by_name=True)
        if compile and _restore_compile(model, config.get("compile_config"), path):
            with _reading(path, "its optimizer's state"):
                opt = _at(h5, "optimizer/vars")
                if opt is not None and not isinstance(opt, _h5py().Group):
                    raise _KerasFileError("optimizer/vars is not a group of arrays")
                carried = opt is None or _read_optimizer(model, opt, path)
            if not carried and len(opt) > _scalars(model.optimizer):
                warnings.warn(f"{os.fsdecode(path)}: the file's optimizer state ({len(opt)} arrays) is not restored "
                              f"(convforge carries SGD's, Adam's, AdamW's and RMSprop's, for the same trained "
                              f"weights): training goes on with a fresh {type(model.optimizer).__name__}",
                              UserWarning, stacklevel=user_stacklevel())
    return model


def load_keras_weights(model, path) -> None:
    """Load a Keras 3 ``.weights.h5`` (or the weights of a ``.keras``) file into ``model``."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it (an Input, or model.build(shape)) before loading "
                         "Keras weights into it")
    if is_keras_file(path):
        f, zf = _open_archive(path)
        with f, zf:
            data = _member(zf, _WEIGHTS, _stored(zf, path), path)
    else:
        spath = os.fsdecode(path)
        try:
            f = open_regular_file(spath)
        except NotARegularFileError as err:
            raise ModelFileError(path, f"it is {err.kind}, not a regular file") from None
        with f:
            data = f.read()  # a regular file: its size is what it holds
    with _open_h5(data, path) as h5, _reading(path):
        _read_weights(model, h5, path, by_name=False)

