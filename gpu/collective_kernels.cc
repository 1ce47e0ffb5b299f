#include "gpu/collective_kernels.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace internal {
cudaError_t LaunchSumBuffers(int input_type, int output_type, const void* const* inputs,
                             int num_inputs, void* output, int64_t count, cudaStream_t stream);
}  // namespace internal

namespace {

// ElementIndex is the kernel file's code for `dtype` (DType's order), or -1 for a value that is
// no DType.
int ElementIndex(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 0;
    case DType::kFloat16:
      return 1;
    case DType::kBFloat16:
      return 2;
  }
  return -1;
}

}  // namespace

absl::Status SumBuffers(const void* const* inputs, int num_inputs, DType input_dtype,
                        void* output, DType output_dtype, int64_t count, Stream& stream) {
  if (num_inputs < 1 || num_inputs > kMaxSumInputs) {
    return absl::InvalidArgumentError(absl::StrCat("SumBuffers: num_inputs is ", num_inputs,
                                                   "; it must be 1 to ", kMaxSumInputs));
  }
  if (ElementIndex(input_dtype) < 0 || ElementIndex(output_dtype) < 0) {
    return absl::InvalidArgumentError("SumBuffers: an element type is not fp32, fp16 or bf16");
  }
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SumBuffers: count is ", count, "; it must be >= 0"));
  }
  if (count == 0) return absl::OkStatus();
  if (output == nullptr) return absl::InvalidArgumentError("SumBuffers: output is null");
  for (int k = 0; k < num_inputs; ++k) {
    if (inputs[k] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("SumBuffers: input ", k, " is null"));
    }
    if (num_inputs > 1 && inputs[k] == output) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SumBuffers: input ", k, " is the output; sum into a buffer of its own"));
    }
  }
  if (stream.raw() == nullptr) {
    return absl::FailedPreconditionError(
        "SumBuffers: the stream has no CUDA stream (moved from?); pass a live Stream");
  }
  // Kernels launch on the current device: a stream of another device would fail the launch with
  // a less helpful "invalid resource handle".
  int current = -1;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaGetDevice(&current), stream.device());
  if (current != stream.device()) {
    return absl::FailedPreconditionError(
        absl::StrCat("SumBuffers: the stream belongs to cuda:", stream.device(), " but cuda:",
                     current, " is current on this thread; enter cuda:", stream.device(),
                     " first (ScopedDevice)"));
  }
  return internal::CudaStatus(
      internal::LaunchSumBuffers(ElementIndex(input_dtype), ElementIndex(output_dtype), inputs,
                                 num_inputs, output, count,
                                 static_cast<cudaStream_t>(stream.raw())),
      "SumBuffers kernel launch", stream.device());
}

}  // namespace troupe::gpu
