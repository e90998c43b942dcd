"""2x2/2 max-pool forward (with indices) and backward; ReLU forward and backward, incl. a 64 Mi-element tensor."""

import cfbench

SPECS = cfbench.pool_specs() + cfbench.relu_specs()


def test_pool_relu(bench, benchmark, run_bench):
    run_bench(bench, benchmark)
