// Device and pinned host buffers: copies both ways, sync and async, moves, and bad inputs.
#include "gpu/buffer.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gpu/device.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

class BufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::vector<int32_t> ints = testing::RandomInts(n, seed, 0, 255);
  return std::vector<uint8_t>(ints.begin(), ints.end());
}

TEST_F(BufferTest, SyncCopiesRoundTrip) {
  const size_t bytes = (size_t{1} << 20) + 3;  // Odd on purpose.
  DeviceBuffer buffer = *DeviceBuffer::Allocate(bytes, 0);
  EXPECT_NE(buffer.data(), nullptr);
  EXPECT_EQ(buffer.bytes(), bytes);
  EXPECT_EQ(buffer.device(), 0);
  const std::vector<uint8_t> in = RandomBytes(bytes, 1);
  std::vector<uint8_t> out(bytes, 0);
  ASSERT_TRUE(buffer.CopyFromHost(in.data(), bytes).ok());
  ASSERT_TRUE(buffer.CopyToHost(out.data(), bytes).ok());
  EXPECT_EQ(in, out);
}

TEST_F(BufferTest, AsyncCopiesThroughPinnedMemoryRoundTrip) {
  const size_t bytes = size_t{8} << 20;
  Stream stream = *Stream::Create(0);
  DeviceBuffer buffer = *DeviceBuffer::Allocate(bytes, 0);
  PinnedHostBuffer in = *PinnedHostBuffer::Allocate(bytes);
  PinnedHostBuffer out = *PinnedHostBuffer::Allocate(bytes);
  EXPECT_EQ(in.bytes(), bytes);
  const std::vector<uint8_t> data = RandomBytes(bytes, 2);
  std::memcpy(in.data(), data.data(), bytes);
  std::memset(out.data(), 0, bytes);
  ASSERT_TRUE(buffer.CopyFromHostAsync(in.data(), bytes, stream).ok());
  ASSERT_TRUE(buffer.CopyToHostAsync(out.data(), bytes, stream).ok());
  ASSERT_TRUE(stream.Synchronize().ok());
  EXPECT_EQ(std::memcmp(out.data(), data.data(), bytes), 0);
}

TEST_F(BufferTest, PartialCopiesTouchOnlyThePrefix) {
  DeviceBuffer buffer = *DeviceBuffer::Allocate(1024, 0);
  const std::vector<uint8_t> ones(1024, 1);
  const std::vector<uint8_t> twos(100, 2);
  ASSERT_TRUE(buffer.CopyFromHost(ones.data(), 1024).ok());
  ASSERT_TRUE(buffer.CopyFromHost(twos.data(), 100).ok());
  std::vector<uint8_t> out(1024, 0);
  ASSERT_TRUE(buffer.CopyToHost(out.data(), 1024).ok());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], i < 100 ? 2 : 1) << i;
}

TEST_F(BufferTest, FreeCopyFunctionsWorkOnAnyDevicePointer) {
  DeviceBuffer buffer = *DeviceBuffer::Allocate(4096, 0);
  const std::vector<uint8_t> in = RandomBytes(4096, 3);
  std::vector<uint8_t> out(4096, 0);
  ASSERT_TRUE(CopyToDevice(buffer.data(), in.data(), in.size(), 0).ok());
  Stream stream = *Stream::Create(0);
  ASSERT_TRUE(CopyToHostAsync(out.data(), buffer.data(), out.size(), stream).ok());
  ASSERT_TRUE(stream.Synchronize().ok());
  EXPECT_EQ(in, out);
}

TEST_F(BufferTest, EmptyBuffersAndMoves) {
  DeviceBuffer empty = *DeviceBuffer::Allocate(0, 0);
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_TRUE(empty.CopyFromHost(nullptr, 0).ok());
  PinnedHostBuffer empty_pinned = *PinnedHostBuffer::Allocate(0);
  EXPECT_EQ(empty_pinned.data(), nullptr);

  DeviceBuffer first = *DeviceBuffer::Allocate(256, 0);
  void* data = first.data();
  DeviceBuffer second = std::move(first);
  EXPECT_EQ(first.data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the move.
  EXPECT_EQ(first.bytes(), 0u);
  EXPECT_EQ(second.data(), data);
  second = *DeviceBuffer::Allocate(512, 0);  // Frees the 256 bytes.
  EXPECT_EQ(second.bytes(), 512u);
}

TEST_F(BufferTest, BadCopiesAreClearErrors) {
  DeviceBuffer buffer = *DeviceBuffer::Allocate(1024, 0);
  std::vector<uint8_t> host(2048);
  absl::Status too_many = buffer.CopyFromHost(host.data(), 2048);
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.message(),
              HasSubstr("2048 bytes do not fit the 1024-byte buffer on cuda:0"));

  absl::Status null_host = buffer.CopyToHost(nullptr, 16);
  EXPECT_EQ(null_host.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(null_host.message(), HasSubstr("the destination is null but 16 bytes"));

  Stream stream = *Stream::Create(0);
  Stream moved_to = std::move(stream);
  absl::Status moved = buffer.CopyFromHostAsync(host.data(), 16, stream);  // NOLINT
  EXPECT_THAT(moved.message(), HasSubstr("the Stream was moved from"));

  if (Device::Count() >= 2) {
    Stream other = *Stream::Create(1);
    absl::Status wrong_device = buffer.CopyToHostAsync(host.data(), 16, other);
    EXPECT_EQ(wrong_device.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(wrong_device.message(), HasSubstr("use a Stream created on cuda:0"));
  }
}

TEST_F(BufferTest, BadAllocationsAreClearErrorsThatDoNotLinger) {
  absl::StatusOr<DeviceBuffer> missing = DeviceBuffer::Allocate(16, Device::Count());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);

  const size_t one_pebibyte = size_t{1} << 50;
  absl::StatusOr<DeviceBuffer> too_big = DeviceBuffer::Allocate(one_pebibyte, 0);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), HasSubstr("allocating 1125899906842624 bytes"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("on cuda:0"));
  // The failed cudaMalloc must not be reported again by the next error check.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(DeviceBuffer::Allocate(1024, 0).ok());
}

}  // namespace
}  // namespace troupe::gpu
