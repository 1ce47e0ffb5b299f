// The KV transports of GPU binaries (troupe_gpu): CUDA IPC between processes of one host, and
// NCCL between GPUs anywhere, beside kv_transport.h's bytes and in-process ones.
//
//   KvTransports transports = CudaKvTransports();   // local, cuda_ipc, nccl, bytes
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

// MakeNcclKvTransport: NCCL send/recv between the prefill cache's GPUs and the puller's, for
// pullers that no in-process or IPC copy reaches (another host). Per puller, a channel of one
// two-rank communicator per prefill shard, joined on the first offer; each side's blocking work
// (joining, waiting for transfers) runs on a worker thread of the channel, never on an
// instance's actor. Sends are packed from the held blocks (only the shard's layers and heads),
// received into staging memory on the puller's first GPU, and copied from there into its cache
// (only the layers and heads each of its shards shares). Limits: a channel whose peer dies
// blocks its worker (NCCL's receive does not time out); the instances' actors go on, and the
// router fails the affected requests.
std::shared_ptr<KvTransport> MakeNcclKvTransport();

// CudaKvTransports: local, cuda_ipc, nccl and bytes, in that order of preference.
KvTransports CudaKvTransports();

}  // namespace troupe::serving::transfer
