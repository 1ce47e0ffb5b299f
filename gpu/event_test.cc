// Events: recording, waiting on the host and across streams, timing, and their misuse.
#include "gpu/event.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

constexpr size_t kBytes = size_t{32} << 20;  // Enough copying that the events mark real work.

class EventTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

TEST_F(EventTest, TimesWorkBetweenTwoRecords) {
  Stream stream = *Stream::Create(0);
  DeviceBuffer device = *DeviceBuffer::Allocate(kBytes, 0);
  PinnedHostBuffer host = *PinnedHostBuffer::Allocate(kBytes);
  Event start = *Event::Create(0);
  Event stop = *Event::Create(0);

  ASSERT_TRUE(start.Record(stream).ok());
  ASSERT_TRUE(device.CopyFromHostAsync(host.data(), kBytes, stream).ok());
  ASSERT_TRUE(stop.Record(stream).ok());
  EXPECT_TRUE(start.recorded());

  absl::StatusOr<float> elapsed = Event::ElapsedMilliseconds(start, stop);
  ASSERT_TRUE(elapsed.ok()) << elapsed.status();
  EXPECT_TRUE(std::isfinite(*elapsed));
  EXPECT_GE(*elapsed, 0.0f);
  EXPECT_TRUE(*stop.IsDone());  // ElapsedMilliseconds waited for it.
}

TEST_F(EventTest, AnotherStreamWaitsForTheRecordedWork) {
  Stream producer = *Stream::Create(0);
  Stream consumer = *Stream::Create(0);
  DeviceBuffer device = *DeviceBuffer::Allocate(kBytes, 0);
  PinnedHostBuffer in = *PinnedHostBuffer::Allocate(kBytes);
  PinnedHostBuffer out = *PinnedHostBuffer::Allocate(kBytes);
  std::memset(in.data(), 0x5a, kBytes);
  std::memset(out.data(), 0, kBytes);
  Event written = *Event::Create(0, /*timing=*/false);

  ASSERT_TRUE(device.CopyFromHostAsync(in.data(), kBytes, producer).ok());
  ASSERT_TRUE(written.Record(producer).ok());
  ASSERT_TRUE(written.EnqueueWait(consumer).ok());
  ASSERT_TRUE(device.CopyToHostAsync(out.data(), kBytes, consumer).ok());
  ASSERT_TRUE(consumer.Synchronize().ok());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), kBytes), 0);
  ASSERT_TRUE(written.Synchronize().ok());
  EXPECT_TRUE(*written.IsDone());
}

TEST_F(EventTest, TimingNeedsTwoRecordedTimingEventsOfOneDevice) {
  Stream stream = *Stream::Create(0);
  Event start = *Event::Create(0);
  Event stop = *Event::Create(0);
  Event untimed = *Event::Create(0, /*timing=*/false);

  absl::StatusOr<float> unrecorded = Event::ElapsedMilliseconds(start, stop);
  EXPECT_EQ(unrecorded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(unrecorded.status().message(), HasSubstr("start event was never recorded"));

  ASSERT_TRUE(start.Record(stream).ok());
  ASSERT_TRUE(untimed.Record(stream).ok());
  absl::StatusOr<float> without_timing = Event::ElapsedMilliseconds(start, untimed);
  EXPECT_EQ(without_timing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(without_timing.status().message(), HasSubstr("end event was created without"));
}

TEST_F(EventTest, MisuseIsAClearError) {
  EXPECT_EQ(Event::Create(Device::Count()).status().code(), absl::StatusCode::kFailedPrecondition);

  Event event = *Event::Create(0);
  Stream stream = *Stream::Create(0);
  Stream moved_to = std::move(stream);
  absl::Status moved_stream = event.Record(stream);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved_stream.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(moved_stream.message(), HasSubstr("the Stream was moved from"));

  Event taken = std::move(event);
  absl::Status moved_event = event.Record(moved_to);  // NOLINT(bugprone-use-after-move)
  EXPECT_THAT(moved_event.message(), HasSubstr("the Event was moved from"));
  EXPECT_TRUE(taken.Record(moved_to).ok());

  if (Device::Count() >= 2) {
    Stream other = *Stream::Create(1);
    absl::Status wrong_device = taken.Record(other);
    EXPECT_EQ(wrong_device.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(wrong_device.message(), HasSubstr("the Stream is on cuda:1 but the work is on"));
  }
}

}  // namespace
}  // namespace troupe::gpu
