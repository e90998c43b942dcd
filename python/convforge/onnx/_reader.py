"""Reading an untrusted .onnx file: bounded sizes, no external files, a checked DAG.

Nothing here allocates more than the file already occupies: a tensor's declared shape is
checked against the bytes that hold it before an array is made, and a tensor stored outside
the file is refused without opening the path it names (a model file must not make convforge
read ``/etc/passwd`` or a 100 GB disk image).
"""

from __future__ import annotations

import heapq
import math
import os

import numpy as np

from .._files import NotARegularFileError, open_regular_file
from ..saving import ModelFileError
from ._export import require_onnx

# protobuf cannot parse a message of 2 GiB or more; ONNX stores larger models' weights
# externally, which convforge refuses anyway.
MAX_FILE_BYTES = 2**31 - 1
# Most elements one tensor may declare; far above any weight array that fits in a file.
MAX_TENSOR_ELEMENTS = 2**31 - 1

# ONNX TensorProto.DataType -> (NumPy little-endian dtype, the typed field holding the values)
_DTYPES = {
    1: ("<f4", "float_data"),  # FLOAT
    11: ("<f8", "double_data"),  # DOUBLE
    7: ("<i8", "int64_data"),  # INT64
    6: ("<i4", "int32_data"),  # INT32
    9: ("|u1", "int32_data"),  # BOOL (a Dropout's training_mode): one byte each, read as value != 0
}
_TYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FLOAT16",
               11: "DOUBLE", 16: "BFLOAT16"}


def parse(path):
    """The ModelProto of ``path``; ModelFileError for anything that is not a readable ONNX model."""
    onnx = require_onnx()
    path = os.fspath(path)
    try:
        f = open_regular_file(path)  # FileNotFoundError, with the path, for a missing file
    except NotARegularFileError as err:
        raise ModelFileError(path, f"it is {err.kind}, not a regular file") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ModelFileError(path, "the file is empty")
        if size > MAX_FILE_BYTES:
            raise ModelFileError(path, f"the file is {size} bytes; an ONNX model file holds less than 2 GiB")
        # read(n) allocates n bytes up front: ask for what fstat() saw (+1, to notice growth).
        data = f.read(size + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(path, "the file grew past 2 GiB while it was read")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError, or its C++ backend's errors: all mean "not ONNX"
        raise ModelFileError(
            path, f"not an ONNX model, or a truncated or corrupt one ({type(err).__name__}: {err})"
        ) from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelFileError(path, "not an ONNX model, or a truncated one: it holds no graph nodes")
    return proto


def default_opset(path, proto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ModelFileError(path, "the model imports no version of the default ONNX operator set (opset_import)")
    version = versions[0]
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not 9 <= version <= newest:
        raise ModelFileError(path, f"opset {version} of the default domain is not supported (9 to {newest} are)")
    return version


def tensor_array(path, tensor, what: str, infinite_ok: bool = False) -> np.ndarray:
    """A TensorProto's values as a NumPy array, after checking its declared size against its data;
    ``infinite_ok``: infinities are allowed (a Clip's unbounded side), NaN never."""
    if tensor.data_location == 1 or len(tensor.external_data):  # TensorProto.EXTERNAL
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise ModelFileError(
            path,
            f"{what} is stored in an external file ({location!r}); convforge never opens files named inside a "
            "model: save the model with its weights inside the .onnx file",
        )
    if tensor.HasField("segment"):
        raise ModelFileError(path, f"{what} is a segmented tensor, which convforge does not read")
    if tensor.data_type not in _DTYPES:
        name = _TYPE_NAMES.get(tensor.data_type, str(tensor.data_type))
        raise ModelFileError(path, f"{what} has element type {name}; convforge reads FLOAT, DOUBLE, INT32, INT64 and BOOL")
    dims = list(tensor.dims)
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise ModelFileError(path, f"{what} declares an invalid shape {dims}")
    count = math.prod(dims)
    if count > MAX_TENSOR_ELEMENTS:
        raise ModelFileError(path, f"{what} declares {count} elements (shape {dims}), more than {MAX_TENSOR_ELEMENTS}")
    dtype, field = _DTYPES[tensor.data_type]
    itemsize = np.dtype(dtype).itemsize
    if tensor.raw_data:
        if len(tensor.raw_data) != count * itemsize:
            raise ModelFileError(
                path,
                f"{what} declares shape {dims} ({count * itemsize} bytes) but holds {len(tensor.raw_data)} bytes",
            )
        values = np.frombuffer(tensor.raw_data, dtype=dtype)
    else:
        stored = getattr(tensor, field)
        if len(stored) != count:
            raise ModelFileError(path, f"{what} declares shape {dims} ({count} values) but holds {len(stored)}")
        values = np.asarray(stored, dtype=np.int64 if tensor.data_type == 9 else dtype)
    if tensor.data_type == 9:
        return (values != 0).reshape(dims)
    if dtype[1] == "f" and not (~np.isnan(values) if infinite_ok else np.isfinite(values)).all():
        # A diverged or forged model: nothing to predict with (the .npz reader refuses them too).
        raise ModelFileError(path, f"{what} holds NaN or infinite values")
    return values.reshape(dims).astype(dtype[1:], copy=True)  # native order, writable, owned


def value_dims(value_info):
    """Dimensions of a graph input/output: ints, or None where symbolic or unknown; None if no shape."""
    t = value_info.type
    if t.WhichOneof("value") != "tensor_type":
        return None, None
    tensor_type = t.tensor_type
    if not tensor_type.HasField("shape"):
        return tensor_type.elem_type, None
    dims = [d.dim_value if d.WhichOneof("value") == "dim_value" else None for d in tensor_type.shape.dim]
    return tensor_type.elem_type, dims


def topological_nodes(path, graph, known: set[str]) -> list:
    """The graph's nodes in an order where every input is made before use; ModelFileError for
    a cycle, a name made twice, or an input nothing makes."""
    producers: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if not out:
                continue
            if out in producers or out in known:
                raise ModelFileError(
                    path, f"node {node.name!r} ({node.op_type}): its output {out!r} is also made elsewhere in the graph"
                )
            producers[out] = i
    waiting = [0] * len(graph.node)
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            if not name or name in known:
                continue
            if name not in producers:
                raise ModelFileError(
                    path, f"node {node.name!r} ({node.op_type}): its input {name!r} is made by no node, input or initializer"
                )
            waiting[i] += 1
            consumers.setdefault(producers[name], []).append(i)
    # Kahn's algorithm, taking the ready node that comes first in the file: the file's own order
    # when it is topological (the ONNX rule, so the usual case), O(n log n) whatever it is.
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(graph.node[i])
        for j in consumers.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        stuck = next(graph.node[i] for i, n in enumerate(waiting) if n > 0)
        raise ModelFileError(path, f"the graph has a cycle (node {stuck.name!r} ({stuck.op_type}) waits on its own output)")
    return order


def check_names(path, proto) -> None:
    """Every name the importer reads is text: protobuf hands a string field holding invalid UTF-8
    back as ``bytes`` (ONNX is proto2), which would otherwise surface as a TypeError far away."""
    graph = proto.graph
    fields = [proto.producer_name, graph.name]
    fields += [o.domain for o in proto.opset_import]
    fields += [t.name for t in graph.initializer]
    fields += [v.name for v in (*graph.input, *graph.output)]
    for node in graph.node:
        fields += [node.name, node.op_type, node.domain, *node.input, *node.output]
        fields += [a.name for a in node.attribute]
    for value in fields:
        if not isinstance(value, str):
            raise ModelFileError(path, f"a name in the graph is not valid UTF-8 text ({value[:40]!r})")
