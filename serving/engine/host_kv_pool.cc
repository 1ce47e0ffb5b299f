#include "serving/engine/host_kv_pool.h"

#include <cstring>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "serving/engine/forward_backend.h"

namespace troupe::serving::engine {

absl::StatusOr<int64_t> HostKvPool::BlockBytes(const model::ModelConfig& config, gpu::DType dtype,
                                               int64_t num_blocks) {
  if (num_blocks < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("HostKvPool: ", num_blocks, " blocks; the pool needs >= 0 (0: no swapping)"));
  }
  absl::StatusOr<KvRange> all = KvRangeOf({}, config);
  if (!all.ok()) return all.status();
  return KvBytes(config, dtype, 1, *all);
}

absl::StatusOr<HostKvPool> HostKvPool::Create(const model::ModelConfig& config, gpu::DType dtype,
                                              int64_t num_blocks) {
  absl::StatusOr<int64_t> block_bytes = BlockBytes(config, dtype, num_blocks);
  if (!block_bytes.ok()) return block_bytes.status();
  auto memory =
      std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(num_blocks * *block_bytes));
  HostMemory arena;
  arena.data = memory->data();
  arena.owner = std::move(memory);
  return HostKvPool(num_blocks, *block_bytes, 2LL * config.num_layers, std::move(arena));
}

absl::StatusOr<HostKvPool> HostKvPool::Create(const ForwardBackend& backend, int64_t num_blocks) {
  absl::StatusOr<int64_t> block_bytes =
      BlockBytes(backend.config(), backend.kv_dtype(), num_blocks);
  if (!block_bytes.ok()) return block_bytes.status();
  absl::StatusOr<HostMemory> arena =
      backend.AllocateHostMemory(static_cast<size_t>(num_blocks * *block_bytes));
  if (!arena.ok()) {
    return absl::Status(
        arena.status().code(),
        absl::StrCat("HostKvPool: ", num_blocks, " blocks of ", *block_bytes,
                     " bytes: ", arena.status().message(), "; give fewer swap blocks"));
  }
  return HostKvPool(num_blocks, *block_bytes, 2LL * backend.config().num_layers, *std::move(arena));
}

absl::Status HostKvPool::SwapOut(ForwardBackend& backend, const std::vector<int32_t>& gpu_blocks,
                                 const std::vector<int32_t>& blocks) {
  if (absl::Status checked = CheckBlocks(blocks, /*distinct=*/true, "SwapOut"); !checked.ok()) {
    return checked;
  }
  std::vector<uint8_t*> slots;
  for (int32_t block : blocks) slots.push_back(Slot(block));
  return backend.ExportKvToSlots(gpu_blocks, slots);
}

absl::Status HostKvPool::SwapIn(ForwardBackend& backend, const std::vector<int32_t>& blocks,
                                const std::vector<int32_t>& gpu_blocks) const {
  if (absl::Status checked = CheckBlocks(blocks, /*distinct=*/false, "SwapIn"); !checked.ok()) {
    return checked;
  }
  std::vector<const uint8_t*> slots;
  for (int32_t block : blocks) slots.push_back(Slot(block));
  return backend.ImportKvFromSlots(gpu_blocks, slots);
}

absl::Status HostKvPool::CheckBlocks(const std::vector<int32_t>& blocks, bool distinct,
                                     const char* verb) const {
  absl::flat_hash_set<int32_t> seen;
  for (int32_t block : blocks) {
    if (block < 0 || block >= num_blocks_) {
      return absl::OutOfRangeError(absl::StrCat("HostKvPool::", verb, ": host block ", block,
                                                " is outside the pool's ", num_blocks_,
                                                " blocks [0, ", num_blocks_, ")"));
    }
    if (distinct && !seen.insert(block).second) {
      return absl::InvalidArgumentError(absl::StrCat("HostKvPool::", verb, ": host block ", block,
                                                     " is named twice; each takes one block"));
    }
  }
  return absl::OkStatus();
}

absl::Status HostKvPool::Store(const std::vector<int32_t>& blocks,
                               const std::vector<uint8_t>& bytes) {
  if (absl::Status checked = CheckBlocks(blocks, /*distinct=*/true, "Store"); !checked.ok()) {
    return checked;
  }
  const int64_t n = static_cast<int64_t>(blocks.size());
  if (static_cast<int64_t>(bytes.size()) != n * block_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("HostKvPool::Store: ", bytes.size(), " bytes for ", n, " blocks; expected ",
                     n * block_bytes_, " (", block_bytes_,
                     " per block: ExportKv of those blocks, all layers and kv heads)"));
  }
  const int64_t part = block_bytes_ / planes_;
  for (int64_t p = 0; p < planes_; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(Slot(blocks[i]) + p * part, bytes.data() + (p * n + i) * part, part);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> HostKvPool::Load(const std::vector<int32_t>& blocks) const {
  if (absl::Status checked = CheckBlocks(blocks, /*distinct=*/false, "Load"); !checked.ok()) {
    return checked;
  }
  const int64_t n = static_cast<int64_t>(blocks.size());
  const int64_t part = block_bytes_ / planes_;
  std::vector<uint8_t> bytes(static_cast<size_t>(n * block_bytes_));
  for (int64_t p = 0; p < planes_; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(bytes.data() + (p * n + i) * part, Slot(blocks[i]) + p * part, part);
    }
  }
  return bytes;
}

}  // namespace troupe::serving::engine
