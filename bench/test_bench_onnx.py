"""convforge predict vs onnxruntime on the exported model (see onnxbench.py for the table).

    python -m pytest bench/test_bench_onnx.py --benchmark-only
    python -m pytest bench/test_bench_onnx.py -q --benchmark-disable     # smoke: outputs checked, untimed

One group per (model, batch, threads) holding both contenders; outputs are checked against each
other before timing.
"""

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnxbench  # noqa: E402

# ResNet at 1,000 images here (its 10,000-image row is onnxbench.py's): the CI smoke runs each once.
BATCHES = {"lenet5": (1, 64, 10000), "resnet": (1, 64, 1000)}
CASES = [(name, batch) for name in onnxbench.models() for batch in BATCHES.get(name, (1, 64))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("onnx"))
    return {name: (model, shape, directory) for name, (model, shape) in onnxbench.models().items()}


@pytest.mark.parametrize("who", ["convforge", "onnxruntime"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name, batch", CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_predict_vs_onnxruntime(name, batch, threads, who, exported, benchmark):
    model, shape, directory = exported[name]
    contenders = onnxbench.Contenders(model, threads, directory)
    x = onnxbench.images(batch, shape)
    contenders.check(x)
    benchmark.group = f"onnx {name} batch{batch} t{threads}"
    benchmark.extra_info.update(model=name, batch=batch, threads=threads, contender=who)
    benchmark(getattr(contenders, who), x)
