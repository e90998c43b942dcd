"""``convforge.load_model``: a model rebuilt from its file (architecture, weights, compile settings)."""

from __future__ import annotations

import copyreg
import json
import os
import warnings

import numpy as np

from .. import losses as losses_module
from .. import optimizers as optimizers_module
from .._warnings import user_stacklevel
from ..saving import ModelFileError, _check_meta, read
from . import keras_file
from .functional import Functional
from .sequential import Sequential
from .state import assign_weights, building, model_state, restore_optimizer

__all__ = ["load_model"]


def _model_from_meta(meta, path, custom_objects):
    kind = meta["model"].get("class_name", "Sequential")
    classes = {"Sequential": Sequential, "Functional": Functional}
    if not isinstance(kind, str) or kind not in classes:
        raise ModelFileError(path, f"unknown model class {kind!r:.100} (convforge writes Sequential or Functional)")
    with building(path, meta, "cannot rebuild the model from its description"):
        return classes[kind].from_config(meta["model"]["config"], custom_objects)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True, *, input_layout=None):  # noqa: A002
    """Rebuild a model saved with ``model.save`` (or ``save_weights``) from its file; Keras's signature.

    Parameters
    ----------
    filepath : str or os.PathLike
        A ``.onnx`` path is imported from ONNX (see :mod:`convforge.onnx`;
        needs the ``onnx`` package); a ``.keras`` path is Keras 3's format,
        written by Keras or by convforge (:mod:`convforge.models.keras_file`;
        needs h5py); any other is a convforge ``.npz``.
    custom_objects : dict, optional
        ``{'MyLayer': MyLayer}`` for layer classes of your own.
    compile : bool
        Compile with the saved optimizer (state included; from a ``.keras``
        file for SGD, Adam, AdamW and RMSprop, else a fresh one, with a
        warning), loss and metrics.
        An ONNX model holds none: compile it yourself to train it.
    safe_mode : bool
        Keras's guard against files that run code when loaded; convforge's files hold no
        code (no pickle, no lambdas), so it changes nothing.
    input_layout : 'channels_last', 'channels_first' or None
        ONNX only: the layout the imported model takes its images in, or, where
        its inputs are no images, returns them in (None: the file's; see
        :func:`convforge.onnx.load_onnx`).

    Returns
    -------
    Sequential

    Raises
    ------
    ModelFileError
        For any file that cannot be used, with the path and the reason (FileNotFoundError for
        a missing one). Memory used is bounded by the file's size.
    """
    if not isinstance(safe_mode, (bool, np.bool_)):
        raise TypeError(f"safe_mode must be True or False; got {safe_mode!r}")
    path = filepath
    if os.fsdecode(path).lower().endswith(".onnx"):
        from ..onnx import load_onnx

        return load_onnx(path, input_layout=input_layout)
    if input_layout is not None:
        raise ValueError(f"input_layout is for ONNX files (*.onnx); {os.fsdecode(path)!r} is a convforge model file")
    if keras_file.is_keras_file(path):
        return keras_file.load_keras_model(path, {"Sequential": Sequential, "Functional": Functional}, custom_objects,
                                           compile)
    meta, arrays = read(path)
    return model_from_state(meta, arrays, path, custom_objects, compile)


def model_from_state(meta, arrays, path, custom_objects=None, compile=True):  # noqa: A002
    """The model that ``meta`` and ``arrays`` (what :func:`state.model_state` gives, or a file's
    checked contents) describe; ``path`` names their source in errors."""
    model = _model_from_meta(meta, path, custom_objects)
    assign_weights(model, meta, arrays, path, rebuilt=True)
    compile_config = meta.get("compile")
    if compile and compile_config:
        try:
            opt_config = compile_config.get("optimizer")
            if opt_config is None:
                optimizer = "rmsprop"
                warnings.warn(
                    f"{path}: the optimizer was not saved (a custom class); compiled with RMSprop",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            else:
                config = dict(opt_config.get("config", {}))
                if config.get("learning_rate", 0) is None:
                    config.pop("learning_rate")
                    warnings.warn(
                        f"{path}: the learning-rate function was not saved; using the default",
                        UserWarning,
                        stacklevel=user_stacklevel(),
                    )
                optimizer = optimizers_module.deserialize({**opt_config, "config": config})
            loss = compile_config.get("loss")
            if loss is None:
                raise ModelFileError(path, "the loss was a custom class and was not saved: load with compile=False")
            if isinstance(loss, list):  # one per output of a functional model (None: that output has no loss)
                loss = [None if entry is None else losses_module.deserialize(entry) for entry in loss]
            else:
                loss = losses_module.deserialize(loss)
            extra = {}
            if compile_config.get("loss_weights") is not None:
                extra["loss_weights"] = compile_config["loss_weights"]
            model.compile(optimizer=optimizer, loss=loss, metrics=compile_config.get("metrics") or None, **extra)
        except (ModelFileError, Warning):
            raise
        except Exception as err:  # forged settings reach the optimizer/loss constructors
            raise ModelFileError(path, f"cannot restore the compile settings: {type(err).__name__}: {err!s:.300}") from err
        restore_optimizer(model, meta, arrays, path, rebuilt=True)
    training = meta.get("training") or {}
    model.epochs_completed = int(training.get("epoch", 0))
    return model


def _model_from_pickle(meta_json: str, arrays: dict):
    """pickle's and copy.deepcopy's way back from _reduce_model. The description goes through the
    checks a file's does."""
    where = "<a pickled or copied model>"
    meta = _check_meta(json.loads(meta_json), where)
    try:
        return model_from_state(meta, arrays, where)
    except ModelFileError as err:
        if "compile=False" not in str(err):  # a custom loss class: the description cannot compile it
            raise
        warnings.warn(f"{err}; the copy comes back uncompiled: compile it again", UserWarning,
                      stacklevel=user_stacklevel())
        return model_from_state(meta, arrays, where, compile=False)


def _reduce_model(model):
    """``pickle`` and ``copy.deepcopy`` of a Sequential or Functional model, as Keras's models do
    them: through what ``save`` writes (architecture, weights, compile settings, optimizer state;
    not the history, nor attributes of your own), rebuilt as ``load_model`` rebuilds a file, with
    weights that are not finite kept as they are. A built model's graph is indexed by the
    identities of its objects and holds the compiled kernels' plans, which a copy of its
    attributes one by one cannot carry. A model not built yet is copied as any object."""
    if not model.built:
        return object.__reduce_ex__(model, 4)
    meta, arrays = model_state(model, finite_only=False)
    return _model_from_pickle, (json.dumps(meta), arrays)


# In copyreg's table, which pickle and copy.deepcopy consult before the object's own methods:
# for these exact classes (Model.__reduce_ex__ answers for subclasses).
copyreg.pickle(Sequential, _reduce_model)
copyreg.pickle(Functional, _reduce_model)


def model_from_json(json_string: str, custom_objects=None):
    """A new model (fresh weights) from ``model.to_json()``'s string, Keras's ``model_from_json``."""
    try:
        description = json.loads(json_string)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_from_json expects the string model.to_json() returned: {err}") from None
    if not isinstance(description, dict) or "config" not in description:
        raise ValueError("model_from_json: not a model description written by convforge's model.to_json()")
    if not description.get("convforge"):
        raise ValueError(
            "model_from_json: this JSON was written by Keras, whose layer configs convforge does not read; "
            "rebuild the model in code with convforge.layers"
        )
    model_class = _model_classes().get(description.get("class_name"))
    if model_class is None:
        raise ValueError(
            f"model_from_json: class_name must be 'Sequential' or 'Functional'; got {description.get('class_name')!r}"
        )
    return model_class.from_config(description["config"], custom_objects=custom_objects)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False,
                custom_objects=None):
    """A new model with the same architecture and fresh weights, Keras's ``clone_model`` (not compiled).

    Keras's ``input_tensors``, ``clone_function`` and ``call_function`` are not supported
    (NotImplementedError, with the way to do the same); ``recursive`` changes nothing, a model
    called inside this one being cloned with it (its layers are this model's own).
    """
    if not isinstance(recursive, (bool, np.bool_)):
        raise TypeError(f"clone_model: recursive must be True or False; got {recursive!r}")
    hints = {
        "input_tensors": "clone the model, then call the clone on the new tensors: "
                         "clone = clone_model(model); outputs = clone(new_inputs)",
        "clone_function": "clone the model, then change the clone's layers (clone.layers) or rebuild it from "
                          "model.get_config() edited",
        "call_function": "build the new graph yourself with convforge.Input and the layers' calls",
    }
    for name, value in (("input_tensors", input_tensors), ("clone_function", clone_function),
                        ("call_function", call_function)):
        if value is not None:
            raise NotImplementedError(f"clone_model: Keras's argument {name} is not supported by convforge; "
                                      f"{hints[name]}")
    model_class = _model_classes().get(type(model).__name__)
    if model_class is None or not isinstance(model, model_class):
        raise TypeError(f"clone_model expects a convforge Sequential or functional Model; got {type(model).__name__}")
    return model_class.from_config(model.get_config(), custom_objects=custom_objects)


def _model_classes() -> dict:
    from .functional import Functional
    from .sequential import Sequential

    return {"Sequential": Sequential, "Functional": Functional}
