// FedAvg's server step (McMahan et al., AISTATS 2017): the sample-weighted mean of the client
// models, sum_i n_i w_i / sum_i n_i. FedProx's server step is the same (its proximal term is
// client-side, fedprox.h).
//
//   absl::StatusOr<Model> next = FedAvgAggregate(global, updates);
#pragma once

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "federation/strategies/model_update.h"

namespace troupe::federation::strategies {

// FedAvgAggregate returns, per tensor, sum_i n_i w_i / sum_i n_i over the client models w_i
// (models, not deltas: the two agree because the weights sum to 1; averaging models avoids
// needing the global model the clients started from). Sums are in double. The global model only
// fixes the names and shapes. Checks the input with ValidateUpdates.
absl::StatusOr<Model> FedAvgAggregate(const Model& global, absl::Span<const ClientUpdate> updates);

}  // namespace troupe::federation::strategies
