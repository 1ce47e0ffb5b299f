#include "actors/gpu_worker.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "actors/ask.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;

class GpuWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = StartTestRuntime(/*scheduler_threads=*/1);  // Easy to block on purpose.
  }

  caf::actor Spawn(GpuWorkerOptions options) {
    absl::StatusOr<caf::actor> worker = SpawnGpuWorker(runtime_->system(), std::move(options));
    EXPECT_TRUE(worker.ok()) << worker.status();
    runtime_->Own(*worker);
    return *worker;
  }

  caf::actor_system& system() { return runtime_->system(); }
  std::unique_ptr<Runtime> runtime_;
};

TEST_F(GpuWorkerTest, RunsItemsInOrderOnOneThreadOfItsOwn) {
  caf::actor worker = Spawn({"w0", -1, nullptr});
  std::mutex mutex;
  std::vector<int> order;
  std::set<std::thread::id> threads;
  caf::scoped_actor self{system()};
  constexpr int kItems = 50;
  for (int i = 0; i < kItems; ++i) {
    self->send(worker, WorkItem{"item", [&, i] {
                                  std::lock_guard<std::mutex> lock(mutex);
                                  order.push_back(i);
                                  threads.insert(std::this_thread::get_id());
                                  return absl::OkStatus();
                                }});
  }
  absl::StatusOr<WorkerStats> stats;
  for (int attempt = 0; attempt < 500; ++attempt) {
    stats = Ask<WorkerStats>(system(), worker, absl::Seconds(5), stats_atom::value);
    if (stats.ok() && stats->items_done == kItems) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->items_done, static_cast<uint64_t>(kItems));
  std::vector<int> expected(kItems);
  for (int i = 0; i < kItems; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
  EXPECT_EQ(stats->name, "w0");
  EXPECT_EQ(stats->device, "cpu");
}

TEST_F(GpuWorkerTest, KeepsWorkingWhileEverySchedulerThreadIsBlocked) {
  caf::actor worker = Spawn({"w0", -1, nullptr});
  // Occupy the only scheduler thread until the worker has run an item.
  auto release = std::make_shared<std::atomic<bool>>(false);
  caf::actor blocker = system().spawn([release]() -> caf::behavior {
    return {[release](hang_atom) {
      while (!release->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }};
  });
  runtime_->Own(blocker);
  caf::anon_send(blocker, hang_atom::value);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::atomic<bool> ran{false};
  caf::anon_send(worker, WorkItem{"x", [&] {
                                    ran = true;
                                    return absl::OkStatus();
                                  }});
  for (int i = 0; i < 500 && !ran.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(ran.load());
  *release = true;
}

TEST_F(GpuWorkerTest, ReportsBusyTimeAndFailures) {
  caf::actor worker = Spawn({"w1", -1, nullptr});
  ASSERT_TRUE(AskDone(system(), worker, absl::Seconds(5), WorkItem{"sleep", [] {
                        std::this_thread::sleep_for(std::chrono::milliseconds(30));
                        return absl::OkStatus();
                      }})
                  .ok());
  absl::Status failed = AskDone(system(), worker, absl::Seconds(5), WorkItem{"bad", [] {
                                  return absl::DataLossError("corrupt block 7");
                                }});
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(failed.message(), "corrupt block 7");
  absl::Status threw = AskDone(system(), worker, absl::Seconds(5), WorkItem{"throws", [] {
                                 throw std::runtime_error("oops");
                                 return absl::OkStatus();
                               }});
  EXPECT_EQ(threw.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(threw.message(), HasSubstr("work item \"throws\" threw: oops"));
  EXPECT_EQ(AskDone(system(), worker, absl::Seconds(5), WorkItem{"empty", nullptr}).code(),
            absl::StatusCode::kInvalidArgument);

  WorkerStats stats = *Ask<WorkerStats>(system(), worker, absl::Seconds(5), stats_atom::value);
  EXPECT_EQ(stats.items_done, 1u);
  EXPECT_EQ(stats.items_failed, 3u);
  EXPECT_GE(stats.busy_ns, 30'000'000);
  EXPECT_GE(stats.uptime_ns, stats.busy_ns);
  std::string metrics = runtime_->metrics().PrometheusText();
  EXPECT_THAT(metrics, HasSubstr("troupe_worker_items_total{node=\"n0\",worker=\"w1\","
                                 "device=\"cpu\",outcome=\"error\"} 3"));
  EXPECT_THAT(metrics, HasSubstr("troupe_worker_busy_nanoseconds_total{node=\"n0\",worker=\"w1\""));
  EXPECT_THAT(metrics, HasSubstr("troupe_actor_mailbox_depth{node=\"n0\",actor=\"w1\""));
}

TEST_F(GpuWorkerTest, BindsItsDeviceOnItsOwnThread) {
  std::atomic<int> bound_device{-100};
  std::thread::id bind_thread, work_thread;
  caf::actor worker = Spawn({"w2", 3, [&](int device) {
                               bound_device = device;
                               bind_thread = std::this_thread::get_id();
                               return absl::OkStatus();
                             }});
  ASSERT_TRUE(AskDone(system(), worker, absl::Seconds(5), WorkItem{"x", [&] {
                        work_thread = std::this_thread::get_id();
                        return absl::OkStatus();
                      }})
                  .ok());
  EXPECT_EQ(bound_device.load(), 3);
  EXPECT_EQ(bind_thread, work_thread);
  EXPECT_EQ(Ask<WorkerStats>(system(), worker, absl::Seconds(5), stats_atom::value)->device,
            "cuda:3");
}

TEST_F(GpuWorkerTest, BadDevicesAreClearErrors) {
  absl::StatusOr<caf::actor> no_cuda = SpawnGpuWorker(system(), {"w3", 0, nullptr});
  ASSERT_FALSE(no_cuda.ok());
  EXPECT_EQ(no_cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_cuda.status().message(), HasSubstr("use device = \"cpu\""));

  caf::actor broken = Spawn({"w4", 1, [](int) {
                               return absl::UnavailableError("no CUDA-capable device is detected");
                             }});
  absl::Status status = AskDone(system(), broken, absl::Seconds(5),
                                WorkItem{"x", [] { return absl::OkStatus(); }});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("worker \"w4\" cannot bind cuda:1: no CUDA-capable"));
}

}  // namespace
}  // namespace troupe::actors
