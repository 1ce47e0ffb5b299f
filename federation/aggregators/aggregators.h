// Byzantine-robust gradient aggregation rules: mean, coordinate-wise median, trimmed mean, Krum,
// Multi-Krum, Bulyan, geometric median (Weiszfeld) and centered clipping. The Flag Aggregator is
// in flag_aggregator.h; the by-name factory for the parameter server is in aggregator.h.
//
// Every rule takes the n worker gradients of one round as a d x n column-major float matrix
// (column i is worker i) and returns the d-vector to apply. Inputs are checked first: an empty
// matrix, a NaN/Inf entry (the error names the worker column and the coordinate) or an f out of
// the rule's range is an InvalidArgument error, never a crash. Sums and distances accumulate in
// double; the inputs and outputs are float.
//
//   Eigen::MatrixXf gradients(d, n);  // one column per worker
//   absl::StatusOr<Eigen::VectorXf> update = Bulyan(gradients, /*f=*/2);  // needs n >= 4f + 3
//
// References: Krum and Multi-Krum, Blanchard et al., NeurIPS 2017; Bulyan, El Mhamdi et al.,
// ICML 2018; coordinate-wise median and trimmed mean, Yin et al., ICML 2018; geometric median,
// Pillutla et al., "Robust Aggregation for Federated Learning" (RFA), IEEE TSP 2022; centered
// clipping, Karimireddy et al., ICML 2021. docs/federation.md lists formulas and bounds.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "eigen3/Eigen/Core"

namespace troupe::federation::aggregators {

// GradientMatrix is a read-only view of n worker gradients of dimension d, one per column. An
// Eigen::MatrixXf or an Eigen::Map over a float buffer (column-major, d * n floats) binds to it
// without a copy.
using GradientMatrix = Eigen::Ref<const Eigen::MatrixXf>;

// ValidateGradients checks that `gradients` is non-empty and finite. The error names the first
// worker column and coordinate holding a NaN or Inf.
absl::Status ValidateGradients(const GradientMatrix& gradients);

// StackWorkerGradients copies per-worker buffers into a d x n matrix; every buffer must have the
// same non-zero length (the error names the first worker whose length differs).
absl::StatusOr<Eigen::MatrixXf> StackWorkerGradients(absl::Span<const std::vector<float>> workers);

// Mean is the plain average (1/n) sum_i g_i: the non-robust baseline (one worker moves it
// arbitrarily far).
absl::StatusOr<Eigen::VectorXf> Mean(const GradientMatrix& gradients);

// CoordinateWiseMedian is, per coordinate, the median over workers; for an even n it is the mean
// of the two middle values (torch.median, used by ByzFL and Garfield, returns the lower one).
absl::StatusOr<Eigen::VectorXf> CoordinateWiseMedian(const GradientMatrix& gradients);

// TrimmedMean drops, per coordinate, the f largest and the f smallest values and averages the
// remaining n - 2f. Needs 0 <= f and 2f < n.
absl::StatusOr<Eigen::VectorXf> TrimmedMean(const GradientMatrix& gradients, int f);

// KrumScores returns each worker's Krum score: the sum of the squared distances to its
// n - f - 2 nearest other workers. Needs n >= 2f + 3.
absl::StatusOr<std::vector<double>> KrumScores(const GradientMatrix& gradients, int f);

// Krum returns the gradient of the worker with the smallest Krum score (ties: the lowest index).
// Needs 0 <= f and n >= 2f + 3 (Blanchard et al.'s n > 2f + 2).
absl::StatusOr<Eigen::VectorXf> Krum(const GradientMatrix& gradients, int f);

// kMultiKrumReferenceM selects Multi-Krum's default m: n - f - 2, the value the Flag Aggregator
// reference code (Garfield's `krum` rule) uses. Blanchard et al. leave m free; ByzFL uses n - f.
inline constexpr int kMultiKrumReferenceM = 0;

// MultiKrum averages the m workers with the smallest Krum scores (scores computed once over all
// n workers). m = kMultiKrumReferenceM means n - f - 2; otherwise 1 <= m <= n. Needs
// n >= 2f + 3.
absl::StatusOr<Eigen::VectorXf> MultiKrum(const GradientMatrix& gradients, int f,
                                          int m = kMultiKrumReferenceM);

// Bulyan (El Mhamdi et al. 2018, over Krum): selects theta = n - 2f workers by applying Krum
// theta times, each time to the workers not yet selected (with the remaining count n' in
// n' - f - 2 neighbours, at least 1); then, per coordinate, averages the beta = theta - 2f
// selected values closest to their median. Needs 0 <= f and n >= 4f + 3.
absl::StatusOr<Eigen::VectorXf> Bulyan(const GradientMatrix& gradients, int f);

// GeometricMedianOptions configures the smoothed Weiszfeld iteration.
struct GeometricMedianOptions {
  // Most Weiszfeld steps. RFA reports that a few steps suffice (3 in its experiments); 100 is a
  // cap, the tolerance normally stops it first.
  int max_iterations = 100;
  // Stop when a step moves z by at most tolerance * (1 + ||z||). (The objective is flat near
  // its minimum, so a relative objective change of 1e-6 would still leave z off by ~1e-2.)
  double tolerance = 1e-6;
  // Smoothing: a distance below this counts as this (RFA's nu), so a worker sitting on the
  // current estimate does not get an infinite weight.
  double smoothing = 1e-6;
};

// GeometricMedian is argmin_z sum_i ||z - g_i||_2 by the smoothed Weiszfeld iteration
// z <- sum_i w_i g_i / sum_i w_i, w_i = 1 / max(smoothing, ||z - g_i||), from the mean.
// Breakdown point 1/2.
absl::StatusOr<Eigen::VectorXf> GeometricMedian(const GradientMatrix& gradients,
                                                const GeometricMedianOptions& options = {});

// CenteredClippingOptions configures centered clipping.
struct CenteredClippingOptions {
  // Clipping radius tau. Karimireddy et al. tie it to the honest gradients' spread; 10 is their
  // experiments' value [unverified], pick it from the scale of your gradients.
  double tau = 10.0;
  // Clipping steps L per round; Karimireddy et al. find L = 1 enough when the center is the
  // previous (momentum) aggregate.
  int iterations = 1;
};

// CenteredClipping runs v <- v + (1/n) sum_i (g_i - v) min(1, tau / ||g_i - v||) for
// `iterations` steps from `center` (the previous round's aggregate; nullptr: the mean, which is
// not robust on its own: each step moves v by at most tau). The center must have d entries.
absl::StatusOr<Eigen::VectorXf> CenteredClipping(const GradientMatrix& gradients,
                                                 const Eigen::VectorXf* center,
                                                 const CenteredClippingOptions& options = {});

}  // namespace troupe::federation::aggregators
