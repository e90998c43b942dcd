"""The convolution, dense, pooling and activation ops, running on the compiled kernels.

Layouts follow PyTorch: activations are NCHW ``(batch, channels, height, width)``,
conv weights are OIHW ``(filters, channels, kernel_height, kernel_width)``, and
conv2d is a cross-correlation (the kernel is not flipped), as in every deep
learning framework.

float32 arrays take the fast SIMD kernels; float64 arrays take the portable
kernels and exist for gradient checks. Every array of one call must have the
same dtype: nothing is converted behind your back. Non-contiguous, reversed,
Fortran-ordered or broadcast inputs are accepted and give the same answer as
their contiguous copies.

``convforge.reference`` has NumPy implementations with the same names and
signatures; the tests hold these kernels to them.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os

import numpy as np

from . import _core, _params

__all__ = [
    "conv2d",
    "conv2d_algorithms",
    "conv2d_backward",
    "conv2d_backward_data",
    "conv2d_backward_weights",
    "dense",
    "dense_backward",
    "dense_backward_data",
    "dense_backward_weights",
    "first_non_finite",
    "force_conv2d_algorithm",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "gelu",
    "gelu_backward",
    "erf",
    "softmax",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _array(a, name: str, ndim: int | None = None, layout: str = "", batch: bool = False) -> np.ndarray:
    """``a`` itself once checked to be a usable float32/float64 array, or a TypeError/ValueError.

    Nothing is copied here: every argument is checked before :func:`_contiguous` makes
    the copies, so a call that is refused never allocates (a broadcast view may stand
    for terabytes). ``batch``: the first axis counts images and may be 0 (an empty batch,
    whose result is empty too, as in NumPy and PyTorch); every other axis must be >= 1.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        # A byte-swapped float32 ('>f4') lands here too: it is not the native float32.
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype.str if a.dtype.kind == 'f' else a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, got shape {a.shape}".replace("  ", " "))
    if a.size == 0 and not (batch and a.ndim >= 1 and a.shape[0] == 0 and min(a.shape[1:], default=1) >= 1):
        what = "every dimension but the batch (first) one" if batch else "every dimension"
        raise ValueError(f"{name} is empty (shape {a.shape}): {what} must be at least 1")
    if max(a.shape, default=1) > _params.MAX_PARAM or a.size > _params.MAX_ELEMENTS:
        raise ValueError(
            f"{name} is too large (shape {a.shape}): at most {_params.MAX_PARAM} per dimension "
            f"and 2**{_params.MAX_ELEMENTS.bit_length() - 1} elements"
        )
    return a


def _contiguous(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, aligned view or copy of a checked array.

    Unlike np.ascontiguousarray this keeps 0-d arrays 0-d and returns `a` itself when it
    is already contiguous, so `relu(x, out=x)` can be recognised as in place. A view at an
    odd byte offset of a raw buffer is copied too: the kernels need aligned elements.
    """
    return a if a.flags.c_contiguous and a.flags.aligned else a.copy(order="C")


def _same_dtype(reference_name: str, reference: np.ndarray, **others: np.ndarray | None) -> None:
    for name, arr in others.items():
        if arr is not None and arr.dtype != reference.dtype:
            raise TypeError(
                f"{name} is {arr.dtype} but {reference_name} is {reference.dtype}: use one dtype for all arrays "
                "(float32 for speed, float64 for gradient checks)"
            )


def _flag(value, name: str) -> bool:
    if value is True or value is False:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


# ---- conv2d algorithms: which one runs, and forcing one ---------------------------------------

_CONV_PASSES = ("fwd", "bwd_data", "bwd_weights")


def _parse_conv_algo(text: str) -> dict:
    """``'fwd:im2col_gemm,bwd_data:col2im_gemm'`` -> ``{'fwd': 'im2col_gemm', ...}``."""
    forced = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        pass_, sep, name = item.partition(":")
        pass_, name = pass_.strip(), name.strip()
        if not sep or pass_ not in _CONV_PASSES or not name:
            raise ValueError(
                f"CONVFORGE_CONV_ALGO must be a comma-separated list of pass:algorithm with pass one of "
                f"{', '.join(_CONV_PASSES)} (e.g. 'fwd:im2col_gemm,bwd_data:col2im_gemm'), got {text!r}"
            )
        by_isa = _core.build_info()["conv2d_algorithms"][f"conv2d_{pass_}"]
        known = sorted({a for names in by_isa.values() for a in names})
        if name not in known:  # a typo fails the import, not the first convolution
            raise ValueError(f"CONVFORGE_CONV_ALGO: conv2d {pass_} has no algorithm {name!r}; "
                             f"the compiled ones are {', '.join(known)}")
        forced[pass_] = name
    return forced


# The forced algorithm per pass: $CONVFORGE_CONV_ALGO, read once at import, then
# force_conv2d_algorithm. Process-wide, like the ISA cap.
_forced_conv_algo: dict = _parse_conv_algo(os.environ.get("CONVFORGE_CONV_ALGO", ""))


@contextlib.contextmanager
def force_conv2d_algorithm(fwd=None, bwd_data=None, bwd_weights=None):
    """Run conv2d's passes with the named algorithms inside a ``with`` block.

    Each argument names one algorithm of that pass (see :func:`conv2d_algorithms`
    and ``convforge.build_info()["conv2d_algorithms"]``); ``None`` leaves the pass
    as it was (the default choice, or an outer forcing). A forced algorithm that does
    not apply to a call's problem makes that call raise ``ValueError`` naming it,
    before anything is written; so does a name the active ISA does not have.

    The setting is process-wide (not per thread), as the ISA cap is. The same can be
    set for a whole run with ``CONVFORGE_CONV_ALGO=fwd:im2col_gemm,bwd_data:col2im_gemm``
    (read at import). The layers call these functions, so the setting applies to
    training too.
    """
    update = {}
    for pass_, name in (("fwd", fwd), ("bwd_data", bwd_data), ("bwd_weights", bwd_weights)):
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"{pass_} must be an algorithm name (str) or None, got {name!r}")
            update[pass_] = name
    previous = dict(_forced_conv_algo)
    _forced_conv_algo.update(update)
    try:
        yield
    finally:
        _forced_conv_algo.clear()
        _forced_conv_algo.update(previous)


def conv2d_algorithms(x_shape, w_shape, stride=1, padding=0, dilation=1, dtype=np.float32) -> dict:
    """The conv2d algorithms that apply to a problem, per pass, best-first.

    Returns ``{"fwd": names, "bwd_data": names, "bwd_weights": names}``, each a
    tuple whose first name is the one a call runs by default; those that apply
    but whose speed rule does not pay for this problem come after the rest (only
    forcing runs them). The answer is for
    the active ISA (``build_info()["isa"]``, which ``CONVFORGE_MAX_ISA`` caps) and
    the given ``dtype`` (float64 has the portable algorithms only), and assumes
    finite data: some backward forms multiply zero padding by the weights or the
    input, and step aside for inf/NaN values (the exact forms, last of those taken by
    default, then run). ``build_info()["conv2d_algorithms"]`` lists every compiled one.
    """
    x_shape, w_shape = _shape4(x_shape, "x_shape"), _shape4(w_shape, "w_shape")
    plan = _conv_setup(x_shape, w_shape, stride, padding, dilation)
    dtype = np.dtype(dtype)
    if dtype not in _FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dict(_core.conv2d_algorithms(x_shape, w_shape, plan.stride, plan.pads, plan.dilation, dtype.name))


def _check_forced_on_empty_batch(pass_: str, x_shape: tuple, w_shape: tuple, plan, dtype) -> None:
    """An empty batch runs no kernel, so nothing checked a forced algorithm: the ValueError a
    one-image call of the same problem would raise (the algorithm does not apply, or the active
    ISA or dtype lacks it), so that a batch of 0 is refused as a batch of 1 is."""
    name = _forced_conv_algo.get(pass_)
    if name is None:
        return
    names = _core.conv2d_algorithms((1, *x_shape[1:]), w_shape, plan.stride, plan.pads, plan.dilation,
                                    np.dtype(dtype).name)[pass_]
    if name not in names:
        raise ValueError(f"conv2d {pass_} algorithm {name!r} does not apply to this problem on "
                         f"{_core.build_info()['isa']} ({np.dtype(dtype).name}); these do: {', '.join(names)}")


def _shape4(shape, name: str, batch: bool = False) -> tuple:
    if type(shape) is tuple and len(shape) == 4 and all(type(d) is int and 0 < d <= _params.MAX_PARAM for d in shape):
        return shape  # the common case, known without the ABC checks below (10 us a call)
    if not isinstance(shape, (tuple, list)) or len(shape) != 4 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in shape
    ):
        raise TypeError(f"{name} must be a tuple of 4 ints, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if min(shape[int(batch):]) < 1 or shape[0] < 0 or max(shape) > _params.MAX_PARAM:
        low = "0 (the batch) or 1 (the others)" if batch else "1"
        raise ValueError(f"{name} must have 4 dimensions between {low} and {_params.MAX_PARAM}, got {shape}")
    return shape


def _conv_setup(x_shape, w_shape, stride, padding, dilation, plan=None) -> _params.ConvPlan:
    """The conv2d plan for these shapes: ``plan`` as given (a caller's, built once), else built here."""
    if x_shape[1] != w_shape[1]:
        raise ValueError(
            f"x has {x_shape[1]} channels but w expects {w_shape[1]} (w has shape {w_shape} = (K, C, R, S))"
        )
    if plan is not None:
        return plan  # the bindings check it against the shapes (a wrong out_hw is a wrong `out`)
    plan = _params.conv_params(x_shape[2:], w_shape[2:], stride, padding, dilation)
    # The kernels refuse these too (csrc/common/shapes.cpp); here the message names the cause.
    pixels = plan.out_hw[0] * plan.out_hw[1]
    if max(x_shape[0] * w_shape[0], w_shape[1] * w_shape[2] * w_shape[3]) * pixels > _params.MAX_ELEMENTS:
        raise ValueError(
            f"conv2d output would be {plan.out_hw[0]}x{plan.out_hw[1]} per image and filter: too large "
            f"(more than 2**{_params.MAX_ELEMENTS.bit_length() - 1} elements); check padding={padding!r}, "
            f"stride={stride} and dilation={dilation}"
        )
    return plan


def _ready(a, name: str, ndim: int, layout: str, batch: bool = False) -> np.ndarray:
    """:func:`_array`, with a shortcut for the common case (a usable C-contiguous array, known in a
    few attribute reads). Copies nothing: callers apply :func:`_contiguous` once every argument
    has been checked."""
    if (type(a) is np.ndarray and a.ndim == ndim and a.dtype in _FLOATS and a.flags.c_contiguous
            and a.flags.aligned and a.size):
        return a
    return _array(a, name, ndim, layout, batch)


def _zeros(out, shape: tuple, dtype) -> np.ndarray:
    """The result of an op on an empty batch (or a sum over one): zeros, in ``out`` when given."""
    if out is None:
        return np.zeros(shape, dtype)
    out[...] = 0
    return out


def _usable(a) -> bool:
    return type(a) is np.ndarray and a.flags.c_contiguous and a.flags.aligned


def _arrays(*arrays, optional=()) -> bool:
    """Every one of ``arrays`` (and of ``optional``, unless None) a C-contiguous, aligned
    numpy.ndarray: what the shortcuts require, so that they never copy before the bindings'
    checks."""
    return all(_usable(a) for a in arrays) and all(a is None or _usable(a) for a in optional)


def _output(out, name: str, shape: tuple, dtype) -> np.ndarray | None:
    """``out`` for the bindings, which check it fully (dtype, shape, contiguity, writeable,
    overlap with the inputs) before anything is written; here only what they cannot say well."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape {shape}, got {out.dtype} {out.shape}")
    if not out.flags.writeable:  # the bindings' words; said here too for the empty-batch paths, which fill with NumPy
        raise ValueError(f"{name} is read-only")
    return out


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, *, relu=False, out=None, _plan=None):
    """2-D convolution (cross-correlation) of a batch of images with a bank of filters.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input feature maps, float32 or float64.
    w : ndarray, shape (K, C, R, S)
        K filters of C channels and R x S taps, same dtype as ``x``.
    b : ndarray, shape (K,), optional
        One bias per filter.
    stride, dilation : int or (int, int)
        Step between output pixels, and between kernel taps.
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'
        Zero padding. ``'same'`` follows TensorFlow/Keras: the output has
        ``ceil(H / stride)`` rows, and an odd extra row/column of padding goes
        at the bottom/right.
    relu : bool
        Apply ``max(y, 0)`` in the same pass (NaN kept, -0.0 -> +0.0): the bits of
        ``relu(conv2d(...))`` without a second pass over the output.
    out : ndarray, optional
        Write the result here (C-contiguous, the result's dtype and shape, writeable,
        sharing no memory with ``x``, ``w`` or ``b``) and return it.

    Returns
    -------
    y : ndarray, shape (N, K, OH, OW)
        ``OH = (H + top + bottom - dilation * (R - 1) - 1) // stride + 1``, likewise OW.

    The algorithm that runs is reported by :func:`conv2d_algorithms` and can be
    forced with :func:`force_conv2d_algorithm`.
    """
    if _plan is not None and _arrays(x, w, optional=(b, out)) and x.size and (relu is True or relu is False):
        # A caller that built the plan (the layers, once per image size): the bindings check
        # every array against it (dtype, shapes, contiguity, writeable out, no overlap).
        return _core.conv2d_fwd(x, w, b, _plan.stride, _plan.pads, _plan.dilation, out, relu,
                                _forced_conv_algo.get("fwd"))
    x = _ready(x, "x", 4, "(N, C, H, W)", batch=True)
    w = _ready(w, "w", 4, "(K, C, R, S)")
    if b is not None:
        b = _ready(b, "b", 1, "(K,)")
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b must have shape ({w.shape[0]},), one bias per filter of w, got {b.shape}")
    _same_dtype("x", x, w=w, b=b)
    relu = _flag(relu, "relu")
    plan = _conv_setup(x.shape, w.shape, stride, padding, dilation, _plan)
    out = _output(out, "out", (x.shape[0], w.shape[0], *plan.out_hw), x.dtype)
    if x.shape[0] == 0:  # no images: an empty batch of outputs
        _check_forced_on_empty_batch("fwd", x.shape, w.shape, plan, x.dtype)
        return _zeros(out, (0, w.shape[0], *plan.out_hw), x.dtype)
    x, w, b = _contiguous(x), _contiguous(w), None if b is None else _contiguous(b)
    return _core.conv2d_fwd(x, w, b, plan.stride, plan.pads, plan.dilation, out=out, relu=relu,
                            algorithm=_forced_conv_algo.get("fwd"))


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, *, out=None, _plan=None):
    """Gradient of :func:`conv2d` with respect to its input, alone (PyTorch's ``conv2d_input``).

    Parameters
    ----------
    dy : ndarray, shape (N, K, OH, OW)
        Gradient of the loss with respect to conv2d's output.
    w : ndarray, shape (K, C, R, S)
    x_shape : tuple of 4 ints
        Shape (N, C, H, W) of the forward input.
    stride, padding, dilation
        The arguments of the forward call.
    out : ndarray, optional
        Write ``dx`` here (see :func:`conv2d`'s ``out``; no memory shared with dy or w).

    Returns
    -------
    dx : ndarray, shape ``x_shape``
    """
    if _plan is not None and _arrays(dy, w, optional=(out,)) and dy.size and type(x_shape) is tuple:  # see conv2d
        return _core.conv2d_bwd_data(dy, w, x_shape, _plan.stride, _plan.pads, _plan.dilation, out,
                                     _forced_conv_algo.get("bwd_data"))
    dy = _ready(dy, "dy", 4, "(N, K, OH, OW)", batch=True)
    w = _ready(w, "w", 4, "(K, C, R, S)")
    _same_dtype("dy", dy, w=w)
    x_shape = _shape4(x_shape, "x_shape", batch=True)
    plan = _conv_setup(x_shape, w.shape, stride, padding, dilation, _plan)
    _check_dy(dy, (x_shape[0], w.shape[0], *plan.out_hw))
    out = _output(out, "out", x_shape, dy.dtype)
    if dy.shape[0] == 0:  # no images: nothing flows back
        _check_forced_on_empty_batch("bwd_data", x_shape, w.shape, plan, dy.dtype)
        return _zeros(out, x_shape, dy.dtype)
    dy, w = _contiguous(dy), _contiguous(w)
    return _core.conv2d_bwd_data(dy, w, x_shape, plan.stride, plan.pads, plan.dilation, out=out,
                                 algorithm=_forced_conv_algo.get("bwd_data"))


def conv2d_backward_weights(dy, x, w_shape, stride=1, padding=0, dilation=1, *, need_bias_grad=True, out_w=None,
                            out_b=None, _plan=None):
    """Gradients of :func:`conv2d` with respect to its weights and bias.

    Parameters
    ----------
    dy : ndarray, shape (N, K, OH, OW)
    x : ndarray, shape (N, C, H, W)
        The forward input.
    w_shape : tuple of 4 ints
        Shape (K, C, R, S) of the weights.
    stride, padding, dilation
        The arguments of the forward call.
    need_bias_grad : bool
        Compute ``db``.
    out_w, out_b : ndarray, optional
        Write ``dw`` / ``db`` there (see :func:`conv2d`'s ``out``).

    Returns
    -------
    (dw, db or None)
        Shapes (K, C, R, S) and (K,).
    """
    if (_plan is not None and _arrays(dy, x, optional=(out_w, out_b)) and dy.size and type(w_shape) is tuple
            and (need_bias_grad is True or need_bias_grad is False)):  # see conv2d
        return _core.conv2d_bwd_weights(dy, x, w_shape, _plan.stride, _plan.pads, _plan.dilation, need_bias_grad,
                                        out_w, out_b, _forced_conv_algo.get("bwd_weights"))
    dy = _ready(dy, "dy", 4, "(N, K, OH, OW)", batch=True)
    x = _ready(x, "x", 4, "(N, C, H, W)", batch=True)
    _same_dtype("x", x, dy=dy)
    need_bias_grad = _flag(need_bias_grad, "need_bias_grad")
    w_shape = _shape4(w_shape, "w_shape")
    plan = _conv_setup(x.shape, w_shape, stride, padding, dilation, _plan)
    _check_dy(dy, (x.shape[0], w_shape[0], *plan.out_hw))
    out_w = _output(out_w, "out_w", w_shape, x.dtype)
    out_b = _output(out_b, "out_b", (w_shape[0],), x.dtype) if need_bias_grad else None
    if x.shape[0] == 0:  # no images: the gradients are sums over nothing
        _check_forced_on_empty_batch("bwd_weights", x.shape, w_shape, plan, x.dtype)
        return _zeros(out_w, w_shape, x.dtype), _zeros(out_b, (w_shape[0],), x.dtype) if need_bias_grad else None
    dy, x = _contiguous(dy), _contiguous(x)
    return _core.conv2d_bwd_weights(dy, x, w_shape, plan.stride, plan.pads, plan.dilation, need_bias_grad,
                                    out_w=out_w, out_b=out_b, algorithm=_forced_conv_algo.get("bwd_weights"))


def _check_dy(dy, expected) -> None:
    if dy.shape != expected:
        raise ValueError(f"dy must have the shape of conv2d's output {expected}, got {dy.shape}")


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, need_input_grad=True, need_bias_grad=True,
                    need_weight_grad=True):
    """Gradients of :func:`conv2d` with respect to its input, weights and bias.

    :func:`conv2d_backward_data` and :func:`conv2d_backward_weights` in one call.

    Parameters
    ----------
    dy : ndarray, shape (N, K, OH, OW)
        Gradient of the loss with respect to conv2d's output.
    x, w, stride, padding, dilation
        The arguments of the forward call.
    need_input_grad : bool
        Compute ``dx``. The first layer of a network never needs it; then no
        input-gradient work is done at all.
    need_bias_grad : bool
        Compute ``db`` (only with ``need_weight_grad``).
    need_weight_grad : bool
        Compute ``dw`` (and ``db``). False for a frozen layer, or an input-gradient
        saliency map: then only ``dx`` is computed, at ``dx``-alone cost.

    Returns
    -------
    (dx or None, dw or None, db or None)
        Shapes (N, C, H, W), (K, C, R, S), (K,).
    """
    dy = _array(dy, "dy", 4, "(N, K, OH, OW)", batch=True)
    x = _array(x, "x", 4, "(N, C, H, W)", batch=True)
    w = _array(w, "w", 4, "(K, C, R, S)")
    _same_dtype("x", x, w=w, dy=dy)
    need_input_grad = _flag(need_input_grad, "need_input_grad")
    need_bias_grad = _flag(need_bias_grad, "need_bias_grad")
    need_weight_grad = _flag(need_weight_grad, "need_weight_grad")
    plan = _conv_setup(x.shape, w.shape, stride, padding, dilation)
    _check_dy(dy, (x.shape[0], w.shape[0], *plan.out_hw))
    dy = _contiguous(dy)
    dx = dw = db = None
    if need_input_grad:
        dx = conv2d_backward_data(dy, _contiguous(w), x.shape, _plan=plan)
    if need_weight_grad:
        dw, db = conv2d_backward_weights(dy, _contiguous(x), w.shape, need_bias_grad=need_bias_grad, _plan=plan)
    return dx, dw, db


def _dense_check(x_features: int, w) -> None:
    if x_features != w.shape[0]:
        raise ValueError(f"x has {x_features} features but w expects {w.shape[0]} (w has shape {w.shape} = "
                         "(in_features, units))")


def dense(x, w, b=None, *, out=None):
    """Fully connected layer without its activation: ``x @ w + b``, Keras's ``Dense``.

    Parameters
    ----------
    x : ndarray, shape (N, I)
        A batch of N feature vectors (flatten feature maps first), float32 or float64.
    w : ndarray, shape (I, U)
        Keras's kernel layout ``(in_features, units)``, same dtype as ``x``.
    b : ndarray, shape (U,), optional
        One bias per unit.
    out : ndarray, optional
        Write the result here (C-contiguous, the result's dtype and shape, writeable,
        sharing no memory with the inputs) and return it.

    Returns
    -------
    y : ndarray, shape (N, U)
    """
    x = _ready(x, "x", 2, "(batch, in_features)", batch=True)
    w = _ready(w, "w", 2, "(in_features, units)")
    _dense_check(x.shape[1], w)
    if b is not None:
        b = _ready(b, "b", 1, "(units,)")
        if b.shape[0] != w.shape[1]:
            raise ValueError(f"b must have shape ({w.shape[1]},), one bias per unit of w, got {b.shape}")
    _same_dtype("x", x, w=w, b=b)
    out = _output(out, "out", (x.shape[0], w.shape[1]), x.dtype)
    if x.shape[0] == 0:  # an empty batch
        return _zeros(out, (0, w.shape[1]), x.dtype)
    x, w, b = _contiguous(x), _contiguous(w), None if b is None else _contiguous(b)
    return _core.dense_fwd(x, w, b, out)


def dense_backward_data(dy, w, *, out=None):
    """Gradient of :func:`dense` with respect to its input: ``dy @ w.T``, shape (N, I)."""
    dy = _ready(dy, "dy", 2, "(batch, units)", batch=True)
    w = _ready(w, "w", 2, "(in_features, units)")
    _same_dtype("dy", dy, w=w)
    if dy.shape[1] != w.shape[1]:
        raise ValueError(f"dy has {dy.shape[1]} units but w has {w.shape[1]} (w has shape {w.shape} = "
                         "(in_features, units))")
    out = _output(out, "out", (dy.shape[0], w.shape[0]), dy.dtype)
    if dy.shape[0] == 0:  # an empty batch
        return _zeros(out, (0, w.shape[0]), dy.dtype)
    return _core.dense_bwd_data(_contiguous(dy), _contiguous(w), out)


def dense_backward_weights(dy, x, *, need_bias_grad=True, out_w=None, out_b=None):
    """Gradients of :func:`dense` with respect to its weights and bias: ``(x.T @ dy, dy.sum(0) or None)``."""
    dy = _ready(dy, "dy", 2, "(batch, units)", batch=True)
    x = _ready(x, "x", 2, "(batch, in_features)", batch=True)
    _same_dtype("x", x, dy=dy)
    need_bias_grad = _flag(need_bias_grad, "need_bias_grad")
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"dy must have the shape of dense's output (batch, units) with batch {x.shape[0]} as in x, "
                         f"got {dy.shape}")
    out_w = _output(out_w, "out_w", (x.shape[1], dy.shape[1]), x.dtype)
    out_b = _output(out_b, "out_b", (dy.shape[1],), x.dtype) if need_bias_grad else None
    if x.shape[0] == 0:  # an empty batch: the gradients are sums over nothing
        return _zeros(out_w, (x.shape[1], dy.shape[1]), x.dtype), _zeros(out_b, (dy.shape[1],), x.dtype) if need_bias_grad else None
    return _core.dense_bwd_weights(_contiguous(dy), _contiguous(x), need_bias_grad, out_w, out_b)


def dense_backward(dy, x, w, need_input_grad=True, need_bias_grad=True, need_weight_grad=True):
    """Gradients of :func:`dense` with respect to its input, weights and bias.

    Parameters
    ----------
    dy : ndarray, shape (N, U)
        Gradient of the loss with respect to dense's output.
    x, w
        The arguments of the forward call.
    need_input_grad, need_bias_grad : bool
        Compute ``dx`` / ``db``.
    need_weight_grad : bool
        Compute ``dw`` (and ``db``); False computes ``dx`` alone (a frozen layer).

    Returns
    -------
    (dx or None, dw or None, db or None)
        Shapes (N, I), (I, U), (U,).
    """
    dy = _array(dy, "dy", 2, "(batch, units)", batch=True)
    x = _array(x, "x", 2, "(batch, in_features)", batch=True)
    w = _array(w, "w", 2, "(in_features, units)")
    _same_dtype("x", x, w=w, dy=dy)
    need_input_grad = _flag(need_input_grad, "need_input_grad")
    need_bias_grad = _flag(need_bias_grad, "need_bias_grad")
    need_weight_grad = _flag(need_weight_grad, "need_weight_grad")
    _dense_check(x.shape[1], w)
    expected = (x.shape[0], w.shape[1])
    if dy.shape != expected:
        raise ValueError(f"dy must have the shape of dense's output {expected}, got {dy.shape}")
    dy = _contiguous(dy)
    dx = dense_backward_data(dy, _contiguous(w)) if need_input_grad else None
    dw = db = None
    if need_weight_grad:
        dw, db = dense_backward_weights(dy, _contiguous(x), need_bias_grad=need_bias_grad)
    return dx, dw, db


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False, *, out=None,
               out_indices=None, _plan=None):
    """Max-pooling over each feature map, PyTorch's rules.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or (int, int)
        Window size, e.g. 2 for the classic 2x2 pooling.
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)
        Implicit -inf padding on both sides, at most half the window.
    ceil_mode : bool
        Round the output size up, so that a partial last window is kept.
    return_indices : bool
        Also return the argmax of each window.
    out, out_indices : ndarray, optional
        Write ``y`` / the indices (int64) there (C-contiguous, the result's shape,
        writeable, sharing no memory with ``x`` or each other).

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
    indices : ndarray of int64, shape (N, C, OH, OW), with ``return_indices``
        Position ``h * W + w`` of each maximum within its input feature map.

    Notes
    -----
    Ties go to the first maximum in row-major window order. NaN propagates: a
    window holding a NaN has NaN as its maximum, and its index is the first
    NaN. An index always points at a real input element, never at padding.
    """
    x = _ready(x, "x", 4, "(N, C, H, W)", batch=True)
    return_indices = _flag(return_indices, "return_indices")
    plan = _plan or _params.pool_params(x.shape[2:], kernel_size, stride, padding, ceil_mode)
    shape = (*x.shape[:2], *plan.out_hw)
    out = _output(out, "out", shape, x.dtype)
    if out_indices is not None and not return_indices:
        raise ValueError("out_indices is given but return_indices is False")
    if out_indices is not None and not isinstance(out_indices, np.ndarray):
        raise TypeError(f"out_indices must be a numpy.ndarray or None, got {type(out_indices).__name__}")
    if x.shape[0] == 0:  # an empty batch
        y = _zeros(out, shape, x.dtype)
        return (y, _zeros(_output(out_indices, "out_indices", shape, np.int64), shape, np.int64)) if return_indices else y
    return _core.maxpool2d_fwd(_contiguous(x), plan.kernel, plan.stride, plan.pad, plan.out_hw, return_indices, out,
                               out_indices)


def max_pool2d_backward(dy, indices, input_shape, *, out=None, gate=None):
    """Gradient of :func:`max_pool2d`: ``dy`` routed back to each window's maximum.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW)
    indices : ndarray of int64, shape (N, C, OH, OW)
        As returned by ``max_pool2d(..., return_indices=True)``.
    input_shape : tuple of 4 ints
        Shape (N, C, H, W) of the forward input.
    out : ndarray, optional
        Write ``dx`` here (C-contiguous, writeable, no memory shared with the inputs).
    gate : ndarray of ``input_shape``, optional
        The pool's input as a ReLU produced it: ``dx`` only where ``gate > 0``, i.e.
        that ReLU's backward applied in the same pass (bit-identical to
        ``relu_backward(max_pool2d_backward(...), gate)``).

    Returns
    -------
    dx : ndarray, shape ``input_shape``
        Overlapping windows add their contributions.
    """
    dy = _ready(dy, "dy", 4, "(N, C, OH, OW)", batch=True)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64 as returned by max_pool2d, got {indices.dtype}")
    if indices.shape != dy.shape:
        raise ValueError(f"indices must have the shape of dy {dy.shape}, got {indices.shape}")
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in input_shape
    ):
        raise TypeError(f"input_shape must be a tuple of 4 ints (N, C, H, W), got {input_shape!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or input_shape[:2] != dy.shape[:2] or min(input_shape[1:]) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) with N, C = {dy.shape[:2]} of dy, got {input_shape}")
    if max(input_shape) > _params.MAX_PARAM or math.prod(input_shape) > _params.MAX_ELEMENTS:
        raise ValueError(
            f"input_shape {input_shape} is too large: at most {_params.MAX_PARAM} per dimension "
            f"and 2**{_params.MAX_ELEMENTS.bit_length() - 1} elements"
        )
    if gate is not None:
        gate = _ready(gate, "gate", 4, "(N, C, H, W)", batch=True)
        _same_dtype("dy", dy, gate=gate)
        if gate.shape != input_shape:  # the bindings say so too, but an empty batch never reaches them
            raise ValueError(f"gate must have the input's shape {input_shape}, got {gate.shape}")
    out = _output(out, "out", input_shape, dy.dtype)
    if dy.shape[0] == 0:  # an empty batch
        return _zeros(out, input_shape, dy.dtype)
    indices = indices if indices.flags.c_contiguous and indices.flags.aligned else indices.copy(order="C")
    gate = None if gate is None else _contiguous(gate)
    return _core.maxpool2d_bwd(_contiguous(dy), indices, input_shape, out, gate)


def softmax(x):
    """Softmax of each row of a ``(batch, classes)`` array: ``exp(x - max) / sum``.

    The sum is accumulated in float64. A row holding a NaN (or an infinite maximum) comes out
    all NaN, as NumPy's max-shifted formula gives. Returns a new array of x's dtype.
    """
    x = _array(x, "x", 2, "(batch, classes)", batch=True)
    if x.shape[0] == 0:
        return np.zeros(x.shape, x.dtype)
    return _core.softmax_fwd(_contiguous(x))


def inference_plan(dtype):
    """A new, empty compiled inference pass of ``dtype`` (``_core.InferencePlan``, csrc/plan/):
    :mod:`convforge.models.compiled` adds a model's steps to it as ops, then runs it with
    :func:`run_inference_plan`. Private to convforge's models; here so that models reach the
    compiled code through this module, as layers do."""
    return _core.InferencePlan(np.dtype(dtype).name)


def inference_plan_sources_unchanged(weights, settings) -> bool:
    """Whether ``holder.get(name) is array`` for every ``(holder, name, array)`` of ``weights``
    and ``getattr(obj, name) is value`` for every ``(obj, name, value)`` of ``settings``: the
    check :meth:`convforge.models.compiled.CompiledInference.current` makes before each run, in C
    (``_core.objects_unchanged``: in Python it was 4.6 us of a one-image ResNet predict)."""
    return _core.objects_unchanged(weights, settings)


# Counts one change of a layer's attributes or weights dict (a C function, no wrapper: Layer's
# __setattr__ calls it on every attribute set). ``ready_predict``'s callers repeat their check of
# the model's objects only after the count moved. Private to convforge's layers (layers/base.py).
note_layer_change = _core.note_layer_change


def run_inference_plan(plan, inputs) -> list:
    """``plan``'s outputs for a batch of ``inputs`` (one array per model input, internal layout),
    its convolutions under the forward algorithm :func:`force_conv2d_algorithm` forces, if any."""
    return plan.run(inputs, _forced_conv_algo.get("fwd"))


def ready_predict(plan, weights, settings, shapes, tracked=False):
    """``plan`` run by one C++ call that first checks what predict's Python path would
    (``_core.ReadyPredict``: the input a NumPy array of the plan's dtype, C-contiguous, of one of
    the per-sample ``shapes``, at most ``batch_size`` samples; ``weights`` and ``settings`` as
    :func:`inference_plan_sources_unchanged` takes them) and returns None where a check fails;
    the forward algorithm :func:`force_conv2d_algorithm` forces, if any, is read at each call.
    ``tracked``: every holder of ``weights`` and ``settings`` counts its changes (layers/base.py),
    and they are checked again only after one. Private to convforge's models
    (:class:`convforge.models.compiled.CompiledInference`)."""
    return _core.ReadyPredict(plan, weights, settings, _forced_conv_algo, [list(s) for s in shapes], bool(tracked))


def profile_inference_plan(plan, inputs, runs: int = 100, per_thread: bool = False) -> np.ndarray:
    """Each op's mean wall time in seconds over ``runs`` runs of ``plan`` on ``inputs`` (as
    :func:`run_inference_plan`; one entry per line of ``plan.describe()``), for
    ``bench/plan_profile.py``. A batch of several chunks (``plan.chunk_samples``) runs them one
    after another here, each op on all threads, and each op's time is its sum over them.

    ``per_thread=True``: an ``(ops, 1 + threads)`` array, each op's time and then the time each
    thread spent in the op's parallel loops (thread 0 the calling one; zeros where the op ran
    without the thread team, as on one thread, or ran its loops on one thread): how evenly, and
    how fast, the threads did their parts. Its clock reads add ~0.1 us a loop."""
    return plan.profile(inputs, runs, _forced_conv_algo.get("fwd"), bool(per_thread))


def relu(x, out=None):
    """Rectified linear unit, ``max(x, 0)`` elementwise.

    NaN propagates (``relu(nan)`` is NaN) and ``relu(-0.0)`` is ``+0.0``.
    With ``out=x`` the operation is done in place.
    """
    if out is x and type(x) is np.ndarray and x.flags.c_contiguous and x.size:  # in place (the layers)
        return _core.relu_fwd(x, x)  # the bindings check x (dtype, alignment, writeable)
    x_in = _array(x, "x", batch=True)
    if out is None:
        if x_in.size == 0:  # an empty batch
            return np.zeros(x_in.shape, x_in.dtype)
        return _core.relu_fwd(_contiguous(x_in))
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != x_in.shape or out.dtype != x_in.dtype:
        raise ValueError(f"out must be a {x_in.dtype} array of shape {x_in.shape}, got {out.dtype} {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if x_in.size == 0:
        return out
    x = _contiguous(x_in)
    if out.flags.c_contiguous and out.flags.aligned and (out is x or not np.shares_memory(out, x_in)):
        return _core.relu_fwd(x, out)
    # A strided or overlapping out: compute aside, then copy in.
    out[...] = _core.relu_fwd(x)
    return out


def gelu(x):
    """GELU's exact form ``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` elementwise, on
    threads: Keras's ``gelu``. float32 is evaluated in double (SIMD, within 0.51 ulp of the
    exact value, the same bits on every ISA); float64, for gradient checks, with the C
    library's erf (``math.erf``'s), each operation of that expression rounded as NumPy does."""
    x_in = _array(x, "x", batch=True)
    if x_in.size == 0:
        return np.zeros(x_in.shape, x_in.dtype)
    return _core.gelu_fwd(_contiguous(x_in))


def gelu_backward(dy, x):
    """Gradient of :func:`gelu`: ``dy * (Phi(x) + x * phi(x))``, ``phi`` the normal density;
    float32 evaluated in double as :func:`gelu`, float64 with the C library's erf."""
    dy = _array(dy, "dy", batch=True)
    x = _array(x, "x", batch=True)
    _same_dtype("x", x, dy=dy)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    if x.size == 0:
        return np.zeros(x.shape, x.dtype)
    return _core.gelu_bwd(_contiguous(dy), _contiguous(x))


def erf(x):
    """The C library's erf of each value (``math.erf``'s), in float64, on threads."""
    x_in = _array(x, "x", batch=True)
    if x_in.size == 0:
        return np.zeros(x_in.shape, np.float64)
    return _core.erf(_contiguous(x_in))


def add(a, b, *, out=None, relu=False, gate=None):
    """``a + b`` elementwise, on the library's threads (NumPy's add runs on one): the residual sums
    and fan-out gradient sums of a training step. ``relu=True``: ``relu(a + b)`` in the same pass
    (NaN propagates, ``-0.0`` becomes ``+0.0``, as :func:`relu`). ``gate`` (an array of the same
    shape): ``a + b`` where ``gate > 0``, else 0, i.e. ``relu_backward(a + b, gate)`` in one pass
    (a gradient summed over two readers and passed back through a ReLU whose output is ``gate``).

    ``a``, ``b`` (and ``gate``) must have one shape and one float dtype (no broadcasting). ``out``
    (optional) receives the result: C-contiguous, writeable, and either an input itself or
    sharing no memory with them.
    """
    relu = _flag(relu, "relu")
    if relu and gate is not None:
        raise ValueError("add takes relu=True or a gate, not both")
    if (_arrays(a, b, optional=(out, gate)) and a.shape == b.shape and a.dtype in _FLOATS and b.dtype == a.dtype
            and a.size and (out is None or (out.shape == a.shape and out.dtype == a.dtype))
            and (gate is None or (gate.shape == a.shape and gate.dtype == a.dtype))):
        return _core.add(a, b, out, relu, gate)  # the binding checks contiguity, alignment and out= itself
    a = _array(a, "a", batch=True)
    b = _array(b, "b", batch=True)
    _same_dtype("a", a, b=b)
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a {a.shape}, got {b.shape}")
    if gate is not None:
        gate = _array(gate, "gate", batch=True)
        _same_dtype("a", a, gate=gate)
        if gate.shape != a.shape:
            raise ValueError(f"gate must have the shape of a {a.shape}, got {gate.shape}")
    out = _output(out, "out", a.shape, a.dtype)
    if out is not None and not out.flags.writeable:
        raise ValueError("out is read-only")
    # Strided arrays (a Concatenate's gradient slices), an empty batch, a strided out: NumPy's
    # add, which walks any strides without a copy, then the ReLU or the gate on the sum.
    if not relu and gate is None:
        return np.add(a, b, out=out)
    y = np.add(a, b)
    if y.size:
        if relu:
            _core.relu_fwd(y, y)
        else:
            _core.relu_bwd(y, _contiguous(gate), y)
    if out is None:
        return y
    out[...] = y
    return out


def relu_backward(dy, x, *, out=None):
    """Gradient of :func:`relu`: ``dy`` where ``x > 0``, else 0 (0 at 0 and at NaN).

    ``out`` (optional) receives the result: C-contiguous, writeable, and either
    ``dy`` or ``x`` itself or sharing no memory with them.
    """
    if (_arrays(dy, x, optional=(out,)) and dy.shape == x.shape and dy.dtype in _FLOATS and x.dtype == dy.dtype and dy.size
            and (out is None or (out.shape == x.shape and out.dtype == x.dtype))):
        # Arrays of one shape: the bindings check the rest (dtype, contiguity, out=) with the
        # same messages; skipping _array's checks here saves a few us per call.
        return _core.relu_bwd(dy, x, out)
    dy = _array(dy, "dy", batch=True)
    x = _array(x, "x", batch=True)
    _same_dtype("x", x, dy=dy)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    out = _output(out, "out", x.shape, x.dtype)
    if x.size == 0:  # an empty batch
        return _zeros(out, x.shape, x.dtype)
    return _core.relu_bwd(_contiguous(dy), _contiguous(x), out)


def first_non_finite(arrays) -> int:
    """Index of the first of ``arrays`` holding a NaN or an infinity, -1 if none.

    One kernel pass over all of them when they are C-contiguous float32/float64 arrays (``fit``
    checks each step's gradients and updated weights this way: one call for the whole model);
    anything else (a custom layer's non-contiguous or float16 gradient) is checked with NumPy.
    """
    try:
        return _core.first_non_finite(arrays)
    except (TypeError, ValueError):
        for i, a in enumerate(arrays):
            a = np.asarray(a)
            # A complex array's min/max compare (and math.isfinite casts) the real parts only: an
            # infinite or NaN imaginary part went unseen; its two parts are checked apart.
            for part in (a.real, a.imag) if a.dtype.kind == "c" else (a,):
                if part.size and not (math.isfinite(part.min()) and math.isfinite(part.max())):  # NaN wins min and max
                    return i
        return -1


# =================================================================================================
# Per-channel ops: batch normalisation, global pooling, depthwise conv2d (ResNet/MobileNet layers).
# ``out=`` arguments take arrays to write into (checked: dtype, shape, contiguity); the layers pass
# buffers they reuse from one training step to the next.
# =================================================================================================

__all__ += [
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
]


def _eps(eps) -> float:
    try:
        value = None if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real) else float(eps)
    except OverflowError:  # an int or Fraction beyond float's range: float() raises, not inf
        value = math.inf
    if value is None or not (0 < value < math.inf):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    return value


def _channel_vectors(x: np.ndarray, **vectors) -> dict:
    """Per-channel (C,) vectors of x's dtype, checked and made contiguous; None passes through."""
    out = {}
    for name, v in vectors.items():
        if v is not None:
            v = _array(v, name, 1, "(C,)")
            if v.shape[0] != x.shape[1]:
                raise ValueError(f"{name} must have shape ({x.shape[1]},), one value per channel of x, got {v.shape}")
            _same_dtype("x", x, **{name: v})
            v = _contiguous(v)
        out[name] = v
    return out


def _bn_input(x, name="x") -> np.ndarray:
    x = _array(x, name, batch=True)
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (N, C, ...) with channels on axis 1, got shape {x.shape}")
    return x


def batch_norm(x, gamma=None, beta=None, eps=1e-3, *, out=None, out_mean=None, out_var=None, relu=False):
    """Batch normalisation with the batch's own statistics (training mode).

    Parameters
    ----------
    x : ndarray, shape (N, C, ...) -- (N, C, H, W) images or (N, C) features
        Normalised per channel (axis 1) over every other axis.
    gamma, beta : ndarray, shape (C,), optional
        Scale and shift (None: 1 and 0).
    eps : float
        Added to the variance (Keras's default 1e-3; PyTorch's is 1e-5).
    relu : bool
        Return ``max(y, 0)`` instead (the ReLU after the layer, in the same pass; bit-identical
        to ``relu(y)``). Its backward is ``batch_norm_backward(..., beta=beta, relu=True)``.

    Returns
    -------
    (y, mean, var)
        ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, the batch mean and
        the biased (population) variance per channel, as Keras uses to update
        its moving variance. The sums are accumulated in double, the squared
        deviations taken from each image's row mean and the rows combined exactly
        (rows of fewer than 256 values: from the channel's mean, in a second
        pass), never E[x^2] - E[x]^2, so float32 batches of any size keep
        float32 accuracy. An empty batch (N = 0) gives an empty ``y``
        and NaN statistics (the mean of nothing, as ``np.mean``), which a caller
        must not fold into moving statistics.
    """
    x = _bn_input(x)
    v = _channel_vectors(x, gamma=gamma, beta=beta)
    eps = _eps(eps)
    relu = _flag(relu, "relu")
    if x.shape[0] == 0:  # no images: an empty result and undefined (NaN) batch statistics
        channels = (x.shape[1],)
        y = _zeros(_output(out, "out", x.shape, x.dtype), x.shape, x.dtype)
        stats = [_output(o, name, channels, x.dtype) for o, name in ((out_mean, "out_mean"), (out_var, "out_var"))]
        stats = [np.full(channels, np.nan, x.dtype) if o is None else o for o in stats]
        for o in stats:
            o[...] = np.nan
        return y, stats[0], stats[1]
    return _core.batchnorm_fwd_training(_contiguous(x), v["gamma"], v["beta"], eps, out, out_mean, out_var, relu)


def batch_norm_inference(x, mean, var, gamma=None, beta=None, eps=1e-3, *, out=None):
    """Batch normalisation with given statistics (inference): ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    ``out=x`` normalises in place.
    """
    x = _bn_input(x)
    if mean is None or var is None:
        raise TypeError("mean and var are required: the moving statistics, arrays of shape (C,)")
    v = _channel_vectors(x, mean=mean, var=var, gamma=gamma, beta=beta)
    eps = _eps(eps)
    if x.shape[0] == 0:  # no images: an empty batch of outputs
        return _zeros(_output(out, "out", x.shape, x.dtype), x.shape, x.dtype)
    return _core.batchnorm_fwd_inference(_contiguous(x), v["mean"], v["var"], v["gamma"], v["beta"], eps, out)


def batch_norm_backward(dy, x, mean, var, gamma=None, eps=1e-3, need_input_grad=True, *, out=None,
                        out_gamma=None, out_beta=None, beta=None, relu=False):
    """Gradients of :func:`batch_norm` (training mode, where mean and var depend on x).

    Parameters
    ----------
    dy, x : ndarray, shape (N, C, ...)
    mean, var : ndarray, shape (C,)
        The batch statistics :func:`batch_norm` returned.
    gamma, eps
        As given to :func:`batch_norm`.
    beta, relu
        With ``relu=True``, the backward of ``batch_norm(x, gamma, beta, eps, relu=True)``
        (pass the same ``beta``): ``dy`` is the gradient of the ReLU's output and passes where
        the normalised value was > 0, recomputed from ``x`` exactly as the forward computed it
        (the ReLU's backward in the same passes, with no extra array read; bit-identical to
        ``batch_norm_backward(relu_backward(dy, y), ...)`` with ``y`` the forward's output).

    out : ndarray, optional
        Receives dx; may be ``dy`` itself (every sum is taken before dx is written): a training
        step whose dy nothing else reads saves the stream that writing a fresh array costs.

    Returns
    -------
    (dx or None, dgamma, dbeta)
        ``dgamma``/``dbeta`` are returned even when gamma/beta were None.
    """
    dy = _bn_input(dy, "dy")
    x = _bn_input(x)
    _same_dtype("x", x, dy=dy)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    if mean is None or var is None:
        raise TypeError("mean and var are required: the batch statistics batch_norm returned")
    v = _channel_vectors(x, mean=mean, var=var, gamma=gamma, beta=beta)
    relu = _flag(relu, "relu")
    need_input_grad = _flag(need_input_grad, "need_input_grad")
    eps = _eps(eps)
    if x.shape[0] == 0:  # no images: an empty dx; dgamma and dbeta are sums over nothing
        channels = (x.shape[1],)
        dx = _zeros(_output(out, "out", x.shape, x.dtype), x.shape, x.dtype) if need_input_grad else None
        return (dx, _zeros(_output(out_gamma, "out_gamma", channels, x.dtype), channels, x.dtype),
                _zeros(_output(out_beta, "out_beta", channels, x.dtype), channels, x.dtype))
    return _core.batchnorm_bwd(_contiguous(dy), _contiguous(x), v["mean"], v["var"], v["gamma"], eps,
                               need_input_grad, out, out_gamma, out_beta, v["beta"], relu)


def _global_pool_input_shape(input_shape, dy: np.ndarray) -> tuple:
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in input_shape
    ):
        raise TypeError(f"input_shape must be a tuple of 4 ints (N, C, H, W), got {input_shape!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or input_shape[:2] != dy.shape or min(input_shape[1:]) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) with N, C = {dy.shape} of dy, got {input_shape}")
    if max(input_shape) > _params.MAX_PARAM or math.prod(input_shape) > _params.MAX_ELEMENTS:
        raise ValueError(f"input_shape {input_shape} is too large")
    return input_shape


def global_avg_pool2d(x, *, out=None):
    """Mean of each feature map: x ``(N, C, H, W)`` -> ``(N, C)`` (summed in double)."""
    x = _array(x, "x", 4, "(N, C, H, W)", batch=True)
    if x.shape[0] == 0:  # no images: an empty batch of outputs
        return _zeros(_output(out, "out", x.shape[:2], x.dtype), x.shape[:2], x.dtype)
    return _core.global_avg_pool2d_fwd(_contiguous(x), out)


def global_avg_pool2d_backward(dy, input_shape, *, out=None):
    """Gradient of :func:`global_avg_pool2d`: ``dy[n, c] / (H * W)`` over each map."""
    dy = _array(dy, "dy", 2, "(N, C)", batch=True)
    input_shape = _global_pool_input_shape(input_shape, dy)
    if dy.shape[0] == 0:  # no images
        return _zeros(_output(out, "out", input_shape, dy.dtype), input_shape, dy.dtype)
    return _core.global_avg_pool2d_bwd(_contiguous(dy), input_shape, out)


def global_max_pool2d(x, return_indices=False, *, out=None, out_indices=None):
    """Maximum of each feature map: x ``(N, C, H, W)`` -> ``(N, C)``, and with ``return_indices``
    its position ``h * W + w`` (int64).

    The first maximum wins ties; a map holding a NaN has NaN as its maximum (as :func:`max_pool2d`).
    """
    x = _array(x, "x", 4, "(N, C, H, W)", batch=True)
    return_indices = _flag(return_indices, "return_indices")
    if out_indices is not None and not return_indices:  # as max_pool2d: never silently left unwritten
        raise ValueError("out_indices is given but return_indices is False")
    if x.shape[0] == 0:  # no images: an empty batch of outputs
        shape = x.shape[:2]
        y = _zeros(_output(out, "out", shape, x.dtype), shape, x.dtype)
        if not return_indices:
            return y
        return y, _zeros(_output(out_indices, "out_indices", shape, np.int64), shape, np.int64)
    return _core.global_max_pool2d_fwd(_contiguous(x), return_indices, out, out_indices)


def global_max_pool2d_backward(dy, indices, input_shape, *, out=None):
    """Gradient of :func:`global_max_pool2d`: ``dy[n, c]`` at each map's maximum, 0 elsewhere.

    Unlike TensorFlow, which splits the gradient between tied maxima, it all goes to the first.
    """
    dy = _array(dy, "dy", 2, "(N, C)", batch=True)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64 as returned by global_max_pool2d, got {indices.dtype}")
    if indices.shape != dy.shape:
        raise ValueError(f"indices must have the shape of dy {dy.shape}, got {indices.shape}")
    input_shape = _global_pool_input_shape(input_shape, dy)
    if dy.shape[0] == 0:  # no images
        return _zeros(_output(out, "out", input_shape, dy.dtype), input_shape, dy.dtype)
    indices = indices if indices.flags.c_contiguous and indices.flags.aligned else indices.copy(order="C")
    return _core.global_max_pool2d_bwd(_contiguous(dy), indices, input_shape, out)


def _depthwise_setup(x_shape, w_shape, stride, padding, dilation):
    if w_shape[1] != 1 or w_shape[0] % x_shape[1] != 0:
        raise ValueError(
            f"w must have shape (C * depth_multiplier, 1, KH, KW) with C = {x_shape[1]} channels of x, got {w_shape}"
        )
    stride, pads, dilation, out_hw = _params.conv_params(x_shape[2:], w_shape[2:], stride, padding, dilation)
    if x_shape[0] * w_shape[0] * out_hw[0] * out_hw[1] > _params.MAX_ELEMENTS:
        raise ValueError(f"depthwise_conv2d output would be {out_hw[0]}x{out_hw[1]} per image and filter: too large")
    return stride, pads, dilation, out_hw


def _taps_in_padding(size: int, out_size: int, kernel: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """``(kernel, out_size)`` booleans: whether tap k of output position o reads zero padding
    along one axis (input position ``o * stride + k * dilation - pad`` outside ``[0, size)``)."""
    pos = np.arange(out_size)[None, :] * stride + np.arange(kernel)[:, None] * dilation - pad
    return (pos < 0) | (pos >= size)


def _depthwise_padding_products(x_hw, w, dy_or_none, stride, pads, dilation, out_hw, result, forward: bool,
                                db=None):
    """The products of zero padding with a non-finite weight (forward) or gradient (weights'
    backward): the depthwise kernels skip the padded taps, but 0 * inf and 0 * NaN are NaN, which
    conv2d (and the float64 oracle, one conv2d per channel) keep. NaN is written where they land;
    nothing is done when every value is finite or there is no padding. The check is a pass over
    w, or for the backward the bias gradient ``db`` where it was computed: a channel's sum of dy
    is finite wherever its dy is (a pass over dy, a whole feature map, only where it is not)."""
    if not any(pads):
        return
    if forward:
        if _core.first_non_finite([w]) < 0:
            return
    elif (db is not None and bool(np.isfinite(db).all())) or _core.first_non_finite([dy_or_none]) < 0:
        return
    rows = _taps_in_padding(x_hw[0], out_hw[0], w.shape[2], stride[0], pads[0], dilation[0])  # (KH, OH)
    cols = _taps_in_padding(x_hw[1], out_hw[1], w.shape[3], stride[1], pads[2], dilation[1])  # (KW, OW)

    def padded(r, s):  # (OH, OW): the outputs whose tap (r, s) reads padding (one plane at a time)
        return rows[r][:, None] | cols[s][None, :]

    if forward:  # y[:, k, oh, ow] is NaN if a non-finite w[k, 0, r, s] meets padding there
        for k, r, s in zip(*np.nonzero(~np.isfinite(w[:, 0]))):
            result[:, k][:, padded(r, s)] = np.nan
    else:  # dw[k, 0, r, s] is NaN if a non-finite dy[:, k] lies where tap (r, s) reads padding
        bad = (~np.isfinite(dy_or_none)).any(axis=0)  # (K, OH, OW)
        for k in np.flatnonzero(bad.any(axis=(1, 2))):
            for r in range(w.shape[2]):
                for s in range(w.shape[3]):
                    if (padded(r, s) & bad[k]).any():
                        result[k, 0, r, s] = np.nan


def depthwise_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, *, out=None):
    """Depthwise 2-D convolution: each input channel with its own ``depth_multiplier`` filters.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (C * M, 1, KH, KW)
        PyTorch's ``groups=C`` layout; output channel ``c * M + m`` is input
        channel c convolved with ``w[c * M + m, 0]`` (Keras's order too: its
        ``depthwise_kernel`` ``(KH, KW, C, M)`` is ``w.reshape(C, M, KH, KW).transpose(2, 3, 0, 1)``).
    b : ndarray, shape (C * M,), optional
    stride, padding, dilation
        As :func:`conv2d`.

    Returns
    -------
    y : ndarray, shape (N, C * M, OH, OW)
    """
    x = _array(x, "x", 4, "(N, C, H, W)", batch=True)
    w = _array(w, "w", 4, "(C * M, 1, KH, KW)")
    if b is not None:
        b = _array(b, "b", 1, "(C * M,)")
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b must have shape ({w.shape[0]},), one bias per filter of w, got {b.shape}")
    _same_dtype("x", x, w=w, b=b)
    stride, pads, dilation, out_hw = _depthwise_setup(x.shape, w.shape, stride, padding, dilation)
    if x.shape[0] == 0:  # no images: an empty batch of outputs
        shape = (0, w.shape[0], *out_hw)
        return _zeros(_output(out, "out", shape, x.dtype), shape, x.dtype)
    b = None if b is None else _contiguous(b)
    w = _contiguous(w)
    y = _core.depthwise_conv2d_fwd(_contiguous(x), w, b, stride, pads, dilation, out)
    _depthwise_padding_products(x.shape[2:], w, None, stride, pads, dilation, out_hw, y, forward=True)
    return y


def depthwise_conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, need_input_grad=True, need_bias_grad=True,
                              *, out=None, out_w=None, out_b=None):
    """Gradients of :func:`depthwise_conv2d`: ``(dx or None, dw, db or None)``."""
    dy = _array(dy, "dy", 4, "(N, C * M, OH, OW)", batch=True)
    x = _array(x, "x", 4, "(N, C, H, W)", batch=True)
    w = _array(w, "w", 4, "(C * M, 1, KH, KW)")
    _same_dtype("x", x, w=w, dy=dy)
    need_input_grad = _flag(need_input_grad, "need_input_grad")
    need_bias_grad = _flag(need_bias_grad, "need_bias_grad")
    stride, pads, dilation, out_hw = _depthwise_setup(x.shape, w.shape, stride, padding, dilation)
    expected = (x.shape[0], w.shape[0], *out_hw)
    if dy.shape != expected:
        raise ValueError(f"dy must have the shape of depthwise_conv2d's output {expected}, got {dy.shape}")
    if x.shape[0] == 0:  # no images: an empty dx; dw and db are sums over nothing
        bias_shape = (w.shape[0],)
        dx = _zeros(_output(out, "out", x.shape, x.dtype), x.shape, x.dtype) if need_input_grad else None
        dw = _zeros(_output(out_w, "out_w", w.shape, x.dtype), w.shape, x.dtype)
        db = _zeros(_output(out_b, "out_b", bias_shape, x.dtype), bias_shape, x.dtype) if need_bias_grad else None
        return dx, dw, db
    dy, w, x = _contiguous(dy), _contiguous(w), _contiguous(x)
    if need_input_grad and isinstance(out, np.ndarray):
        # dx is written first, then dw and db are computed from x: an out over x (or over out_w/out_b,
        # written next) would silently corrupt a result. The bindings check each call alone.
        for name, other in (("x", x), ("out_w", out_w), ("out_b", out_b if need_bias_grad else None)):
            if isinstance(other, np.ndarray) and np.may_share_memory(out, other):
                raise ValueError(f"out must not share memory with {name}")
    dx = _core.depthwise_conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out) if need_input_grad else None
    dw, db = _core.depthwise_conv2d_bwd_weights(dy, x, w.shape, stride, pads, dilation, need_bias_grad,
                                                out_w, out_b)
    _depthwise_padding_products(x.shape[2:], w, dy, stride, pads, dilation, out_hw, dw, forward=False, db=db)
    return dx, dw, db
