"""dense forward, backward-data and backward-weights (LeNet-5's F5/F6 and a wider MLP layer)."""

import cfbench

SPECS = cfbench.dense_specs()


def test_dense(bench, benchmark, run_bench):
    run_bench(bench, benchmark)
