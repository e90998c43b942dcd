"""What a model file holds beyond its format: weights, optimizer slots, callback state, the random
generator's state and the history -- written from a model and put back into one.

:mod:`convforge.saving` knows the file format (atomic ``.npz`` with a JSON ``__meta__`` entry) and
nothing of models; this module knows models and reads them through their public methods and
documented session attributes (``layers``, ``params``, ``get_config()``, ``get_compile_config()``,
``optimizer``, ``history``, ``epochs_completed``, ``fit_callbacks``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .. import random as _random
from ..layers.base import WeightBudgetExceeded, check_no_hidden_weights, weight_budget
from ..saving import ModelFileError, new_meta, read, write

__all__ = ["load_weights", "restore_training_state", "save_model", "save_weights"]


class LayerConfigError(ValueError):
    """A layer of a saved description that cannot be rebuilt (the loader adds the file's path)."""


# --------------------------------------------------------------------------- writing


def _weights_entries(model) -> tuple[list[dict], dict[str, np.ndarray]]:
    entries, arrays = [], {}
    ids = {id(layer) for layer in model._flat_layers}
    for i, layer in enumerate(model._flat_layers):
        check_no_hidden_weights(layer, "saving", ids)
        for name, value in layer.params.items():
            key = f"weights/{i}/{name}"
            entries.append(
                {
                    "layer": layer.name,
                    "index": i,
                    "class_name": type(layer).__name__,
                    "name": name,
                    "key": key,
                    "shape": list(value.shape),
                    "dtype": value.dtype.name,
                }
            )
            arrays[key] = value
    return entries, arrays


def _base_meta(model, kind: str, finite_only: bool = True) -> tuple[dict, dict]:
    if not model.built:
        raise ValueError("cannot save a model that has not been built (no input shape known yet)")
    entries, arrays = _weights_entries(model)
    # load_model refuses NaN/Inf weights (a diverged model is nothing to continue from), so saving
    # refuses them too: a checkpoint that cannot be loaded must not replace one that can. A copy
    # in memory (model_state for pickle and deepcopy) takes the weights as they are.
    for entry in entries if finite_only else ():
        value = arrays[entry["key"]]
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            raise ValueError(
                f"not saved: weight {entry['name']!r} of layer {entry['layer']!r} ({entry['class_name']}) holds "
                f"{bad} NaN or infinite values; a model file holds finite weights only (load_model refuses others)"
            )
    meta = new_meta(kind)
    meta["model"] = {"class_name": type(model).__name__, "config": model.get_config()}
    meta["weights"] = entries
    return meta, arrays


def _not_the_writer() -> bool:
    # Data-parallel runs: every rank holds the same weights and only the primary writes, so that
    # ranks never race on one file (and a file does not depend on the number of ranks).
    from .. import distributed

    return not distributed.is_primary()


def save_weights(model, path) -> None:
    """Weights and architecture (``model.save_weights``); on the primary rank only (see convforge.distributed)."""
    if _not_the_writer():
        return
    meta, arrays = _base_meta(model, "weights")
    write(path, meta, arrays)


def _variable_index(model) -> dict[str, str]:
    """Optimizer keys ('<layer name>/<weight>') -> position-based keys ('<layer index>/<weight>')."""
    return {f"{layer.name}/{name}": f"{i}/{name}" for i, layer in enumerate(model._flat_layers) for name in layer.params}


def optimizer_state_by_place(model) -> tuple[int, dict[str, np.ndarray]]:
    """The optimizer's ``get_state()`` with its keys by the layers' places ('<layer index>/<weight>/
    <slot>'), which models that name their layers apart (two ranks' automatic names) share."""
    iterations, slots = model.optimizer.get_state()
    to_index = _variable_index(model)
    placed = {}
    for full, value in slots.items():
        variable, _, slot = full.rpartition("/")
        if variable in to_index:  # (state of a weight no longer in the model: dropped)
            placed[f"{to_index[variable]}/{slot}"] = value
    return iterations, placed


def set_optimizer_state_by_place(model, iterations: int, placed: dict) -> None:
    """The inverse of :func:`optimizer_state_by_place`, onto this model's layer names."""
    to_name = {place: variable for variable, place in _variable_index(model).items()}
    slots = {}
    for full, value in placed.items():
        place, _, slot = full.rpartition("/")
        slots[f"{to_name[place]}/{slot}"] = value
    model.optimizer.set_state(iterations, slots)


def save_model(model, path) -> None:
    """Everything needed to rebuild the model and to resume training (``model.save``).

    In a data-parallel run only the primary rank writes (see convforge.distributed).
    """
    if _not_the_writer():
        return
    write(path, *model_state(model))


def model_state(model, finite_only: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """What ``model.save`` writes, as (description, arrays); ``finite_only=False`` keeps NaN/Inf
    weights (a copy in memory, not a file to resume from)."""
    meta, arrays = _base_meta(model, "model", finite_only)
    meta["compile"] = model.get_compile_config()

    meta["optimizer"] = None
    if model.optimizer is not None:
        iterations, placed = optimizer_state_by_place(model)
        entries = []
        for n, (full, value) in enumerate(sorted(placed.items())):
            variable, _, slot = full.rpartition("/")
            key = f"optimizer/{n}"
            entries.append({"variable": variable, "slot": slot, "key": key, "shape": list(value.shape)})
            arrays[key] = value
        meta["optimizer"] = {"class_name": type(model.optimizer).__name__, "iterations": iterations, "slots": entries}
        # The rate in force, which callbacks (ReduceLROnPlateau) or the user may have changed since
        # compile: resuming continues at it. A schedule is a function of the iterations, saved above.
        if model.optimizer.schedule is None:
            meta["optimizer"]["learning_rate"] = float(model.optimizer.learning_rate)

    history = model.history
    callback_states = []
    for i, cb in enumerate(model.fit_callbacks):
        state = cb.get_state()
        if state is None:
            continue
        json_state, cb_arrays = state
        names = {}
        for name, value in cb_arrays.items():
            key = f"callbacks/{i}/{len(names)}"
            names[name] = key
            arrays[key] = value
        callback_states.append({"index": i, "class_name": type(cb).__name__, "state": json_state, "arrays": names})
    meta["training"] = {
        "epoch": model.epochs_completed,
        "rng_state": _random.get_state(),
        # A value per threshold or class (Precision(thresholds=[...]), F1Score()) is an array in
        # the logs: a list in the file's JSON (resuming makes it an array again).
        "history": {k: [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
                    for k, values in history.history.items()} if history is not None else {},
        "history_epochs": list(history.epoch) if history is not None else [],
        "history_skipped": list(history.skipped_batches) if history is not None else [],
        "callbacks": callback_states,
    }
    return meta, arrays


# --------------------------------------------------------------------------- reading


def _layers_summary(classes) -> str:
    return ", ".join(classes) if len(classes) <= 8 else ", ".join(classes[:8]) + ", ..."


def in_file_order(model, meta, rebuilt: bool) -> list:
    """``model._flat_layers`` in the order the file lists its layers. For a model ``rebuilt`` from
    the file (``load_model``), whose names are the file's, by name: convforge now orders some
    graphs otherwise than the convforge that wrote the file (Keras's exact rule came later).
    Otherwise (``load_weights`` or resuming into a model of your own) by position, as Keras
    does: names given by another session say nothing."""
    layers = list(model._flat_layers)
    if not rebuilt:
        return layers
    entries = meta["model"]["config"]["layers"]
    names = [entry.get("name", (entry.get("config") or {}).get("name")) if isinstance(entry, dict) else None
             for entry in entries]
    by_name = {layer.name: layer for layer in layers}
    if (names != list(by_name) and len(by_name) == len(layers) == len(names)
            and sorted(map(str, names)) == sorted(by_name)):
        return [by_name[n] for n in names]
    return layers


def check_architecture(model, meta, path, rebuilt: bool = False) -> list[tuple]:
    """The file's weights matched to this model's, position by position (by name for a model
    ``rebuilt`` from the file: :func:`in_file_order`), or ModelFileError."""
    file_layers = meta["model"]["config"]["layers"]
    layers = in_file_order(model, meta, rebuilt)
    file_classes = [entry.get("class_name", "?") for entry in file_layers]
    model_classes = [type(layer).__name__ for layer in layers]
    if len(file_classes) != len(model_classes):
        raise ModelFileError(
            path,
            f"wrong architecture: the file holds a model of {len(file_classes)} layers "
            f"({_layers_summary(file_classes)}) but this model has {len(model_classes)} "
            f"({_layers_summary(model_classes)})",
        )
    for i, (fc, mc) in enumerate(zip(file_classes, model_classes)):
        if fc != mc:
            raise ModelFileError(
                path, f"wrong architecture: layer {i} is a {fc} in the file but a {mc} ({layers[i].name!r}) here"
            )
    by_layer: dict[int, list[dict]] = {}
    for entry in meta["weights"]:
        by_layer.setdefault(int(entry["index"]), []).append(entry)
    matched = []
    for i, layer in enumerate(layers):
        saved = by_layer.get(i, [])
        if [e["name"] for e in saved] != list(layer.params):
            raise ModelFileError(
                path,
                f"wrong architecture: layer {i} ({layer.name!r}, {type(layer).__name__}) has weights "
                f"{list(layer.params)} but the file has {[e['name'] for e in saved]}",
            )
        for entry in saved:
            current = layer.params[entry["name"]]
            if tuple(entry["shape"]) != current.shape:
                raise ModelFileError(
                    path,
                    f"wrong architecture: layer {i} ({layer.name!r}, {type(layer).__name__}) weight "
                    f"{entry['name']!r} has shape {tuple(entry['shape'])} in the file but {current.shape} "
                    "in this model",
                )
            matched.append((layer, entry["name"], entry["key"]))
    return matched


def assign_weights(model, meta, arrays, path, rebuilt: bool = False) -> None:
    """Check the file's architecture against ``model`` and copy its weights in (``rebuilt``: the
    model was made from this file's description)."""
    matched = check_architecture(model, meta, path, rebuilt)
    for layer, name, key in matched:
        layer.params[name][...] = arrays[key]


@contextlib.contextmanager
def building(path, meta, what: str):
    """Rebuild or build a model from a file's description, within the weight memory the file holds.

    The file's weights were read (and their sizes checked against the file) before: layers built
    here may allocate that much (``layers.base.weight_budget``), so one edited number in the
    description cannot make a few-KB file allocate gigabytes. Any failure becomes a
    ModelFileError: a forged description reaches layer code (convforge's or the user's) with any
    kind of value. A MemoryError within the budget is a real shortage and stays one.
    """
    nbytes = sum(math.prod(w["shape"]) * np.dtype(w.get("dtype", "float32")).itemsize for w in meta["weights"])
    with within_budget(path, nbytes, what):
        yield


@contextlib.contextmanager
def within_budget(path, nbytes: int, what: str):
    """:func:`building`'s budget and errors, for ``nbytes`` of weights (a Keras file's weights member)."""
    try:
        with weight_budget(nbytes):
            yield
    except WeightBudgetExceeded as err:
        raise ModelFileError(path, f"{what}: the description asks for more weight memory than the file holds ({err})") from err
    except (ModelFileError, MemoryError):
        raise
    except LayerConfigError as err:
        raise ModelFileError(path, str(err)) from err
    except Exception as err:
        raise ModelFileError(path, f"{what}: {type(err).__name__}: {err!s:.300}") from err


def load_weights(model, path) -> None:
    """Load the weights of ``path`` into ``model`` (``model.load_weights``); an unbuilt model is
    built first for the input shape the file names."""
    meta, arrays = read(path)
    if not model.built:
        spec = meta["model"]["config"].get("input_shape")
        with building(path, meta, "cannot build the model for this file's weights"):
            model.build((None, *spec) if spec else None)
    assign_weights(model, meta, arrays, path)


def layer_class(name: str, module, custom_objects):
    """The class of a saved layer: custom_objects, then convforge's, then a Layer subclass defined
    (imported) in this process with that name -- in the same module if several. Nothing is
    imported on the file's say. LayerConfigError if there is none."""
    from .. import layers as layers_module
    from ..layers.base import _REGISTRY, Layer

    if custom_objects and name in custom_objects:
        return custom_objects[name]
    builtin = getattr(layers_module, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Layer):
        return builtin
    candidates = _REGISTRY.get(name, [])
    same_module = [cls for cls in candidates if cls.__module__ == module]
    if same_module:
        return same_module[-1]  # the latest definition, e.g. after re-running a notebook cell
    if len(candidates) == 1:
        return candidates[0]
    raise LayerConfigError(
        f"the file uses layer class {name!r} (module {module!r}), which is not a convforge layer"
        + (" and matches several classes" if candidates else " and is not defined in this process")
        + f": pass load_model(..., custom_objects={{{name!r}: {name}}})",
    )


def config_layers(config, what: str) -> list:
    """The ``layers`` list of a model's config (``get_config``, ``to_json``, a file), checked to be a
    list of ``{"class_name": str, "config": dict, ...}``: ValueError naming what is wrong, where a
    forged or hand-edited description would otherwise fail with a KeyError or a TypeError."""
    if not isinstance(config, dict):
        raise ValueError(f"{what} must be a dict (model.get_config()); got {type(config).__name__}")
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ValueError(f"{what} must have a 'layers' list; got {entries!r:.100}")
    for i, entry in enumerate(entries):
        if (not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str)
                or not isinstance(entry.get("config", {}), dict)):
            raise ValueError(f"{what}: layer entry {i} must be a dict with a 'class_name' string and a 'config' dict; "
                             f"got {entry!r:.100}")
    return entries


def config_trainable(config: dict) -> bool:
    """The model's own ``trainable`` of a description (True where an older file has none); a
    ValueError for anything but a bool."""
    value = config.get("trainable", True)
    if not isinstance(value, bool):
        raise ValueError(f"the model's 'trainable' must be true or false; got {value!r:.100}")
    return value


def _positions(value, n: int) -> bool:
    return (isinstance(value, list) and bool(value) and len(set(map(repr, value))) == len(value)
            and all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n for k in value))


def _refs(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
        and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in r[1:]) for r in value)


def _nested_entries(config: dict, what: str, holds: str, kind: str, claimed) -> list:
    """The ``nested`` list of a model's config (absent from older files) with each entry's
    ``name``, ``class_name`` and ``trainable`` checked, and ``claimed(entry)``: the lists of
    positions the entry holds, or None where its own keys (``holds``) are wrong; no position in
    two lists. ValueError naming the entry that is not so."""
    entries = config.get("nested", [])
    if not isinstance(entries, list):
        raise ValueError(f"{what}: 'nested' must be a list; got {entries!r:.100}")
    taken: set = set()
    for i, entry in enumerate(entries):
        common = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]
                  and entry.get("class_name") in ("Sequential", "Functional") and isinstance(entry.get("trainable"), bool))
        groups = claimed(entry) if common else None
        if groups is None:
            raise ValueError(f"{what}: nested model entry {i} must be a dict of 'name', 'class_name' (Sequential or "
                             f"Functional), 'trainable' and {holds}; got {entry!r:.100}")
        for positions in groups:
            if taken & set(positions):
                raise ValueError(f"{what}: nested model entry {i} ({entry['name']!r}) claims {kind} "
                                 f"{sorted(taken & set(positions))} that another entry or call holds")
            taken |= set(positions)
    return entries


def config_nested_calls(config: dict, n_nodes: int, what: str) -> list:
    """The models called in a graph model, from its config: each ``{"name", "class_name",
    "trainable", "calls": [{"nodes", "inputs", "outputs", "inference"}]}``, a call's nodes given
    by their positions in the config's ``nodes``, each node in one call at most."""
    def calls(entry):
        found = entry.get("calls")
        ok = isinstance(found, list) and bool(found) and all(
            isinstance(call, dict) and _positions(call.get("nodes"), n_nodes) and _refs(call.get("inputs"))
            and _refs(call.get("outputs")) and isinstance(call.get("inference"), bool) for call in found)
        return [call["nodes"] for call in found] if ok else None

    return _nested_entries(config, what, "a list of 'calls' (each its 'nodes' positions, 'inputs', 'outputs' and "
                           "'inference')", "node(s)", calls)


def config_nested_layers(config: dict, n_layers: int, what: str) -> list:
    """The models added whole to a Sequential model, from its config: each ``{"name",
    "class_name", "trainable", "layers"}``, ``layers`` a run of consecutive positions in the
    config's ``layers``, each position in one entry at most."""
    def run(entry):
        positions = entry.get("layers")
        ok = _positions(positions, n_layers) and positions == list(range(positions[0], positions[0] + len(positions)))
        return [positions] if ok else None

    return _nested_entries(config, what, "'layers' (consecutive layer positions)", "layer(s)", run)


def layer_from_config(index: int, entry: dict, custom_objects):
    """Layer ``index`` of a saved model description (``{"class_name", "module", "config"}``)."""
    cls = layer_class(entry["class_name"], entry.get("module"), custom_objects)
    config = dict(entry.get("config", {}))
    if entry["class_name"] == "Lambda" and isinstance(config.get("function"), str) and custom_objects:
        # A Lambda's function is saved by its name: custom_objects gives the code back.
        config["function"] = custom_objects.get(config["function"], config["function"])
    try:
        layer = cls.from_config(config)
    except Exception as err:  # a forged config reaches the constructor with any kind of value
        raise LayerConfigError(f"cannot rebuild layer {index} ({entry['class_name']}): {err!s:.300}") from err
    # The model's name of the layer, which its graph refers to: a layer of one's own whose
    # get_config() leaves "name" out (the Keras guide's CustomDense) was named anew, custom_dense_1
    # where this process had a custom_dense already, and the graph then did not find it.
    name = entry.get("name")
    if "name" not in config and isinstance(name, str) and name and "/" not in name:
        layer.name = name
    return layer


def optimizer_slots(model, meta, arrays, path, rebuilt: bool = False) -> tuple[int, dict] | None:
    """The file's optimizer state for ``model``, checked and converted; nothing is changed yet."""
    state = meta.get("optimizer")
    if not state:
        return None
    if state.get("class_name") != type(model.optimizer).__name__:
        raise ModelFileError(
            path,
            f"the optimizer state in the file is for {str(state.get('class_name'))[:100]} but the model is compiled "
            f"with {type(model.optimizer).__name__}",
        )
    names = {f"{i}/{name}": (layer, name) for i, layer in enumerate(in_file_order(model, meta, rebuilt))
             for name in layer.params}
    slots = {}
    for entry in state.get("slots", []):
        found = names.get(entry["variable"])
        value = arrays.get(entry["key"])
        if found is None or value is None:
            raise ModelFileError(path, f"optimizer state for {entry['variable']!r:.100} does not fit this model")
        layer, weight = found
        target = layer.params[weight]
        if value.shape != target.shape:
            raise ModelFileError(
                path, f"optimizer state for {layer.name}/{weight} has shape {value.shape}, weight {target.shape}"
            )
        # NaN in a slot (a damaged or forged file) would make every later update NaN and be blamed
        # on the learning rate; an infinite one is Adam's second moment overflowing, a real state.
        if np.isnan(value).any():
            raise ModelFileError(path, f"optimizer state {entry['slot']!r:.40} of {layer.name}/{weight} holds NaN")
        slots[f"{layer.name}/{weight}/{entry['slot']}"] = value.astype(target.dtype)
    return int(state.get("iterations", 0)), slots


def saved_learning_rate(model, meta, path) -> float | None:
    """The learning rate a checkpoint was saved at, checked, for ``model``'s optimizer; None where
    there is none to restore (a file from before it was saved, or a schedule on either side)."""
    from ..optimizers import check_learning_rate

    lr = (meta.get("optimizer") or {}).get("learning_rate")
    if lr is None or model.optimizer.schedule is not None:
        return None
    try:
        return check_learning_rate(lr)
    except (TypeError, ValueError) as err:
        raise ModelFileError(path, f"invalid learning rate in the optimizer state: {err!s:.200}") from err


def restore_optimizer(model, meta, arrays, path, rebuilt: bool = False) -> None:
    """Put the optimizer state of a model file into the compiled ``model.optimizer``."""
    checked = optimizer_slots(model, meta, arrays, path, rebuilt)
    if checked is not None:
        model.optimizer.set_state(*checked)


def _check_rng_state(state, path) -> None:
    """Refuse a random-generator state that convforge.random.set_state would refuse, without using it."""
    probe = np.random.PCG64()
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        probe.state = state
    except Exception as err:
        raise ModelFileError(path, f"invalid random-generator state: {err!s:.200}") from err


def _callbacks_and_states(callbacks, entries) -> list[tuple]:
    """``(callback, saved state)`` pairs: the k-th saved state of a class goes to the k-th of the
    given callbacks of that class. Not by position in the list: a callback added or removed on
    resuming (a TerminateOnNaN put first) shifted every index, and the states were silently not
    restored -- ModelCheckpoint(save_best_only) then overwrote its best file with a worse model."""
    given: dict[str, list] = {}
    for cb in callbacks:
        given.setdefault(type(cb).__name__, []).append(cb)
    pairs = []
    for entry in entries:
        same_class = given.get(str(entry.get("class_name")), [])
        if same_class:
            pairs.append((same_class.pop(0), entry))
    return pairs


def restore_training_state(model, path, callbacks) -> dict:
    """Load everything ``fit(resume_from=path)`` needs into ``model``; returns the training record.

    All or nothing: the file is checked completely (weights, optimizer state, random state,
    callback states) before the model, its optimizer, the callbacks or convforge's random
    generator change, so a bad file leaves them as they were.

    Returns ``{"epoch", "history", "history_epochs", "history_skipped"}``.
    """
    meta, arrays = read(path)
    if meta["kind"] != "model":
        raise ModelFileError(
            path,
            "holds weights only (save_weights or ModelCheckpoint(save_weights_only=True)); resuming training needs "
            "a file from model.save() or ModelCheckpoint()",
        )
    training = meta.get("training")
    if not isinstance(training, dict) or "rng_state" not in training:
        raise ModelFileError(path, "the file has no training state to resume from")
    matched = check_architecture(model, meta, path)
    optimizer_state = optimizer_slots(model, meta, arrays, path)
    learning_rate = saved_learning_rate(model, meta, path)
    _check_rng_state(training["rng_state"], path)
    # Callbacks run user code that may refuse the state: they go last, and are put back if any does.
    before = [dict(vars(cb)) for cb in callbacks]
    try:
        for callback, entry in _callbacks_and_states(callbacks, training.get("callbacks", [])):
            callback.set_model(model)  # so that a state can be checked against the model
            callback.set_state(entry.get("state"), {name: arrays[key] for name, key in entry.get("arrays", {}).items()})
    except Exception as err:
        for cb, saved in zip(callbacks, before):
            vars(cb).clear()
            vars(cb).update(saved)
        raise ModelFileError(path, f"invalid callback state: {type(err).__name__}: {err!s:.300}") from err
    # Everything is checked: nothing below can fail.
    for layer, name, key in matched:
        layer.params[name][...] = arrays[key]
    if optimizer_state is not None:
        model.optimizer.set_state(*optimizer_state)
    if learning_rate is not None:
        model.optimizer.learning_rate = learning_rate
    _random.set_state(training["rng_state"])
    model.epochs_completed = int(training.get("epoch", 0))
    return {
        "epoch": model.epochs_completed,
        "history": training.get("history") or {},
        "history_epochs": training.get("history_epochs") or [],
        "history_skipped": training.get("history_skipped") or [],
    }
