// Strategy: how the federated server turns one round's client models into the next global model
// (FedAvg, FedProx, FedLD), chosen by name, with any state between rounds saved and restored
// exactly so a checkpointed server resumes as if it never stopped.
//
//   absl::StatusOr<std::unique_ptr<Strategy>> strategy = MakeStrategy("fedld", StrategyOptions());
//   absl::StatusOr<Model> next = (*strategy)->Aggregate(round, global, updates);
//   std::string checkpoint = (*strategy)->SaveState();       // JSON, with the global model
//   absl::Status status = (*strategy)->LoadState(checkpoint);  // on resume
//
// Strategies never see LibTorch; client-side pieces (FedProx's proximal term, FedLD's
// margin-control loss) live in fedprox.h and fedld_loss.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "federation/strategies/fedld.h"
#include "federation/strategies/fedprox.h"
#include "federation/strategies/model_update.h"

namespace troupe::federation::strategies {

// StrategyKind names each strategy; StrategyName gives its configuration name.
enum class StrategyKind {
  kFedAvg,
  kFedProx,
  kFedLd,
};

// StrategyName is the name ParseStrategyName accepts: "fedavg", "fedprox", "fedld".
absl::string_view StrategyName(StrategyKind kind);

// ParseStrategyName maps a name to its kind; the error lists the valid names.
absl::StatusOr<StrategyKind> ParseStrategyName(absl::string_view name);

// StrategyOptions holds every strategy's parameters; each strategy reads its own.
struct StrategyOptions {
  FedProxOptions fedprox;
  FedLdOptions fedld;
};

// Strategy aggregates one round. A server owns one per federated job and calls Aggregate once
// per round, with the clients that reported in that round (any subset of all clients).
class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual StrategyKind kind() const = 0;

  // Aggregate checks its input (ValidateUpdates; round >= 1, the first round being 1) and
  // returns the new global model. On an error the strategy's state is unchanged.
  virtual absl::StatusOr<Model> Aggregate(int64_t round, const Model& global,
                                          absl::Span<const ClientUpdate> updates) = 0;

  // SaveState returns the strategy's state between rounds as JSON (an object naming the
  // strategy; FedLD's holds its per-tensor history). Floats round-trip exactly.
  virtual std::string SaveState() const = 0;

  // LoadState replaces the state with one SaveState returned (from a strategy of the same kind).
  virtual absl::Status LoadState(absl::string_view state) = 0;
};

// MakeStrategy builds the strategy called `name` (see StrategyName); options out of range are
// InvalidArgument errors.
absl::StatusOr<std::unique_ptr<Strategy>> MakeStrategy(absl::string_view name,
                                                       const StrategyOptions& options);

}  // namespace troupe::federation::strategies
