#include "gpu/stream.h"

#include <cuda_runtime.h>

#include <utility>

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

}  // namespace troupe::gpu
