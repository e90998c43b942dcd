"""Embedding from ONNX: a Gather of the rows of a constant matrix by computed token ids.

The ids come as an integer graph input (PyTorch's nn.Embedding), or as the model's float input
cast to integers (convforge's exporter; Keras's, which also wraps negative ids as Python indexes
them: ``Where(ids < 0, ids + rows, ids)``). The convforge model takes its ids as floats, so those
casts fold away, and so does the wrap (the Embedding refuses negative ids instead: the same
result for every id it takes).
"""

from __future__ import annotations

import numpy as np

from .. import layers as _layers


def _gathers_rows_by(ctx, node, tensor: str) -> bool:
    """Is ``node`` a Gather of a constant matrix's rows by ``tensor``?"""
    return (node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == tensor
            and ctx.is_constant(node.input[0]) and not ctx.is_constant(tensor))


def _wrap_of_negative_ids(ctx, tensor: str):
    """``(Less, Add, Where)`` when the readers of ``tensor`` are exactly Keras's exporter's wrap of
    negative ids, ``Where(tensor < 0, tensor + rows, tensor)``, read by Gathers of matrices of
    that many rows; else None."""
    readers = {r.op_type: r for r in ctx.readers_of(tensor)}
    if sorted(readers) != ["Add", "Less", "Where"] or len(ctx.readers_of(tensor)) != 3:
        return None
    less, add, where = readers["Less"], readers["Add"], readers["Where"]

    def constant_of(node):
        other = [name for name in node.input if name != tensor]
        if len(node.input) != 2 or len(other) != 1 or not ctx.is_constant(other[0]):
            return None
        value = np.asarray(ctx.constant(node, list(node.input).index(other[0]), "a constant")).reshape(-1)
        return int(value[0]) if value.size == 1 and value.dtype.kind in "iu" else None

    rows = constant_of(add)
    if list(less.input) != [tensor, less.input[1]] or constant_of(less) != 0 or rows is None or \
            list(where.input) != [less.output[0], add.output[0], tensor]:
        return None
    gathers = ctx.readers_of(where.output[0])
    if not gathers or not all(_gathers_rows_by(ctx, g, where.output[0]) and
                              np.shape(ctx.constant(g, 0, "embeddings"))[:1] == (rows,) for g in gathers):
        return None
    return less, add, where


def _casts_to_integers(node) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i in (6, 7) for a in node.attribute)


def _read_as_ids(ctx, tensor: str, depth: int = 0) -> bool:
    """Does ``tensor`` reach only token-id readers (Gathers, Keras's wrap) through integer casts?
    (Those casts are translated in their turn: nothing is consumed here.)"""
    readers = ctx.readers_of(tensor)
    if not readers or depth > 8:
        return False
    if _wrap_of_negative_ids(ctx, tensor) is not None:
        return True
    return all(_gathers_rows_by(ctx, r, tensor) or _casts_to_integers(r) and _read_as_ids(ctx, r.output[0], depth + 1)
               for r in readers)


def take_token_ids(ctx, tensor: str) -> bool:
    """Is the integer ``tensor`` (a Cast's output) read only as token ids: by Gathers of constant
    matrices, directly or through Keras's wrap of negative ids (then consumed here)? The Cast
    before it then folds away."""
    readers = ctx.readers_of(tensor)
    if readers and all(_gathers_rows_by(ctx, r, tensor) or _casts_to_integers(r) and _read_as_ids(ctx, r.output[0])
                       for r in readers):
        return True
    wrap = _wrap_of_negative_ids(ctx, tensor)
    if wrap is None:
        return False
    less, add, where = wrap
    ctx.consume_node(less)
    ctx.consume_node(add)
    ctx.consume(where, ctx.resolve(tensor))
    return True


def import_gather(ctx, node):
    """A Gather of rows of a constant matrix by computed ids: Embedding. Other Gathers of computed
    tensors are not supported (of constants, shape arithmetic, they are folded before this is
    reached)."""
    axis = ctx.attributes(node, {"axis": 0})["axis"]
    if len(node.input) != 2 or not ctx.is_constant(node.input[0]) or ctx.is_constant(node.input[1]):
        raise ctx.error(node, "is only supported on constants (shape arithmetic) and as an embedding: rows of a "
                              "constant matrix picked by computed token ids")
    table = np.asarray(ctx.constant(node, 0, "embeddings"))
    if axis != 0 or table.ndim != 2:
        raise ctx.error(node, f"a gather along axis {axis} of a constant of shape {table.shape}: only rows of a "
                              "matrix (an embedding, axis 0) are supported", "axis")
    steps = ctx.shape(node, 1)
    if len(steps) != 1:
        raise ctx.error(node, f"token ids of shape {('batch', *steps)}: an embedding takes (batch, steps)")
    layer = _layers.Embedding(table.shape[0], table.shape[1])
    ctx.add_layer(node, layer, [node.input[1]], node.output[0], [table])
