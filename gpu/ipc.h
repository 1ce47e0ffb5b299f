// CUDA IPC: share a DeviceBuffer with another process on the same host, without copies.
//
// The owner exports the buffer as an IpcHandle (ipc_handle.h), sends it over (an actor message,
// a pipe), and the other process maps it with IpcMappedBuffer::Open. Both then see the same
// device memory. The owner must keep the DeviceBuffer alive while any process has it mapped,
// and the two sides order their accesses themselves (e.g. a message after Stream::Synchronize).
// CUDA does not let the exporting process map its own handle; Open refuses that with a clear
// error.
//
//   // Owner:
//   absl::StatusOr<IpcHandle> handle = ExportIpcHandle(buffer);
//   // Other process:
//   absl::StatusOr<IpcMappedBuffer> mapped = IpcMappedBuffer::Open(*handle, handle->device);
//   absl::Status s = CopyToHost(host.data(), mapped->data(), mapped->bytes(), mapped->device());
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/buffer.h"
#include "gpu/ipc_handle.h"

namespace troupe::gpu {

// ExportIpcHandle makes a handle to all of `buffer` (cudaIpcGetMemHandle). An empty buffer
// cannot be exported.
absl::StatusOr<IpcHandle> ExportIpcHandle(const DeviceBuffer& buffer);

// ExportIpcHandle of raw memory: `base` must be what cudaMalloc returned (a whole allocation
// of `bytes` bytes on `device`, such as a DeviceBuffer's data()), not a pointer into one.
absl::StatusOr<IpcHandle> ExportIpcHandle(const void* base, size_t bytes, int device);

// IpcMappedBuffer is another process's device buffer mapped into this one. It does not own the
// memory: destroying it unmaps (cudaIpcCloseMemHandle), the exporter frees.
class IpcMappedBuffer {
 public:
  // Open maps `handle` for use on `device`, this process's index of the GPU that holds the
  // buffer (usually handle.device, unless the two processes see different CUDA_VISIBLE_DEVICES).
  static absl::StatusOr<IpcMappedBuffer> Open(const IpcHandle& handle, int device);

  IpcMappedBuffer(IpcMappedBuffer&& other) noexcept;
  IpcMappedBuffer& operator=(IpcMappedBuffer&& other) noexcept;
  IpcMappedBuffer(const IpcMappedBuffer&) = delete;
  IpcMappedBuffer& operator=(const IpcMappedBuffer&) = delete;
  ~IpcMappedBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  IpcMappedBuffer(void* data, size_t bytes, int device)
      : data_(data), bytes_(bytes), device_(device) {}
  void Close();

  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

}  // namespace troupe::gpu
