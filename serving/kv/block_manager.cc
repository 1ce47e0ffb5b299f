#include "serving/kv/block_manager.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::serving::kv {
namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

std::string Name(int64_t seq) { return absl::StrCat("sequence ", seq); }

const char* PoolName(Location where) { return where == Location::kGpu ? "GPU" : "CPU"; }

absl::Status NotFound(int64_t seq) {
  return absl::NotFoundError(
      absl::StrCat(Name(seq), " is not allocated (never allocated, or already freed)"));
}

}  // namespace

absl::Status BlockManagerOptions::Validate() const {
  std::vector<std::string> problems;
  if (num_gpu_blocks <= 0) {
    problems.push_back(absl::StrCat("num_gpu_blocks = ", num_gpu_blocks,
                                    " must be positive (size it from the GPU memory left after "
                                    "the weights)"));
  }
  if (num_cpu_blocks < 0 || num_cpu_blocks > kMaxInt32) {
    problems.push_back(absl::StrCat("num_cpu_blocks = ", num_cpu_blocks, " must be in [0, ",
                                    kMaxInt32, "] (0 disables swapping)"));
  }
  if (block_size <= 0) {
    problems.push_back(absl::StrCat("block_size = ", block_size,
                                    " must be positive (the CUDA "
                                    "kernels use ",
                                    gpu::attention::kBlockSize, ")"));
  }
  if (num_gpu_blocks > 0 && block_size > 0 && num_gpu_blocks > kMaxInt32 / block_size) {
    problems.push_back(absl::StrCat("num_gpu_blocks * block_size = ", num_gpu_blocks, " * ",
                                    block_size, " must be at most ", kMaxInt32,
                                    " so that slots fit in int32; use fewer blocks"));
  }
  if (!(watermark >= 0.0 && watermark < 1.0)) {
    problems.push_back(
        absl::StrCat("watermark = ", watermark, " must be in [0, 1) (vLLM's default is 0.01)"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid BlockManagerOptions: ", absl::StrJoin(problems, "; ")));
}

BlockManager::BlockPool::BlockPool(int64_t num_blocks) : ref_counts_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int64_t block = num_blocks - 1; block >= 0; --block) {
    free_.push_back(static_cast<int32_t>(block));
  }
}

int32_t BlockManager::BlockPool::Take() {
  int32_t block = free_.back();
  free_.pop_back();
  ref_counts_[block] = 1;
  return block;
}

void BlockManager::BlockPool::RemoveReference(int32_t block) {
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

BlockManager::BlockManager(const BlockManagerOptions& options, int64_t watermark_blocks)
    : options_(options),
      watermark_blocks_(watermark_blocks),
      gpu_(options.num_gpu_blocks),
      cpu_(options.num_cpu_blocks) {}

absl::StatusOr<BlockManager> BlockManager::Create(const BlockManagerOptions& options) {
  if (absl::Status valid = options.Validate(); !valid.ok()) return valid;
  const auto watermark_blocks =
      static_cast<int64_t>(std::floor(options.watermark * options.num_gpu_blocks));
  return BlockManager(options, watermark_blocks);
}

int64_t BlockManager::NumBlocksFor(int64_t num_tokens) const {
  if (num_tokens <= 0) return 0;
  return (num_tokens + options_.block_size - 1) / options_.block_size;
}

absl::StatusOr<const BlockManager::Sequence*> BlockManager::Find(int64_t seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return NotFound(seq);
  return &it->second;
}

bool BlockManager::Contains(int64_t seq) const { return sequences_.contains(seq); }

absl::StatusOr<Admission> BlockManager::CanAllocate(int64_t num_tokens) const {
  if (num_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot admit a prompt of ", num_tokens, " tokens: it must be positive"));
  }
  const int64_t needed = NumBlocksFor(num_tokens);
  if (NumGpuBlocks() - needed < watermark_blocks_) return Admission::kNever;
  if (NumFreeGpuBlocks() - needed >= watermark_blocks_) return Admission::kOk;
  return Admission::kLater;
}

absl::Status BlockManager::Allocate(int64_t seq, int64_t num_tokens) {
  if (num_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot allocate ", Name(seq), " with ",
                                                   num_tokens, " tokens: it must be positive"));
  }
  if (auto it = sequences_.find(seq); it != sequences_.end()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot allocate ", Name(seq), ": it is already allocated (", it->second.num_tokens,
        " tokens on the ", PoolName(it->second.where), "); free it first or use a new id"));
  }
  const int64_t needed = NumBlocksFor(num_tokens);
  if (needed > NumFreeGpuBlocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", Name(seq), " with ", num_tokens, " tokens: needs ", needed,
                     " GPU blocks, ", NumFreeGpuBlocks(), " free of ", NumGpuBlocks(),
                     "; free or swap out other sequences first"));
  }
  Sequence& sequence = sequences_[seq];
  sequence.num_tokens = num_tokens;
  sequence.blocks.reserve(needed);
  for (int64_t i = 0; i < needed; ++i) sequence.blocks.push_back(gpu_.Take());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> BlockManager::BlocksNeededToAppend(int64_t seq,
                                                           int64_t num_new_tokens) const {
  absl::StatusOr<const Sequence*> found = Find(seq);
  if (!found.ok()) return found.status();
  const Sequence& sequence = **found;
  if (num_new_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot append ", num_new_tokens, " tokens to ",
                                                   Name(seq), ": it must be positive"));
  }
  if (sequence.where != Location::kGpu) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot append to ", Name(seq), ": it is swapped out to the CPU; swap it in first"));
  }
  const bool last_block_partial = sequence.num_tokens % options_.block_size != 0;
  const bool copy_on_write = last_block_partial && gpu_.RefCount(sequence.blocks.back()) > 1;
  const int64_t new_blocks = NumBlocksFor(sequence.num_tokens + num_new_tokens) -
                             static_cast<int64_t>(sequence.blocks.size());
  return new_blocks + (copy_on_write ? 1 : 0);
}

absl::StatusOr<bool> BlockManager::CanAppendSlots(int64_t seq, int64_t num_new_tokens) const {
  absl::StatusOr<int64_t> needed = BlocksNeededToAppend(seq, num_new_tokens);
  if (!needed.ok()) return needed.status();
  return *needed <= NumFreeGpuBlocks();
}

absl::StatusOr<AppendResult> BlockManager::AppendSlots(int64_t seq, int64_t num_new_tokens) {
  absl::StatusOr<int64_t> needed = BlocksNeededToAppend(seq, num_new_tokens);
  if (!needed.ok()) return needed.status();
  if (*needed > NumFreeGpuBlocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot append ", num_new_tokens, " tokens to ", Name(seq), ": needs ",
                     *needed, " GPU blocks, ", NumFreeGpuBlocks(), " free of ", NumGpuBlocks(),
                     "; free or swap out other sequences first"));
  }
  Sequence& sequence = sequences_.find(seq)->second;
  const int block_size = options_.block_size;
  AppendResult result;
  if (sequence.num_tokens % block_size != 0 && gpu_.RefCount(sequence.blocks.back()) > 1) {
    const int32_t shared = sequence.blocks.back();
    const int32_t copy = gpu_.Take();
    gpu_.RemoveReference(shared);  // Still used by the other forks: stays allocated.
    sequence.blocks.back() = copy;
    result.copy_on_write = BlockCopy{shared, copy};
  }
  result.slots.reserve(num_new_tokens);
  for (int64_t t = sequence.num_tokens; t < sequence.num_tokens + num_new_tokens; ++t) {
    const int64_t index = t / block_size;
    if (index == static_cast<int64_t>(sequence.blocks.size())) {
      sequence.blocks.push_back(gpu_.Take());
    }
    result.slots.push_back(sequence.blocks[index] * block_size +
                           static_cast<int32_t>(t % block_size));
  }
  sequence.num_tokens += num_new_tokens;
  return result;
}

absl::Status BlockManager::Fork(int64_t parent, int64_t child) {
  if (parent == child) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot fork ", Name(parent), " into itself; give the child a new id"));
  }
  auto it = sequences_.find(parent);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("cannot fork ", Name(parent), " into ", Name(child),
                                            ": the parent is not allocated"));
  }
  if (sequences_.contains(child)) {
    return absl::AlreadyExistsError(absl::StrCat("cannot fork ", Name(parent), " into ",
                                                 Name(child), ": the child is already allocated"));
  }
  Sequence copy = it->second;  // Copy before inserting: insertion may move the parent.
  BlockPool& pool = PoolAt(copy.where);
  for (int32_t block : copy.blocks) pool.AddReference(block);
  sequences_.emplace(child, std::move(copy));
  return absl::OkStatus();
}

absl::Status BlockManager::Free(int64_t seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) {
    return absl::NotFoundError(
        absl::StrCat("cannot free ", Name(seq), ": it is not allocated (already freed?)"));
  }
  BlockPool& pool = PoolAt(it->second.where);
  for (int32_t block : it->second.blocks) pool.RemoveReference(block);
  sequences_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BlockManager::SlotMapping(int64_t seq, int64_t first_token,
                                                               int64_t count) const {
  absl::StatusOr<const Sequence*> found = Find(seq);
  if (!found.ok()) return found.status();
  const Sequence& sequence = **found;
  if (sequence.where != Location::kGpu) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no slots for ", Name(seq), ": it is swapped out to the CPU; swap it in first"));
  }
  if (first_token < 0 || count < 0 || first_token > sequence.num_tokens - count) {
    return absl::OutOfRangeError(absl::StrCat("no slots for tokens [", first_token, ", ",
                                              first_token, " + ", count, ") of ", Name(seq),
                                              ": it has tokens [0, ", sequence.num_tokens, ")"));
  }
  const int block_size = options_.block_size;
  std::vector<int32_t> slots;
  slots.reserve(count);
  for (int64_t t = first_token; t < first_token + count; ++t) {
    slots.push_back(sequence.blocks[t / block_size] * block_size +
                    static_cast<int32_t>(t % block_size));
  }
  return slots;
}

absl::StatusOr<std::vector<int32_t>> BlockManager::BlockTable(int64_t seq) const {
  absl::StatusOr<const Sequence*> found = Find(seq);
  if (!found.ok()) return found.status();
  return (*found)->blocks;
}

absl::StatusOr<int64_t> BlockManager::NumTokens(int64_t seq) const {
  absl::StatusOr<const Sequence*> found = Find(seq);
  if (!found.ok()) return found.status();
  return (*found)->num_tokens;
}

absl::StatusOr<Location> BlockManager::Where(int64_t seq) const {
  absl::StatusOr<const Sequence*> found = Find(seq);
  if (!found.ok()) return found.status();
  return (*found)->where;
}

absl::StatusOr<int64_t> BlockManager::CheckGroup(absl::Span<const int64_t> seqs, Location from,
                                                 const char* verb) const {
  if (seqs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot ", verb, " an empty list of sequences"));
  }
  absl::flat_hash_set<int64_t> seen;
  absl::flat_hash_set<int32_t> blocks;
  for (int64_t seq : seqs) {
    if (!seen.insert(seq).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot ", verb, " ", Name(seq), ": it is listed twice"));
    }
    auto it = sequences_.find(seq);
    if (it == sequences_.end()) {
      return absl::NotFoundError(
          absl::StrCat("cannot ", verb, " ", Name(seq), ": it is not allocated"));
    }
    if (it->second.where != from) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot ", verb, " ", Name(seq), ": it is on the ",
                       PoolName(it->second.where), ", not the ", PoolName(from)));
    }
    blocks.insert(it->second.blocks.begin(), it->second.blocks.end());
  }
  return static_cast<int64_t>(blocks.size());
}

absl::StatusOr<bool> BlockManager::CanSwapOut(absl::Span<const int64_t> seqs) const {
  absl::StatusOr<int64_t> blocks = CheckGroup(seqs, Location::kGpu, "swap out");
  if (!blocks.ok()) return blocks.status();
  return *blocks <= NumFreeCpuBlocks();
}

absl::StatusOr<bool> BlockManager::CanSwapIn(absl::Span<const int64_t> seqs) const {
  absl::StatusOr<int64_t> blocks = CheckGroup(seqs, Location::kCpu, "swap in");
  if (!blocks.ok()) return blocks.status();
  const int64_t needed = *blocks + static_cast<int64_t>(seqs.size());
  return NumFreeGpuBlocks() - needed >= watermark_blocks_;
}

absl::StatusOr<std::vector<BlockCopy>> BlockManager::SwapOut(absl::Span<const int64_t> seqs) {
  absl::StatusOr<int64_t> blocks = CheckGroup(seqs, Location::kGpu, "swap out");
  if (!blocks.ok()) return blocks.status();
  if (*blocks > NumFreeCpuBlocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot swap out ", seqs.size() == 1 ? Name(seqs[0]) : "sequences ",
                     seqs.size() == 1 ? "" : absl::StrJoin(seqs, ", "), ": needs ", *blocks,
                     " CPU blocks, ", NumFreeCpuBlocks(), " free of ", NumCpuBlocks(),
                     "; raise num_cpu_blocks (swap space) or free a sequence instead"));
  }
  return Move(seqs, Location::kGpu);
}

absl::StatusOr<std::vector<BlockCopy>> BlockManager::SwapIn(absl::Span<const int64_t> seqs) {
  absl::StatusOr<int64_t> blocks = CheckGroup(seqs, Location::kCpu, "swap in");
  if (!blocks.ok()) return blocks.status();
  if (*blocks > NumFreeGpuBlocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot swap in ", seqs.size() == 1 ? Name(seqs[0]) : "sequences ",
                     seqs.size() == 1 ? "" : absl::StrJoin(seqs, ", "), ": needs ", *blocks,
                     " GPU blocks, ", NumFreeGpuBlocks(), " free of ", NumGpuBlocks(),
                     "; free or swap out other sequences first"));
  }
  return Move(seqs, Location::kCpu);
}

std::vector<BlockCopy> BlockManager::Move(absl::Span<const int64_t> seqs, Location from) {
  const Location to = from == Location::kGpu ? Location::kCpu : Location::kGpu;
  BlockPool& source = PoolAt(from);
  BlockPool& destination = PoolAt(to);
  absl::flat_hash_map<int32_t, int32_t> moved;  // Source block -> its destination block.
  std::vector<BlockCopy> copies;
  for (int64_t seq : seqs) {
    Sequence& sequence = sequences_.find(seq)->second;
    for (int32_t& block : sequence.blocks) {
      auto [it, first_time] = moved.try_emplace(block, 0);
      if (first_time) {
        it->second = destination.Take();
        copies.push_back(BlockCopy{block, it->second});
      } else {
        destination.AddReference(it->second);
      }
      source.RemoveReference(block);
      block = it->second;
    }
    sequence.where = to;
  }
  return copies;
}

absl::StatusOr<int> BlockManager::RefCount(Location where, int32_t block) const {
  const BlockPool& pool = PoolAt(where);
  if (block < 0 || block >= pool.NumBlocks()) {
    return absl::OutOfRangeError(absl::StrCat("no ", PoolName(where), " block ", block,
                                              ": the pool has blocks [0, ", pool.NumBlocks(), ")"));
  }
  return pool.RefCount(block);
}

absl::Status BlockManager::CheckConsistency() const {
  for (Location where : {Location::kGpu, Location::kCpu}) {
    const BlockPool& pool = PoolAt(where);
    std::vector<int> expected(pool.NumBlocks(), 0);
    for (const auto& [seq, sequence] : sequences_) {
      if (sequence.where != where) continue;
      if (sequence.num_tokens <= 0 ||
          static_cast<int64_t>(sequence.blocks.size()) != NumBlocksFor(sequence.num_tokens)) {
        return absl::InternalError(absl::StrCat(Name(seq), " has ", sequence.num_tokens,
                                                " tokens in ", sequence.blocks.size(), " blocks"));
      }
      absl::flat_hash_set<int32_t> own;
      for (int32_t block : sequence.blocks) {
        if (block < 0 || block >= pool.NumBlocks() || !own.insert(block).second) {
          return absl::InternalError(absl::StrCat(Name(seq), " lists ", PoolName(where), " block ",
                                                  block, " out of range or twice"));
        }
        ++expected[block];
      }
    }
    std::vector<bool> listed_free(pool.NumBlocks(), false);
    for (int32_t block : pool.free_list()) {
      if (block < 0 || block >= pool.NumBlocks() || listed_free[block]) {
        return absl::InternalError(absl::StrCat(PoolName(where), " free list holds block ", block,
                                                " out of range or twice"));
      }
      listed_free[block] = true;
    }
    for (int32_t block = 0; block < pool.NumBlocks(); ++block) {
      if (pool.RefCount(block) != expected[block] || listed_free[block] != (expected[block] == 0)) {
        return absl::InternalError(absl::StrCat(
            PoolName(where), " block ", block, " has reference count ", pool.RefCount(block),
            ", is used by ", expected[block], " sequences and is ",
            listed_free[block] ? "" : "not ", "on the free list"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace troupe::serving::kv
