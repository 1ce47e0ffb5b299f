#include "federation/attacks/attacks.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace troupe::federation::attacks {
namespace {

constexpr double kPi = 3.14159265358979323846;

// CheckGradients checks that `matrix` (the input called `input` of `attack`) has d >= 1 rows, at
// least `min_columns` columns, and finite entries.
absl::Status CheckGradients(const GradientMatrix& matrix, absl::string_view attack,
                            absl::string_view input, Eigen::Index min_columns,
                            absl::string_view why) {
  if (matrix.rows() == 0 || matrix.cols() < min_columns) {
    return absl::InvalidArgumentError(absl::StrCat(
        attack, ": `", input, "` is ", matrix.rows(), " x ", matrix.cols(),
        " but needs d >= 1 rows and at least ", min_columns, " gradient column(s) ", why));
  }
  for (Eigen::Index i = 0; i < matrix.cols(); ++i) {
    if (matrix.col(i).allFinite()) continue;
    Eigen::Index r = 0;
    while (std::isfinite(matrix(r, i))) ++r;
    return absl::InvalidArgumentError(absl::StrCat(
        attack, ": `", input, "` column ", i, " has a non-finite value (", matrix(r, i),
        ") at coordinate ", r, "; pass finite gradients (drop or repair that worker's)"));
  }
  return absl::OkStatus();
}

absl::Status CheckNumByzantine(int num_byzantine, absl::string_view attack) {
  if (num_byzantine >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(attack, ": num_byzantine = ", num_byzantine,
                                                 "; pass the number of forged gradients, >= 1"));
}

// Uniform53 is a uniform double in [0, 1) from the top 53 bits of one draw. std::mt19937_64's
// output is fixed by the standard; the std:: distributions are not, so seeds would not reproduce
// across standard libraries with them.
double Uniform53(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// UniformIndex is uniform in [0, bound), without modulo bias (rejection of the top remainder).
uint64_t UniformIndex(uint64_t bound, std::mt19937_64& rng) {
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
  uint64_t draw = rng();
  while (draw >= limit) draw = rng();
  return draw % bound;
}

// ForgeCopies returns num_byzantine copies of `forged`: omniscient attackers collude and all send
// the same vector.
Eigen::MatrixXf ForgeCopies(const Eigen::VectorXd& forged, int num_byzantine) {
  return forged.cast<float>().replicate(1, num_byzantine);
}

Eigen::VectorXd MeanOf(const GradientMatrix& gradients) {
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(gradients.rows());
  for (Eigen::Index i = 0; i < gradients.cols(); ++i) sum += gradients.col(i).cast<double>();
  return sum / static_cast<double>(gradients.cols());
}

}  // namespace

absl::StatusOr<Eigen::MatrixXf> SignFlip(const GradientMatrix& own, double scale) {
  if (absl::Status status = CheckGradients(own, "sign_flip", "own", 1,
                                           "(the Byzantine workers' own gradients, d x f)");
      !status.ok()) {
    return status;
  }
  if (!std::isfinite(scale) || scale <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sign_flip: scale = ", scale, "; pass a finite scale > 0 (the reference uses 10)"));
  }
  return Eigen::MatrixXf(own * static_cast<float>(-scale));
}

absl::StatusOr<Eigen::MatrixXf> GaussianNoise(Eigen::Index dimension, int num_byzantine,
                                              double sigma, std::mt19937_64& rng) {
  if (dimension < 1) {
    return absl::InvalidArgumentError(absl::StrCat("gaussian: dimension = ", dimension,
                                                   "; pass the model's gradient dimension d >= 1"));
  }
  if (absl::Status status = CheckNumByzantine(num_byzantine, "gaussian"); !status.ok()) {
    return status;
  }
  if (!std::isfinite(sigma) || sigma < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian: sigma = ", sigma, "; pass a finite standard deviation >= 0"));
  }
  Eigen::MatrixXf noise(dimension, num_byzantine);
  float* out = noise.data();
  const Eigen::Index total = noise.size();
  // Box-Muller: each pair of uniforms gives two independent standard normals.
  for (Eigen::Index i = 0; i < total; i += 2) {
    const double u1 = 1.0 - Uniform53(rng);  // in (0, 1], so log(u1) is finite
    const double u2 = Uniform53(rng);
    const double radius = sigma * std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(radius * std::cos(2.0 * kPi * u2));
    if (i + 1 < total) out[i + 1] = static_cast<float>(radius * std::sin(2.0 * kPi * u2));
  }
  return noise;
}

absl::StatusOr<double> InverseNormalCdf(double p) {
  if (!(p > 0 && p < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("InverseNormalCdf: p = ", p, "; pass a probability strictly in (0, 1)"));
  }
  // Acklam's coefficients (central region, then the tails).
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kTail = 0.02425;
  double x;
  if (p < kTail || p > 1 - kTail) {
    const double q = std::sqrt(-2.0 * std::log(p < kTail ? p : 1 - p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    if (p > 1 - kTail) x = -x;
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // One Halley step on Phi(x) - p brings the 1e-9 approximation to double precision.
  const double error = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = error * std::sqrt(2.0 * kPi) * std::exp(x * x / 2.0);
  return x - u / (1.0 + x * u / 2.0);
}

absl::StatusOr<double> AlieZ(int n, int f) {
  if (f < 1 || 2 * static_cast<int64_t>(f) >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("alie: z needs 1 <= f and 2f < n (a Byzantine minority), got n = ", n,
                     " and f = ", f, "; lower f to at most ", std::max(0, (n - 1) / 2),
                     " or set AttackOptions::alie_z to a fixed z"));
  }
  const int s = n / 2 + 1 - f;  // floor(n/2 + 1) - f
  return InverseNormalCdf(static_cast<double>(n - s) / n);
}

absl::StatusOr<Eigen::MatrixXf> Alie(const GradientMatrix& honest, int num_byzantine, double z) {
  if (absl::Status status =
          CheckGradients(honest, "alie", "honest", 2,
                         "(the honest gradients of the round: one has no standard deviation)");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckNumByzantine(num_byzantine, "alie"); !status.ok()) return status;
  if (!std::isfinite(z)) {
    return absl::InvalidArgumentError(
        absl::StrCat("alie: z = ", z, "; pass a finite z, or leave it unset for AlieZ(n, f)"));
  }
  const Eigen::VectorXd mean = MeanOf(honest);
  Eigen::VectorXd squares = Eigen::VectorXd::Zero(honest.rows());
  for (Eigen::Index i = 0; i < honest.cols(); ++i) {
    squares += (honest.col(i).cast<double>() - mean).array().square().matrix();
  }
  const Eigen::VectorXd stddev =
      (squares / static_cast<double>(honest.cols() - 1)).array().sqrt().matrix();
  return ForgeCopies(mean - z * stddev, num_byzantine);
}

absl::StatusOr<Eigen::MatrixXf> Ipm(const GradientMatrix& honest, int num_byzantine,
                                    double epsilon) {
  if (absl::Status status =
          CheckGradients(honest, "ipm", "honest", 1, "(the honest gradients of the round)");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckNumByzantine(num_byzantine, "ipm"); !status.ok()) return status;
  if (!std::isfinite(epsilon) || epsilon <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ipm: epsilon = ", epsilon, "; pass a finite epsilon > 0 (the reference uses 0.1)"));
  }
  return ForgeCopies(-epsilon * MeanOf(honest), num_byzantine);
}

absl::StatusOr<Eigen::MatrixXf> DropCoordinates(const GradientMatrix& own, double fraction,
                                                std::mt19937_64& rng) {
  if (absl::Status status =
          CheckGradients(own, "drop", "own", 1, "(the Byzantine workers' own gradients, d x f)");
      !status.ok()) {
    return status;
  }
  if (!(fraction >= 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drop: fraction = ", fraction, "; pass a fraction of coordinates in [0, 1]"));
  }
  const Eigen::Index d = own.rows();
  const Eigen::Index dropped = static_cast<Eigen::Index>(std::llround(fraction * d));
  Eigen::MatrixXf result = own;
  std::vector<Eigen::Index> order(d);
  std::iota(order.begin(), order.end(), 0);
  for (Eigen::Index column = 0; column < result.cols(); ++column) {
    // A partial Fisher-Yates shuffle: the first `dropped` entries become a uniform subset. It
    // starts from the previous column's order, which keeps it uniform without an O(d) reset.
    for (Eigen::Index i = 0; i < dropped; ++i) {
      const Eigen::Index j = i + static_cast<Eigen::Index>(UniformIndex(d - i, rng));
      std::swap(order[i], order[j]);
      result(order[i], column) = 0.0f;
    }
  }
  return result;
}

absl::StatusOr<std::vector<int64_t>> FlipLabels(absl::Span<const int64_t> labels,
                                                int64_t num_classes) {
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_flip: num_classes = ", num_classes,
                     "; pass the dataset's number of classes, >= 2 (AttackOptions::num_classes)"));
  }
  std::vector<int64_t> flipped(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label_flip: labels[", i, "] = ", labels[i], " is outside [0, ", num_classes,
                       "); set AttackOptions::num_classes to the dataset's number of classes"));
    }
    flipped[i] = num_classes - 1 - labels[i];
  }
  return flipped;
}

}  // namespace troupe::federation::attacks
