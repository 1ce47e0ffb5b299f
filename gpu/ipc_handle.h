// IpcHandle: a device buffer exported by one process, as a plain value that another process on
// the same host can receive (in a CAF message field, through `inspect`) and map with
// IpcMappedBuffer::Open (ipc.h).
//
// This header needs no CUDA, so CPU-only code can carry handles around.
//
//   IpcHandle handle = *ExportIpcHandle(buffer);   // exporting process (ipc.h)
//   ... send `handle` to the other process ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "caf/meta/type_name.hpp"

namespace troupe::gpu {

struct IpcHandle {
  // kSize is CUDA_IPC_HANDLE_SIZE; ipc.cc checks at compile time that the two agree.
  static constexpr size_t kSize = 64;

  std::string handle;   // cudaIpcMemHandle_t: kSize opaque bytes (binary, may hold '\0').
  uint64_t bytes = 0;   // Size of the exported buffer.
  int32_t device = -1;  // The exporter's device index (another process may number GPUs
                        // differently when CUDA_VISIBLE_DEVICES differs).
  // Who exported it: CUDA refuses to map a handle in its own exporter, so Open checks first and
  // says so. The pid alone could match a process of another PID namespace (a container); the
  // token, random per process, tells them apart.
  int64_t exporter_pid = 0;
  uint64_t exporter_token = 0;

  friend bool operator==(const IpcHandle& a, const IpcHandle& b) {
    return a.handle == b.handle && a.bytes == b.bytes && a.device == b.device &&
           a.exporter_pid == b.exporter_pid && a.exporter_token == b.exporter_token;
  }
  friend bool operator!=(const IpcHandle& a, const IpcHandle& b) { return !(a == b); }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, IpcHandle& x) {
  return f(caf::meta::type_name("IpcHandle"), x.handle, x.bytes, x.device, x.exporter_pid,
           x.exporter_token);
}

}  // namespace troupe::gpu
