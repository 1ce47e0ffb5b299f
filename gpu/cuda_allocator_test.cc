// MemoryPool over the real cudaMalloc: reuse, release, and out-of-memory handling on a GPU.
#include "gpu/cuda_allocator.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/memory_pool.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

constexpr size_t kGiB = size_t{1} << 30;

class CudaAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
    absl::StatusOr<std::shared_ptr<MemoryPool>> pool = CreateCudaMemoryPool();
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *pool;
  }

  std::shared_ptr<MemoryPool> pool_;
};

TEST_F(CudaAllocatorTest, PooledMemoryHoldsDataAndIsReused) {
  const size_t count = 300000;  // 1.2 MB: a 2 MiB block.
  std::vector<float> in = testing::RandomFloats(count, 1);
  std::vector<float> out(count, 0);
  void* first = nullptr;
  {
    absl::StatusOr<PooledBuffer> block = pool_->Allocate(count * sizeof(float), 0);
    ASSERT_TRUE(block.ok()) << block.status();
    EXPECT_EQ(block->capacity(), size_t{2} << 20);
    first = block->data();
    ASSERT_TRUE(CopyToDevice(block->data(), in.data(), count * sizeof(float), 0).ok());
    ASSERT_TRUE(CopyToHost(out.data(), block->data(), count * sizeof(float), 0).ok());
    EXPECT_EQ(in, out);
  }
  absl::StatusOr<PooledBuffer> again = pool_->Allocate(count * sizeof(float) - 1000, 0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->data(), first);
  const MemoryPoolStats stats = pool_->Stats();
  EXPECT_EQ(stats.cache_hits, 1u);
  EXPECT_EQ(stats.raw_allocations, 1u);
}

TEST_F(CudaAllocatorTest, ReleaseReturnsCachedMemoryToCuda) {
  { PooledBuffer block = *pool_->Allocate(kGiB, 0); }
  const size_t free_with_cache = *(*Device::Get(0)).FreeMemoryBytes();
  ASSERT_TRUE(pool_->Release().ok());
  const size_t free_after_release = *(*Device::Get(0)).FreeMemoryBytes();
  EXPECT_GE(free_after_release, free_with_cache + kGiB / 2);  // cudaFree gave the GiB back.
  EXPECT_EQ(pool_->Stats().raw_frees, 1u);
}

TEST_F(CudaAllocatorTest, OutOfMemoryFreesTheCacheThenRetries) {
  // Cache a 1 GiB block, then fill the device until about 1.5 GiB is free: a 2 GiB block does
  // not fit next to the cache, and fits once the pool has given the cached GiB back.
  { PooledBuffer cached = *pool_->Allocate(kGiB, 0); }
  const size_t free_bytes = *(*Device::Get(0)).FreeMemoryBytes();
  ASSERT_GT(free_bytes, 3 * kGiB) << "the test needs a mostly free GPU";
  absl::StatusOr<DeviceBuffer> filler = DeviceBuffer::Allocate(free_bytes - 3 * kGiB / 2, 0);
  ASSERT_TRUE(filler.ok()) << filler.status();

  absl::StatusOr<PooledBuffer> big = pool_->Allocate(2 * kGiB, 0);
  ASSERT_TRUE(big.ok()) << big.status();
  const MemoryPoolStats stats = pool_->Stats();
  EXPECT_EQ(stats.raw_allocations, 3u);  // The GiB, then 2 GiB twice.
  EXPECT_EQ(stats.raw_frees, 1u);
  EXPECT_EQ(stats.bytes_cached, 0u);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // The failed attempt does not linger.
}

TEST_F(CudaAllocatorTest, ImpossibleRequestsNameSizeDeviceAndStatistics) {
  const size_t one_pebibyte = size_t{1} << 50;
  absl::StatusOr<PooledBuffer> too_big = pool_->Allocate(one_pebibyte, 0);
  ASSERT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), HasSubstr("cannot allocate 1125899906842624 bytes"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("on cuda:0"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("raw_allocations=2"));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(pool_->Allocate(1024, 0).ok());
}

TEST_F(CudaAllocatorTest, MissingDevicesAreClearErrors) {
  absl::StatusOr<PooledBuffer> missing = pool_->Allocate(1024, Device::Count());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist"));
}

}  // namespace
}  // namespace troupe::gpu
