"""``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

from ..layers.base import display_shape
from .batches import shape_str

__all__ = ["print_graph_summary", "print_summary"]


def print_summary(model, line_length: int | None = None, print_fn=None) -> None:
    """Print the table for a built Sequential ``model`` (one row per entry of ``model.layers``).

    ``print_fn`` receives the whole table as one string (default ``print``).
    """
    fmt = model._data_format()
    rows = [
        (
            f"{layer.name} ({type(layer).__name__})",
            shape_str((None, *display_shape(layer._internal_output_shape, fmt))),
            f"{layer.count_params():,}",
        )
        for layer in model.layers
    ]
    # Keras's column stops for Sequential (0.45, 0.85, 1.0), widened rather than wrapped.
    _print_table(model, ("Layer (type)", "Output Shape", "Param #"), rows, (0.45, 0.40), line_length or 65, print_fn)


def print_graph_summary(model, rows, line_length: int | None = None, print_fn=None) -> None:
    """The table of a functional model: ``rows`` are ``(name (type), shape, params, [connections])``;
    a layer called several times lists every connection, one a line, as Keras's "Connected to"."""
    lines = []
    for name, shape, params, connected in rows:
        lines.append((name, shape, params, connected[0]))
        lines.extend(("", "", "", c) for c in connected[1:])
    groups = [len(r[3]) for r in rows]
    _print_table(
        model, ("Layer (type)", "Output Shape", "Param #", "Connected to"), lines, (0.3, 0.3, 0.1),
        line_length or 98, print_fn, groups,
    )


def _print_table(model, headers, rows, fractions, line_length, print_fn, groups=None) -> None:
    """Columns take the ``fractions`` of ``line_length`` (Keras's positions; the last column the rest),
    each widened to fit its longest entry; ``groups``: how many lines each layer takes (default one)."""
    widths = [max(int(line_length * f), max(len(r[col]) for r in rows) + 1) for col, f in enumerate(fractions)]
    width = max(line_length, sum(widths) + 10)
    widths.append(width - sum(widths))

    def line(cells):
        return "".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()

    total = model.count_params()
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    out = [f'Model: "{model.name}"', "_" * width, line(headers), "=" * width]
    groups = groups or [1] * len(rows)
    i = 0
    for g, size in enumerate(groups):
        out.extend(line(r) for r in rows[i : i + size])
        i += size
        out.append("=" * width if g == len(groups) - 1 else "_" * width)
    out += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "_" * width,
    ]
    (print_fn or print)("\n".join(out))
