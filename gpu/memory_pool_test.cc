// The caching policy of MemoryPool, on the CPU, over a fake RawAllocator that hands out
// addresses (never dereferenced) and can run out of memory like a GPU.
#include "gpu/memory_pool.h"

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMiB = size_t{1} << 20;

// Ledger is what the fake allocator did; it outlives the pool that owns the allocator.
struct Ledger {
  absl::Mutex mutex;
  size_t capacity_per_device = std::numeric_limits<size_t>::max();
  std::map<int, size_t> used;                        // Bytes handed out, per device.
  std::map<void*, size_t> live;                      // Address -> size.
  absl::Status fail_allocations = absl::OkStatus();  // Returned by Allocate when not OK.
  absl::Status fail_frees = absl::OkStatus();        // Returned by Free when not OK.
  uintptr_t next_address = 0x100000;
};

class FakeAllocator : public RawAllocator {
 public:
  explicit FakeAllocator(std::shared_ptr<Ledger> ledger) : ledger_(std::move(ledger)) {}

  absl::StatusOr<void*> Allocate(size_t bytes, int device) override {
    absl::MutexLock lock(&ledger_->mutex);
    if (!ledger_->fail_allocations.ok()) return ledger_->fail_allocations;
    if (ledger_->used[device] + bytes > ledger_->capacity_per_device) {
      return absl::ResourceExhaustedError("fake device out of memory");
    }
    ledger_->used[device] += bytes;
    void* data = reinterpret_cast<void*>(ledger_->next_address);
    ledger_->next_address += bytes;
    ledger_->live[data] = bytes;
    return data;
  }

  absl::Status Free(void* data, int device) override {
    absl::MutexLock lock(&ledger_->mutex);
    auto it = ledger_->live.find(data);
    EXPECT_NE(it, ledger_->live.end()) << "freed an address the allocator never gave";
    if (it != ledger_->live.end()) {
      ledger_->used[device] -= it->second;
      ledger_->live.erase(it);
    }
    return ledger_->fail_frees;
  }

 private:
  std::shared_ptr<Ledger> ledger_;
};

class MemoryPoolTest : public ::testing::Test {
 protected:
  std::shared_ptr<MemoryPool> MakePool(MemoryPoolOptions options = {}) {
    absl::StatusOr<std::shared_ptr<MemoryPool>> pool =
        MemoryPool::Create(std::make_unique<FakeAllocator>(ledger_), options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return *pool;
  }

  size_t LiveBlocks() {
    absl::MutexLock lock(&ledger_->mutex);
    return ledger_->live.size();
  }

  std::shared_ptr<Ledger> ledger_ = std::make_shared<Ledger>();
};

TEST(SizeClassTest, SmallRequestsRoundTo512BytesLargeOnesToPowersOfTwo) {
  const MemoryPoolOptions options;
  EXPECT_EQ(*SizeClass(1, options), 512u);
  EXPECT_EQ(*SizeClass(512, options), 512u);
  EXPECT_EQ(*SizeClass(513, options), 1024u);
  EXPECT_EQ(*SizeClass(kMiB - 1, options), kMiB);
  EXPECT_EQ(*SizeClass(kMiB, options), kMiB);
  EXPECT_EQ(*SizeClass(kMiB + 1, options), 2 * kMiB);
  EXPECT_EQ(*SizeClass(3 * kMiB, options), 4 * kMiB);
  EXPECT_EQ(*SizeClass(1000 * kMiB, options), 1024 * kMiB);
}

TEST(SizeClassTest, ZeroAndOverflowingSizesAreErrors) {
  const MemoryPoolOptions options;
  EXPECT_EQ(SizeClass(0, options).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<size_t> huge = SizeClass(std::numeric_limits<size_t>::max(), options);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.status().message(), HasSubstr("largest size class"));
}

TEST_F(MemoryPoolTest, FreedBlocksAreReusedForTheSameClassOnTheSameDevice) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  void* first = nullptr;
  {
    PooledBuffer buffer = *pool->Allocate(1000, /*device=*/0);
    EXPECT_EQ(buffer.bytes(), 1000u);
    EXPECT_EQ(buffer.capacity(), 1024u);
    EXPECT_EQ(buffer.device(), 0);
    first = buffer.data();
  }
  PooledBuffer same_class = *pool->Allocate(700, 0);  // Also 1024 bytes.
  EXPECT_EQ(same_class.data(), first);
  PooledBuffer other_device = *pool->Allocate(1000, 1);
  EXPECT_NE(other_device.data(), first);
  PooledBuffer other_class = *pool->Allocate(2000, 0);
  EXPECT_NE(other_class.data(), first);

  const MemoryPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.allocations, 4u);
  EXPECT_EQ(stats.cache_hits, 1u);
  EXPECT_EQ(stats.cache_misses, 3u);
  EXPECT_EQ(stats.raw_allocations, 3u);
}

TEST_F(MemoryPoolTest, StatsTrackBytesInUseCachedAndPeak) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  PooledBuffer a = *pool->Allocate(3 * kMiB, 0);  // 4 MiB class.
  PooledBuffer b = *pool->Allocate(100, 0);       // 512 B class.
  EXPECT_EQ(pool->Stats().bytes_in_use, 4 * kMiB + 512);
  a.Reset();
  EXPECT_EQ(a.data(), nullptr);
  MemoryPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.bytes_in_use, 512u);
  EXPECT_EQ(stats.bytes_cached, 4 * kMiB);
  EXPECT_EQ(stats.peak_bytes_in_use, 4 * kMiB + 512);
  b = PooledBuffer();  // Move-assigning returns the old block too.
  stats = pool->Stats();
  EXPECT_EQ(stats.bytes_in_use, 0u);
  EXPECT_EQ(stats.bytes_cached, 4 * kMiB + 512);
  EXPECT_THAT(stats.ToString(), HasSubstr("peak_bytes_in_use=4194816"));
}

TEST_F(MemoryPoolTest, ReleaseFreesCachedBlocksAndLeavesBlocksInUse) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  PooledBuffer kept = *pool->Allocate(4096, 0);
  { PooledBuffer freed = *pool->Allocate(8192, 0); }
  { PooledBuffer freed = *pool->Allocate(8192, 1); }
  EXPECT_EQ(LiveBlocks(), 3u);

  ASSERT_TRUE(pool->Release(/*device=*/1).ok());
  EXPECT_EQ(LiveBlocks(), 2u);
  EXPECT_EQ(pool->Stats().bytes_cached, 8192u);

  ASSERT_TRUE(pool->Release().ok());
  EXPECT_EQ(LiveBlocks(), 1u);  // Only `kept`.
  const MemoryPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.bytes_cached, 0u);
  EXPECT_EQ(stats.bytes_in_use, 4096u);
  EXPECT_EQ(stats.raw_frees, 2u);
}

TEST_F(MemoryPoolTest, OutOfMemoryFreesTheCacheAndRetriesOnce) {
  ledger_->capacity_per_device = 10 * kMiB;
  std::shared_ptr<MemoryPool> pool = MakePool();
  { PooledBuffer cached = *pool->Allocate(4 * kMiB, 0); }  // 4 MiB now cached.
  PooledBuffer small = *pool->Allocate(kMiB, 0);           // 5 MiB of 10 used.

  // An 8 MiB class does not fit next to the cache; it fits once the cache is freed.
  absl::StatusOr<PooledBuffer> big = pool->Allocate(5 * kMiB, 0);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->capacity(), 8 * kMiB);
  const MemoryPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.raw_allocations, 4u);  // 4 MiB, 1 MiB, then 8 MiB twice.
  EXPECT_EQ(stats.raw_frees, 1u);
  EXPECT_EQ(stats.bytes_cached, 0u);
}

TEST_F(MemoryPoolTest, OutOfMemoryAfterTheRetryNamesSizeDeviceAndStatistics) {
  ledger_->capacity_per_device = 2 * kMiB;
  std::shared_ptr<MemoryPool> pool = MakePool();
  absl::StatusOr<PooledBuffer> too_big = pool->Allocate(3 * kMiB, /*device=*/2);
  ASSERT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), HasSubstr("3145728 bytes"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("size class 4194304"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("cuda:2"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("fake device out of memory"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("raw_allocations=2"));
  EXPECT_EQ(pool->Stats().allocations, 0u);
  EXPECT_EQ(pool->Stats().bytes_in_use, 0u);
}

TEST_F(MemoryPoolTest, OtherAllocatorErrorsPassThroughWithoutRetry) {
  ledger_->fail_allocations = absl::FailedPreconditionError("cuda:9 does not exist");
  std::shared_ptr<MemoryPool> pool = MakePool();
  absl::StatusOr<PooledBuffer> buffer = pool->Allocate(100, 9);
  EXPECT_EQ(buffer.status(), ledger_->fail_allocations);
  EXPECT_EQ(pool->Stats().raw_allocations, 1u);
}

TEST_F(MemoryPoolTest, FailedFreesAreReportedAndTheCacheIsEmptiedAnyway) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  { PooledBuffer a = *pool->Allocate(100, 0), b = *pool->Allocate(5000, 0); }
  ledger_->fail_frees = absl::InternalError("cudaFree failed");
  EXPECT_EQ(pool->Release(), ledger_->fail_frees);
  EXPECT_EQ(pool->Stats().bytes_cached, 0u);
  EXPECT_EQ(pool->Stats().raw_frees, 2u);
}

TEST_F(MemoryPoolTest, ZeroBytesGiveAnEmptyBufferWithoutAllocating) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  absl::StatusOr<PooledBuffer> empty = pool->Allocate(0, 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->data(), nullptr);
  EXPECT_EQ(empty->capacity(), 0u);
  EXPECT_EQ(pool->Stats().raw_allocations, 0u);
  EXPECT_EQ(pool->Stats().allocations, 0u);
}

TEST_F(MemoryPoolTest, BadInputsAreClearErrors) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  absl::StatusOr<PooledBuffer> negative = pool->Allocate(100, -1);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("cuda:-1 is not a device index"));

  absl::StatusOr<PooledBuffer> huge = pool->Allocate(std::numeric_limits<size_t>::max(), 0);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_THAT(MemoryPool::Create(nullptr).status().message(), HasSubstr("RawAllocator is null"));

  MemoryPoolOptions odd_granularity;
  odd_granularity.small_granularity = 768;
  EXPECT_THAT(MemoryPool::Create(std::make_unique<FakeAllocator>(ledger_), odd_granularity)
                  .status()
                  .message(),
              HasSubstr("small_granularity = 768 must be a power of two"));

  MemoryPoolOptions low_threshold;
  low_threshold.large_threshold = 256;
  EXPECT_THAT(MemoryPool::Create(std::make_unique<FakeAllocator>(ledger_), low_threshold)
                  .status()
                  .message(),
              HasSubstr("large_threshold = 256"));
}

TEST_F(MemoryPoolTest, BuffersKeepThePoolAliveAndItsDestructorFreesTheCache) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  PooledBuffer outliving = *pool->Allocate(100, 0);
  { PooledBuffer cached = *pool->Allocate(5000, 0); }
  pool.reset();
  EXPECT_EQ(LiveBlocks(), 2u);  // The pool still exists: `outliving` holds it.
  outliving.Reset();
  EXPECT_EQ(LiveBlocks(), 0u);  // Last holder gone: the pool freed its whole cache.
}

TEST_F(MemoryPoolTest, MovedBuffersReturnTheirBlockOnce) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  PooledBuffer first = *pool->Allocate(100, 0);
  void* data = first.data();
  PooledBuffer second = std::move(first);
  EXPECT_EQ(first.data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the move.
  EXPECT_EQ(second.data(), data);
  first.Reset();  // Empty: returns nothing.
  EXPECT_EQ(pool->Stats().bytes_cached, 0u);
  second.Reset();
  EXPECT_EQ(pool->Stats().bytes_cached, 512u);
  EXPECT_EQ(pool->Stats().bytes_in_use, 0u);
}

TEST_F(MemoryPoolTest, ThreadsShareThePool) {
  std::shared_ptr<MemoryPool> pool = MakePool();
  constexpr int kThreads = 8;
  constexpr int kRounds = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&pool, t] {
      for (int round = 0; round < kRounds; ++round) {
        const size_t bytes = 256 * static_cast<size_t>(1 + (t + round) % 16);
        absl::StatusOr<PooledBuffer> buffer = pool->Allocate(bytes, t % 2);
        ASSERT_TRUE(buffer.ok()) << buffer.status();
        ASSERT_GE(buffer->capacity(), bytes);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const MemoryPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.allocations, uint64_t{kThreads * kRounds});
  EXPECT_EQ(stats.cache_hits + stats.cache_misses, stats.allocations);
  EXPECT_EQ(stats.bytes_in_use, 0u);
  EXPECT_EQ(stats.raw_allocations, stats.cache_misses);
  EXPECT_LT(stats.raw_allocations, stats.allocations);  // Reuse happened.
}

}  // namespace
}  // namespace troupe::gpu
