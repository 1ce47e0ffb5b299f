// Tests of every aggregation rule against results worked out by hand on small inputs, of the
// input checks and bounds, of robustness to outliers, and of the Flag Aggregator's Gram route.
#include "federation/aggregators/aggregators.h"

#include <cmath>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eigen3/Eigen/Core"
#include "eigen3/Eigen/SVD"
#include "federation/aggregators/aggregator.h"
#include "federation/aggregators/flag_aggregator.h"
#include "federation/aggregators/worker_matrix.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::federation::aggregators {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::Workers;

void ExpectNear(const absl::StatusOr<Eigen::VectorXf>& actual, std::initializer_list<double> want,
                double tolerance = 1e-5) {
  ASSERT_TRUE(actual.ok()) << actual.status();
  ASSERT_EQ(actual->size(), static_cast<Eigen::Index>(want.size()));
  Eigen::Index i = 0;
  for (double value : want) {
    EXPECT_NEAR((*actual)[i], value, tolerance) << "coordinate " << i;
    ++i;
  }
}

void ExpectInvalid(const absl::Status& status, const std::string& message_part) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(message_part));
}

// Five workers, d = 2; worker 4 is far off in both coordinates.
//   x: 1, 2, 4, 7, 100      y: 10, 20, 30, 40, -50
Eigen::MatrixXf FiveWorkers() { return Workers({{1, 10}, {2, 20}, {4, 30}, {7, 40}, {100, -50}}); }

TEST(MeanTest, AveragesEachCoordinate) {
  // x: 114 / 5 = 22.8; y: 50 / 5 = 10.
  ExpectNear(Mean(FiveWorkers()), {22.8, 10.0});
}

TEST(MedianTest, OddAndEvenWorkerCounts) {
  // Sorted x: 1 2 [4] 7 100; sorted y: -50 10 [20] 30 40.
  ExpectNear(CoordinateWiseMedian(FiveWorkers()), {4.0, 20.0});
  // Even n (first four workers): x 1 2 4 7 -> (2 + 4) / 2 = 3; y 10 20 30 40 -> 25.
  ExpectNear(CoordinateWiseMedian(FiveWorkers().leftCols(4)), {3.0, 25.0});
}

TEST(TrimmedMeanTest, DropsFFromEachSide) {
  // f = 1: x keeps 2 4 7 -> 13 / 3; y keeps 10 20 30 -> 20.
  ExpectNear(TrimmedMean(FiveWorkers(), 1), {13.0 / 3.0, 20.0});
  // f = 2: only the median is left.
  ExpectNear(TrimmedMean(FiveWorkers(), 2), {4.0, 20.0});
  // f = 0 is the mean.
  ExpectNear(TrimmedMean(FiveWorkers(), 0), {22.8, 10.0});
}

TEST(TrimmedMeanTest, RejectsTwoFNotBelowN) {
  ExpectInvalid(TrimmedMean(FiveWorkers(), 3).status(), "2f < n");
  ExpectInvalid(TrimmedMean(FiveWorkers(), -1).status(), ">= 0");
}

// Six workers, d = 2, f = 1: Krum sums the n - f - 2 = 3 smallest squared distances.
//   p0 (0,0)  p1 (1,0)  p2 (0,2)  p3 (2,2)  p4 (10,10)  p5 (1,1)
// Squared distances:
//   p0: p1 1, p2 4, p3 8, p4 200, p5 2      -> 1 + 2 + 4 = 7
//   p1: p0 1, p2 5, p3 5, p4 181, p5 1      -> 1 + 1 + 5 = 7
//   p2: p0 4, p1 5, p3 4, p4 164, p5 2      -> 2 + 4 + 4 = 10
//   p3: p0 8, p1 5, p2 4, p4 128, p5 2      -> 2 + 4 + 5 = 11
//   p4: 200, 181, 164, 128, 162             -> 128 + 162 + 164 = 454
//   p5: p0 2, p1 1, p2 2, p3 2, p4 162      -> 1 + 2 + 2 = 5
Eigen::MatrixXf SixWorkers() { return Workers({{0, 0}, {1, 0}, {0, 2}, {2, 2}, {10, 10}, {1, 1}}); }

TEST(KrumTest, ScoresAndSelection) {
  absl::StatusOr<std::vector<double>> scores = KrumScores(SixWorkers(), 1);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_THAT(*scores, ElementsAre(7, 7, 10, 11, 454, 5));
  ExpectNear(Krum(SixWorkers(), 1), {1.0, 1.0});  // p5
}

TEST(MultiKrumTest, AveragesTheBestM) {
  // Default m = n - f - 2 = 3: p5, p0, p1 -> ((1 + 0 + 1) / 3, (1 + 0 + 0) / 3).
  ExpectNear(MultiKrum(SixWorkers(), 1), {2.0 / 3.0, 1.0 / 3.0});
  // m = 4 adds p2: ((1 + 0 + 1 + 0) / 4, (1 + 0 + 0 + 2) / 4).
  ExpectNear(MultiKrum(SixWorkers(), 1, 4), {0.5, 0.75});
  ExpectInvalid(MultiKrum(SixWorkers(), 1, 7).status(), "m (workers averaged)");
}

TEST(KrumTest, NeedsTwoFPlusThreeWorkers) {
  // n = 6: f = 1 is fine (6 >= 5), f = 2 is not (6 < 7).
  ExpectInvalid(Krum(SixWorkers(), 2).status(), "n >= 2f + 3");
  ExpectInvalid(MultiKrum(SixWorkers(), 2).status(), "n >= 2f + 3");
  ExpectInvalid(Krum(SixWorkers(), -1).status(), ">= 0");
}

// Seven workers, f = 1, d = 2 with y = -x: x = 1.9, 0.8, 2.3, 1.1, 2.5, 2.2, 100 (worker 6).
// Bulyan selects theta = n - 2f = 5 by iterated Krum (n' - f - 2 neighbours, at least 1). The
// scores below are x's (y = -x doubles them all); the smallest is picked:
//   n' = 7, 4 nbrs: w0 .09+.16+.36+.64 = 1.25 < w5 1.40 < w2 1.65 ...          -> w0 (1.9)
//   n' = 6, 3 nbrs: w5 .01+.09+1.21 = 1.31 < w2 1.49 ...                      -> w5 (2.2)
//   n' = 5, 2 nbrs: w2 .04+1.44 = 1.48 < w3 1.53 ...                          -> w2 (2.3)
//   n' = 4, 1 nbr:  w1 and w3 are each other's nearest (.09, a tie)           -> w1 (0.8)
//   n' = 3, 1 nbr:  w3 and w4 tie again (1.4^2 = 1.96)                        -> w3 (1.1)
// (Either tie-break selects the same set {1.9, 2.2, 2.3, 0.8, 1.1}.) beta = theta - 2f = 3:
// median 1.9; distances 0, .3, .4, 1.1, .8 -> keep 1.9, 2.2, 2.3 -> 6.4 / 3.
TEST(BulyanTest, IteratedKrumThenTrimmedAroundTheMedian) {
  Eigen::MatrixXf workers = Workers(
      {{1.9, -1.9}, {0.8, -0.8}, {2.3, -2.3}, {1.1, -1.1}, {2.5, -2.5}, {2.2, -2.2}, {100, -100}});
  ExpectNear(Bulyan(workers, 1), {6.4 / 3.0, -6.4 / 3.0});
  // f = 0: theta = beta = n, the mean.
  ExpectNear(Bulyan(SixWorkers(), 0), {14.0 / 6.0, 15.0 / 6.0});
}

TEST(BulyanTest, NeedsFourFPlusThreeWorkers) {
  // n = 6 < 4 * 1 + 3.
  const absl::Status status = Bulyan(SixWorkers(), 1).status();
  ExpectInvalid(status, "n >= 4f + 3");
  EXPECT_THAT(std::string(status.message()), HasSubstr("n = 6"));
  ExpectInvalid(Bulyan(SixWorkers(), -2).status(), ">= 0");
}

// Four corners of the square [0,2]^2 and an outlier at (100, 100). By symmetry the geometric
// median is (t, t); the gradient of the objective along the diagonal vanishes where
//   2 (2t - 2) / sqrt(t^2 + (2 - t)^2) = sqrt(2)  <=>  t^2 - 2t + 2/3 = 0  ->  t = 1 + 1/sqrt(3).
TEST(GeometricMedianTest, FermatPointOfSquarePlusOutlier) {
  Eigen::MatrixXf workers = Workers({{0, 0}, {2, 0}, {0, 2}, {2, 2}, {100, 100}});
  const double t = 1.0 + 1.0 / std::sqrt(3.0);
  GeometricMedianOptions tight;
  tight.tolerance = 1e-14;
  tight.max_iterations = 1000;
  ExpectNear(GeometricMedian(workers, tight), {t, t}, 1e-4);
  ExpectNear(GeometricMedian(workers), {t, t}, 1e-3);  // defaults
  // The mean is (104 / 5, 104 / 5).
  ExpectNear(Mean(workers), {20.8, 20.8});
}

TEST(GeometricMedianTest, IdenticalWorkersAndBadOptions) {
  ExpectNear(GeometricMedian(Workers({{3, 4}, {3, 4}, {3, 4}})), {3, 4});
  GeometricMedianOptions bad;
  bad.smoothing = 0;
  ExpectInvalid(GeometricMedian(SixWorkers(), bad).status(), "smoothing > 0");
}

// Three workers at the origin and one at (6, 8) (distance 10); center 0, tau = 1:
//   step 1: (0 + 0 + 0 + (6, 8) * 1/10) / 4 = (0.15, 0.2)
//   step 2: honest differences (-0.15, -0.2) (norm 0.25, kept) three times = (-0.45, -0.6);
//           the outlier's (5.85, 7.8) has norm 9.75 -> clipped to (0.6, 0.8);
//           v = (0.15, 0.2) + (0.15, 0.2) / 4 = (0.1875, 0.25).
TEST(CenteredClippingTest, ClipsAroundTheCenter) {
  Eigen::MatrixXf workers = Workers({{0, 0}, {0, 0}, {0, 0}, {6, 8}});
  Eigen::VectorXf center = Eigen::VectorXf::Zero(2);
  CenteredClippingOptions options;
  options.tau = 1.0;
  ExpectNear(CenteredClipping(workers, &center, options), {0.15, 0.2});
  options.iterations = 2;
  ExpectNear(CenteredClipping(workers, &center, options), {0.1875, 0.25});
  // A large tau clips nothing: one step from any center lands on the mean (1.5, 2).
  options.tau = 100.0;
  options.iterations = 1;
  ExpectNear(CenteredClipping(workers, &center, options), {1.5, 2.0});
}

TEST(CenteredClippingTest, CenterMustMatchTheModel) {
  Eigen::VectorXf center = Eigen::VectorXf::Zero(3);
  ExpectInvalid(CenteredClipping(SixWorkers(), &center).status(), "center has 3 coordinates");
}

TEST(CenteredClippingTest, FactoryAggregatorCentersOnThePreviousRound) {
  AggregatorOptions options;
  options.centered_clipping.tau = 1.0;
  absl::StatusOr<std::unique_ptr<Aggregator>> rule = MakeAggregator("centered_clipping", options);
  ASSERT_TRUE(rule.ok()) << rule.status();
  Eigen::MatrixXf workers = Workers({{0, 0}, {0, 0}, {0, 0}, {6, 8}});
  // Round 1 starts at the mean (1.5, 2): honest differences (-1.5, -2) (norm 2.5) clip to
  // (-0.6, -0.8) each; the outlier's (4.5, 6) (norm 7.5) clips to (0.6, 0.8):
  //   v = (1.5, 2) + (3 * (-0.6, -0.8) + (0.6, 0.8)) / 4 = (1.5, 2) - (0.3, 0.4) = (1.2, 1.6).
  ExpectNear((*rule)->Aggregate(workers), {1.2, 1.6});
  // Round 2 starts at (1.2, 1.6): honest differences have norm 2, clip to (-0.6, -0.8); the
  // outlier's (4.8, 6.4) to (0.6, 0.8): v = (1.2, 1.6) - (0.3, 0.4) = (0.9, 1.2).
  ExpectNear((*rule)->Aggregate(workers), {0.9, 1.2});
}

TEST(InputTest, RejectsEmptyAndNonFiniteNamingTheWorker) {
  ExpectInvalid(Mean(Eigen::MatrixXf(0, 3)).status(), "empty input");
  ExpectInvalid(Mean(Eigen::MatrixXf(4, 0)).status(), "empty input");
  Eigen::MatrixXf workers = FiveWorkers();
  workers(1, 2) = std::nanf("");
  ExpectInvalid(Krum(workers, 1).status(), "worker column 2 has a non-finite value (nan)");
  workers(1, 2) = 1.0f;
  workers(0, 3) = INFINITY;
  for (const absl::Status& status :
       {Mean(workers).status(), CoordinateWiseMedian(workers).status(),
        TrimmedMean(workers, 1).status(), Bulyan(workers, 0).status(),
        GeometricMedian(workers).status(), CenteredClipping(workers, nullptr).status(),
        FlagAggregate(workers).status()}) {
    ExpectInvalid(status, "worker column 3 has a non-finite value (inf) at coordinate 0");
  }
}

TEST(InputTest, StackWorkerGradientsNamesTheMismatchedWorker) {
  std::vector<std::vector<float>> buffers = {{1, 2, 3}, {4, 5, 6}, {7, 8}};
  ExpectInvalid(StackWorkerGradients(buffers).status(), "worker 2's gradient has 2 coordinates");
  buffers[2].push_back(9);
  absl::StatusOr<Eigen::MatrixXf> stacked = StackWorkerGradients(buffers);
  ASSERT_TRUE(stacked.ok()) << stacked.status();
  ExpectNear(Mean(*stacked), {4, 5, 6});
}

// Six honest workers around (1, 2, 3, 4) (their mean is exactly (1, 2, 3, 4)) and f = 1 worker
// at 1e6 in every coordinate, placed first or last.
Eigen::MatrixXf HonestPlusOutlier(bool outlier_first) {
  Eigen::MatrixXf honest = Workers({{1.1, 2.0, 3.1, 3.9},
                                    {0.9, 2.1, 2.9, 4.0},
                                    {1.0, 1.9, 3.0, 4.1},
                                    {1.05, 2.0, 2.95, 4.0},
                                    {0.95, 2.05, 3.05, 3.95},
                                    {1.0, 1.95, 3.0, 4.05}});
  Eigen::MatrixXf workers(4, 7);
  const Eigen::Index outlier = outlier_first ? 0 : 6;
  workers.col(outlier).setConstant(1e6f);
  workers.middleCols(outlier_first ? 1 : 0, 6) = honest;
  return workers;
}

TEST(RobustnessTest, OneOutlierAtAMillionMovesOnlyTheMean) {
  const Eigen::Vector4f honest_mean(1, 2, 3, 4);
  for (bool outlier_first : {false, true}) {
    SCOPED_TRACE(outlier_first ? "outlier first" : "outlier last");
    const Eigen::MatrixXf workers = HonestPlusOutlier(outlier_first);
    ASSERT_GT((*Mean(workers) - honest_mean).norm(), 1e5);
    Eigen::VectorXf previous = honest_mean;
    CenteredClippingOptions clipping;
    clipping.tau = 1.0;
    for (const absl::StatusOr<Eigen::VectorXf>& result :
         {CoordinateWiseMedian(workers), TrimmedMean(workers, 1), Krum(workers, 1),
          MultiKrum(workers, 1), Bulyan(workers, 1), GeometricMedian(workers),
          CenteredClipping(workers, &previous, clipping)}) {
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_LT((*result - honest_mean).norm(), 0.3);
    }
  }
}

TEST(FactoryTest, ParsesEveryNameAndListsThemOnError) {
  const Eigen::MatrixXf workers = HonestPlusOutlier(false);
  AggregatorOptions options;
  options.f = 1;
  options.flag.subspace_dim = 1;
  for (const char* name : {"mean", "median", "trimmed_mean", "krum", "multi_krum", "bulyan",
                           "geometric_median", "centered_clipping", "flag"}) {
    absl::StatusOr<AggregatorKind> kind = ParseAggregatorName(name);
    ASSERT_TRUE(kind.ok()) << kind.status();
    EXPECT_EQ(AggregatorName(*kind), name);
    absl::StatusOr<std::unique_ptr<Aggregator>> rule = MakeAggregator(name, options);
    ASSERT_TRUE(rule.ok()) << rule.status();
    EXPECT_EQ((*rule)->kind(), *kind);
    absl::StatusOr<Eigen::VectorXf> update = (*rule)->Aggregate(workers);
    ASSERT_TRUE(update.ok()) << name << ": " << update.status();
    EXPECT_EQ(update->size(), 4);
  }
  ExpectInvalid(ParseAggregatorName("krumm").status(),
                "use one of: mean, median, trimmed_mean, krum, multi_krum, bulyan, "
                "geometric_median, centered_clipping, flag");
  options.f = -1;
  ExpectInvalid(MakeAggregator("bulyan", options).status(), ">= 0");
  // Bounds that depend on n are checked per round.
  options.f = 2;
  absl::StatusOr<std::unique_ptr<Aggregator>> bulyan = MakeAggregator("bulyan", options);
  ASSERT_TRUE(bulyan.ok());
  ExpectInvalid((*bulyan)->Aggregate(workers).status(), "n >= 4f + 3");
}

// --- Flag Aggregator ---------------------------------------------------------------------------

// Deterministic pseudo-random matrix with entries in [-1, 1).
Eigen::MatrixXd Pseudorandom(Eigen::Index rows, Eigen::Index cols, uint32_t seed) {
  Eigen::MatrixXd matrix(rows, cols);
  uint32_t state = seed;
  for (Eigen::Index j = 0; j < cols; ++j) {
    for (Eigen::Index i = 0; i < rows; ++i) {
      state = state * 1664525u + 1013904223u;
      matrix(i, j) = (state >> 8) / 8388608.0 - 1.0;
    }
  }
  return matrix;
}

TEST(FlagTest, IdenticalDirectionsGiveThatDirectionTimesPOverM) {
  // Five positive multiples of u = (0.6, 0.8, 0): every x_i = u, Y = span(u), so
  // (1/m) Y Y^T sum_i x_i = (5 / m) u = 2.5 u for m = 2, whatever lambda and mode.
  const Eigen::MatrixXf workers =
      Workers({{0.6, 0.8, 0}, {3, 4, 0}, {0.06, 0.08, 0}, {60, 80, 0}, {1.2, 1.6, 0}});
  for (FlagOptions options : {FlagOptions::CodeExact(), FlagOptions::Faithful()}) {
    for (double lambda : {0.0, 2.0}) {
      options.subspace_dim = 2;
      options.lambda = lambda;
      absl::StatusOr<FlagResult> result = FlagAggregate(workers, options);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->subspace_rank, 1);
      ExpectNear(result->aggregate, {1.5, 2.0, 0.0});
    }
  }
}

TEST(FlagTest, FullRankSubspaceReturnsTheScaledSumOfDirections) {
  // d = m = 2: Y Y^T is the identity, so the aggregate is (1/2) sum_i x_i with
  // x = (1, 0), (0, 1), (1, 1)/sqrt(2): ((1 + 0.70711) / 2, (1 + 0.70711) / 2).
  const Eigen::MatrixXf workers = Workers({{3, 0}, {0, 2}, {1, 1}});
  const double half = (1.0 + std::sqrt(0.5)) / 2.0;
  for (FlagOptions options : {FlagOptions::CodeExact(), FlagOptions::Faithful()}) {
    for (double lambda : {0.0, 8.0}) {
      options.subspace_dim = 2;
      options.lambda = lambda;
      absl::StatusOr<FlagResult> result = FlagAggregate(workers, options);
      ASSERT_TRUE(result.ok()) << result.status();
      ExpectNear(result->aggregate, {half, half});
    }
  }
}

TEST(FlagTest, GramRouteMatchesAnExplicitSvd) {
  // A = X C for a 7 x 4 X and a 4 x 16 C (like lambda > 0: 4 + 12 columns). The top-2 left
  // singular subspace from FlagTopSubspace must equal BDCSVD's.
  const Eigen::MatrixXd x = Pseudorandom(7, 4, 11);
  const Eigen::MatrixXd c = Pseudorandom(4, 16, 12);
  const Eigen::MatrixXd a = x * c;
  const Eigen::MatrixXd b = FlagTopSubspace(x.transpose() * x, c * c.transpose(), 2);
  ASSERT_EQ(b.cols(), 2);
  const Eigen::MatrixXd y = x * b;
  EXPECT_TRUE((y.transpose() * y).isApprox(Eigen::MatrixXd::Identity(2, 2), 1e-9));
  Eigen::BDCSVD<Eigen::MatrixXd> svd(a, Eigen::ComputeThinU);
  const Eigen::MatrixXd u = svd.matrixU().leftCols(2);
  EXPECT_LT((y * y.transpose() - u * u.transpose()).norm(), 1e-9);
  // A rank-deficient A (C of rank 1) yields one column only.
  const Eigen::MatrixXd rank_one = c.row(0).replicate(4, 1);
  EXPECT_EQ(FlagTopSubspace(x.transpose() * x, rank_one * rank_one.transpose(), 2).cols(), 1);
}

TEST(FlagTest, CodeExactRunsOneUpdateFaithfulRunsUntilTheObjectiveStops) {
  const Eigen::MatrixXf workers = Pseudorandom(10, 6, 21).cast<float>();
  FlagOptions exact = FlagOptions::CodeExact();
  exact.subspace_dim = 2;
  absl::StatusOr<FlagResult> one = FlagAggregate(workers, exact);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->iterations, 1);
  EXPECT_EQ(one->objective.size(), 2u);
  EXPECT_LT(one->objective[1], one->objective[0]);

  FlagOptions faithful = FlagOptions::Faithful();
  faithful.subspace_dim = 2;
  absl::StatusOr<FlagResult> many = FlagAggregate(workers, faithful);
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_GT(many->iterations, 2);
  for (size_t t = 1; t < many->objective.size(); ++t) {
    EXPECT_LE(many->objective[t], many->objective[t - 1] + 1e-9) << "update " << t;
  }
  EXPECT_LT(many->objective.back(), one->objective.back() + 1e-9);
}

TEST(FlagTest, LambdaChangesTheWeightsButKeepsTheAggregateFinite) {
  const Eigen::MatrixXf workers = Pseudorandom(10, 6, 31).cast<float>();
  for (FlagOptions options : {FlagOptions::CodeExact(), FlagOptions::Faithful()}) {
    options.subspace_dim = 2;
    absl::StatusOr<FlagResult> plain = FlagAggregate(workers, options);
    options.lambda = 30.0;
    absl::StatusOr<FlagResult> regularized = FlagAggregate(workers, options);
    ASSERT_TRUE(plain.ok() && regularized.ok());
    EXPECT_TRUE(regularized->aggregate.allFinite());
    EXPECT_GT((regularized->aggregate - plain->aggregate).norm(), 1e-4);
    EXPECT_LE(regularized->aggregate.norm(), 6.0 / 2.0 + 1e-5);  // |aggregate| <= p / m
  }
}

TEST(FlagTest, TwoOutliersAtAMillionDoNotTurnTheAggregate) {
  // d = 64: five honest gradients along u plus 5% noise, two Byzantine ones at 1e6 along v.
  const Eigen::MatrixXd u = Pseudorandom(64, 1, 41).normalized();
  const Eigen::MatrixXd v = Pseudorandom(64, 1, 42).normalized();
  Eigen::MatrixXf workers(64, 7);
  const Eigen::MatrixXd noise = 0.05 / std::sqrt(64.0) * Pseudorandom(64, 5, 43);
  for (int i = 0; i < 5; ++i) workers.col(i) = ((1.0 + 0.1 * i) * u + noise.col(i)).cast<float>();
  workers.col(5) = (1e6 * v).cast<float>();
  workers.col(6) = (1e6 * v).cast<float>();
  const Eigen::VectorXf direction = u.col(0).cast<float>();
  auto cosine = [&](const Eigen::VectorXf& a) { return a.dot(direction) / a.norm(); };
  EXPECT_LT(cosine(*Mean(workers)), 0.5);
  for (FlagOptions options : {FlagOptions::CodeExact(), FlagOptions::Faithful()}) {
    for (double lambda : {0.0, 4.0}) {
      options.subspace_dim = 1;
      options.lambda = lambda;
      absl::StatusOr<FlagResult> result = FlagAggregate(workers, options);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_GT(cosine(result->aggregate), 0.95) << "lambda " << lambda;
    }
  }
}

TEST(FlagTest, RejectsZeroGradientsAndBadOptions) {
  Eigen::MatrixXf workers = FiveWorkers();
  workers.col(3).setZero();
  ExpectInvalid(FlagAggregate(workers).status(), "worker column 3 is a zero gradient");
  FlagOptions options;
  options.subspace_dim = 0;
  ExpectInvalid(FlagAggregate(FiveWorkers(), options).status(), "subspace_dim >= 1");
  options = FlagOptions();
  options.lambda = -1;
  ExpectInvalid(FlagAggregate(FiveWorkers(), options).status(), "lambda >= 0");
}

}  // namespace
}  // namespace troupe::federation::aggregators
