"""The parts of ``keras.backend`` that Keras code calls on any backend: ``clear_session()`` (as
tutorials write it between experiments) and the settings' getters. convforge's arrays are NumPy
arrays; its images are channels-last at the API and its float type is a model's dtype."""

from __future__ import annotations

__all__ = ["backend", "clear_session", "epsilon", "floatx", "image_data_format", "set_floatx",
           "set_image_data_format"]


def clear_session(free_memory: bool = True) -> None:
    """Forget the layer and metric names handed out so far, as Keras's ``clear_session()`` resets
    its name counters: the next ``Dense`` is ``dense`` again, the next ``AUC()`` ``auc``. Models and layers already made keep theirs.
    ``free_memory`` is accepted for Keras's signature (NumPy frees arrays when they are unused)."""
    if not isinstance(free_memory, bool):
        raise TypeError(f"clear_session free_memory must be True or False; got {free_memory!r}")
    from . import metrics
    from .layers import symbolic

    symbolic._USED_NAMES.clear()
    metrics._AUTO_NAME_COUNTS.clear()


def backend() -> str:
    """``'numpy'``: convforge computes on NumPy arrays (and its own C++ kernels)."""
    return "numpy"


def epsilon() -> float:
    """Keras's fuzz factor, 1e-7 (what convforge's losses and Normalization use too)."""
    return 1e-7


def floatx() -> str:
    """``'float32'``: the dtype of a model made without ``dtype=`` (Sequential(..., dtype='float64') for
    the other)."""
    return "float32"


def image_data_format() -> str:
    """``'channels_last'``: images are (batch, height, width, channels) at the API, as in Keras."""
    return "channels_last"


def set_floatx(value) -> None:
    raise NotImplementedError("convforge has no global float type: give a model its dtype, "
                              f"Sequential(..., dtype={value!r}) or convforge.Model(..., dtype=...)")


def set_image_data_format(data_format) -> None:
    raise NotImplementedError("convforge has no global image layout: images are channels-last at the API; a "
                              "Sequential takes channels-first images from layers given data_format='channels_first'")
