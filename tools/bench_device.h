// Device-side helpers for the GPU benchmarks.
//   FillRandom fills device memory with pseudo-random values on the GPU, for benchmarks whose
//     inputs are gigabytes (generating those on the host would take longer than measuring);
//   ReadAll reads a buffer and nothing else: the read-bandwidth ceiling for read-bound kernels
//     such as decode attention (a copy also writes, which costs DRAM bus turnarounds).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::tools {

// FillRandom writes `count` elements of `dtype`, roughly N(0, 1) (a sum of four uniforms,
// rescaled), determined by `seed` and the element index.
absl::Status FillRandom(gpu::DType dtype, void* data, size_t count, uint64_t seed,
                        gpu::Stream& stream);

// ReadAll reads `bytes` (a multiple of 16, 16-byte aligned) at `data` in 16-byte loads over the
// whole GPU, XOR-folding them into a word that a thread writes to `sink` (device memory, 8
// bytes) only if it equals 0x9e3779b9: the loads cannot be elided, and for data that folds to
// anything else nothing is written.
absl::Status ReadAll(const void* data, size_t bytes, uint64_t* sink, gpu::Stream& stream);

}  // namespace troupe::tools
