// NCCL communicators on real GPUs: one rank on one GPU, and two ranks on two GPUs driven by two
// threads that exchange the unique id through the actor rendezvous. Results are small integers,
// exact in every element type, so they are compared exactly.
#include "gpu/nccl.h"

#include <cuda_runtime.h>
#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actors/runtime.h"
#include "gmock/gmock.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/nccl_id.h"
#include "gpu/nccl_rendezvous.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using testing::DeviceArray;
using ::testing::HasSubstr;

constexpr DType kAllTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// Values are at most 127 in magnitude and sums of two stay below 256: exact in bf16 too.
std::vector<float> RankValues(size_t count, int rank, int salt) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = float((i * 7 + salt) % 50 + rank * 10);
  return values;
}

absl::Status CheckExactly(const absl::StatusOr<std::vector<float>>& got,
                          const std::vector<float>& want, const std::string& what) {
  if (!got.ok()) return got.status();
  if (got->size() != want.size()) {
    return absl::InternalError(
        absl::StrCat(what, ": ", got->size(), " elements, want ", want.size()));
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

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // NVLink multicast stays off, whatever the environment of the test says.
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/1);
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

// --- One rank ------------------------------------------------------------------------------------

class SingleRankTest : public NcclTest {
 protected:
  void SetUp() override {
    NcclTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    absl::StatusOr<NcclUniqueId> id = GenerateNcclUniqueId();
    ASSERT_TRUE(id.ok()) << id.status();
    id_ = *id;
    absl::StatusOr<Communicator> comm = Communicator::Create(id_, 0, 1, 0);
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = std::make_unique<Communicator>(*std::move(comm));
    stream_ = std::make_unique<Stream>(*Stream::Create(0));
  }

  NcclUniqueId id_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Stream> stream_;
};

TEST_F(SingleRankTest, CollectivesOfOneRankCopyTheInput) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->world_size(), 1);
  EXPECT_EQ(comm_->device(), 0);
  for (DType dtype : kAllTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    const std::vector<float> values = RankValues(1027, 0, 1);
    DeviceArray send = *DeviceArray::FromHost(dtype, values);
    DeviceArray reduced = *DeviceArray::Poisoned(dtype, values.size());
    DeviceArray gathered = *DeviceArray::Poisoned(dtype, values.size());
    ASSERT_TRUE(
        comm_->AllReduceSum(send.data(), reduced.data(), values.size(), dtype, *stream_).ok());
    ASSERT_TRUE(
        comm_->AllGather(send.data(), gathered.data(), values.size(), dtype, *stream_).ok());
    ASSERT_TRUE(stream_->Synchronize().ok());
    EXPECT_TRUE(CheckExactly(reduced.ToHost(), values, "all-reduce").ok());
    EXPECT_TRUE(CheckExactly(gathered.ToHost(), values, "all-gather").ok());
  }
}

TEST_F(SingleRankTest, AGroupedSendAndReceiveToItselfArrive) {
  const std::vector<float> values = RankValues(999, 0, 2);
  DeviceArray send = *DeviceArray::FromHost(DType::kBFloat16, values);
  DeviceArray recv = *DeviceArray::Poisoned(DType::kBFloat16, values.size());
  {
    absl::StatusOr<NcclGroup> group = NcclGroup::Start();
    ASSERT_TRUE(group.ok()) << group.status();
    ASSERT_TRUE(comm_->Send(send.data(), values.size(), DType::kBFloat16, 0, *stream_).ok());
    ASSERT_TRUE(comm_->Recv(recv.data(), values.size(), DType::kBFloat16, 0, *stream_).ok());
    absl::Status ended = group->End();
    ASSERT_TRUE(ended.ok()) << ended;
    EXPECT_EQ(group->End().code(), absl::StatusCode::kFailedPrecondition);  // Only once.
  }
  ASSERT_TRUE(stream_->Synchronize().ok());
  absl::Status exact = CheckExactly(recv.ToHost(), values, "send/recv");
  EXPECT_TRUE(exact.ok()) << exact;
}

TEST_F(SingleRankTest, BadCallsAreClearErrors) {
  DeviceArray buffer = *DeviceArray::Poisoned(DType::kFloat32, 16);
  absl::Status peer = comm_->Send(buffer.data(), 16, DType::kFloat32, 1, *stream_);
  EXPECT_EQ(peer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(peer.message(), HasSubstr("peer 1 is outside 0..0 (world_size 1)"));

  absl::Status null = comm_->AllReduceSum(nullptr, buffer.data(), 16, DType::kFloat32, *stream_);
  EXPECT_EQ(null.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(null.message(), HasSubstr("a buffer is null but 16 elements"));

  Stream moved_from = *Stream::Create(0);
  Stream moved_to = std::move(moved_from);
  absl::Status moved = comm_->AllGather(buffer.data(), buffer.data(), 16, DType::kFloat32,
                                        moved_from);  // NOLINT(bugprone-use-after-move)
  EXPECT_THAT(moved.message(), HasSubstr("the Stream was moved from"));

  if (Device::Count() >= 2) {
    Stream other = *Stream::Create(1);
    absl::Status wrong = comm_->Recv(buffer.data(), 16, DType::kFloat32, 0, other);
    EXPECT_THAT(wrong.message(), HasSubstr("the Stream is on cuda:1 but the work is on cuda:0"));
  }

  Communicator taken = std::move(*comm_);
  absl::Status gone = comm_->Send(buffer.data(), 16, DType::kFloat32, 0, *stream_);  // NOLINT
  EXPECT_THAT(gone.message(), HasSubstr("the Communicator was moved from"));
}

TEST_F(NcclTest, BadCreationArgumentsAreClearErrors) {
  const NcclUniqueId id = *GenerateNcclUniqueId();
  EXPECT_THAT(Communicator::Create(NcclUniqueId{"abc"}, 0, 1, 0).status().message(),
              HasSubstr("has 3 bytes but NCCL's have exactly 128"));
  EXPECT_THAT(Communicator::Create(id, 1, 1, 0).status().message(),
              HasSubstr("rank 1 is outside 0..0"));
  EXPECT_THAT(Communicator::Create(id, 0, 0, 0).status().message(),
              HasSubstr("world_size = 0 must be at least 1"));
  EXPECT_EQ(Communicator::Create(id, 0, 1, Device::Count()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(NcclTest, NvlinkMulticastIsRefused) {
  const NcclUniqueId id = *GenerateNcclUniqueId();
  setenv("NCCL_NVLS_ENABLE", "1", /*overwrite=*/1);
  absl::StatusOr<Communicator> comm = Communicator::Create(id, 0, 1, 0);
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/1);  // Before anything else can read it.
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(comm.status().message(), HasSubstr("NCCL_NVLS_ENABLE=1"));
}

// --- Two ranks -----------------------------------------------------------------------------------

constexpr int kWorldSize = 2;

absl::Status CheckAllReduce(Communicator& comm, const Stream& stream) {
  for (DType dtype : kAllTypes) {
    const size_t count = dtype == DType::kFloat32 ? 1000003 : 4099;
    DeviceArray send = *DeviceArray::FromHost(dtype, RankValues(count, comm.rank(), 3));
    DeviceArray recv = *DeviceArray::Poisoned(dtype, count);
    RETURN_IF_ERROR(comm.AllReduceSum(send.data(), recv.data(), count, dtype, stream));
    RETURN_IF_ERROR(stream.Synchronize());
    std::vector<float> want = RankValues(count, 0, 3);
    const std::vector<float> other = RankValues(count, 1, 3);
    for (size_t i = 0; i < count; ++i) want[i] += other[i];
    RETURN_IF_ERROR(
        CheckExactly(recv.ToHost(), want, absl::StrCat("all-reduce ", DTypeName(dtype))));
  }
  // In place: the input buffer is the output.
  DeviceArray data = *DeviceArray::FromHost(DType::kFloat32, RankValues(77, comm.rank(), 4));
  RETURN_IF_ERROR(comm.AllReduceSum(data.data(), data.data(), 77, DType::kFloat32, stream));
  RETURN_IF_ERROR(stream.Synchronize());
  std::vector<float> want = RankValues(77, 0, 4);
  for (size_t i = 0; i < want.size(); ++i) want[i] += RankValues(77, 1, 4)[i];
  return CheckExactly(data.ToHost(), want, "in-place all-reduce");
}

absl::Status CheckAllGather(Communicator& comm, const Stream& stream) {
  for (DType dtype : kAllTypes) {
    const size_t count = 1001;
    DeviceArray send = *DeviceArray::FromHost(dtype, RankValues(count, comm.rank(), 5));
    DeviceArray recv = *DeviceArray::Poisoned(dtype, count * kWorldSize);
    RETURN_IF_ERROR(comm.AllGather(send.data(), recv.data(), count, dtype, stream));
    RETURN_IF_ERROR(stream.Synchronize());
    std::vector<float> want = RankValues(count, 0, 5);
    const std::vector<float> second = RankValues(count, 1, 5);
    want.insert(want.end(), second.begin(), second.end());
    RETURN_IF_ERROR(
        CheckExactly(recv.ToHost(), want, absl::StrCat("all-gather ", DTypeName(dtype))));
  }
  return absl::OkStatus();
}

absl::Status CheckSendRecv(Communicator& comm, const Stream& stream) {
  const int peer = 1 - comm.rank();
  const size_t count = 65537;
  DeviceArray send = *DeviceArray::FromHost(DType::kFloat16, RankValues(count, comm.rank(), 6));
  DeviceArray recv = *DeviceArray::Poisoned(DType::kFloat16, count);
  // Both ranks send first and receive second: only a group lets both run at once.
  absl::StatusOr<NcclGroup> group = NcclGroup::Start();
  if (!group.ok()) return group.status();
  RETURN_IF_ERROR(comm.Send(send.data(), count, DType::kFloat16, peer, stream));
  RETURN_IF_ERROR(comm.Recv(recv.data(), count, DType::kFloat16, peer, stream));
  RETURN_IF_ERROR(group->End());
  RETURN_IF_ERROR(stream.Synchronize());
  return CheckExactly(recv.ToHost(), RankValues(count, peer, 6), "send/recv");
}

// RunRank is one rank's thread: device `rank`, the id from the rendezvous, then every check.
absl::Status RunRank(caf::actor_system& system, const caf::actor& rendezvous, int rank) {
  if (cudaError_t code = cudaSetDevice(rank); code != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("cudaSetDevice(", rank, "): ", cudaGetErrorString(code)));
  }
  absl::StatusOr<NcclUniqueId> id =
      ExchangeNcclUniqueId(system, rendezvous, rank, GenerateNcclUniqueId, absl::Seconds(60));
  if (!id.ok()) return id.status();
  absl::StatusOr<Communicator> comm = Communicator::Create(*id, rank, kWorldSize, rank);
  if (!comm.ok()) return comm.status();
  absl::StatusOr<Stream> stream = Stream::Create(rank);
  if (!stream.ok()) return stream.status();
  RETURN_IF_ERROR(CheckAllReduce(*comm, *stream));
  RETURN_IF_ERROR(CheckAllGather(*comm, *stream));
  return CheckSendRecv(*comm, *stream);
}

TEST_F(NcclTest, TwoRanksOnTwoGpusReduceGatherAndExchange) {
  if (Device::Count() < kWorldSize) {
    GTEST_SKIP() << "skipped: needs " << kWorldSize << " GPUs, this process sees "
                 << Device::Count();
  }
  actors::RuntimeOptions options;
  options.load_middleman = false;
  options.scheduler_threads = 2;
  std::unique_ptr<actors::Runtime> runtime = *actors::Runtime::Create(options);
  caf::actor rendezvous = *SpawnNcclRendezvous(runtime->system(), kWorldSize);
  runtime->Own(rendezvous);

  std::vector<absl::Status> results(kWorldSize, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < kWorldSize; ++rank) {
    ranks.emplace_back([&, rank] { results[rank] = RunRank(runtime->system(), rendezvous, rank); });
  }
  for (std::thread& rank : ranks) rank.join();
  for (int rank = 0; rank < kWorldSize; ++rank) {
    EXPECT_TRUE(results[rank].ok()) << "rank " << rank << ": " << results[rank];
  }
}

}  // namespace
}  // namespace troupe::gpu
