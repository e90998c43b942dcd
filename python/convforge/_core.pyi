# Type stubs for the compiled extension (private; the public API is convforge.functional).
# tests/test_runtime.py checks that these names equal dir(_core).
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

_Pair = tuple[int, int]
_Quad = tuple[int, int, int, int]
_Float = npt.NDArray[np.floating[Any]]

def conv2d_fwd(
    x: _Float,
    w: _Float,
    b: _Float | None,
    stride: _Pair,
    padding: _Quad,
    dilation: _Pair,
    out: _Float | None = None,
    relu: bool = False,
    algorithm: str | None = None,
) -> _Float: ...
def conv2d_bwd_data(
    dy: _Float,
    w: _Float,
    x_shape: _Quad,
    stride: _Pair,
    padding: _Quad,
    dilation: _Pair,
    out: _Float | None = None,
    algorithm: str | None = None,
) -> _Float: ...
def conv2d_bwd_weights(
    dy: _Float,
    x: _Float,
    w_shape: _Quad,
    stride: _Pair,
    padding: _Quad,
    dilation: _Pair,
    need_bias: bool,
    out_w: _Float | None = None,
    out_b: _Float | None = None,
    algorithm: str | None = None,
) -> tuple[_Float, _Float | None]: ...
def conv2d_algorithms(
    x_shape: _Quad, w_shape: _Quad, stride: _Pair, padding: _Quad, dilation: _Pair, dtype: str = "float32"
) -> dict[str, tuple[str, ...]]: ...
def dense_fwd(x: _Float, w: _Float, b: _Float | None, out: _Float | None = None) -> _Float: ...
def dense_bwd_data(dy: _Float, w: _Float, out: _Float | None = None) -> _Float: ...
def dense_bwd_weights(
    dy: _Float, x: _Float, need_bias: bool, out_w: _Float | None = None, out_b: _Float | None = None
) -> tuple[_Float, _Float | None]: ...
def maxpool2d_fwd(
    x: _Float,
    kernel: _Pair,
    stride: _Pair,
    padding: _Pair,
    out_hw: _Pair,
    return_indices: bool,
    out: _Float | None = None,
    out_indices: npt.NDArray[np.int64] | None = None,
) -> _Float | tuple[_Float, npt.NDArray[np.int64]]: ...
def maxpool2d_bwd(
    dy: _Float,
    indices: npt.NDArray[np.int64],
    x_shape: _Quad,
    out: _Float | None = None,
    gate: _Float | None = None,
) -> _Float: ...
def relu_fwd(x: _Float, out: _Float | None = None) -> _Float: ...
def relu_bwd(dy: _Float, x: _Float, out: _Float | None = None) -> _Float: ...
def build_info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _set_isa_cap(isa: str) -> None: ...
def _isa_cap() -> str: ...
def _workspace_bytes() -> int: ...
def _fma_peak(threads: int = 1, seconds: float = 0.3) -> dict[str, Any]: ...
