#include "gpu/stream.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {

absl::StatusOr<Stream> Stream::Create(int device) {
  TROUPE_CUDA_RETURN_IF_ERROR(cudaSetDevice(device), device);
  cudaStream_t stream = nullptr;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), device);
  return Stream(device, stream);
}

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_), stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
    device_ = other.device_;
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

absl::Status Stream::Synchronize() const {
  return internal::CudaStatus(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)),
                              "cudaStreamSynchronize", device_);
}

absl::Status CheckStreamFor(const Stream& stream, int device, absl::string_view user) {
  if (stream.raw() == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(user, ": the Stream was moved from; pass the Stream it was moved to"));
  }
  if (stream.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(
        user, ": the Stream is on cuda:", stream.device(), " but the work is on cuda:", device,
        "; use a Stream created on cuda:", device));
  }
  return absl::OkStatus();
}

}  // namespace troupe::gpu
