// Collectives on real GPUs: SumBuffers' sums and conversions, in-process groups of ranks that
// share GPU 0 (what tensor parallelism runs on a one-GPU host), an abort that frees a blocked
// rank, and with two GPUs the NCCL group and an in-process group over peer access. Values are
// small integers, exact in every element type, so results are compared exactly.
#include "gpu/collective.h"

#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gpu/collective_kernels.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using testing::DeviceArray;
using ::testing::HasSubstr;

constexpr DType kAllTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// Values of at most 60 in magnitude: sums of up to 4 ranks stay exact in bf16.
std::vector<float> RankValues(size_t count, int rank, int salt) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = float((i * 7 + salt) % 50) - 25 + rank * 3;
  return values;
}

std::vector<float> SumOverRanks(size_t count, int world, int salt) {
  std::vector<float> sum(count, 0.0f);
  for (int r = 0; r < world; ++r) {
    const std::vector<float> part = RankValues(count, r, salt);
    for (size_t i = 0; i < count; ++i) sum[i] += part[i];
  }
  return sum;
}

absl::Status CheckExactly(const absl::StatusOr<std::vector<float>>& got,
                          const std::vector<float>& want, const std::string& what) {
  if (!got.ok()) return got.status();
  if (got->size() != want.size()) {
    return absl::InternalError(absl::StrCat(what, ": ", got->size(), " elements, want ",
                                            want.size()));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if ((*got)[i] != want[i]) {
      return absl::InternalError(
          absl::StrCat(what, ": element ", i, " is ", (*got)[i], ", want ", want[i]));
    }
  }
  return absl::OkStatus();
}

#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    if (absl::Status status_ = (expr); !status_.ok()) return status_; \
  } while (0)

// RankRounds is one rank's part of RunGroup: rounds of all-reduces of every type and several
// sizes (one of them empty), in place, each checked against the sum over ranks.
absl::Status RankRounds(Collective& rank, int rounds) {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(rank.device());
  if (!scoped.ok()) return scoped.status();
  absl::StatusOr<Stream> stream = Stream::Create(rank.device());
  if (!stream.ok()) return stream.status();
  for (int round = 0; round < rounds; ++round) {
    for (DType dtype : kAllTypes) {
      for (size_t count : {size_t{4099}, size_t{0}, size_t{70001}}) {
        const int salt = round * 10 + static_cast<int>(count % 7);
        absl::StatusOr<DeviceArray> data =
            DeviceArray::FromHost(dtype, RankValues(count, rank.rank(), salt));
        if (!data.ok()) return data.status();
        RETURN_IF_ERROR(rank.AllReduceSum(data->data(), count, dtype, *stream));
        RETURN_IF_ERROR(stream->Synchronize());
        RETURN_IF_ERROR(CheckExactly(
            data->ToHost(), SumOverRanks(count, rank.world_size(), salt),
            absl::StrCat("rank ", rank.rank(), " round ", round, " ", DTypeName(dtype), " x ",
                         count)));
      }
    }
  }
  return absl::OkStatus();
}

// RunGroup runs RankRounds on every rank of `group`, one thread per rank.
void RunGroup(std::vector<std::unique_ptr<Collective>>& group, int rounds) {
  std::vector<absl::Status> results(group.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < group.size(); ++r) {
    threads.emplace_back([&, r] { results[r] = RankRounds(*group[r], rounds); });
  }
  for (std::thread& thread : threads) thread.join();
  for (size_t r = 0; r < group.size(); ++r) EXPECT_TRUE(results[r].ok()) << results[r];
}

class CollectiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/1);
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

TEST_F(CollectiveTest, SumBuffersSumsInOrderAndConverts) {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(0);
  ASSERT_TRUE(scoped.ok()) << scoped.status();
  Stream stream = *Stream::Create(0);
  // Three inputs of each type into each type: exact small integers.
  for (DType in : kAllTypes) {
    for (DType out : kAllTypes) {
      SCOPED_TRACE(absl::StrCat(DTypeName(in), " -> ", DTypeName(out)));
      std::vector<DeviceArray> parts;
      std::vector<const void*> pointers;
      for (int r = 0; r < 3; ++r) {
        parts.push_back(*DeviceArray::FromHost(in, RankValues(1001, r, 5)));
        pointers.push_back(parts.back().data());
      }
      DeviceArray sum = *DeviceArray::Poisoned(out, 1001);
      ASSERT_TRUE(SumBuffers(pointers.data(), 3, in, sum.data(), out, 1001, stream).ok());
      ASSERT_TRUE(stream.Synchronize().ok());
      absl::Status exact = CheckExactly(sum.ToHost(), SumOverRanks(1001, 3, 5), "sum");
      EXPECT_TRUE(exact.ok()) << exact;
    }
  }
  // One input: fp32 -> fp16/bf16 rounds to nearest even, as the host conversion does.
  const std::vector<float> values = testing::RandomFloats(513, /*seed=*/3, 10.0f);
  DeviceArray source = *DeviceArray::FromHost(DType::kFloat32, values);
  for (DType out : {DType::kFloat16, DType::kBFloat16}) {
    DeviceArray converted = *DeviceArray::Poisoned(out, values.size());
    const void* input = source.data();
    ASSERT_TRUE(SumBuffers(&input, 1, DType::kFloat32, converted.data(), out,
                           static_cast<int64_t>(values.size()), stream)
                    .ok());
    ASSERT_TRUE(stream.Synchronize().ok());
    absl::Status exact = CheckExactly(converted.ToHost(), testing::Quantized(out, values),
                                      absl::StrCat("fp32 -> ", DTypeName(out)));
    EXPECT_TRUE(exact.ok()) << exact;
  }
  // Bad arguments.
  const void* none[1] = {nullptr};
  DeviceArray out = *DeviceArray::Poisoned(DType::kFloat32, 4);
  EXPECT_THAT(SumBuffers(none, 1, DType::kFloat32, out.data(), DType::kFloat32, 4, stream)
                  .message(),
              HasSubstr("input 0 is null"));
  EXPECT_THAT(SumBuffers(none, 9, DType::kFloat32, out.data(), DType::kFloat32, 4, stream)
                  .message(),
              HasSubstr("num_inputs is 9"));
  const void* aliased[2] = {out.data(), out.data()};
  EXPECT_THAT(SumBuffers(aliased, 2, DType::kFloat32, out.data(), DType::kFloat32, 4, stream)
                  .message(),
              HasSubstr("is the output"));
}

TEST_F(CollectiveTest, InProcessRanksOnOneGpuSumExactly) {
  for (int world : {1, 2, 3}) {
    SCOPED_TRACE(absl::StrCat(world, " ranks on cuda:0"));
    absl::StatusOr<std::vector<std::unique_ptr<Collective>>> group =
        CreateCollectives(std::vector<int>(world, 0));
    ASSERT_TRUE(group.ok()) << group.status();
    for (const auto& rank : *group) EXPECT_STREQ(rank->kind(), "in-process");
    RunGroup(*group, /*rounds=*/3);
    DestroyCollectives(*std::move(group));
  }
}

TEST_F(CollectiveTest, AMismatchIsAnErrorOnEveryRankAndAnAbortFreesAWaitingRank) {
  absl::StatusOr<std::vector<std::unique_ptr<Collective>>> group = CreateCollectives({0, 0});
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<absl::Status> results(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_TRUE(ScopedDevice::Enter(0).ok());
      Stream stream = *Stream::Create(0);
      DeviceArray data = *DeviceArray::FromHost(DType::kFloat16, RankValues(64, r, 1));
      results[r] = (*group)[r]->AllReduceSum(data.data(), r == 0 ? 64 : 32, DType::kFloat16,
                                             stream);
      ASSERT_TRUE(stream.Synchronize().ok());
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& result : results) {
    EXPECT_THAT(result.message(), HasSubstr("every rank must make the same calls")) << result;
  }
  // Both ranks aborted the group: later calls fail at once.
  Stream stream = *Stream::Create(0);
  DeviceArray data = *DeviceArray::FromHost(DType::kFloat32, RankValues(8, 0, 1));
  EXPECT_EQ((*group)[0]->AllReduceSum(data.data(), 8, DType::kFloat32, stream).code(),
            absl::StatusCode::kFailedPrecondition);

  // A rank blocked at the barrier returns once another rank aborts.
  absl::StatusOr<std::vector<std::unique_ptr<Collective>>> fresh = CreateCollectives({0, 0});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  absl::Status blocked;
  std::thread waiter([&] {
    ASSERT_TRUE(ScopedDevice::Enter(0).ok());
    Stream own = *Stream::Create(0);
    DeviceArray mine = *DeviceArray::FromHost(DType::kFloat32, RankValues(8, 0, 1));
    blocked = (*fresh)[0]->AllReduceSum(mine.data(), 8, DType::kFloat32, own);
    ASSERT_TRUE(own.Synchronize().ok());
  });
  (*fresh)[1]->Abort("rank 1's step failed");
  waiter.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(blocked.message(), HasSubstr("rank 1's step failed"));
}

TEST_F(CollectiveTest, BadGroupsAreClearErrors) {
  EXPECT_THAT(CreateCollectives({0, 0}, CollectiveKind::kNccl).status().message(),
              HasSubstr("NCCL takes one rank per GPU"));
  EXPECT_EQ(CreateCollectives({0, Device::Count()}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(CreateCollectives({}).status().message(), HasSubstr("no devices"));
  EXPECT_THAT(CreateCollectives(std::vector<int>(9, 0)).status().message(),
              HasSubstr("at most 8 ranks"));
}

TEST_F(CollectiveTest, TwoGpusThroughNcclAndThroughPeerAccess) {
  if (Device::Count() < 2) {
    GTEST_SKIP() << "skipped: this host has " << Device::Count()
                 << " GPU(s); NCCL between ranks needs two";
  }
  absl::StatusOr<std::vector<std::unique_ptr<Collective>>> nccl = CreateCollectives({0, 1});
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  for (const auto& rank : *nccl) EXPECT_STREQ(rank->kind(), "nccl");
  RunGroup(*nccl, /*rounds=*/2);
  DestroyCollectives(*std::move(nccl));

  absl::StatusOr<std::vector<std::unique_ptr<Collective>>> peers =
      CreateCollectives({0, 1, 0, 1}, CollectiveKind::kInProcess);
  ASSERT_TRUE(peers.ok()) << peers.status();
  RunGroup(*peers, /*rounds=*/2);
  DestroyCollectives(*std::move(peers));
}

}  // namespace
}  // namespace troupe::gpu
