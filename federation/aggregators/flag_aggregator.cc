#include "federation/aggregators/flag_aggregator.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "eigen3/Eigen/Cholesky"
#include "eigen3/Eigen/Eigenvalues"

namespace troupe::federation::aggregators {
namespace {

// Eigenvalues below this fraction of the largest are treated as zero (the Gram matrices are
// summed in double, so exact rank deficiency shows up around 1e-16).
constexpr double kRelativeRankCutoff = 1e-12;

// Rows of the input processed per pass step: the double copies of the block stay in cache.
constexpr Eigen::Index kRowBlock = 4096;

// The reference stops IRLS after 1 update; the faithful mode runs to convergence, capped here.
constexpr int kFaithfulMaxIterations = 100;

// SplitMix64 of a counter: entry (row, column) of Y_0's uniform matrix depends only on the seed
// and its index, so any block can be regenerated (the output pass needs Y_0 again when the
// first update is rejected).
float UniformEntry(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f) - 0.5f;  // U[-0.5, 0.5), 24 bits
}

void FillUniformBlock(uint64_t seed, Eigen::Index start, Eigen::Index m, Eigen::MatrixXd* block) {
  for (Eigen::Index r = 0; r < block->rows(); ++r) {
    for (Eigen::Index c = 0; c < m; ++c) {
      (*block)(r, c) = UniformEntry(seed, static_cast<uint64_t>(start + r) * m + c);
    }
  }
}

// What one pass over the input yields: S = G^T G, and Z^T Z, Z^T G for the uniform Z (d x m0).
struct InputPass {
  Eigen::MatrixXd gram;
  Eigen::MatrixXd uniform_gram;
  Eigen::MatrixXd uniform_times_gradients;
};

InputPass ScanInput(const GradientMatrix& gradients, Eigen::Index m0, uint64_t seed) {
  const Eigen::Index d = gradients.rows();
  const Eigen::Index p = gradients.cols();
  InputPass pass{Eigen::MatrixXd::Zero(p, p), Eigen::MatrixXd::Zero(m0, m0),
                 Eigen::MatrixXd::Zero(m0, p)};
  Eigen::MatrixXd block;
  Eigen::MatrixXd uniform;
  for (Eigen::Index start = 0; start < d; start += kRowBlock) {
    const Eigen::Index rows = std::min(kRowBlock, d - start);
    block = gradients.middleRows(start, rows).cast<double>();
    uniform.resize(rows, m0);
    FillUniformBlock(seed, start, m0, &uniform);
    pass.gram.selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
    pass.uniform_gram.selfadjointView<Eigen::Lower>().rankUpdate(uniform.transpose());
    pass.uniform_times_gradients.noalias() += uniform.transpose() * block;
  }
  pass.gram.triangularView<Eigen::StrictlyUpper>() = pass.gram.transpose();
  pass.uniform_gram.triangularView<Eigen::StrictlyUpper>() = pass.uniform_gram.transpose();
  return pass;
}

// DataTerm is sum_i sqrt(max(0, 1 - v_i)), v_i = ||Y^T x_i||^2, from P = Y^T X (r x p): the
// quantity the reference's stopping rules watch.
double DataTerm(const Eigen::MatrixXd& projections) {
  double sum = 0.0;
  for (Eigen::Index i = 0; i < projections.cols(); ++i) {
    sum += std::sqrt(std::max(0.0, 1.0 - projections.col(i).squaredNorm()));
  }
  return sum;
}

// PairwiseTerm is sum_{i != j} sqrt(|1 - ||Y^T (x_i - x_j)||^2|).
double PairwiseTerm(const Eigen::MatrixXd& projections) {
  const Eigen::Index p = projections.cols();
  double sum = 0.0;
  for (Eigen::Index i = 0; i < p; ++i) {
    for (Eigen::Index j = 0; j < p; ++j) {
      if (i == j) continue;
      sum += std::sqrt(std::abs(1.0 - (projections.col(i) - projections.col(j)).squaredNorm()));
    }
  }
  return sum;
}

// IrlsWeights returns W = C C^T for A = [w_i x_i | c w_ij (x_i - x_j)] in the basis of the
// normalized gradients: diag(w_i^2) plus, for each ordered pair, c^2 w_ij^2 (e_i - e_j)(...)^T.
Eigen::MatrixXd IrlsWeights(const Eigen::MatrixXd& projections, double column_factor,
                            double epsilon) {
  const Eigen::Index p = projections.cols();
  Eigen::MatrixXd weights = Eigen::MatrixXd::Zero(p, p);
  for (Eigen::Index i = 0; i < p; ++i) {
    const double residual = std::abs(1.0 - projections.col(i).squaredNorm());
    weights(i, i) = 1.0 / std::sqrt(residual + epsilon);  // w_i^2, w_i = (...)^(-1/4)
  }
  if (column_factor == 0.0) return weights;
  for (Eigen::Index i = 0; i < p; ++i) {
    for (Eigen::Index j = 0; j < p; ++j) {
      if (i == j) continue;
      const double residual =
          std::abs(1.0 - (projections.col(i) - projections.col(j)).squaredNorm());
      const double w2 = column_factor * column_factor / std::sqrt(residual + epsilon);
      weights(i, i) += w2;
      weights(j, j) += w2;
      weights(i, j) -= w2;
      weights(j, i) -= w2;
    }
  }
  return weights;
}

absl::Status ValidateFlagOptions(const FlagOptions& options) {
  if (options.subspace_dim < 1 || !(options.lambda >= 0) || !std::isfinite(options.lambda) ||
      options.iterations < 1 || !(options.epsilon > 0) || !(options.stop_tolerance >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag: options out of range (subspace_dim = ", options.subspace_dim,
        ", lambda = ", options.lambda, ", iterations = ", options.iterations,
        ", epsilon = ", options.epsilon, ", stop_tolerance = ", options.stop_tolerance,
        "); use subspace_dim >= 1, finite lambda >= 0, iterations >= 1, epsilon > 0, "
        "stop_tolerance >= 0"));
  }
  return absl::OkStatus();
}

}  // namespace

FlagOptions FlagOptions::CodeExact() { return FlagOptions(); }

FlagOptions FlagOptions::Faithful() {
  FlagOptions options;
  options.mode = FlagMode::kFaithful;
  options.iterations = kFaithfulMaxIterations;
  return options;
}

Eigen::MatrixXd FlagTopSubspace(const Eigen::MatrixXd& gram, const Eigen::MatrixXd& weights,
                                int m) {
  // range(A) lies in range(X). With S = Q L Q^T (L > 0 part), U = X Q L^(-1/2) is an
  // orthonormal basis of range(X) and A A^T = U (L^(1/2) Q^T W Q L^(1/2)) U^T, so the top
  // eigenvectors V of that q x q matrix give Y = U V = X (Q L^(-1/2) V).
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> gram_eigen(gram);
  const Eigen::VectorXd& gram_values = gram_eigen.eigenvalues();  // ascending
  const Eigen::Index p = gram.rows();
  const double gram_cutoff = kRelativeRankCutoff * std::max(gram_values[p - 1], 0.0);
  Eigen::Index q = 0;
  while (q < p && gram_values[p - 1 - q] > gram_cutoff) ++q;
  if (q == 0) return Eigen::MatrixXd(p, 0);
  const Eigen::MatrixXd basis = gram_eigen.eigenvectors().rightCols(q);
  const Eigen::VectorXd root = gram_values.tail(q).cwiseSqrt();
  const Eigen::MatrixXd reduced =
      root.asDiagonal() * (basis.transpose() * weights * basis) * root.asDiagonal();
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> reduced_eigen(reduced);
  const Eigen::VectorXd& values = reduced_eigen.eigenvalues();
  const double cutoff = kRelativeRankCutoff * std::max(values[q - 1], 0.0);
  Eigen::Index r = 0;
  while (r < std::min<Eigen::Index>(m, q) && values[q - 1 - r] > cutoff) ++r;
  const Eigen::MatrixXd top = reduced_eigen.eigenvectors().rightCols(r).rowwise().reverse();
  return basis * root.cwiseInverse().asDiagonal() * top;
}

absl::StatusOr<FlagResult> FlagAggregate(const GradientMatrix& gradients,
                                         const FlagOptions& options) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (absl::Status status = ValidateFlagOptions(options); !status.ok()) return status;
  const Eigen::Index d = gradients.rows();
  const Eigen::Index p = gradients.cols();
  const bool faithful = options.mode == FlagMode::kFaithful;
  // Y_0 has min(m, d) columns: QR of a d x m matrix with d < m is d x d.
  const Eigen::Index m0 = std::min<Eigen::Index>(options.subspace_dim, d);

  const InputPass pass = ScanInput(gradients, m0, options.seed);
  const Eigen::VectorXd norms = pass.gram.diagonal().cwiseSqrt();
  for (Eigen::Index i = 0; i < p; ++i) {
    if (!(norms[i] > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag: worker column ", i, " is a zero gradient; the Flag Aggregator normalizes each "
          "gradient, so drop that worker for this round"));
    }
  }
  const Eigen::VectorXd inverse_norms = norms.cwiseInverse();
  // Everything below is in terms of the normalized gradients x_i = g_i / ||g_i||.
  const Eigen::MatrixXd gram =
      inverse_norms.asDiagonal() * pass.gram * inverse_norms.asDiagonal();
  const Eigen::LLT<Eigen::MatrixXd> uniform_chol(pass.uniform_gram);  // Z^T Z = L L^T, R = L^T
  const Eigen::MatrixXd uniform_times_normalized =
      pass.uniform_times_gradients * inverse_norms.asDiagonal();

  const double pair_scale = p > 1 ? options.lambda / static_cast<double>(p * (p - 1)) : 0.0;
  const double column_factor = faithful ? std::sqrt(pair_scale) : pair_scale;
  auto objective_of = [&](const Eigen::MatrixXd& projections) {
    double value = DataTerm(projections);
    if (faithful && pair_scale > 0) value += pair_scale * PairwiseTerm(projections);
    return value;
  };

  FlagResult result;
  // Y_0 = Z R^{-1}, so Y_0^T X = R^{-T} Z^T X = L^{-1} (Z^T X).
  Eigen::MatrixXd projections =
      uniform_chol.matrixL().solve(uniform_times_normalized);
  result.objective.push_back(objective_of(projections));
  Eigen::MatrixXd coefficients;  // Y = X B for the current Y; empty while Y = Y_0
  for (int iteration = 0; iteration < options.iterations; ++iteration) {
    const Eigen::MatrixXd weights = IrlsWeights(projections, column_factor, options.epsilon);
    Eigen::MatrixXd next = FlagTopSubspace(gram, weights, options.subspace_dim);
    Eigen::MatrixXd next_projections = next.transpose() * gram;
    const double previous = result.objective.back();
    const double current = objective_of(next_projections);
    result.objective.push_back(current);
    ++result.iterations;
    if (current > previous) break;  // the reference keeps the previous Y
    coefficients = std::move(next);
    projections = std::move(next_projections);
    if (previous - current <= options.stop_tolerance || current <= options.stop_tolerance) break;
  }

  // aggregate = (1/m) Y Y^T sum_i x_i.
  const double scale = 1.0 / options.subspace_dim;
  const Eigen::VectorXd projected_sum = projections.rowwise().sum();  // Y^T sum_i x_i
  if (coefficients.size() > 0 || projections.rows() == 0) {
    result.subspace_rank = static_cast<int>(coefficients.cols());
    const Eigen::VectorXd mix =
        scale * inverse_norms.asDiagonal() * (coefficients * projected_sum);
    result.aggregate = gradients * mix.cast<float>();
    return result;
  }
  // The first update was rejected: Y = Y_0 = Z R^{-1}, Y Y^T s = Z (Z^T Z)^{-1} Z^T s.
  result.subspace_rank = static_cast<int>(m0);
  const Eigen::VectorXd mix =
      scale * uniform_chol.solve(uniform_times_normalized.rowwise().sum());
  result.aggregate.resize(d);
  Eigen::MatrixXd uniform;
  for (Eigen::Index start = 0; start < d; start += kRowBlock) {
    const Eigen::Index rows = std::min(kRowBlock, d - start);
    uniform.resize(rows, m0);
    FillUniformBlock(options.seed, start, m0, &uniform);
    result.aggregate.segment(start, rows) = (uniform * mix).cast<float>();
  }
  return result;
}

}  // namespace troupe::federation::aggregators
