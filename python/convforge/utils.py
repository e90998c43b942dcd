"""Keras's ``keras.utils`` helpers that tutorials use: ``to_categorical``, ``pad_sequences``,
``set_random_seed``, ``plot_model``."""

from __future__ import annotations

import numbers

import numpy as np

from . import _unsupported
from . import random as _random
from .backend import clear_session  # Keras 3 has it as keras.utils.clear_session too
from .saving import register_keras_serializable  # Keras also has it as keras.utils.register_keras_serializable

__all__ = ["clear_session", "model_to_dot", "pad_sequences", "plot_model", "register_keras_serializable",
           "set_random_seed", "to_categorical"]


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot rows for integer class labels, Keras's ``to_categorical``.

    ``x`` of shape ``(N,)`` (or ``(N, 1)``, squeezed as Keras does) gives
    float32 ``(N, num_classes)``; ``num_classes`` defaults to ``max(x) + 1``.
    Any other shape gets the class axis appended.
    """
    y = np.asarray(x)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.floor(y)):
            raise ValueError("to_categorical expects integer class labels; got non-integer values")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise TypeError(f"to_categorical expects integer class labels; got an array of dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0; got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(y.max())} does not fit num_classes={num_classes}")
    out = np.zeros((*y.shape, int(num_classes)), dtype=np.float32)
    np.put_along_axis(out, y[..., None].astype(np.intp), 1.0, axis=-1)
    return out


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0) -> np.ndarray:
    """Sequences of different lengths as one array ``(len(sequences), maxlen, ...)``, Keras's
    ``pad_sequences``: the input of an ``Embedding`` + ``Conv1D`` text model (word indices per
    review, say).

    Each sequence is cut to its last ``maxlen`` steps (``truncating='pre'``) or its first
    (``'post'``), and filled up with ``value`` before it (``padding='pre'``) or after it
    (``'post'``). ``maxlen`` defaults to the longest sequence. The steps may be numbers or
    arrays of one shape (taken from the first non-empty sequence), as in Keras.
    """
    if padding not in ("pre", "post"):
        raise ValueError(f"padding must be 'pre' or 'post'; got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"truncating must be 'pre' or 'post'; got {truncating!r}")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ValueError(f"sequences must be a list of sequences (lists or arrays); got {type(sequences).__name__}")
    rows, step_shape = [], None
    for i, sequence in enumerate(sequences):
        if isinstance(sequence, (str, bytes)) or not hasattr(sequence, "__len__"):
            raise ValueError(f"sequences[{i}] must be a list or array of steps; got {sequence!r}")
        steps = np.asarray(sequence, dtype=dtype) if len(sequence) else None
        if steps is not None:
            if steps.ndim == 0:
                raise ValueError(f"sequences[{i}] must be a list or array of steps; got {sequence!r}")
            if step_shape is None:
                step_shape = steps.shape[1:]
            elif steps.shape[1:] != step_shape:
                raise ValueError(f"sequences[{i}] has steps of shape {steps.shape[1:]}; the first non-empty sequence's "
                                 f"are {step_shape}")
        rows.append(steps)
    if maxlen is None:
        maxlen = max((0 if r is None else len(r) for r in rows), default=0)
    elif isinstance(maxlen, (bool, np.bool_)) or not isinstance(maxlen, numbers.Integral) or maxlen < 0:
        raise ValueError(f"maxlen must be None or an int >= 0; got {maxlen!r}")
    out = np.full((len(rows), int(maxlen), *(step_shape or ())), value, dtype=dtype)
    for i, steps in enumerate(rows):
        if steps is None or maxlen == 0:
            continue
        kept = steps[-maxlen:] if truncating == "pre" else steps[:maxlen]
        if padding == "pre":
            out[i, maxlen - len(kept):] = kept
        else:
            out[i, :len(kept)] = kept
    return out


def set_random_seed(seed: int) -> None:
    """Seed every generator a Keras script relies on, as Keras's ``set_random_seed`` does:
    convforge's (weights, shuffling, dropout, augmentation; :func:`convforge.seed`), Python's
    ``random`` and NumPy's global ``np.random`` (which convforge itself does not use, but a
    tutorial's own data generators do)."""
    import random

    _random.seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, **kwargs) -> str:
    """The model's graph in Graphviz's DOT language: a box per layer call, an arrow per tensor.

    Keras's ``model_to_dot`` returns a ``pydot.Dot``; convforge returns the DOT text itself (no
    pydot needed). The options are Keras's: a model nested in this one is one box per call unless
    ``expand_nested`` (then its layers' calls are drawn, not framed in a cluster as Keras's);
    ``subgraph`` is not supported.
    """
    if kwargs:
        raise NotImplementedError(f"convforge does not support the model_to_dot argument {next(iter(kwargs))!r}")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be 'TB', 'LR', 'BT' or 'RL'; got {rankdir!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not 0 < dpi <= 10000:
        raise ValueError(f"dpi must be a number in (0, 10000]; got {dpi!r}")
    graph = getattr(model, "_graph", model)
    if graph is None or not hasattr(graph, "_nodes"):
        raise ValueError(
            "plot_model needs a built model: give the first layer input_shape= (or an Input), or call the model "
            "on data first"
        )
    if not isinstance(expand_nested, (bool, np.bool_)):
        raise TypeError(f"expand_nested must be True or False; got {expand_nested!r}")
    nodes = [t._node for t in graph.inputs] + list(graph._nodes)
    # A model nested in this one is one box per call (Keras's default), unless expand_nested.
    groups: dict = {}  # id(node) -> (key of its box, the nested model)
    for node in nodes:
        nested = None if expand_nested else model._node_owner(node)
        if nested is not None:
            call = getattr(node, "nested_call", None)
            groups[id(node)] = (id(call) if call is not None else id(nested), nested)
    boxes: dict = {}  # key -> [name, the nodes in it, the nested model or None]
    for node in nodes:
        key, nested = groups.get(id(node), (id(node), None))
        boxes.setdefault(key, [f"n{len(boxes)}", [], nested])[1].append(node)

    def box_of(node) -> str:
        return boxes[groups.get(id(node), (id(node), None))[0]][0]

    lines = [
        "digraph model {",
        f'  graph [rankdir="{rankdir}", dpi={float(dpi):g}, concentrate=true];',
        '  node [shape=record, fontname="Helvetica", fontsize=11];',
    ]
    for name, members, nested in boxes.values():
        shown = nested if nested is not None else members[0].layer
        title = type(shown).__name__
        if show_layer_names:
            title = f"{shown.name} ({title})"
        fields = [title]
        if show_layer_activations and nested is None and hasattr(shown, "activation"):
            fields.append(f"activation: {getattr(shown.activation, 'activation_name', None) or 'linear'}")
        if show_dtype:
            fields.append(f"dtype: {np.dtype(shown.dtype).name}")
        if show_trainable:
            fields.append(f"trainable: {'Y' if shown.trainable else 'N'}")
        if show_shapes:
            call = getattr(members[0], "nested_call", None) if nested is not None else None
            if call is not None:  # a nested graph's call: what it took and what it returned
                entering, made = call.inputs, call.outputs
            else:
                entering, made = members[0].inputs, members[-1].outputs  # a layer, or a nested chain's ends
            shapes = [tuple(t.shape) for t in entering] or [tuple(made[0].shape)]
            seen = shapes[0] if len(shapes) == 1 else shapes
            out = [tuple(t.shape) for t in made]
            fields += [f"input: {seen}", f"output: {out[0] if len(out) == 1 else out}"]
        label = "|".join(_dot_escape(field) for field in fields)
        lines.append(f'  {name} [label="{{{label}}}"];')
    drawn = set()  # a nested call's box: one arrow from each box it reads
    for node in nodes:
        for t in node.inputs:
            source, target = box_of(t._node), box_of(node)
            if source != target and (groups.get(id(node)) is None or (source, target) not in drawn):
                drawn.add((source, target))
                lines.append(f"  {source} -> {target};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    """A field of a Graphviz record label: its special characters escaped."""
    for ch in "\\{}|<>\"":
        text = text.replace(ch, "\\" + ch)
    return text


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Draw the model's graph to ``to_file``, Keras's ``plot_model``.

    A ``.dot`` (or ``.gv``) file is written directly, needing nothing else; ``.png``, ``.svg``,
    ``.pdf`` and ``.jpg`` are rendered by Graphviz's ``dot`` program (``apt-get install graphviz``),
    as in Keras (which also needs pydot; convforge does not). Without ``dot`` an image name raises
    ImportError, as Keras does, saying how to get one. Returns None (Keras returns an IPython image
    in a notebook).
    """
    import os
    import shutil
    import subprocess

    kwargs.pop("splines", None)  # Keras's edge style: the DOT output keeps Graphviz's default
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                       rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable, **kwargs)
    path = os.fspath(to_file)
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(dot)
        return None
    formats = {"png": "png", "svg": "svg", "pdf": "pdf", "jpg": "jpg", "jpeg": "jpg"}
    if extension not in formats:
        raise ValueError(f"to_file must end in .png, .svg, .pdf, .jpg or .dot; got {path!r}")
    program = shutil.which("dot")
    if program is None:
        raise ImportError(
            f"plot_model needs Graphviz's 'dot' program to write {path!r} (apt-get install graphviz); "
            "or write the graph as text with to_file='model.dot'"
        )
    result = subprocess.run([program, f"-T{formats[extension]}", "-o", path], input=dot.encode(),
                            capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz's dot failed to write {path!r}: {result.stderr.decode(errors='replace')[-500:]}")
    return None


__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
