"""``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

from ..layers.base import display_shape
from .batches import shape_str

__all__ = ["print_summary"]


def print_summary(model, line_length: int | None = None, print_fn=None) -> None:
    """Print the table for a built ``model`` (one row per entry of ``model.layers``).

    ``print_fn`` receives the whole table as one string (default ``print``).
    """
    fmt = model._data_format()
    rows = [
        (
            f"{layer.name} ({type(layer).__name__})",
            shape_str((None, *display_shape(layer.output_shape, fmt))),
            f"{layer.count_params():,}",
        )
        for layer in model.layers
    ]
    line_length = line_length or 65
    # Keras's column stops for Sequential (0.45, 0.85, 1.0), widened rather than wrapped.
    name_w = max(int(line_length * 0.45), max(len(r[0]) for r in rows) + 1)
    shape_w = max(int(line_length * 0.40), max(len(r[1]) for r in rows) + 1)
    width = max(line_length, name_w + shape_w + 10)
    param_w = width - name_w - shape_w

    def line(a, b, c):
        return f"{a:<{name_w}}{b:<{shape_w}}{c:<{param_w}}".rstrip()

    total = model.count_params()
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    out = [f'Model: "{model.name}"', "_" * width, line("Layer (type)", "Output Shape", "Param #"), "=" * width]
    for i, row in enumerate(rows):
        out.append(line(*row))
        out.append("=" * width if i == len(rows) - 1 else "_" * width)
    out += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "_" * width,
    ]
    (print_fn or print)("\n".join(out))
