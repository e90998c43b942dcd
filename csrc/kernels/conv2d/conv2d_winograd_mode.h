// Whether 3x3 unit-stride convolutions may, must or must not use the Winograd form
// (conv2d_winograd.h). A private switch for tests and benchmarks: `automatic` (the default)
// lets the heuristic decide, `always` takes Winograd wherever it applies (any dtype, any
// ISA), `never` keeps the direct and GEMM forms. Process-wide, like the ISA cap.
#pragma once

namespace convforge {

enum class WinogradMode { automatic, always, never };

WinogradMode winograd_mode();
void set_winograd_mode(WinogradMode mode);

}  // namespace convforge
