#include "federation/strategies/fedld.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "eigen3/Eigen/Eigenvalues"

namespace troupe::federation::strategies {
namespace {

absl::Status CheckDeltas(const Eigen::MatrixXd& deltas) {
  if (deltas.rows() < 1 || deltas.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("deltas: empty (m = ", deltas.rows(), " clients, d = ", deltas.cols(),
                     " values); pass one row per client, m >= 1 and d >= 1"));
  }
  if (!deltas.allFinite()) {
    return absl::InvalidArgumentError(
        "deltas: holds a NaN or Inf; validate the client models first (ValidateUpdates)");
  }
  return absl::OkStatus();
}

int64_t KeptComponents(int64_t m, double k_proportion) {
  // int(len(s) * k_proportion) in the original; at least one, so that m = 1 still moves.
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(m) * k_proportion));
}

}  // namespace

absl::Status ValidateFedLdOptions(const FedLdOptions& options) {
  if (!(options.k_proportion > 0 && options.k_proportion <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fedld: k_proportion is ", options.k_proportion,
                     "; it must be in (0, 1] (the released default is 0.8)"));
  }
  if (!(options.history_decay >= 0 && options.history_decay <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fedld: history_decay is ", options.history_decay,
                     "; it must be in [0, 1] (the original's gamma is 0.99)"));
  }
  if (!(options.zero_inner_product_tolerance >= 0) || !(options.rank_tolerance >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fedld: zero_inner_product_tolerance (", options.zero_inner_product_tolerance,
                     ") and rank_tolerance (", options.rank_tolerance,
                     ") must be >= 0; keep the defaults 1e-9 and 1e-12"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PrincipalComponents> PrincipalDirections(const Eigen::MatrixXd& deltas,
                                                        const FedLdOptions& options) {
  if (absl::Status status = ValidateFedLdOptions(options); !status.ok()) return status;
  if (absl::Status status = CheckDeltas(deltas); !status.ok()) return status;
  const Eigen::Index m = deltas.rows();
  const Eigen::MatrixXd gram = deltas * deltas.transpose() / static_cast<double>(m);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram);
  if (solver.info() != Eigen::Success) {
    return absl::InternalError("fedld: the eigensolver of the m x m Gram matrix did not converge");
  }
  // The solver sorts ascending; K is positive semi-definite, so negatives are rounding.
  PrincipalComponents result;
  result.eigenvalues = solver.eigenvalues().reverse().cwiseMax(0.0);
  const Eigen::MatrixXd eigenvectors = solver.eigenvectors().rowwise().reverse();

  const Eigen::VectorXd norms = deltas.rowwise().norm();
  const Eigen::Index k = KeptComponents(m, options.k_proportion);
  const double largest = result.eigenvalues(0);
  std::vector<Eigen::VectorXd> directions;
  std::vector<double> votes;
  for (Eigen::Index j = 0; j < k; ++j) {
    if (largest <= 0 || result.eigenvalues(j) <= options.rank_tolerance * largest) break;
    Eigen::VectorXd w = deltas.transpose() * eigenvectors.col(j);
    const double w_norm = w.norm();
    if (w_norm == 0) break;
    Eigen::VectorXd dots = deltas * w;
    // Sign alignment: the majority of clients must have <g_i, w_j> >= 0. A zero inner product
    // (within the tolerance) counts as >= 0, as the original's exact comparison does.
    int non_negative = 0;
    for (Eigen::Index i = 0; i < m; ++i) {
      const bool zero =
          std::abs(dots(i)) <= options.zero_inner_product_tolerance * norms(i) * w_norm;
      if (zero || dots(i) >= 0) ++non_negative;
    }
    if (non_negative < m - non_negative) {
      w = -w;
      dots = -dots;
    }
    double vote = 0;
    for (Eigen::Index i = 0; i < m; ++i) {
      const bool zero =
          std::abs(dots(i)) <= options.zero_inner_product_tolerance * norms(i) * w_norm;
      if (!zero) vote += dots(i) > 0 ? norms(i) : -norms(i);
    }
    directions.push_back(w / w_norm);
    votes.push_back(vote / static_cast<double>(m));
  }
  result.directions.resize(static_cast<Eigen::Index>(directions.size()), deltas.cols());
  result.votes.resize(static_cast<Eigen::Index>(votes.size()));
  for (size_t j = 0; j < directions.size(); ++j) {
    result.directions.row(static_cast<Eigen::Index>(j)) = directions[j].transpose();
    result.votes(static_cast<Eigen::Index>(j)) = votes[j];
  }
  return result;
}

absl::StatusOr<Eigen::VectorXd> PrincipalGradient(const Eigen::MatrixXd& deltas,
                                                  const FedLdOptions& options) {
  absl::StatusOr<PrincipalComponents> components = PrincipalDirections(deltas, options);
  if (!components.ok()) return components.status();
  Eigen::VectorXd update = Eigen::VectorXd::Zero(deltas.cols());
  const double total = components->eigenvalues.sum();  // all m eigenvalues, not only the k kept
  if (total <= 0) return update;
  for (Eigen::Index j = 0; j < components->directions.rows(); ++j) {
    update += (components->eigenvalues(j) / total * components->votes(j)) *
              components->directions.row(j).transpose();
  }
  return update;
}

absl::StatusOr<FedLdRound> FedLdAggregate(int64_t round, const Model& global,
                                          absl::Span<const ClientUpdate> updates,
                                          const FedLdHistory& history,
                                          const FedLdOptions& options) {
  if (absl::Status status = ValidateFedLdOptions(options); !status.ok()) return status;
  if (round < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fedld: round is ", round, "; rounds count from 1"));
  }
  if (absl::Status status = ValidateUpdates(global, updates); !status.ok()) return status;
  std::map<std::string, size_t> sizes;
  for (const NamedTensor& tensor : global) sizes[tensor.name] = tensor.data.size();
  for (const auto& [name, values] : history) {
    auto it = sizes.find(name);
    if (it == sizes.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fedld: the history has tensor '", name,
          "', which the global model lacks; the "
          "history belongs to another model: load the matching checkpoint or start afresh"));
    }
    if (values.size() != it->second) {
      return absl::InvalidArgumentError(
          absl::StrCat("fedld: the history of tensor '", name, "' has ", values.size(),
                       " values but the tensor has ", it->second,
                       "; the history belongs to another model: "
                       "load the matching checkpoint or start afresh"));
    }
  }

  const Eigen::Index m = static_cast<Eigen::Index>(updates.size());
  FedLdRound result;
  result.global = global;
  result.history = history;
  for (size_t t = 0; t < global.size(); ++t) {
    const NamedTensor& tensor = global[t];
    const Eigen::Index d = static_cast<Eigen::Index>(tensor.data.size());
    const Eigen::Map<const Eigen::VectorXf> theta(tensor.data.data(), d);
    Eigen::MatrixXd deltas(m, d);
    for (Eigen::Index i = 0; i < m; ++i) {
      const Eigen::Map<const Eigen::VectorXf> local(updates[i].model[t].data.data(), d);
      deltas.row(i) = (local.cast<double>() - theta.cast<double>()).transpose();
    }
    const Eigen::VectorXd mean = deltas.colwise().mean().transpose();

    auto found = history.find(tensor.name);
    FedLdRoute route = FedLdRoute::kPrincipal;
    if (round == 1 || found == history.end()) {
      route = FedLdRoute::kMeanFirst;
    } else if (std::all_of(found->second.begin(), found->second.end(),
                           [](float h) { return h == 0; })) {
      route = FedLdRoute::kMeanZeroHistory;
    } else if (d <= 1) {
      route = FedLdRoute::kMeanScalar;
    }
    Eigen::VectorXd update = mean;
    if (route == FedLdRoute::kPrincipal) {
      absl::StatusOr<Eigen::VectorXd> principal = PrincipalGradient(deltas, options);
      if (!principal.ok()) return principal.status();
      update = *std::move(principal);
    }

    std::vector<float>& h = result.history[tensor.name];
    if (route == FedLdRoute::kMeanFirst) {
      h.assign(static_cast<size_t>(d), 0.0f);
      for (Eigen::Index r = 0; r < d; ++r) h[r] = static_cast<float>(update(r));
    } else {
      const double gamma = options.history_decay;
      for (Eigen::Index r = 0; r < d; ++r) {
        h[r] = static_cast<float>(gamma * h[r] + (1 - gamma) * update(r));
      }
    }
    std::vector<float>& out = result.global[t].data;
    for (Eigen::Index r = 0; r < d; ++r) {
      out[r] = static_cast<float>(static_cast<double>(out[r]) + update(r));
    }
    result.routes.push_back(route);
  }
  return result;
}

}  // namespace troupe::federation::strategies
