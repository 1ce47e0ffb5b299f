#include "federation/strategies/strategy.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "federation/strategies/fedavg.h"
#include "nlohmann/json.hpp"

namespace troupe::federation::strategies {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::pair<StrategyKind, absl::string_view>, 3> kNames = {{
    {StrategyKind::kFedAvg, "fedavg"},
    {StrategyKind::kFedProx, "fedprox"},
    {StrategyKind::kFedLd, "fedld"},
}};

// The state format's version; LoadState refuses others.
constexpr int kStateVersion = 1;

std::string DumpState(Json state) {
  // replace: a name with invalid UTF-8 must not make SaveState throw.
  return state.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ParseState parses `text` and checks it is a version-1 state object of strategy `kind`.
absl::StatusOr<Json> ParseState(absl::string_view text, StrategyKind kind) {
  const std::string name(StrategyName(kind));
  Json state = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded() || !state.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the state is not a JSON object; pass the string SaveState returned"));
  }
  const auto strategy = state.find("strategy");
  if (strategy == state.end() || !strategy->is_string() || strategy->get<std::string>() != name) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the state is not a ", name, " state (its \"strategy\" is ",
                     strategy == state.end() ? std::string("missing") : strategy->dump(),
                     "); load the checkpoint into the strategy that saved it"));
  }
  const auto version = state.find("version");
  if (version == state.end() || !version->is_number_integer() ||
      version->get<int>() != kStateVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the state's \"version\" is ",
                     version == state.end() ? std::string("missing") : version->dump(),
                     "; this build reads ", kStateVersion));
  }
  return state;
}

// FedAvgStrategy is FedAvg, and FedProx's server side (identical; mu is client-side). It keeps
// no state between rounds.
class FedAvgStrategy : public Strategy {
 public:
  explicit FedAvgStrategy(StrategyKind kind) : kind_(kind) {}

  StrategyKind kind() const override { return kind_; }

  absl::StatusOr<Model> Aggregate(int64_t round, const Model& global,
                                  absl::Span<const ClientUpdate> updates) override {
    if (round < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(StrategyName(kind_), ": round is ", round, "; rounds count from 1"));
    }
    return FedAvgAggregate(global, updates);
  }

  std::string SaveState() const override {
    return DumpState({{"strategy", std::string(StrategyName(kind_))}, {"version", kStateVersion}});
  }

  absl::Status LoadState(absl::string_view state) override {
    return ParseState(state, kind_).status();
  }

 private:
  StrategyKind kind_;
};

// FedLdStrategy keeps FedLD's per-tensor history between rounds.
class FedLdStrategy : public Strategy {
 public:
  explicit FedLdStrategy(FedLdOptions options) : options_(options) {}

  StrategyKind kind() const override { return StrategyKind::kFedLd; }

  absl::StatusOr<Model> Aggregate(int64_t round, const Model& global,
                                  absl::Span<const ClientUpdate> updates) override {
    absl::StatusOr<FedLdRound> result = FedLdAggregate(round, global, updates, history_, options_);
    if (!result.ok()) return result.status();
    history_ = std::move(result->history);
    return std::move(result->global);
  }

  std::string SaveState() const override {
    Json history = Json::object();
    for (const auto& [name, values] : history_) {
      Json array = Json::array();
      // float -> double is exact, and the JSON writer prints doubles so they parse back equal.
      for (float value : values) array.push_back(static_cast<double>(value));
      history[name] = std::move(array);
    }
    return DumpState({{"strategy", "fedld"}, {"version", kStateVersion}, {"history", history}});
  }

  absl::Status LoadState(absl::string_view text) override {
    absl::StatusOr<Json> state = ParseState(text, StrategyKind::kFedLd);
    if (!state.ok()) return state.status();
    const auto history = state->find("history");
    if (history == state->end() || !history->is_object()) {
      return absl::InvalidArgumentError(
          "fedld: the state has no \"history\" object; pass the string SaveState returned");
    }
    FedLdHistory loaded;
    for (const auto& [name, values] : history->items()) {
      if (!values.is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat("fedld: the history of tensor '", name, "' is not an array of numbers"));
      }
      std::vector<float>& h = loaded[name];
      for (const Json& value : values) {
        if (!value.is_number()) {
          return absl::InvalidArgumentError(
              absl::StrCat("fedld: the history of tensor '", name, "' holds ", value.dump(),
                           ", not a number; pass the string SaveState returned"));
        }
        h.push_back(static_cast<float>(value.get<double>()));
      }
    }
    history_ = std::move(loaded);
    return absl::OkStatus();
  }

 private:
  FedLdOptions options_;
  FedLdHistory history_;
};

}  // namespace

absl::string_view StrategyName(StrategyKind kind) {
  for (const auto& [k, name] : kNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

absl::StatusOr<StrategyKind> ParseStrategyName(absl::string_view name) {
  for (const auto& [kind, k_name] : kNames) {
    if (k_name == name) return kind;
  }
  std::vector<absl::string_view> names;
  for (const auto& entry : kNames) names.push_back(entry.second);
  return absl::InvalidArgumentError(
      absl::StrCat("strategy: unknown name '", name, "'; use one of ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeStrategy(absl::string_view name,
                                                       const StrategyOptions& options) {
  absl::StatusOr<StrategyKind> kind = ParseStrategyName(name);
  if (!kind.ok()) return kind.status();
  switch (*kind) {
    case StrategyKind::kFedAvg:
      return std::make_unique<FedAvgStrategy>(StrategyKind::kFedAvg);
    case StrategyKind::kFedProx: {
      // Checked here so a bad mu fails at configuration, not in the first client's step.
      absl::StatusOr<double> check = FedProxPenalty({}, {}, options.fedprox.mu);
      if (!check.ok()) return check.status();
      return std::make_unique<FedAvgStrategy>(StrategyKind::kFedProx);
    }
    case StrategyKind::kFedLd:
      if (absl::Status status = ValidateFedLdOptions(options.fedld); !status.ok()) return status;
      return std::make_unique<FedLdStrategy>(options.fedld);
  }
  return absl::InternalError("MakeStrategy: unhandled strategy kind");
}

}  // namespace troupe::federation::strategies
