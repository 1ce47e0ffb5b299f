// The Flag Aggregator (Almasi et al., ICLR 2024; reference code hamidralmasi/FlagAggregator):
// estimates an m-dimensional subspace Y of the normalized worker gradients by IRLS on a flag-
// median objective, then returns the projection (1/m) Y Y^T sum_i x_i, x_i = g_i / ||g_i||.
// shared/papers/flag_aggregator.md is the spec; docs/federation.md summarizes it.
//
//   FlagOptions options = FlagOptions::CodeExact();  // n_its = 1, as the reference runs it
//   options.subspace_dim = 8;
//   absl::StatusOr<FlagResult> result = FlagAggregate(gradients, options);
//   Eigen::VectorXf update = result->aggregate;
//
// Cost: one pass over the d x p input builds the p x p Gram matrix of the gradients (and, for
// the random start Y_0, their products with its d x m uniform matrix, generated block by block
// and never stored); every IRLS step then works on p x p matrices only; a last pass forms the output as
// a combination of the input columns. No d x d, d x k or k x k (k = p^2 for lambda > 0) matrix
// is formed: A A^T = X (C C^T) X^T for the p x k weight matrix C, so the top left singular
// vectors of A = X C come from p x p eigendecompositions (FlagTopSubspace).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/aggregators.h"

namespace troupe::federation::aggregators {

// FlagMode selects between the reference code's behaviour and the objective as written.
enum class FlagMode {
  // As hamidralmasi/FlagAggregator runs: lambda / (p (p - 1)) multiplies the pairwise columns
  // of A (so the IRLS effectively weighs the pairwise term by its square), the stopping rules
  // watch only the data term sum_i sqrt(max(0, 1 - v_i)), and n_its = 1.
  kCodeExact,
  // The regularized objective as written: sqrt(lambda / (p (p - 1))) on the pairwise columns
  // (the IRLS weight is then lambda / (p (p - 1))), the stopping rules watch the whole
  // objective, and IRLS runs until they stop it (up to `iterations`).
  kFaithful,
};

// FlagOptions configures FlagAggregate. Defaults are the reference code's (code-exact).
struct FlagOptions {
  FlagMode mode = FlagMode::kCodeExact;
  // m, the subspace dimension (--r_col): 1 by default in the reference, 8 in its scripts.
  int subspace_dim = 8;
  // lambda, the pairwise regularization (--lambda_): 0 in the reference and its main runs.
  double lambda = 0.0;
  // n_its, the most IRLS updates: hard-coded to 1 in the reference's aggregators/flag.py.
  int iterations = 1;
  // epsilon in the IRLS weights (|1 - v| + epsilon)^(-1/4), as in the reference.
  double epsilon = 1e-7;
  // IRLS stops when the objective decreases by at most this, or falls to at most this
  // (the reference's 1e-10).
  double stop_tolerance = 1e-10;
  // Seed of the random start Y_0 = QR(U(-0.5, 0.5)^{d x m}); the reference seeds torch with 1.
  // Our generator is not torch's, so Y_0 matches the reference in distribution only.
  uint64_t seed = 1;

  // CodeExact is the reference configuration (the defaults above).
  static FlagOptions CodeExact();
  // Faithful runs IRLS on the written objective to convergence (at most 100 updates).
  static FlagOptions Faithful();
};

// FlagResult is the aggregate and what the IRLS did to get it.
struct FlagResult {
  // (1/m) Y Y^T sum_i x_i: scale-free, |aggregate| <= p / m.
  Eigen::VectorXf aggregate;
  // IRLS updates computed (the last may have been rejected for not decreasing the objective).
  int iterations = 0;
  // Columns of the returned Y: m, or fewer when A has rank below m (the missing directions are
  // orthogonal to every x_i, so they would not change the aggregate).
  int subspace_rank = 0;
  // The monitored objective (see FlagMode) at Y_0, Y_1, ..., one entry per Y computed.
  std::vector<double> objective;
};

// FlagAggregate runs the Flag Aggregator on p worker gradients (columns). Needs every gradient
// non-zero and finite (they are normalized), subspace_dim >= 1, lambda >= 0, iterations >= 1,
// epsilon > 0.
absl::StatusOr<FlagResult> FlagAggregate(const GradientMatrix& gradients,
                                         const FlagOptions& options = {});

// FlagTopSubspace is the Gram route of one IRLS update. Given S = X^T X (p x p) and
// W = C C^T (p x p) for a matrix A = X C, it returns B (p x r) such that Y = X B has
// orthonormal columns spanning the top-r left singular vectors of A, r = min(m, rank(A)).
// Eigenvalues below 1e-12 of the largest count as zero.
Eigen::MatrixXd FlagTopSubspace(const Eigen::MatrixXd& gram, const Eigen::MatrixXd& weights,
                                int m);

}  // namespace troupe::federation::aggregators
