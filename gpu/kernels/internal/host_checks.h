// Host-side argument checks shared by the launch functions of gpu/kernels and gpu/sampling.
// Each returns InvalidArgument (FailedPrecondition for the device) with a message that names the
// function, the argument, its value and the fix, so callers can return it unchanged.
//
//   if (absl::Status s = RequireNonNull("LayerNorm", "gamma", gamma); !s.ok()) return s;
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/kernels/internal/launch.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels::internal {

// kMaxGridRows is the most rows (tokens) one launch covers: the grid's x dimension.
inline constexpr int64_t kMaxGridRows = (int64_t{1} << 31) - 1;

// kMaxTiledCols is the longest row a row-tiled elementwise launch covers even one element per
// thread (65535 blocks of 256 threads; see TileRow in device_helpers.h).
inline constexpr int64_t kMaxTiledCols = int64_t{65535} * 256;

// ToElementType maps a DType to the kernels' element type.
ElementType ToElementType(DType dtype);

// RequireDType accepts the three element types and rejects any other enum value.
absl::Status RequireDType(const char* function, DType dtype);

absl::Status RequireNonNull(const char* function, const char* argument, const void* pointer);

// RequireInRange accepts low <= value <= high.
absl::Status RequireInRange(const char* function, const char* argument, int64_t value,
                            int64_t low, int64_t high);

// RequireStreamDevice checks that the stream holds a CUDA stream (was not moved from) and that
// the calling thread's current CUDA device is the stream's:
// kernels launch on the current device, and a stream of another device fails the launch with a
// less helpful "invalid resource handle".
absl::Status RequireStreamDevice(const char* function, const Stream& stream);

// LaunchStatus turns a launcher's cudaError_t into a status naming the kernel.
absl::Status LaunchStatus(cudaError_t code, const char* kernel, const Stream& stream);

}  // namespace troupe::gpu::kernels::internal
