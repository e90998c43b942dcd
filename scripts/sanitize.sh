#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the kernels (docs/RELIABILITY.md).
#
#   bash scripts/sanitize.sh                 # build (incremental), tests, leak check
#   bash scripts/sanitize.sh -k relu         # extra arguments go to pytest (step 2 only)
#
# 1. Builds convforge as a Debug build with -DCONVFORGE_SANITIZE=ON (ASan + UBSan, no recovery)
#    into build/asan: CMake tree build/asan/cmake, installed package build/asan/site. The
#    developer build (python/convforge/_core*.so) and the active environment are not touched.
# 2. Runs the kernel tests against that package, the ASan runtime preloaded into the
#    (uninstrumented) Python, with leak detection OFF: CPython and NumPy leave memory behind at
#    exit on purpose, and a LeakSanitizer report of the whole process would be mostly theirs.
# 3. A targeted leak check: a driver calls every op (results, out= arguments, error paths) on
#    every ISA path and thread count, with LeakSanitizer ON; the script then reads the report
#    and fails on any leak whose allocation stack passes through convforge's code (_core / csrc),
#    ignoring the interpreter's own. LSan suppressions cannot express "only this library": a
#    suppression matches if ANY frame matches, and every _core allocation has Python frames.
#
# Environment: PYTHON (interpreter, default `python`), CONVFORGE_ASAN_DIR (default build/asan),
# CONVFORGE_LEAK_REPS (driver repetitions, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${CONVFORGE_ASAN_DIR:-build/asan}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
PY=$("${PYTHON:-python}" -c 'import sys; print(sys.executable)')
START=$SECONDS

step() { printf '\n=== sanitize: %s ===\n' "$*"; }
die() { printf 'sanitize.sh: %s\n' "$*" >&2; exit 1; }

# ---- 1. build ----------------------------------------------------------------------------------
step "Debug + ASan + UBSan build into ${OUT#"$ROOT"/}"
rm -rf "$OUT/site" "$OUT/logs"
mkdir -p "$OUT/logs"
pip_args=(--no-deps --target "$OUT/site" -Ccmake.build-type=Debug -Ccmake.define.CONVFORGE_SANITIZE=ON
          -Cbuild-dir="$OUT/cmake")
# Offline when the build backend is already installed; otherwise pip fetches it (as `pip install .`).
if "$PY" -c 'import scikit_build_core, pybind11' 2>/dev/null; then pip_args+=(--no-build-isolation); fi
"$PY" -m pip install -q "${pip_args[@]}" .

so=$(ls "$OUT"/site/convforge/_core*.so)
# The runtimes the module was linked against, whatever the compiler: preloaded in that order.
asan_rt=$(ldd "$so" | awk '/libasan/ {print $3}')
stdcxx=$(ldd "$so" | awk '/libstdc\+\+/ {print $3}')
[ -n "$asan_rt" ] || die "$so is not linked against libasan: was CONVFORGE_SANITIZE applied?"
syms=$(nm -D "$so")  # not `nm | grep -q`: grep's early exit would fail the pipe (pipefail)
grep -q '__asan_report_store' <<<"$syms" || die "$so has no ASan instrumentation"
grep -q '__ubsan_handle_' <<<"$syms" || die "$so has no UBSan instrumentation"
echo "module:   $so"
echo "runtime:  $asan_rt${stdcxx:+ + $stdcxx}"

# libstdc++ is preloaded too: Python does not link it, and ASan's __cxa_throw interceptor must
# resolve the real one at start-up or the first C++ exception aborts with "CHECK failed:
# real___cxa_throw".
export LD_PRELOAD="$asan_rt${stdcxx:+ $stdcxx}"
export PYTHONPATH="$OUT/site"          # the instrumented package only, never python/
export PYTHONMALLOC=malloc             # Python objects through malloc: overflows into them are seen
asan_common="halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1"
asan_common+=":check_initialization_order=1:strict_init_order=1:detect_odr_violation=2"
# Hostile-input tests ask for terabytes on purpose: NULL (-> MemoryError), not an ASan abort.
asan_common+=":allocator_may_return_null=1"
# UBSan (GCC's runtime, next to ASan's) ignores log_path and writes to stderr: pytest runs with
# --capture=sys below, so native stderr is never swallowed by a test's output capture.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1"

# Any report file means a finding, whatever the exit status said (subprocesses included).
check_logs() {
  local found=0 f
  for f in "$OUT"/logs/"$1".*; do
    [ -e "$f" ] || continue
    found=1
    printf '\n--- %s ---\n' "$f" >&2
    cat "$f" >&2
  done
  return "$found"
}

# A canary: the preloaded runtime must report an overflow (memmove past a 8-byte ctypes buffer),
# or the runs below prove nothing.
step "canary: the runtime catches a heap overflow"
if ASAN_OPTIONS="$asan_common:detect_leaks=0:log_path=$OUT/logs/canary" \
   "$PY" -c 'import ctypes; b = ctypes.create_string_buffer(8); ctypes.memmove(b, b"x" * 64, 64)' 2>/dev/null; then
  die "the canary overflow was not detected: ASan is not active"
fi
grep -q 'heap-buffer-overflow' "$OUT"/logs/canary.* || die "the canary run failed without an ASan report"
rm -f "$OUT"/logs/canary.*
echo "ok: heap-buffer-overflow reported"
# ... and `import convforge` must find the instrumented build, not an installed one.
ASAN_OPTIONS="$asan_common:detect_leaks=0" "$PY" - "$OUT/site" <<'PY' || die "the tests would not import the instrumented build"
import os, sys
import convforge
where, info = os.path.realpath(convforge.__file__), convforge.build_info()
print(f"ok: tests import {where} ({info['build_type']}, ISA {info['isa']}, {info['num_threads']} threads)")
sys.exit(0 if where.startswith(os.path.realpath(sys.argv[1]) + os.sep) and info["build_type"] == "Debug" else 1)
PY

# ---- 2. kernel tests ---------------------------------------------------------------------------
step "kernel tests under ASan + UBSan (leak detection off)"
tests=(tests/test_conv2d.py tests/test_dense.py tests/test_pool_relu.py tests/test_errors.py tests/test_hostile.py
       tests/test_fuzz.py tests/test_properties.py tests/test_runtime.py tests/test_channel_ops.py
       tests/test_compiled_inference.py tests/test_weights_digest.py)
rc=0
ASAN_OPTIONS="$asan_common:detect_leaks=0:log_path=$OUT/logs/asan" \
CONVFORGE_FUZZ_EXAMPLES=${CONVFORGE_FUZZ_EXAMPLES:-40} \
  "$PY" -m pytest -q -p no:cacheprovider --capture=sys "${tests[@]}" "$@" || rc=$?
check_logs asan || die "AddressSanitizer reports above (pytest exit status $rc)"
[ "$rc" -eq 0 ] || die "pytest failed under the sanitizers (exit status $rc)"

# ---- 3. targeted leak check --------------------------------------------------------------------
step "leak check: every op, LeakSanitizer on, scoped to convforge"
rc=0
# Slow (DWARF) unwinding for allocation stacks: NumPy and CPython have no frame pointers, and a
# leaked array allocated by NumPy on _core's behalf must still show the _core frames.
ASAN_OPTIONS="$asan_common:detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=64:log_path=$OUT/logs/lsan" \
CONVFORGE_LEAK_REPS=${CONVFORGE_LEAK_REPS:-20} \
  "$PY" - > "$OUT/logs/driver.out" <<'PY' || rc=$?
import concurrent.futures, os
import numpy as np
import convforge
from convforge import _core
from convforge import functional as F

REPS = int(os.environ["CONVFORGE_LEAK_REPS"])
calls = 0


def refused(f, *args, **kwargs):
    global calls
    calls += 1
    try:
        f(*args, **kwargs)
    except (TypeError, ValueError):
        return
    raise AssertionError(f"{f.__name__} accepted bad arguments")


def every_op(dtype, rng):
    global calls
    x = rng.standard_normal((3, 4, 9, 10)).astype(dtype)
    w = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = F.conv2d(x, w, b, stride=(1, 2), padding="same", dilation=(2, 1))
    F.conv2d_backward(y, x, w, (1, 2), "same", (2, 1))
    F.conv2d_backward(y, x, w, (1, 2), "same", (2, 1), need_input_grad=False, need_bias_grad=False)
    F.conv2d(x[:, :, ::2], np.asfortranarray(w), None, 2, ((1, 0), (0, 2)))
    p, i = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    F.max_pool2d(x, 2)
    F.max_pool2d_backward(p, i, x.shape)
    r = F.relu(x)
    F.relu(x, out=r)
    F.relu(x.copy(), out=x[:, :, :, ::-1])
    F.relu_backward(r, x)
    s, q, pads, d = (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)
    _core.conv2d_fwd(x, w, b, s, pads, d, out=np.empty((3, 5, 7, 8), dtype))
    _core.conv2d_bwd_weights(np.ones((3, 5, 7, 8), dtype), x, w.shape, s, pads, d, True,
                             out_w=np.empty(w.shape, dtype), out_b=np.empty(5, dtype))
    _core.maxpool2d_fwd(x, (2, 2), (2, 2), (0, 0), (4, 5), True, out=np.empty((3, 4, 4, 5), dtype),
                        out_indices=np.empty((3, 4, 4, 5), np.int64))
    xd = x.reshape(3, -1)
    wd = rng.standard_normal((xd.shape[1], 19)).astype(dtype)
    yd = F.dense(xd, wd, b[:1].repeat(19))
    F.dense_backward(yd, xd, wd)
    F.dense_backward(yd, xd[::-1], wd, need_input_grad=False, need_bias_grad=False)
    _core.dense_fwd(xd, wd, None, out=np.empty((3, 19), dtype))
    calls += 19
    # Error paths, many of them thrown after an output was allocated.
    refused(F.conv2d, x, w[:, :2])
    refused(F.conv2d, x, w, b[:2])
    refused(F.conv2d_backward, y[:, :, :1], x, w)
    refused(F.max_pool2d_backward, p, i + 10**6, x.shape)
    refused(F.relu, x, out=np.empty((1,), dtype))
    refused(_core.conv2d_fwd, x, w, None, s, pads, d, out=np.empty((3, 5, 7, 7), dtype))
    refused(_core.conv2d_fwd, x, w, b.astype(np.float16), s, pads, d)
    refused(_core.conv2d_bwd_weights, np.ones((3, 5, 7, 8), dtype), x, w.shape, s, pads, d, True,
            out_b=np.empty(4, dtype))
    refused(_core.maxpool2d_fwd, x, (2, 2), (2, 2), (0, 0), (4, 5), True, out_indices=np.empty(3, np.int64))
    refused(_core.maxpool2d_fwd, x, (2, 2), (2, 2), (0, 0), (4, 5), True, out_indices=7)
    refused(_core.maxpool2d_bwd, p, i, (3, 4, 2**40, 2))
    refused(_core.relu_bwd, r, x, out=[1.0])
    refused(_core.relu_bwd, r, x, out=np.empty((2,), dtype))
    refused(F.dense, xd, wd[1:])
    refused(_core.dense_fwd, xd, wd, None, out=np.empty((3, 18), dtype))
    refused(_core.dense_bwd_weights, yd, xd, True, out_b=np.empty(4, dtype))
    refused(_core.dense_bwd_data, yd, wd, out=wd.reshape(-1)[: xd.size].reshape(xd.shape))  # overlaps w


rng = np.random.default_rng(0)
order = ["ref", "avx2", "avx512"]
for isa in order[: order.index(convforge.build_info()["isa_detected"]) + 1]:
    _core._set_isa_cap(isa)
    for threads in (1, 2):
        convforge.set_num_threads(threads)
        for dtype in (np.float32, np.float64):
            for _ in range(REPS):
                every_op(dtype, rng)
# Short-lived Python threads: each one's kernel workspace must be freed when it exits.
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    list(pool.map(lambda seed: every_op(np.float32, np.random.default_rng(seed)), range(8)))
print(f"leak driver: {calls} calls")
PY
cat "$OUT/logs/driver.out"
grep -q '^leak driver: ' "$OUT/logs/driver.out" || { check_logs lsan || true; die "the leak driver did not finish (exit status $rc)"; }
"$PY" - "$OUT"/logs/lsan.* <<'PY' || die "convforge leaked memory (reports above)"
import re, sys

ours, theirs, other_errors = [], 0, []
for path in sys.argv[1:]:
    try:
        text = open(path).read()
    except FileNotFoundError:  # the glob matched nothing: no report at all
        continue
    if "ERROR: AddressSanitizer" in text:
        other_errors.append(text)
    # One block per leak: the header line, then its frames.
    for block in re.split(r"\n(?=(?:Direct|Indirect) leak of )", text):
        if not re.match(r"(?:Direct|Indirect) leak of ", block):
            continue
        frames = block.split("\n\n")[0]
        if re.search(r"_core\.cpython|/csrc/|convforge::", frames):
            ours.append(frames)
        else:
            theirs += 1
for text in other_errors:
    print(text, file=sys.stderr)
for frames in ours:
    print(frames + "\n", file=sys.stderr)
print(f"leak check: {len(ours)} leak(s) from convforge, {theirs} from the interpreter/NumPy (ignored)")
sys.exit(1 if ours or other_errors else 0)
PY

step "passed in $((SECONDS - START)) s"
