#include "gpu/kernels/embedding.h"

#include <cuda_runtime.h>

#include <limits>

#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {
namespace {

// Token ids and positions are int32, so no table needs more rows than an int32 can index.
constexpr int64_t kMaxTableRows = int64_t{std::numeric_limits<int32_t>::max()} + 1;
constexpr int64_t kMaxOffset = std::numeric_limits<int32_t>::max();

absl::Status CheckAndLaunch(const char* function, DType dtype,
                            const internal::EmbeddingLaunch& args, Stream& stream) {
  absl::Status status = internal::RequireDType(function, dtype);
  if (status.ok()) status = internal::RequireNonNull(function, "token_ids", args.token_ids);
  if (status.ok()) status = internal::RequireNonNull(function, "table", args.table);
  if (status.ok()) status = internal::RequireNonNull(function, "output", args.output);
  if (status.ok()) {
    status = internal::RequireInRange(function, "num_tokens", args.num_tokens, 1,
                                      internal::kMaxGridRows);
  }
  if (status.ok()) {
    status = internal::RequireInRange(function, "vocab_size", args.vocab_size, 1, kMaxTableRows);
  }
  if (status.ok()) {
    status =
        internal::RequireInRange(function, "hidden", args.hidden, 1, internal::kMaxTiledCols);
  }
  if (!status.ok()) return status;
  if (absl::Status device = internal::RequireStreamDevice(function, stream); !device.ok()) {
    return device;
  }
  return internal::LaunchStatus(
      internal::LaunchEmbedding(internal::ToElementType(dtype), args,
                                static_cast<cudaStream_t>(stream.raw())),
      "Embedding kernel launch", stream);
}

}  // namespace

absl::Status Embedding(DType dtype, const int32_t* token_ids, const void* table, void* output,
                       int64_t num_tokens, int64_t vocab_size, int64_t hidden, Stream& stream) {
  const internal::EmbeddingLaunch args{token_ids,  table,      nullptr, nullptr, output,
                                       num_tokens, vocab_size, hidden,  0,       0};
  return CheckAndLaunch("Embedding", dtype, args, stream);
}

absl::Status EmbeddingWithPositions(DType dtype, const int32_t* token_ids, const void* table,
                                    const int32_t* positions, const void* position_table,
                                    void* output, int64_t num_tokens, int64_t vocab_size,
                                    int64_t hidden, int64_t num_positions,
                                    int64_t position_offset, Stream& stream) {
  constexpr const char* kFunction = "EmbeddingWithPositions";
  absl::Status status = internal::RequireNonNull(kFunction, "positions", positions);
  if (status.ok()) {
    status = internal::RequireNonNull(kFunction, "position_table", position_table);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "num_positions", num_positions, 1, kMaxTableRows);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "position_offset", position_offset, -kMaxOffset,
                                      kMaxOffset);
  }
  if (!status.ok()) return status;
  const internal::EmbeddingLaunch args{token_ids,  table,      positions, position_table,
                                       output,     num_tokens, vocab_size, hidden,
                                       num_positions, position_offset};
  return CheckAndLaunch(kFunction, dtype, args, stream);
}

}  // namespace troupe::gpu::kernels
