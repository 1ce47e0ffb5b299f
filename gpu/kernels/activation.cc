#include "gpu/kernels/activation.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {
namespace {

using internal::ActivationFunction;

// kMaxFlatCount keeps the flat launch within 2^31 - 1 blocks of 256 threads, one element each.
constexpr int64_t kMaxFlatCount = internal::kMaxGridRows * 256;

absl::Status RequireKind(const char* function, ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kRelu:
    case ActivationKind::kGelu:
    case ActivationKind::kGeluTanh:
    case ActivationKind::kSilu: return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      function, ": kind ", static_cast<int>(kind), " is not an ActivationKind"));
}

ActivationFunction ToFunction(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kRelu: return ActivationFunction::kRelu;
    case ActivationKind::kGelu: return ActivationFunction::kGelu;
    case ActivationKind::kGeluTanh: return ActivationFunction::kGeluTanh;
    case ActivationKind::kSilu: return ActivationFunction::kSilu;
  }
  return ActivationFunction::kRelu;
}

// CheckCommon validates what every entry point shares; `rows` is 1 for the flat form.
absl::Status CheckCommon(const char* function, DType dtype, ActivationKind kind,
                         const void* input, void* output, int64_t rows, int64_t cols,
                         int64_t max_cols, Stream& stream) {
  absl::Status status = internal::RequireDType(function, dtype);
  if (status.ok()) status = RequireKind(function, kind);
  if (status.ok()) status = internal::RequireNonNull(function, "input", input);
  if (status.ok()) status = internal::RequireNonNull(function, "output", output);
  if (status.ok()) {
    status = internal::RequireInRange(function, "rows", rows, 1, internal::kMaxGridRows);
  }
  if (status.ok()) status = internal::RequireInRange(function, "cols", cols, 1, max_cols);
  if (!status.ok()) return status;
  return internal::RequireStreamDevice(function, stream);
}

}  // namespace

const char* ActivationName(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kRelu: return "relu";
    case ActivationKind::kGelu: return "gelu";
    case ActivationKind::kGeluTanh: return "gelu_tanh";
    case ActivationKind::kSilu: return "silu";
  }
  return "unknown";
}

absl::Status Activation(DType dtype, ActivationKind kind, const void* input, void* output,
                        int64_t count, Stream& stream) {
  constexpr const char* kFunction = "Activation";
  absl::Status status = internal::RequireInRange(kFunction, "count", count, 1, kMaxFlatCount);
  if (status.ok()) {
    status = CheckCommon(kFunction, dtype, kind, input, output, 1, count, kMaxFlatCount, stream);
  }
  if (!status.ok()) return status;
  return internal::LaunchStatus(
      internal::LaunchActivation(internal::ToElementType(dtype), ToFunction(kind), input, output,
                                 count, static_cast<cudaStream_t>(stream.raw())),
      "Activation kernel launch", stream);
}

absl::Status BiasActivation(DType dtype, ActivationKind kind, const void* input,
                            const void* bias, void* output, int64_t rows, int64_t cols,
                            Stream& stream) {
  constexpr const char* kFunction = "BiasActivation";
  absl::Status status = internal::RequireNonNull(kFunction, "bias", bias);
  if (status.ok()) {
    status = CheckCommon(kFunction, dtype, kind, input, output, rows, cols,
                         internal::kMaxTiledCols, stream);
  }
  if (!status.ok()) return status;
  return internal::LaunchStatus(
      internal::LaunchBiasActivation(internal::ToElementType(dtype), ToFunction(kind), input,
                                     bias, output, rows, cols,
                                     static_cast<cudaStream_t>(stream.raw())),
      "BiasActivation kernel launch", stream);
}

absl::Status GatedActivation(DType dtype, ActivationKind kind, const void* input, void* output,
                             int64_t rows, int64_t cols, Stream& stream) {
  constexpr const char* kFunction = "GatedActivation";
  absl::Status status = CheckCommon(kFunction, dtype, kind, input, output, rows, cols,
                                    internal::kMaxTiledCols, stream);
  if (!status.ok()) return status;
  return internal::LaunchStatus(
      internal::LaunchGatedActivation(internal::ToElementType(dtype), ToFunction(kind), input,
                                      output, rows, cols,
                                      static_cast<cudaStream_t>(stream.raw())),
      "GatedActivation kernel launch", stream);
}

absl::Status SiluAndMul(DType dtype, const void* input, void* output, int64_t rows, int64_t cols,
                        Stream& stream) {
  return GatedActivation(dtype, ActivationKind::kSilu, input, output, rows, cols, stream);
}

}  // namespace troupe::gpu::kernels
