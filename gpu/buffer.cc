#include "gpu/buffer.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/cuda_allocator.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace {

// CheckPointers refuses null pointers for a copy that moves any bytes.
absl::Status CheckPointers(const void* dst, const void* src, size_t bytes, const char* user) {
  if (bytes == 0 || (dst != nullptr && src != nullptr)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(user, ": the ", dst == nullptr ? "destination" : "source", " is null but ",
                   bytes, " bytes are to be copied"));
}

absl::Status CopyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                       const Stream& stream, const char* user) {
  if (absl::Status valid = CheckPointers(dst, src, bytes, user); !valid.ok()) return valid;
  if (absl::Status valid = CheckStreamFor(stream, stream.device(), user); !valid.ok()) {
    return valid;
  }
  if (bytes == 0) return absl::OkStatus();
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(stream.device());
  if (!scoped.ok()) return scoped.status();
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst, src, bytes, kind, static_cast<cudaStream_t>(stream.raw())),
      stream.device());
  return absl::OkStatus();
}

// CopyNow copies on the calling thread's default stream and waits for it. cudaMemcpy alone could
// return before a copy from pageable memory has reached the device.
absl::Status CopyNow(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, int device,
                     const char* user) {
  if (absl::Status valid = CheckPointers(dst, src, bytes, user); !valid.ok()) return valid;
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  if (bytes == 0) return absl::OkStatus();
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, kind, cudaStreamPerThread), device);
  TROUPE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cudaStreamPerThread), device);
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyToDeviceAsync(void* device_dst, const void* host_src, size_t bytes,
                               const Stream& stream) {
  return CopyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream,
                   "CopyToDeviceAsync");
}

absl::Status CopyToHostAsync(void* host_dst, const void* device_src, size_t bytes,
                             const Stream& stream) {
  return CopyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream, "CopyToHostAsync");
}

absl::Status CopyToDevice(void* device_dst, const void* host_src, size_t bytes, int device) {
  return CopyNow(device_dst, host_src, bytes, cudaMemcpyHostToDevice, device, "CopyToDevice");
}

absl::Status CopyToHost(void* host_dst, const void* device_src, size_t bytes, int device) {
  return CopyNow(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, device, "CopyToHost");
}

// --- DeviceBuffer --------------------------------------------------------------------------------

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes, int device) {
  if (bytes == 0) {
    if (absl::Status valid = Device::CheckIndex(device); !valid.ok()) return valid;
    return DeviceBuffer(nullptr, 0, device);
  }
  absl::StatusOr<void*> data = CudaAllocator().Allocate(bytes, device);
  if (!data.ok()) return data.status();
  return DeviceBuffer(*data, bytes, device);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Free(); }

void DeviceBuffer::Free() {
  if (data_ == nullptr) return;
  // A failure here (a sticky error from an earlier kernel) has been or will be reported by the
  // calls that did the work; a destructor cannot report it.
  CudaAllocator().Free(data_, device_).IgnoreError();
  data_ = nullptr;
  bytes_ = 0;
}

absl::Status DeviceBuffer::CheckFits(size_t bytes, const char* user) const {
  if (bytes <= bytes_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(user, ": ", bytes, " bytes do not fit the ",
                                                 bytes_, "-byte buffer on cuda:", device_,
                                                 "; copy at most ", bytes_, " bytes"));
}

absl::Status DeviceBuffer::CopyFromHostAsync(const void* host, size_t bytes, const Stream& stream) {
  constexpr char kUser[] = "DeviceBuffer::CopyFromHostAsync";
  if (absl::Status fits = CheckFits(bytes, kUser); !fits.ok()) return fits;
  if (bytes == 0) return absl::OkStatus();  // An empty buffer has no device to check against.
  if (absl::Status valid = CheckStreamFor(stream, device_, kUser); !valid.ok()) return valid;
  return CopyAsync(data_, host, bytes, cudaMemcpyHostToDevice, stream, kUser);
}

absl::Status DeviceBuffer::CopyToHostAsync(void* host, size_t bytes, const Stream& stream) const {
  constexpr char kUser[] = "DeviceBuffer::CopyToHostAsync";
  if (absl::Status fits = CheckFits(bytes, kUser); !fits.ok()) return fits;
  if (bytes == 0) return absl::OkStatus();  // An empty buffer has no device to check against.
  if (absl::Status valid = CheckStreamFor(stream, device_, kUser); !valid.ok()) return valid;
  return CopyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, stream, kUser);
}

absl::Status DeviceBuffer::CopyFromHost(const void* host, size_t bytes) {
  constexpr char kUser[] = "DeviceBuffer::CopyFromHost";
  if (absl::Status fits = CheckFits(bytes, kUser); !fits.ok()) return fits;
  if (bytes == 0) return absl::OkStatus();  // An empty buffer has no device to enter.
  return CopyNow(data_, host, bytes, cudaMemcpyHostToDevice, device_, kUser);
}

absl::Status DeviceBuffer::CopyToHost(void* host, size_t bytes) const {
  constexpr char kUser[] = "DeviceBuffer::CopyToHost";
  if (absl::Status fits = CheckFits(bytes, kUser); !fits.ok()) return fits;
  if (bytes == 0) return absl::OkStatus();
  return CopyNow(host, data_, bytes, cudaMemcpyDeviceToHost, device_, kUser);
}

// --- PinnedHostBuffer ----------------------------------------------------------------------------

absl::StatusOr<PinnedHostBuffer> PinnedHostBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return PinnedHostBuffer(nullptr, 0);
  void* data = nullptr;
  if (cudaError_t code = cudaMallocHost(&data, bytes); code != cudaSuccess) {
    cudaGetLastError();  // As for cudaMalloc: a failed allocation must not linger as last error.
    // Pinned memory belongs to the current device's context, so that is the device to name.
    int device = 0;
    cudaGetDevice(&device);
    absl::Status status = internal::CudaStatus(code, "cudaMallocHost", device);
    return absl::Status(
        status.code(),
        absl::StrCat("allocating ", bytes, " bytes of pinned host memory: ", status.message()));
  }
  return PinnedHostBuffer(data, bytes);
}

PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

PinnedHostBuffer::~PinnedHostBuffer() { Free(); }

void PinnedHostBuffer::Free() {
  if (data_ != nullptr) cudaFreeHost(data_);  // A destructor cannot report its error.
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace troupe::gpu
