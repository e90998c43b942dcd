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
def add(a: _Float, b: _Float, out: _Float | None = None, relu: bool = False, gate: _Float | None = None) -> _Float: ...
def softmax_fwd(x: _Float, out: _Float | None = None) -> _Float: ...
def build_info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _set_isa_cap(isa: str) -> None: ...
def _isa_cap() -> str: ...
def _workspace_bytes() -> int: ...
def _parallel_for_failing(threads: int, items: int, failing: int, in_team: bool) -> None: ...
def first_non_finite(arrays: list[_Float] | tuple[_Float, ...]) -> int: ...
def _fma_peak(threads: int = 1, seconds: float = 0.3) -> dict[str, Any]: ...

# Per-channel ops (csrc/bindings/bind_batchnorm.cpp, bind_globalpool.cpp, bind_depthwise.cpp).
def batchnorm_fwd_training(
    x: _Float,
    gamma: _Float | None,
    beta: _Float | None,
    eps: float,
    out: _Float | None = None,
    out_mean: _Float | None = None,
    out_var: _Float | None = None,
    relu: bool = False,
) -> tuple[_Float, _Float, _Float]: ...
def batchnorm_fwd_inference(
    x: _Float, mean: _Float, var: _Float, gamma: _Float | None, beta: _Float | None, eps: float,
    out: _Float | None = None,
) -> _Float: ...
def batchnorm_bwd(
    dy: _Float,
    x: _Float,
    mean: _Float,
    var: _Float,
    gamma: _Float | None,
    eps: float,
    need_input_grad: bool = True,
    out: _Float | None = None,
    out_gamma: _Float | None = None,
    out_beta: _Float | None = None,
    beta: _Float | None = None,
    relu: bool = False,
) -> tuple[_Float | None, _Float, _Float]: ...
def global_avg_pool2d_fwd(x: _Float, out: _Float | None = None) -> _Float: ...
def global_avg_pool2d_bwd(dy: _Float, input_shape: _Quad, out: _Float | None = None) -> _Float: ...
def global_max_pool2d_fwd(
    x: _Float, return_indices: bool = False, out: _Float | None = None,
    out_indices: npt.NDArray[np.int64] | None = None,
) -> Any: ...
def global_max_pool2d_bwd(
    dy: _Float, indices: npt.NDArray[np.int64], input_shape: _Quad, out: _Float | None = None
) -> _Float: ...
def depthwise_conv2d_fwd(
    x: _Float, w: _Float, b: _Float | None, stride: _Pair, padding: _Quad, dilation: _Pair,
    out: _Float | None = None,
) -> _Float: ...
def depthwise_conv2d_bwd_data(
    dy: _Float, w: _Float, x_shape: _Quad, stride: _Pair, padding: _Quad, dilation: _Pair, out: _Float | None = None
) -> _Float: ...
def depthwise_conv2d_bwd_weights(
    dy: _Float,
    x: _Float,
    w_shape: _Quad,
    stride: _Pair,
    padding: _Quad,
    dilation: _Pair,
    need_bias: bool,
    out_w: _Float | None = None,
    out_b: _Float | None = None,
) -> tuple[_Float, _Float | None]: ...

def note_layer_change() -> None: ...
def layer_changes() -> int: ...
def objects_unchanged(items: list[tuple[dict[Any, Any], Any, Any]], settings: list[tuple[Any, str, Any]]) -> bool: ...

class ReadyPredict:
    def __init__(
        self,
        plan: InferencePlan,
        items: list[tuple[dict[Any, Any], Any, Any]],
        settings: list[tuple[Any, str, Any]],
        forced: dict[str, str],
        shapes: list[list[int]],
        tracked: bool,
    ) -> None: ...
    def __call__(self, x: Any, batch_size: Any) -> _Float | None: ...

class InferencePlan:
    def __init__(self, dtype: str) -> None: ...
    @property
    def dtype(self) -> str: ...
    def input(self, dims: list[int]) -> int: ...
    def conv2d(
        self,
        x: int,
        w: _Float,
        b: _Float | None,
        stride: _Pair,
        padding: _Quad,
        dilation: _Pair,
        bn: tuple[_Float, _Float, _Float | None, _Float | None, float] | None = None,
        relu: bool = False,
    ) -> int: ...
    def dense(self, x: int, w: _Float, b: _Float | None, relu: bool = False) -> int: ...
    def maxpool2d(self, x: int, kernel: _Pair, stride: _Pair, padding: _Pair, out_hw: _Pair) -> int: ...
    def relu(self, x: int) -> int: ...
    def softmax(self, x: int) -> int: ...
    def batchnorm(self, x: int, bn: tuple[_Float, _Float, _Float | None, _Float | None, float]) -> int: ...
    def global_pool(self, x: int, max: bool, out_dims: list[int]) -> int: ...
    def elementwise(self, kind: str, xs: list[int]) -> int: ...
    def concat(self, xs: list[int]) -> int: ...
    def reshape(self, x: int, dims: list[int]) -> int: ...
    def finish(self, outputs: list[int]) -> None: ...
    def dims(self, value: int) -> list[int]: ...
    def describe(self) -> str: ...
    def first_op_beside_compare(self, batch: int) -> bool: ...
    def own_places(self, batch: int) -> bool: ...
    places: str
    def run(self, inputs: list[_Float], conv_algorithm: str | None = None) -> list[_Float]: ...
    def profile(self, inputs: list[_Float], runs: int, conv_algorithm: str | None = None) -> npt.NDArray[np.float64]: ...
