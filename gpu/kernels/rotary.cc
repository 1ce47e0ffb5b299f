#include "gpu/kernels/rotary.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {
namespace {

static_assert(kMaxRotaryDim == internal::kMaxRotaryDim);

// kMaxHeads keeps head offsets and per-token work counts within int.
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxHeadDim = 1 << 16;

absl::Status CheckArguments(DType dtype, const int32_t* positions, void* query, void* key,
                            int64_t num_tokens, int64_t num_heads, int64_t num_kv_heads,
                            int64_t head_dim, int64_t rotary_dim, const RotaryOptions& options) {
  constexpr const char* kFunction = "RotaryEmbedding";
  absl::Status status = internal::RequireDType(kFunction, dtype);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "positions", positions);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "query", query);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "key", key);
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "num_tokens", num_tokens, 1,
                                      internal::kMaxGridRows);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "num_heads", num_heads, 1, kMaxHeads);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "num_kv_heads", num_kv_heads, 1, num_heads);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "head_dim", head_dim, 1, kMaxHeadDim);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "rotary_dim", rotary_dim, 2,
                                      std::min(head_dim, kMaxRotaryDim));
  }
  if (!status.ok()) return status;
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": num_kv_heads = ", num_kv_heads, " does not divide num_heads = ", num_heads,
        "; grouped-query attention shares each key head among num_heads / num_kv_heads queries"));
  }
  if (rotary_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": rotary_dim = ", rotary_dim, " is odd; rotary embedding turns pairs"));
  }
  if (!(std::isfinite(options.theta) && options.theta > 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": theta = ", options.theta, " must be finite and > 1 (typically 10000)"));
  }
  if (options.style != RotaryStyle::kNeox && options.style != RotaryStyle::kGptj) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": style ",
                                                   static_cast<int>(options.style),
                                                   " is not kNeox or kGptj"));
  }
  if (options.query_stride != 0 && options.query_stride < num_heads * head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": query_stride = ", options.query_stride, " < num_heads * head_dim = ",
        num_heads * head_dim, "; pass 0 for packed tokens"));
  }
  if (options.key_stride != 0 && options.key_stride < num_kv_heads * head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": key_stride = ", options.key_stride, " < num_kv_heads * head_dim = ",
        num_kv_heads * head_dim, "; pass 0 for packed tokens"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RotaryEmbedding(DType dtype, const int32_t* positions, void* query, void* key,
                             int64_t num_tokens, int64_t num_heads, int64_t num_kv_heads,
                             int64_t head_dim, int64_t rotary_dim, const RotaryOptions& options,
                             Stream& stream) {
  if (absl::Status status = CheckArguments(dtype, positions, query, key, num_tokens, num_heads,
                                           num_kv_heads, head_dim, rotary_dim, options);
      !status.ok()) {
    return status;
  }
  if (absl::Status device = internal::RequireStreamDevice("RotaryEmbedding", stream);
      !device.ok()) {
    return device;
  }
  internal::RotaryLaunch args{};
  args.positions = positions;
  args.query = query;
  args.key = key;
  args.num_tokens = num_tokens;
  args.num_heads = num_heads;
  args.num_kv_heads = num_kv_heads;
  args.head_dim = head_dim;
  args.rotary_dim = rotary_dim;
  args.query_stride = options.query_stride != 0 ? options.query_stride : num_heads * head_dim;
  args.key_stride = options.key_stride != 0 ? options.key_stride : num_kv_heads * head_dim;
  args.interleaved = options.style == RotaryStyle::kGptj;
  for (int64_t i = 0; i < rotary_dim / 2; ++i) {
    args.inverse_frequencies[i] =
        std::pow(static_cast<double>(options.theta), -2.0 * static_cast<double>(i) / rotary_dim);
  }
  return internal::LaunchStatus(
      internal::LaunchRotary(internal::ToElementType(dtype), args,
                             static_cast<cudaStream_t>(stream.raw())),
      "RotaryEmbedding kernel launch", stream);
}

}  // namespace troupe::gpu::kernels
