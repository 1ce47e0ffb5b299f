#include "gpu/device.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {

int Device::Count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    // No driver or no device: not an error for the caller, who asks "how many?". Clear the
    // runtime's last error so that it does not surface in an unrelated later check.
    cudaGetLastError();
    return 0;
  }
  return count;
}

absl::Status Device::CheckIndex(int index) {
  const int count = Count();
  if (index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cuda:", index,
                                                   " is not a device index: indices start at 0 "
                                                   "(this process sees ",
                                                   count, " CUDA device(s))"));
  }
  if (index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("cuda:", index, " does not exist: this process sees ", count,
                     " CUDA device(s); check the node's gpus and CUDA_VISIBLE_DEVICES"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Device> Device::Get(int index) {
  if (absl::Status valid = CheckIndex(index); !valid.ok()) return valid;
  cudaDeviceProp properties{};
  TROUPE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, index), index);
  Device device;
  device.index_ = index;
  device.name_ = properties.name;
  device.sm_count_ = properties.multiProcessorCount;
  device.total_memory_bytes_ = properties.totalGlobalMem;
  device.compute_capability_ = properties.major * 10 + properties.minor;
  return device;
}

absl::StatusOr<size_t> Device::FreeMemoryBytes() const {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(index_);
  if (!scoped.ok()) return scoped.status();
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes), index_);
  return free_bytes;
}

absl::Status Device::Synchronize() const {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(index_);
  if (!scoped.ok()) return scoped.status();
  TROUPE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), index_);
  return absl::OkStatus();
}

absl::StatusOr<ScopedDevice> ScopedDevice::Enter(int device) {
  if (absl::Status valid = Device::CheckIndex(device); !valid.ok()) return valid;
  int previous = 0;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous), device);
  if (previous != device) TROUPE_CUDA_RETURN_IF_ERROR(cudaSetDevice(device), device);
  return ScopedDevice(previous);
}

ScopedDevice::ScopedDevice(ScopedDevice&& other) noexcept
    : previous_(std::exchange(other.previous_, -1)) {}

ScopedDevice::~ScopedDevice() {
  // The previous device was current a moment ago, so making it current again cannot fail for a
  // reason the caller could act on; a destructor has no way to report it anyway.
  if (previous_ >= 0) cudaSetDevice(previous_);
}

}  // namespace troupe::gpu
