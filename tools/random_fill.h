// FillRandom: fills device memory with pseudo-random values on the GPU, for benchmarks whose
// inputs are gigabytes (generating those on the host would take longer than measuring).
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

}  // namespace troupe::tools
