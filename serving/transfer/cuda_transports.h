// The KV transports of GPU binaries (troupe_gpu): CUDA IPC between processes of one host, and
// NCCL between GPUs anywhere, beside kv_transport.h's bytes and in-process ones.
//
//   KvTransports transports = CudaKvTransports(system);   // local, cuda_ipc, nccl, bytes
#pragma once

#include <memory>

#include "caf/actor_system.hpp"
#include "serving/transfer/kv_transport.h"

namespace troupe::serving::transfer {

// MakeCudaIpcKvTransport: the prefill side exports each device shard of its cache once as a
// CUDA IPC handle (cudaIpcGetMemHandle) and sends the handles with every offer; the puller maps
// each handle once (cudaIpcOpenMemHandle, kept for later offers) and copies the blocks with
// CopyKvFromDevice. Reaches pullers on the same host in another process.
std::shared_ptr<KvTransport> MakeCudaIpcKvTransport();

// CudaKvTransports: local, cuda_ipc and bytes, in that order of preference (NCCL, when built in,
// is added by nccl_transport.h's MakeNcclKvTransport).
KvTransports CudaKvTransports();

}  // namespace troupe::serving::transfer
