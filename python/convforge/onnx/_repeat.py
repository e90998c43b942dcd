"""Keras's exporter's UpSampling2D: np.repeat along height, then along width, each written as
Unsqueeze (a new axis after the repeated one) -> Expand (the factor on the new axis) -> Reshape
(the two axes merged), on the channels-last view of the image. Its UpSampling1D is the same
repeat of the steps of (batch, steps, channels): an UpSampling1D of the axis repeated (axis 1:
channels-last, axis 2: channels-first, as a Resize of a sequence imports: _sequences).

The Expand's target and the Reshape's shape are shape arithmetic that follows the Unsqueeze in the
file (folded when the walk reaches it), so the Unsqueeze and the Expand are only recorded here
(``ctx.pending_repeats``) and the layer is made at the Reshape, where both are known: one
UpSampling2D (UpSampling1D) a repeated axis. Any other use of Unsqueeze or Expand on computed tensors is refused,
naming the node.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _params
from .. import layers as _layers


class _Repeat(NamedTuple):
    unsqueeze: object  # the node, named in errors
    source: str  # the tensor the layer reads: the NCHW base of a channels-last view, or the tensor
    view: bool  # the Unsqueeze's input is a channels-last view of ``source``
    dims: tuple  # the Unsqueeze's input's per-sample shape, as the file has it (h, w, c) or (c, h, w),
    # or a sequence's two axes
    new_axis: int  # the Unsqueeze's axis, counted with the batch, in the rank-5 (sequences: 4) tensor
    factor: int | None  # from the Expand


def _refused(ctx, node, why: str):
    return ctx.error(node, f"{why}; of computed tensors convforge imports Unsqueeze -> Expand -> Reshape only as "
                           "Keras's exporter writes UpSampling2D and UpSampling1D (a repeat of height or width, "
                           "or of one axis of a sequence)")


def import_unsqueeze(ctx, node):
    """An Unsqueeze of a computed tensor (of constants it is folded before this is reached)."""
    if ctx.opset >= 13:
        if len(node.input) != 2 or not ctx.is_constant(node.input[1]):
            raise _refused(ctx, node, "its axes are not a constant")
        axes = [int(v) for v in np.asarray(ctx.constant(node, 1, "axes")).reshape(-1)]
    else:
        axes = [int(v) for v in ctx.attributes(node, {"axes": []})["axes"]]
    base = ctx.view_base(node.input[0])
    dims = ctx.ref_shape(node.input[0]) if base is not None else ctx.shape(node, 0)
    rank = len(dims) + 2  # of the Unsqueeze's output, batch included
    if len(dims) not in (2, 3) or len(axes) != 1 or not -rank <= axes[0] < rank:
        raise _refused(ctx, node, f"axes {axes} of a {('batch', *dims)} tensor")
    new_axis = axes[0] % rank
    if len(dims) == 2:  # a sequence: the new axis after axis 1 or 2, either can be its steps
        if new_axis not in (2, 3):
            raise _refused(ctx, node, f"a new axis at {new_axis} of a {('batch', *dims)} sequence repeats no axis")
    # The new axis follows the repeated one: height and width of the channels-last view (its axes
    # 1 and 2, so new axis 2 or 3), of NCHW (2 and 3: new axis 3 or 4).
    elif new_axis not in ((2, 3) if base is not None else (3, 4)):
        raise _refused(ctx, node, f"a new axis at {new_axis} of a {'channels-last ' if base is not None else ''}"
                                  f"{('batch', *dims)} image repeats no height or width")
    expand, _ = ctx.next_node(node.output[0])
    if expand is None or expand.op_type != "Expand":
        raise _refused(ctx, node, "it is not read by an Expand alone")
    ctx.pending_repeats[node.output[0]] = _Repeat(node, base if base is not None else ctx.input_name(node),
                                                  base is not None, tuple(dims), new_axis, None)
    ctx.consume_node(node)


def import_expand(ctx, node):
    """The Expand of a pending repeat: its factor on the new axis, 1 (or the size) elsewhere."""
    repeat = ctx.pending_repeats.get(ctx.input_name(node))
    if repeat is None or repeat.factor is not None:
        raise _refused(ctx, node, "an Expand that follows no Unsqueeze of an image")
    if len(node.input) != 2 or not ctx.is_constant(node.input[1]):
        raise _refused(ctx, node, "its shape is not a constant")
    target = [int(v) for v in np.asarray(ctx.constant(node, 1, "shape")).reshape(-1)]
    unsqueezed = list(repeat.dims)
    unsqueezed.insert(repeat.new_axis - 1, 1)  # per sample
    rank = len(unsqueezed) + 1
    if len(target) > rank:
        raise _refused(ctx, node, f"shape {target} has more than {rank} axes")
    target = [1] * (rank - len(target)) + target
    factor = target[repeat.new_axis]
    others_kept = all(t in (1, d) for i, (t, d) in enumerate(zip(target[1:], unsqueezed), 1) if i != repeat.new_axis)
    if target[0] != 1 or not others_kept or not 1 <= factor <= _params.MAX_PARAM:
        raise _refused(ctx, node, f"shape {target} is not a repeat of the new axis alone")
    if ctx.readers(node.output[0]) != 1:
        raise _refused(ctx, node, "its output is read by more than a Reshape")
    ctx.pending_repeats[node.output[0]] = repeat._replace(factor=factor)
    ctx.consume_node(node)


def finish_repeat(ctx, node, batch_values) -> bool:
    """At a Reshape: if it reads a pending repeat's Expand, make the UpSampling2D (UpSampling1D)
    (its output the Reshape's) and return True; a Reshape of anything else returns False."""
    repeat = ctx.pending_repeats.get(ctx.input_name(node))
    if repeat is None:
        return False
    if repeat.factor is None:
        raise _refused(ctx, node, "a Reshape of an Unsqueeze without its Expand")
    merged = list(repeat.dims)
    merged[repeat.new_axis - 2] *= repeat.factor  # the repeated axis, per sample
    target = [int(v) for v in np.asarray(ctx.constant(node, 1, "shape")).reshape(-1)]
    if ctx.attributes(node, {"allowzero": 0})["allowzero"] or len(target) != len(merged) + 1 \
            or target[0] not in batch_values or [d if t == 0 else t for t, d in zip(target[1:], merged)] != merged:
        raise _refused(ctx, node, f"shape {target} does not merge the repeated axis into {('batch', *merged)}")
    if len(merged) == 2:  # a sequence's axis 1 (new axis 2) or 2 (new axis 3)
        data_format = "channels_last" if repeat.new_axis == 2 else "channels_first"
        layer = _layers.UpSampling1D(repeat.factor, data_format=data_format)
        ctx.add_layer(node, layer, [repeat.source], node.output[0])
        return True
    spatial = repeat.new_axis - (2 if repeat.view else 3)  # 0: height, 1: width
    size = (repeat.factor, 1) if spatial == 0 else (1, repeat.factor)
    source = repeat.source
    previous = ctx.steps[-1] if ctx.steps else None
    if spatial == 1 and previous is not None and previous[2] == source and source in ctx.repeat_layers and \
            previous[0].size[1] == 1 and _read_by_nothing_else(ctx, source):
        # The height's repeat, just made and read by nothing else (its Shape nodes are folded):
        # Keras's UpSampling2D((r, s)) as one layer.
        ctx.steps.pop()
        size, source = (previous[0].size[0], repeat.factor), previous[1][0]
    layer = _layers.UpSampling2D(size=size, data_format=ctx.data_format)
    output = ctx.add_view_layer(node, layer, [source], view=repeat.view)
    ctx.repeat_layers[output] = node.output[0]
    return True


def _read_by_nothing_else(ctx, made: str) -> bool:
    """Is the tensor ``made`` (a repeat's layer output) no graph output, and every node reading it
    (past casts) translated already?"""
    seen = ctx.repeat_layers[made]
    if any(ctx.resolve(o) in (made, seen) for o in ctx.graph_outputs):
        return False
    return all(ctx.consumed(r) for r in ctx.readers_of(seen))
