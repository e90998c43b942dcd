"""conv2d forward, backward-data and backward-weights on the named shapes (tests/shapes.py BENCH_CONV)."""

import cfbench

SPECS = cfbench.conv_specs()


def test_conv2d(bench, benchmark, run_bench):
    run_bench(bench, benchmark)
