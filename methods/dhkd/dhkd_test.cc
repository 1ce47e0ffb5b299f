#include "methods/dhkd/dhkd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "methods/dhkd/dhkd_recipe.h"
#include "methods/internal/test_tensors.h"

namespace troupe::methods::dhkd {
namespace {

using ::testing::HasSubstr;

constexpr double kTolerance = 1e-12;

using testing::Labels;
using testing::Matrix;
using testing::Vector;

double Value(const at::Tensor& scalar) { return scalar.item<double>(); }

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// KL(Bern(p) || Bern(q)), by hand.
double HandBernoulliKl(double p, double q) {
  const double first = p == 0 ? 0 : p * std::log(p / q);
  const double second = p == 1 ? 0 : (1 - p) * std::log((1 - p) / (1 - q));
  return first + second;
}

std::vector<double> HandSoftmax(const std::vector<double>& row, double t) {
  double sum = 0;
  for (double value : row) sum += std::exp(value / t);
  std::vector<double> p;
  for (double value : row) p.push_back(std::exp(value / t) / sum);
  return p;
}

double HandKl(const std::vector<double>& p, const std::vector<double>& q) {
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) kl += p[i] * std::log(p[i] / q[i]);
  return kl;
}

TEST(CrossEntropyTest, ByHandOneHotAndUniform) {
  absl::StatusOr<at::Tensor> loss = CrossEntropy(Matrix({{1, 2, 3}, {0, 0, 0}}), Labels({2, 1}));
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_NEAR(Value(*loss), (std::log(std::exp(-2.0) + std::exp(-1.0) + 1.0) + std::log(3.0)) / 2,
              kTolerance);
  absl::StatusOr<at::Tensor> one_hot = CrossEntropy(Matrix({{0, 0, 5}}), Labels({2}));
  ASSERT_TRUE(one_hot.ok());
  EXPECT_NEAR(Value(*one_hot), std::log(2 + std::exp(5.0)) - 5, kTolerance);
}

TEST(CrossEntropyTest, BadLabels) {
  absl::StatusOr<at::Tensor> count = CrossEntropy(Matrix({{1, 2}}), Labels({0, 1}));
  EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(count.status().message(), HasSubstr("labels has shape [2]"));
  absl::StatusOr<at::Tensor> range = CrossEntropy(Matrix({{1, 2}}), Labels({2}));
  EXPECT_EQ(range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(range.status().message(), HasSubstr("labels holds 2, outside [0, 2)"));
}

TEST(SoftmaxKdTest, ByHandAtTemperatureOneAndFour) {
  const std::vector<double> s0 = {1, 0, -1}, s1 = {0, 2, 0};
  const std::vector<double> t0 = {3, 1, 0}, t1 = {0, 0, 0};
  const at::Tensor student = Matrix({s0, s1});
  const at::Tensor teacher = Matrix({t0, t1});
  for (double t : {1.0, 4.0}) {
    absl::StatusOr<at::Tensor> loss = SoftmaxKd(student, teacher, t);
    ASSERT_TRUE(loss.ok()) << loss.status();
    const double expected = t * t *
                            (HandKl(HandSoftmax(t0, t), HandSoftmax(s0, t)) +
                             HandKl(HandSoftmax(t1, t), HandSoftmax(s1, t))) /
                            2;
    EXPECT_NEAR(Value(*loss), expected, kTolerance) << "T = " << t;
  }
}

TEST(SoftmaxKdTest, EqualLogitsGiveZeroAndTeacherGetsNoGradient) {
  at::Tensor teacher = Matrix({{1, 2, 3}}).requires_grad_(true);
  at::Tensor student = Matrix({{1, 2, 3}}).requires_grad_(true);
  absl::StatusOr<at::Tensor> loss = SoftmaxKd(student, teacher, 4);
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(Value(*loss), 0, kTolerance);
  loss->backward();
  EXPECT_FALSE(teacher.grad().defined());
  EXPECT_TRUE(student.grad().defined());
}

TEST(BinaryKlTest, ByHandAtTemperatureTwo) {
  const at::Tensor student = Matrix({{0, 1}, {-2, 3}});
  const at::Tensor teacher = Matrix({{2, -1}, {0, 3}});
  absl::StatusOr<at::Tensor> loss = BinaryKl(student, teacher, 2);
  ASSERT_TRUE(loss.ok()) << loss.status();
  double sum = 0;
  const double s[2][2] = {{0, 1}, {-2, 3}};
  const double t[2][2] = {{2, -1}, {0, 3}};
  for (int b = 0; b < 2; ++b) {
    for (int c = 0; c < 2; ++c) sum += HandBernoulliKl(Sigmoid(t[b][c] / 2), Sigmoid(s[b][c] / 2));
  }
  EXPECT_NEAR(Value(*loss), 4 * sum / 2, kTolerance);
}

TEST(BinaryKlTest, UniformTeacherAndOneHotStudent) {
  // Teacher logits 0: p = 1/2 everywhere. Student one-hot logits [0, 0, 1] at T = 1.
  absl::StatusOr<at::Tensor> loss = BinaryKl(Matrix({{0, 0, 1}}), Matrix({{0, 0, 0}}), 1);
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(Value(*loss), HandBernoulliKl(0.5, Sigmoid(1)), kTolerance);
  // Unlike BinaryKL-Norm, a shared shift of both logits changes the loss.
  absl::StatusOr<at::Tensor> shifted = BinaryKl(Matrix({{5, 5, 6}}), Matrix({{5, 5, 5}}), 1);
  ASSERT_TRUE(shifted.ok());
  EXPECT_GT(std::abs(Value(*shifted) - Value(*loss)), 1e-3);
}

TEST(BinaryKlNormTest, ByHandAndLogCoshForm) {
  const at::Tensor student = Matrix({{0, 1, 4}, {-2, 3, 0}});
  const at::Tensor teacher = Matrix({{2, -1, 4}, {0, 3, 1}});
  const double s[2][3] = {{0, 1, 4}, {-2, 3, 0}};
  const double t[2][3] = {{2, -1, 4}, {0, 3, 1}};
  for (double temperature : {1.0, 2.0, 4.0}) {
    absl::StatusOr<at::Tensor> loss = BinaryKlNorm(student, teacher, temperature);
    ASSERT_TRUE(loss.ok()) << loss.status();
    double kl = 0, log_cosh = 0;
    for (int b = 0; b < 2; ++b) {
      for (int c = 0; c < 3; ++c) {
        const double d = (s[b][c] - t[b][c]) / temperature;
        kl += HandBernoulliKl(0.5, Sigmoid(d));
        log_cosh += std::log(std::cosh(d / 2));
      }
    }
    const double scale = temperature * temperature / 2;
    EXPECT_NEAR(Value(*loss), scale * kl, kTolerance) << "T = " << temperature;
    EXPECT_NEAR(Value(*loss), scale * log_cosh, 1e-10) << "T = " << temperature;
  }
}

TEST(BinaryKlNormTest, ActsOnTheDifferenceOnly) {
  absl::StatusOr<at::Tensor> equal = BinaryKlNorm(Matrix({{1, -3}}), Matrix({{1, -3}}), 2);
  ASSERT_TRUE(equal.ok());
  EXPECT_NEAR(Value(*equal), 0, kTolerance);
  absl::StatusOr<at::Tensor> base = BinaryKlNorm(Matrix({{1, 0}}), Matrix({{0, 0}}), 2);
  absl::StatusOr<at::Tensor> shifted = BinaryKlNorm(Matrix({{8, 7}}), Matrix({{7, 7}}), 2);
  ASSERT_TRUE(base.ok() && shifted.ok());
  EXPECT_NEAR(Value(*base), Value(*shifted), kTolerance);
}

TEST(BinaryKlNormTest, ClampBoundsTheLossAndGradient) {
  // d / T = 100: sigma is 1 - 3.7e-44, clamped to 1 - 1e-8.
  at::Tensor student = Matrix({{100}}).requires_grad_(true);
  absl::StatusOr<at::Tensor> loss = BinaryKlNorm(student, Matrix({{0}}), 1);
  ASSERT_TRUE(loss.ok());
  const double expected = 0.5 * std::log(0.5 / (1 - 1e-8)) + 0.5 * std::log(0.5 / 1e-8);
  EXPECT_NEAR(Value(*loss), expected, 1e-7);
  loss->backward();
  EXPECT_EQ(Value(student.grad().sum()), 0.0);
  // Unclamped, the gradient is T / 2 tanh(d / 2T) / B, below T / (2B).
  at::Tensor near = Matrix({{3}, {-1}}).requires_grad_(true);
  absl::StatusOr<at::Tensor> small = BinaryKlNorm(near, Matrix({{0}, {0}}), 2);
  ASSERT_TRUE(small.ok());
  small->backward();
  EXPECT_TRUE(torch::allclose(
      near.grad(), Matrix({{std::tanh(3.0 / 4) / 2}, {std::tanh(-1.0 / 4) / 2}}), 0, 1e-10));
}

TEST(LossInputTest, BadTemperatureShapeAndEpsilon) {
  for (double t : {0.0, -1.0}) {
    absl::StatusOr<at::Tensor> kd = SoftmaxKd(Matrix({{1}}), Matrix({{1}}), t);
    EXPECT_EQ(kd.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(kd.status().message(), HasSubstr("SoftmaxKd: temperature is"));
    absl::StatusOr<at::Tensor> bkl = BinaryKl(Matrix({{1}}), Matrix({{1}}), t);
    EXPECT_THAT(bkl.status().message(), HasSubstr("BinaryKl: temperature is"));
    absl::StatusOr<at::Tensor> bkln = BinaryKlNorm(Matrix({{1}}), Matrix({{1}}), t);
    EXPECT_THAT(bkln.status().message(), HasSubstr("BinaryKlNorm: temperature is"));
  }
  absl::StatusOr<at::Tensor> shape = BinaryKlNorm(torch::zeros({2, 3}), torch::zeros({2, 4}), 2);
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.status().message(),
              HasSubstr("student has shape [2, 3] but teacher has shape [2, 4]"));
  absl::StatusOr<at::Tensor> vector = BinaryKl(torch::zeros({3}), torch::zeros({3}), 2);
  EXPECT_THAT(vector.status().message(), HasSubstr("student has shape [3]"));
  absl::StatusOr<at::Tensor> epsilon = BinaryKl(Matrix({{1}}), Matrix({{1}}), 2, 0.5);
  EXPECT_THAT(epsilon.status().message(), HasSubstr("epsilon is 0.5"));
}

TEST(DualHeadTest, CombinesTheWeightedTerms) {
  const at::Tensor main_logits = Matrix({{1, 2, 0}});
  const at::Tensor aux_logits = Matrix({{0, 1, 1}});
  const at::Tensor teacher = Matrix({{2, 0, 1}});
  DhkdOptions options;
  options.ce_weight = 0.5;
  options.distill_weight = 0.1;
  absl::StatusOr<DualHeadLoss> loss =
      DualHead(main_logits, aux_logits, teacher, Labels({1}), options);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double ce = std::log(std::exp(1.0) + std::exp(2.0) + 1) - 2;
  double bkln = 0;
  for (double d : {-2.0, 1.0, 0.0}) bkln += HandBernoulliKl(0.5, Sigmoid(d / 2));
  bkln *= 4;
  EXPECT_NEAR(Value(loss->ce), ce, kTolerance);
  EXPECT_NEAR(Value(loss->distill), bkln, kTolerance);
  EXPECT_NEAR(Value(loss->total), 0.5 * ce + 0.1 * bkln, kTolerance);

  options.distill = DistillLoss::kBinaryKl;
  absl::StatusOr<DualHeadLoss> plain =
      DualHead(main_logits, aux_logits, teacher, Labels({1}), options);
  ASSERT_TRUE(plain.ok());
  absl::StatusOr<at::Tensor> bkl = BinaryKl(aux_logits, teacher, 2);
  EXPECT_NEAR(Value(plain->distill), Value(*bkl), kTolerance);
  options.distill = DistillLoss::kSoftmaxKd;
  absl::StatusOr<DualHeadLoss> kd =
      DualHead(main_logits, aux_logits, teacher, Labels({1}), options);
  ASSERT_TRUE(kd.ok());
  absl::StatusOr<at::Tensor> softmax_kd = SoftmaxKd(aux_logits, teacher, 2);
  EXPECT_NEAR(Value(kd->distill), Value(*softmax_kd), kTolerance);
}

TEST(DualHeadTest, EachHeadGetsOnlyItsLoss) {
  at::Tensor main_logits = Matrix({{1, 2, 0}}).requires_grad_(true);
  at::Tensor aux_logits = Matrix({{0, 1, 1}}).requires_grad_(true);
  at::Tensor teacher = Matrix({{2, 0, 1}}).requires_grad_(true);
  absl::StatusOr<DualHeadLoss> loss = DualHead(main_logits, aux_logits, teacher, Labels({1}));
  ASSERT_TRUE(loss.ok());
  loss->total.backward();
  // Main head: softmax - onehot. Auxiliary head: T / 2 tanh((z2 - zt) / 2T) (B = 1, T = 2).
  const std::vector<double> q = HandSoftmax({1, 2, 0}, 1);
  EXPECT_TRUE(torch::allclose(main_logits.grad(), Matrix({{q[0], q[1] - 1, q[2]}}), 0, kTolerance));
  EXPECT_TRUE(torch::allclose(aux_logits.grad(),
                              Matrix({{std::tanh(-2.0 / 4), std::tanh(1.0 / 4), std::tanh(0.0)}}),
                              0, 1e-10));
  EXPECT_FALSE(teacher.grad().defined());
}

TEST(DualHeadTest, BadInputs) {
  absl::StatusOr<DualHeadLoss> heads =
      DualHead(torch::zeros({1, 3}), torch::zeros({1, 4}), torch::zeros({1, 4}), Labels({0}));
  EXPECT_EQ(heads.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(heads.status().message(), HasSubstr("aux_logits has shape [1, 4]"));
  DhkdOptions options;
  options.temperature = 0;
  absl::StatusOr<DualHeadLoss> cold = DualHead(torch::zeros({1, 3}), torch::zeros({1, 3}),
                                               torch::zeros({1, 3}), Labels({0}), options);
  EXPECT_THAT(cold.status().message(), HasSubstr("temperature is 0"));
  absl::StatusOr<DualHeadLoss> teacher =
      DualHead(torch::zeros({2, 3}), torch::zeros({2, 3}), torch::zeros({1, 3}), Labels({0, 1}));
  EXPECT_THAT(teacher.status().message(), HasSubstr("teacher has shape [1, 3]"));
}

TEST(AlignGradientsTest, ProjectsOnlyWhenConflictingOverAllParameters) {
  // g_ce = [1 | 0], g_kd = [-1 | 1]: dot -1, so g_kd -> [0 | 1]; merged [1 | 1].
  absl::StatusOr<std::vector<at::Tensor>> conflict =
      AlignGradients({Vector({1}), Vector({0})}, {Vector({-1}), Vector({1})});
  ASSERT_TRUE(conflict.ok()) << conflict.status();
  EXPECT_TRUE(torch::allclose((*conflict)[0], Vector({1}), 0, kTolerance));
  EXPECT_TRUE(torch::allclose((*conflict)[1], Vector({1}), 0, kTolerance));
  // No conflict: plain sum.
  absl::StatusOr<std::vector<at::Tensor>> agree =
      AlignGradients({Vector({1}), Vector({0})}, {Vector({1}), Vector({1})});
  ASSERT_TRUE(agree.ok());
  EXPECT_TRUE(torch::allclose((*agree)[0], Vector({2}), 0, kTolerance));
  EXPECT_TRUE(torch::allclose((*agree)[1], Vector({1}), 0, kTolerance));
  // The dot product is over the whole flattened vector, not per parameter: g_ce = [1 | 1],
  // g_kd = [-1 | 0.5], dot -0.5, |g_ce|^2 = 2, g_kd -> [-0.75 | 0.75]; merged [0.25 | 1.75]
  // (the second parameter alone does not conflict, but is still changed).
  absl::StatusOr<std::vector<at::Tensor>> global =
      AlignGradients({Vector({1}), Vector({1})}, {Vector({-1}), Vector({0.5})});
  ASSERT_TRUE(global.ok());
  EXPECT_TRUE(torch::allclose((*global)[0], Vector({0.25}), 0, kTolerance));
  EXPECT_TRUE(torch::allclose((*global)[1], Vector({1.75}), 0, kTolerance));
  // An undefined entry (a head one loss does not reach) is zero.
  absl::StatusOr<std::vector<at::Tensor>> unused =
      AlignGradients({Vector({1, 0}), at::Tensor()}, {Vector({-1, 0}), Vector({3})});
  ASSERT_TRUE(unused.ok()) << unused.status();
  EXPECT_TRUE(torch::allclose((*unused)[0], Vector({1, 0}), 0, kTolerance));
  EXPECT_TRUE(torch::allclose((*unused)[1], Vector({3}), 0, kTolerance));
}

TEST(AlignGradientsTest, BadInputs) {
  absl::StatusOr<std::vector<at::Tensor>> count = AlignGradients({Vector({1})}, {});
  EXPECT_THAT(count.status().message(), HasSubstr("ce_grads has 1 tensors and kd_grads 0"));
  absl::StatusOr<std::vector<at::Tensor>> shape = AlignGradients({Vector({1})}, {Vector({1, 2})});
  EXPECT_THAT(shape.status().message(), HasSubstr("ce_grads[0] has shape [1]"));
}

// A tiny two-head network: backbone h = tanh(W x), heads z1 = A h, z2 = C h, teacher fixed.
struct TinyNetwork {
  at::Tensor backbone = Matrix({{0.5, -1.0}, {1.5, 0.25}}).requires_grad_(true);
  at::Tensor main_head = Matrix({{1.0, -0.5}, {-1.0, 2.0}, {0.3, 0.1}}).requires_grad_(true);
  at::Tensor aux_head = Matrix({{0.2, 0.4}, {-0.6, 1.0}, {0.9, -0.3}}).requires_grad_(true);
  at::Tensor inputs = Matrix({{1.0, 2.0}, {-1.0, 0.5}});
  at::Tensor teacher = Matrix({{3.0, -1.0, 0.0}, {-2.0, 2.5, 1.0}});
  at::Tensor labels = Labels({1, 2});

  at::Tensor Features() const { return torch::tanh(inputs.matmul(backbone.t())); }
};

TEST(DualHeadGradientsTest, MatchesBackwardWithoutAlignmentAndLeavesGradAlone) {
  TinyNetwork net;
  const at::Tensor h = net.Features();
  absl::StatusOr<DualHeadLoss> loss =
      DualHead(h.matmul(net.main_head.t()), h.matmul(net.aux_head.t()), net.teacher, net.labels);
  ASSERT_TRUE(loss.ok());
  const std::vector<at::Tensor> parameters = {net.backbone, net.main_head, net.aux_head};
  absl::StatusOr<std::vector<at::Tensor>> plain = DualHeadGradients(*loss, parameters, false);
  ASSERT_TRUE(plain.ok()) << plain.status();
  absl::StatusOr<std::vector<at::Tensor>> aligned = DualHeadGradients(*loss, parameters, true);
  ASSERT_TRUE(aligned.ok()) << aligned.status();
  for (const at::Tensor& p : parameters) EXPECT_FALSE(p.grad().defined());

  // Aligned: whatever was removed from g_kd is along g_ce, and what is left does not conflict.
  std::vector<at::Tensor> ce_grads =
      torch::autograd::grad({loss->ce}, parameters, {}, true, false, true);
  ce_grads[2] = torch::zeros_like(net.aux_head);  // CE does not reach the auxiliary head
  const std::vector<at::Tensor> kd_grads =
      torch::autograd::grad({loss->distill}, parameters, {}, true, false, true);
  EXPECT_FALSE(kd_grads[1].defined());  // nor BinaryKL-Norm the main head
  absl::StatusOr<std::vector<at::Tensor>> expected = AlignGradients(ce_grads, kd_grads);
  ASSERT_TRUE(expected.ok());
  double kept_dot = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(torch::allclose((*aligned)[i], (*expected)[i], 0, kTolerance));
    kept_dot += ((*aligned)[i] - ce_grads[i]).mul(ce_grads[i]).sum().item<double>();
  }
  EXPECT_GE(kept_dot, -1e-12);
  // The graph is kept: backward still works, and gives the unaligned gradient.
  loss->total.backward();
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(torch::allclose((*plain)[i], parameters[i].grad(), 0, kTolerance));
  }
}

TEST(GradientCosineTest, ByHandOnLinearLosses) {
  at::Tensor head = Vector({0.3, -0.7}).requires_grad_(true);
  at::Tensor backbone = Vector({1.2, 0.4}).requires_grad_(true);
  // grad_a = ([1, 0] | [1, 1]), grad_b = ([-2, 0] | [3, 0]): head cosine -1, backbone 1/sqrt 2.
  const at::Tensor loss_a = head[0] + backbone.sum();
  const at::Tensor loss_b = -2 * head[0] + 3 * backbone[0];
  absl::StatusOr<GradientCosines> cosines = GradientCosine(loss_a, loss_b, {head}, {backbone});
  ASSERT_TRUE(cosines.ok()) << cosines.status();
  EXPECT_NEAR(cosines->head, -1, kTolerance);
  EXPECT_NEAR(cosines->backbone, 1 / std::sqrt(2.0), kTolerance);
  EXPECT_FALSE(head.grad().defined());
  // A loss that does not reach the backbone: cosine 0 there.
  absl::StatusOr<GradientCosines> unreached =
      GradientCosine(loss_a, 5 * head[1], {head}, {backbone});
  ASSERT_TRUE(unreached.ok()) << unreached.status();
  EXPECT_NEAR(unreached->head, 0, kTolerance);
  EXPECT_EQ(unreached->backbone, 0);
}

TEST(GradientCosineTest, MechanismTestOnOneHead) {
  // The failure case (CE + BinaryKL on one head): cosines are defined and the graph survives.
  TinyNetwork net;
  const at::Tensor z = net.Features().matmul(net.main_head.t());
  DhkdOptions options;
  options.distill = DistillLoss::kBinaryKl;
  absl::StatusOr<DualHeadLoss> loss = DualHead(z, z, net.teacher, net.labels, options);
  ASSERT_TRUE(loss.ok());
  absl::StatusOr<GradientCosines> cosines =
      GradientCosine(loss->ce, loss->distill, {net.main_head}, {net.backbone});
  ASSERT_TRUE(cosines.ok()) << cosines.status();
  // Against hand-flattened autograd gradients.
  const std::vector<at::Tensor> ce =
      torch::autograd::grad({loss->ce}, {net.main_head, net.backbone}, {}, true);
  const std::vector<at::Tensor> kd =
      torch::autograd::grad({loss->distill}, {net.main_head, net.backbone}, {}, true);
  const auto cosine = [](const at::Tensor& a, const at::Tensor& b) {
    return (a * b).sum().item<double>() / (a.norm().item<double>() * b.norm().item<double>());
  };
  EXPECT_NEAR(cosines->head, cosine(ce[0], kd[0]), kTolerance);
  EXPECT_NEAR(cosines->backbone, cosine(ce[1], kd[1]), kTolerance);
  EXPECT_NO_THROW(loss->total.backward());
}

TEST(GradientCosineTest, BadInputs) {
  at::Tensor head = Vector({1}).requires_grad_(true);
  const at::Tensor loss = head.sum();
  absl::StatusOr<GradientCosines> empty = GradientCosine(loss, loss, {head}, {});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("backbone_parameters is empty"));
  absl::StatusOr<GradientCosines> frozen = GradientCosine(loss, loss, {head}, {Vector({1})});
  EXPECT_THAT(frozen.status().message(), HasSubstr("backbone_parameters[0]"));
  absl::StatusOr<GradientCosines> vector = GradientCosine(head.repeat({2}), loss, {head}, {head});
  EXPECT_THAT(vector.status().message(), HasSubstr("loss_a has shape [2]"));
  absl::StatusOr<GradientCosines> detached = GradientCosine(loss.detach(), loss, {head}, {head});
  EXPECT_THAT(detached.status().message(), HasSubstr("loss_a"));
}

// ---- The arms as trainer recipes (dhkd_recipe.h).

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

train::Classifier Mlp(const std::vector<train::HeadSpec>& heads, uint64_t seed) {
  train::ModelOptions options;
  options.architecture = train::Architecture::kMlp;
  options.mlp_hidden = {16};
  options.heads = heads;
  torch::manual_seed(seed);
  return *train::MakeClassifier(options);
}

// A 12-image dataset of random pixels, and its batch of rows {5, 0, 7}.
data::Dataset SmallDataset() {
  data::Dataset dataset;
  dataset.rows = dataset.cols = 28;
  dataset.num_classes = 10;
  std::mt19937_64 random(9);
  for (int i = 0; i < 12 * 28 * 28; ++i) dataset.images.push_back(random() % 256);
  for (int i = 0; i < 12; ++i) dataset.labels.push_back(i % 10);
  return dataset;
}

train::Batch BatchOf(const data::Dataset& dataset, const std::vector<int64_t>& indices) {
  std::vector<int64_t> labels;
  for (int64_t i : indices) labels.push_back(dataset.labels[i]);
  return train::Batch{train::ImagesToTensor(dataset, indices), Labels(labels), indices};
}

TEST(DhkdRecipeTest, ParsesEveryArmAndNamesABadOne) {
  for (Arm arm : {Arm::kCe, Arm::kKd, Arm::kBkl, Arm::kCeBkl, Arm::kDhkd}) {
    EXPECT_EQ(*ParseArm(ArmName(arm)), arm);
  }
  EXPECT_THAT(ParseArm("dkd").status().message(), HasSubstr("'dkd'"));
}

TEST(DhkdRecipeTest, BadOptionsAreErrorsNamingThem) {
  ArmOptions options;
  options.cosine_every = 0;
  options.arm = Arm::kKd;
  EXPECT_THAT(MakeRecipe(options, 10, nullptr).status().message(), HasSubstr("needs a teacher"));
  TeacherFn teacher = [](const train::Batch& batch) { return torch::zeros({1, 10}); };
  options.dhkd.temperature = 0;
  EXPECT_THAT(MakeRecipe(options, 10, teacher).status().message(), HasSubstr("temperature 0"));
  options = ArmOptions();
  options.cosine_every = 10;  // and no cosine_log
  EXPECT_THAT(MakeRecipe(options, 10, teacher).status().message(), HasSubstr("cosine_log"));
  options.cosine_log = "/no/such/dir/cosine.csv";
  EXPECT_THAT(MakeRecipe(options, 10, teacher).status().message(),
              HasSubstr("/no/such/dir/cosine.csv"));
  options = ArmOptions();
  options.cosine_every = 0;
  options.aux_hidden = -2;
  EXPECT_THAT(MakeRecipe(options, 10, teacher).status().message(), HasSubstr("aux_hidden is -2"));
}

TEST(DhkdRecipeTest, PrecomputedTeacherEqualsTheTeacherOnEachBatch) {
  const data::Dataset dataset = SmallDataset();
  train::Classifier teacher = Mlp({{"main", 10}}, 1);
  absl::StatusOr<TeacherFn> live = MakeTeacher(teacher, nullptr);
  absl::StatusOr<TeacherFn> precomputed = MakeTeacher(teacher, &dataset);
  ASSERT_TRUE(live.ok() && precomputed.ok());
  const train::Batch batch = BatchOf(dataset, {5, 0, 7});
  const at::Tensor expected = (*live)(batch);
  EXPECT_EQ(expected.sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_FALSE(expected.requires_grad());
  EXPECT_TRUE(torch::allclose((*precomputed)(batch), expected, 1e-5, 1e-6));
}

TEST(DhkdRecipeTest, AlignedDhkdStepsWithTheAlignedGradients) {
  const data::Dataset dataset = SmallDataset();
  absl::StatusOr<TeacherFn> teacher = MakeTeacher(Mlp({{"main", 10}}, 1), &dataset);
  ASSERT_TRUE(teacher.ok());
  ArmOptions options;  // dhkd, BinaryKL-Norm, aligned, linear auxiliary head
  options.cosine_every = 0;
  absl::StatusOr<train::Recipe> recipe = MakeRecipe(options, 10, *teacher);
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  ASSERT_EQ(recipe->heads.size(), 2u);
  EXPECT_EQ(recipe->heads[1].name, "aux");
  train::Classifier student = Mlp(recipe->heads, 2);
  const train::Batch batch = BatchOf(dataset, {1, 2, 3, 4, 5, 6});
  std::mt19937_64 random(1);
  train::LossInput input{*student, batch, random, 0, 0};
  const at::Tensor loss = recipe->loss(input);
  loss.backward();
  std::vector<at::Tensor> parameters = student->parameters();
  std::vector<at::Tensor> stepped;
  for (const at::Tensor& p : parameters) stepped.push_back(p.grad().clone());

  train::HeadLogits logits = student->Forward(batch.images);
  absl::StatusOr<DualHeadLoss> expected =
      DualHead(logits.at("main"), logits.at("aux"), (*teacher)(batch), batch.labels);
  ASSERT_TRUE(expected.ok());
  EXPECT_NEAR(loss.item<double>(), expected->total.item<double>(), 1e-6);
  absl::StatusOr<std::vector<at::Tensor>> aligned =
      DualHeadGradients(*expected, parameters, /*align=*/true);
  ASSERT_TRUE(aligned.ok());
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(torch::allclose(stepped[i], (*aligned)[i], 1e-5, 1e-7)) << "parameter " << i;
  }
}

TEST(DhkdRecipeTest, OneHeadArmLogsTheGradientCosines) {
  const data::Dataset dataset = SmallDataset();
  absl::StatusOr<TeacherFn> teacher = MakeTeacher(Mlp({{"main", 10}}, 1), &dataset);
  ArmOptions options;
  options.arm = Arm::kCeBkl;
  options.cosine_every = 2;
  options.cosine_log = TempPath("ce_bkl_cosine.csv");
  std::remove(options.cosine_log.c_str());
  absl::StatusOr<train::Recipe> recipe = MakeRecipe(options, 10, *teacher);
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  ASSERT_EQ(recipe->heads.size(), 1u);  // one head: the failure case
  train::Classifier student = Mlp(recipe->heads, 2);
  const train::Batch batch = BatchOf(dataset, {0, 1, 2, 3});
  std::mt19937_64 random(1);
  for (int64_t step = 0; step < 5; ++step) {
    train::LossInput input{*student, batch, random, 0, step};
    recipe->loss(input).backward();
  }
  std::ifstream csv(options.cosine_log);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);  // header, steps 0, 2 and 4
  EXPECT_EQ(lines[0], "step,epoch,head_cosine,backbone_cosine");
  EXPECT_EQ(lines[2].substr(0, 4), "2,0,");
  double head = 0, backbone = 0;
  ASSERT_EQ(std::sscanf(lines[1].c_str(), "0,0,%lf,%lf", &head, &backbone), 2);
  EXPECT_GE(head, -1.0);
  EXPECT_LE(head, 1.0);
  EXPECT_NE(head, 0.0);  // both losses reach the shared head
  EXPECT_NE(backbone, 0.0);
}

}  // namespace
}  // namespace troupe::methods::dhkd
