#include "federation/robust/parameter_server_actor.h"

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/ask.h"
#include "caf/all.hpp"
#include "federation/attacks/attack.h"
#include "federation/robust/worker_actor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::federation::robust {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kAskTimeout = absl::Seconds(30);

// The honest workers' loss is 0.5 ||w - c_i||^2 with c_i = c* + offset_i (offsets summing to
// zero, so c* is the optimum of their average); the attacker's own data has c = c*.
const std::vector<float> kOptimum = {1.0f, -2.0f, 3.0f};
const std::vector<std::vector<float>> kOffsets = {{0.05f, -0.05f, 0.02f},
                                                  {-0.05f, 0.05f, -0.02f},
                                                  {0.03f, 0.01f, -0.04f},
                                                  {-0.03f, -0.01f, 0.04f},
                                                  {0.0f, 0.0f, 0.0f}};

GradientSource Quadratic(const std::vector<float>& offset) {
  return [offset](int64_t, const std::vector<float>& w) -> absl::StatusOr<std::vector<float>> {
    std::vector<float> gradient(w.size());
    for (size_t k = 0; k < w.size(); ++k) gradient[k] = w[k] - (kOptimum[k] + offset[k]);
    return gradient;
  };
}

double DistanceToOptimum(const std::vector<float>& w) {
  double sum = 0;
  for (size_t k = 0; k < w.size(); ++k) sum += std::pow(w[k] - kOptimum[k], 2);
  return std::sqrt(sum);
}

class ParameterServerActorTest : public ::testing::Test {
 protected:
  ParameterServerActorTest() : system_(config_) {}

  caf::actor Spawn(const ParameterServerOptions& options) {
    absl::StatusOr<caf::actor> server = SpawnParameterServer(system_, options);
    EXPECT_TRUE(server.ok()) << server.status();
    spawned_.push_back(server.value_or(caf::actor{}));
    return spawned_.back();
  }

  ~ParameterServerActorTest() override {
    for (caf::actor& actor : spawned_) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }

  absl::StatusOr<ParameterSnapshot> Submit(caf::actor server, GradientSubmission submission) {
    return actors::Ask<ParameterSnapshot>(system_, server, kAskTimeout, std::move(submission));
  }

  // SubmitConcurrently sends each submission from its own thread (each reply waits for the
  // round to close) and returns the replies in order.
  std::vector<absl::StatusOr<ParameterSnapshot>> SubmitConcurrently(
      caf::actor server, std::vector<GradientSubmission> submissions) {
    std::vector<absl::StatusOr<ParameterSnapshot>> replies(submissions.size(),
                                                           absl::InternalError("no reply"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < submissions.size(); ++i) {
      threads.emplace_back([&, i] { replies[i] = Submit(server, submissions[i]); });
    }
    for (std::thread& thread : threads) thread.join();
    return replies;
  }

  ParameterSnapshot Parameters(caf::actor server) {
    absl::StatusOr<ParameterSnapshot> snapshot =
        actors::Ask<ParameterSnapshot>(system_, server, kAskTimeout, GetParameters{});
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.value_or(ParameterSnapshot{});
  }

  // Train runs n = 5 quadratic workers, the last a sign-flip attacker, for `steps` steps under
  // `aggregator` and returns the final distance to the optimum.
  double Train(const std::string& aggregator, int steps) {
    ParameterServerOptions options;
    options.workers = {"w0", "w1", "w2", "w3", "w4"};
    options.initial_parameters = {0.0f, 0.0f, 0.0f};
    options.aggregator = aggregator;
    options.sgd = {0.1, 0.5, 0.0};
    caf::actor server = Spawn(options);
    std::vector<caf::actor> workers;
    for (size_t i = 0; i < options.workers.size(); ++i) {
      WorkerOptions worker;
      worker.id = options.workers[i];
      worker.gradient = Quadratic(kOffsets[i]);
      if (i == 4) worker.attack = *attacks::MakeAttack("sign_flip", {});  // sends -10 g
      workers.push_back(SpawnWorker(system_, server, std::move(worker)));
      spawned_.push_back(workers.back());
    }
    std::vector<absl::StatusOr<WorkerReport>> reports(workers.size(),
                                                      absl::InternalError("no reply"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < workers.size(); ++i) {
      threads.emplace_back([&, i] {
        reports[i] = actors::Ask<WorkerReport>(system_, workers[i], kAskTimeout, RunWorker{steps});
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (const absl::StatusOr<WorkerReport>& report : reports) {
      EXPECT_TRUE(report.ok()) << report.status();
      if (!report.ok()) continue;
      EXPECT_EQ(report->accepted, steps) << report->id;
      EXPECT_THAT(report->errors, ::testing::IsEmpty()) << report->id;
    }
    ParameterSnapshot final_model = Parameters(server);
    EXPECT_EQ(final_model.step, steps);
    return DistanceToOptimum(final_model.parameters);
  }

  caf::actor_system_config config_;
  caf::actor_system system_;
  std::vector<caf::actor> spawned_;
};

TEST_F(ParameterServerActorTest, MedianConvergesUnderASignFlipAttackerAndMeanDoesNot) {
  const double start = DistanceToOptimum({0.0f, 0.0f, 0.0f});  // 3.74
  // Median: the honest offsets are at most 0.05 per coordinate, so it settles within ~0.09.
  EXPECT_LT(Train("median", 60), 0.2);
  // Mean: (4 g - 10 g) / 5 = -1.2 g, gradient ascent; the distance grows.
  EXPECT_GT(Train("mean", 60), 10 * start);
}

TEST_F(ParameterServerActorTest, RepliesWithTheRejectionReasonAtOnce) {
  ParameterServerOptions options;
  options.workers = {"w0", "w1"};
  options.initial_parameters = {0.0f, 0.0f};
  options.aggregator = "mean";
  options.sgd = {1.0, 0.0, 0.0};
  caf::actor server = Spawn(options);
  // w1's NaN is rejected at once; that answers the last worker, so the round closes with w0.
  std::vector<absl::StatusOr<ParameterSnapshot>> replies =
      SubmitConcurrently(server, {{"w0", 0, {1.0f, 2.0f}}, {"w1", 0, {std::nanf(""), 0.0f}}});
  ASSERT_TRUE(replies[0].ok()) << replies[0].status();
  EXPECT_EQ(replies[0]->step, 1);
  EXPECT_THAT(replies[0]->parameters, ElementsAre(-1.0f, -2.0f));
  EXPECT_EQ(replies[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(replies[1].status().message(), HasSubstr("coordinate 0 is NaN"));
  absl::StatusOr<ParameterSnapshot> wrong = Submit(server, {"w0", 1, {1.0f}});
  EXPECT_THAT(wrong.status().message(), HasSubstr("1 entries, expected 2"));
  absl::StatusOr<ParameterSnapshot> stale = Submit(server, {"w1", 0, {1.0f, 1.0f}});
  EXPECT_THAT(stale.status().message(), HasSubstr("stale_step"));
  absl::StatusOr<ParameterSnapshot> unknown = Submit(server, {"w5", 1, {1.0f, 1.0f}});
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown_worker"));
  EXPECT_THAT(Parameters(server).parameters, ElementsAre(-1.0f, -2.0f));
}

TEST_F(ParameterServerActorTest, WatchdogClosesOnQuorumWhenAWorkerNeverSubmits) {
  ParameterServerOptions options;
  options.workers = {"w0", "w1", "w2", "w3", "w4"};
  options.initial_parameters = {0.0f, 0.0f};
  options.aggregator = "median";
  options.sgd = {1.0, 0.0, 0.0};
  options.quorum = 4;
  // Long enough that the four submissions all arrive before the watchdog, even on a loaded
  // machine: the test asserts what the watchdog decides, not when.
  options.round_timeout = absl::Seconds(2);
  caf::actor server = Spawn(options);
  std::vector<GradientSubmission> submissions;
  for (const char* worker : {"w0", "w1", "w2", "w3"}) submissions.push_back({worker, 0, {1, 2}});
  std::vector<absl::StatusOr<ParameterSnapshot>> replies =
      SubmitConcurrently(server, submissions);  // w4 never submits
  for (const absl::StatusOr<ParameterSnapshot>& reply : replies) {
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->step, 1);
    EXPECT_THAT(reply->parameters, ElementsAre(-1.0f, -2.0f));
  }
  // w4's late gradient is for a closed step.
  EXPECT_THAT(Submit(server, {"w4", 0, {1, 2}}).status().message(), HasSubstr("stale"));
}

TEST_F(ParameterServerActorTest, WatchdogFailsARoundBelowQuorumNamingTheMissingWorker) {
  ParameterServerOptions options;
  options.workers = {"w0", "w1", "w2"};
  options.initial_parameters = {0.0f, 0.0f};
  options.aggregator = "mean";
  options.sgd = {1.0, 0.0, 0.0};
  options.quorum = 0;  // all three
  options.round_timeout = absl::Seconds(2);
  caf::actor server = Spawn(options);
  std::vector<absl::StatusOr<ParameterSnapshot>> replies =
      SubmitConcurrently(server, {{"w0", 0, {1, 2}}, {"w1", 0, {1, 2}}});
  for (const absl::StatusOr<ParameterSnapshot>& reply : replies) {
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(reply.status().message(), HasSubstr("missing workers: w2"));
    EXPECT_THAT(reply.status().message(), HasSubstr("below the quorum 3"));
    EXPECT_THAT(reply.status().message(), Not(HasSubstr("w0,")));
  }
  ParameterSnapshot unchanged = Parameters(server);
  EXPECT_EQ(unchanged.step, 0);
  EXPECT_THAT(unchanged.parameters, ElementsAre(0.0f, 0.0f));
  // A fresh round for the same step opened: with all three it closes.
  replies = SubmitConcurrently(server, {{"w0", 0, {1, 2}}, {"w1", 0, {1, 2}}, {"w2", 0, {1, 2}}});
  for (const absl::StatusOr<ParameterSnapshot>& reply : replies) {
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->step, 1);
  }
}

TEST_F(ParameterServerActorTest, AnOmniscientAttackWithoutHonestGradientsIsAWorkerError) {
  ParameterServerOptions options;
  options.workers = {"w0"};
  options.initial_parameters = {0.0f};
  options.round_timeout = absl::Milliseconds(200);
  caf::actor server = Spawn(options);
  WorkerOptions worker;
  worker.id = "w0";
  worker.gradient = [](int64_t, const std::vector<float>&) {
    return absl::StatusOr<std::vector<float>>(std::vector<float>{1.0f});
  };
  worker.attack = *attacks::MakeAttack("ipm", {});
  caf::actor actor = SpawnWorker(system_, server, std::move(worker));
  spawned_.push_back(actor);
  absl::StatusOr<WorkerReport> report =
      actors::Ask<WorkerReport>(system_, actor, kAskTimeout, RunWorker{1});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->submitted, 0);
  ASSERT_EQ(report->errors.size(), 1u);
  EXPECT_THAT(report->errors[0], HasSubstr("honest_gradients"));
  EXPECT_EQ(Parameters(server).step, 0);
}

}  // namespace
}  // namespace troupe::federation::robust
