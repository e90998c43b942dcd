// A model's inference pass as one call. At batch 1 a model's time was Python between the
// kernels (~10 us per layer against a few us of arithmetic); a plan runs the same kernels one
// after another with nothing in between.
//
// A plan is a list of ops over values. A value is one tensor per sample (its per-sample dims:
// (C, H, W) images, (F,) features); every op checks its operands when it is added, so a
// finished plan runs any batch size without further checks. finish() first fuses each residual
// Add (and the ReLU after it) into the conv that feeds it (fuse_residual_adds), then gives each
// value a place: the caller's input arrays, the caller's output arrays, or a slot of an arena
// that values share once their last reader has run (an op whose input dies with it may write
// over it); a small batch split among a thread team gives each value a place of its own
// instead (run_layout says why).
//
// Knows nothing of Python. Weights are pointers the caller keeps alive, and weights changed in
// place are seen: what a conv derives from its weights (a BatchNormalization folded in,
// weights * scale; Winograd's transformed filters; the direct form's packed filters) is kept in
// the run's arena with a 128-bit digest of each block of the weights it came from, and made
// again whenever a block's digest differs (one pass over the weights per run, the cost of the
// fold it replaces). A digest, not a byte copy to compare with: the copy doubled what each run
// read, and the example ResNet's one-image run then overflowed a 2 MiB L2 (one-image predict on
// one thread 115 -> 105 us with the digests, bench/BEFORE_AFTER.md, twenty-eighth stop). A change confined to one 8-byte
// word of a block always changes its digest; any other accidental change goes unseen only if
// both 64-bit halves of the digest collide (kernels/digest/digest_impl.h). Keeping the
// transformed filters lets a small batch take Winograd where a single layer call, which
// transforms them every time, takes the direct form: the plan's outputs then agree with the
// layers' within Winograd's error bound rather than bit for bit (keep_prepared(false) restores
// the layers' choices).
//
// A batch run whole (or in chunks one after another) on several threads runs inside one thread
// team (run_with_thread_team): its workers wait spinning between the ops' parallel loops, so a
// one-image model pays no OpenMP region per op and splits ops a region would not pay for.
//
// A large batch runs through the whole plan a chunk of samples at a time (chunk_samples): the
// values of a few images stay in L2 from one op to the next instead of every layer streaming
// the whole batch's activations through memory, and with several threads each thread runs
// whole chunks, its ops on one thread, with no barrier between layers. A chunk may choose
// another algorithm than the whole batch would (the choice depends on the batch size);
// chunk_samples(0) and keep_prepared(false) together give the layers' choices and bits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/shapes.h"
#include "common/workspace.h"
#include "kernels/kernels.h"  // Digest

namespace convforge {

enum class PlanOpKind : int {
  conv2d,           // Conv2D (+ folded BatchNormalization) (+ ReLU)
  dense,            // Dense (+ ReLU)
  maxpool2d,        // MaxPooling2D
  relu,             // ReLU; in place where its input dies here
  batchnorm,        // BatchNormalization, inference statistics, over dims[0]
  global_avg_pool,  // GlobalAveragePooling2D
  global_max_pool,  // GlobalMaxPooling2D
  add,              // Add, left to right
  subtract,         // Subtract (two inputs)
  multiply,         // Multiply, left to right
  average,          // Average: the sum left to right, times (T)(1 / inputs)
  concat,           // Concatenate along dims[0] (channels)
  softmax,          // Softmax of (n,) per sample; in place where its input dies here
  copy,             // Reshape / Flatten (the same values, other dims); in place where its input dies here
  rescale,          // Rescaling: x * (T)scale, then + (T)offset where it is not 0; in place where its input dies here
  depthwise,        // DepthwiseConv2D (+ bias), the depthwise kernel and its padding products
  window,           // ZeroPadding2D / Cropping2D: each (H, W) plane's rows and columns moved, zeros outside
  upsample,         // UpSampling2D, nearest: each value repeated factor_h x factor_w times
  avgpool,          // AveragePooling2D: the window's sum in Keras's tap order, times 1 / (cells it covers)
  reorder,          // Reshape in Keras's element order: images read and/or written channels-last
  conv_transpose,   // Conv2DTranspose: conv2d's backward-data pass of the conv it transposes (+ bias)
  leaky_relu,       // LeakyReLU: x where x > 0, else x * (T)slope; in place where its input dies here
  clip_max,         // ReLU's max_value after its relu: (T)max where x > (T)max, else x; in place where its input dies here
  gelu,             // GELU's exact form (gelu_fwd__ref: the layer's bits); in place where its input dies here
};

// BatchNormalization's inference weights: moving mean and variance, gamma and beta (null when
// the layer has center/scale off), epsilon.
template <class T>
struct PlanBatchNorm {
  const T* mean = nullptr;
  const T* var = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;
  double eps = 0.0;
};

template <class T>
class InferencePlan {
 public:
  using value_type = T;

  // Each adder returns the new value's id and throws std::invalid_argument, saying what is
  // wrong, for an operand that does not fit. Values are ids returned before.
  int input(const std::vector<int64_t>& dims);
  // `shape`: the per-sample problem (mb is ignored; ic/ih/iw must be x's dims). `bn` folds a
  // BatchNormalization into the conv (its vectors have oc entries); `relu` applies max(y, 0).
  int conv2d(int x, ConvShape shape, const T* w, const T* b, const PlanBatchNorm<T>* bn, bool relu);
  int dense(int x, int64_t units, const T* w, const T* b, bool relu);
  int maxpool2d(int x, PoolShape shape);  // mb ignored; c/ih/iw must be x's dims
  int relu(int x);
  int softmax(int x);  // x: (n,) per sample
  int batchnorm(int x, const PlanBatchNorm<T>& bn);
  int global_pool(int x, bool max, const std::vector<int64_t>& out_dims);  // out_dims: (C) or (C, 1, 1)
  int elementwise(PlanOpKind kind, const std::vector<int>& xs);           // add/subtract/multiply/average
  int concat(const std::vector<int>& xs);
  int reshape(int x, const std::vector<int64_t>& dims);
  int rescale(int x, double scale, double offset);  // Rescaling's arithmetic and roundings (a finite scale and offset)
  int leaky_relu(int x, double slope);               // LeakyReLU's (a finite slope >= 0)
  int clip_max(int x, double max_value);             // np.minimum(x, (T)max_value)'s bits (a finite max_value)
  int gelu(int x);                                   // GELU(approximate=False)'s
  // Depthwise conv2d: `shape` as conv2d's (ic = x's channels, oc = ic * depth multiplier), w
  // (oc, 1, KH, KW), b (oc) or null.
  int depthwise(int x, ConvShape shape, const T* w, const T* b);
  // (C, H, W) -> (C, H + top + bottom, W + left + right): margins > 0 add rows or columns of
  // zeros (ZeroPadding2D), < 0 remove them (Cropping2D); mixed signs too.
  int window(int x, int64_t top, int64_t bottom, int64_t left, int64_t right);
  int upsample(int x, int64_t factor_h, int64_t factor_w);
  // Reshape's channels-last element order: x's values read as (H, W, C) where it is an image
  // (C, H, W), written into `dims` as (H, W, C) where they are an image (C, H, W).
  int reorder(int x, const std::vector<int64_t>& dims);
  // Conv2DTranspose: `shape` is the convolution it transposes, from its output (ic channels,
  // ih x iw) back to x (oc channels, oh x ow), with w (oc, ic, KH, KW) that convolution's
  // weights; b (ic) or null, added after as the layer adds it.
  int conv_transpose(int x, ConvShape shape, const T* w, const T* b);
  // `shape`: c/ih/iw x's dims, the window (kh, kw), strides, the top and left padding (ph, pw)
  // and the output size; `inv`: oh * ow factors, 1 / (input cells under each window), copied.
  int avgpool(int x, PoolShape shape, std::vector<T> inv);

  // Marks the values run() returns (in this order) and places every value; no op may be added
  // after it.
  void finish(const std::vector<int>& outputs);

  bool finished() const { return finished_; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  int num_outputs() const { return static_cast<int>(outputs_.size()); }
  const std::vector<int64_t>& dims(int value) const;
  int64_t sample_size(int value) const;  // elements per sample
  const std::vector<int>& output_values() const { return outputs_; }
  const std::vector<int>& input_values() const { return inputs_; }
  std::string describe() const;  // one line per op, for tests and debugging
  // Whether convs keep their algorithms' prepared weights between runs (default true); false
  // gives exactly the choices (and bits) of the layers called one by one. Not while running.
  void keep_prepared(bool keep) { keep_prepared_ = keep; }
  bool keeps_prepared() const { return keep_prepared_; }
  // A batch of more than chunk_samples() samples runs through the whole plan in chunks of at
  // most that many (as equal as possible, chunk_sizes), each chunk's values in a slice of the
  // arena small enough to stay in a core's L2 between one op and the next; with several
  // threads and enough chunks, each thread runs whole chunks (its ops on one thread) instead
  // of every op splitting every layer. The chunks never depend on the thread count, so neither
  // do the results. finish() sets it from the values' sizes; 0 runs every batch whole. Not
  // while running.
  void chunk_samples(int64_t n);
  int64_t chunk_samples() const { return chunk_samples_; }
  std::vector<int64_t> chunk_sizes(int64_t mb) const;

  // inputs[k]: mb samples of input k, C-contiguous; outputs[k]: room for mb samples of output k.
  // Outputs must not overlap the inputs or each other. `forced_conv` names the conv2d forward
  // algorithm every conv must run (functional.force_conv2d_algorithm; "" for the default
  // choice): std::invalid_argument where it does not apply. Safe to call from several threads
  // at once.
  void run(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
           const std::string& forced_conv = "") const;
  // run(), adding each op's wall time in seconds to op_seconds[k] (k: the op's index, the line
  // of describe()); op_seconds holds num_ops() entries. Where a model's inference time goes
  // (bench/plan_profile.py): the per-op figures, not guesses from standalone kernel calls.
  // With share_seconds (num_ops() x share_threads entries), where the ops run on a thread team,
  // also the time each of its threads spent in op k's parallel loops, at
  // share_seconds[k * share_threads + t] (detail::set_share_seconds): how evenly, and how
  // fast, the threads did their parts (zeros where an op ran without the team or on one thread).
  void run_timed(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
                 const std::string& forced_conv, double* op_seconds, double* share_seconds = nullptr,
                 int share_threads = 0) const;
  int num_ops() const { return static_cast<int>(ops_.size()); }
  // Whether a run of mb samples in a thread team runs its first op on one thread while the
  // others digest the kept weights (refresh_all_kept): the digests worth sharing (64 KiB of
  // sources or more) and the first op estimated to take no longer than they do.
  bool first_op_overlaps(int64_t mb) const;
  // Whether a run of mb samples gives each value a place of its own in the arena instead of
  // slots shared by values one after another: by default (Places::automatic) a small batch
  // split among a thread team (see run_layout); shared_slots and own force either (tests,
  // benchmarks). Not while running.
  enum class Places : int { automatic, shared_slots, own };
  void places(Places p) { places_ = p; }
  Places places() const { return places_; }
  bool own_places(int64_t mb) const;
  // The largest batch whose run stays on the calling thread whatever the thread count (0: not
  // even one sample, or not finished): every op under its kind's own floor (the convs' and dense
  // layers' operations under kMinParallelFlops, each value under 64 KiB for the passes that split
  // by bytes or by grains of values; finish() says why), so no op splits (tests check it against
  // the loops a run starts, parallel_loops()). predict runs such a batch without the adaptive
  // thread count's timing: with nothing to split, the count changes nothing (a one-image
  // LeNet-5, 0.85 MFLOP, 36 KB of values).
  int64_t serial_samples() const { return serial_samples_; }
  // Whether values between convs may be kept in channel blocks of 16 (ConvTensors::src_blocked,
  // default true): a value whose producer and readers are all convs whose algorithms at the
  // chunk's size take them, of float32 with channels a multiple of 16, neither an input nor an
  // output. The same bits either way (tests); false for benchmarks. Not while running.
  void blocked_layout(bool on) { blocked_layout_ = on; }
  bool blocked_layout() const { return blocked_layout_; }
  // The values a chunk of mb samples keeps in channel blocks (ascending ids). A run of a batch
  // larger than chunk_samples() runs chunks of chunk_sizes(batch), each with its own size's.
  std::vector<int> blocked_values(int64_t mb, const std::string& forced_conv = "") const;

 private:
  struct Value {
    std::vector<int64_t> dims;
    int64_t size = 0;    // elements per sample
    int producer = -1;   // op index; -1 for an input
    int last_read = -1;  // the last op that reads it
    int input = -1;      // input index, or -1
    int output = -1;     // output index (finish), or -1
    int slot = -1;       // arena slot, or -1 (input or output)
    int own = -1;        // its own place (own_size_), or -1: shared only with the input an op overwrites in place
  };
  struct Op {
    PlanOpKind kind;
    std::vector<int> in;
    int out = -1;
    ConvShape conv;  // conv2d (mb set at run)
    PoolShape pool;  // maxpool2d
    int64_t units = 0;
    const T* w = nullptr;
    const T* b = nullptr;
    PlanBatchNorm<T> bn;
    bool fold = false;  // conv2d: bn is folded in
    bool relu = false;
    bool residual = false;  // conv2d: in[1] is added before the ReLU (fuse_residual_adds)
    double scale = 1.0, offset = 0.0;  // rescale; leaky_relu's slope is its scale
    int64_t top = 0, left = 0;          // window: where the input's first row and column land
    int64_t factor_h = 1, factor_w = 1;  // upsample
    std::vector<T> avg_inv;              // avgpool: 1 / (cells under each window), oh * ow
    // conv2d that derives weights (a fold, or room for an algorithm's prepared weights), at
    // arena offsets: the folded weights then bias at fold_offset, the prepared weights
    // (prepared_capacity elements, 0: none kept) at prepared_offset. Its sources (w, b, the
    // BatchNormalization's vectors) are kept_blocks_[first_block, end_block), their digests an
    // arena's Arena::digests[first_block, end_block).
    bool keep = false;
    int64_t fold_offset = 0, prepared_offset = 0, prepared_capacity = 0;
    int first_block = 0, end_block = 0;
  };
  // Per op and arena: are the arena's digests of the sources (and what came of them) current?
  struct Kept {
    bool valid = false;
    const void* prepared_by = nullptr;  // the ConvAlgo whose prepare made the arena's prepared weights
  };

  int add_value(std::vector<int64_t> dims, int producer);
  void check_value(int v, const char* what) const;
  void check_open() const;
  int append(Op op, std::vector<int64_t> out_dims);  // the op's output value; marks its reads
  void fuse_residual_adds();                          // finish(): conv -> add [-> relu] as one op
  // Where value v's mb samples are: in the arena's slots (shared among values) from `slots`, or
  // with `own_places` in places of their own (own_size_) from there.
  T* place(int v, T* slots, int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
           bool own_places) const;
  // The arena room of every slot (with own_places, every own place) for mb samples: false /
  // std::bad_alloc where it overflows.
  bool places_elements(int64_t mb, bool own_places, int64_t* elements) const;
  int64_t slot_elements(int64_t mb, bool own_places = false) const;
  // Makes every conv's digests, fold and prepared weights current (for a batch of mb) where its
  // sources changed; before the ops run, on the calling thread (the digests shared with a
  // thread team where the run has one). `first_op` (null: none) runs the first op of the first
  // chunk: given, and the team's digests worth overlapping with it (first_op_overlaps), one
  // thread runs it while the others digest. Returns whether it ran.
  bool refresh_all_kept(int64_t mb, T* arena, std::vector<Kept>& kept, std::vector<Digest>& digests,
                        const char* forced_conv, const std::function<void()>* first_op = nullptr) const;

  // One conv's: `same`, whether its sources still have the arena's digests (and those are valid).
  void refresh_kept(const Op& op, int64_t mb, T* arena, Kept* kept, Digest* digests, const char* forced_conv,
                    bool same) const;
  // A chunk's convs' algorithms (null for other ops) and which values it keeps in channel
  // blocks (ConvTensors::src_blocked), for mb samples: from the shapes alone (the forward
  // choices read no data), before the chunk's first op runs.
  struct ChunkLayout {
    std::vector<const ConvAlgo<T>*> algos;  // per op
    std::vector<char> blocked;              // per value
  };
  ChunkLayout chunk_layout(int64_t mb, const char* forced_conv) const;
  // Op's conv problem and tensors for mb samples (run_op's), the layouts unset.
  void conv_call(const Op& op, int64_t mb, const T* arena, const std::vector<T*>* where, ConvShape* s,
                 ConvTensors<T>* t) const;
  void run_op(const Op& op, int64_t mb, const T* arena, const Kept& kept, const std::vector<T*>& where,
              const char* forced_conv, const ConvAlgo<T>* algo, const std::vector<char>& blocked) const;
  // run_timed's destinations (see there); null where a run is not timed.
  struct OpClock {
    double* op_seconds;
    double* share_seconds;
    int share_threads;
  };
  // One chunk's ops [first, last) (last -1: to the end): `inputs` and `outputs` point at its
  // first sample, its values at `slots`.
  void run_chunk(int64_t mb, const T* arena, const std::vector<Kept>& kept, T* slots, bool own_places,
                 const std::vector<const T*>& inputs, const std::vector<T*>& outputs, const char* forced_conv,
                 const ChunkLayout& layout, const OpClock* clock, int first = 0, int last = -1) const;
  double op_flops(const Op& op) const;  // a conv's or dense layer's operations per sample, else 0
  template <class F>
  static void for_each_source(const Op& op, F&& f);  // f(pointer, elements) per array a conv derives from
  void run_ops(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
               const std::string& forced_conv, const OpClock* clock) const;  // clock may be null
  // How run_ops runs mb samples at the present thread count: the chunks' sizes and the largest,
  // the threads running whole chunks (workers), the team running each op (team), and whether
  // the values take places of their own (own_places) or shared slots. `timed`: run_timed.
  struct RunLayout {
    std::vector<int64_t> sizes;
    int64_t largest = 0;
    int workers = 1, team = 1;
    bool own_places = false;
  };
  RunLayout run_layout(int64_t mb, bool timed) const;

  std::vector<Value> values_;
  std::vector<Op> ops_;
  std::vector<int> inputs_, outputs_;
  std::vector<int64_t> slot_size_;    // per-sample elements of each arena slot (finish)
  std::vector<int64_t> own_size_;     // per-sample elements of each value's own place (finish)
  int64_t kept_elements_ = 0;         // arena room for what convs derive from their weights
  // Every array a conv derives from (for_each_source), in op order, in blocks of at most
  // kKeptBlockValues (finish): a block is the segments [first_segment, end_segment) of one op's
  // arrays one after another, so that a layer's bias and BatchNormalization vectors share a
  // block with the end of its weights (a digest's fixed cost is ~0.1 us: five blocks of 16-64
  // values a layer cost the example ResNet 4 us a run). An arena keeps one digest a block
  // (Arena::digests); the blocks are the pieces a thread team shares.
  struct KeptSegment {
    const T* src;
    int64_t count;
  };
  struct KeptBlock {
    int op;
    int first_segment, end_segment;
    int64_t values;
  };
  std::vector<KeptSegment> kept_segments_;
  std::vector<KeptBlock> kept_blocks_;
  Digest block_digest(std::size_t block) const;  // of its segments' bytes one after another
  int64_t kept_source_values_ = 0;
  int64_t first_op_source_values_ = 0;  // of them, the first op's (at the front: op order)
  int first_op_blocks_ = 0;
  double flops_per_sample_ = 0.0;  // the convs' and dense layers' operations per sample (finish)
  double first_op_work_ = 0.0;     // the first op's operations per sample (its output's size for one without)
  int64_t serial_samples_ = 0;     // serial_samples() (finish)
  bool keep_prepared_ = true;
  bool blocked_layout_ = true;
  std::vector<char> block_candidates_;  // per value, what may be blocked (finish); empty: none
  Places places_ = Places::automatic;
  int64_t chunk_samples_ = 0;
  bool finished_ = false;

  // Arenas kept between runs (two at most, 64 MiB each at most: fresh pages cost more than a
  // small batch's arithmetic); a run that finds none free and large enough gets its own.
  struct Arena {
    LargeBuffer buffer;  // 64-byte aligned
    int64_t elements = 0;
    std::vector<Kept> kept;  // per op
    std::vector<Digest> digests;  // per kept block (kept_blocks_), valid where its op's Kept is
  };
  mutable std::mutex arenas_mutex_;
  mutable std::vector<Arena> free_arenas_;
};

extern template class InferencePlan<float>;
extern template class InferencePlan<double>;

}  // namespace convforge
