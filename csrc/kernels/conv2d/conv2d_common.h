// Helpers shared by the conv2d passes (conv2d_fwd.h, conv2d_direct.h, conv2d_bwd_data.h,
// conv2d_bwd_weights.h): im2col/col2im rows, padded frames, the fused ReLU, output scatter.
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
//
// Unit-stride convolutions need no im2col at all: with the (padded) image stored at its padded
// row pitch IWp, the im2col row of tap (c, r, q) over output pixels laid out at the same pitch
// is the contiguous slice starting at image_c + r*dh*IWp + q*dw. The IWp - OW extra columns of
// each output row are computed and dropped. Strided convolutions gather explicit im2col rows.
//
// Determinism: every output element is produced by one work item that sums its terms in a fixed
// order, and the work decomposition depends on the problem only, never on the thread count.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/lane_sum.h"
#include "common/shapes.h"
#include "kernels/gemm/gemm_driver.h"

namespace convforge {
namespace {

// Where row k = (c, r, q) of the virtual im2col matrix reads from: kernel row r, column q.
struct KernelTap {
  int64_t c, r, q;
};
inline KernelTap tap_of(const ConvShape& s, int64_t k) {
  const int64_t per_c = s.kh * s.kw;
  const int64_t rq = k % per_c;
  return {k / per_c, rq / s.kw, rq % s.kw};
}

// Walks output pixels [p0, p0 + len) of one im2col row, split into runs that share an output
// row, and for each run the sub-range [lo, hi) of pixels that read real input (the rest read
// padding). visit(t, ih or -1, lo, hi, run_begin, run_end, iw_offset), with t the offset of
// the run's first pixel from p0, and the input column of output column o = o*sw + iw_offset.
template <class Visit>
void for_each_run(const ConvShape& s, int64_t r, int64_t q, int64_t p0, int64_t len, Visit&& visit) {
  const int64_t off_w = q * s.dw - s.pl;
  // Output columns whose input column o*sw + off_w lies in [0, iw).
  const int64_t o_lo = imin(off_w >= 0 ? 0 : ceil_div(-off_w, s.sw), s.ow);
  const int64_t o_hi = imin(imax(s.iw - off_w > 0 ? ceil_div(s.iw - off_w, s.sw) : 0, o_lo), s.ow);
  int64_t oh = p0 / s.ow, o = p0 % s.ow;
  for (int64_t t = 0; t < len; ++oh, o = 0) {
    const int64_t run = imin(s.ow - o, len - t);
    const int64_t ih = oh * s.sh - s.pt + r * s.dh;
    const int64_t e = o + run;
    const int64_t z1 = imin(imax(o_lo, o), e), z2 = imin(imax(o_hi, z1), e);
    visit(t, (ih >= 0 && ih < s.ih) ? ih : -1, z1, z2, o, e, off_w);
    t += run;
  }
}

// dst[t] = input value that output pixel p0 + t sees through tap (r, q) of channel plane x_c.
template <class T>
void im2col_row(const ConvShape& s, const T* x_c, int64_t r, int64_t q, int64_t p0, int64_t len, T* dst) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t e,
                                     int64_t off_w) {
    T* d = dst + t - b;  // indexed by output column
    if (ih < 0) {
      std::memset(d + b, 0, sizeof(T) * static_cast<std::size_t>(e - b));
      return;
    }
    const T* row = x_c + ih * s.iw + off_w;
    for (int64_t o = b; o < lo; ++o) d[o] = T(0);
    if (s.sw == 1) {
      std::memcpy(d + lo, row + lo, sizeof(T) * static_cast<std::size_t>(hi - lo));
    } else if (s.sw == 2) {
      // A constant stride lets the compiler vectorise the gather (even/odd permutes); with the
      // runtime stride below it is an element at a time (40% of the 7x7/2 stem's forward).
      for (int64_t o = lo; o < hi; ++o) d[o] = row[2 * o];
    } else {
      for (int64_t o = lo; o < hi; ++o) d[o] = row[o * s.sw];
    }
    for (int64_t o = hi; o < e; ++o) d[o] = T(0);
  });
}

// The adjoint of im2col_row: dx_c[...] += src[t] for every pixel that reads a real input.
template <class T>
void col2im_row_add(const ConvShape& s, const T* src, int64_t r, int64_t q, int64_t p0, int64_t len, T* dx_c) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t,
                                     int64_t off_w) {
    if (ih < 0) return;
    const T* v = src + t - b;
    T* row = dx_c + ih * s.iw + off_w;
    if (s.sw == 1) {
      for (int64_t o = lo; o < hi; ++o) row[o] += v[o];
    } else if (s.sw == 2) {  // constant stride: vectorisable, as in im2col_row
      for (int64_t o = lo; o < hi; ++o) row[2 * o] += v[o];
    } else {
      for (int64_t o = lo; o < hi; ++o) row[o * s.sw] += v[o];
    }
  });
}

// d[b] = 0 for b < lo and hi <= b < width, d[b] = s[b - lo] for lo <= b < hi: one frame row.
// Frame rows are short (30 columns for a 28-wide 'same' layer), and a memset, memcpy, memset
// per row cost more in calls than in bytes: those library calls drew 12% of the samples of a
// 16-channel 28x28 direct layer. Here fixed-size copies (vector moves) and single elements; the
// empty asm after each step keeps GCC from turning the loops back into those calls (its loop
// distribution recognises copy and fill loops).
template <class T>
inline void copy_row(T* d, const T* s, int64_t lo, int64_t hi, int64_t width) {
  int64_t b = 0;
  for (; b < lo; ++b) {
    d[b] = T(0);
    __asm__ volatile("" ::: "memory");
  }
  for (; b + 64 / static_cast<int64_t>(sizeof(T)) <= hi; b += 64 / sizeof(T)) {
    std::memcpy(d + b, s + (b - lo), 64);
    __asm__ volatile("" ::: "memory");
  }
  for (; b + 16 / static_cast<int64_t>(sizeof(T)) <= hi; b += 16 / sizeof(T)) {
    std::memcpy(d + b, s + (b - lo), 16);
    __asm__ volatile("" ::: "memory");
  }
  for (; b < hi; ++b) {
    d[b] = s[b - lo];
    __asm__ volatile("" ::: "memory");
  }
  for (; b < width; ++b) {
    d[b] = T(0);
    __asm__ volatile("" ::: "memory");
  }
}

// dst[a - a0][b] = src[a - off_t][b - off_l] (zero outside src) for rows a in [a0, a0 + rows)
// and columns b in [0, width): a window of src placed in a zero-padded frame.
template <class T>
void fill_window(const T* src, int64_t src_h, int64_t src_w, int64_t off_t, int64_t off_l, int64_t a0, int64_t rows,
                 int64_t width, T* dst) {
  const int64_t b_lo = imin(imax(off_l, 0), width), b_hi = imax(imin(src_w + off_l, width), b_lo);
  for (int64_t a = a0; a < a0 + rows; ++a, dst += width) {
    const int64_t sr = a - off_t;
    if (sr < 0 || sr >= src_h) {
      copy_row(dst, src, width, width, width);  // a padding row: all zeros, nothing read
      continue;
    }
    copy_row(dst, src + sr * src_w + (b_lo - off_l), b_lo, b_hi, width);
  }
}

// c[i*ldc + j] = relu(c[i*ldc + j]) for i < rows, j < n: the fused post-op, applied to a block
// of output the work item has just written (still in L1/L2) instead of another pass over memory.
template <class T>
void relu_rows(T* c, int64_t ldc, int64_t rows, int64_t n) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict r = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) r[j] = relu_value(r[j]);
  }
}

// y[j] = post(y[j] + r[j]) for j < n, post = relu_value if `relu`: a residual added to outputs
// the work item has just written (conv + bias, rounded), as the Add and ReLU after it would.
template <class T>
void add_residual_row(T* y, const T* r, int64_t n, bool relu) {
  T* __restrict yy = y;
  const T* __restrict rr = r;
  if (relu) {
    for (int64_t j = 0; j < n; ++j) yy[j] = relu_value(yy[j] + rr[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) yy[j] = yy[j] + rr[j];
  }
}

// dst = post(dst + residual) over a whole forward output (s.relu: post = ReLU), image by image:
// the epilogue of the forward forms that do not add a residual themselves (conv2d_algos.h).
template <class T>
void add_residual(const ConvShape& s, const T* residual, T* dst) {
  const int64_t per_image = s.oc * s.oh * s.ow;
  // A memory pass: threads from ~1M elements (plan_threads' floor counts operations).
  parallel_for(plan_threads(s.mb, 2.0 * static_cast<double>(s.mb * per_image)), s.mb, [&](int64_t n, int) {
    add_residual_row(dst + n * per_image, residual + n * per_image, per_image, s.relu);
  });
}

// Copies the `ow` valid columns of each output row of a pitch-`pitch` block (columns
// [j0, j0 + nb) of the padded-pitch pixel space) to their places in an OH x OW plane, adding
// bias if given, then applying ReLU if `relu`.
template <class T>
void scatter_rows(const T* src, int64_t ld_src, int64_t rows, int64_t j0, int64_t nb, int64_t pitch, int64_t ow,
                  const T* bias, T* dst, int64_t plane, bool relu = false) {
  const int64_t row0 = j0 / pitch, col0 = j0 % pitch;
  for (int64_t i = 0; i < rows; ++i) {
    const T add = bias != nullptr ? bias[i] : T(0);
    int64_t row = row0, col = col0;
    for (int64_t j = 0; j < nb; ++row, col = 0) {
      const int64_t run = imin(pitch - col, nb - j);
      const int64_t valid = imax(imin(ow - col, run), 0);
      const T* __restrict s = src + i * ld_src + j;
      T* __restrict d = dst + i * plane + row * ow + col;
      if (relu) {
        for (int64_t t = 0; t < valid; ++t) d[t] = relu_value(s[t] + add);
      } else {
        for (int64_t t = 0; t < valid; ++t) d[t] = s[t] + add;
      }
      j += run;
    }
  }
}

// Offsets of each reduction row's first element from the start of a frame of `rows` x `pitch`
// per channel, for taps (c, r, q) with dilation (dh, dw); computed once per call.
inline void tap_offsets(int64_t channels, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t rows, int64_t pitch,
                        int64_t* off) {
  for (int64_t c = 0, k = 0; c < channels; ++c)
    for (int64_t r = 0; r < kh; ++r)
      for (int64_t q = 0; q < kw; ++q, ++k) off[k] = c * rows * pitch + r * dh * pitch + q * dw;
}

// The unit-stride passes work on a zero-padded frame whose rows are (KW-1)*dw wider than the
// output's and which has (KH-1)*dh more rows. That is cheap while the kernel's reach is not much
// larger than the image it slides over (every real CNN layer); a huge dilation or padding with a
// tiny output would make the frame, and its scratch memory, arbitrarily larger than the work,
// so those problems take the im2col path, whose scratch is bounded by the output.
inline bool frame_is_small(int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t rows, int64_t cols) {
  return (kh - 1) * dh <= imax(rows, 16) && (kw - 1) * dw <= imax(cols, 16);
}

constexpr int64_t kPixBlock = 512;  // output pixels per work item (B block of kc x 512 in L2)


// How a unit-stride pass splits its out_h x out_w outputs, laid out at the frame's pitch, into
// blocks of columns, and which rows of the frame (frame_rows x pitch) a block reads.
struct FramePlan {
  int64_t pitch, frame_rows, kernel_reach;  // kernel_reach = (KH - 1) * dh
  int64_t Pp, nblk, NB, win_rows;

  // Rows of the frame that the block of nb columns starting at column j0 reads, from row
  // j0 / pitch: its output rows plus the kernel's reach, plus one more because the dropped
  // columns at the end of its last row wrap into the next frame row.
  int64_t block_rows(int64_t j0, int64_t nb) const {
    const int64_t a0 = j0 / pitch;
    return imin(frame_rows - a0, (j0 + nb - 1) / pitch - a0 + 2 + kernel_reach);
  }
};

template <class UK>
FramePlan frame_plan(int64_t out_h, int64_t out_w, int64_t pitch, int64_t frame_rows, int64_t kernel_reach) {
  FramePlan f{pitch, frame_rows, kernel_reach, 0, 0, 0, 0};
  f.Pp = (out_h - 1) * pitch + out_w;
  f.nblk = ceil_div(f.Pp, kPixBlock);
  f.NB = imin(round_up(ceil_div(f.Pp, f.nblk), UK::NR), f.Pp);
  f.win_rows = imin(frame_rows, ceil_div(f.NB, pitch) + 2 + kernel_reach);
  return f;
}

// w[k*OC + o] = filter o's weight at tap k = (c, r, q): the layout of the kernels that keep a
// tap's OC weights in vectors. `wei` is OIHW, or with `transposed_flipped` the kernel of the
// backward problem: filter o's tap (c, r, q) at wei[c][o][KH-1-r][KW-1-q]. Channel by channel,
// so that the KHW x OC slice being written stays in L1.
template <class T>
void pack_filters_per_tap(const ConvShape& s, const T* wei, bool transposed_flipped, T* w, int threads = 1) {
  const int64_t KHW = s.kh * s.kw, OC = s.oc;
  // Input channels write disjoint parts of w: threads may share them (a batch-1 forward's
  // packing of a 64x64x3x3 filter bank was a fifth of the layer, run by one thread).
  parallel_for(threads, s.ic, [&](int64_t c, int) {
    for (int64_t o = 0; o < OC; ++o) {
      T* dst_c = w + c * KHW * OC + o;
      if (transposed_flipped) {
        const T* f = wei + (c * OC + o) * KHW;
        for (int64_t rq = 0; rq < KHW; ++rq) dst_c[rq * OC] = f[KHW - 1 - rq];
      } else {
        const T* f = wei + (o * s.ic + c) * KHW;
        for (int64_t rq = 0; rq < KHW; ++rq) dst_c[rq * OC] = f[rq];
      }
    }
  });
}

}  // namespace
}  // namespace convforge
