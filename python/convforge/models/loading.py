"""``convforge.load_model``: a model rebuilt from its file (architecture, weights, compile settings)."""

from __future__ import annotations

import warnings

from .. import losses as losses_module
from .. import optimizers as optimizers_module
from ..saving import ModelFileError, read
from .sequential import Sequential
from .state import LayerConfigError, assign_weights, restore_optimizer

__all__ = ["load_model"]


def _model_from_meta(meta, path, custom_objects):
    try:
        return Sequential.from_config(meta["model"]["config"], custom_objects)
    except LayerConfigError as err:
        raise ModelFileError(path, str(err)) from err
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(path, f"cannot rebuild the model from its description: {err}") from err


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
    assign_weights(model, meta, arrays, path)
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
        restore_optimizer(model, meta, arrays, path)
    training = meta.get("training") or {}
    model.epochs_completed = int(training.get("epoch", 0))
    return model
