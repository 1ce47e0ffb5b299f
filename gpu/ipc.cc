#include "gpu/ipc.h"

#include <cuda_runtime.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace {

static_assert(IpcHandle::kSize == CUDA_IPC_HANDLE_SIZE,
              "IpcHandle::kSize must match this CUDA's IPC handle size");
static_assert(sizeof(cudaIpcMemHandle_t) == CUDA_IPC_HANDLE_SIZE);

// ProcessToken is random, drawn once per process (see IpcHandle::exporter_token).
uint64_t ProcessToken() {
  static const uint64_t token = [] {
    std::random_device entropy;
    return (uint64_t{entropy()} << 32) | entropy();
  }();
  return token;
}

absl::Status CheckHandle(const IpcHandle& handle) {
  if (handle.handle.size() != IpcHandle::kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IpcMappedBuffer::Open: the handle has ", handle.handle.size(), " bytes, CUDA's have ",
        IpcHandle::kSize, "; pass the IpcHandle that ExportIpcHandle made, unchanged"));
  }
  if (handle.bytes == 0) {
    return absl::InvalidArgumentError(
        "IpcMappedBuffer::Open: the handle is for 0 bytes; ExportIpcHandle never makes one");
  }
  if (handle.exporter_pid == getpid() && handle.exporter_token == ProcessToken()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "IpcMappedBuffer::Open: this process (pid ", getpid(),
        ") exported the handle, and CUDA does not let a process map its own IPC handle; use "
        "the DeviceBuffer itself here, and open the handle in another process"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<IpcHandle> ExportIpcHandle(const DeviceBuffer& buffer) {
  if (buffer.data() == nullptr) {
    return absl::InvalidArgumentError(
        "ExportIpcHandle: the DeviceBuffer is empty (0 bytes or moved from); export one that "
        "holds memory");
  }
  return ExportIpcHandle(buffer.data(), buffer.bytes(), buffer.device());
}

absl::StatusOr<IpcHandle> ExportIpcHandle(const void* base, size_t bytes, int device) {
  if (base == nullptr || bytes == 0) {
    return absl::InvalidArgumentError(
        "ExportIpcHandle: no memory to export (a null pointer or 0 bytes)");
  }
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  cudaIpcMemHandle_t native;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaIpcGetMemHandle(&native, const_cast<void*>(base)), device);
  IpcHandle handle;
  handle.handle.assign(native.reserved, CUDA_IPC_HANDLE_SIZE);
  handle.bytes = bytes;
  handle.device = device;
  handle.exporter_pid = getpid();
  handle.exporter_token = ProcessToken();
  return handle;
}

absl::StatusOr<IpcMappedBuffer> IpcMappedBuffer::Open(const IpcHandle& handle, int device) {
  if (absl::Status valid = CheckHandle(handle); !valid.ok()) return valid;
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  cudaIpcMemHandle_t native;
  std::memcpy(native.reserved, handle.handle.data(), CUDA_IPC_HANDLE_SIZE);
  void* data = nullptr;
  // The only flag CUDA defines; it lets a device other than the owner's reach the memory.
  const cudaError_t code = cudaIpcOpenMemHandle(&data, native, cudaIpcMemLazyEnablePeerAccess);
  if (code != cudaSuccess) {
    cudaGetLastError();  // A refused handle is reported here, not by the next launch.
    absl::Status status = internal::CudaStatus(code, "cudaIpcOpenMemHandle", device);
    return absl::Status(
        status.code(),
        absl::StrCat("IpcMappedBuffer::Open (", handle.bytes, " bytes exported by pid ",
                     handle.exporter_pid, " from cuda:", handle.device, "): ", status.message(),
                     "; is the exporter alive and still holding the buffer?"));
  }
  return IpcMappedBuffer(data, handle.bytes, device);
}

IpcMappedBuffer::IpcMappedBuffer(IpcMappedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

IpcMappedBuffer& IpcMappedBuffer::operator=(IpcMappedBuffer&& other) noexcept {
  if (this != &other) {
    Close();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

IpcMappedBuffer::~IpcMappedBuffer() { Close(); }

void IpcMappedBuffer::Close() {
  if (data_ == nullptr) return;
  if (absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_); scoped.ok()) {
    cudaIpcCloseMemHandle(data_);  // A destructor cannot report its error.
  }
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace troupe::gpu
