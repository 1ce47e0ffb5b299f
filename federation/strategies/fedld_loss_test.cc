// Tests of FedLD's margin-control loss against values computed by hand, its gradient against
// finite differences, and its input checks.
#include "federation/strategies/fedld_loss.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace troupe::federation::strategies {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(const absl::Status& status, const std::string& message_part) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(message_part));
}

// Logits [[0, 0], [ln 3, 0]], labels [0, 1]:
//   P = [[1/2, 1/2], [3/4, 1/4]]
//   CE = (-ln 1/2 - ln 1/4) / 2 = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2 = 1.0397208
//   ||P||_F^2 = 1/4 + 1/4 + 9/16 + 1/16 = 1.125 (the whole batch; a per-sample norm would give
//   (ln 1.5 + ln 1.625) / 2 instead of ln 2.125)
//   L = 1.5 ln 2 + lambda ln 2.125: 1.0623339 for lambda = 0.03, 1.1150980 for lambda = 0.1
at::Tensor HandLogits() {
  return torch::tensor({0.0, 0.0, std::log(3.0), 0.0}, torch::kFloat64).reshape({2, 2});
}

at::Tensor HandLabels() { return torch::tensor(std::vector<int64_t>{0, 1}, torch::kLong); }

TEST(MarginControlLossTest, MatchesHandComputedValues) {
  EXPECT_EQ(FedLdLossOptions().margin_penalty, 0.03);
  const double cross_entropy = 1.5 * std::log(2.0);
  for (double lambda : {0.0, 0.03, 0.1}) {
    FedLdLossOptions options;
    options.margin_penalty = lambda;
    absl::StatusOr<at::Tensor> loss = MarginControlLoss(HandLogits(), HandLabels(), options);
    ASSERT_TRUE(loss.ok()) << loss.status();
    EXPECT_EQ(loss->dim(), 0);
    EXPECT_NEAR(loss->item<double>(), cross_entropy + lambda * std::log(2.125), 1e-12)
        << "lambda " << lambda;
  }
  // float32 logits give the same value to float precision.
  absl::StatusOr<at::Tensor> single =
      MarginControlLoss(HandLogits().to(torch::kFloat32), HandLabels(), FedLdLossOptions());
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(single->scalar_type(), torch::kFloat32);
  EXPECT_NEAR(single->item<float>(), 1.0623339249112094, 1e-6);
}

TEST(MarginControlLossTest, GradientMatchesFiniteDifferences) {
  const at::Tensor logits =
      torch::tensor({0.3, -1.2, 2.0, 0.7, 0.1, -0.4}, torch::kFloat64).reshape({2, 3});
  const at::Tensor labels = torch::tensor(std::vector<int64_t>{2, 0}, torch::kLong);
  FedLdLossOptions options;
  options.margin_penalty = 0.1;
  at::Tensor variable = logits.clone().requires_grad_(true);
  absl::StatusOr<at::Tensor> loss = MarginControlLoss(variable, labels, options);
  ASSERT_TRUE(loss.ok()) << loss.status();
  loss->backward();
  const at::Tensor gradient = variable.grad();
  constexpr double kStep = 1e-6;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    at::Tensor up = logits.clone();
    at::Tensor down = logits.clone();
    up.view({-1})[i] += kStep;
    down.view({-1})[i] -= kStep;
    const double numeric = (MarginControlLoss(up, labels, options)->item<double>() -
                            MarginControlLoss(down, labels, options)->item<double>()) /
                           (2 * kStep);
    EXPECT_NEAR(gradient.view({-1})[i].item<double>(), numeric, 1e-7) << "logit " << i;
  }
}

TEST(MarginControlLossTest, RejectsBadInputs) {
  const FedLdLossOptions options;
  ExpectInvalid(MarginControlLoss(at::Tensor(), HandLabels(), options).status(),
                "logits are undefined");
  ExpectInvalid(MarginControlLoss(torch::zeros({4}), HandLabels(), options).status(),
                "logits have shape [4]");
  ExpectInvalid(
      MarginControlLoss(torch::zeros({2, 2}, torch::kLong), HandLabels(), options).status(),
      "dtype Long");
  ExpectInvalid(
      MarginControlLoss(torch::zeros({0, 2}), torch::zeros({0}, torch::kLong), options).status(),
      "batch, classes >= 1");
  ExpectInvalid(MarginControlLoss(HandLogits(), torch::zeros({2}), options).status(),
                "labels have shape [2] and dtype Float");
  ExpectInvalid(MarginControlLoss(HandLogits(), torch::zeros({3}, torch::kLong), options).status(),
                "pass an int64 [2] tensor");
  ExpectInvalid(
      MarginControlLoss(HandLogits(), torch::tensor(std::vector<int64_t>{0, 2}), options).status(),
      "labels hold 2, outside [0, 2)");
  ExpectInvalid(
      MarginControlLoss(HandLogits(), torch::tensor(std::vector<int64_t>{-1, 0}), options).status(),
      "labels hold -1");
  for (double lambda : {-0.1, static_cast<double>(NAN)}) {
    FedLdLossOptions bad;
    bad.margin_penalty = lambda;
    ExpectInvalid(MarginControlLoss(HandLogits(), HandLabels(), bad).status(), "margin_penalty");
  }
}

}  // namespace
}  // namespace troupe::federation::strategies
