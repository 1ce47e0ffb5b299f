// The NCCL unique id as a value (size checks, CAF serialization) and the rendezvous actor that
// hands it from rank 0 to the other ranks, all on the CPU: ids here are made by a fake
// generator, since no NCCL is needed to move 128 bytes around.
#include "gpu/nccl_rendezvous.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actors/ask.h"
#include "actors/runtime.h"
#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"
#include "gmock/gmock.h"
#include "gpu/nccl_id.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(10);

// FakeId has every byte value the wire must keep, '\0' included.
NcclUniqueId FakeId(char seed) {
  NcclUniqueId id;
  for (size_t i = 0; i < NcclUniqueId::kSize; ++i) id.bytes.push_back(static_cast<char>(seed + i));
  return id;
}

TEST(NcclUniqueIdTest, FromBytesChecksTheSize) {
  EXPECT_TRUE(NcclUniqueId::FromBytes(std::string(NcclUniqueId::kSize, '\0')).ok());
  absl::StatusOr<NcclUniqueId> short_id = NcclUniqueId::FromBytes("abc");
  EXPECT_EQ(short_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_id.status().message(), HasSubstr("has 3 bytes but NCCL's have exactly 128"));
  EXPECT_FALSE(NcclUniqueId{std::string(129, 'x')}.Validate().ok());
}

TEST(NcclUniqueIdTest, RoundTripsThroughCafSerialization) {
  const NcclUniqueId sent = FakeId(0);
  std::vector<char> wire;
  caf::execution_unit* no_context = nullptr;  // Plain data needs no actor system.
  caf::binary_serializer sink(no_context, wire);
  ASSERT_FALSE(sink(sent));
  NcclUniqueId received;
  caf::binary_deserializer source(no_context, wire);
  ASSERT_FALSE(source(received));
  EXPECT_EQ(received, sent);
}

class NcclRendezvousTest : public ::testing::Test {
 protected:
  void SetUp() override {
    actors::RuntimeOptions options;
    options.load_middleman = false;
    options.scheduler_threads = 2;
    absl::StatusOr<std::unique_ptr<actors::Runtime>> runtime = actors::Runtime::Create(options);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = *std::move(runtime);
  }

  caf::actor Spawn(int world_size) {
    absl::StatusOr<caf::actor> rendezvous = SpawnNcclRendezvous(system(), world_size);
    EXPECT_TRUE(rendezvous.ok()) << rendezvous.status();
    runtime_->Own(*rendezvous);
    return *rendezvous;
  }

  caf::actor_system& system() { return runtime_->system(); }

  std::unique_ptr<actors::Runtime> runtime_;
};

TEST_F(NcclRendezvousTest, RanksThatAskBeforeRankZeroPublishesGetTheId) {
  caf::actor rendezvous = Spawn(/*world_size=*/3);
  std::vector<absl::StatusOr<NcclUniqueId>> fetched(3, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int rank : {1, 2}) {
    ranks.emplace_back([&, rank] {
      fetched[rank] = ExchangeNcclUniqueId(system(), rendezvous, rank, nullptr, kTimeout);
    });
  }
  // Not a timing assertion: the pause only makes it likely that the fetches wait for the id.
  absl::SleepFor(absl::Milliseconds(50));
  absl::StatusOr<NcclUniqueId> made = ExchangeNcclUniqueId(
      system(), rendezvous, 0, [] { return absl::StatusOr<NcclUniqueId>(FakeId(7)); }, kTimeout);
  for (std::thread& rank : ranks) rank.join();

  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(*made, FakeId(7));
  for (int rank : {1, 2}) {
    ASSERT_TRUE(fetched[rank].ok()) << "rank " << rank << ": " << fetched[rank].status();
    EXPECT_EQ(*fetched[rank], FakeId(7)) << "rank " << rank;
  }
}

TEST_F(NcclRendezvousTest, RanksThatAskAfterThePublishGetItAtOnce) {
  caf::actor rendezvous = Spawn(2);
  ASSERT_TRUE(PublishNcclUniqueId(system(), rendezvous, FakeId(1), kTimeout).ok());
  absl::StatusOr<NcclUniqueId> id = FetchNcclUniqueId(system(), rendezvous, 1, kTimeout);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, FakeId(1));
  // Asking again (a retry) gets the same id.
  EXPECT_EQ(*FetchNcclUniqueId(system(), rendezvous, 1, kTimeout), FakeId(1));
}

TEST_F(NcclRendezvousTest, RepublishingTheSameIdIsHarmlessAnotherIdIsRefused) {
  caf::actor rendezvous = Spawn(2);
  ASSERT_TRUE(PublishNcclUniqueId(system(), rendezvous, FakeId(1), kTimeout).ok());
  EXPECT_TRUE(PublishNcclUniqueId(system(), rendezvous, FakeId(1), kTimeout).ok());
  absl::Status other = PublishNcclUniqueId(system(), rendezvous, FakeId(2), kTimeout);
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.message(), HasSubstr("already has a different unique id"));
  EXPECT_EQ(*FetchNcclUniqueId(system(), rendezvous, 1, kTimeout), FakeId(1));
}

TEST_F(NcclRendezvousTest, RanksOutsideOneToWorldSizeCannotFetch) {
  caf::actor rendezvous = Spawn(2);
  for (int rank : {0, 2, -1}) {
    absl::StatusOr<NcclUniqueId> id = FetchNcclUniqueId(system(), rendezvous, rank, kTimeout);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << rank;
    EXPECT_THAT(id.status().message(), HasSubstr("ranks 1..1 fetch it (world_size 2)")) << rank;
  }
}

TEST_F(NcclRendezvousTest, MalformedIdsAreRefusedOnBothSides) {
  caf::actor rendezvous = Spawn(2);
  absl::Status client_side =
      PublishNcclUniqueId(system(), rendezvous, NcclUniqueId{"short"}, kTimeout);
  EXPECT_EQ(client_side.code(), absl::StatusCode::kInvalidArgument);
  // A peer that skips the client-side check (or speaks the protocol by hand) is refused too.
  absl::Status actor_side = actors::AskDone(system(), rendezvous, kTimeout,
                                            nccl_publish_atom::value, std::string("short"));
  EXPECT_EQ(actor_side.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(actor_side.message(), HasSubstr("has 5 bytes"));
}

TEST_F(NcclRendezvousTest, AFetchWithoutAPublishTimesOut) {
  caf::actor rendezvous = Spawn(2);
  absl::StatusOr<NcclUniqueId> id =
      FetchNcclUniqueId(system(), rendezvous, 1, absl::Milliseconds(100));
  EXPECT_EQ(id.status().code(), absl::StatusCode::kDeadlineExceeded) << id.status();
  EXPECT_THAT(id.status().message(), HasSubstr("rank 1 could not fetch the NCCL unique id"));
}

TEST_F(NcclRendezvousTest, RankZeroNeedsAWorkingGenerator) {
  caf::actor rendezvous = Spawn(2);
  EXPECT_THAT(ExchangeNcclUniqueId(system(), rendezvous, 0, nullptr, kTimeout).status().message(),
              HasSubstr("rank 0 needs a generator"));
  const absl::Status broken = absl::InternalError("ncclGetUniqueId failed");
  EXPECT_EQ(
      ExchangeNcclUniqueId(
          system(), rendezvous, 0, [&] { return absl::StatusOr<NcclUniqueId>(broken); }, kTimeout)
          .status(),
      broken);
}

TEST_F(NcclRendezvousTest, WorldSizeMustBePositive) {
  absl::StatusOr<caf::actor> rendezvous = SpawnNcclRendezvous(system(), 0);
  EXPECT_EQ(rendezvous.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rendezvous.status().message(), HasSubstr("world_size = 0 must be at least 1"));
}

}  // namespace
}  // namespace troupe::gpu
