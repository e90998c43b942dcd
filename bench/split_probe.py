"""Two threads on one image's rows: what the layout of the image does to each (a C probe).

    python bench/split_probe.py            # needs a C compiler (cc/gcc) with OpenMP

Thread 0 reads and writes rows 0-15 of sixteen 28x28 float planes, thread 1 rows 16-27 (a layer
split between two threads by rows, as an inference plan splits one image), over and over; each
thread's time a pass, alone and with the other thread running its own rows at the same time. In
NCHW each thread's rows are a piece of every plane; in blocks of 16 channels (NCHW16c) they are
one run of memory. No cache line is shared either way (both splits fall on line boundaries), so
what two threads cost each other in NCHW is the hardware prefetchers of each core streaming
into the other's rows. On the forty-second stop's 2-vCPU Xeon (bench/BEFORE_AFTER.md): in NCHW
each thread took 1.79x and 1.75x its time alone, in blocks 1.02x and 1.03x. Not a benchmark of
convforge: the reason its inference plan keeps images in channel blocks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define C 16
#define W 28
#define H 28
static int blocked;
static void pass(const float* a, float* b, int r0, int r1, float add) {
  if (blocked) {  /* row r of the one 16-channel block: W pixels x 16 channels from r * W * 16 */
    for (long i = (long)r0 * W * 16; i < (long)r1 * W * 16; ++i) b[i] = a[i] + add;
    return;
  }
  for (int c = 0; c < C; ++c)
    for (long i = (long)c * H * W + r0 * W; i < (long)c * H * W + r1 * W; ++i) b[i] = a[i] + add;
}
int main(int argc, char** argv) {
  blocked = argc > 1 && strcmp(argv[1], "blocked") == 0;
  float* a = aligned_alloc(64, C * H * W * 4);
  float* b = aligned_alloc(64, C * H * W * 4);
  memset(a, 0, C * H * W * 4);
  memset(b, 0, C * H * W * 4);
  const int reps = 100000;
  for (int mode = 0; mode < 3; ++mode) { /* 0: thread 0 alone, 1: thread 1 alone, 2: both */
    double t[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
      const int me = omp_get_thread_num();
      for (int r = 0; r < reps; ++r) {
#pragma omp barrier
        if (mode == 2 || mode == me) {
          const double start = omp_get_wtime();
          if (r & 1) pass(b, a, me ? 16 : 0, me ? 28 : 16, 1.0f);
          else pass(a, b, me ? 16 : 0, me ? 28 : 16, 1.0f);
          t[me] += omp_get_wtime() - start;
        }
      }
    }
    printf("%s %s %.0f %.0f\n", blocked ? "blocks" : "nchw", mode == 0 ? "t0_alone" : mode == 1 ? "t1_alone" : "both",
           t[0] / reps * 1e9, t[1] / reps * 1e9);
  }
  return 0;
}
"""


def main() -> int:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("no C compiler (cc or gcc) on PATH", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(SOURCE)
        subprocess.run([cc, "-O2", "-fopenmp", src, "-o", exe], check=True)
        rows = {}
        for layout in ("nchw", "blocked"):
            out = subprocess.run([exe, layout], check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                name, mode, t0, t1 = line.split()
                rows[(name, mode)] = (float(t0), float(t1))
    print("ns a pass of each thread over its rows (thread 0: rows 0-15, thread 1: rows 16-27)\n")
    print("| layout | thread 0 alone | thread 1 alone | thread 0 with 1 | thread 1 with 0 |")
    print("|---|---:|---:|---:|---:|")
    for name in ("nchw", "blocks"):
        a0 = rows[(name, "t0_alone")][0]
        a1 = rows[(name, "t1_alone")][1]
        b0, b1 = rows[(name, "both")]
        print(f"| {name} | {a0:.0f} | {a1:.0f} | {b0:.0f} ({b0 / a0:.2f}x) | {b1:.0f} ({b1 / a1:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
