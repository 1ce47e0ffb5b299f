// The paged KV cache's block manager: which physical blocks hold which sequence's KV.
//
// Pure bookkeeping on the CPU, modelled on vLLM's block space manager (v1). The GPU cache is
// `num_gpu_blocks` blocks of `block_size` tokens (the layout of gpu/attention/paged_kv.h); a
// pinned host pool of `num_cpu_blocks` blocks takes sequences swapped out under memory pressure.
// Each sequence has a block table (its physical block ids, in token order) and a token count;
// its token t lives at slot block_table[t / block_size] * block_size + t % block_size.
// Blocks are reference counted, so forked sequences (beam search, parallel sampling) share their
// prefix until one of them writes into a shared block, which is then copied (copy-on-write).
//
// The manager never touches KV memory: operations that move data return the block copies the
// caller must issue (AppendSlots: a copy-on-write pair; SwapOut/SwapIn: gpu->cpu / cpu->gpu).
//
//   BlockManagerOptions options;
//   options.num_gpu_blocks = 1024;
//   absl::StatusOr<BlockManager> blocks = BlockManager::Create(options);
//   if (*blocks->CanAllocate(prompt_len) == Admission::kOk) {
//     absl::Status allocated = blocks->Allocate(seq, prompt_len);
//     absl::StatusOr<std::vector<int32_t>> slots = blocks->SlotMapping(seq, 0, prompt_len);
//   }
//   absl::StatusOr<AppendResult> next = blocks->AppendSlots(seq, 1);  // each decode step
//   absl::Status freed = blocks->Free(seq);
//
// How the instances use it:
//  - PrefillInstance allocates each batched prompt and keeps the blocks after the first token,
//    until the decode side has pulled them (DistServe's KV pull protocol, step 4): only then
//    Free. It never swaps; it stops admitting instead (back-pressure).
//  - DecodeInstance reserves the destination of a pull with Allocate(seq, prompt_len): the new
//    block table (BlockTable) lists the blocks to scatter the pulled KV into (DistServe step 3
//    allocates ceil(prompt / 16) blocks). Its admission rule (free blocks can hold the prompt,
//    waiting prompt blocks < 5% of the GPU blocks) is its own policy, built from NumBlocksFor
//    and NumFreeGpuBlocks. Under pressure it swaps the last request of the batch out (SwapOut)
//    and re-admits swapped requests first (CanSwapIn, SwapIn).
//  - ColocatedInstance is vLLM: CanAllocate (with the watermark) admits prompts, AppendSlots
//    runs each step, SwapOut/SwapIn preempt.
//
// Not thread-safe: one scheduler (actor) owns a manager.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu/attention/kv_layout.h"

namespace troupe::serving::kv {

// BlockManagerOptions sizes the two block pools. Validate() says what is wrong with them.
struct BlockManagerOptions {
  // Blocks in the GPU KV cache. No default: the instance derives it from the GPU memory left
  // after the weights (DistServe and vLLM use gpu_memory_utilization 0.95).
  int64_t num_gpu_blocks = 0;
  // Blocks of pinned host memory for swapped-out sequences; 0 disables swapping. DistServe's
  // default swap space is 16 GB per GPU, i.e. 16 GiB / (bytes per block of the model).
  int64_t num_cpu_blocks = 0;
  // Tokens per block: 16, vLLM's and DistServe's default and the only size the CUDA kernels
  // support (gpu/attention/kv_layout.h).
  int block_size = gpu::attention::kBlockSize;
  // Fraction of the GPU blocks that admission (CanAllocate, CanSwapIn) keeps free, so running
  // sequences can still append without being preempted right away. vLLM's default, 0.01.
  double watermark = 0.01;

  // Validate returns InvalidArgument naming every bad field and its allowed range.
  absl::Status Validate() const;
};

// Admission is CanAllocate's answer, as vLLM's AllocStatus.
enum class Admission {
  kOk,     // Allocate now: enough free blocks above the watermark.
  kLater,  // Not now; it fits once other sequences free their blocks.
  kNever,  // Larger than the GPU cache minus the watermark: reject the request.
};

// Location is where a sequence's blocks are.
enum class Location { kGpu, kCpu };

// BlockCopy is one block to copy: `src` and `dst` are physical block ids, in the same pool
// (copy-on-write) or from one pool to the other (swap).
struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;

  friend bool operator==(const BlockCopy& a, const BlockCopy& b) {
    return a.src == b.src && a.dst == b.dst;
  }
};

// AppendResult is what AppendSlots tells the caller to do before writing the new tokens' KV.
struct AppendResult {
  // The GPU slot (block * block_size + offset) of each new token, in order.
  std::vector<int32_t> slots;
  // Set when the sequence's last block was shared with a fork: copy block src into block dst
  // first; the sequence now owns dst in its place.
  std::optional<BlockCopy> copy_on_write;
};

// BlockManager assigns GPU and CPU KV blocks to sequences. Every method that fails returns an
// error naming the sequence and the problem, and leaves the manager unchanged.
//
// Block ids and slots are int32, as the kernels take them; Create refuses pools whose slots would
// not fit.
class BlockManager {
 public:
  // Create validates `options` and returns a manager with every block free.
  static absl::StatusOr<BlockManager> Create(const BlockManagerOptions& options);

  // NumBlocksFor is the number of blocks `num_tokens` tokens occupy: ceil(num_tokens /
  // block_size), 0 when num_tokens <= 0.
  int64_t NumBlocksFor(int64_t num_tokens) const;

  // CanAllocate says whether a new prompt of `num_tokens` tokens can be allocated while leaving
  // WatermarkBlocks() free (vLLM's can_allocate). InvalidArgument if num_tokens <= 0.
  absl::StatusOr<Admission> CanAllocate(int64_t num_tokens) const;

  // Allocate gives a new sequence `seq` the blocks for `num_tokens` tokens. It needs only that
  // many free GPU blocks, not the watermark: admission is CanAllocate's job (or, on the decode
  // side of a KV pull, DistServe's rule). Errors: num_tokens <= 0, `seq` already exists, too few
  // free blocks.
  absl::Status Allocate(int64_t seq, int64_t num_tokens);

  // BlocksNeededToAppend is the number of free GPU blocks AppendSlots(seq, num_new_tokens) would
  // take: new blocks plus one for a copy-on-write. A scheduler sums it over a batch.
  absl::StatusOr<int64_t> BlocksNeededToAppend(int64_t seq, int64_t num_new_tokens) const;

  // CanAppendSlots says whether AppendSlots(seq, num_new_tokens) would succeed now. Appends may
  // use the watermark's blocks.
  absl::StatusOr<bool> CanAppendSlots(int64_t seq, int64_t num_new_tokens) const;

  // AppendSlots grows sequence `seq` (on the GPU) by `num_new_tokens` tokens and returns their
  // slots, opening blocks as needed. If the last block is partly filled and shared with a fork,
  // it is replaced by a private copy first (see AppendResult::copy_on_write).
  absl::StatusOr<AppendResult> AppendSlots(int64_t seq, int64_t num_new_tokens);

  // Fork makes a new sequence `child` that shares all of `parent`'s blocks (each block's
  // reference count goes up by one) and has its token count. Works wherever the parent is.
  absl::Status Fork(int64_t parent, int64_t child);

  // Free drops sequence `seq`: each of its blocks loses a reference, and returns to its pool's
  // free list when none are left. Works on the GPU and on the CPU.
  absl::Status Free(int64_t seq);

  // SlotMapping returns the GPU slots of tokens [first_token, first_token + count) of `seq`,
  // which must be on the GPU. count may be 0.
  absl::StatusOr<std::vector<int32_t>> SlotMapping(int64_t seq, int64_t first_token,
                                                   int64_t count) const;

  // BlockTable returns `seq`'s physical block ids in token order, in the pool of Where(seq).
  absl::StatusOr<std::vector<int32_t>> BlockTable(int64_t seq) const;

  // NumTokens returns `seq`'s token count.
  absl::StatusOr<int64_t> NumTokens(int64_t seq) const;

  // Where returns the pool that holds `seq`'s blocks.
  absl::StatusOr<Location> Where(int64_t seq) const;

  // Contains says whether `seq` is allocated (on the GPU or the CPU).
  bool Contains(int64_t seq) const;

  // CanSwapOut says whether the CPU pool can take the sequences `seqs` (all on the GPU): one free
  // CPU block per distinct GPU block among them (vLLM's can_swap_out).
  absl::StatusOr<bool> CanSwapOut(absl::Span<const int64_t> seqs) const;
  absl::StatusOr<bool> CanSwapOut(int64_t seq) const {
    return CanSwapOut(absl::MakeConstSpan(&seq, 1));
  }

  // SwapOut moves the sequences `seqs` (a fork group, or one sequence) from the GPU to the CPU
  // pool and returns the gpu->cpu copies to issue, one per distinct block: blocks shared inside
  // the group are copied once and keep their reference counts. A block also shared with a
  // sequence outside the group stays on the GPU for it. The GPU blocks go back to the free list,
  // so the copies must run before anything writes to those blocks again (vLLM issues them at the
  // start of the step, before the forward pass).
  absl::StatusOr<std::vector<BlockCopy>> SwapOut(absl::Span<const int64_t> seqs);
  absl::StatusOr<std::vector<BlockCopy>> SwapOut(int64_t seq) {
    return SwapOut(absl::MakeConstSpan(&seq, 1));
  }

  // CanSwapIn says whether the sequences `seqs` (all on the CPU) can come back now: their
  // distinct blocks plus one per sequence for its next append (vLLM's conservative rule), while
  // leaving WatermarkBlocks() free.
  absl::StatusOr<bool> CanSwapIn(absl::Span<const int64_t> seqs) const;
  absl::StatusOr<bool> CanSwapIn(int64_t seq) const {
    return CanSwapIn(absl::MakeConstSpan(&seq, 1));
  }

  // SwapIn is the inverse of SwapOut and returns the cpu->gpu copies. It needs only one free GPU
  // block per distinct block; admission with headroom is CanSwapIn's job.
  absl::StatusOr<std::vector<BlockCopy>> SwapIn(absl::Span<const int64_t> seqs);
  absl::StatusOr<std::vector<BlockCopy>> SwapIn(int64_t seq) {
    return SwapIn(absl::MakeConstSpan(&seq, 1));
  }

  // RefCount is the number of sequences using block `block` of pool `where` (0 when free).
  absl::StatusOr<int> RefCount(Location where, int32_t block) const;

  int64_t NumFreeGpuBlocks() const { return gpu_.NumFree(); }
  int64_t NumFreeCpuBlocks() const { return cpu_.NumFree(); }
  int64_t NumGpuBlocks() const { return gpu_.NumBlocks(); }
  int64_t NumCpuBlocks() const { return cpu_.NumBlocks(); }
  // WatermarkBlocks is floor(watermark * num_gpu_blocks), as vLLM rounds it.
  int64_t WatermarkBlocks() const { return watermark_blocks_; }
  int64_t NumSequences() const { return static_cast<int64_t>(sequences_.size()); }
  const BlockManagerOptions& options() const { return options_; }

  // CheckConsistency recomputes every reference count from the block tables and checks them
  // against the pools' counts and free lists. For tests and debugging: O(blocks + tokens).
  absl::Status CheckConsistency() const;

 private:
  // BlockPool is one pool's free list and reference counts.
  class BlockPool {
   public:
    explicit BlockPool(int64_t num_blocks);
    int64_t NumBlocks() const { return static_cast<int64_t>(ref_counts_.size()); }
    int64_t NumFree() const { return static_cast<int64_t>(free_.size()); }
    int RefCount(int32_t block) const { return ref_counts_[block]; }
    const std::vector<int32_t>& free_list() const { return free_; }
    // Take returns a free block with one reference; the caller has checked NumFree() > 0.
    int32_t Take();
    void AddReference(int32_t block) { ++ref_counts_[block]; }
    // RemoveReference drops one reference; the block is free again at zero.
    void RemoveReference(int32_t block);

   private:
    std::vector<int32_t> free_;  // A stack: the lowest ids come out first.
    std::vector<int> ref_counts_;
  };

  struct Sequence {
    std::vector<int32_t> blocks;
    int64_t num_tokens = 0;
    Location where = Location::kGpu;
  };

  BlockManager(const BlockManagerOptions& options, int64_t watermark_blocks);

  absl::StatusOr<const Sequence*> Find(int64_t seq) const;
  BlockPool& PoolAt(Location where) { return where == Location::kGpu ? gpu_ : cpu_; }
  const BlockPool& PoolAt(Location where) const { return where == Location::kGpu ? gpu_ : cpu_; }
  // CheckGroup checks that `seqs` is a non-empty list of distinct sequences, all at `from`, and
  // returns the number of distinct blocks among them. `verb` names the operation in errors.
  absl::StatusOr<int64_t> CheckGroup(absl::Span<const int64_t> seqs, Location from,
                                     const char* verb) const;
  // Move moves the checked group `seqs` from pool `from` to the other one.
  std::vector<BlockCopy> Move(absl::Span<const int64_t> seqs, Location from);

  BlockManagerOptions options_;
  int64_t watermark_blocks_ = 0;
  BlockPool gpu_;
  BlockPool cpu_;
  absl::flat_hash_map<int64_t, Sequence> sequences_;
};

}  // namespace troupe::serving::kv
