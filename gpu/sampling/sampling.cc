#include "gpu/sampling/sampling.h"

#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/kernels/internal/host_checks.h"
#include "gpu/sampling/internal/launch.h"

namespace troupe::gpu::sampling {
namespace {

namespace checks = ::troupe::gpu::kernels::internal;
using internal::RowParams;

constexpr const char* kSample = "Sample";
// Token ids are int32.
constexpr int64_t kMaxVocab = std::numeric_limits<int32_t>::max();

absl::Status CheckShapes(const char* function, DType dtype, const void* logits,
                         const int32_t* token_ids, int64_t batch, int64_t vocab) {
  absl::Status status = checks::RequireDType(function, dtype);
  if (status.ok()) status = checks::RequireNonNull(function, "logits", logits);
  if (status.ok()) status = checks::RequireNonNull(function, "token_ids", token_ids);
  if (status.ok()) {
    status = checks::RequireInRange(function, "batch", batch, 1, checks::kMaxGridRows);
  }
  if (status.ok()) status = checks::RequireInRange(function, "vocab", vocab, 1, kMaxVocab);
  return status;
}

absl::Status CheckParams(const SamplingParams& p, int64_t row) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kSample, ": params[", row, "].temperature = ", p.temperature,
        " must be finite and >= 0 (0 for greedy)"));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(kSample, ": params[", row,
                                                   "].top_p = ", p.top_p,
                                                   " must be in (0, 1] (1 turns top-p off)"));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kSample, ": params[", row,
                                                   "].top_k = ", p.top_k,
                                                   " must be >= 0 (0 turns top-k off)"));
  }
  return absl::OkStatus();
}

absl::Status Launch(const char* function, DType dtype, const void* logits, int32_t* token_ids,
                    int64_t batch, int64_t vocab, const std::vector<RowParams>& rows,
                    Stream& stream) {
  if (absl::Status device = checks::RequireStreamDevice(function, stream); !device.ok()) {
    return device;
  }
  return checks::LaunchStatus(
      internal::LaunchSample(checks::ToElementType(dtype), logits, batch, vocab, rows.data(),
                             token_ids, static_cast<cudaStream_t>(stream.raw())),
      "Sample kernel launch", stream);
}

}  // namespace

absl::Status Sample(DType dtype, const void* logits, int32_t* token_ids, int64_t batch,
                    int64_t vocab, absl::Span<const SamplingParams> params, Stream& stream) {
  if (absl::Status s = CheckShapes(kSample, dtype, logits, token_ids, batch, vocab); !s.ok()) {
    return s;
  }
  if (static_cast<int64_t>(params.size()) != batch) {
    return absl::InvalidArgumentError(absl::StrCat(kSample, ": params has ", params.size(),
                                                   " entries for batch = ", batch,
                                                   "; pass one SamplingParams per row"));
  }
  std::vector<RowParams> rows(batch);
  for (int64_t r = 0; r < batch; ++r) {
    const SamplingParams& p = params[r];
    if (absl::Status s = CheckParams(p, r); !s.ok()) return s;
    rows[r] = RowParams{p.temperature, p.top_p, p.top_k, 0, p.seed, p.offset};
  }
  return Launch(kSample, dtype, logits, token_ids, batch, vocab, rows, stream);
}

absl::Status Argmax(DType dtype, const void* logits, int32_t* token_ids, int64_t batch,
                    int64_t vocab, Stream& stream) {
  if (absl::Status s = CheckShapes("Argmax", dtype, logits, token_ids, batch, vocab); !s.ok()) {
    return s;
  }
  const std::vector<RowParams> rows(batch, RowParams{0.0f, 1.0f, 0, 0, 0, 0});
  return Launch("Argmax", dtype, logits, token_ids, batch, vocab, rows, stream);
}

}  // namespace troupe::gpu::sampling
