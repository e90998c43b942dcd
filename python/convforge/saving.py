"""Model files: ``.npz`` archives with a JSON description, written atomically, read without pickle.

``model.save(path)``
    Architecture, weights, compile settings (optimizer, loss, metrics),
    optimizer state (momenta, moments, step count) and training progress
    (epochs done, convforge's random-generator state, history, callback
    state). Enough for :func:`load_model`, and for
    ``model.fit(..., resume_from=path)`` to continue exactly where training
    stopped.
``model.save_weights(path)``
    Weights, plus the architecture so that loading can check it.
``model.load_weights(path)``, ``convforge.load_model(path)``
    The reverse; ``load_model`` rebuilds the model from the JSON description.

Format (version 1)
------------------
A NumPy ``.npz`` (zip) archive -- the path is used as given, ``.npz`` is
the natural suffix. The entry ``__meta__`` is a uint8 array holding UTF-8
JSON: ``{"format": "convforge", "format_version": 1, "kind": "model" |
"weights", "model": <Sequential.get_config()>, "weights": [{"layer",
"class_name", "name", "key", "shape", "dtype"}], "compile", "optimizer",
"training"}``. Weights are float arrays named ``weights/<layer index>/<weight
name>``; optimizer slots ``optimizer/<n>``; callback arrays
``callbacks/<n>``. Files are read with ``allow_pickle=False``: nothing in a
model file can execute code.

Writing is atomic: the archive goes to a temporary file in the same
directory, is flushed and fsync'ed, then renamed over the target
(``os.replace``), and the directory is fsync'ed. A crash leaves either the
old file or the new one, never a mixture.

Errors
------
Any problem with a file's content -- not a zip, truncated, corrupt,
unknown format version, or weights that do not fit the model -- raises
:class:`ModelFileError` (a ``ValueError``) naming the path and the reason. A
missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
import warnings
import zipfile
import zlib

import numpy as np

from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import random as _random

__all__ = ["FORMAT_VERSION", "ModelFileError", "load_model", "load_weights", "save_model", "save_weights"]

FORMAT = "convforge"
FORMAT_VERSION = 1
_META = "__meta__"


class ModelFileError(ValueError):
    """A model file that cannot be used: corrupt, truncated, not convforge's, or the wrong architecture.

    Attributes
    ----------
    path : str
    reason : str
    """

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- writing


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. Not possible on every platform (Windows): best effort.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Delete the temporary files of writers of ``base`` that died mid-write (killed, crashed).

    A name carries its writer's process id; a file whose writer is still alive is left alone.
    """
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix) : -len(".tmp")].split(".")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that writer is still running
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue  # someone else's live process
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


def write_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path``, atomically (see the module docstring)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, os.path.basename(path))
    # OS entropy for the name: convforge's generator must not be disturbed by saving.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _weights_entries(model) -> tuple[list[dict], dict[str, np.ndarray]]:
    entries, arrays = [], {}
    for i, layer in enumerate(model.layers):
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


def _meta_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


def _base_meta(model, kind: str) -> tuple[dict, dict]:
    if not model.built:
        raise ValueError("cannot save a model that has not been built (no input shape known yet)")
    from . import __version__

    entries, arrays = _weights_entries(model)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "convforge_version": __version__,
        "model": {"class_name": type(model).__name__, "config": model.get_config()},
        "weights": entries,
    }
    return meta, arrays


def _not_the_writer() -> bool:
    # Data-parallel runs: every rank holds the same weights, and only the primary writes, so that
    # ranks never race on one file (and a file does not depend on the number of ranks).
    from . import distributed

    return not distributed.is_primary()


def save_weights(model, path) -> None:
    """Weights and architecture (``model.save_weights``); on the primary rank only (see convforge.distributed)."""
    if _not_the_writer():
        return
    meta, arrays = _base_meta(model, "weights")
    write_atomic(path, {_META: _meta_array(meta), **arrays})


def _variable_index(model) -> dict[str, str]:
    """Optimizer keys ('<layer name>/<weight>') -> position-based keys ('<layer index>/<weight>')."""
    return {f"{layer.name}/{name}": f"{i}/{name}" for i, layer in enumerate(model.layers) for name in layer.params}


def save_model(model, path) -> None:
    """Everything needed to rebuild the model and to resume training (``model.save``).

    In a data-parallel run only the primary rank writes (see convforge.distributed).
    """
    if _not_the_writer():
        return
    meta, arrays = _base_meta(model, "model")
    compile_config = None
    if model.loss is not None:
        metric_names = []
        for spec, metric in zip(getattr(model, "_metric_specs", []), model.compiled_metrics):
            if isinstance(spec, str):
                metric_names.append(spec)
            elif type(metric) in (
                metrics_module.Accuracy,
                metrics_module.MeanSquaredError,
                metrics_module.MeanAbsoluteError,
            ):
                metric_names.append(metric.name)
        compile_config = {
            "optimizer": optimizers_module.serialize(model.optimizer),
            "loss": losses_module.serialize(model.loss),
            "metrics": metric_names,
        }
    meta["compile"] = compile_config

    meta["optimizer"] = None
    if model.optimizer is not None:
        iterations, slots = model.optimizer.get_state()
        to_index = _variable_index(model)
        entries = []
        for n, (full, value) in enumerate(sorted(slots.items())):
            variable, _, slot = full.rpartition("/")
            if variable not in to_index:
                continue  # state of a weight no longer in the model
            key = f"optimizer/{n}"
            entries.append({"variable": to_index[variable], "slot": slot, "key": key, "shape": list(value.shape)})
            arrays[key] = value
        meta["optimizer"] = {"class_name": type(model.optimizer).__name__, "iterations": iterations, "slots": entries}

    history = model.history
    callback_states = []
    for i, cb in enumerate(getattr(model, "_fit_callbacks", [])):
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
        "history": history.history if history is not None else {},
        "history_epochs": list(history.epoch) if history is not None else [],
        "callbacks": callback_states,
    }
    write_atomic(path, {_META: _meta_array(meta), **arrays})


# --------------------------------------------------------------------------- reading

_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    KeyError,
    ValueError,
    UnicodeDecodeError,
    NotImplementedError,
)


def _check_meta(meta, path) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, "the '__meta__' entry is not a convforge description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path,
            f"written by a newer convforge (format version {version}); this version reads up to {FORMAT_VERSION}",
        )
    if meta.get("kind") not in ("model", "weights"):
        raise ModelFileError(path, f"unknown file kind {meta.get('kind')!r}")
    model = meta.get("model")
    weights = meta.get("weights")
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("config"), dict)
        or not isinstance(model["config"].get("layers"), list)
        or not isinstance(weights, list)
        or not all(
            isinstance(w, dict) and {"index", "name", "key", "shape", "layer", "class_name"} <= set(w) for w in weights
        )
    ):
        raise ModelFileError(path, "malformed '__meta__' description (missing model or weights entries)")
    return meta


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, arrays)`` of a model file, fully checked; ModelFileError otherwise."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError, with the path, for a missing file
        head = f.read(4)
    if not head:
        raise ModelFileError(path, "the file is empty")
    if head != b"PK\x03\x04":
        raise ModelFileError(
            path, "not a model file: it is not an .npz (zip) archive as written by model.save() or model.save_weights()"
        )
    try:
        # Our own file object: np.load leaks its handle when the zip is unreadable.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            if _META not in npz.files:
                raise ModelFileError(
                    path, "no '__meta__' entry: this .npz was not written by convforge's model.save() or save_weights()"
                )
            raw = npz[_META]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ModelFileError(path, "the '__meta__' entry is not UTF-8 JSON bytes")
            meta = _check_meta(json.loads(raw.tobytes().decode("utf-8")), path)
            arrays = {name: npz[name] for name in npz.files if name != _META}
    except ModelFileError:
        raise
    except _READ_ERRORS as err:
        raise ModelFileError(path, f"the file is corrupt or truncated ({type(err).__name__}: {err})") from err
    for entry in meta["weights"]:
        value = arrays.get(entry["key"])
        if value is None:
            raise ModelFileError(path, f"weight array {entry['key']!r} listed in the description is missing")
        if list(value.shape) != list(entry["shape"]) or value.dtype not in (np.float32, np.float64):
            raise ModelFileError(
                path,
                f"weight array {entry['key']!r} is {value.dtype} {value.shape}; the description says "
                f"float32/float64 {tuple(entry['shape'])}",
            )
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            # A model that diverged, or a forged file: either way not weights to continue from.
            raise ModelFileError(path, f"weight array {entry['key']!r} holds {bad} NaN or infinite values")
    return meta, arrays


def _layers_summary(classes) -> str:
    return ", ".join(classes) if len(classes) <= 8 else ", ".join(classes[:8]) + ", ..."


def _check_architecture(model, meta, path) -> list[tuple]:
    """The file's weights matched to this model's, position by position, or ModelFileError."""
    file_layers = meta["model"]["config"]["layers"]
    file_classes = [entry.get("class_name", "?") for entry in file_layers]
    model_classes = [type(layer).__name__ for layer in model.layers]
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
                path, f"wrong architecture: layer {i} is a {fc} in the file but a {mc} ({model.layers[i].name!r}) here"
            )
    by_layer: dict[int, list[dict]] = {}
    for entry in meta["weights"]:
        by_layer.setdefault(int(entry["index"]), []).append(entry)
    matched = []
    for i, layer in enumerate(model.layers):
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


def _assign_weights(model, meta, arrays, path) -> None:
    matched = _check_architecture(model, meta, path)
    for layer, name, key in matched:
        layer.params[name][...] = arrays[key]


def _build_for(model, meta, path) -> None:
    if model.built:
        return
    spec = meta["model"]["config"].get("input_shape")
    if model._input_spec() is None and spec:
        model._declared_input = tuple(spec)
    model.build()


def load_weights(model, path) -> None:
    """Load the weights of ``path`` into ``model`` (``model.load_weights``)."""
    meta, arrays = read(path)
    _build_for(model, meta, path)
    _assign_weights(model, meta, arrays, path)


def _layer_class(name: str, module, custom_objects, path):
    """The class of a saved layer: custom_objects, then convforge's, then a Layer subclass defined
    (imported) in this process with that name -- in the same module if several. Nothing is
    imported on the file's say."""
    from . import layers as layers_module
    from .layers.base import _REGISTRY, Layer

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
    raise ModelFileError(
        path,
        f"the file uses layer class {name!r} (module {module!r}), which is not a convforge layer"
        + (" and matches several classes" if candidates else " and is not defined in this process")
        + f": pass load_model(..., custom_objects={{{name!r}: {name}}})",
    )


def _model_from_meta(meta, path, custom_objects):
    from .model import Sequential

    config = meta["model"]["config"]
    try:
        model = Sequential(name=config.get("name"), dtype=config.get("dtype", "float32"))
        if config.get("input_shape"):
            model._declared_input = tuple(config["input_shape"])
        layers = []
        for i, entry in enumerate(config["layers"]):
            cls = _layer_class(entry["class_name"], entry.get("module"), custom_objects, path)
            try:
                layers.append(cls.from_config(dict(entry.get("config", {}))))
            except (TypeError, ValueError) as err:
                raise ModelFileError(path, f"cannot rebuild layer {i} ({entry['class_name']}): {err}") from err
        # Add all layers before building: the input spec then applies to the whole stack.
        spec, model._declared_input = model._declared_input, None
        for layer in layers:
            if layer is layers[0]:
                layer.input_shape_arg = None
            model.add(layer)
        model._declared_input = spec
        model.build()
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(path, f"cannot rebuild the model from its description: {err}") from err
    return model


def _restore_optimizer(model, meta, arrays, path) -> None:
    state = meta.get("optimizer")
    if not state:
        return
    if state.get("class_name") != type(model.optimizer).__name__:
        raise ModelFileError(
            path,
            f"the optimizer state in the file is for {state.get('class_name')} but the model is compiled with "
            f"{type(model.optimizer).__name__}",
        )
    names = {f"{i}/{name}": f"{layer.name}/{name}" for i, layer in enumerate(model.layers) for name in layer.params}
    slots = {}
    for entry in state.get("slots", []):
        variable = names.get(entry["variable"])
        value = arrays.get(entry["key"])
        if variable is None or value is None:
            raise ModelFileError(path, f"optimizer state for {entry['variable']!r} does not fit this model")
        layer_name, _, weight = variable.rpartition("/")
        target = model.get_layer(layer_name).params[weight]
        if value.shape != target.shape:
            raise ModelFileError(
                path, f"optimizer state for {variable!r} has shape {value.shape}, weight {target.shape}"
            )
        slots[f"{variable}/{entry['slot']}"] = value.astype(target.dtype)
    model.optimizer.set_state(int(state.get("iterations", 0)), slots)


def load_model(path, custom_objects=None, compile=True):  # noqa: A002 - Keras's argument name
    """Rebuild a model saved with ``model.save`` (or ``save_weights``) from its file.

    Parameters
    ----------
    path : str or os.PathLike
    custom_objects : dict, optional
        ``{'MyLayer': MyLayer}`` for layer classes of your own.
    compile : bool
        Compile with the saved optimizer (state included), loss and metrics.

    Returns
    -------
    Sequential
    """
    meta, arrays = read(path)
    model = _model_from_meta(meta, path, custom_objects)
    _assign_weights(model, meta, arrays, path)
    compile_config = meta.get("compile")
    if compile and compile_config:
        try:
            opt_config = compile_config.get("optimizer")
            if opt_config is None:
                optimizer = "rmsprop"
                warnings.warn(
                    f"{path}: the optimizer was not saved (a custom class); compiled with RMSprop",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                config = dict(opt_config.get("config", {}))
                if config.get("learning_rate", 0) is None:
                    config.pop("learning_rate")
                    warnings.warn(
                        f"{path}: the learning-rate function was not saved; using the default",
                        UserWarning,
                        stacklevel=2,
                    )
                optimizer = optimizers_module.deserialize({**opt_config, "config": config})
            loss = compile_config.get("loss")
            if loss is None:
                raise ModelFileError(path, "the loss was a custom class and was not saved: load with compile=False")
            model.compile(
                optimizer=optimizer, loss=losses_module.deserialize(loss), metrics=compile_config.get("metrics") or None
            )
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(path, f"cannot restore the compile settings: {err}") from err
        _restore_optimizer(model, meta, arrays, path)
    training = meta.get("training") or {}
    model.epochs_completed = int(training.get("epoch", 0))
    return model


def restore_training_state(model, path, callbacks) -> dict:
    """Load everything ``fit(resume_from=path)`` needs into ``model``; returns the training record.

    Returns ``{"epoch", "history", "history_epochs"}``.
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
    _assign_weights(model, meta, arrays, path)
    _restore_optimizer(model, meta, arrays, path)
    for entry in training.get("callbacks", []):
        i = entry.get("index")
        if isinstance(i, int) and i < len(callbacks) and type(callbacks[i]).__name__ == entry.get("class_name"):
            callbacks[i].set_state(entry["state"], {name: arrays[key] for name, key in entry.get("arrays", {}).items()})
    try:
        _random.set_state(training["rng_state"])
    except ValueError as err:
        raise ModelFileError(path, f"invalid random-generator state: {err}") from err
    model.epochs_completed = int(training.get("epoch", 0))
    return {
        "epoch": model.epochs_completed,
        "history": training.get("history") or {},
        "history_epochs": training.get("history_epochs") or [],
    }
