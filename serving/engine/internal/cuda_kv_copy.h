// CopyKvBetweenShards: the device side of ForwardBackend::CopyKvFromDevice for the CUDA
// backends (one GPU, tensor-parallel ranks, pipeline stages): checks a copy, intersects each
// source shard with each destination shard, and enqueues one gpu::attention::CopyKvBlocks
// launch per intersecting pair on the destination's transfer stream.
//
//   absl::StatusOr<std::unique_ptr<PendingKvCopy>> copy = internal::CopyKvBetweenShards(
//       config, dtype, sources, {my_shard}, src_blocks, dst_blocks, transfer_stream, pool);
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "gpu/memory_pool.h"
#include "gpu/stream.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"

namespace troupe::serving::engine::internal {

// CopyKvBetweenShards copies block src_blocks[i] of `sources` into block dst_blocks[i] of
// `destinations` (shards on `stream`'s device) for every layer and kv head a source and a
// destination share. Refused, with nothing enqueued: lists of different lengths, a block
// outside a shard, shards of another head size, a destination (layer, head) that no source
// holds, a source on another device that this device cannot reach (no peer access).
absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvBetweenShards(
    const model::ModelConfig& config, gpu::DType dtype, const std::vector<DeviceKvShard>& sources,
    const std::vector<DeviceKvShard>& destinations, const std::vector<int32_t>& src_blocks,
    const std::vector<int32_t>& dst_blocks, gpu::Stream& stream, gpu::MemoryPool& pool);

}  // namespace troupe::serving::engine::internal
