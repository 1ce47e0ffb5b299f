#include "serving/engine/host_kv_pool.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "serving/engine/forward_backend.h"

namespace troupe::serving::engine {

absl::StatusOr<HostKvPool> HostKvPool::Create(const model::ModelConfig& config, gpu::DType dtype,
                                              int64_t num_blocks) {
  if (num_blocks < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("HostKvPool: ", num_blocks, " blocks; the pool needs >= 0 (0: no swapping)"));
  }
  absl::StatusOr<KvRange> all = KvRangeOf({}, config);
  if (!all.ok()) return all.status();
  const int64_t block_bytes = KvBytes(config, dtype, 1, *all);
  return HostKvPool(num_blocks, block_bytes, 2LL * config.num_layers);
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
      std::memcpy(arena_.data() + blocks[i] * block_bytes_ + p * part,
                  bytes.data() + (p * n + i) * part, part);
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
      std::memcpy(bytes.data() + (p * n + i) * part,
                  arena_.data() + blocks[i] * block_bytes_ + p * part, part);
    }
  }
  return bytes;
}

}  // namespace troupe::serving::engine
