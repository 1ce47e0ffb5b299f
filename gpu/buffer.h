// DeviceBuffer: bytes of device memory, owned. PinnedHostBuffer: page-locked host memory, owned.
// And the copies between host and device memory that both, and other gpu/ types, use.
//
// An async copy only overlaps with the host when the host side is page-locked (a
// PinnedHostBuffer); from pageable memory CUDA stages the data and the call returns later.
//
//   DeviceBuffer weights = *DeviceBuffer::Allocate(bytes, /*device=*/0);
//   PinnedHostBuffer staging = *PinnedHostBuffer::Allocate(bytes);
//   ... fill staging.data() ...
//   absl::Status s = weights.CopyFromHostAsync(staging.data(), bytes, stream);
//   s = stream.Synchronize();  // `staging` must stay alive until here.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/stream.h"

namespace troupe::gpu {

// CopyToDeviceAsync enqueues a copy of `bytes` from host memory to device memory on `stream`.
// Both sides must stay valid until the stream has done the copy.
absl::Status CopyToDeviceAsync(void* device_dst, const void* host_src, size_t bytes,
                               const Stream& stream);

// CopyToHostAsync enqueues a copy of `bytes` from device memory to host memory on `stream`.
absl::Status CopyToHostAsync(void* host_dst, const void* device_src, size_t bytes,
                             const Stream& stream);

// CopyToDevice and CopyToHost copy between host memory and device memory of `device` and return
// when the copy is done. They are not ordered with work on any Stream (Troupe's streams are
// non-blocking): finish that work first (Stream::Synchronize), or use the async variants on the
// stream that does the work.
absl::Status CopyToDevice(void* device_dst, const void* host_src, size_t bytes, int device);
absl::Status CopyToHost(void* host_dst, const void* device_src, size_t bytes, int device);

// DeviceBuffer owns `bytes` of memory on one device (cudaMalloc; at least 256-byte aligned).
class DeviceBuffer {
 public:
  // Allocate reserves `bytes` on `device`; 0 bytes gives a buffer whose data() is null. Out of
  // memory is a ResourceExhausted error that names the size and the device.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, int device);

  DeviceBuffer() = default;  // Empty: no memory, no device.
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  // The copies move `bytes` (at most bytes()) to or from the start of the buffer. The async ones
  // take a Stream of the buffer's device; the others behave like CopyToDevice and CopyToHost.
  absl::Status CopyFromHostAsync(const void* host, size_t bytes, const Stream& stream);
  absl::Status CopyToHostAsync(void* host, size_t bytes, const Stream& stream) const;
  absl::Status CopyFromHost(const void* host, size_t bytes);
  absl::Status CopyToHost(void* host, size_t bytes) const;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  DeviceBuffer(void* data, size_t bytes, int device)
      : data_(data), bytes_(bytes), device_(device) {}
  absl::Status CheckFits(size_t bytes, const char* user) const;
  void Free();

  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

// PinnedHostBuffer owns `bytes` of page-locked host memory (cudaMallocHost): the host side of
// copies that overlap with other work. Pinning is costly and takes memory from the OS for good,
// so keep these few and reuse them.
class PinnedHostBuffer {
 public:
  // Allocate reserves `bytes` of pinned memory; 0 bytes gives a buffer whose data() is null.
  static absl::StatusOr<PinnedHostBuffer> Allocate(size_t bytes);

  PinnedHostBuffer() = default;  // Empty.
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  ~PinnedHostBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  PinnedHostBuffer(void* data, size_t bytes) : data_(data), bytes_(bytes) {}
  void Free();

  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace troupe::gpu
