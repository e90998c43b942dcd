"""``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

import re

import numpy as np

from ..layers.base import display_shape
from ..layers.core import InputLayer
from .batches import shape_str

__all__ = ["print_graph_summary", "print_summary"]

# Keras's column stops (fractions of the line): Sequential (and chain-like functional models), and
# functional models with a "Connected to" column.
_CHAIN_POSITIONS = (0.45, 0.85, 1.0)
_GRAPH_POSITIONS = (0.3, 0.6, 0.7, 1.0)
# Keras 2's "Trainable" column, added after the others.
_TRAINABLE_WIDTH = 11


def readable_bytes(size: float) -> str:
    """Keras 3's summary figure of a size in bytes: '692.00 B', '1.50 KB', '2.25 MB', ..."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def print_summary(model, line_length=None, positions=None, print_fn=None, show_trainable=False,
                  layer_range=None, expand_nested=False) -> None:
    """Print the table for a built Sequential ``model``: a row per entry of ``model.layers`` (a
    model added to it is one row), and with ``expand_nested`` the added models' layers after theirs.

    ``print_fn`` receives the whole table as one string (default ``print``).
    """
    fmt = model._data_format()

    def shape(layer) -> str:
        return shape_str((None, *display_shape(layer._internal_output_shape, fmt)))

    owners = model._layer_owners()
    nested = {id(owner) for owner in owners.values()}
    rows = []
    for entry in model.layers:
        if id(entry) not in nested:
            rows.append((entry, f"{entry.name} ({type(entry).__name__})", shape(entry), []))
            continue
        inner = [layer for layer in model._flat_layers if owners.get(id(layer)) is entry]
        rows.append((entry, f"{entry.name} ({type(entry).__name__})", shape(inner[-1]), []))
        if expand_nested:
            rows.extend(nested_rows(entry, shape, lambda layer: []))
    _print_table(model, rows, False, line_length or 65, positions, print_fn, show_trainable, layer_range)


def nested_rows(model, shape, connected, depth: int = 1) -> list:
    """``summary(expand_nested=True)``'s rows under a nested ``model``'s own: one per entry of its
    ``model.layers`` (marked ``└``, indented by depth), a model nested in it followed by its own.
    ``shape(layer)`` and ``connected(layer)`` give a layer's cells as the outer model sees them."""
    rows = []
    for entry in model.layers:
        if isinstance(entry, InputLayer):
            continue
        name = f"{'   ' * depth}\u2514 {entry.name} ({type(entry).__name__})"
        if entry in model._nested:
            first = next(layer for layer in entry._flat_layers if not isinstance(layer, InputLayer))
            rows.append((entry, name, shape_str(entry.output_shape), connected(first)))
            rows.extend(nested_rows(entry, shape, connected, depth + 1))
        else:
            rows.append((entry, name, shape(entry), connected(entry)))
    return rows


def print_graph_summary(model, rows, chain: bool, line_length=None, positions=None, print_fn=None,
                        show_trainable=False, layer_range=None) -> None:
    """The table of a functional model: ``rows`` are ``(layer, name (type), shape, [connections])``;
    a layer called several times lists every connection, one a line, as Keras's "Connected to".
    A ``chain`` (each layer called once on one tensor, one after another) has no such column, as
    in Keras."""
    _print_table(model, rows, not chain, line_length or (65 if chain else 98), positions, print_fn,
                 show_trainable, layer_range)


def _layer_range_rows(rows, layer_range):
    """Keras's ``layer_range``: the rows from the first layer whose name matches ``layer_range[0]``
    (a regular expression, as ``re.match``) to the last whose name matches ``layer_range[1]``."""
    if layer_range is None:
        return rows
    if not isinstance(layer_range, (list, tuple)) or len(layer_range) != 2:
        raise ValueError(f"summary: layer_range must be a list or tuple of two layer names; got {layer_range!r}")
    if not all(isinstance(name, str) for name in layer_range):
        raise ValueError(f"summary: layer_range must hold two layer names (strings); got {layer_range!r}")
    names = [row[0].name for row in rows]
    first = [i for i, name in enumerate(names) if re.match(layer_range[0], name)]
    last = [i for i, name in enumerate(names) if re.match(layer_range[1], name)]
    if not first or not last:
        missing = layer_range[0] if not first else layer_range[1]
        raise ValueError(f"summary: layer_range names {missing!r}, which matches none of the layers {names}")
    if first[0] > last[-1]:
        raise ValueError(f"summary: layer_range {list(layer_range)} ends before it starts (layers {names})")
    return rows[first[0] : last[-1] + 1]


def _column_fractions(positions, columns: int, line_length: int) -> list:
    """Each column's width as a fraction of the line, but for the last (which takes the rest), from
    Keras's ``positions``: where each column ends, as fractions of the line or (any above 1) characters."""
    if positions is None:
        positions = _GRAPH_POSITIONS if columns == 4 else _CHAIN_POSITIONS
    elif not isinstance(positions, (list, tuple)) or len(positions) != columns or any(
            isinstance(p, bool) or not isinstance(p, (int, float)) or p <= 0 for p in positions):
        raise ValueError(f"summary: positions must be {columns} increasing positive numbers (where each "
                         f"column ends); got {positions!r}")
    if list(positions) != sorted(positions):
        raise ValueError(f"summary: positions must increase (where each column ends); got {list(positions)}")
    if positions[-1] > 1:  # characters
        positions = [p / line_length for p in positions]
    return [round(b - a, 9) for a, b in zip((0, *positions[:-2]), positions[:-1])]  # 0.85 - 0.45 is 0.39999...


def _print_table(model, rows, connected_column, line_length, positions, print_fn, show_trainable,
                 layer_range) -> None:
    """``rows``: (layer, name (type), shape, connections). Columns take Keras's positions of
    ``line_length``, each widened to fit its longest entry."""
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected_column else [])
    fractions = _column_fractions(positions, len(headers), line_length)
    lines, groups = [], []
    for layer, name, shape, connected in _layer_range_rows(rows, layer_range):
        cells = [name, shape, f"{layer.count_params():,}"]
        extra = []
        if connected_column:
            cells.append(connected[0])
            extra = [["", "", "", c] for c in connected[1:]]
        if show_trainable:
            # Keras: "-" for a layer without weights, else whether they train.
            cells.append("-" if not layer.count_params() else "Y" if layer.trainable else "N")
            extra = [e + [""] for e in extra]
        lines.append(cells)
        lines.extend(extra)
        groups.append(1 + len(extra))
    if show_trainable:
        headers.append("Trainable")
    # Each column at least one space wider than its header and entries: a narrow line_length
    # ran "Param #" into "Connected to" (Keras 2's summary did the same).
    widths = [max(int(line_length * f), max(len(r[col]) for r in [headers, *lines]) + 1)
              for col, f in enumerate(fractions)]
    width = max(line_length, sum(widths) + 10)
    widths.append(width - sum(widths))
    if show_trainable:
        width += _TRAINABLE_WIDTH
        widths.append(_TRAINABLE_WIDTH)

    def line(cells):
        return "".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()

    total = model.count_params()
    frozen = model._frozen_layer_ids()
    trainable = sum(layer.count_trainable_params() for layer in model._flat_layers if id(layer) not in frozen)
    out = [f'Model: "{model.name}"', "_" * width, line(headers), "=" * width]
    i = 0
    for g, size in enumerate(groups):
        out.extend(line(r) for r in lines[i : i + size])
        i += size
        out.append("=" * width if g == len(groups) - 1 else "_" * width)
    itemsize = np.dtype(model.dtype).itemsize
    optimizer = getattr(model, "optimizer", None) if getattr(model, "loss", None) is not None else None
    state = optimizer.variables_size() if optimizer is not None else None
    counts = [("Total params", total + (state[0] if state else 0),
               total * itemsize + (state[1] if state else 0)),
              ("Trainable params", trainable, trainable * itemsize),
              ("Non-trainable params", total - trainable, (total - trainable) * itemsize)]
    if state is not None:  # as Keras 3: once the optimizer has been applied, counted in the total
        counts.append(("Optimizer params", *state))
    out += [f"{what}: {count:,} ({readable_bytes(size)})" for what, count, size in counts]
    out.append("_" * width)
    (print_fn or print)("\n".join(out))
