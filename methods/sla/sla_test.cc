#include "methods/sla/sla.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "methods/data/augment.h"
#include "methods/internal/test_tensors.h"
#include "methods/sla/sla_recipe.h"

namespace troupe::methods::sla {
namespace {

using ::testing::HasSubstr;

constexpr double kTolerance = 1e-12;

using testing::Labels;
using testing::Matrix;

// -log softmax(row)[label], by hand.
double HandCrossEntropy(const std::vector<double>& row, int label) {
  double sum = 0;
  for (double value : row) sum += std::exp(value);
  return std::log(sum) - row[label];
}

std::vector<double> HandSoftmax(const std::vector<double>& row, double t) {
  double sum = 0;
  for (double value : row) sum += std::exp(value / t);
  std::vector<double> p;
  for (double value : row) p.push_back(std::exp(value / t) / sum);
  return p;
}

double Value(const at::Tensor& scalar) { return scalar.item<double>(); }

TEST(JointLabelTest, ClassMajor) {
  EXPECT_EQ(JointLabel(0, 0, 4), 0);
  EXPECT_EQ(JointLabel(2, 3, 4), 11);
  EXPECT_EQ(JointLabel(9, 1, 4), 37);
  EXPECT_EQ(JointLabel(1, 1, 2), 3);
}

TEST(JointLabelTest, LabelTensorsFollowTheRowLayout) {
  absl::StatusOr<at::Tensor> joint = JointLabels(Labels({2, 0}), 4);
  ASSERT_TRUE(joint.ok()) << joint.status();
  EXPECT_TRUE(torch::equal(*joint, Labels({8, 9, 10, 11, 0, 1, 2, 3})));

  absl::StatusOr<at::Tensor> repeated = RepeatLabels(Labels({2, 0}), 4);
  ASSERT_TRUE(repeated.ok()) << repeated.status();
  EXPECT_TRUE(torch::equal(*repeated, Labels({2, 2, 2, 2, 0, 0, 0, 0})));

  absl::StatusOr<at::Tensor> transforms = TransformLabels(2, 4);
  ASSERT_TRUE(transforms.ok()) << transforms.status();
  EXPECT_TRUE(torch::equal(*transforms, Labels({0, 1, 2, 3, 0, 1, 2, 3})));
}

TEST(JointLabelTest, BadLabels) {
  absl::StatusOr<at::Tensor> floats = JointLabels(torch::zeros({3}), 4);
  EXPECT_EQ(floats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(floats.status().message(), HasSubstr("labels"));
  EXPECT_THAT(floats.status().message(), HasSubstr("int64"));

  absl::StatusOr<at::Tensor> no_transforms = JointLabels(Labels({1}), 0);
  EXPECT_EQ(no_transforms.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_transforms.status().message(), HasSubstr("num_transforms"));
}

TEST(RotateBatchTest, ImageMajorQuarterTurnsMatchDataRot90) {
  constexpr int kSide = 3;
  // Two 1-channel 3x3 images with distinct pixels.
  at::Tensor images = torch::arange(2 * kSide * kSide, torch::kFloat64).view({2, 1, kSide, kSide});
  absl::StatusOr<at::Tensor> views = RotateBatch(images, 4);
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_EQ(views->sizes(), (std::vector<int64_t>{8, 1, kSide, kSide}));
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<uint8_t> pixels;
    for (int64_t i = 0; i < kSide * kSide; ++i) {
      pixels.push_back(static_cast<uint8_t>(images[b].view({-1})[i].item<double>()));
    }
    for (int j = 0; j < 4; ++j) {
      // The same turn as methods/data's Rot90 (counter-clockwise, numpy.rot90).
      const std::vector<uint8_t> expected = data::Rot90(pixels, kSide, j);
      const at::Tensor row = (*views)[b * 4 + j].reshape({-1});
      for (int64_t i = 0; i < kSide * kSide; ++i) {
        EXPECT_EQ(row[i].item<double>(), expected[i]) << "image " << b << " turn " << j;
      }
    }
  }
  // k = 1 by hand: [[0,1,2],[3,4,5],[6,7,8]] -> [[2,5,8],[1,4,7],[0,3,6]].
  EXPECT_TRUE(torch::equal((*views)[1][0], Matrix({{2, 5, 8}, {1, 4, 7}, {0, 3, 6}})));
}

TEST(RotateBatchTest, TwoTransformsAreZeroAndHalfTurn) {
  at::Tensor images = torch::arange(4, torch::kFloat64).view({1, 1, 2, 2});
  absl::StatusOr<at::Tensor> views = RotateBatch(images, 2);
  ASSERT_TRUE(views.ok()) << views.status();
  EXPECT_TRUE(torch::equal((*views)[0][0], Matrix({{0, 1}, {2, 3}})));
  EXPECT_TRUE(torch::equal((*views)[1][0], Matrix({{3, 2}, {1, 0}})));
}

TEST(RotateBatchTest, BadInputs) {
  absl::StatusOr<at::Tensor> three = RotateBatch(torch::zeros({1, 1, 2, 2}), 3);
  EXPECT_EQ(three.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(three.status().message(), HasSubstr("num_transforms is 3"));

  absl::StatusOr<at::Tensor> not_square = RotateBatch(torch::zeros({1, 1, 2, 3}), 4);
  EXPECT_EQ(not_square.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_square.status().message(), HasSubstr("images has shape [1, 1, 2, 3]"));
}

// Joint logits with value 100 * row + column, B = 2, M = 4, N = 3: [8, 12].
at::Tensor IndexLogits() {
  return (torch::arange(8, torch::kFloat64).unsqueeze(1) * 100 +
          torch::arange(12, torch::kFloat64).unsqueeze(0));
}

TEST(InferenceTest, SingleInferenceIsIdentityRowsAndColumns) {
  absl::StatusOr<at::Tensor> single = SingleInferenceLogits(IndexLogits(), 4);
  ASSERT_TRUE(single.ok()) << single.status();
  // Rows 0 and 4 (view j = 0 of each image), columns 0, 4, 8 (i * M + 0).
  EXPECT_TRUE(torch::equal(*single, Matrix({{0, 4, 8}, {400, 404, 408}})));
}

TEST(InferenceTest, IdentityColumnsKeepEveryRow) {
  // A forward over 3 untransformed images: [3, 12] -> columns 0, 4, 8 of every row.
  absl::StatusOr<at::Tensor> single =
      IdentityColumnLogits(IndexLogits().index({torch::indexing::Slice(0, 3)}), 4);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_TRUE(torch::equal(*single, Matrix({{0, 4, 8}, {100, 104, 108}, {200, 204, 208}})));
  absl::StatusOr<at::Tensor> columns = IdentityColumnLogits(torch::zeros({3, 10}), 4);
  EXPECT_EQ(columns.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(columns.status().message(), HasSubstr("joint_logits has 10 columns"));
}

TEST(InferenceTest, AggregatedAveragesEachViewsOwnColumns) {
  absl::StatusOr<at::Tensor> aggregated = AggregatedLogits(IndexLogits(), 4);
  ASSERT_TRUE(aggregated.ok()) << aggregated.status();
  // s[b][i] = 1/4 sum_j (100 (4b + j) + 4i + j) = 400b + 150 + 4i + 1.5.
  EXPECT_TRUE(torch::allclose(*aggregated, Matrix({{151.5, 155.5, 159.5}, {551.5, 555.5, 559.5}}),
                              0, kTolerance));
}

TEST(InferenceTest, AggregatedAveragesLogitsNotProbabilities) {
  // One image, M = 2, N = 2. View 0 scores [0, 4] (columns 0, 2); view 1 scores [2, 0]
  // (columns 1, 3). Logit mean [1, 2]; a probability mean would favour class 1 less.
  at::Tensor joint = Matrix({{0, 9, 4, 9}, {9, 2, 9, 0}});
  absl::StatusOr<at::Tensor> aggregated = AggregatedLogits(joint, 2);
  ASSERT_TRUE(aggregated.ok()) << aggregated.status();
  EXPECT_TRUE(torch::allclose(*aggregated, Matrix({{1, 2}}), 0, kTolerance));
}

TEST(InferenceTest, JointLabelsLandWhereSingleAndAggregatedLook) {
  // Put a large logit at every row's joint label: SI and AG must both recover the class.
  const at::Tensor labels = Labels({2, 0, 1});
  absl::StatusOr<at::Tensor> joint_labels = JointLabels(labels, 4);
  ASSERT_TRUE(joint_labels.ok());
  at::Tensor joint = torch::zeros({12, 12}, torch::kFloat64);
  joint.scatter_(1, joint_labels->unsqueeze(1), 10.0);
  absl::StatusOr<at::Tensor> single = SingleInferenceLogits(joint, 4);
  absl::StatusOr<at::Tensor> aggregated = AggregatedLogits(joint, 4);
  ASSERT_TRUE(single.ok() && aggregated.ok());
  EXPECT_TRUE(torch::equal(single->argmax(1), labels));
  EXPECT_TRUE(torch::equal(aggregated->argmax(1), labels));
  EXPECT_TRUE(torch::allclose(aggregated->amax(1), torch::full({3}, 10.0, torch::kFloat64)));
}

TEST(InferenceTest, BadInputs) {
  absl::StatusOr<at::Tensor> rows = AggregatedLogits(torch::zeros({6, 8}), 4);
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rows.status().message(), HasSubstr("joint_logits has 6 rows, not a multiple"));

  absl::StatusOr<at::Tensor> columns = SingleInferenceLogits(torch::zeros({8, 10}), 4);
  EXPECT_EQ(columns.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(columns.status().message(), HasSubstr("joint_logits has 10 columns"));

  absl::StatusOr<at::Tensor> vector = SingleInferenceLogits(torch::zeros({8}), 4);
  EXPECT_EQ(vector.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(vector.status().message(), HasSubstr("joint_logits has shape [8]"));
}

TEST(LossTest, BaselineByHand) {
  absl::StatusOr<at::Tensor> loss = BaselineLoss(Matrix({{1, 2, 3}, {0, 0, 0}}), Labels({2, 1}));
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double expected = (std::log(std::exp(-2.0) + std::exp(-1.0) + 1.0) + std::log(3.0)) / 2;
  EXPECT_NEAR(Value(*loss), expected, kTolerance);
}

TEST(LossTest, BaselineOneHotLogitsAndUniform) {
  // Uniform logits: log N whatever the label.
  absl::StatusOr<at::Tensor> uniform =
      BaselineLoss(torch::zeros({2, 10}, torch::kFloat64), Labels({3, 7}));
  ASSERT_TRUE(uniform.ok());
  EXPECT_NEAR(Value(*uniform), std::log(10.0), kTolerance);
  // A one-hot logit row on the label: log(e + N - 1) - 1.
  absl::StatusOr<at::Tensor> one_hot = BaselineLoss(Matrix({{0, 1, 0, 0}}), Labels({1}));
  ASSERT_TRUE(one_hot.ok());
  EXPECT_NEAR(Value(*one_hot), std::log(std::exp(1.0) + 3) - 1, kTolerance);
}

TEST(LossTest, DaByHand) {
  // B = 1, M = 2, N = 2, label 0: rows are the two views.
  absl::StatusOr<at::Tensor> loss = DaLoss(Matrix({{0, 1}, {2, 0}}), Labels({0}), 2);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double expected = (HandCrossEntropy({0, 1}, 0) + HandCrossEntropy({2, 0}, 0)) / 2;
  EXPECT_NEAR(Value(*loss), expected, kTolerance);
}

TEST(LossTest, MtByHand) {
  absl::StatusOr<at::Tensor> loss =
      MtLoss(Matrix({{0, 1}, {2, 0}}), Matrix({{0, 0}, {0, 3}}), Labels({0}), 2);
  ASSERT_TRUE(loss.ok()) << loss.status();
  // Class term as DA; transform term: view 0 against j = 0 (log 2), view 1 against j = 1.
  const double expected = (HandCrossEntropy({0, 1}, 0) + HandCrossEntropy({2, 0}, 0)) / 2 +
                          (std::log(2.0) + std::log(1 + std::exp(-3.0))) / 2;
  EXPECT_NEAR(Value(*loss), expected, kTolerance);
}

TEST(LossTest, SlaByHand) {
  // B = 1, M = 2, N = 2, label 1: joint labels 2 (view 0) and 3 (view 1).
  absl::StatusOr<at::Tensor> loss = SlaLoss(Matrix({{1, 0, 0, 0}, {0, 0, 0, 2}}), Labels({1}), 2);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double expected =
      (HandCrossEntropy({1, 0, 0, 0}, 2) + HandCrossEntropy({0, 0, 0, 2}, 3)) / 2;
  EXPECT_NEAR(Value(*loss), expected, kTolerance);
  // Uniform joint logits: log(N * M).
  absl::StatusOr<at::Tensor> uniform =
      SlaLoss(torch::zeros({8, 40}, torch::kFloat64), Labels({0, 9}), 4);
  ASSERT_TRUE(uniform.ok());
  EXPECT_NEAR(Value(*uniform), std::log(40.0), kTolerance);
}

TEST(LossTest, BadShapesNameTheInput) {
  absl::StatusOr<at::Tensor> rows = SlaLoss(torch::zeros({4, 8}), Labels({0, 1, 1}), 4);
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rows.status().message(), HasSubstr("joint_logits has 4 rows"));
  EXPECT_THAT(rows.status().message(), HasSubstr("= 12"));

  absl::StatusOr<at::Tensor> label = SlaLoss(torch::zeros({4, 8}), Labels({2}), 4);
  EXPECT_EQ(label.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(label.status().message(), HasSubstr("labels holds 2, outside [0, 2)"));

  absl::StatusOr<at::Tensor> da = DaLoss(torch::zeros({6, 3}), Labels({0, 1}), 4);
  EXPECT_EQ(da.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(da.status().message(), HasSubstr("logits has 6 rows"));

  absl::StatusOr<at::Tensor> mt =
      MtLoss(torch::zeros({4, 3}), torch::zeros({4, 3}), Labels({0}), 4);
  EXPECT_EQ(mt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mt.status().message(), HasSubstr("transform_logits has 3 columns"));

  absl::StatusOr<at::Tensor> baseline = BaselineLoss(torch::zeros({2, 3}), Labels({0}));
  EXPECT_EQ(baseline.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(baseline.status().message(), HasSubstr("logits has 2 rows"));
}

// SelfDistillation on B = 1, M = 2, N = 2: joint logits whose aggregate is [0.5, 1].
at::Tensor SdJoint() { return Matrix({{1, 0, 0, 0}, {0, 0, 0, 2}}); }

SlaOptions SdOptions() {
  SlaOptions options;
  options.num_transforms = 2;
  return options;
}

double HandKl(const std::vector<double>& p, const std::vector<double>& q) {
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) kl += p[i] * std::log(p[i] / q[i]);
  return kl;
}

TEST(SelfDistillationTest, ByHandAtDefaultTemperature) {
  absl::StatusOr<SelfDistillationLoss> loss =
      SelfDistillation(SdJoint(), Matrix({{1, 2}}), Labels({1}), SdOptions());
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double sla = (HandCrossEntropy({1, 0, 0, 0}, 2) + HandCrossEntropy({0, 0, 0, 2}, 3)) / 2;
  const double kl = HandKl(HandSoftmax({0.5, 1}, 1), HandSoftmax({1, 2}, 1));
  const double ce = HandCrossEntropy({1, 2}, 1);
  EXPECT_NEAR(Value(loss->sla), sla, kTolerance);
  EXPECT_NEAR(Value(loss->distill), kl, kTolerance);
  EXPECT_NEAR(Value(loss->ce), ce, kTolerance);
  EXPECT_NEAR(Value(loss->total), sla + kl + ce, kTolerance);
}

TEST(SelfDistillationTest, TemperatureAndWeightAndRotatedHeadRows) {
  SlaOptions options;
  options.num_transforms = 2;
  options.distill_temperature = 2;
  options.distill_ce_weight = 0.5;
  // The head on the rotated batch: only row 0 (the untransformed view) counts.
  absl::StatusOr<SelfDistillationLoss> loss =
      SelfDistillation(SdJoint(), Matrix({{1, 2}, {50, -50}}), Labels({1}), options);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double kl = 4 * HandKl(HandSoftmax({0.5, 1}, 2), HandSoftmax({1, 2}, 2));
  const double ce = HandCrossEntropy({1, 2}, 1);
  EXPECT_NEAR(Value(loss->distill), kl, kTolerance);
  EXPECT_NEAR(Value(loss->ce), ce, kTolerance);
  EXPECT_NEAR(Value(loss->total), Value(loss->sla) + kl + 0.5 * ce, kTolerance);
}

TEST(SelfDistillationTest, StudentEqualToAggregateHasNoDistillationLoss) {
  absl::StatusOr<SelfDistillationLoss> loss =
      SelfDistillation(SdJoint(), Matrix({{0.5, 1}}), Labels({0}), SdOptions());
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(Value(loss->distill), 0, kTolerance);
}

TEST(SelfDistillationTest, AggregatedTargetIsDetached) {
  at::Tensor joint = SdJoint().requires_grad_(true);
  at::Tensor head = Matrix({{1, 2}}).requires_grad_(true);
  absl::StatusOr<SelfDistillationLoss> loss =
      SelfDistillation(joint, head, Labels({1}), SdOptions());
  ASSERT_TRUE(loss.ok());
  loss->total.backward();
  // The joint logits' gradient is L_SLA's alone: the KL sends nothing to the teacher.
  at::Tensor joint_alone = SdJoint().requires_grad_(true);
  absl::StatusOr<at::Tensor> sla = SlaLoss(joint_alone, Labels({1}), 2);
  ASSERT_TRUE(sla.ok());
  sla->backward();
  EXPECT_TRUE(torch::allclose(joint.grad(), joint_alone.grad(), 0, kTolerance));
  // The head gets the KL's gradient: q - p plus the CE's q - onehot (T = 1).
  const std::vector<double> p = HandSoftmax({0.5, 1}, 1);
  const std::vector<double> q = HandSoftmax({1, 2}, 1);
  EXPECT_TRUE(torch::allclose(
      head.grad(), Matrix({{(q[0] - p[0]) + q[0], (q[1] - p[1]) + (q[1] - 1)}}), 0, kTolerance));
}

TEST(SelfDistillationTest, BadInputs) {
  SlaOptions options;
  options.num_transforms = 2;
  options.distill_temperature = 0;
  absl::StatusOr<SelfDistillationLoss> cold =
      SelfDistillation(SdJoint(), Matrix({{1, 2}}), Labels({1}), options);
  EXPECT_EQ(cold.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cold.status().message(), HasSubstr("distill_temperature is 0"));

  options.distill_temperature = 1;
  absl::StatusOr<SelfDistillationLoss> head =
      SelfDistillation(SdJoint(), Matrix({{1, 2, 3}}), Labels({1}), options);
  EXPECT_EQ(head.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(head.status().message(), HasSubstr("head_logits has shape [1, 3]"));

  options.num_transforms = 4;
  absl::StatusOr<SelfDistillationLoss> m = SelfDistillation(Matrix({{1, 0, 0, 0}, {0, 0, 0, 2}}),
                                                            Matrix({{1, 2}}), Labels({1}), options);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("not a multiple of num_transforms (4)"));
}

// ---- The arms as trainer recipes (sla_recipe.h).

// RecipeModel is a small MLP with the recipe's heads.
train::Classifier RecipeModel(const train::Recipe& recipe) {
  train::ModelOptions options;
  options.architecture = train::Architecture::kMlp;
  options.mlp_hidden = {16};
  options.heads = recipe.heads;
  torch::manual_seed(3);
  return *train::MakeClassifier(options);
}

train::Batch RecipeBatch() {
  torch::manual_seed(4);
  return train::Batch{torch::randn({6, 1, 28, 28}), Labels({0, 3, 9, 3, 1, 7}), {}};
}

TEST(SlaRecipeTest, ParsesEveryArmAndNamesABadOne) {
  for (Arm arm : {Arm::kBaseline, Arm::kDa, Arm::kMt, Arm::kSla, Arm::kSlaSd}) {
    EXPECT_EQ(*ParseArm(ArmName(arm)), arm);
  }
  absl::StatusOr<Arm> bad = ParseArm("sla+sd");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'sla+sd'"));
  EXPECT_THAT(bad.status().message(), HasSubstr("sla_sd"));
}

TEST(SlaRecipeTest, BadOptionsAreErrorsNamingThem) {
  SlaOptions options;
  options.num_transforms = 3;
  EXPECT_THAT(MakeRecipe(Arm::kSla, 10, options).status().message(),
              HasSubstr("num_transforms is 3"));
  EXPECT_THAT(MakeRecipe(Arm::kSla, 1).status().message(), HasSubstr("num_classes is 1"));
  options = SlaOptions();
  options.distill_temperature = 0;
  EXPECT_THAT(MakeRecipe(Arm::kSlaSd, 10, options).status().message(),
              HasSubstr("distill_temperature (0)"));
}

TEST(SlaRecipeTest, EachArmHasItsHeadsLossAndScores) {
  struct Expected {
    Arm arm;
    std::map<std::string, int64_t> heads;
    std::vector<std::string> scores;
  };
  const std::vector<Expected> arms = {
      {Arm::kBaseline, {{"main", 10}}, {"main"}},
      {Arm::kDa, {{"main", 10}}, {"main"}},
      {Arm::kMt, {{"main", 10}, {"rotation", 4}}, {"main"}},
      {Arm::kSla, {{"joint", 40}}, {"ag", "si"}},
      {Arm::kSlaSd, {{"joint", 40}, {"sd", 10}}, {"ag", "sd", "si"}},
  };
  const train::Batch batch = RecipeBatch();
  for (const Expected& expected : arms) {
    SCOPED_TRACE(ArmName(expected.arm));
    absl::StatusOr<train::Recipe> recipe = MakeRecipe(expected.arm, 10);
    ASSERT_TRUE(recipe.ok()) << recipe.status();
    std::map<std::string, int64_t> heads;
    for (const train::HeadSpec& head : recipe->heads) heads[head.name] = head.size;
    EXPECT_EQ(heads, expected.heads);
    train::Classifier model = RecipeModel(*recipe);
    std::mt19937_64 random(1);
    train::LossInput input{*model, batch, random, 0, 0};
    at::Tensor loss = recipe->loss(input);
    EXPECT_EQ(loss.numel(), 1);
    EXPECT_TRUE(loss.requires_grad());
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
    model->eval();
    std::map<std::string, at::Tensor> scores;
    if (recipe->scores) {
      scores = recipe->scores(*model, batch.images);
    } else {
      scores["main"] = model->Forward(batch.images).at("main");  // the trainer's default
    }
    std::vector<std::string> names;
    for (const auto& [name, score] : scores) {
      names.push_back(name);
      EXPECT_EQ(score.sizes(), (std::vector<int64_t>{6, 10})) << name;
    }
    EXPECT_EQ(names, expected.scores);
  }
}

TEST(SlaRecipeTest, SlaSdLossAndScoresAreTheLibrarysOnTheRotatedBatch) {
  absl::StatusOr<train::Recipe> recipe = MakeRecipe(Arm::kSlaSd, 10);
  ASSERT_TRUE(recipe.ok());
  train::Classifier model = RecipeModel(*recipe);
  const train::Batch batch = RecipeBatch();
  std::mt19937_64 random(1);
  train::LossInput input{*model, batch, random, 0, 0};
  const at::Tensor loss = recipe->loss(input);
  train::HeadLogits logits = model->Forward(*RotateBatch(batch.images, 4));
  absl::StatusOr<SelfDistillationLoss> expected =
      SelfDistillation(logits.at("joint"), logits.at("sd"), batch.labels);
  ASSERT_TRUE(expected.ok());
  EXPECT_NEAR(loss.item<double>(), expected->total.item<double>(), 1e-6);

  model->eval();
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> scores = recipe->scores(*model, batch.images);
  const at::Tensor rotated = model->Forward(*RotateBatch(batch.images, 4)).at("joint");
  EXPECT_TRUE(torch::allclose(scores.at("ag"), *AggregatedLogits(rotated, 4)));
  EXPECT_TRUE(torch::allclose(scores.at("si"),
                              *IdentityColumnLogits(model->Forward(batch.images).at("joint"), 4)));
  EXPECT_TRUE(torch::allclose(scores.at("sd"), model->Forward(batch.images).at("sd")));
}

}  // namespace
}  // namespace troupe::methods::sla
