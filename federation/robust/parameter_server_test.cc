#include "federation/robust/parameter_server.h"

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::federation::robust {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

ParameterServerOptions Options(const std::string& aggregator) {
  ParameterServerOptions options;
  options.workers = {"w0", "w1", "w2"};
  options.initial_parameters = {1.0f, -1.0f};
  options.aggregator = aggregator;
  options.sgd.learning_rate = 0.5;
  options.sgd.momentum = 0.5;
  options.sgd.weight_decay = 0.1;
  return options;
}

ParameterServer MakeServer(const ParameterServerOptions& options) {
  absl::StatusOr<ParameterServer> server = ParameterServer::Create(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return *std::move(server);
}

Rejection MustReject(ParameterServer& server, GradientSubmission submission) {
  std::optional<Rejection> rejection = server.Submit(std::move(submission));
  EXPECT_TRUE(rejection.has_value());
  return rejection.value_or(Rejection{});
}

TEST(ParameterServerRoundTest, AcceptsAValidSubmission) {
  ParameterServer server = MakeServer(Options("mean"));
  EXPECT_EQ(server.Submit({"w0", 0, {1.0f, 2.0f}}), std::nullopt);
  EXPECT_EQ(server.round().NumValid(), 1);
  EXPECT_FALSE(server.round().Complete());
  EXPECT_THAT(server.round().Silent(), ElementsAre("w1", "w2"));
  EXPECT_TRUE(server.rejections().empty());
}

TEST(ParameterServerRoundTest, RejectsEveryBadSubmissionWithItsReason) {
  ParameterServer server = MakeServer(Options("mean"));
  Rejection nan = MustReject(server, {"w0", 0, {0.0f, kNaN}});
  EXPECT_EQ(nan.reason, RejectionReason::kNonFinite);
  EXPECT_EQ(nan.worker, "w0");
  EXPECT_THAT(nan.message, HasSubstr("coordinate 1 is NaN"));
  Rejection inf = MustReject(server, {"w1", 0, {-kInf, 0.0f}});
  EXPECT_EQ(inf.reason, RejectionReason::kNonFinite);
  EXPECT_THAT(inf.message, HasSubstr("coordinate 0 is -Inf"));
  Rejection dimension = MustReject(server, {"w2", 0, {1.0f, 2.0f, 3.0f}});
  EXPECT_EQ(dimension.reason, RejectionReason::kWrongDimension);
  EXPECT_THAT(dimension.message, HasSubstr("3 entries, expected 2"));
  Rejection unknown = MustReject(server, {"w9", 0, {1.0f, 2.0f}});
  EXPECT_EQ(unknown.reason, RejectionReason::kUnknownWorker);
  EXPECT_THAT(unknown.message, HasSubstr("\"w9\""));
  Rejection duplicate = MustReject(server, {"w0", 0, {1.0f, 2.0f}});
  EXPECT_EQ(duplicate.reason, RejectionReason::kDuplicate);
  Rejection future = MustReject(server, {"w0", 3, {1.0f, 2.0f}});
  EXPECT_EQ(future.reason, RejectionReason::kFutureStep);
  EXPECT_THAT(future.message, HasSubstr("server is at step 0"));
  EXPECT_EQ(server.rejections().size(), 6u);
  EXPECT_EQ(server.rejections()[0].reason, RejectionReason::kNonFinite);

  // Every worker has answered (with a rejection), but none validly: closing is an error and the
  // model is untouched.
  EXPECT_TRUE(server.round().Complete());
  absl::StatusOr<RoundResult> result = server.Close();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(server.parameters(), ElementsAre(1.0f, -1.0f));
  EXPECT_EQ(server.step(), 0);
  server.FailRound();
  EXPECT_EQ(server.step(), 0);
  EXPECT_EQ(server.round().NumAnswered(), 0);
}

TEST(ParameterServerRoundTest, RejectsAStaleStep) {
  ParameterServerOptions options = Options("mean");
  options.workers = {"w0"};
  ParameterServer server = MakeServer(options);
  ASSERT_EQ(server.Submit({"w0", 0, {1.0f, 1.0f}}), std::nullopt);
  ASSERT_TRUE(server.Close().ok());
  const std::vector<float> after_step = server.parameters();
  Rejection stale = MustReject(server, {"w0", 0, {1.0f, 1.0f}});
  EXPECT_EQ(stale.reason, RejectionReason::kStaleStep);
  EXPECT_THAT(stale.message, HasSubstr("server is at step 1"));
  EXPECT_EQ(server.parameters(), after_step);
}

TEST(ParameterServerRoundTest, RejectedUpdatesNeverReachTheModel) {
  ParameterServerOptions options = Options("mean");
  options.sgd = {1.0, 0.0, 0.0};  // w <- w - a
  ParameterServer server = MakeServer(options);
  ASSERT_EQ(server.Submit({"w0", 0, {1.0f, 2.0f}}), std::nullopt);
  MustReject(server, {"w1", 0, {kNaN, 1e30f}});
  MustReject(server, {"w2", 0, {1e30f}});
  MustReject(server, {"w0", 0, {1e30f, 1e30f}});  // duplicate
  MustReject(server, {"w7", 0, {1e30f, 1e30f}});  // unknown
  ASSERT_TRUE(server.round().Complete());
  absl::StatusOr<RoundResult> result = server.Close();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->accepted, ElementsAre("w0"));
  EXPECT_THAT(result->rejected, ElementsAre("w1", "w2"));
  EXPECT_THAT(server.parameters(), ElementsAre(0.0f, -3.0f));
  EXPECT_EQ(server.step(), 1);
}

TEST(ParameterServerTest, MeanAndSgdWithMomentumAndWeightDecayByHand) {
  ParameterServer server = MakeServer(Options("mean"));  // lr 0.5, momentum 0.5, wd 0.1
  ASSERT_EQ(server.Submit({"w0", 0, {1.0f, 2.0f}}), std::nullopt);
  ASSERT_EQ(server.Submit({"w1", 0, {3.0f, 4.0f}}), std::nullopt);
  ASSERT_EQ(server.Submit({"w2", 0, {5.0f, -6.0f}}), std::nullopt);
  ASSERT_TRUE(server.round().Complete());
  absl::StatusOr<RoundResult> result = server.Close();
  ASSERT_TRUE(result.ok()) << result.status();
  // a = (3, 0); g = a + 0.1 (1, -1) = (3.1, -0.1); v = g; w = (1, -1) - 0.5 g.
  EXPECT_THAT(result->aggregate, Pointwise(FloatNear(1e-6f), std::vector<float>{3.0f, 0.0f}));
  EXPECT_THAT(server.parameters(), Pointwise(FloatNear(1e-6f), std::vector<float>{-0.55f, -0.95f}));
  for (const char* worker : {"w0", "w1", "w2"}) {
    ASSERT_EQ(server.Submit({worker, 1, {1.0f, 1.0f}}), std::nullopt);
  }
  ASSERT_TRUE(server.Close().ok());
  // g = (1, 1) + 0.1 (-0.55, -0.95) = (0.945, 0.905); v = 0.5 (3.1, -0.1) + g = (2.495, 0.855);
  // w = (-0.55, -0.95) - 0.5 v = (-1.7975, -1.3775).
  EXPECT_THAT(server.momentum_buffer(),
              Pointwise(FloatNear(1e-5f), std::vector<float>{2.495f, 0.855f}));
  EXPECT_THAT(server.parameters(),
              Pointwise(FloatNear(1e-5f), std::vector<float>{-1.7975f, -1.3775f}));
  EXPECT_EQ(server.step(), 2);
}

TEST(ParameterServerTest, MedianIgnoresAnOutlierThatMovesTheMean) {
  for (const char* rule : {"median", "mean"}) {
    ParameterServerOptions options = Options(rule);
    options.sgd = {1.0, 0.0, 0.0};
    ParameterServer server = MakeServer(options);
    ASSERT_EQ(server.Submit({"w0", 0, {1.0f, 2.0f}}), std::nullopt);
    ASSERT_EQ(server.Submit({"w1", 0, {1.2f, 2.2f}}), std::nullopt);
    ASSERT_EQ(server.Submit({"w2", 0, {1000.0f, -1000.0f}}), std::nullopt);  // Byzantine
    ASSERT_TRUE(server.Close().ok());
    if (std::string(rule) == "median") {
      // Per coordinate: median(1, 1.2, 1000) = 1.2, median(2, 2.2, -1000) = 2.
      EXPECT_THAT(server.parameters(),
                  Pointwise(FloatNear(1e-5f), std::vector<float>{-0.2f, -3.0f}));
    } else {
      // (1 + 1.2 + 1000) / 3 = 334.0667, (2 + 2.2 - 1000) / 3 = -331.9333.
      EXPECT_THAT(server.parameters(),
                  Pointwise(FloatNear(1e-3f), std::vector<float>{-333.0667f, 330.9333f}));
    }
  }
}

TEST(ParameterServerTest, AForcedCloseUsesTheValidSubmissionsItHas) {
  ParameterServerOptions options = Options("mean");
  options.sgd = {1.0, 0.0, 0.0};
  ParameterServer server = MakeServer(options);
  ASSERT_EQ(server.Submit({"w0", 0, {1.0f, 3.0f}}), std::nullopt);
  ASSERT_EQ(server.Submit({"w2", 0, {3.0f, 1.0f}}), std::nullopt);
  ASSERT_FALSE(server.round().Complete());
  absl::StatusOr<RoundResult> result = server.Close();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->silent, ElementsAre("w1"));
  EXPECT_THAT(server.parameters(), ElementsAre(-1.0f, -3.0f));
}

TEST(ParameterServerTest, AnAggregatorThatCannotRunLeavesTheModelAlone) {
  ParameterServerOptions options = Options("krum");
  options.aggregator_options.f = 1;  // Krum needs n >= 2f + 3 = 5 gradients
  ParameterServer server = MakeServer(options);
  for (const char* worker : {"w0", "w1", "w2"}) {
    ASSERT_EQ(server.Submit({worker, 0, {1.0f, 1.0f}}), std::nullopt);
  }
  absl::StatusOr<RoundResult> result = server.Close();
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("\"krum\""));
  EXPECT_THAT(server.parameters(), ElementsAre(1.0f, -1.0f));
  EXPECT_EQ(server.step(), 0);
}

TEST(ParameterServerTest, CreateRejectsBadOptions) {
  ParameterServerOptions options = Options("mean");
  options.aggregator = "average";
  EXPECT_THAT(ParameterServer::Create(options).status().message(), HasSubstr("aggregator"));
  options = Options("mean");
  options.quorum = 4;
  EXPECT_THAT(ParameterServer::Create(options).status().message(), HasSubstr("quorum is 4"));
  options = Options("mean");
  options.workers = {"w0", "w0"};
  EXPECT_THAT(ParameterServer::Create(options).status().message(), HasSubstr("listed twice"));
  options = Options("mean");
  options.initial_parameters.clear();
  EXPECT_FALSE(ParameterServer::Create(options).ok());
  options = Options("mean");
  options.sgd.momentum = 1.0;
  EXPECT_THAT(ParameterServer::Create(options).status().message(), HasSubstr("momentum"));
}

}  // namespace
}  // namespace troupe::federation::robust
