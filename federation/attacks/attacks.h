// Byzantine attacks for robust-training experiments: what a Byzantine worker sends instead of its
// honest gradient (sign flip, Gaussian noise, ALIE, IPM, coordinate drop) and the data-level label
// flip. The by-name factory for a worker's configuration is in attack.h.
//
// Gradients use the aggregators' layout: a d x n column-major float matrix, one column per worker
// (`GradientMatrix`). Each attack returns the f forged gradients as a d x f matrix (column j is
// Byzantine worker j) and says what its attack model lets it see:
//   - local attacks (SignFlip, DropCoordinates) see only the Byzantine workers' own gradients;
//   - GaussianNoise sees only the dimension d;
//   - omniscient attacks (Alie, Ipm) see every honest gradient of the round (d x h);
//   - FlipLabels sees only the worker's batch labels and the number of classes.
// Bad inputs are InvalidArgument errors naming the input, the limit and the fix. Sums accumulate
// in double; inputs and outputs are float.
//
//   std::mt19937_64 rng(options.seed);
//   absl::StatusOr<Eigen::MatrixXf> forged = Alie(honest, /*num_byzantine=*/3, *AlieZ(15, 3));
//
// References: ALIE, Baruch et al., "A Little Is Enough", NeurIPS 2019; IPM, Xie et al., "Fall of
// Empires", UAI 2020. docs/federation.md ("Attacks") compares them with the Flag Aggregator
// reference code (shared/papers/flag_aggregator.md, section 5).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/aggregators.h"

namespace troupe::federation::attacks {

// GradientMatrix is the aggregators' read-only d x n view (an Eigen::MatrixXf or an Eigen::Map
// over a column-major float buffer binds without a copy).
using GradientMatrix = aggregators::GradientMatrix;

// SignFlip returns -scale * own for each Byzantine worker's own gradient (d x f). Sees: its own
// gradients. Needs a finite scale > 0; the reference's `reverse` uses scale = 10.
absl::StatusOr<Eigen::MatrixXf> SignFlip(const GradientMatrix& own, double scale);

// GaussianNoise returns num_byzantine independent vectors of N(0, sigma^2 I_d), drawn from `rng`
// (a fixed seed gives the same vectors on every platform: the normal draws are our own
// Box-Muller over std::mt19937_64, not std::normal_distribution). Sees: only d. Needs d >= 1,
// num_byzantine >= 1 and a finite sigma >= 0. The reference's `random` draws U[0,1)^d instead.
absl::StatusOr<Eigen::MatrixXf> GaussianNoise(Eigen::Index dimension, int num_byzantine,
                                              double sigma, std::mt19937_64& rng);

// InverseNormalCdf is Phi^{-1}(p), the standard normal quantile, for 0 < p < 1 (Acklam's
// rational approximation refined by one Halley step on erfc: about 1e-15 relative error).
absl::StatusOr<double> InverseNormalCdf(double p);

// AlieZ is Baruch et al.'s z for n workers of which f are Byzantine: s = floor(n/2 + 1) - f
// workers must be won over, and z = Phi^{-1}((n - s) / n). Needs f >= 1 and 2f < n (then
// 1 <= s < n). Example: n = 15, f = 3 gives s = 5 and z = Phi^{-1}(2/3) = 0.430727.
absl::StatusOr<double> AlieZ(int n, int f);

// Alie (A Little Is Enough) returns num_byzantine copies of mu - z * sigma, where mu and sigma
// are the per-coordinate mean and sample standard deviation (denominator h - 1, torch.std's
// default) of the h honest gradients. Sees: every honest gradient (omniscient). Needs h >= 2 (one
// gradient has no sample spread: the reference's NaN), num_byzantine >= 1 and a finite z.
absl::StatusOr<Eigen::MatrixXf> Alie(const GradientMatrix& honest, int num_byzantine, double z);

// Ipm (inner-product manipulation) returns num_byzantine copies of -epsilon * mean of the h
// honest gradients. Sees: every honest gradient (omniscient). Needs h >= 1, num_byzantine >= 1 and
// a finite epsilon > 0; the reference's `empire` uses epsilon = 0.1.
absl::StatusOr<Eigen::MatrixXf> Ipm(const GradientMatrix& honest, int num_byzantine,
                                    double epsilon);

// DropCoordinates returns each Byzantine worker's own gradient with exactly round(fraction * d)
// of its coordinates set to zero, chosen uniformly without replacement from `rng`, independently
// per worker (a fixed seed gives the same coordinates on every platform). Sees: its own
// gradients. Needs 0 <= fraction <= 1. The reference's `drop` (10%) returns its input unchanged.
absl::StatusOr<Eigen::MatrixXf> DropCoordinates(const GradientMatrix& own, double fraction,
                                                std::mt19937_64& rng);

// FlipLabels maps each label y of a Byzantine worker's batch to num_classes - 1 - y; the worker
// then computes an honest gradient on the flipped batch. Sees: its own batch labels. Needs
// num_classes >= 2 and every label in [0, num_classes) (the error names the first bad index).
absl::StatusOr<std::vector<int64_t>> FlipLabels(absl::Span<const int64_t> labels,
                                                int64_t num_classes);

}  // namespace troupe::federation::attacks
