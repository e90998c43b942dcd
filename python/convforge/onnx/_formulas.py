"""Activations that ONNX files spell as elementwise arithmetic, recognised and imported as one layer.

Before opset 20 ONNX had no GELU: convforge's exporter writes ``0.5 x (1 + erf(x / sqrt 2))`` (or
its tanh form) as Mul/Erf/Add nodes, PyTorch's exporter the same formula in another order
(Div, Erf, Add, Mul, Mul). Node by node, the importer met a Mul by a constant and stopped. ONNX
has no SiLU (swish) either: PyTorch's ``nn.SiLU`` is ``Mul(x, Sigmoid(x))``, which node by node is
a Multiply of two tensors, a graph that no Sequential is (and Mish, ``x tanh(softplus(x))``, before
opset 18; PyTorch's Softsign, ``x / (1 + |x|)``, and its Hardswish before opset 14,
``x * HardSigmoid(x)``). Here each Erf, Tanh, Sigmoid, Softplus, Abs or HardSigmoid node is
taken as the heart of a possible formula: the elementwise nodes around it (Mul, Div, Add, Sub,
Pow with scalar constants) that compute one output from one input tensor x, read by nothing
outside, are evaluated on sample values of x and compared with GELU's two forms, swish, mish,
softsign and hard_silu. A match becomes that layer on x; anything else is left to the ordinary
importers (a plain Tanh is a Tanh). No pattern of node order is assumed, so any exporter's
arrangement of the same formula is found.
"""

from __future__ import annotations

import math

import numpy as np

_ARITHMETIC = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract, "Pow": np.power}
_CORES = {"Erf": np.vectorize(math.erf, otypes=[np.float64]), "Tanh": np.tanh,
          "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "Softplus": lambda x: np.logaddexp(0.0, x), "Abs": np.abs,
          "HardSigmoid": lambda x, alpha=0.2, beta=0.5: np.clip(alpha * x + beta, 0.0, 1.0)}
_SAMPLES = np.concatenate([np.linspace(-6.0, 6.0, 49), [-0.3, 0.1, 0.7, 2.9]])
_MAX_NODES = 12  # a GELU is 5 (erf) to 10 (tanh) nodes


def _gelu(x: np.ndarray, approximate: bool) -> np.ndarray:
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _CORES["Erf"](x / math.sqrt(2.0)))


# The activations a formula may be: (its values on the samples, the layer it imports as).
_FORMULAS = (
    (_gelu(_SAMPLES, False), lambda layers: layers.GELU(approximate=False)),
    (_gelu(_SAMPLES, True), lambda layers: layers.GELU(approximate=True)),
    (_SAMPLES * _CORES["Sigmoid"](_SAMPLES), lambda layers: layers.Swish()),
    (_SAMPLES * np.tanh(np.logaddexp(0.0, _SAMPLES)), lambda layers: layers.activations.Mish()),
    (_SAMPLES / (1.0 + np.abs(_SAMPLES)), lambda layers: layers.activations.Softsign()),
    (_SAMPLES * np.clip(_SAMPLES + 3.0, 0.0, 6.0) / 6.0, lambda layers: layers.activations.HardSiLU()),
)


class _Graph:
    def __init__(self, ctx, nodes):
        self.ctx = ctx
        self.order = {id(n): i for i, n in enumerate(nodes)}
        self.producer = {out: n for n in nodes for out in n.output if out}
        self._scalars: dict[str, float | None] = {}
        self.readers: dict[str, list] = {}
        for n in nodes:
            for name in n.input:
                if name:
                    self.readers.setdefault(name, []).append(n)

    def scalar(self, name: str):
        """The value of a one-value constant tensor (an initializer or a Constant node), or None."""
        if name in self._scalars:
            return self._scalars[name]
        ctx = self.ctx
        if name in ctx._tensors:
            tensor = ctx._tensors[name]
        else:
            node = self.producer.get(name)
            if node is None or node.op_type != "Constant" or len(node.attribute) != 1 \
                    or node.attribute[0].name != "value":
                return None
            tensor = node.attribute[0].t
        value = None
        if math.prod(tensor.dims) == 1:  # read nothing larger (a hostile file's huge initializer)
            try:
                array = np.asarray(ctx.tensor_value(tensor, f"constant {name!r}"))
                if array.size == 1 and array.dtype.kind == "f":
                    value = float(array.reshape(-1)[0])
            except Exception:  # noqa: BLE001 - not a readable constant: not part of a formula
                value = None
        self._scalars[name] = value
        return value

    def region(self, output_node, x: str | None):
        """The nodes computing ``output_node`` from constants and one computed tensor (``x``, or
        the one found), as (x, nodes in graph order), or None."""
        nodes, externals, todo = {}, set(), [output_node]
        while todo:
            node = todo.pop()
            if id(node) in nodes:
                continue
            if node.op_type not in _ARITHMETIC and node.op_type not in _CORES:
                return None
            nodes[id(node)] = node
            if len(nodes) > _MAX_NODES:
                return None
            for name in node.input:
                if name == x or (self.scalar(name) is not None):
                    if name == x:
                        externals.add(name)
                    continue
                producer = self.producer.get(name)
                if producer is None or (x is None and producer.op_type not in _ARITHMETIC | _CORES):
                    externals.add(name)
                else:
                    todo.append(producer)
        if len(externals) != 1:
            return None
        return next(iter(externals)), sorted(nodes.values(), key=lambda n: self.order[id(n)])

    def tensors_read(self, output_node) -> list[str]:
        """The computed tensors read by the arithmetic behind ``output_node`` (at most _MAX_NODES
        nodes back), earliest made first."""
        seen, names, todo = set(), {}, [output_node]
        while todo and len(seen) < _MAX_NODES:
            node = todo.pop()
            if id(node) in seen or (node.op_type not in _ARITHMETIC and node.op_type not in _CORES):
                continue
            seen.add(id(node))
            for name in node.input:
                if name and self.scalar(name) is None:
                    producer = self.producer.get(name)
                    names[name] = -1 if producer is None else self.order[id(producer)]
                    if producer is not None:
                        todo.append(producer)
        return sorted(names, key=names.get)

    def closed(self, nodes, output_node) -> bool:
        """Nothing outside ``nodes`` reads what they make, save ``output_node``'s output."""
        inside = {id(n) for n in nodes}
        for node in nodes:
            if node is output_node:
                continue
            for out in node.output:
                if out in self.ctx.graph_outputs or any(id(r) not in inside for r in self.readers.get(out, [])):
                    return False
        return True

    def evaluate(self, nodes, x: str):
        values = {x: _SAMPLES}
        with np.errstate(all="ignore"):
            for node in nodes:
                args = [values[n] if n in values else self.scalar(n) for n in node.input]
                if any(a is None for a in args):
                    return None
                # HardSigmoid's alpha and beta are its parameters: float attributes, no others.
                attrs = {a.name: a.f for a in node.attribute} if node.op_type == "HardSigmoid" else {}
                if any(a.name not in ("alpha", "beta") or a.type != 1 for a in node.attribute) \
                        and node.op_type == "HardSigmoid":
                    return None
                values[node.output[0]] = (_CORES[node.op_type](*args, **attrs) if node.op_type in _CORES
                                          else _ARITHMETIC[node.op_type](*args))
        return values[nodes[-1].output[0]]


def find_formulas(ctx, nodes) -> list[tuple]:
    """``[(x, output node, region nodes, make layer)]`` for each GELU or swish formula in the
    graph; ``make(convforge.layers)`` is its layer."""
    graph = _Graph(ctx, nodes)
    found, taken = [], set()
    for core in nodes:
        if core.op_type not in _CORES or id(core) in taken or len(core.output) != 1:
            continue
        # The candidate outputs: the core's readers onwards, one arithmetic node at a time.
        ends, tensor = [], core.output[0]
        for _ in range(4):
            readers = graph.readers.get(tensor, [])
            if len(readers) != 1 or readers[0].op_type not in _ARITHMETIC or tensor in ctx.graph_outputs:
                break
            ends.append(readers[0])
            tensor = readers[0].output[0]
        for end in reversed(ends):  # the whole formula first
            match = _formula_ending_at(graph, end, taken)
            if match is not None:
                found.append(match)
                taken.update(id(n) for n in match[2])
                break
    return found


def _formula_ending_at(graph, end, taken):
    # x is the one computed tensor the arithmetic reads; where x itself comes from arithmetic (a
    # residual Add before the activation), each tensor the formula reads is tried as x instead.
    candidates = [None] + graph.tensors_read(end)
    for x in candidates:
        match = graph.region(end, x)
        if match is None:
            continue
        x, region = match
        if not graph.closed(region, end) or any(id(n) in taken for n in region):
            continue
        result = graph.evaluate(region, x)
        if result is None:
            continue
        for values, make in _FORMULAS:
            if np.allclose(result, values, rtol=1e-5, atol=1e-6):
                return x, end, region, make
    return None
