"""Constant folding of the shape arithmetic exporters write around the real layers.

PyTorch's exporter computes a ``ZeroPad2d``'s pads with ConstantOfShape -> Concat -> Reshape ->
Slice -> Transpose -> Cast; Keras's computes a flatten's target from ``Shape``, and a stride-2
'same' convolution's or pooling's pads from the ``Shape`` of constants. When every input
of such a node is a constant, the node is evaluated here in NumPy, on small arrays only: an
output of more than ``MAX_FOLDED`` values is refused, so a forged ``ConstantOfShape([2**40])``
allocates nothing.
"""

from __future__ import annotations

import math

import numpy as np

MAX_FOLDED = 4096
# Most values all folded constants of one file may hold together (many small nodes add up).
MAX_FOLDED_TOTAL = 2**20
_TYPES = {1: np.float32, 11: np.float64, 7: np.int64, 6: np.int32, 9: np.bool_}


class FoldError(ValueError):
    """The node cannot be folded: (message, attribute or None)."""

    def __init__(self, message: str, attribute: str | None = None):
        super().__init__(message)
        self.attribute = attribute


def _ints(value, what: str) -> list[int]:
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or array.ndim > 1:
        raise FoldError(f"{what} must be a 1-D integer constant; got {array.dtype} {array.shape}")
    return [int(v) for v in array.reshape(-1)]


def _size_ok(shape) -> tuple:
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_FOLDED:
        raise FoldError(f"a folded constant of shape {list(shape)} is too large or invalid")
    return shape


def _constant_of_shape(args, attrs):
    shape = _size_ok(_ints(args[0], "the shape"))
    value = attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if fill.size != 1:
        raise FoldError("value must hold one element", "value")
    return np.full(shape, fill[0], dtype=fill.dtype)


def _reshape(args, attrs):
    data, target = args[0], _ints(args[1], "the shape")
    if attrs.get("allowzero", 0):
        raise FoldError("allowzero=1 is not supported", "allowzero")
    target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return data.reshape(target)


def _slice(args, attrs):
    data = args[0]
    starts, ends = _ints(args[1], "starts"), _ints(args[2], "ends")
    axes = _ints(args[3], "axes") if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = _ints(args[4], "steps") if len(args) > 4 and args[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise FoldError("starts, ends, axes and steps do not match")
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if not -data.ndim <= axis < data.ndim:
            raise FoldError(f"axis {axis} of a {data.ndim}-D constant")
        # ONNX clamps huge starts/ends (INT64_MAX, INT64_MIN) as Python slicing does.
        big = 2**62
        index[axis] = slice(max(min(start, big), -big), max(min(end, big), -big), step)
    return data[tuple(index)]


def _transpose(args, attrs):
    perm = attrs.get("perm")
    return np.transpose(args[0], None if perm is None else [int(p) for p in perm])


def _concat(args, attrs):
    return np.concatenate(args, axis=attrs["axis"])


def _gather(args, attrs):
    data, indices = args
    if np.asarray(indices).dtype.kind not in "iu":
        raise FoldError("indices must be integers")
    axis = attrs.get("axis", 0)
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise FoldError(f"an index is outside 0..{size - 1}")
    return np.take(data, indices, axis=axis)


def _unsqueeze(args, attrs):
    axes = _ints(args[1], "axes") if len(args) > 1 else [int(a) for a in attrs.get("axes", [])]
    rank = args[0].ndim + len(axes)
    if rank > 8 or any(not -rank <= a < rank for a in axes):
        raise FoldError(f"axes {axes}")
    return np.expand_dims(args[0], tuple(a % rank for a in axes))


def _squeeze(args, attrs):
    axes = _ints(args[1], "axes") if len(args) > 1 else [int(a) for a in attrs.get("axes", [])]
    return np.squeeze(args[0], axis=tuple(axes) if axes else None)


def _cast(args, attrs):
    to = attrs.get("to")
    if to not in _TYPES:
        raise FoldError(f"casts to element type {to} are not supported", "to")
    with np.errstate(all="ignore"):
        return args[0].astype(_TYPES[to])


def _truncating_divide(a, b):
    """ONNX's integer Div, as C divides: the quotient rounded toward zero (Div(-7, 2) is -3, where
    NumPy's floor_divide gives -4), in the operands' integer type."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


def _arithmetic(op):
    def run(args, attrs):
        a, b = args
        if a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
            raise FoldError("only integer (shape) arithmetic is folded")
        if op in ("Div", "Mod") and np.any(b == 0):
            raise FoldError("a division by zero")
        # Mod: the divisor's sign (Python's %), or the dividend's with fmod=1 (C's fmod).
        mod = np.fmod if attrs.get("fmod", 0) else np.mod
        with np.errstate(all="ignore"):
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _truncating_divide, "Mod": mod}[op](a, b)

    return run


def _negate(args, attrs):
    if args[0].dtype.kind not in "iu":
        raise FoldError("only integer (shape) arithmetic is folded")
    return np.negative(args[0])


def _equal(args, attrs):
    a, b = args
    if a.dtype.kind not in "iub" or b.dtype.kind not in "iub":
        raise FoldError("only integer (shape) comparisons are folded")
    return np.equal(a, b)


def _where(args, attrs):
    # PyTorch's exporter writes a Tensor.expand's target as Where(shape == -1, 1, shape).
    condition, a, b = args
    if condition.dtype != np.bool_ or a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        raise FoldError("only a choice between integer (shape) constants is folded")
    return np.where(condition, a, b)


def _shape(args, attrs):
    # ONNX's start/end (opset 15): negative from the back, clamped to the rank, as Python slices.
    return np.array(np.asarray(args[0]).shape[attrs.get("start", 0) : attrs.get("end")], dtype=np.int64)


FOLDERS = {
    "Identity": lambda args, attrs: args[0],
    "Shape": _shape,
    "ConstantOfShape": _constant_of_shape,
    "Reshape": _reshape,
    "Slice": _slice,
    "Transpose": _transpose,
    "Concat": _concat,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Add": _arithmetic("Add"),
    "Sub": _arithmetic("Sub"),
    "Mul": _arithmetic("Mul"),
    "Div": _arithmetic("Div"),
    "Mod": _arithmetic("Mod"),
    "Neg": _negate,
    "Equal": _equal,
    "Where": _where,
}


def fold(op_type: str, args: list, attrs: dict) -> np.ndarray:
    """The value of a node of ``op_type`` whose inputs are the constants ``args``."""
    if sum(np.asarray(a).size for a in args if a is not None) > MAX_FOLDED:
        raise FoldError(f"inputs of more than {MAX_FOLDED} values in all; convforge folds only shape arithmetic")
    try:
        result = np.asarray(FOLDERS[op_type](args, attrs))
    except FoldError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, OverflowError) as err:  # AxisError is a ValueError
        raise FoldError(f"cannot be evaluated on its constant inputs ({err})") from None
    _size_ok(result.shape)
    return result
