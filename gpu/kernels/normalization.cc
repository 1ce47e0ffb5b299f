#include "gpu/kernels/normalization.h"

#include <cuda_runtime.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {
namespace {

using internal::NormKind;
using internal::NormLaunch;

constexpr int64_t kMaxCols = std::numeric_limits<int32_t>::max();

absl::Status CheckAndLaunch(const char* function, DType dtype, const NormLaunch& args,
                            Stream& stream) {
  absl::Status status = internal::RequireDType(function, dtype);
  if (status.ok()) status = internal::RequireNonNull(function, "input", args.input);
  if (status.ok() && args.kind == NormKind::kLayerNorm) {
    status = internal::RequireNonNull(function, "beta", args.beta);
  }
  if (status.ok()) status = internal::RequireNonNull(function, "gamma", args.gamma);
  if (status.ok()) status = internal::RequireNonNull(function, "output", args.output);
  if (status.ok()) status = internal::RequireInRange(function, "rows", args.rows, 1,
                                                     internal::kMaxGridRows);
  if (status.ok()) status = internal::RequireInRange(function, "cols", args.cols, 1, kMaxCols);
  if (status.ok() && !(std::isfinite(args.epsilon) && args.epsilon >= 0.0f)) {
    status = absl::InvalidArgumentError(absl::StrCat(
        function, ": epsilon = ", args.epsilon, " must be finite and >= 0 (typically 1e-5)"));
  }
  if (!status.ok()) return status;
  if (absl::Status device = internal::RequireStreamDevice(function, stream); !device.ok()) {
    return device;
  }
  return internal::LaunchStatus(
      internal::LaunchNorm(internal::ToElementType(dtype), args,
                           static_cast<cudaStream_t>(stream.raw())),
      args.kind == NormKind::kLayerNorm ? "LayerNorm kernel launch" : "RmsNorm kernel launch",
      stream);
}

absl::Status CheckResidual(const char* function, const void* residual, const void* sum_output,
                           const void* output) {
  if (absl::Status s = internal::RequireNonNull(function, "residual", residual); !s.ok()) {
    return s;
  }
  if (absl::Status s = internal::RequireNonNull(function, "sum_output", sum_output); !s.ok()) {
    return s;
  }
  if (sum_output == output) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": sum_output and output are the same buffer; the residual sum and the "
                  "normalized rows need separate outputs"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LayerNorm(DType dtype, const void* input, const void* gamma, const void* beta,
                       void* output, int64_t rows, int64_t cols, float epsilon, Stream& stream) {
  const NormLaunch args{NormKind::kLayerNorm, input,  nullptr, nullptr, gamma, beta,
                        nullptr,              output, rows,    cols,    epsilon};
  return CheckAndLaunch("LayerNorm", dtype, args, stream);
}

absl::Status RmsNorm(DType dtype, const void* input, const void* gamma, void* output,
                     int64_t rows, int64_t cols, float epsilon, Stream& stream) {
  const NormLaunch args{NormKind::kRmsNorm, input,  nullptr, nullptr, gamma, nullptr,
                        nullptr,            output, rows,    cols,    epsilon};
  return CheckAndLaunch("RmsNorm", dtype, args, stream);
}

absl::Status ResidualLayerNorm(DType dtype, const void* input, const void* bias,
                               const void* residual, const void* gamma, const void* beta,
                               void* sum_output, void* output, int64_t rows, int64_t cols,
                               float epsilon, Stream& stream) {
  if (absl::Status s = CheckResidual("ResidualLayerNorm", residual, sum_output, output);
      !s.ok()) {
    return s;
  }
  const NormLaunch args{NormKind::kLayerNorm, input,  bias, residual, gamma, beta,
                        sum_output,           output, rows, cols,     epsilon};
  return CheckAndLaunch("ResidualLayerNorm", dtype, args, stream);
}

absl::Status ResidualRmsNorm(DType dtype, const void* input, const void* bias,
                             const void* residual, const void* gamma, void* sum_output,
                             void* output, int64_t rows, int64_t cols, float epsilon,
                             Stream& stream) {
  if (absl::Status s = CheckResidual("ResidualRmsNorm", residual, sum_output, output); !s.ok()) {
    return s;
  }
  const NormLaunch args{NormKind::kRmsNorm, input,  bias, residual, gamma, nullptr,
                        sum_output,         output, rows, cols,     epsilon};
  return CheckAndLaunch("ResidualRmsNorm", dtype, args, stream);
}

}  // namespace troupe::gpu::kernels
