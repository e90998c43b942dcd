// Batch normalisation drivers, templates over a row-primitive struct (kernels/rows/): each ISA
// source instantiates them with its own rows. The training forward works on blocks of channels
// (BatchnormBlocks), the backward on blocks of channels or, for tensors that fit in L2, on chunks
// of images (BatchnormSplit); each reduces a channel in a fixed order, so results do not depend
// on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/cpu.h"
#include "common/parallel.h"
#include "kernels/channel_ops.h"

// Kept out of line where inlining them into the batch norm's loops moved those loops' code
// enough to cost them (BnForwardBlock's runs).
#ifndef CONVFORGE_NOINLINE
#define CONVFORGE_NOINLINE __attribute__((noinline))
#endif

namespace convforge {
namespace {

// Channel c's constants (rows/bn_affine.h) from the statistics in T as returned or given: the
// training forward, the inference forward and the backward of a fused ReLU all derive them here.
template <class T>
BnAffine<T> bn_affine(int64_t c, const T* mean, const T* var, const T* gamma, const T* beta, double eps) {
  const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
  return {mean[c], static_cast<T>(gamma ? static_cast<double>(gamma[c]) * inv_std : inv_std), beta ? beta[c] : T(0)};
}

// How the training forward splits its work: blocks of consecutive channels, each making both
// passes over its channels (statistics, scale), a thread's next block's statistics taken while
// it scales this one (batchnorm_fwd_training_impl). A block is sized so that its x stays in a
// core's L2 between the first pass, which brings it from memory, and the second, with the next
// block's beside it: each value crosses the memory bus once each way.
// Within a block the walk is image by image, the block's channels of one image in one contiguous
// run (NCHW), so the prefetchers see runs of block * hw values rather than hw: one channel at a
// time, a 7x7 map is 49-value runs 12.5 KB apart, and the first pass waited on memory (128 x 64
// x 7 x 7 after a cache sweep, 2 threads: 0.67 ms one channel at a time, 0.45 ms in blocks of
// 8). A channel's rows combine in image order whatever the blocking, so the statistics are those
// of a channel-at-a-time walk, on any thread count. The backward walks the same blocks above a size
// (batchnorm_bwd_impl says why not below it).
struct BatchnormBlocks {
  int64_t per_block, blocks;
};

constexpr double kBnL2Budget = 512.0 * 1024.0;  // half of a 1 MiB L2: room for what else is live

inline BatchnormBlocks batchnorm_blocks(const ChannelShape& s, double bytes_per_channel) {
  const int64_t fit = std::max<int64_t>(1, static_cast<int64_t>(kBnL2Budget / std::max(1.0, bytes_per_channel)));
  // At least 8 blocks where there are 8 channels, so that threads can share them evenly.
  const int64_t per_block = std::max<int64_t>(1, std::min<int64_t>(fit, (s.c + 7) / 8));
  return {per_block, (s.c + per_block - 1) / per_block};
}

// Below this many values a row, the training forward's statistics come from lane sums over a
// channel's rows (BnForwardBlock::short_row_moments) instead of a reduction per row: a 7x7 map's
// 49 values paid two horizontal reductions, a division and the rows' exact combination per
// row, and ran at half the rate per byte of a 14x14 one (128 x 64 x 7 x 7, one thread, AMD
// EPYC with 1 MiB L2s: 255 us, against 264 for twice the bytes at 128 x 32 x 14 x 14). Lane
// sums: 175 and 231 us; at 28x28 level with the rows' form (which reads x from memory once
// where the second pass here reads it from L2), so the rows' form stays from 256 values.
constexpr int64_t kBnShortRow = 256;

// Rows of fewer values than kBnRunRow (every ISA's Rows has the run primitives), go
// a block's rows of an image at a time, as one run of nc * hw values (Rows::run_sums and its
// kin), for runs of up to kBnMaxRun values (the position arrays stay in L1). Row by row, a
// 7x7 map's 49 values paid a call, three vectors and a masked one, and the lane accumulators'
// loads and stores, three times (sums, deviations, outputs). 128 x 64 x 7 x 7 on an AMD EPYC
// (Zen 4, 1 MiB L2s): 172-178 -> 132-134 us on one thread (64% -> 84-93% of the copy
// bandwidth, bench/test_bench_resnet.py), 95-102 -> 68-76 on two; 128 x 256 x 4 x 4 331 -> 172,
// 128 x 512 x 1 x 1 631 -> 35, 128 x 64 x 10 x 10 272 -> 257. At 12x12 and 14x14 runs were level
// or slower on one thread (186 / 191, 242 / 258 us): those keep the rows.
constexpr int64_t kBnRunRow = 128;
constexpr int64_t kBnMaxRun = 4096;

// `arrays` arrays of at least n values each, whole vectors of 16, each on a 64-byte boundary (a
// vector a cache line): the runs' per-position constants and sums, zeros at first.
template <class U>
class PositionArrays {
 public:
  PositionArrays() = default;
  PositionArrays(int arrays, int64_t n)
      : room_((n + 15) / 16 * 16), storage_(static_cast<std::size_t>(arrays * room_ + 64 / sizeof(U)), U(0)) {}
  U* operator[](int k) { return base() + k * room_; }
  const U* operator[](int k) const { return const_cast<PositionArrays*>(this)->base() + k * room_; }
  int64_t room() const { return room_; }

 private:
  U* base() { return reinterpret_cast<U*>((reinterpret_cast<std::uintptr_t>(storage_.data()) + 63) / 64 * 64); }
  int64_t room_ = 0;
  std::vector<U> storage_;
};

// Outputs of at least this many bytes (y of the forward, dx of the backward) are written past the
// caches (Rows' kStream forms): an ordinary store first reads each line it writes, a third
// memory stream, and an output this large would not stay in a 32 MB last-level cache for the
// next layer anyway. 32 x 64 x 56 x 56 (25.7 MB) forward, AMD EPYC, 2 vCPUs, ms with ordinary
// stores / streaming: 3.92 / 2.81 (1 thread), 2.04 / 1.46 (2); 32 x 32 x 56 x 56 (12.8 MB)
// 1.75 / 1.00 and 0.73 / 0.65, but there the output of a training step's layer may still be
// in that cache for the next. 128 x 16 x 28 x 28 (6.4 MB): level.
constexpr double kBnStreamBytes = 16.0 * 1024.0 * 1024.0;

template <class T>
bool bn_streams(const ChannelShape& s) {
  return sizeof(T) * static_cast<double>(s.size()) >= kBnStreamBytes;
}

// One block of channels [c0, c0 + nc) of the training forward, in three stages: load(n) takes
// image n's share of the statistics (the pass that reads x from memory), settle() makes the
// block's means, variances and affine constants, scale(n) writes image n's outputs (x from L2).
// A channel's rows combine in image order whatever the blocks and the stages' interleaving.
template <class Rows, class T>
class BnForwardBlock {
 public:
  BnForwardBlock(const ChannelShape& s, const T* src, int64_t c0, int64_t nc)
      : s_(&s), src_(src), c0_(c0), nc_(nc), short_rows_(s.hw < kBnShortRow),
        run_(s.hw < kBnRunRow && nc * s.hw <= kBnMaxRun ? nc * s.hw : 0) {
    if (run_ > 0) {
      run_t_ = PositionArrays<T>(kRunArrays, run_);
      run_d_ = PositionArrays<double>(1, run_);
    } else if (short_rows_) {
      lanes_.assign(static_cast<std::size_t>(nc * Rows::kSumLanes), 0.0);
    } else {
      rows_.resize(static_cast<std::size_t>(s.mb * nc));
    }
  }

  void load(int64_t n) {
    const int64_t HW = s_->hw;
    const T* x = src_ + (n * s_->c + c0_) * HW;
    if (run_ > 0) {  // the block's rows of images n0..n as runs, position sums, no per-row work
      load_runs(n);
      return;
    }
    if (short_rows_) {
      // The rows' lane sums in double (Rows::sum_lanes): no reduction per row.
      for (int64_t c = 0; c < nc_; ++c) Rows::sum_lanes(x + c * HW, HW, lanes_.data() + c * Rows::kSumLanes);
      return;
    }
    // The sums of the block's rows, then their squared deviations from their own shifts
    // (Rows::sq_dev, the rows now in L1), combined exactly in settle() (RowMoments): no
    // cancellation. Sums of a whole image's rows before their deviations: row by row, the sum,
    // reduce, divide, subtract, reduce of a short row were a chain of latencies too short to
    // overlap.
    RowMoments* r = rows_.data() + n * nc_;
    for (int64_t c = 0; c < nc_; ++c) r[c].sum = Rows::sum(x + c * HW, HW);
    for (int64_t c = 0; c < nc_; ++c) {
      const T shift = HW > 0 ? static_cast<T>(r[c].sum / static_cast<double>(HW)) : T(0);
      r[c].shift = static_cast<double>(shift);
      r[c].q = Rows::sq_dev(x + c * HW, HW, shift);
    }
  }

  // The statistics as returned (rounded to T) and the scale from them: the backward recomputes
  // it, and with it a fused ReLU's pre-activation, from what it is given (bn_affine).
  void settle(const T* gamma, const T* beta, double eps, T* mean_out, T* var_out) {
    const double count = static_cast<double>(s_->mb * s_->hw);
    std::vector<double> means(static_cast<std::size_t>(nc_), 0.0), ssd(means.size(), 0.0);
    if (run_ > 0) run_moments(means.data(), ssd.data());
    else if (short_rows_) short_row_moments(means.data(), ssd.data());
    else
      for (int64_t c = 0; c < nc_; ++c) {
        for (int64_t n = 0; n < s_->mb; ++n) means[c] += rows_[n * nc_ + c].sum;
        means[c] /= count;
        for (int64_t n = 0; n < s_->mb; ++n) {
          const RowMoments& r = rows_[n * nc_ + c];
          const double d = r.shift - means[c];
          ssd[c] += r.q + d * (2.0 * (r.sum - static_cast<double>(s_->hw) * r.shift) + static_cast<double>(s_->hw) * d);
        }
        ssd[c] = std::max(ssd[c], 0.0);  // >= 0 exactly; a rounding below 0 would make var negative
      }
    // The forms above add a few values (runs, lanes) or their squared deviations in T before
    // the doubles: finite values within a few times T's largest overflow there (four float32
    // values of 1e38 gave a mean of inf, not 9.75e37). A sum in double of finite T values never
    // overflows, so a non-finite mean or ssd means either such an overflow or an inf/NaN in x:
    // that channel's statistics again, plainly in double (as the oracle; inf/NaN stay inf/NaN).
    for (int64_t c = 0; c < nc_; ++c)
      if (!std::isfinite(means[c]) || !std::isfinite(ssd[c])) exact_moments(c, &means[c], &ssd[c]);
    z_.resize(static_cast<std::size_t>(nc_));
    for (int64_t c = c0_; c < c0_ + nc_; ++c) {
      mean_out[c] = static_cast<T>(means[c - c0_]);
      var_out[c] = static_cast<T>(ssd[c - c0_] / count);
      z_[c - c0_] = bn_affine(c, mean_out, var_out, gamma, beta, eps);
    }
    if (run_ > 0) {  // each position's channel's constants, for scale_run
      T *m = run_array(kMeans), *a = run_array(kScales), *b = run_array(kShifts);
      for (int64_t p = 0; p < run_; ++p) {
        const BnAffine<T>& z = z_[p / s_->hw];
        m[p] = z.mean, a[p] = z.scale, b[p] = z.shift;
      }
    }
  }

  // scale(n) with ordinary stores for a block whose statistics went by runs: image n's
  // rows in one run, each value as scale's row computes it.
  CONVFORGE_NOINLINE void scale_run(int64_t n, bool relu, T* dst) const {
    const int64_t off = (n * s_->c + c0_) * s_->hw;
    const T *m = run_array(kMeans), *a = run_array(kScales), *b = run_array(kShifts);
    if (relu) Rows::template run_scale_shift<true>(src_ + off, run_, m, a, b, dst + off);
    else Rows::template run_scale_shift<false>(src_ + off, run_, m, a, b, dst + off);
  }

  // Image n's outputs: scale_run where the statistics went by runs and the outputs are not
  // streamed (runs have no streaming stores), else row by row (scale).
  template <class Row>
  void write(int64_t n, Row row, bool relu, bool stream, T* dst) const {
    if (run_ > 0 && !stream) scale_run(n, relu, dst);
    else scale(n, row, dst);
  }

  template <class Row>
  void scale(int64_t n, Row row, T* dst) const {
    const int64_t HW = s_->hw;
    for (int64_t c = 0; c < nc_; ++c) {
      const BnAffine<T>& a = z_[c];
      const int64_t off = (n * s_->c + c0_ + c) * HW;
      row(src_ + off, HW, a.mean, a.scale, a.shift, dst + off);
    }
  }

 private:
  // Short rows: from the lane sums, the means; then the squared deviations from the means
  // rounded to T (Rows::sq_dev_lanes; a second pass over the block, from L2) less the rounding's
  // share, n (mean - shift)^2, exactly. Two passes as a textbook variance: no cancellation
  // whatever the rows' own means.
  void short_row_moments(double* means, double* ssd) {
    constexpr int64_t L = Rows::kSumLanes;
    const int64_t HW = s_->hw;
    const double count = static_cast<double>(s_->mb * HW);
    std::vector<T> shifts(static_cast<std::size_t>(nc_));
    for (int64_t c = 0; c < nc_; ++c) {
      double total = 0.0;
      for (int64_t l = 0; l < L; ++l) total += lanes_[c * L + l];
      means[c] = total / count;
      shifts[c] = static_cast<T>(means[c]);
    }
    std::fill(lanes_.begin(), lanes_.end(), 0.0);
    for (int64_t n = 0; n < s_->mb; ++n)
      for (int64_t c = 0; c < nc_; ++c)
        Rows::sq_dev_lanes(src_ + (n * s_->c + c0_ + c) * HW, HW, shifts[c], lanes_.data() + c * L);
    for (int64_t c = 0; c < nc_; ++c) {
      double q = 0.0;
      for (int64_t l = 0; l < L; ++l) q += lanes_[c * L + l];
      const double d = static_cast<double>(shifts[c]) - means[c];
      ssd[c] = std::max(q - count * d * d, 0.0);  // >= 0 exactly; a rounding below 0 would make var negative
    }
  }

  // Channel c0_ + c's mean and sum of squared deviations, two plain passes in double, images in
  // order (settle's fallback: slow, but only where the fast forms gave a non-finite result).
  CONVFORGE_NOINLINE void exact_moments(int64_t c, double* mean, double* ssd) const {
    const int64_t HW = s_->hw;
    double sum = 0.0, q = 0.0;
    for (int64_t n = 0; n < s_->mb; ++n) {
      const T* x = src_ + (n * s_->c + c0_ + c) * HW;
      for (int64_t i = 0; i < HW; ++i) sum += static_cast<double>(x[i]);
    }
    *mean = sum / static_cast<double>(s_->mb * HW);
    for (int64_t n = 0; n < s_->mb; ++n) {
      const T* x = src_ + (n * s_->c + c0_ + c) * HW;
      for (int64_t i = 0; i < HW; ++i) {
        const double d = static_cast<double>(x[i]) - *mean;
        q += d * d;
      }
    }
    *ssd = q;
  }

  // The runs' position arrays (run_t_) and double sums (run_d_).
  enum RunArray { kShiftsOfMeans, kMeans, kScales, kShifts, kRunArrays };
  T* run_array(RunArray k) { return run_t_[k]; }
  const T* run_array(RunArray k) const { return run_t_[k]; }
  double* run_sums() { return run_d_[0]; }

  // Runs: load(n). Out of line, as the other run functions: inlined, they moved the row forms'
  // code enough to cost a 14x14 map 2-4% (128 x 32 x 14 x 14, one thread).
  CONVFORGE_NOINLINE void load_runs(int64_t n) {
    const int64_t n0 = n / Rows::kRunChunk * Rows::kRunChunk;
    if (n + 1 == s_->mb || n + 1 - n0 == Rows::kRunChunk)
      Rows::run_sums(src_ + (n0 * s_->c + c0_) * s_->hw, s_->c * s_->hw, n + 1 - n0, run_, run_sums());
  }

  // Runs: short_row_moments from position sums. A channel's positions are [c hw, (c + 1) hw) of
  // the run; their sums add in position order, the images having added in image order.
  CONVFORGE_NOINLINE void run_moments(double* means, double* ssd) {
    const int64_t HW = s_->hw;
    const double count = static_cast<double>(s_->mb * HW);
    double* sums = run_sums();
    for (int64_t p = 0; p < run_; ++p) means[p / HW] += sums[p];
    T* shifts = run_array(kShiftsOfMeans);  // each position's channel's shift
    for (int64_t c = 0; c < nc_; ++c) {
      means[c] /= count;
      std::fill(shifts + c * HW, shifts + (c + 1) * HW, static_cast<T>(means[c]));
    }
    std::fill(sums, sums + run_d_.room(), 0.0);
    for (int64_t n0 = 0; n0 < s_->mb; n0 += Rows::kRunChunk)
      Rows::run_sq_devs(src_ + (n0 * s_->c + c0_) * HW, s_->c * HW, std::min(Rows::kRunChunk, s_->mb - n0), run_,
                        shifts, sums);
    for (int64_t c = 0; c < nc_; ++c) {
      double q = 0.0;
      for (int64_t p = c * HW; p < (c + 1) * HW; ++p) q += sums[p];
      const double d = static_cast<double>(shifts[c * HW]) - means[c];
      ssd[c] = std::max(q - count * d * d, 0.0);  // >= 0 exactly, as short_row_moments
    }
  }

  const ChannelShape* s_;
  const T* src_;
  int64_t c0_, nc_;
  bool short_rows_;
  int64_t run_;                   // values a run (0: row by row)
  PositionArrays<T> run_t_;       // runs: the kRunArrays position arrays (run_array)
  PositionArrays<double> run_d_;  // runs: the double sums (run_sums)
  std::vector<double> lanes_;    // short rows: kSumLanes sums per channel
  std::vector<RowMoments> rows_;  // long rows: one per image and channel
  std::vector<BnAffine<T>> z_;
};

// Each thread takes a run of consecutive blocks and overlaps their two memory streams: while it
// writes block b's outputs image by image (scale, x from L2) it reads block b + 1's x from
// memory for its statistics (load), instead of a phase that only reads followed by one that
// only writes. Two blocks are then live, each sized for half the budget (batchnorm_blocks).
template <class Rows, class T>
void batchnorm_fwd_training_impl(const ChannelShape& s, const T* src, const T* gamma, const T* beta, double eps,
                                 bool relu, T* dst, T* mean_out, T* var_out) {
  const bool stream = bn_streams<T>(s);
  const auto row = relu ? (stream ? &Rows::template scale_shift<true, true> : &Rows::template scale_shift<true, false>)
                        : (stream ? &Rows::template scale_shift<false, true>
                                  : &Rows::template scale_shift<false, false>);
  const BatchnormBlocks p = batchnorm_blocks(s, 2.0 * sizeof(T) * static_cast<double>(s.mb * s.hw));
  const int threads = bandwidth_threads(p.blocks, 2.0 * sizeof(T) * s.size());
  parallel_for(threads, threads, [&](int64_t t, int) {
    const int64_t b0 = p.blocks * t / threads, b1 = p.blocks * (t + 1) / threads;
    if (b0 == b1) return;
    auto make = [&](int64_t b) {
      const int64_t c0 = b * p.per_block;
      return BnForwardBlock<Rows, T>(s, src, c0, std::min(s.c, c0 + p.per_block) - c0);
    };
    BnForwardBlock<Rows, T> block = make(b0);
    for (int64_t n = 0; n < s.mb; ++n) block.load(n);
    for (int64_t b = b0; b < b1; ++b) {
      block.settle(gamma, beta, eps, mean_out, var_out);
      if (b + 1 == b1) {
        for (int64_t n = 0; n < s.mb; ++n) block.write(n, row, relu, stream, dst);
        break;
      }
      BnForwardBlock<Rows, T> next = make(b + 1);
      for (int64_t n = 0; n < s.mb; ++n) {
        block.write(n, row, relu, stream, dst);
        next.load(n);
      }
      block = std::move(next);
    }
    if (stream) Rows::fence();
  });
}

template <class Rows, class T>
void batchnorm_fwd_inference_impl(const ChannelShape& s, const T* src, const T* mean, const T* var, const T* gamma,
                                  const T* beta, double eps, T* dst) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  parallel_for(bandwidth_threads(C, 2.0 * sizeof(T) * s.size()), C, [&](int64_t c, int) {
    const BnAffine<T> z = bn_affine(c, mean, var, gamma, beta, eps);
    for (int64_t n = 0; n < MB; ++n)
      Rows::template scale_shift<false>(src + (n * C + c) * HW, HW, z.mean, z.scale, z.shift, dst + (n * C + c) * HW);
  });
}

// The backward: with xc = x - mean, inv = 1/sqrt(var + eps), M = N*H*W values per channel,
//   dbeta = sum(dy), dgamma = sum(dy * xc) * inv,
//   dx = gamma * inv * (dy - dbeta / M - xc * inv^2 * sum(dy * xc) / M)
//      = k1 * dy + k2 * xc + k3.
// Two passes: the sums, then dx. Two ways to split them, chosen by the tensors' size (never by
// the thread count, so the bits do not depend on it):
// - by blocks of channels (batchnorm_bwd_blocks), as the training forward: a work item makes
//   both passes over its channels, so the second reads x and dy from L2 and each value crosses
//   the memory bus once (three tensors of traffic instead of five);
// - by images (batchnorm_bwd_images): each pass walks the tensors in memory order, threads
//   taking runs of images, as the convolutions around the layer do.
// The image split wins up to about twice what the cores' L2s hold: the backward-data pass that
// wrote dy left each thread's images in its own L2, and the convolution passes after read dx
// the same way. Training step (2 threads, 2 MiB L2s, bench/train_profile.py): in blocks, the
// three 128x64x7x7 backwards (3.2 MB of x and dy) took 1.02-1.08 ms against 0.84 by images, and
// at 128x32x14x14 (6.4 MB) the next backward-data and weight-gradient passes lost 0.13-0.15 ms
// each for the 0.05 ms the backward saved. At 128x16x28x28 (12.8 MB) nothing stays in L2
// between layers, and blocks took the three backwards from 3.0-3.3 to 2.6-2.85 ms.
// bench/BEFORE_AFTER.md (ninth stop) has the A/B.
constexpr double kBnBwdImagesBytes = 8.0 * 1024.0 * 1024.0;  // x and dy together, at most

// dx = k1 * dy + k2 * xc + k3 for one channel.
template <class T>
struct BnBwdCoefficients {
  T k1, k2, k3;
};

// Channel c's dbeta and dgamma from its sums s_dy = sum(dy), s_dy_dev = sum(dy * xc), and its
// coefficients of dx.
template <class T>
BnBwdCoefficients<T> bn_bwd_finish(int64_t c, double s_dy, double s_dy_dev, double count, const T* var,
                                   const T* gamma, double eps, T* diff_gamma, T* diff_beta) {
  const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
  diff_beta[c] = static_cast<T>(s_dy);
  diff_gamma[c] = static_cast<T>(s_dy_dev * inv_std);
  const double k1 = (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv_std;
  return {static_cast<T>(k1), static_cast<T>(-k1 * inv_std * inv_std * s_dy_dev / count),
          static_cast<T>(-k1 * s_dy / count)};
}

// Channel c's backward sums s_dy = sum(dy) and s_dy_dev = sum(dy * (x - mean)) again, plainly in
// double, images in order (dy masked as the fused ReLU's forward passed it, with `relu`): the
// fallback where the fast forms' sums come out non-finite. Those add a few values or products in
// T before the doubles (Rows' float lanes), and finite gradients within a few times T's largest
// overflow there (dy of +-3e38 in alternate images gave an infinite dgamma and, on the SIMD
// paths, a NaN dbeta, where the sums in double are 0 and finite). A sum in double of finite T
// values never overflows, so a non-finite sum means either such an overflow or an inf/NaN in dy
// or x, which stays as the oracle has it. Slow, but only for such channels.
template <class Rows, class T>
CONVFORGE_NOINLINE void bn_bwd_exact_sums(const ChannelShape& s, int64_t c, const T* diff_dst, const T* src,
                                          double mean, const BnAffine<T>* relu, double* s_dy, double* s_dy_dev) {
  double a = 0.0, b = 0.0;
  for (int64_t n = 0; n < s.mb; ++n) {
    const T* dy = diff_dst + (n * s.c + c) * s.hw;
    const T* x = src + (n * s.c + c) * s.hw;
    for (int64_t i = 0; i < s.hw; ++i) {
      if (relu != nullptr && !Rows::passes(relu, x[i])) continue;  // +0, NaN included, as Rows' kept()
      a += static_cast<double>(dy[i]);
      b += static_cast<double>(dy[i]) * (static_cast<double>(x[i]) - mean);
    }
  }
  *s_dy = a, *s_dy_dev = b;
}

// The backward's row primitives, with or without the fused ReLU's mask: chosen once per call,
// not per row (each primitive has both forms).
// stream: dx past the caches (kBnStreamBytes); each work item then ends with fence().
template <class Rows, class T>
struct BnBwdRows {
  void (*sum)(const T*, const BnAffine<T>*, const T*, int64_t, double, double*, double*);
  void (*dx)(const T*, const BnAffine<T>*, const T*, int64_t, T, T, T, T, T*);
  bool stream;
  BnBwdRows(bool relu, bool stream_dx)
      : sum(relu ? &Rows::template sum_dy_dy_dev<true> : &Rows::template sum_dy_dy_dev<false>),
        dx(relu ? (stream_dx ? &Rows::template bn_backward<true, true> : &Rows::template bn_backward<true, false>)
                : (stream_dx ? &Rows::template bn_backward<false, true> : &Rows::template bn_backward<false, false>)),
        stream(stream_dx) {}
  void fence() const {
    if (stream) Rows::fence();
  }
};

// By blocks of channels (batchnorm_blocks, as the forward). Each channel's sums run in image
// order as Rows::kSumLanes lane sums, folded in lane order. As the forward, each thread takes a
// run of consecutive blocks and overlaps their memory streams: while it writes block b's dx
// image by image (x and dy from L2) it reads block b + 1's x and dy from memory for its sums,
// instead of a phase that only reads followed by one that only writes. 32 x 64 x 56 x 56 (x and
// dy past the 32 MiB L3), AMD EPYC: 3.54-3.73 -> 2.96-3.09 ms on one thread (20.7 -> 26 GB/s, of
// a 28.7 GB/s copy), 2.09-2.14 -> 1.95-1.99 on two; 128 x 16 x 28 x 28 level.
template <class Rows, class T>
void batchnorm_bwd_blocks(const ChannelShape& s, const BnBwdRows<Rows, T>& rows, const T* diff_dst, const T* src,
                          const T* mean, const T* var, const T* gamma, const T* beta, bool relu, double eps,
                          T* diff_src, T* diff_gamma, T* diff_beta) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  const double count = static_cast<double>(MB * HW);
  constexpr int64_t L = Rows::kSumLanes;
  const BatchnormBlocks p = batchnorm_blocks(s, 2.0 * sizeof(T) * static_cast<double>(MB * HW));
  // One block's state: its channels, the fused ReLU's pre-activation constants (as the forward
  // computed them), its lane sums, then its coefficients of dx.
  struct Block {
    int64_t c0 = 0, c1 = 0;
    std::vector<BnAffine<T>> z;
    std::vector<double> lanes;
    std::vector<BnBwdCoefficients<T>> k;
  };
  auto open = [&](int64_t b, Block* blk) {
    blk->c0 = b * p.per_block, blk->c1 = std::min(C, blk->c0 + p.per_block);
    const int64_t nc = blk->c1 - blk->c0;
    blk->z.resize(static_cast<std::size_t>(relu ? nc : 0));
    for (int64_t c = blk->c0; c < (relu ? blk->c1 : blk->c0); ++c) blk->z[c - blk->c0] = bn_affine(c, mean, var, gamma, beta, eps);
    blk->lanes.assign(static_cast<std::size_t>(2 * L * nc), 0.0);
  };
  auto sums = [&](Block& blk, int64_t n) {  // image n's share of the block's sums (x, dy from memory)
    for (int64_t c = blk.c0; c < blk.c1; ++c) {
      const int64_t off = (n * C + c) * HW;
      double* lane = blk.lanes.data() + 2 * L * (c - blk.c0);
      rows.sum(diff_dst + off, relu ? &blk.z[c - blk.c0] : nullptr, src + off, HW, static_cast<double>(mean[c]), lane,
               lane + L);
    }
  };
  auto finish = [&](Block& blk) {
    blk.k.resize(static_cast<std::size_t>(blk.c1 - blk.c0));
    for (int64_t c = blk.c0; c < blk.c1; ++c) {
      const double* lane = blk.lanes.data() + 2 * L * (c - blk.c0);
      double s_dy = 0, s_dy_dev = 0;
      for (int64_t l = 0; l < L; ++l) s_dy += lane[l], s_dy_dev += lane[L + l];
      if (!std::isfinite(s_dy) || !std::isfinite(s_dy_dev))
        bn_bwd_exact_sums<Rows>(s, c, diff_dst, src, static_cast<double>(mean[c]), relu ? &blk.z[c - blk.c0] : nullptr,
                                &s_dy, &s_dy_dev);
      blk.k[c - blk.c0] = bn_bwd_finish(c, s_dy, s_dy_dev, count, var, gamma, eps, diff_gamma, diff_beta);
    }
  };
  // Image n's dx for the block (x and dy from L2). dx may be dy's own memory (the caller's
  // choice): the block's sums have read every value of dy that this overwrites, and no other
  // block touches them.
  auto dx = [&](const Block& blk, int64_t n) {
    for (int64_t c = blk.c0; c < blk.c1; ++c) {
      const int64_t off = (n * C + c) * HW;
      const BnBwdCoefficients<T>& kc = blk.k[c - blk.c0];
      rows.dx(diff_dst + off, relu ? &blk.z[c - blk.c0] : nullptr, src + off, HW, kc.k1, kc.k2, mean[c], kc.k3,
              diff_src + off);
    }
  };
  // Overlapped, two blocks are live. A block of one channel above the budget (a channel's x and
  // dy more than kBnL2Budget) may fit in a core's L2 with its dx while two do not: then its dx
  // pass goes first, reading x and dy from L2, and the next block's sums after it. 128 x 16 x 28
  // x 28 (802 KB a channel), Xeon with 2 MiB L2s, one thread: 978-1003 -> 861-913 us; two:
  // 489-491 -> 473-474; 32 x 64 x 56 x 56 3.35-3.41 -> 3.19-3.20 ms and 1.67-1.69 -> 1.58-1.59
  // (bench/BEFORE_AFTER.md, twenty-fourth stop). Where one block and its dx do not fit either (a
  // 1 MiB L2), nothing stays in L2 and overlapping the streams won (above). Blocks within the
  // budget keep the overlap they were sized for. Only the order of the passes changes: the bits
  // are the same.
  const double block_bytes = 2.0 * sizeof(T) * static_cast<double>(MB * HW * p.per_block);
  const double l2 = static_cast<double>(l2_cache_bytes());
  const bool one_at_a_time = p.per_block == 1 && block_bytes > kBnL2Budget && 1.5 * block_bytes <= 0.75 * l2 &&
                             2.5 * block_bytes > 0.75 * l2;
  const int threads = bandwidth_threads(p.blocks, 3.0 * sizeof(T) * s.size());
  parallel_for(threads, threads, [&](int64_t t, int) {
    const int64_t b0 = p.blocks * t / threads, b1 = p.blocks * (t + 1) / threads;
    if (b0 == b1) return;
    Block block, next;
    open(b0, &block);
    for (int64_t n = 0; n < MB; ++n) sums(block, n);
    for (int64_t b = b0; b < b1; ++b) {
      finish(block);
      const bool last = b + 1 == b1;
      if (!last) open(b + 1, &next);
      if (one_at_a_time) {
        for (int64_t n = 0; n < MB && diff_src; ++n) dx(block, n);
        for (int64_t n = 0; n < MB && !last; ++n) sums(next, n);
      } else {
        for (int64_t n = 0; n < MB; ++n) {
          if (diff_src) dx(block, n);
          if (!last) sums(next, n);
        }
      }
      std::swap(block, next);
    }
    if (diff_src) rows.fence();
  });
}

// By images. Each work item is a block of consecutive channels of one image (or of a chunk of
// images): walking a channel at a time would leave the prefetchers short streams (MB runs of HW
// values C*HW apart). The sums add each channel's rows in image order within each of `chunks`
// runs of images, then the chunks' sums in order: `chunks` and the channel blocks depend on the
// shape only.
struct BatchnormSplit {
  int64_t chunks, per_block, blocks;
};

inline BatchnormSplit batchnorm_split(const ChannelShape& s) {
  BatchnormSplit p{};
  p.chunks = std::max<int64_t>(1, std::min<int64_t>(s.mb, 8));  // mb = 0: one empty chunk
  const int64_t want_blocks = std::max<int64_t>(1, std::min<int64_t>(s.c, (16 + p.chunks - 1) / p.chunks));
  p.per_block = std::max<int64_t>(1, (s.c + want_blocks - 1) / want_blocks);
  p.blocks = (s.c + p.per_block - 1) / p.per_block;
  return p;
}

// The image split's dx pass (batchnorm_bwd_images, batchnorm_bwd_image_runs) after its sums
// have walked each thread's images forwards: dx_item(n, block) for every image and channel
// block, items numbered image by image, each thread taking its equal run of them backwards, so
// that it starts with the images the sums left in its L2 and ends with its first ones, which the
// convolution passes after the layer read first (their items go image by image forwards). A
// thread's images are those of its chunks in the sums where the thread count divides the chunk
// count (2, 4, 8 threads). Each dx value is the same in any order. Xeon with 2 MiB L2s, one /
// two threads: 128 x 32 x 14 x 14 562-566 -> 509-518 us / 259-268 -> 237-238; 128 x 64 x 7 x 7
// (runs) 309-318 -> 275-295 / level; a training epoch of the example ResNet level
// (bench/BEFORE_AFTER.md, twenty-fourth stop). Each thread calls thread_done() after its last.
template <class T, class F, class Done>
void bn_dx_images_backwards(const ChannelShape& s, int64_t blocks, F&& dx_item, Done&& thread_done) {
  const int64_t items = s.mb * blocks;
  const int threads = bandwidth_threads(items, 3.0 * sizeof(T) * s.size());
  parallel_for(threads, threads, [&](int64_t t, int) {
    for (int64_t i = items * (t + 1) / threads; i-- > items * t / threads;) dx_item(i / blocks, i % blocks);
    thread_done();
  });
}

// batchnorm_bwd_images for rows of fewer than kBnBwdRunRow values, as the forward's runs: an
// item's channels of one image are one contiguous run, per-position constants (the channel's
// mean, its dx coefficients, the fused ReLU's) in place of each row's scalars. The same items
// and chunks as the rows' form: a channel's sums add its images in order within each chunk (8
// images at a time per position in float lanes, then doubles, the rows' bound), its positions
// in order, then the chunks in order. A
// BatchNormalization after a Dense layer is (N, F, 1, 1): one value a row, a call each. One
// thread, AMD EPYC, us: 128 x 512 (1x1) 881-885 -> 44; 128 x 512 x 2 x 2 913-941 -> 189-256;
// 128 x 256 x 3 x 3 468-495 -> 155-163; 64 x 256 x 4 x 4 273-438 -> 209-218; 128 x 128 x 5 x 5
// 273-289 -> 211-250; 128 x 64 x 7 x 7 199-210 -> 207-216 (hence rows from 32 values: the rows'
// form already runs 7x7 at ~85% of the copy bandwidth). Above kBnMaxRunPositions values a sample
// (C * HW) the seven position arrays are not made.
constexpr int64_t kBnBwdRunRow = 32;
constexpr int64_t kBnMaxRunPositions = 1 << 16;
template <class Rows, class T>
void batchnorm_bwd_image_runs(const ChannelShape& s, const BatchnormSplit& p, const std::vector<BnAffine<T>>& z,
                              const T* diff_dst, const T* src, const T* mean, const T* var, const T* gamma, bool relu,
                              double eps, T* diff_src, T* diff_gamma, T* diff_beta) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb, P = C * HW;
  const double count = static_cast<double>(MB * HW);
  // Seven position arrays of P values and a vector's slack (a run's last vector reads up to 15
  // past its end).
  enum { kMean, kZm, kZa, kZb, kC1, kC2, kC3, kArrays };
  PositionArrays<T> arrays(kArrays, P + 16);
  auto array = [&](int k) { return arrays[k]; };
  for (int64_t c = 0; c < C; ++c)
    for (int64_t q = c * HW; q < (c + 1) * HW; ++q) {
      array(kMean)[q] = mean[c];
      if (relu) array(kZm)[q] = z[c].mean, array(kZa)[q] = z[c].scale, array(kZb)[q] = z[c].shift;
    }
  std::vector<double> partial(static_cast<std::size_t>(2 * p.chunks * C), 0.0);
  parallel_for(bandwidth_threads(p.chunks * p.blocks, 2.0 * sizeof(T) * s.size()), p.chunks * p.blocks,
               [&](int64_t item, int) {
                 const int64_t k = item / p.blocks, c0 = item % p.blocks * p.per_block;
                 const int64_t c1 = std::min(C, c0 + p.per_block), n_run = (c1 - c0) * HW;
                 const int64_t vecs = (n_run + 15) / 16 * 16;
                 std::vector<double> sums(static_cast<std::size_t>(2 * vecs), 0.0);
                 const int64_t n0 = k * MB / p.chunks, n1 = (k + 1) * MB / p.chunks;
                 const T *m = array(kMean) + c0 * HW, *zm = array(kZm) + c0 * HW, *za = array(kZa) + c0 * HW,
                         *zb = array(kZb) + c0 * HW;
                 for (int64_t n = n0; n < n1; n += Rows::kRunChunk) {
                   const int64_t off = (n * C + c0) * HW, runs = std::min(Rows::kRunChunk, n1 - n);
                   if (relu)
                     Rows::template run_dy_sums<true>(diff_dst + off, src + off, C * HW, runs, n_run, m, zm, za, zb,
                                                      sums.data(), sums.data() + vecs);
                   else
                     Rows::template run_dy_sums<false>(diff_dst + off, src + off, C * HW, runs, n_run, m, zm, za, zb,
                                                       sums.data(), sums.data() + vecs);
                 }
                 double* out = partial.data() + 2 * k * C;
                 for (int64_t c = c0; c < c1; ++c)
                   for (int64_t q = (c - c0) * HW; q < (c - c0 + 1) * HW; ++q)
                     out[2 * c] += sums[q], out[2 * c + 1] += sums[vecs + q];
               });
  for (int64_t c = 0; c < C; ++c) {
    double s_dy = 0, s_dy_dev = 0;
    for (int64_t j = 0; j < p.chunks; ++j) s_dy += partial[2 * (j * C + c)], s_dy_dev += partial[2 * (j * C + c) + 1];
    if (!std::isfinite(s_dy) || !std::isfinite(s_dy_dev))
      bn_bwd_exact_sums<Rows>(s, c, diff_dst, src, static_cast<double>(mean[c]), relu ? &z[c] : nullptr, &s_dy,
                              &s_dy_dev);
    const BnBwdCoefficients<T> kc = bn_bwd_finish(c, s_dy, s_dy_dev, count, var, gamma, eps, diff_gamma, diff_beta);
    std::fill(array(kC1) + c * HW, array(kC1) + (c + 1) * HW, kc.k1);
    std::fill(array(kC2) + c * HW, array(kC2) + (c + 1) * HW, kc.k2);
    std::fill(array(kC3) + c * HW, array(kC3) + (c + 1) * HW, kc.k3);
  }
  if (!diff_src) return;
  bn_dx_images_backwards<T>(s, p.blocks, [&](int64_t n, int64_t block) {
    const int64_t c0 = block * p.per_block, c1 = std::min(C, c0 + p.per_block);
    const int64_t off = (n * C + c0) * HW, q = c0 * HW, n_run = (c1 - c0) * HW;
    if (relu)
      Rows::template run_bn_backward<true>(diff_dst + off, src + off, n_run, array(kMean) + q, array(kC1) + q,
                                           array(kC2) + q, array(kC3) + q, array(kZm) + q, array(kZa) + q,
                                           array(kZb) + q, diff_src + off);
    else
      Rows::template run_bn_backward<false>(diff_dst + off, src + off, n_run, array(kMean) + q, array(kC1) + q,
                                            array(kC2) + q, array(kC3) + q, array(kZm) + q, array(kZa) + q,
                                            array(kZb) + q, diff_src + off);
  }, [] {});
}

template <class Rows, class T>
void batchnorm_bwd_images(const ChannelShape& s, const BnBwdRows<Rows, T>& rows, const T* diff_dst, const T* src,
                          const T* mean, const T* var, const T* gamma, const T* beta, bool relu, double eps,
                          T* diff_src, T* diff_gamma, T* diff_beta) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  const double count = static_cast<double>(MB * HW);
  const BatchnormSplit p = batchnorm_split(s);
  constexpr int64_t L = Rows::kSumLanes;
  std::vector<BnAffine<T>> z(static_cast<std::size_t>(relu ? C : 0));
  for (int64_t c = 0; c < (relu ? C : 0); ++c) z[c] = bn_affine(c, mean, var, gamma, beta, eps);
  if (!rows.stream && HW < kBnBwdRunRow && p.per_block * HW <= kBnMaxRun && C * HW <= kBnMaxRunPositions) {
    batchnorm_bwd_image_runs<Rows, T>(s, p, z, diff_dst, src, mean, var, gamma, relu, eps, diff_src, diff_gamma,
                                      diff_beta);
    return;
  }
  std::vector<double> partial(static_cast<std::size_t>(2 * p.chunks * C), 0.0);
  parallel_for(bandwidth_threads(p.chunks * p.blocks, 2.0 * sizeof(T) * s.size()), p.chunks * p.blocks,
               [&](int64_t item, int) {
                 const int64_t k = item / p.blocks, c0 = item % p.blocks * p.per_block;
                 const int64_t c1 = std::min(C, c0 + p.per_block);
                 std::vector<double> lanes(static_cast<std::size_t>(2 * L * (c1 - c0)), 0.0);
                 for (int64_t n = k * MB / p.chunks; n < (k + 1) * MB / p.chunks; ++n)
                   for (int64_t c = c0; c < c1; ++c) {
                     const int64_t off = (n * C + c) * HW;
                     double* lane = lanes.data() + 2 * L * (c - c0);
                     rows.sum(diff_dst + off, relu ? &z[c] : nullptr, src + off, HW, static_cast<double>(mean[c]), lane,
                             lane + L);
                   }
                 double* sums = partial.data() + 2 * k * C;
                 for (int64_t c = c0; c < c1; ++c) {
                   const double* lane = lanes.data() + 2 * L * (c - c0);
                   for (int64_t l = 0; l < L; ++l) sums[2 * c] += lane[l], sums[2 * c + 1] += lane[L + l];
                 }
               });
  std::vector<BnBwdCoefficients<T>> k(static_cast<std::size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    double s_dy = 0, s_dy_dev = 0;
    for (int64_t j = 0; j < p.chunks; ++j) s_dy += partial[2 * (j * C + c)], s_dy_dev += partial[2 * (j * C + c) + 1];
    if (!std::isfinite(s_dy) || !std::isfinite(s_dy_dev))
      bn_bwd_exact_sums<Rows>(s, c, diff_dst, src, static_cast<double>(mean[c]), relu ? &z[c] : nullptr, &s_dy,
                              &s_dy_dev);
    k[c] = bn_bwd_finish(c, s_dy, s_dy_dev, count, var, gamma, eps, diff_gamma, diff_beta);
  }
  if (!diff_src) return;
  bn_dx_images_backwards<T>(s, p.blocks, [&](int64_t n, int64_t block) {
    const int64_t c0 = block * p.per_block, c1 = std::min(C, c0 + p.per_block);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t off = (n * C + c) * HW;
      rows.dx(diff_dst + off, relu ? &z[c] : nullptr, src + off, HW, k[c].k1, k[c].k2, mean[c], k[c].k3,
             diff_src + off);
    }
  }, [&] { rows.fence(); });
}

template <class Rows, class T>
void batchnorm_bwd_impl(const ChannelShape& s, const T* diff_dst, const T* src, const T* mean, const T* var,
                        const T* gamma, const T* beta, bool relu, double eps, T* diff_src, T* diff_gamma,
                        T* diff_beta) {
  const bool by_images = 2.0 * sizeof(T) * static_cast<double>(s.size()) <= kBnBwdImagesBytes;
  (by_images ? batchnorm_bwd_images<Rows, T> : batchnorm_bwd_blocks<Rows, T>)(
      s, BnBwdRows<Rows, T>(relu, bn_streams<T>(s)), diff_dst, src, mean, var, gamma, beta, relu, eps, diff_src,
      diff_gamma, diff_beta);
}

}  // namespace
}  // namespace convforge

// Defines the three batchnorm kernels of one ISA and dtype from a rows struct.
#define CONVFORGE_DEFINE_BATCHNORM(ISA, T, ROWS)                                                                 \
  void batchnorm_fwd_training__##ISA(const ChannelShape& s, const T* src, const T* gamma, const T* beta,           \
                                     double eps, bool relu, T* dst, T* mean, T* var) {                            \
    batchnorm_fwd_training_impl<ROWS>(s, src, gamma, beta, eps, relu, dst, mean, var);                            \
  }                                                                                                               \
  void batchnorm_fwd_inference__##ISA(const ChannelShape& s, const T* src, const T* mean, const T* var,           \
                                      const T* gamma, const T* beta, double eps, T* dst) {                        \
    batchnorm_fwd_inference_impl<ROWS>(s, src, mean, var, gamma, beta, eps, dst);                                 \
  }                                                                                                               \
  void batchnorm_bwd__##ISA(const ChannelShape& s, const T* diff_dst, const T* src, const T* mean, const T* var,   \
                            const T* gamma, const T* beta, bool relu, double eps, T* diff_src, T* diff_gamma,     \
                            T* diff_beta) {                                                                       \
    batchnorm_bwd_impl<ROWS>(s, diff_dst, src, mean, var, gamma, beta, relu, eps, diff_src, diff_gamma, diff_beta); \
  }
