// FedLD's server aggregation (Zeng et al., MICCAI 2024, "Tackling Data Heterogeneity in
// Federated Learning via Loss Decomposition"; code Zeng-Shuang/FedLD, svd_tools.pcgrad_svd), as
// written out in shared/papers/fedld.md, section 3. Per state_dict tensor l, with the m client
// deltas g_i = vec(theta_i - theta_g) stacked as the rows of G (m x d):
//
//   K = G G^T / m,  eigenpairs (s_j, e_j) descending,  w_j = G^T e_j,  k = floor(m k_prop)
//   flip w_j if fewer clients have <g_i, w_j> >= 0 than < 0              (sign alignment)
//   Delta = sum_{j<=k} s_j / (sum_{l=1..m} s_l) (1/m sum_i ||g_i|| sgn<g_i, w_j>) w_j / ||w_j||
//   theta_g <- theta_g + Delta;   h <- 0.99 h + 0.01 Delta               (no server learning rate)
//
// The plain mean (1/m) sum_i g_i replaces Delta in round 1, when h is unset or all zeros, and
// for d = 1. FedLD's margin-control loss, the client side, is in fedld_loss.h.
//
//   absl::StatusOr<FedLdRound> next = FedLdAggregate(round, global, updates, history, options);
//   history = std::move(next->history);  // server state: checkpoint it with the model
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "eigen3/Eigen/Core"
#include "federation/strategies/model_update.h"

namespace troupe::federation::strategies {

// FedLdOptions holds FedLD's server defaults (shared/papers/fedld.md).
struct FedLdOptions {
  // k_prop, the share of the m principal directions kept: k = floor(m k_prop), at least 1.
  // `--k_proportion` defaults to 0.8 in the released options.py (4 of 5 clients, 9 of 12).
  double k_proportion = 0.8;
  // gamma of the history EMA h <- gamma h + (1 - gamma) Delta (0.99, hard-coded in pcgrad_svd).
  double history_decay = 0.99;
  // sgn<g_i, w_j> is taken as 0 (the client adds nothing along w_j) when |<g_i, w_j>| <=
  // tolerance ||g_i|| ||w_j||: the original divides 0 by 0 (NaN), and an exact zero computed from
  // double-precision eigenvectors comes out as rounding noise of either sign. 1e-9 is far above
  // that noise (~1e-15) and far below any real alignment of float32 deltas.
  double zero_inner_product_tolerance = 1e-9;
  // Eigenvalues s_j <= tolerance * s_1 belong to G's null space (m > d, or equal deltas): their
  // w_j is rounding noise and their weight s_j / sum s is ~0, so they are skipped. Same cut as
  // the Flag Aggregator's Gram route (federation/aggregators).
  double rank_tolerance = 1e-12;
};

// ValidateFedLdOptions checks 0 < k_proportion <= 1, 0 <= history_decay <= 1 and non-negative
// tolerances.
absl::Status ValidateFedLdOptions(const FedLdOptions& options);

// PrincipalComponents is the spectral part of one tensor's aggregation.
struct PrincipalComponents {
  // All m eigenvalues s_j of K = G G^T / m, descending (the weights' denominator sums all).
  Eigen::VectorXd eigenvalues;
  // The kept directions w_j / ||w_j||, one per row, sign-aligned: at most k rows (fewer when G's
  // rank is below k).
  Eigen::MatrixXd directions;
  // The client-vote sums (1/m) sum_i ||g_i|| sgn<g_i, w_j>, one per direction.
  Eigen::VectorXd votes;
};

// PrincipalDirections computes the eigenpairs, the kept and sign-aligned directions and the
// votes for the deltas G (m x d, one client per row). Needs m >= 1, d >= 1, finite values.
absl::StatusOr<PrincipalComponents> PrincipalDirections(const Eigen::MatrixXd& deltas,
                                                        const FedLdOptions& options);

// PrincipalGradient is Delta = sum_j s_j / sum s * votes_j * direction_j for one tensor (the
// zero vector when every delta is zero).
absl::StatusOr<Eigen::VectorXd> PrincipalGradient(const Eigen::MatrixXd& deltas,
                                                  const FedLdOptions& options);

// FedLdHistory is the server state: per tensor name, the EMA h of its past updates.
using FedLdHistory = std::map<std::string, std::vector<float>>;

// FedLdRoute says how a tensor's update was computed in a round.
enum class FedLdRoute {
  kPrincipal,        // the principal-gradient aggregation
  kMeanFirst,        // plain mean: round 1, or no history for this tensor (h is set to the mean)
  kMeanZeroHistory,  // plain mean: the history is all zeros
  kMeanScalar,       // plain mean: d = 1 (e.g. num_batches_tracked)
};

// FedLdRound is one round's result: the new global model, the updated history, and the route
// taken per tensor (in the model's order).
struct FedLdRound {
  Model global;
  FedLdHistory history;
  std::vector<FedLdRoute> routes;
};

// FedLdAggregate runs one round over the clients that reported (not over all clients, the
// original's bug). Client sample counts are not used: in the original they weigh identical
// models. The history of a tensor is set to the mean on its first round and updated by the EMA
// afterwards; a history entry whose size differs from its tensor, or one for a tensor the model
// lacks, is an error (the history belongs to another model).
absl::StatusOr<FedLdRound> FedLdAggregate(int64_t round, const Model& global,
                                          absl::Span<const ClientUpdate> updates,
                                          const FedLdHistory& history, const FedLdOptions& options);

}  // namespace troupe::federation::strategies
