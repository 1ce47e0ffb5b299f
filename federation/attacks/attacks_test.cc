// Tests of every attack against values worked out by hand on tiny inputs, of the seeded ones'
// determinism and moments, of the input checks (each error names its input), and of the by-name
// factory's two hooks.
#include "federation/attacks/attacks.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/worker_matrix.h"
#include "federation/attacks/attack.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::federation::attacks {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::Workers;

// ExpectColumns checks that every column of `actual` is near `want`.
void ExpectColumns(const absl::StatusOr<Eigen::MatrixXf>& actual, Eigen::Index columns,
                   std::initializer_list<double> want, double tolerance = 1e-5) {
  ASSERT_TRUE(actual.ok()) << actual.status();
  ASSERT_EQ(actual->rows(), static_cast<Eigen::Index>(want.size()));
  ASSERT_EQ(actual->cols(), columns);
  for (Eigen::Index c = 0; c < columns; ++c) {
    Eigen::Index r = 0;
    for (double value : want) {
      EXPECT_NEAR((*actual)(r, c), value, tolerance) << "row " << r << ", column " << c;
      ++r;
    }
  }
}

template <typename T>
void ExpectInvalid(const absl::StatusOr<T>& result, const std::string& fragment) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(fragment));
}

// Honest gradients of the hand-worked examples: (1, 2), (3, 2), (5, 8). Mean (3, 4); sample
// standard deviation (sqrt(8/2), sqrt(24/2)) = (2, sqrt 12).
Eigen::MatrixXf ThreeHonest() { return Workers({{1, 2}, {3, 2}, {5, 8}}); }

TEST(SignFlipTest, ScalesAndNegatesEachWorkersOwnGradient) {
  ExpectColumns(SignFlip(Workers({{1, -2}}), 10.0), 1, {-10, 20});
  absl::StatusOr<Eigen::MatrixXf> two = SignFlip(Workers({{1, -2}, {0.5, 4}}), 2.0);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_TRUE(two->isApprox(Workers({{-2, 4}, {-1, -8}})));
}

TEST(SignFlipTest, RejectsBadInputs) {
  ExpectInvalid(SignFlip(Eigen::MatrixXf(), 10.0), "`own` is 0 x 0");
  ExpectInvalid(SignFlip(Workers({{1, NAN}}), 10.0), "`own` column 0 has a non-finite value");
  ExpectInvalid(SignFlip(Workers({{1, 2}}), 0.0), "scale = 0");
  ExpectInvalid(SignFlip(Workers({{1, 2}}), -1.0), "scale = -1");
}

TEST(GaussianNoiseTest, SameSeedSameNoiseOtherSeedOther) {
  std::mt19937_64 first(7), second(7), other(8);
  absl::StatusOr<Eigen::MatrixXf> a = GaussianNoise(101, 3, 1.0, first);
  absl::StatusOr<Eigen::MatrixXf> b = GaussianNoise(101, 3, 1.0, second);
  absl::StatusOr<Eigen::MatrixXf> c = GaussianNoise(101, 3, 1.0, other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->rows(), 101);
  EXPECT_EQ(a->cols(), 3);
  EXPECT_TRUE(*a == *b);
  EXPECT_FALSE(*a == *c);
  // The generator advances: the next step's noise is new.
  absl::StatusOr<Eigen::MatrixXf> next = GaussianNoise(101, 3, 1.0, first);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(*a == *next);
  // Columns (workers) are independent draws, not copies.
  EXPECT_FALSE(a->col(0) == a->col(1));
}

TEST(GaussianNoiseTest, MomentsMatchNormalWithSigma) {
  // 400000 draws of N(0, 4): the standard error of the mean is 0.0032 and of the standard
  // deviation 0.0022, so the tolerances below are about 10 standard errors.
  constexpr double kSigma = 2.0;
  std::mt19937_64 rng(2021);
  absl::StatusOr<Eigen::MatrixXf> noise = GaussianNoise(200000, 2, kSigma, rng);
  ASSERT_TRUE(noise.ok()) << noise.status();
  const Eigen::ArrayXd values = noise->reshaped().cast<double>().array();
  const double mean = values.mean();
  const double stddev = std::sqrt((values - mean).square().mean());
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(stddev, kSigma, 0.02);
  // Normal, not uniform: 68.27% within one sigma, 95.45% within two.
  EXPECT_NEAR((values.abs() < kSigma).cast<double>().mean(), 0.6827, 0.005);
  EXPECT_NEAR((values.abs() < 2 * kSigma).cast<double>().mean(), 0.9545, 0.003);
  EXPECT_NEAR((values < 0).cast<double>().mean(), 0.5, 0.005);
}

TEST(GaussianNoiseTest, ZeroSigmaOddSizeAndBadInputs) {
  std::mt19937_64 rng(1);
  absl::StatusOr<Eigen::MatrixXf> zero = GaussianNoise(3, 1, 0.0, rng);
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->isZero());
  ExpectInvalid(GaussianNoise(3, 1, -0.5, rng), "sigma = -0.5");
  ExpectInvalid(GaussianNoise(3, 1, INFINITY, rng), "sigma = inf");
  ExpectInvalid(GaussianNoise(0, 1, 1.0, rng), "dimension = 0");
  ExpectInvalid(GaussianNoise(3, 0, 1.0, rng), "num_byzantine = 0");
}

TEST(InverseNormalCdfTest, KnownQuantiles) {
  EXPECT_NEAR(*InverseNormalCdf(0.5), 0.0, 1e-15);
  EXPECT_NEAR(*InverseNormalCdf(0.975), 1.9599639845400536, 1e-12);
  EXPECT_NEAR(*InverseNormalCdf(0.01), -2.3263478740408408, 1e-12);  // lower tail region
  EXPECT_NEAR(*InverseNormalCdf(0.999), 3.090232306167813, 1e-12);   // upper tail region
  EXPECT_NEAR(*InverseNormalCdf(1e-10), -6.361340902404056, 1e-9);
  ExpectInvalid(InverseNormalCdf(0.0), "p = 0");
  ExpectInvalid(InverseNormalCdf(1.0), "p = 1");
  ExpectInvalid(InverseNormalCdf(NAN), "p = nan");
}

TEST(AlieZTest, BaruchEtAlFromNAndF) {
  // n = 15, f = 3: s = floor(7.5 + 1) - 3 = 5, z = Phi^{-1}(10/15) = 0.430727...
  EXPECT_NEAR(*AlieZ(15, 3), 0.43072729929545733, 1e-12);
  // n = 15, f = 1: s = 7, z = Phi^{-1}(8/15).
  EXPECT_NEAR(*AlieZ(15, 1), 0.08365173390712907, 1e-12);
  // n = 50, f = 24: s = 2, z = Phi^{-1}(48/50) = 1.75 (the paper's example).
  EXPECT_NEAR(*AlieZ(50, 24), 1.7506860712521695, 1e-12);
  // n = 4, f = 1: s = 2, z = Phi^{-1}(1/2) = 0.
  EXPECT_NEAR(*AlieZ(4, 1), 0.0, 1e-15);
}

TEST(AlieZTest, NeedsAByzantineMinority) {
  ExpectInvalid(AlieZ(15, 8), "2f < n");
  ExpectInvalid(AlieZ(14, 7), "lower f to at most 6");
  ExpectInvalid(AlieZ(15, 0), "got n = 15 and f = 0");
  ExpectInvalid(AlieZ(2, 1), "lower f to at most 0");
}

TEST(AlieTest, MeanMinusZTimesSampleStd) {
  // mu = (3, 4), sigma = (2, sqrt 12): z = 1 gives (1, 4 - 3.4641016).
  ExpectColumns(Alie(ThreeHonest(), 2, 1.0), 2, {1.0, 0.5358983848622456});
  // The reference's fixed z = 0.21.
  ExpectColumns(Alie(ThreeHonest(), 1, kAlieReferenceZ), 1, {3 - 0.42, 4 - 0.21 * std::sqrt(12.0)});
  // z = Phi^{-1}(2/3) (n = 15, f = 3).
  ExpectColumns(Alie(ThreeHonest(), 3, *AlieZ(15, 3)), 3, {2.1385454014090852, 2.507916866826683});
}

TEST(AlieTest, RejectsBadInputs) {
  ExpectInvalid(Alie(Eigen::MatrixXf(), 1, 1.0), "`honest` is 0 x 0");
  // One honest gradient has no sample spread: the reference's NaN (fw = 1) becomes an error.
  ExpectInvalid(Alie(Workers({{1, 2}}), 1, 1.0), "at least 2 gradient column(s)");
  ExpectInvalid(Alie(Workers({{1, 2}, {INFINITY, 0}}), 1, 1.0), "`honest` column 1");
  ExpectInvalid(Alie(ThreeHonest(), 0, 1.0), "num_byzantine = 0");
  ExpectInvalid(Alie(ThreeHonest(), 1, NAN), "z = nan");
}

TEST(IpmTest, MinusEpsilonTimesHonestMean) {
  ExpectColumns(Ipm(ThreeHonest(), 2, 0.1), 2, {-0.3, -0.4});
  ExpectColumns(Ipm(ThreeHonest(), 1, 100.0), 1, {-300, -400});
  ExpectColumns(Ipm(Workers({{2, -6}}), 1, 0.5), 1, {-1, 3});  // one honest gradient suffices
  ExpectInvalid(Ipm(Eigen::MatrixXf(), 1, 0.1), "`honest` is 0 x 0");
  ExpectInvalid(Ipm(ThreeHonest(), 1, 0.0), "epsilon = 0");
  ExpectInvalid(Ipm(ThreeHonest(), -1, 0.1), "num_byzantine = -1");
}

// Ramp is a d x f matrix whose entries are all non-zero (entry (r, c) = r + 1 + 1000 c), so a
// zero marks a dropped coordinate.
Eigen::MatrixXf Ramp(Eigen::Index d, Eigen::Index f) {
  Eigen::MatrixXf ramp(d, f);
  for (Eigen::Index c = 0; c < f; ++c) {
    for (Eigen::Index r = 0; r < d; ++r) ramp(r, c) = static_cast<float>(r + 1 + 1000 * c);
  }
  return ramp;
}

TEST(DropCoordinatesTest, ZeroesExactlyTheFractionAndKeepsTheRest) {
  const Eigen::MatrixXf own = Ramp(100, 3);
  std::mt19937_64 rng(5);
  absl::StatusOr<Eigen::MatrixXf> dropped = DropCoordinates(own, 0.25, rng);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  for (Eigen::Index c = 0; c < 3; ++c) {
    int zeros = 0;
    for (Eigen::Index r = 0; r < 100; ++r) {
      if ((*dropped)(r, c) == 0.0f) {
        ++zeros;
      } else {
        EXPECT_EQ((*dropped)(r, c), own(r, c));
      }
    }
    EXPECT_EQ(zeros, 25) << "column " << c;  // not a no-op, unlike the reference's `drop`
  }
  // Workers drop different coordinates.
  EXPECT_TRUE(((dropped->col(0).array() == 0) != (dropped->col(1).array() == 0)).any());
  // round(0.25 * 10) = 3 (2.5 rounds away from zero); fraction 0 and 1.
  std::mt19937_64 small(5);
  absl::StatusOr<Eigen::MatrixXf> ten = DropCoordinates(Ramp(10, 1), 0.25, small);
  ASSERT_TRUE(ten.ok());
  EXPECT_EQ((ten->array() == 0).count(), 3);
  absl::StatusOr<Eigen::MatrixXf> none = DropCoordinates(own, 0.0, small);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(*none == own);
  absl::StatusOr<Eigen::MatrixXf> all = DropCoordinates(own, 1.0, small);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->isZero());
}

TEST(DropCoordinatesTest, DeterministicBySeed) {
  const Eigen::MatrixXf own = Ramp(100, 2);
  std::mt19937_64 first(9), second(9), other(10);
  absl::StatusOr<Eigen::MatrixXf> a = DropCoordinates(own, 0.3, first);
  absl::StatusOr<Eigen::MatrixXf> b = DropCoordinates(own, 0.3, second);
  absl::StatusOr<Eigen::MatrixXf> c = DropCoordinates(own, 0.3, other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(*a == *b);
  EXPECT_FALSE(*a == *c);
}

TEST(DropCoordinatesTest, RejectsBadInputs) {
  std::mt19937_64 rng(1);
  ExpectInvalid(DropCoordinates(Ramp(4, 1), 1.5, rng), "fraction = 1.5");
  ExpectInvalid(DropCoordinates(Ramp(4, 1), -0.1, rng), "fraction = -0.1");
  ExpectInvalid(DropCoordinates(Ramp(4, 1), NAN, rng), "fraction = nan");
  ExpectInvalid(DropCoordinates(Eigen::MatrixXf(0, 2), 0.1, rng), "`own` is 0 x 2");
}

TEST(FlipLabelsTest, MapsYToCMinusOneMinusY) {
  absl::StatusOr<std::vector<int64_t>> ten = FlipLabels({0, 3, 9, 4, 5}, 10);
  ASSERT_TRUE(ten.ok()) << ten.status();
  EXPECT_THAT(*ten, ElementsAre(9, 6, 0, 5, 4));
  absl::StatusOr<std::vector<int64_t>> binary = FlipLabels({0, 1, 1}, 2);
  ASSERT_TRUE(binary.ok());
  EXPECT_THAT(*binary, ElementsAre(1, 0, 0));
  absl::StatusOr<std::vector<int64_t>> empty = FlipLabels({}, 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  ExpectInvalid(FlipLabels({0, 3, 10}, 10), "labels[2] = 10 is outside [0, 10)");
  ExpectInvalid(FlipLabels({-1}, 10), "labels[0] = -1");
  ExpectInvalid(FlipLabels({0}, 1), "num_classes = 1");
}

TEST(AttackFactoryTest, NamesRoundTripAndUnknownNameListsThem) {
  for (AttackKind kind : {AttackKind::kSignFlip, AttackKind::kGaussian, AttackKind::kAlie,
                          AttackKind::kIpm, AttackKind::kDrop, AttackKind::kLabelFlip}) {
    absl::StatusOr<AttackKind> parsed = ParseAttackName(AttackName(kind));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
    absl::StatusOr<std::unique_ptr<Attack>> attack = MakeAttack(AttackName(kind), {});
    ASSERT_TRUE(attack.ok()) << attack.status();
    EXPECT_EQ((*attack)->kind(), kind);
    EXPECT_EQ(IsOmniscient(kind), kind == AttackKind::kAlie || kind == AttackKind::kIpm);
  }
  ExpectInvalid(ParseAttackName("bitflip"),
                "unknown name \"bitflip\"; use one of sign_flip, gaussian, alie, ipm, drop, "
                "label_flip");
  ExpectInvalid(MakeAttack("reverse", {}), "the reference's `reverse` is sign_flip");
}

TEST(AttackFactoryTest, RejectsBadOptionsNamingTheField) {
  AttackOptions options;
  options.drop_fraction = 1.5;
  ExpectInvalid(MakeAttack("drop", options), "AttackOptions::drop_fraction = 1.5");
  options = {};
  options.gaussian_sigma = -1;
  ExpectInvalid(MakeAttack("gaussian", options), "AttackOptions::gaussian_sigma = -1");
  options = {};
  options.sign_flip_scale = 0;
  ExpectInvalid(MakeAttack("sign_flip", options), "AttackOptions::sign_flip_scale = 0");
  options = {};
  options.ipm_epsilon = -0.1;
  ExpectInvalid(MakeAttack("ipm", options), "AttackOptions::ipm_epsilon = -0.1");
  options = {};
  options.num_classes = 1;
  ExpectInvalid(MakeAttack("label_flip", options), "AttackOptions::num_classes = 1");
  options = {};
  options.alie_z = NAN;
  ExpectInvalid(MakeAttack("alie", options), "AttackOptions::alie_z = nan");
  // Options an attack does not read are not checked.
  options = {};
  options.drop_fraction = 1.5;
  EXPECT_TRUE(MakeAttack("ipm", options).ok());
}

TEST(AttackFactoryTest, ForgeUsesDefaultsAndWhatEachAttackSees) {
  const Eigen::MatrixXf own = Workers({{1, -2}, {3, 0.5}});  // f = 2
  const Eigen::MatrixXf honest = ThreeHonest();              // h = 3
  const Eigen::MatrixXf none;

  absl::StatusOr<std::unique_ptr<Attack>> sign_flip = MakeAttack("sign_flip", {});
  ASSERT_TRUE(sign_flip.ok());
  absl::StatusOr<Eigen::MatrixXf> flipped = (*sign_flip)->Forge(own, none);
  ASSERT_TRUE(flipped.ok()) << flipped.status();
  EXPECT_TRUE(flipped->isApprox(-10 * own));  // default scale 10

  absl::StatusOr<std::unique_ptr<Attack>> ipm = MakeAttack("ipm", {});
  ASSERT_TRUE(ipm.ok());
  ExpectColumns((*ipm)->Forge(own, honest), 2, {-0.3, -0.4});  // default epsilon 0.1

  // alie without a fixed z: n = h + f = 15, f = 3 gives z = Phi^{-1}(2/3). Twelve honest
  // gradients, six 0 and six 2: mu = 1, sigma = sqrt(12/11).
  Eigen::MatrixXf twelve = Eigen::MatrixXf::Zero(1, 12);
  twelve.rightCols(6).setConstant(2);
  absl::StatusOr<std::unique_ptr<Attack>> alie = MakeAttack("alie", {});
  ASSERT_TRUE(alie.ok());
  ExpectColumns((*alie)->Forge(Eigen::MatrixXf::Zero(1, 3), twelve), 3, {0.550120008295111});
  // n = h + f = 5, f = 3 breaks 2f < n: the error says how to fix it.
  ExpectInvalid((*alie)->Forge(Eigen::MatrixXf::Zero(2, 3), ThreeHonest().leftCols(2)),
                "set AttackOptions::alie_z");
  AttackOptions reference;
  reference.alie_z = kAlieReferenceZ;
  absl::StatusOr<std::unique_ptr<Attack>> fixed = MakeAttack("alie", reference);
  ASSERT_TRUE(fixed.ok());
  ExpectColumns((*fixed)->Forge(own, honest), 2, {3 - 0.42, 4 - 0.21 * std::sqrt(12.0)});

  // gaussian reads only own's shape; one seed reproduces the run, step after step.
  absl::StatusOr<std::unique_ptr<Attack>> noise_a = MakeAttack("gaussian", {});
  absl::StatusOr<std::unique_ptr<Attack>> noise_b = MakeAttack("gaussian", {});
  ASSERT_TRUE(noise_a.ok() && noise_b.ok());
  absl::StatusOr<Eigen::MatrixXf> a1 = (*noise_a)->Forge(own, none);
  absl::StatusOr<Eigen::MatrixXf> a2 = (*noise_a)->Forge(own, none);
  absl::StatusOr<Eigen::MatrixXf> b1 = (*noise_b)->Forge(own, none);
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_EQ(a1->rows(), 2);
  EXPECT_EQ(a1->cols(), 2);
  EXPECT_TRUE(*a1 == *b1);
  EXPECT_FALSE(*a1 == *a2);

  // drop at the default 10%: round(0.1 * 20) = 2 zeros per worker.
  absl::StatusOr<std::unique_ptr<Attack>> drop = MakeAttack("drop", {});
  ASSERT_TRUE(drop.ok());
  absl::StatusOr<Eigen::MatrixXf> dropped = (*drop)->Forge(Ramp(20, 2), none);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ((dropped->col(0).array() == 0).count(), 2);
  EXPECT_EQ((dropped->col(1).array() == 0).count(), 2);
}

TEST(AttackFactoryTest, LabelFlipPoisonsLabelsOthersLeaveThem) {
  absl::StatusOr<std::unique_ptr<Attack>> label_flip = MakeAttack("label_flip", {});
  ASSERT_TRUE(label_flip.ok());
  absl::StatusOr<std::vector<int64_t>> poisoned = (*label_flip)->PoisonLabels({0, 1, 9});
  ASSERT_TRUE(poisoned.ok());
  EXPECT_THAT(*poisoned, ElementsAre(9, 8, 0));  // default C = 10
  ExpectInvalid((*label_flip)->PoisonLabels({12}), "labels[0] = 12");
  // Its gradient, computed on the flipped batch, goes out unchanged.
  const Eigen::MatrixXf own = Workers({{1, -2}});
  absl::StatusOr<Eigen::MatrixXf> sent = (*label_flip)->Forge(own, Eigen::MatrixXf());
  ASSERT_TRUE(sent.ok());
  EXPECT_TRUE(*sent == own);

  absl::StatusOr<std::unique_ptr<Attack>> sign_flip = MakeAttack("sign_flip", {});
  ASSERT_TRUE(sign_flip.ok());
  absl::StatusOr<std::vector<int64_t>> kept = (*sign_flip)->PoisonLabels({0, 1, 12});
  ASSERT_TRUE(kept.ok());
  EXPECT_THAT(*kept, ElementsAre(0, 1, 12));
}

TEST(AttackFactoryTest, ForgeRejectsMissingOrMismatchedInputs) {
  absl::StatusOr<std::unique_ptr<Attack>> ipm = MakeAttack("ipm", {});
  absl::StatusOr<std::unique_ptr<Attack>> alie = MakeAttack("alie", {});
  ASSERT_TRUE(ipm.ok() && alie.ok());
  const Eigen::MatrixXf own = Workers({{1, -2}});
  ExpectInvalid((*ipm)->Forge(own, Eigen::MatrixXf()), "ipm: `honest` is empty");
  ExpectInvalid((*alie)->Forge(own, Eigen::MatrixXf()), "alie: `honest` is empty");
  ExpectInvalid((*ipm)->Forge(own, Workers({{1, 2, 3}})),
                "`honest` has d = 3 coordinates but `own` has d = 2");
  ExpectInvalid((*ipm)->Forge(Eigen::MatrixXf(), ThreeHonest()), "ipm: `own` is 0 x 0");
  AttackOptions reference;
  reference.alie_z = kAlieReferenceZ;
  absl::StatusOr<std::unique_ptr<Attack>> fixed = MakeAttack("alie", reference);
  ASSERT_TRUE(fixed.ok());
  ExpectInvalid((*fixed)->Forge(own, Workers({{1, 2}})), "at least 2 gradient column(s)");
}

}  // namespace
}  // namespace troupe::federation::attacks
