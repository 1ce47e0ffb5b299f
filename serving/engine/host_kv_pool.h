// HostKvPool: the host-memory arena that holds the KV of sequences swapped out of the cache.
//
// The block manager (serving/kv/block_manager.h) only decides which CPU block takes which GPU
// block; this pool holds the bytes. It has one slot per CPU block of the manager, each the size
// of one block's keys and values over every layer and kv head (KvBytes(config, dtype, 1, all)).
// Store and Load speak ForwardBackend::ExportKv's layout ([layer][K, V][block][head][16][dim]),
// so a swap is one ExportKv of the GPU blocks and one Store, and back one Load and one ImportKv.
//
//   HostKvPool pool = *HostKvPool::Create(config, backend->kv_dtype(), blocks.NumCpuBlocks());
//   std::vector<kv::BlockCopy> out = *blocks.SwapOut(seq);  // gpu -> cpu
//   absl::Status stored = pool.Store(cpu_blocks, *backend->ExportKv(gpu_blocks, {}));
//
// The arena comes from the backend (ForwardBackend::AllocateHostMemory): pinned (page-locked)
// memory on a GPU, so that SwapOut/SwapIn copy between the device cache and the pool's slots as
// DMA at the link's rate with no staging vector, as vLLM's and DistServe's swap space does;
// plain memory on the CPU.
//
//   HostKvPool pool = *HostKvPool::Create(*backend, blocks.NumCpuBlocks());
//   absl::Status out = pool.SwapOut(*backend, gpu_blocks, cpu_blocks);
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {

class HostKvPool {
 public:
  // Create sizes an arena of `num_blocks` blocks (>= 0) for the KV of `config` in `dtype`, in
  // plain memory.
  static absl::StatusOr<HostKvPool> Create(const model::ModelConfig& config, gpu::DType dtype,
                                           int64_t num_blocks);
  // Create sizes it for `backend`'s cache, in the backend's host memory (pinned on a GPU).
  static absl::StatusOr<HostKvPool> Create(const ForwardBackend& backend, int64_t num_blocks);

  HostKvPool(HostKvPool&&) = default;
  HostKvPool& operator=(HostKvPool&&) = default;
  HostKvPool(const HostKvPool&) = delete;
  HostKvPool& operator=(const HostKvPool&) = delete;

  // SwapOut copies the KV of the backend's `gpu_blocks` into host blocks `blocks` (the i-th to
  // blocks[i]); SwapIn copies host blocks `blocks` back into `gpu_blocks`. Errors as Store's and
  // Load's, or the backend's (nothing is written then).
  absl::Status SwapOut(ForwardBackend& backend, const std::vector<int32_t>& gpu_blocks,
                       const std::vector<int32_t>& blocks);
  absl::Status SwapIn(ForwardBackend& backend, const std::vector<int32_t>& blocks,
                      const std::vector<int32_t>& gpu_blocks) const;

  // Store writes `bytes`, ExportKv's result for blocks.size() blocks, into host blocks `blocks`:
  // the i-th exported block goes to blocks[i]. Errors (nothing is written then): a block outside
  // the pool, a block named twice, or a byte count that is not blocks.size() * block_bytes().
  absl::Status Store(const std::vector<int32_t>& blocks, const std::vector<uint8_t>& bytes);

  // Load returns host blocks `blocks` in ExportKv's layout, ready for ImportKv. Error: a block
  // outside the pool.
  absl::StatusOr<std::vector<uint8_t>> Load(const std::vector<int32_t>& blocks) const;

  int64_t num_blocks() const { return num_blocks_; }
  // pinned is whether the arena is page-locked memory (a GPU backend's pool).
  bool pinned() const { return arena_.pinned; }
  // block_bytes is one block's keys and values over every layer and kv head.
  int64_t block_bytes() const { return block_bytes_; }

 private:
  HostKvPool(int64_t num_blocks, int64_t block_bytes, int64_t planes, HostMemory arena)
      : num_blocks_(num_blocks),
        block_bytes_(block_bytes),
        planes_(planes),
        arena_(std::move(arena)) {}

  // BlockBytes checks num_blocks and computes a block's bytes for Create.
  static absl::StatusOr<int64_t> BlockBytes(const model::ModelConfig& config, gpu::DType dtype,
                                            int64_t num_blocks);
  uint8_t* Slot(int32_t block) const { return arena_.data + block * block_bytes_; }

  // CheckBlocks says which of `blocks` is outside the pool (or, if `distinct`, named twice).
  absl::Status CheckBlocks(const std::vector<int32_t>& blocks, bool distinct,
                           const char* verb) const;

  int64_t num_blocks_;
  int64_t block_bytes_;
  // planes_ is the number of (layer, K or V) parts of a block: ExportKv puts each part of all
  // its blocks side by side, and a block of the arena keeps its parts in the same order.
  int64_t planes_;
  HostMemory arena_;  // block b at [b * block_bytes_, (b + 1) * block_bytes_)
};

}  // namespace troupe::serving::engine
