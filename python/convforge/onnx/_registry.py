"""Which function translates which layer class to ONNX, and which ONNX op to layers.

Kept apart from the translations themselves so that a layer module can register its own
exporter without importing ``onnx`` (the translations import it when they run).
"""

from __future__ import annotations

from typing import Callable

_EXPORTERS: dict[object, Callable] = {}  # layer class, or a class name (str) -> exporter
_IMPORTERS: dict[str, Callable] = {}  # ONNX op_type of the default domain -> importer
_builtins_loaded = False


def register_exporter(layer_class, exporter: Callable) -> None:
    """Translate layers of ``layer_class`` (and its subclasses) with ``exporter``.

    ``layer_class`` is a class, or a class *name* (a string) for a layer that
    may not be importable where the registration happens; a class wins over a
    name. ``exporter(ctx, layer, inputs) -> output`` gets an
    :class:`~convforge.onnx._export.ExportContext`, the layer and the names of
    its input tensors (NCHW for images), adds nodes and initializers through
    ``ctx``, and returns the name of its output tensor.
    """
    if not (isinstance(layer_class, type) or (isinstance(layer_class, str) and layer_class)):
        raise TypeError(f"layer_class must be a layer class or a class name; got {layer_class!r}")
    if not callable(exporter):
        raise TypeError(f"exporter must be callable; got {exporter!r}")
    _EXPORTERS[layer_class] = exporter


def register_importer(op_type: str, importer: Callable) -> None:
    """Translate ONNX nodes of ``op_type`` (default domain) with ``importer``.

    ``importer(ctx, node)`` gets an :class:`~convforge.onnx._import.ImportContext`
    and the node, and adds layers through ``ctx`` (see its methods).
    """
    if not isinstance(op_type, str) or not op_type:
        raise TypeError(f"op_type must be a non-empty string; got {op_type!r}")
    if not callable(importer):
        raise TypeError(f"importer must be callable; got {importer!r}")
    _IMPORTERS[op_type] = importer


def _load_builtins() -> None:
    # The built-in translations register themselves on import; they import onnx.
    global _builtins_loaded
    if not _builtins_loaded:
        from . import _builtin_export, _builtin_import, _extra_layers  # noqa: F401

        _builtins_loaded = True


def exporter_for(layer) -> Callable | None:
    """The exporter registered for ``layer``'s class (or nearest base class), else None."""
    _load_builtins()
    mro = type(layer).__mro__
    for cls in mro:
        if cls in _EXPORTERS:
            return _EXPORTERS[cls]
    for cls in mro:
        if cls.__name__ in _EXPORTERS:
            return _EXPORTERS[cls.__name__]
    return None


def importer_for(op_type: str) -> Callable | None:
    _load_builtins()
    return _IMPORTERS.get(op_type)


def supported_ops() -> list[str]:
    _load_builtins()
    return sorted(_IMPORTERS)
