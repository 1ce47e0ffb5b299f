#include "serving/kv/block_manager.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::kv {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

BlockManager Make(int64_t num_gpu_blocks, int64_t num_cpu_blocks = 0, double watermark = 0.0,
                  int block_size = 16) {
  BlockManagerOptions options;
  options.num_gpu_blocks = num_gpu_blocks;
  options.num_cpu_blocks = num_cpu_blocks;
  options.watermark = watermark;
  options.block_size = block_size;
  absl::StatusOr<BlockManager> blocks = BlockManager::Create(options);
  EXPECT_TRUE(blocks.ok()) << blocks.status();
  return *std::move(blocks);
}

// ExpectError checks a status's code and that its message contains every fragment.
template <typename T>
void ExpectError(const absl::StatusOr<T>& result, absl::StatusCode code,
                 const std::vector<std::string>& fragments) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), code) << result.status();
  for (const std::string& fragment : fragments) {
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(fragment));
  }
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& fragments) {
  ExpectError(absl::StatusOr<int>(status), code, fragments);
}

// Snapshot is everything observable about a manager, to check that a failed call changed nothing.
struct Snapshot {
  int64_t free_gpu;
  int64_t free_cpu;
  int64_t num_sequences;
  absl::flat_hash_map<int64_t, std::vector<int32_t>> tables;
  absl::flat_hash_map<int64_t, int64_t> tokens;

  static Snapshot Of(const BlockManager& blocks, const std::vector<int64_t>& seqs) {
    Snapshot snapshot{
        blocks.NumFreeGpuBlocks(), blocks.NumFreeCpuBlocks(), blocks.NumSequences(), {}, {}};
    for (int64_t seq : seqs) {
      if (!blocks.Contains(seq)) continue;
      snapshot.tables[seq] = *blocks.BlockTable(seq);
      snapshot.tokens[seq] = *blocks.NumTokens(seq);
    }
    return snapshot;
  }

  bool operator==(const Snapshot& other) const {
    return free_gpu == other.free_gpu && free_cpu == other.free_cpu &&
           num_sequences == other.num_sequences && tables == other.tables && tokens == other.tokens;
  }
};

// FakeKvMemory stands in for the GPU and CPU caches: one value per slot, so tests can check that
// the copies a manager asks for keep every sequence's contents.
class FakeKvMemory {
 public:
  explicit FakeKvMemory(const BlockManager& blocks)
      : block_size_(blocks.options().block_size),
        gpu_(blocks.NumGpuBlocks() * block_size_, -1),
        cpu_(blocks.NumCpuBlocks() * block_size_, -1) {}

  void Write(const std::vector<int32_t>& slots, const std::vector<int64_t>& values) {
    for (size_t i = 0; i < slots.size(); ++i) gpu_[slots[i]] = values[i];
  }

  void Copy(const std::vector<BlockCopy>& copies, Location from, Location to) {
    for (const BlockCopy& copy : copies) {
      std::copy_n(Pool(from).begin() + copy.src * block_size_, block_size_,
                  Pool(to).begin() + copy.dst * block_size_);
    }
  }

  // Read returns the values of `seq`'s tokens, wherever its blocks are.
  std::vector<int64_t> Read(const BlockManager& blocks, int64_t seq) const {
    const std::vector<int32_t> table = *blocks.BlockTable(seq);
    const std::vector<int64_t>& pool = Pool(*blocks.Where(seq));
    std::vector<int64_t> values;
    for (int64_t t = 0; t < *blocks.NumTokens(seq); ++t) {
      values.push_back(pool[table[t / block_size_] * block_size_ + t % block_size_]);
    }
    return values;
  }

 private:
  std::vector<int64_t>& Pool(Location where) { return where == Location::kGpu ? gpu_ : cpu_; }
  const std::vector<int64_t>& Pool(Location where) const {
    return where == Location::kGpu ? gpu_ : cpu_;
  }

  int64_t block_size_;
  std::vector<int64_t> gpu_;
  std::vector<int64_t> cpu_;
};

std::vector<int64_t> Iota(int64_t first, int64_t count) {
  std::vector<int64_t> values(count);
  for (int64_t i = 0; i < count; ++i) values[i] = first + i;
  return values;
}

std::vector<int32_t> Iota32(int32_t first, int32_t count) {
  std::vector<int32_t> values(count);
  for (int32_t i = 0; i < count; ++i) values[i] = first + i;
  return values;
}

// --- Options -------------------------------------------------------------------------------------

TEST(BlockManagerOptionsTest, DefaultsAreVllmsAndTheKernels) {
  BlockManagerOptions options;
  EXPECT_EQ(options.block_size, 16);
  EXPECT_EQ(options.block_size, gpu::attention::kBlockSize);
  EXPECT_DOUBLE_EQ(options.watermark, 0.01);
  options.num_gpu_blocks = 8;
  EXPECT_TRUE(options.Validate().ok());
}

TEST(BlockManagerOptionsTest, RejectsEachBadFieldByName) {
  BlockManagerOptions options;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"num_gpu_blocks = 0"});
  options.num_gpu_blocks = 8;
  options.num_cpu_blocks = -1;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"num_cpu_blocks = -1"});
  options.num_cpu_blocks = int64_t{1} << 40;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"num_cpu_blocks"});
  options.num_cpu_blocks = 0;
  options.block_size = 0;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"block_size = 0"});
  options.block_size = 16;
  for (double bad : {-0.1, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    options.watermark = bad;
    ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"watermark", "[0, 1)"});
  }
  options.watermark = 0.01;
  options.num_gpu_blocks = std::numeric_limits<int32_t>::max() / 16 + 1;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument, {"int32"});
}

TEST(BlockManagerOptionsTest, ReportsEveryProblemAtOnceAndCreateRefuses) {
  BlockManagerOptions options;
  options.num_gpu_blocks = -4;
  options.watermark = 2;
  ExpectError(options.Validate(), absl::StatusCode::kInvalidArgument,
              {"num_gpu_blocks = -4", "watermark = 2"});
  ExpectError(BlockManager::Create(options), absl::StatusCode::kInvalidArgument,
              {"invalid BlockManagerOptions"});
}

// --- Allocation ---------------------------------------------------------------------------------

TEST(BlockManagerTest, NumBlocksForRoundsUpAtBlockBoundaries) {
  BlockManager blocks = Make(8);
  EXPECT_EQ(blocks.NumBlocksFor(0), 0);
  EXPECT_EQ(blocks.NumBlocksFor(-3), 0);
  EXPECT_EQ(blocks.NumBlocksFor(1), 1);
  EXPECT_EQ(blocks.NumBlocksFor(15), 1);
  EXPECT_EQ(blocks.NumBlocksFor(16), 1);
  EXPECT_EQ(blocks.NumBlocksFor(17), 2);
  EXPECT_EQ(blocks.NumBlocksFor(32), 2);
  EXPECT_EQ(blocks.NumBlocksFor(33), 3);
  EXPECT_EQ(blocks.NumBlocksFor(2048), 128);  // OPT's context: DistServe's 128 blocks a request.
}

TEST(BlockManagerTest, AllocatesBlocksAtBoundaries) {
  BlockManager blocks = Make(8);
  ASSERT_TRUE(blocks.Allocate(1, 15).ok());
  ASSERT_TRUE(blocks.Allocate(2, 16).ok());
  ASSERT_TRUE(blocks.Allocate(3, 17).ok());
  EXPECT_THAT(*blocks.BlockTable(1), ElementsAre(0));
  EXPECT_THAT(*blocks.BlockTable(2), ElementsAre(1));
  EXPECT_THAT(*blocks.BlockTable(3), ElementsAre(2, 3));
  EXPECT_EQ(*blocks.NumTokens(3), 17);
  EXPECT_EQ(*blocks.Where(3), Location::kGpu);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 4);
  EXPECT_EQ(blocks.NumSequences(), 3);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 3), 1);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 4), 0);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, SlotMappingIsBlockTimesBlockSizePlusOffset) {
  BlockManager blocks = Make(8);
  ASSERT_TRUE(blocks.Allocate(1, 3).ok());   // Block 0.
  ASSERT_TRUE(blocks.Allocate(2, 18).ok());  // Blocks 1 and 2.
  EXPECT_THAT(*blocks.SlotMapping(1, 0, 3), ElementsAre(0, 1, 2));
  EXPECT_THAT(*blocks.SlotMapping(2, 14, 4), ElementsAre(30, 31, 32, 33));
  EXPECT_THAT(*blocks.SlotMapping(2, 18, 0), IsEmpty());
  ASSERT_TRUE(blocks.Free(1).ok());
  ASSERT_TRUE(blocks.Allocate(3, 17).ok());  // Reuses block 0, then takes block 3.
  EXPECT_THAT(*blocks.SlotMapping(3, 15, 2), ElementsAre(15, 48));
}

TEST(BlockManagerTest, AllocateRejectsBadInputAndChangesNothing) {
  BlockManager blocks = Make(2);
  ASSERT_TRUE(blocks.Allocate(7, 5).ok());
  const Snapshot before = Snapshot::Of(blocks, {7, 8});
  ExpectError(blocks.Allocate(8, 0), absl::StatusCode::kInvalidArgument,
              {"sequence 8", "0 tokens"});
  ExpectError(blocks.Allocate(8, -5), absl::StatusCode::kInvalidArgument,
              {"sequence 8", "-5 tokens"});
  ExpectError(blocks.Allocate(7, 5), absl::StatusCode::kAlreadyExists,
              {"sequence 7", "already allocated"});
  ExpectError(blocks.Allocate(8, 17), absl::StatusCode::kResourceExhausted,
              {"sequence 8", "needs 2 GPU blocks, 1 free"});
  EXPECT_TRUE(Snapshot::Of(blocks, {7, 8}) == before);
  EXPECT_TRUE(blocks.Allocate(8, 16).ok());
}

TEST(BlockManagerTest, QueriesOnUnknownSequencesFail) {
  BlockManager blocks = Make(2);
  ExpectError(blocks.BlockTable(4), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.NumTokens(4), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.Where(4), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.SlotMapping(4, 0, 1), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.AppendSlots(4, 1), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.CanAppendSlots(4, 1), absl::StatusCode::kNotFound, {"sequence 4"});
  ExpectError(blocks.Free(4), absl::StatusCode::kNotFound, {"sequence 4"});
  EXPECT_FALSE(blocks.Contains(4));
}

TEST(BlockManagerTest, SlotMappingRejectsRangesOutsideTheSequence) {
  BlockManager blocks = Make(2);
  ASSERT_TRUE(blocks.Allocate(1, 10).ok());
  ExpectError(blocks.SlotMapping(1, 8, 3), absl::StatusCode::kOutOfRange,
              {"sequence 1", "[0, 10)"});
  ExpectError(blocks.SlotMapping(1, -1, 2), absl::StatusCode::kOutOfRange, {"sequence 1"});
  ExpectError(blocks.SlotMapping(1, 0, -1), absl::StatusCode::kOutOfRange, {"sequence 1"});
  EXPECT_THAT(*blocks.SlotMapping(1, 10, 0), IsEmpty());
}

TEST(BlockManagerTest, RefCountRejectsBlocksOutsideThePool) {
  BlockManager blocks = Make(2, 1);
  ExpectError(blocks.RefCount(Location::kGpu, 2), absl::StatusCode::kOutOfRange,
              {"GPU block 2", "[0, 2)"});
  ExpectError(blocks.RefCount(Location::kCpu, -1), absl::StatusCode::kOutOfRange, {"CPU block -1"});
}

// --- Appending ----------------------------------------------------------------------------------

TEST(BlockManagerTest, AppendFillsTheLastBlockThenOpensNewOnes) {
  BlockManager blocks = Make(8);
  ASSERT_TRUE(blocks.Allocate(1, 15).ok());
  EXPECT_EQ(*blocks.BlocksNeededToAppend(1, 1), 0);
  absl::StatusOr<AppendResult> appended = blocks.AppendSlots(1, 1);  // Token 15: block 0 is full.
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_THAT(appended->slots, ElementsAre(15));
  EXPECT_EQ(appended->copy_on_write, std::nullopt);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 7);

  EXPECT_EQ(*blocks.BlocksNeededToAppend(1, 1), 1);
  appended = blocks.AppendSlots(1, 1);  // Token 16 opens block 1.
  ASSERT_TRUE(appended.ok());
  EXPECT_THAT(appended->slots, ElementsAre(16));
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 6);

  EXPECT_EQ(*blocks.BlocksNeededToAppend(1, 33), 2);
  appended = blocks.AppendSlots(1, 33);  // Tokens 17..49: the rest of block 1, blocks 2 and 3.
  ASSERT_TRUE(appended.ok());
  ASSERT_EQ(appended->slots.size(), 33u);
  EXPECT_EQ(appended->slots.front(), 17);
  EXPECT_EQ(appended->slots[15], 32);  // Token 32 is the first of block 2.
  EXPECT_EQ(appended->slots.back(), 49);
  EXPECT_THAT(*blocks.BlockTable(1), ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(*blocks.NumTokens(1), 50);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 4);
  EXPECT_THAT(*blocks.SlotMapping(1, 0, 50), ElementsAreArray(Iota32(0, 50)));
}

TEST(BlockManagerTest, AppendRejectsBadInputAndChangesNothing) {
  BlockManager blocks = Make(2, 2);
  ASSERT_TRUE(blocks.Allocate(1, 16).ok());
  ASSERT_TRUE(blocks.Allocate(2, 16).ok());
  const Snapshot before = Snapshot::Of(blocks, {1, 2});
  ExpectError(blocks.AppendSlots(1, 0), absl::StatusCode::kInvalidArgument,
              {"sequence 1", "0 tokens"});
  ExpectError(blocks.AppendSlots(1, -2), absl::StatusCode::kInvalidArgument, {"sequence 1"});
  EXPECT_FALSE(*blocks.CanAppendSlots(1, 1));
  ExpectError(blocks.AppendSlots(1, 1), absl::StatusCode::kResourceExhausted,
              {"sequence 1", "needs 1 GPU blocks, 0 free"});
  EXPECT_TRUE(Snapshot::Of(blocks, {1, 2}) == before);

  ASSERT_TRUE(blocks.SwapOut(2).ok());
  EXPECT_TRUE(*blocks.CanAppendSlots(1, 16));
  ExpectError(blocks.AppendSlots(2, 1), absl::StatusCode::kFailedPrecondition,
              {"sequence 2", "swapped out", "swap it in first"});
  ExpectError(blocks.SlotMapping(2, 0, 1), absl::StatusCode::kFailedPrecondition,
              {"sequence 2", "swapped out"});
}

// --- Forks and copy-on-write --------------------------------------------------------------------

TEST(BlockManagerTest, ForkSharesBlocksAndFreeReturnsThemAtZeroReferences) {
  BlockManager blocks = Make(4);
  ASSERT_TRUE(blocks.Allocate(1, 20).ok());  // Blocks 0, 1.
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  ASSERT_TRUE(blocks.Fork(2, 3).ok());
  EXPECT_THAT(*blocks.BlockTable(3), ElementsAre(0, 1));
  EXPECT_EQ(*blocks.NumTokens(3), 20);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 3);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 1), 3);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 2);

  ASSERT_TRUE(blocks.Free(1).ok());
  ASSERT_TRUE(blocks.Free(3).ok());
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 1);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 2);  // Sequence 2 still holds them.
  ASSERT_TRUE(blocks.Free(2).ok());
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 0);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 4);
  ExpectError(blocks.Free(2), absl::StatusCode::kNotFound, {"sequence 2", "already freed"});
}

TEST(BlockManagerTest, AppendCopiesASharedPartialLastBlock) {
  BlockManager blocks = Make(4);
  ASSERT_TRUE(blocks.Allocate(1, 17).ok());  // Blocks 0 (full) and 1 (one token).
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  EXPECT_EQ(*blocks.BlocksNeededToAppend(2, 1), 1);

  absl::StatusOr<AppendResult> child = blocks.AppendSlots(2, 1);
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->copy_on_write.has_value());
  EXPECT_EQ(*child->copy_on_write, (BlockCopy{1, 2}));
  EXPECT_THAT(child->slots, ElementsAre(2 * 16 + 1));
  EXPECT_THAT(*blocks.BlockTable(2), ElementsAre(0, 2));
  EXPECT_THAT(*blocks.BlockTable(1), ElementsAre(0, 1));
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 2);  // The full block stays shared.
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 1), 1);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 2), 1);

  absl::StatusOr<AppendResult> parent = blocks.AppendSlots(1, 1);  // Now sole owner of block 1.
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(parent->copy_on_write, std::nullopt);
  EXPECT_THAT(parent->slots, ElementsAre(1 * 16 + 1));
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 1);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, AppendAfterASharedFullBlockOpensANewBlockWithoutCopying) {
  BlockManager blocks = Make(4);
  ASSERT_TRUE(blocks.Allocate(1, 16).ok());
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  absl::StatusOr<AppendResult> appended = blocks.AppendSlots(2, 1);
  ASSERT_TRUE(appended.ok());
  EXPECT_EQ(appended->copy_on_write, std::nullopt);
  EXPECT_THAT(*blocks.BlockTable(2), ElementsAre(0, 1));
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 2);
}

TEST(BlockManagerTest, CopyOnWriteNeedsAFreeBlockOrChangesNothing) {
  BlockManager blocks = Make(2);
  ASSERT_TRUE(blocks.Allocate(1, 5).ok());
  ASSERT_TRUE(blocks.Allocate(3, 16).ok());
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  const Snapshot before = Snapshot::Of(blocks, {1, 2, 3});
  ExpectError(blocks.AppendSlots(2, 1), absl::StatusCode::kResourceExhausted,
              {"sequence 2", "needs 1 GPU blocks, 0 free"});
  EXPECT_TRUE(Snapshot::Of(blocks, {1, 2, 3}) == before);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 2);
}

TEST(BlockManagerTest, ForkRejectsBadInput) {
  BlockManager blocks = Make(4);
  ASSERT_TRUE(blocks.Allocate(1, 4).ok());
  ASSERT_TRUE(blocks.Allocate(2, 4).ok());
  const Snapshot before = Snapshot::Of(blocks, {1, 2, 9});
  ExpectError(blocks.Fork(9, 10), absl::StatusCode::kNotFound, {"sequence 9", "parent"});
  ExpectError(blocks.Fork(1, 2), absl::StatusCode::kAlreadyExists, {"sequence 2", "child"});
  ExpectError(blocks.Fork(1, 1), absl::StatusCode::kInvalidArgument, {"sequence 1", "itself"});
  EXPECT_TRUE(Snapshot::Of(blocks, {1, 2, 9}) == before);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 1);
}

// --- Watermark ----------------------------------------------------------------------------------

TEST(BlockManagerTest, WatermarkKeepsBlocksFreeWhenAdmittingPrompts) {
  BlockManager blocks = Make(100, 0, 0.1);  // 10 blocks of watermark.
  EXPECT_EQ(blocks.WatermarkBlocks(), 10);
  EXPECT_EQ(*blocks.CanAllocate(90 * 16), Admission::kOk);
  EXPECT_EQ(*blocks.CanAllocate(90 * 16 + 1), Admission::kNever);  // 91 blocks: never fits.

  ASSERT_TRUE(blocks.Allocate(1, 50 * 16).ok());
  EXPECT_EQ(*blocks.CanAllocate(40 * 16), Admission::kOk);         // Leaves 10 free.
  EXPECT_EQ(*blocks.CanAllocate(40 * 16 + 1), Admission::kLater);  // Would leave 9.
  EXPECT_EQ(*blocks.CanAllocate(91 * 16), Admission::kNever);

  // Allocate itself only needs the blocks: the watermark is an admission policy.
  EXPECT_TRUE(blocks.Allocate(2, 41 * 16).ok());
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 9);
  ASSERT_TRUE(blocks.Free(1).ok());
  EXPECT_EQ(*blocks.CanAllocate(40 * 16 + 1), Admission::kOk);

  ExpectError(blocks.CanAllocate(0), absl::StatusCode::kInvalidArgument, {"0 tokens"});
  ExpectError(blocks.CanAllocate(-1), absl::StatusCode::kInvalidArgument, {"-1 tokens"});
}

TEST(BlockManagerTest, WatermarkRoundsDownAsVllmDoes) {
  EXPECT_EQ(Make(1000, 0, 0.01).WatermarkBlocks(), 10);
  EXPECT_EQ(Make(99, 0, 0.01).WatermarkBlocks(), 0);
  EXPECT_EQ(*Make(99, 0, 0.01).CanAllocate(99 * 16), Admission::kOk);
}

// --- Swapping -----------------------------------------------------------------------------------

TEST(BlockManagerTest, SwapOutAndInRestoresContentsAndFreeCounts) {
  BlockManager blocks = Make(6, 6);
  FakeKvMemory memory(blocks);
  ASSERT_TRUE(blocks.Allocate(1, 20).ok());
  ASSERT_TRUE(blocks.Allocate(2, 7).ok());
  memory.Write(*blocks.SlotMapping(1, 0, 20), Iota(100, 20));
  memory.Write(*blocks.SlotMapping(2, 0, 7), Iota(200, 7));
  const int64_t free_gpu = blocks.NumFreeGpuBlocks();

  EXPECT_TRUE(*blocks.CanSwapOut(1));
  absl::StatusOr<std::vector<BlockCopy>> out = blocks.SwapOut(1);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, ElementsAre(BlockCopy{0, 0}, BlockCopy{1, 1}));
  memory.Copy(*out, Location::kGpu, Location::kCpu);
  EXPECT_EQ(*blocks.Where(1), Location::kCpu);
  EXPECT_EQ(*blocks.NumTokens(1), 20);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), free_gpu + 2);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 4);
  EXPECT_EQ(memory.Read(blocks, 1), Iota(100, 20));

  // Another sequence takes the freed GPU blocks and overwrites them.
  ASSERT_TRUE(blocks.Allocate(3, 32).ok());
  memory.Write(*blocks.SlotMapping(3, 0, 32), Iota(300, 32));
  ASSERT_TRUE(blocks.Free(3).ok());

  EXPECT_TRUE(*blocks.CanSwapIn(1));
  absl::StatusOr<std::vector<BlockCopy>> in = blocks.SwapIn(1);
  ASSERT_TRUE(in.ok()) << in.status();
  ASSERT_EQ(in->size(), 2u);
  memory.Copy(*in, Location::kCpu, Location::kGpu);
  EXPECT_EQ(*blocks.Where(1), Location::kGpu);
  EXPECT_EQ(memory.Read(blocks, 1), Iota(100, 20));
  EXPECT_EQ(memory.Read(blocks, 2), Iota(200, 7));
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), free_gpu);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 6);

  absl::StatusOr<AppendResult> appended = blocks.AppendSlots(1, 1);  // Decoding resumes.
  ASSERT_TRUE(appended.ok());
  memory.Write(appended->slots, {120});
  EXPECT_EQ(memory.Read(blocks, 1), Iota(100, 21));
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, SwapCopiesSharedBlocksOnceAndKeepsReferenceCounts) {
  BlockManager blocks = Make(8, 8);
  FakeKvMemory memory(blocks);
  ASSERT_TRUE(blocks.Allocate(1, 20).ok());  // GPU blocks 0, 1.
  memory.Write(*blocks.SlotMapping(1, 0, 20), Iota(0, 20));
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  absl::StatusOr<AppendResult> child = blocks.AppendSlots(2, 1);  // Copy-on-write: 1 -> 2.
  ASSERT_TRUE(child.ok());
  memory.Copy({*child->copy_on_write}, Location::kGpu, Location::kGpu);
  memory.Write(child->slots, {-20});

  absl::StatusOr<std::vector<BlockCopy>> out = blocks.SwapOut({1, 2});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->size(), 3u);  // Block 0 once, block 1, block 2.
  memory.Copy(*out, Location::kGpu, Location::kCpu);
  const std::vector<int32_t> table1 = *blocks.BlockTable(1);
  const std::vector<int32_t> table2 = *blocks.BlockTable(2);
  EXPECT_EQ(table1[0], table2[0]);
  EXPECT_EQ(*blocks.RefCount(Location::kCpu, table1[0]), 2);
  EXPECT_EQ(*blocks.RefCount(Location::kCpu, table1[1]), 1);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 8);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 5);

  absl::StatusOr<std::vector<BlockCopy>> in = blocks.SwapIn({2, 1});
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->size(), 3u);
  memory.Copy(*in, Location::kCpu, Location::kGpu);
  EXPECT_EQ((*blocks.BlockTable(1))[0], (*blocks.BlockTable(2))[0]);
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, (*blocks.BlockTable(1))[0]), 2);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 5);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 8);
  EXPECT_EQ(memory.Read(blocks, 1), Iota(0, 20));
  std::vector<int64_t> expected_child = Iota(0, 20);
  expected_child.push_back(-20);
  EXPECT_EQ(memory.Read(blocks, 2), expected_child);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, SwappingOneForkCopiesTheBlocksItSharesWithOthers) {
  BlockManager blocks = Make(4, 4);
  ASSERT_TRUE(blocks.Allocate(1, 16).ok());
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  absl::StatusOr<std::vector<BlockCopy>> out = blocks.SwapOut(2);
  ASSERT_TRUE(out.ok());
  EXPECT_THAT(*out, ElementsAre(BlockCopy{0, 0}));
  EXPECT_EQ(*blocks.RefCount(Location::kGpu, 0), 1);  // Sequence 1 keeps it.
  EXPECT_EQ(*blocks.RefCount(Location::kCpu, 0), 1);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 3);
  ASSERT_TRUE(blocks.Free(2).ok());  // Freeing on the CPU returns the CPU block.
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 4);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, ForkOfASwappedSequenceSharesItsCpuBlocks) {
  BlockManager blocks = Make(4, 4);
  ASSERT_TRUE(blocks.Allocate(1, 16).ok());
  ASSERT_TRUE(blocks.SwapOut(1).ok());
  ASSERT_TRUE(blocks.Fork(1, 2).ok());
  EXPECT_EQ(*blocks.Where(2), Location::kCpu);
  EXPECT_EQ(*blocks.RefCount(Location::kCpu, 0), 2);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

TEST(BlockManagerTest, SwapRefusesWhenThePoolIsTooSmallAndChangesNothing) {
  BlockManager blocks = Make(4, 1);
  ASSERT_TRUE(blocks.Allocate(1, 17).ok());
  ASSERT_TRUE(blocks.Allocate(2, 1).ok());
  const Snapshot before = Snapshot::Of(blocks, {1, 2});
  EXPECT_FALSE(*blocks.CanSwapOut(1));
  EXPECT_FALSE(*blocks.CanSwapOut({1, 2}));
  ExpectError(blocks.SwapOut(1), absl::StatusCode::kResourceExhausted,
              {"sequence 1", "needs 2 CPU blocks, 1 free", "num_cpu_blocks"});
  ExpectError(blocks.SwapOut({1, 2}), absl::StatusCode::kResourceExhausted,
              {"sequences 1, 2", "needs 3 CPU blocks"});
  EXPECT_TRUE(Snapshot::Of(blocks, {1, 2}) == before);

  EXPECT_TRUE(*blocks.CanSwapOut(2));
  ASSERT_TRUE(blocks.SwapOut(2).ok());
  ASSERT_TRUE(blocks.Allocate(3, 32).ok());  // Fills the GPU: 2 + 2 of 4.
  EXPECT_FALSE(*blocks.CanSwapIn(2));
  ExpectError(blocks.SwapIn(2), absl::StatusCode::kResourceExhausted,
              {"sequence 2", "needs 1 GPU blocks, 0 free"});
  EXPECT_EQ(*blocks.Where(2), Location::kCpu);
}

TEST(BlockManagerTest, SwapWithoutSwapSpaceFails) {
  BlockManager blocks = Make(4, 0);
  ASSERT_TRUE(blocks.Allocate(1, 1).ok());
  EXPECT_FALSE(*blocks.CanSwapOut(1));
  ExpectError(blocks.SwapOut(1), absl::StatusCode::kResourceExhausted, {"0 free of 0"});
}

TEST(BlockManagerTest, CanSwapInLeavesABlockPerSequenceAndTheWatermark) {
  BlockManager blocks = Make(10, 10, 0.2);  // 2 blocks of watermark.
  ASSERT_TRUE(blocks.Allocate(1, 32).ok());
  ASSERT_TRUE(blocks.SwapOut(1).ok());
  ASSERT_TRUE(blocks.Allocate(2, 5 * 16).ok());  // 5 free: 2 blocks + 1 headroom + 2 watermark.
  EXPECT_TRUE(*blocks.CanSwapIn(1));
  ASSERT_TRUE(blocks.AppendSlots(2, 1).ok());  // 4 free.
  EXPECT_FALSE(*blocks.CanSwapIn(1));
  EXPECT_TRUE(blocks.SwapIn(1).ok());  // SwapIn itself only needs the 2 blocks.
}

TEST(BlockManagerTest, SwapRejectsBadGroups) {
  BlockManager blocks = Make(4, 4);
  ASSERT_TRUE(blocks.Allocate(1, 1).ok());
  ASSERT_TRUE(blocks.Allocate(2, 1).ok());
  ASSERT_TRUE(blocks.SwapOut(2).ok());
  const Snapshot before = Snapshot::Of(blocks, {1, 2, 9});
  ExpectError(blocks.SwapOut(2), absl::StatusCode::kFailedPrecondition,
              {"swap out sequence 2", "on the CPU, not the GPU"});
  ExpectError(blocks.CanSwapOut(2), absl::StatusCode::kFailedPrecondition, {"sequence 2"});
  ExpectError(blocks.SwapIn(1), absl::StatusCode::kFailedPrecondition,
              {"swap in sequence 1", "on the GPU, not the CPU"});
  ExpectError(blocks.CanSwapIn(1), absl::StatusCode::kFailedPrecondition, {"sequence 1"});
  ExpectError(blocks.SwapOut(9), absl::StatusCode::kNotFound, {"sequence 9"});
  ExpectError(blocks.SwapIn(9), absl::StatusCode::kNotFound, {"sequence 9"});
  ExpectError(blocks.SwapOut({1, 1}), absl::StatusCode::kInvalidArgument,
              {"sequence 1", "listed twice"});
  ExpectError(blocks.SwapOut({1, 2}), absl::StatusCode::kFailedPrecondition, {"sequence 2"});
  ExpectError(blocks.SwapOut(absl::Span<const int64_t>()), absl::StatusCode::kInvalidArgument,
              {"empty"});
  ExpectError(blocks.SwapIn(absl::Span<const int64_t>()), absl::StatusCode::kInvalidArgument,
              {"empty"});
  EXPECT_TRUE(Snapshot::Of(blocks, {1, 2, 9}) == before);
}

// --- Invariants under random operations ---------------------------------------------------------

struct RandomOpsCase {
  int block_size;
  uint32_t seed;
};

class BlockManagerRandomTest : public ::testing::TestWithParam<RandomOpsCase> {};

// Many random operations, each applied to a fake KV memory as the manager asks (copy-on-write,
// swap copies): every sequence always reads back the tokens written to it, the reference counts
// always match the block tables, failed calls change nothing, and freeing everything returns
// every block.
TEST_P(BlockManagerRandomTest, KeepsContentsAndReturnsEveryBlock) {
  const int block_size = GetParam().block_size;
  constexpr int64_t kGpuBlocks = 48;
  constexpr int64_t kCpuBlocks = 32;
  constexpr int kOperations = 3000;
  BlockManager blocks = Make(kGpuBlocks, kCpuBlocks, 0.05, block_size);
  FakeKvMemory memory(blocks);
  std::mt19937 random(GetParam().seed);
  auto uniform = [&](int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random);
  };
  absl::flat_hash_map<int64_t, std::vector<int64_t>> expected;  // Each live sequence's tokens.
  std::vector<int64_t> live;
  int64_t next_seq = 0;
  int64_t next_value = 0;
  auto pick = [&](Location where) -> std::vector<int64_t> {
    std::vector<int64_t> found;
    for (int64_t seq : live) {
      if (*blocks.Where(seq) == where) found.push_back(seq);
    }
    std::shuffle(found.begin(), found.end(), random);
    found.resize(std::min<size_t>(found.size(), uniform(1, 3)));
    return found;
  };
  auto write = [&](int64_t seq, const std::vector<int32_t>& slots) {
    std::vector<int64_t> values = Iota(next_value, static_cast<int64_t>(slots.size()));
    next_value += static_cast<int64_t>(slots.size());
    memory.Write(slots, values);
    expected[seq].insert(expected[seq].end(), values.begin(), values.end());
  };
  std::discrete_distribution<int> pick_op({2, 5, 1, 2, 1, 1});
  absl::flat_hash_map<int, int> successes;
  int failures = 0;

  for (int i = 0; i < kOperations; ++i) {
    // Operation kinds: allocate, append, fork, free, swap out, swap in.
    const int op = pick_op(random);
    const Snapshot before = Snapshot::Of(blocks, live);
    bool failed = false;
    if (op == 0 || live.empty()) {
      const int64_t seq = next_seq++;
      const int64_t tokens = uniform(1, 3 * block_size);
      const bool fits = blocks.NumBlocksFor(tokens) <= blocks.NumFreeGpuBlocks();
      absl::Status status = blocks.Allocate(seq, tokens);
      ASSERT_EQ(status.ok(), fits) << status;
      if (status.ok()) {
        live.push_back(seq);
        write(seq, *blocks.SlotMapping(seq, 0, tokens));
      } else {
        ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
        failed = true;
      }
    } else if (op == 1) {
      // Mostly a sequence on the GPU; now and then any, to append to a swapped one.
      const std::vector<int64_t> on_gpu = pick(Location::kGpu);
      const int64_t seq =
          on_gpu.empty() || uniform(0, 9) == 0 ? live[uniform(0, live.size() - 1)] : on_gpu[0];
      const int64_t tokens = uniform(1, block_size + 2);
      absl::StatusOr<bool> can = blocks.CanAppendSlots(seq, tokens);
      absl::StatusOr<AppendResult> appended = blocks.AppendSlots(seq, tokens);
      if (*blocks.Where(seq) == Location::kCpu) {
        ASSERT_EQ(appended.status().code(), absl::StatusCode::kFailedPrecondition);
        failed = true;
      } else {
        ASSERT_EQ(appended.ok(), *can) << appended.status();
        if (appended.ok()) {
          if (appended->copy_on_write.has_value()) {
            memory.Copy({*appended->copy_on_write}, Location::kGpu, Location::kGpu);
          }
          write(seq, appended->slots);
        } else {
          ASSERT_EQ(appended.status().code(), absl::StatusCode::kResourceExhausted);
          failed = true;
        }
      }
    } else if (op == 2) {
      const int64_t parent = live[uniform(0, live.size() - 1)];
      const int64_t child = next_seq++;
      ASSERT_TRUE(blocks.Fork(parent, child).ok());
      live.push_back(child);
      std::vector<int64_t> inherited = expected[parent];  // Copy first: inserting may rehash.
      expected[child] = std::move(inherited);
    } else if (op == 3) {
      const size_t index = uniform(0, live.size() - 1);
      ASSERT_TRUE(blocks.Free(live[index]).ok());
      expected.erase(live[index]);
      live.erase(live.begin() + index);
    } else {
      const Location from = op == 4 ? Location::kGpu : Location::kCpu;
      const std::vector<int64_t> group = pick(from);
      if (group.empty()) continue;
      absl::StatusOr<bool> can =
          from == Location::kGpu ? blocks.CanSwapOut(group) : blocks.CanSwapIn(group);
      ASSERT_TRUE(can.ok()) << can.status();
      absl::StatusOr<std::vector<BlockCopy>> copies =
          from == Location::kGpu ? blocks.SwapOut(group) : blocks.SwapIn(group);
      if (*can) {
        ASSERT_TRUE(copies.ok()) << copies.status();
      }
      if (copies.ok()) {
        memory.Copy(*copies, from, from == Location::kGpu ? Location::kCpu : Location::kGpu);
      } else {
        ASSERT_EQ(copies.status().code(), absl::StatusCode::kResourceExhausted);
        failed = true;
      }
    }
    if (failed) {
      ASSERT_TRUE(Snapshot::Of(blocks, live) == before) << "operation " << i << " changed state";
      ++failures;
    } else {
      ++successes[op];
    }
    ASSERT_TRUE(blocks.CheckConsistency().ok())
        << "after operation " << i << ": " << blocks.CheckConsistency();
    for (int64_t seq : live) {
      ASSERT_EQ(memory.Read(blocks, seq), expected[seq]) << "sequence " << seq << ", op " << i;
    }
  }
  for (int op = 0; op <= 5; ++op) EXPECT_GT(successes[op], 0) << "operation kind " << op;
  EXPECT_GT(failures, 0) << "the pools were never under pressure";

  for (int64_t seq : live) ASSERT_TRUE(blocks.Free(seq).ok());
  EXPECT_EQ(blocks.NumSequences(), 0);
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), kGpuBlocks);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), kCpuBlocks);
  EXPECT_TRUE(blocks.CheckConsistency().ok());
}

INSTANTIATE_TEST_SUITE_P(Seeds, BlockManagerRandomTest,
                         ::testing::Values(RandomOpsCase{16, 1}, RandomOpsCase{16, 2},
                                           RandomOpsCase{4, 3}, RandomOpsCase{1, 4}),
                         [](const ::testing::TestParamInfo<RandomOpsCase>& info) {
                           return "BlockSize" + std::to_string(info.param.block_size) + "Seed" +
                                  std::to_string(info.param.seed);
                         });

}  // namespace
}  // namespace troupe::serving::kv
