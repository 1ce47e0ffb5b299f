// Tests of the model-update checks, FedAvg/FedProx (by hand), FedProx's proximal term, FedLD's
// principal-gradient aggregation against a worked example, its sign alignment, fallbacks and
// zero-inner-product guard, the exact state round trip, and every bad input.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eigen3/Eigen/Core"
#include "federation/strategies/fedavg.h"
#include "federation/strategies/fedld.h"
#include "federation/strategies/fedprox.h"
#include "federation/strategies/model_update.h"
#include "federation/strategies/strategy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace troupe::federation::strategies {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kTolerance = 1e-5;

void ExpectInvalid(const absl::Status& status, const std::string& message_part) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(message_part));
}

void ExpectTensor(const Model& model, size_t t, std::initializer_list<double> want) {
  ASSERT_LT(t, model.size());
  ASSERT_EQ(model[t].data.size(), want.size()) << model[t].name;
  size_t i = 0;
  for (double value : want) {
    EXPECT_NEAR(model[t].data[i], value, kTolerance) << model[t].name << " value " << i;
    ++i;
  }
}

// A two-tensor model: "fc.weight" [1, 2] and "fc.bias" [1].
Model TwoTensors(float w0, float w1, float b) {
  return {{"fc.weight", {1, 2}, {w0, w1}}, {"fc.bias", {1}, {b}}};
}

// Clients whose models are `global` plus the given deltas (weight delta, bias delta).
std::vector<ClientUpdate> ClientsAt(const Model& global,
                                    const std::vector<std::vector<float>>& deltas) {
  std::vector<ClientUpdate> updates;
  for (size_t i = 0; i < deltas.size(); ++i) {
    updates.push_back(
        {"client-" + std::to_string(i),
         TwoTensors(global[0].data[0] + deltas[i][0], global[0].data[1] + deltas[i][1],
                    global[1].data[0] + deltas[i][2]),
         /*num_samples=*/100});
  }
  return updates;
}

// ---------------------------------------------------------------- model updates ----------------

TEST(ModelUpdateTest, FlattenAndUnflattenRoundTrip) {
  const Model model = TwoTensors(1, 2, 3);
  const std::vector<float> flat = FlattenModel(model);
  EXPECT_THAT(flat, ElementsAre(1, 2, 3));
  absl::StatusOr<Model> back = UnflattenModel(model, flat);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)[0].name, "fc.weight");
  EXPECT_EQ((*back)[0].shape, (std::vector<int64_t>{1, 2}));
  EXPECT_THAT((*back)[1].data, ElementsAre(3));
  EXPECT_EQ(NumElements({}), 1);
  ExpectInvalid(UnflattenModel(model, std::vector<float>{1, 2}).status(), "holds 2 values");
}

TEST(ModelUpdateTest, RejectsEveryBadInput) {
  const Model global = TwoTensors(0, 0, 0);
  auto one = [&](ClientUpdate update) { return std::vector<ClientUpdate>{std::move(update)}; };
  EXPECT_TRUE(ValidateUpdates(global, one({"a", TwoTensors(1, 1, 1), 1})).ok());

  ExpectInvalid(ValidateUpdates(global, {}), "no client updates");
  ExpectInvalid(ValidateUpdates(global, one({"a", TwoTensors(1, 1, 1), 0})),
                "client 'a': num_samples is 0");
  ExpectInvalid(
      ValidateUpdates(global, {{"a", TwoTensors(1, 1, 1), 1}, {"a", TwoTensors(1, 1, 1), 1}}),
      "client 'a' sent two updates");
  ExpectInvalid(ValidateUpdates(global, one({"a", {TwoTensors(1, 1, 1)[0]}, 1})),
                "client 'a' sent 1 tensors but the global model has 2");
  Model renamed = TwoTensors(1, 1, 1);
  renamed[1].name = "fc.b";
  ExpectInvalid(ValidateUpdates(global, one({"a", renamed, 1})),
                "client 'a': tensor #1 is 'fc.b' but the global model's is 'fc.bias'");
  Model reshaped = TwoTensors(1, 1, 1);
  reshaped[0].shape = {2, 1};
  ExpectInvalid(
      ValidateUpdates(global, one({"a", reshaped, 1})),
      "client 'a': tensor 'fc.weight' has shape [2, 1] but the global model's has [1, 2]");
  ExpectInvalid(ValidateUpdates(global, one({"a", TwoTensors(1, NAN, 1), 1})),
                "client 'a': tensor 'fc.weight' value 1 is nan");
  ExpectInvalid(ValidateUpdates(global, one({"a", TwoTensors(1, 1, INFINITY), 1})),
                "client 'a': tensor 'fc.bias' value 0 is inf");
  ExpectInvalid(ValidateUpdates(TwoTensors(0, 0, -INFINITY), one({"a", TwoTensors(1, 1, 1), 1})),
                "global model: tensor 'fc.bias' value 0 is -inf");
  Model short_data = TwoTensors(0, 0, 0);
  short_data[0].data.pop_back();
  ExpectInvalid(ValidateModel(short_data, "global model"),
                "tensor 'fc.weight' has shape [1, 2] (2 values) but holds 1 values");
  Model twice = TwoTensors(0, 0, 0);
  twice[1].name = "fc.weight";
  twice[1].shape = {1};
  ExpectInvalid(ValidateModel(twice, "global model"), "tensor 'fc.weight' appears twice");
  Model unnamed = TwoTensors(0, 0, 0);
  unnamed[0].name = "";
  ExpectInvalid(ValidateModel(unnamed, "global model"), "tensor #0 has an empty name");
  Model negative = TwoTensors(0, 0, 0);
  negative[0].shape = {-1, -2};
  ExpectInvalid(ValidateModel(negative, "global model"), "negative dimension");
}

// ---------------------------------------------------------------- FedAvg / FedProx -------------

// Three clients, weights n = 1, 3, 4 (sum 8):
//   fc.weight[0] = (1*1 + 3*5 + 4*0) / 8 = 16/8 = 2
//   fc.weight[1] = (1*2 + 3*(-2) + 4*8) / 8 = 28/8 = 3.5
//   fc.bias      = (1*3 + 3*(-1) + 4*2) / 8 = 8/8 = 1
TEST(FedAvgTest, WeighsClientModelsBySampleCount) {
  const Model global = TwoTensors(100, 100, 100);  // only names and shapes matter
  const std::vector<ClientUpdate> updates = {{"a", TwoTensors(1, 2, 3), 1},
                                             {"b", TwoTensors(5, -2, -1), 3},
                                             {"c", TwoTensors(0, 8, 2), 4}};
  absl::StatusOr<Model> next = FedAvgAggregate(global, updates);
  ASSERT_TRUE(next.ok()) << next.status();
  ExpectTensor(*next, 0, {2, 3.5});
  ExpectTensor(*next, 1, {1});

  for (const char* name : {"fedavg", "fedprox"}) {
    absl::StatusOr<std::unique_ptr<Strategy>> strategy = MakeStrategy(name, StrategyOptions());
    ASSERT_TRUE(strategy.ok()) << strategy.status();
    absl::StatusOr<Model> via_strategy = (*strategy)->Aggregate(1, global, updates);
    ASSERT_TRUE(via_strategy.ok()) << via_strategy.status();
    EXPECT_EQ((*via_strategy)[0].data, (*next)[0].data) << name;
    EXPECT_EQ((*via_strategy)[1].data, (*next)[1].data) << name;
    ExpectInvalid((*strategy)->Aggregate(0, global, updates).status(), "rounds count from 1");
  }
}

// local - global = (0.5, 0, -2), mu = 0.1:
//   penalty  = 0.1/2 * (0.25 + 0 + 4) = 0.2125
//   gradient = 0.1 * (0.5, 0, -2) = (0.05, 0, -0.2); added to (1, 1, 1): (1.05, 1, 0.8)
TEST(FedProxTest, ProximalTermAndGradientByHand) {
  const std::vector<float> local = {1, 2, -1};
  const std::vector<float> global = {0.5, 2, 1};
  absl::StatusOr<double> penalty = FedProxPenalty(local, global, 0.1);
  ASSERT_TRUE(penalty.ok()) << penalty.status();
  EXPECT_NEAR(*penalty, 0.2125, 1e-9);
  absl::StatusOr<std::vector<float>> gradient = FedProxGradient(local, global, 0.1);
  ASSERT_TRUE(gradient.ok()) << gradient.status();
  EXPECT_NEAR((*gradient)[0], 0.05, 1e-7);
  EXPECT_NEAR((*gradient)[1], 0.0, 1e-7);
  EXPECT_NEAR((*gradient)[2], -0.2, 1e-7);
  std::vector<float> loss_gradient = {1, 1, 1};
  ASSERT_TRUE(AddFedProxGradient(local, global, 0.1, absl::MakeSpan(loss_gradient)).ok());
  EXPECT_NEAR(loss_gradient[0], 1.05, 1e-6);
  EXPECT_NEAR(loss_gradient[1], 1.0, 1e-6);
  EXPECT_NEAR(loss_gradient[2], 0.8, 1e-6);
  EXPECT_EQ(FedProxOptions().mu, 0.01);
}

TEST(FedProxTest, RejectsBadInputs) {
  const std::vector<float> three = {1, 2, 3};
  const std::vector<float> two = {1, 2};
  ExpectInvalid(FedProxPenalty(three, three, -1).status(), "mu is -1");
  ExpectInvalid(FedProxGradient(three, three, NAN).status(), "mu is nan");
  ExpectInvalid(FedProxGradient(three, two, 0.1).status(), "local has 3 values but global has 2");
  std::vector<float> gradient = {0, 0};
  ExpectInvalid(AddFedProxGradient(three, three, 0.1, absl::MakeSpan(gradient)),
                "gradient has 2 values but local has 3");
  StrategyOptions options;
  options.fedprox.mu = -0.5;
  ExpectInvalid(MakeStrategy("fedprox", options).status(), "mu is -0.5");
}

// ---------------------------------------------------------------- FedLD ------------------------

// The worked example: m = 3 clients, d = 2, deltas (rows of G)
//   g1 = (4, 1), g2 = (2, 4), g3 = (-1, -2);  ||g1|| = sqrt(17), ||g2|| = 2 sqrt(5), ||g3|| =
//   sqrt(5)
// G^T G = [[16+4+1, 4+8+2], [14, 1+16+4]] = [[21, 14], [14, 21]]: eigenvalues 35 and 7 with
// eigenvectors (1, 1)/sqrt(2) and (1, -1)/sqrt(2). K = G G^T / 3 has the same nonzero spectrum
// divided by m: s = (35/3, 7/3, 0), sum s = 14; k = floor(3 * 0.8) = 2; weights s_j / sum s =
// 5/6 and 1/6 (the third eigenvalue is 0, so it adds nothing to the denominator here).
//   w1 = (1, 1)/sqrt(2):  <g_i, w1> = 5/sqrt2, 6/sqrt2, -3/sqrt2  -> 2 of 3 >= 0, kept
//   w2 = (1, -1)/sqrt(2): <g_i, w2> = 3/sqrt2, -2/sqrt2, 1/sqrt2  -> 2 of 3 >= 0, kept
//   votes: v1 = (sqrt17 + 2 sqrt5 - sqrt5)/3 = (sqrt17 + sqrt5)/3 = 2.1197245
//          v2 = (sqrt17 - 2 sqrt5 + sqrt5)/3 = (sqrt17 - sqrt5)/3 = 0.6290125
//   Delta = 5/6 v1 (1,1)/sqrt2 + 1/6 v2 (1,-1)/sqrt2
//         = (1.2490591 + 0.0741304, 1.2490591 - 0.0741304) = (1.3231895, 1.1749298)
// The plain mean is (5/3, 1).
Eigen::MatrixXd WorkedDeltas() {
  Eigen::MatrixXd deltas(3, 2);
  deltas << 4, 1, 2, 4, -1, -2;
  return deltas;
}

TEST(FedLdTest, PrincipalDirectionsOfTheWorkedExample) {
  absl::StatusOr<PrincipalComponents> pc = PrincipalDirections(WorkedDeltas(), FedLdOptions());
  ASSERT_TRUE(pc.ok()) << pc.status();
  ASSERT_EQ(pc->eigenvalues.size(), 3);
  EXPECT_NEAR(pc->eigenvalues(0), 35.0 / 3, 1e-9);
  EXPECT_NEAR(pc->eigenvalues(1), 7.0 / 3, 1e-9);
  EXPECT_NEAR(pc->eigenvalues(2), 0.0, 1e-9);
  ASSERT_EQ(pc->directions.rows(), 2);
  const double r = 1 / std::sqrt(2.0);
  EXPECT_NEAR(pc->directions(0, 0), r, 1e-9);
  EXPECT_NEAR(pc->directions(0, 1), r, 1e-9);
  EXPECT_NEAR(pc->directions(1, 0), r, 1e-9);
  EXPECT_NEAR(pc->directions(1, 1), -r, 1e-9);
  EXPECT_NEAR(pc->votes(0), (std::sqrt(17.0) + std::sqrt(5.0)) / 3, 1e-9);
  EXPECT_NEAR(pc->votes(1), (std::sqrt(17.0) - std::sqrt(5.0)) / 3, 1e-9);

  absl::StatusOr<Eigen::VectorXd> delta = PrincipalGradient(WorkedDeltas(), FedLdOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_NEAR((*delta)(0), 1.3231895, 1e-6);
  EXPECT_NEAR((*delta)(1), 1.1749298, 1e-6);
}

// Two rounds of the worked example on a model with "fc.weight" [1, 2] (the deltas above) and
// "fc.bias" [1] (deltas 0.5, -1, 1.25, mean 0.25), from fc.weight = (0.5, -0.5), fc.bias = 0.25.
//   Round 1 (no history): plain mean everywhere, h = the mean.
//     fc.weight = (0.5 + 5/3, -0.5 + 1) = (2.1666667, 0.5), fc.bias = 0.5
//     h(fc.weight) = (5/3, 1), h(fc.bias) = 0.25
//   Round 2 (same deltas): fc.weight takes the principal gradient, fc.bias (d = 1) the mean.
//     fc.weight = (2.1666667 + 1.3231895, 0.5 + 1.1749298) = (3.4898562, 1.6749298)
//     fc.bias = 0.75
//     h(fc.weight) = 0.99 (5/3, 1) + 0.01 (1.3231895, 1.1749298) = (1.6632319, 1.0017493)
//     h(fc.bias) = 0.99 * 0.25 + 0.01 * 0.25 = 0.25
TEST(FedLdTest, TwoRoundsOfTheWorkedExample) {
  const std::vector<std::vector<float>> deltas = {{4, 1, 0.5}, {2, 4, -1}, {-1, -2, 1.25}};
  const Model start = TwoTensors(0.5, -0.5, 0.25);
  absl::StatusOr<FedLdRound> first =
      FedLdAggregate(1, start, ClientsAt(start, deltas), FedLdHistory(), FedLdOptions());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->routes, ElementsAre(FedLdRoute::kMeanFirst, FedLdRoute::kMeanFirst));
  ExpectTensor(first->global, 0, {0.5 + 5.0 / 3, 0.5});
  ExpectTensor(first->global, 1, {0.5});
  EXPECT_NEAR(first->history.at("fc.weight")[0], 5.0 / 3, kTolerance);
  EXPECT_NEAR(first->history.at("fc.weight")[1], 1.0, kTolerance);
  EXPECT_NEAR(first->history.at("fc.bias")[0], 0.25, kTolerance);

  absl::StatusOr<FedLdRound> second = FedLdAggregate(
      2, first->global, ClientsAt(first->global, deltas), first->history, FedLdOptions());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->routes, ElementsAre(FedLdRoute::kPrincipal, FedLdRoute::kMeanScalar));
  ExpectTensor(second->global, 0, {3.4898562, 1.6749298});
  ExpectTensor(second->global, 1, {0.75});
  EXPECT_NEAR(second->history.at("fc.weight")[0], 1.6632319, kTolerance);
  EXPECT_NEAR(second->history.at("fc.weight")[1], 1.0017493, kTolerance);
  EXPECT_NEAR(second->history.at("fc.bias")[0], 0.25, kTolerance);

  // The Strategy gives the same models.
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = MakeStrategy("fedld", StrategyOptions());
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  absl::StatusOr<Model> one = (*strategy)->Aggregate(1, start, ClientsAt(start, deltas));
  ASSERT_TRUE(one.ok()) << one.status();
  absl::StatusOr<Model> two = (*strategy)->Aggregate(2, *one, ClientsAt(*one, deltas));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)[0].data, second->global[0].data);
  EXPECT_EQ((*two)[1].data, second->global[1].data);
}

// g = (-3, 0), (-2, 0), (1, 0): rank 1, the only direction is +-(1, 0); two of three clients
// point along -(1, 0), so alignment must return (-1, 0) whatever sign the eigensolver chose.
//   s_1 = (9 + 4 + 1)/3 = 14/3 = sum s; vote = (3 + 2 - 1)/3 = 4/3; Delta = (-4/3, 0).
TEST(FedLdTest, SignAlignmentFollowsTheMajority) {
  Eigen::MatrixXd deltas(3, 2);
  deltas << -3, 0, -2, 0, 1, 0;
  absl::StatusOr<PrincipalComponents> pc = PrincipalDirections(deltas, FedLdOptions());
  ASSERT_TRUE(pc.ok()) << pc.status();
  ASSERT_EQ(pc->directions.rows(), 1);  // the second eigenvalue is 0: null space, skipped
  EXPECT_NEAR(pc->directions(0, 0), -1.0, 1e-12);
  EXPECT_NEAR(pc->directions(0, 1), 0.0, 1e-12);
  EXPECT_NEAR(pc->votes(0), 4.0 / 3, 1e-12);
  absl::StatusOr<Eigen::VectorXd> delta = PrincipalGradient(deltas, FedLdOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_NEAR((*delta)(0), -4.0 / 3, 1e-12);
  EXPECT_NEAR((*delta)(1), 0.0, 1e-12);

  // In general: every kept direction has a majority of clients with <g_i, w_j> >= 0, and
  // negating every delta negates every direction and the update.
  Eigen::MatrixXd mixed(5, 4);
  mixed << 1, -2, 0.5, 3, -1, -1, 2, 0.25, 0.5, 1.5, -3, 1, 2, 0, 1, -1, -0.5, -2.5, 0.75, 2;
  FedLdOptions options;
  absl::StatusOr<PrincipalComponents> mixed_pc = PrincipalDirections(mixed, options);
  ASSERT_TRUE(mixed_pc.ok()) << mixed_pc.status();
  EXPECT_EQ(mixed_pc->directions.rows(), 4);  // k = floor(5 * 0.8)
  for (Eigen::Index j = 0; j < mixed_pc->directions.rows(); ++j) {
    const Eigen::VectorXd dots = mixed * mixed_pc->directions.row(j).transpose();
    EXPECT_GE((dots.array() >= 0).count(), 3) << "direction " << j;
  }
  absl::StatusOr<Eigen::VectorXd> plus = PrincipalGradient(mixed, options);
  absl::StatusOr<Eigen::VectorXd> minus = PrincipalGradient(-mixed, options);
  ASSERT_TRUE(plus.ok() && minus.ok());
  EXPECT_TRUE(plus->isApprox(-*minus, 1e-12)) << plus->transpose() << " vs " << minus->transpose();
}

// g1 = (1, 0), g2 = (-1, 0), g3 = (0, 1): G G^T = [[1, -1, 0], [-1, 1, 0], [0, 0, 1]], so
// s = (2/3, 1/3, 0), sum s = 1, k = 2, w1 = +-(1, 0), w2 = (0, 1).
//   <g3, w1> = 0 and <g1, w2> = <g2, w2> = 0: the original's sgn is 0/0 = NaN there.
// With sgn(0) = 0: v1 = (1 - 1 + 0)/3 = 0, v2 = (0 + 0 + 1)/3 = 1/3, Delta = 1/3 * 1/3 (0, 1)
// = (0, 1/9). (With sgn(0) = +1 it would be (2/9, 1/3) or (0, 1/3) depending on w1's sign.)
TEST(FedLdTest, ZeroInnerProductsVoteZero) {
  Eigen::MatrixXd deltas(3, 2);
  deltas << 1, 0, -1, 0, 0, 1;
  absl::StatusOr<Eigen::VectorXd> delta = PrincipalGradient(deltas, FedLdOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  ASSERT_TRUE(delta->allFinite());
  EXPECT_NEAR((*delta)(0), 0.0, 1e-12);
  EXPECT_NEAR((*delta)(1), 1.0 / 9, 1e-12);
}

// g1 = (2, 0, 0), g2 = (0, 1, 0), g3 = (0, 0, 0.5): s = (4/3, 1/3, 1/12), sum s = 7/4, k = 2.
//   Delta = (4/3)/(7/4) * (2/3) e1 + (1/3)/(7/4) * (1/3) e2 = (32/63, 4/63, 0)
// Dividing by the k kept eigenvalues only (5/3) would give (8/15, 1/15, 0).
TEST(FedLdTest, WeightsDivideByAllEigenvalues) {
  Eigen::MatrixXd deltas(3, 3);
  deltas << 2, 0, 0, 0, 1, 0, 0, 0, 0.5;
  absl::StatusOr<Eigen::VectorXd> delta = PrincipalGradient(deltas, FedLdOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_NEAR((*delta)(0), 32.0 / 63, 1e-12);
  EXPECT_NEAR((*delta)(1), 4.0 / 63, 1e-12);
  EXPECT_NEAR((*delta)(2), 0.0, 1e-12);
}

TEST(FedLdTest, EdgeCasesOfThePrincipalGradient) {
  // All deltas zero: the update is zero (as the mean), not NaN.
  absl::StatusOr<Eigen::VectorXd> zero = PrincipalGradient(Eigen::MatrixXd::Zero(3, 4), {});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_TRUE(zero->isZero());
  // One client: k = max(1, floor(0.8)) = 1 and the update is the client's delta (the original's
  // k = 0 would freeze the model).
  Eigen::MatrixXd single(1, 3);
  single << 1, -2, 2;
  absl::StatusOr<Eigen::VectorXd> alone = PrincipalGradient(single, {});
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(alone->isApprox(single.row(0).transpose(), 1e-12)) << alone->transpose();
  ExpectInvalid(PrincipalGradient(Eigen::MatrixXd(0, 3), {}).status(), "m = 0 clients");
}

// Fallbacks to the plain mean, with the worked deltas (mean (5/3, 1), principal (1.32, 1.17)).
TEST(FedLdTest, FallsBackToTheMeanWhereTheNotesSaySo) {
  const std::vector<std::vector<float>> deltas = {{4, 1, 0.5}, {2, 4, -1}, {-1, -2, 1.25}};
  const Model start = TwoTensors(0, 0, 0);
  const std::vector<ClientUpdate> clients = ClientsAt(start, deltas);
  const FedLdHistory nonzero = {{"fc.weight", {1, 1}}, {"fc.bias", {1}}};

  // Round 1, even with a history: mean, and the history restarts from it.
  absl::StatusOr<FedLdRound> first = FedLdAggregate(1, start, clients, nonzero, FedLdOptions());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->routes, ElementsAre(FedLdRoute::kMeanFirst, FedLdRoute::kMeanFirst));
  ExpectTensor(first->global, 0, {5.0 / 3, 1});
  EXPECT_NEAR(first->history.at("fc.weight")[0], 5.0 / 3, kTolerance);

  // A later round with no history for a tensor (a server resumed without its state): mean.
  absl::StatusOr<FedLdRound> missing = FedLdAggregate(7, start, clients, {}, FedLdOptions());
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_THAT(missing->routes, ElementsAre(FedLdRoute::kMeanFirst, FedLdRoute::kMeanFirst));

  // An all-zero history: mean, and the EMA moves h to 0.01 * mean.
  const FedLdHistory zeros = {{"fc.weight", {0, 0}}, {"fc.bias", {0}}};
  absl::StatusOr<FedLdRound> zero = FedLdAggregate(2, start, clients, zeros, FedLdOptions());
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_THAT(zero->routes,
              ElementsAre(FedLdRoute::kMeanZeroHistory, FedLdRoute::kMeanZeroHistory));
  ExpectTensor(zero->global, 0, {5.0 / 3, 1});
  EXPECT_NEAR(zero->history.at("fc.weight")[0], 0.01 * 5.0 / 3, 1e-7);

  // d = 1 with a history: mean; d = 2 with a history: principal.
  absl::StatusOr<FedLdRound> later = FedLdAggregate(2, start, clients, nonzero, FedLdOptions());
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_THAT(later->routes, ElementsAre(FedLdRoute::kPrincipal, FedLdRoute::kMeanScalar));
  ExpectTensor(later->global, 0, {1.3231895, 1.1749298});
  ExpectTensor(later->global, 1, {0.25});
}

// ---------------------------------------------------------------- state ------------------------

TEST(FedLdStateTest, SaveAndLoadGiveIdenticalLaterRounds) {
  // Deltas that are not exactly representable, so the history holds arbitrary floats.
  const std::vector<std::vector<float>> round_deltas[] = {
      {{0.1f, 0.7f, -0.3f}, {0.2f, -0.4f, 0.9f}, {-0.6f, 0.3f, 0.01f}},
      {{0.3f, -0.1f, 0.2f}, {-0.7f, 0.5f, 0.4f}, {0.11f, 0.13f, -0.17f}},
      {{0.9f, 0.2f, -0.5f}, {0.05f, -0.8f, 0.3f}, {-0.2f, 0.6f, 0.7f}},
  };
  absl::StatusOr<std::unique_ptr<Strategy>> original = MakeStrategy("fedld", StrategyOptions());
  ASSERT_TRUE(original.ok()) << original.status();
  Model global = TwoTensors(0.123f, -0.456f, 0.789f);
  for (int64_t round = 1; round <= 2; ++round) {
    absl::StatusOr<Model> next =
        (*original)->Aggregate(round, global, ClientsAt(global, round_deltas[round - 1]));
    ASSERT_TRUE(next.ok()) << next.status();
    global = *std::move(next);
  }
  const std::string saved = (*original)->SaveState();
  const nlohmann::json parsed = nlohmann::json::parse(saved);
  EXPECT_EQ(parsed["strategy"], "fedld");
  EXPECT_EQ(parsed["history"]["fc.weight"].size(), 2u);

  absl::StatusOr<std::unique_ptr<Strategy>> resumed = MakeStrategy("fedld", StrategyOptions());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_TRUE((*resumed)->LoadState(saved).ok());
  EXPECT_EQ((*resumed)->SaveState(), saved);

  const std::vector<ClientUpdate> third = ClientsAt(global, round_deltas[2]);
  absl::StatusOr<Model> a = (*original)->Aggregate(3, global, third);
  absl::StatusOr<Model> b = (*resumed)->Aggregate(3, global, third);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)[0].data, (*b)[0].data);  // bit for bit
  EXPECT_EQ((*a)[1].data, (*b)[1].data);
  EXPECT_EQ((*original)->SaveState(), (*resumed)->SaveState());

  // Without the state, round 3 silently falls back to the mean: the pitfall the state avoids.
  absl::StatusOr<std::unique_ptr<Strategy>> fresh = MakeStrategy("fedld", StrategyOptions());
  absl::StatusOr<Model> c = (*fresh)->Aggregate(3, global, third);
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)[0].data, (*c)[0].data);
}

TEST(FedLdStateTest, FailedRoundsLeaveTheStateUnchanged) {
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = MakeStrategy("fedld", StrategyOptions());
  ASSERT_TRUE(strategy.ok());
  const Model global = TwoTensors(0, 0, 0);
  ASSERT_TRUE((*strategy)->Aggregate(1, global, ClientsAt(global, {{1, 2, 3}, {3, 1, 2}})).ok());
  const std::string before = (*strategy)->SaveState();
  ExpectInvalid((*strategy)->Aggregate(2, global, ClientsAt(global, {{1, NAN, 3}})).status(),
                "client 'client-0': tensor 'fc.weight' value 1 is nan");
  EXPECT_EQ((*strategy)->SaveState(), before);
}

TEST(StrategyTest, RejectsBadStatesOptionsAndNames) {
  ExpectInvalid(MakeStrategy("fedsgd", StrategyOptions()).status(),
                "unknown name 'fedsgd'; use one of fedavg, fedprox, fedld");
  for (double k : {0.0, 1.5, static_cast<double>(NAN)}) {
    StrategyOptions options;
    options.fedld.k_proportion = k;
    ExpectInvalid(MakeStrategy("fedld", options).status(), "k_proportion");
  }
  StrategyOptions decay;
  decay.fedld.history_decay = 2;
  ExpectInvalid(MakeStrategy("fedld", decay).status(), "history_decay is 2");
  StrategyOptions tolerance;
  tolerance.fedld.zero_inner_product_tolerance = -1;
  ExpectInvalid(MakeStrategy("fedld", tolerance).status(), "must be >= 0");

  absl::StatusOr<std::unique_ptr<Strategy>> fedld = MakeStrategy("fedld", StrategyOptions());
  absl::StatusOr<std::unique_ptr<Strategy>> fedavg = MakeStrategy("fedavg", StrategyOptions());
  ASSERT_TRUE(fedld.ok() && fedavg.ok());
  EXPECT_TRUE((*fedavg)->LoadState((*fedavg)->SaveState()).ok());
  ExpectInvalid((*fedld)->LoadState("not json"), "not a JSON object");
  ExpectInvalid((*fedld)->LoadState((*fedavg)->SaveState()), "not a fedld state");
  ExpectInvalid((*fedavg)->LoadState((*fedld)->SaveState()), "not a fedavg state");
  ExpectInvalid((*fedld)->LoadState(R"({"strategy": "fedld", "version": 9, "history": {}})"),
                "\"version\" is 9");
  ExpectInvalid((*fedld)->LoadState(R"({"strategy": "fedld", "version": 1})"),
                "no \"history\" object");
  ExpectInvalid((*fedld)->LoadState(R"({"strategy": "fedld", "version": 1, "history": {"a": 1}})"),
                "tensor 'a' is not an array");
  ExpectInvalid(
      (*fedld)->LoadState(R"({"strategy": "fedld", "version": 1, "history": {"a": ["x"]}})"),
      "holds \"x\", not a number");

  // A history that belongs to another model is refused when the round runs.
  const Model global = TwoTensors(0, 0, 0);
  ASSERT_TRUE((*fedld)
                  ->LoadState(R"({"strategy": "fedld", "version": 1,
                                  "history": {"fc.weight": [1, 2, 3], "fc.bias": [1]}})")
                  .ok());
  ExpectInvalid((*fedld)->Aggregate(2, global, ClientsAt(global, {{1, 2, 3}})).status(),
                "history of tensor 'fc.weight' has 3 values but the tensor has 2");
  ASSERT_TRUE((*fedld)
                  ->LoadState(R"({"strategy": "fedld", "version": 1,
                                  "history": {"conv.weight": [1]}})")
                  .ok());
  ExpectInvalid((*fedld)->Aggregate(2, global, ClientsAt(global, {{1, 2, 3}})).status(),
                "history has tensor 'conv.weight', which the global model lacks");
  ExpectInvalid((*fedld)->Aggregate(0, global, ClientsAt(global, {{1, 2, 3}})).status(),
                "round is 0");
}

}  // namespace
}  // namespace troupe::federation::strategies
