"""Named problem shapes, defined once and shared by the tests and bench/.

A conv case is (N, C, H, W, K, R, S, stride, padding, dilation) in the NCHW/OIHW
layouts; ids read like oneDNN's (``mb64ic1ih28oc6kh5sh1ph2``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvCase:
    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    # (pass, algorithm) pairs the default choice must take on every ISA that compiles the
    # algorithm (tests/test_conv2d.py asserts them): what the case exists to exercise.
    runs: tuple = ()

    @property
    def id(self) -> str:
        return f"{self.name}-mb{self.n}ic{self.c}ih{self.h}iw{self.w}oc{self.k}kh{self.r}kw{self.s}" + (
            f"s{self.stride}p{self.padding}d{self.dilation}".replace(" ", "")
        )

    def batch(self, n: int) -> "ConvCase":
        # The batch size enters some choices (tapwise_gemm pays from 8 images): `runs` is dropped.
        return ConvCase(self.name, n, self.c, self.h, self.w, self.k, self.r, self.s, self.stride, self.padding, self.dilation)


# The layers the benchmarks time (the named shapes).
BENCH_CONV = [
    ConvCase("lenet_c1", 64, 1, 28, 28, 6, 5, 5, 1, 2, runs=(("fwd", "pixels"),)),
    ConvCase("lenet_c3", 64, 6, 14, 14, 16, 5, 5, 1, 0),
    ConvCase("lenet_c1_n256", 256, 1, 28, 28, 6, 5, 5, 1, 2),
    ConvCase("lenet_c3_n256", 256, 6, 14, 14, 16, 5, 5, 1, 0),
    ConvCase("resnet", 32, 64, 56, 56, 64, 3, 3, 1, 1),
    ConvCase("vgg", 16, 128, 28, 28, 128, 3, 3, 1, 1),
    ConvCase("stem", 8, 3, 224, 224, 64, 7, 7, 2, 3),
    ConvCase("pointwise", 32, 256, 14, 14, 256, 1, 1, 1, 0, runs=(("fwd", "direct"), ("bwd_data", "direct"))),
]

BENCH_POOL = [(64, 6, 28, 28), (64, 16, 10, 10), (32, 64, 56, 56)]

# Correctness cases: LeNet's layers at small batch, then sizes that straddle the SIMD widths
# (16 floats per AVX-512 vector, 8 per AVX2, micro-kernel tiles of 32/16 columns and 12/6 rows),
# every padding form, strides 1-3, dilation, batch 1 and odd batches.
TEST_CONV = [
    ConvCase("lenet_c1", 3, 1, 28, 28, 6, 5, 5, 1, 2),
    ConvCase("lenet_c3", 2, 6, 14, 14, 16, 5, 5, 1, 0),
    ConvCase("keras_c1", 1, 1, 28, 28, 64, 3, 3, 1, 0),
    ConvCase("w1", 1, 3, 5, 1, 4, 1, 1),
    ConvCase("w2", 3, 2, 4, 2, 5, 2, 2, 1, 1),
    ConvCase("w3", 1, 7, 3, 3, 7, 3, 3, 1, "same"),
    ConvCase("w7", 2, 1, 7, 7, 2, 3, 3, 2, 1),
    ConvCase("w15", 1, 15, 9, 15, 17, 3, 3, 1, 1),
    ConvCase("w16", 3, 16, 6, 16, 16, 3, 3, 1, 0),
    ConvCase("winograd", 22, 32, 12, 15, 33, 3, 3, 1, 1, runs=(("fwd", "winograd_f4x3"), ("bwd_data", "winograd_f4x3"))),
    ConvCase("w17", 1, 17, 5, 17, 15, 3, 1, 1, (1, 0), runs=(("fwd", "implicit_gemm"), ("bwd_data", "implicit_gemm"))),
    ConvCase("w31", 2, 2, 3, 31, 31, 1, 3, 1, "same"),
    ConvCase("w33", 1, 33, 4, 33, 33, 3, 3, 2, "same"),
    ConvCase("c12_rows", 1, 4, 8, 8, 12, 3, 3),
    ConvCase("c13_rows", 2, 4, 8, 8, 13, 3, 3),
    ConvCase("c25_rows", 1, 3, 9, 10, 25, 2, 2, 1, ((0, 1), (1, 0))),
    ConvCase("stride3", 2, 3, 17, 19, 5, 3, 3, 3, 1, runs=(("fwd", "im2col_gemm"), ("bwd_data", "col2im_gemm"), ("bwd_weights", "im2col_dot"))),
    ConvCase("stride2_same", 1, 3, 15, 16, 4, 4, 4, 2, "same"),
    ConvCase("stride_hw", 1, 2, 13, 11, 3, 3, 2, (2, 3), "valid"),
    ConvCase("dilation2", 2, 3, 15, 15, 4, 3, 3, 1, 2, 2),
    ConvCase("dilation_hw", 1, 2, 16, 17, 3, 3, 3, 2, "same", (2, 3)),
    ConvCase("asym_pad", 1, 2, 7, 9, 3, 3, 3, 1, ((2, 0), (0, 3))),
    ConvCase("kernel_eq_input", 2, 3, 5, 5, 4, 5, 5),
    ConvCase("big_pad", 1, 1, 2, 3, 2, 3, 3, 1, 3),
    ConvCase("pointwise", 2, 32, 7, 7, 33, 1, 1),
    ConvCase("pointwise_s2", 1, 17, 9, 9, 9, 1, 1, 2),
    ConvCase("deep_k", 1, 40, 6, 6, 8, 3, 3, 1, 1),  # K = 360 > one 256 reduction block
    ConvCase("many_oc", 1, 2, 6, 6, 300, 3, 3, 1, 1),  # > 256 output channels
    ConvCase("wide_rows", 1, 2, 3, 600, 3, 3, 3, 1, 1),  # > one 512-pixel block per row
    ConvCase("batch5", 5, 3, 9, 9, 6, 3, 3, 1, 1),
    ConvCase("batch17", 17, 2, 6, 6, 3, 3, 3, 1, 0),  # more images than weight-gradient chunks
    # 256 filters x 1152 taps: several reduction blocks in every pass, unit stride and strided
    ConvCase("k_blocked", 1, 128, 4, 4, 256, 3, 3, 1, 1),
    ConvCase("k_blocked_s2", 2, 128, 5, 5, 256, 3, 3, 2, 1),
    # Weight gradients as outer products (>= 12 filters, kernel rows up to 7 wide): row
    # dilation, a 7x7 stride-2 stem, a 6-wide kernel with lopsided padding, and an 8-wide one
    # (too wide: the dot-product path).
    ConvCase("outer_dil_h", 1, 3, 12, 11, 16, 3, 3, 1, "same", (2, 1), runs=(("bwd_weights", "outer"),)),
    ConvCase("outer_stem", 2, 3, 19, 20, 20, 7, 7, 2, 3, runs=(("bwd_weights", "outer"),)),
    ConvCase("outer_kw6", 3, 2, 9, 13, 40, 2, 6, 1, ((0, 1), (3, 2)), runs=(("bwd_weights", "outer"),)),
    ConvCase("outer_kw8", 1, 2, 6, 12, 16, 1, 8, runs=(("bwd_weights", "implicit_dot"),)),
    # Weight gradients by Winograd (AVX-512, channels in whole vectors of 16): the default from
    # 128 tiles mostly output (16 images of 14x14: 256 tiles, 77%), and forced on 'valid',
    # padding 2 with 3 channel vectors against 3 filter vectors, asymmetric padding, and
    # one tile a row.
    ConvCase("wino_wgrad", 16, 16, 14, 14, 32, 3, 3, 1, "same", runs=(("bwd_weights", "winograd_f4x3"),)),
    ConvCase("wino_wgrad_valid", 2, 16, 9, 11, 16, 3, 3, 1, 0),
    ConvCase("wino_wgrad_pad2", 1, 48, 6, 5, 48, 3, 3, 1, 2),
    ConvCase("wino_wgrad_asym", 3, 16, 7, 10, 16, 3, 3, 1, ((2, 0), (0, 1))),
    ConvCase("wino_wgrad_rows", 1, 16, 30, 3, 32, 3, 3, 1, 1),
    # Forward with the output channels along the vector lanes (conv2d_fwd_direct: unit stride,
    # kernel rows 1, 3, 5 or 7 wide, 16 or 32 filters; AVX-512): 32 filters over three column
    # blocks with 'same' padding and a pixel tail, a 7x7 kernel on 32 filters (8-pixel blocks),
    # three bands of rows with row dilation, 3-pixel rows, and a 5x3 kernel.
    # (More than 45 taps per output: below, the pixels form is the default where rows fill the lanes.)
    ConvCase("direct_kv2", 2, 6, 13, 30, 32, 3, 3, 1, "same", runs=(("fwd", "direct"),)),
    # Few taps (K = 27 and 9): the pixels form in groups of at most 8 filters (16 -> 8 + 8, 20 ->
    # 7 + 7 + 6) where output rows fill 3/4 of the lanes (13 of 16), the direct form where they
    # do not (9 of 16; conv2d_algos.h, fwd_pixels_pays).
    ConvCase("few_taps_pixels", 31, 3, 8, 13, 20, 3, 3, 1, "same", runs=(("fwd", "pixels"),)),
    ConvCase("few_taps_16", 32, 1, 12, 13, 16, 3, 3, 1, 1, runs=(("fwd", "pixels"),)),
    ConvCase("few_taps_narrow", 3, 3, 8, 9, 16, 3, 3, 1, "same", runs=(("fwd", "direct"),)),
    ConvCase("direct_kw7", 1, 2, 9, 20, 32, 7, 7, 1, 3, runs=(("fwd", "direct"),)),
    ConvCase("direct_bands", 2, 2, 40, 30, 16, 5, 5, 1, "same", (2, 1), runs=(("fwd", "direct"),)),
    ConvCase("direct_narrow", 3, 6, 6, 3, 16, 3, 3, 1, 1, runs=(("fwd", "direct"),)),
    ConvCase("direct_5x3", 1, 4, 8, 9, 16, 5, 3, runs=(("fwd", "direct"),)),
    # Strided direct forward: a 7x7 stride-2 stem on odd sizes, stride 2 without padding (the
    # image read in place) on a width whose last column no output reads, and row / column
    # strides alone (two rows per call with a row stride of 2).
    ConvCase("direct_s2_stem", 2, 3, 23, 22, 32, 7, 7, 2, 3, runs=(("fwd", "direct"),)),
    ConvCase("direct_s2_valid", 1, 4, 12, 14, 16, 3, 3, 2, 0, runs=(("fwd", "direct"),)),
    ConvCase("direct_s21", 1, 2, 11, 9, 16, 5, 5, (2, 1), 2, runs=(("fwd", "direct"),)),
    ConvCase("direct_s12", 1, 2, 9, 16, 32, 3, 3, (1, 2), 1, runs=(("fwd", "direct"),)),
    # 1x1 kernels in the direct form (a matrix product with the output channels along the
    # lanes): 32 filters two rows at a time over 9 rows (an odd one left) of 17 pixels (blocks of
    # 6, 6, 5), 16 filters, 48 (a group of 32 then one of 16), one row, and stride 2.
    ConvCase("direct_1x1", 2, 40, 9, 17, 32, 1, 1, runs=(("fwd", "direct"),)),
    ConvCase("direct_1x1_kv1", 1, 5, 6, 10, 16, 1, 1, runs=(("fwd", "direct"),)),
    ConvCase("direct_1x1_48", 1, 7, 5, 20, 48, 1, 1, runs=(("fwd", "direct"),)),
    ConvCase("direct_1x1_row", 1, 46, 1, 30, 32, 1, 1, runs=(("fwd", "direct"),)),
    ConvCase("direct_1x1_s2", 2, 9, 13, 12, 32, 1, 1, 2, runs=(("fwd", "direct"),)),
    ConvCase("direct_bwd_1x1", 2, 32, 7, 9, 20, 1, 1, runs=(("bwd_data", "direct"),)),
    # Backward data as the same direct forward over dy (16 or 32 input channels): 'same'
    # padding, padding past the kernel's reach (a negative padding of dy: a crop) on a 3x5
    # kernel, dy's paddings -1, 1, 0, 0 (summing to zero), and row dilation.
    ConvCase("direct_bwd_same", 2, 16, 9, 13, 5, 3, 3, 1, "same", runs=(("bwd_data", "direct"),)),
    ConvCase("direct_bwd_crop", 1, 32, 7, 6, 3, 3, 5, 1, ((3, 0), (1, 4)), runs=(("bwd_data", "direct"),)),
    ConvCase("direct_bwd_shift", 1, 16, 6, 7, 3, 3, 3, 1, ((3, 1), (2, 2)), runs=(("bwd_data", "direct"),)),
    ConvCase("direct_bwd_dil", 2, 16, 12, 11, 4, 3, 3, 1, 2, (2, 1), runs=(("bwd_data", "direct"),)),
    # Backward data of 'valid' unit-stride convolutions over >= 8 images, as per-tap products
    # added into shifted dx (conv2d_bwd_data_tapwise): LeNet's C3, dilation on a non-square
    # image, 13 input channels (two row panels) with 516 columns (two pixel blocks), and 260
    # filters (two reduction blocks).
    ConvCase("tapwise_c3", 8, 6, 14, 14, 16, 5, 5, runs=(("bwd_data", "tapwise_gemm"),)),
    ConvCase("tapwise_dilated", 9, 3, 13, 11, 5, 3, 3, 1, 0, 2, runs=(("bwd_data", "tapwise_gemm"),)),
    ConvCase("tapwise_blocks", 8, 13, 24, 26, 7, 5, 5, runs=(("bwd_data", "tapwise_gemm"),)),
    ConvCase("tapwise_many_oc", 8, 2, 6, 6, 260, 3, 3, runs=(("bwd_data", "tapwise_gemm"),)),
    # 1x1 kernels over >= 8 images: one product written straight into dx; 300 filters (two
    # reduction blocks) on 20 input channels (two row panels), and 600 pixels (two column blocks).
    ConvCase("tapwise_1x1", 8, 20, 5, 7, 300, 1, 1, runs=(("bwd_data", "tapwise_gemm"),)),
    ConvCase("tapwise_1x1_wide", 8, 3, 30, 20, 5, 1, 1, runs=(("bwd_data", "tapwise_gemm"),)),
    # Strided backward data by stride phases (conv2d_bwd_data_phases: dx split by pixel
    # position modulo the stride, each phase a direct pass over dy with a slice of the kernel):
    # the example ResNet's 'same' stride 2 (no top padding: slices of 2 and 1) on an odd width,
    # padding 1 (slices of 1 and 2) with 32 channels (two vectors per call) on odd sizes, a 5x5
    # kernel (slices 3 and 2) with 48 channels (a group of two vectors, then one), stride 3
    # (nine 1x1 slices), a row stride alone, and a 1x1 kernel at stride 2 (three phases without
    # a tap, all zeros: applies, col2im pays). Three must decline: dilated, a padding as large as
    # the kernel, stride 5.
    ConvCase("phases_same", 2, 16, 12, 13, 8, 3, 3, 2, "same", runs=(("bwd_data", "direct_phases"),)),
    ConvCase("phases_p1_kv2", 1, 32, 11, 9, 20, 3, 3, 2, 1, runs=(("bwd_data", "direct_phases"),)),
    ConvCase("phases_5x5", 1, 48, 9, 10, 8, 5, 5, 2, 2, runs=(("bwd_data", "direct_phases"),)),
    ConvCase("phases_s3", 1, 16, 17, 19, 5, 3, 3, 3, 1, runs=(("bwd_data", "direct_phases"),)),
    ConvCase("phases_s21", 1, 16, 11, 9, 3, 3, 3, (2, 1), 1, runs=(("bwd_data", "direct_phases"),)),
    ConvCase("phases_1x1_s2", 2, 16, 9, 9, 5, 1, 1, 2, 0, runs=(("bwd_data", "col2im_gemm"),)),
    ConvCase("phases_dilated", 1, 16, 13, 13, 4, 3, 3, 2, 2, 2),
    ConvCase("phases_big_pad", 1, 16, 8, 8, 4, 3, 3, 2, 3),
    ConvCase("phases_s5", 1, 16, 16, 16, 4, 5, 5, 5, 0),
]
