#include "federation/aggregators/aggregator.h"

#include <array>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::federation::aggregators {
namespace {

constexpr std::array<std::pair<AggregatorKind, absl::string_view>, 9> kNames = {{
    {AggregatorKind::kMean, "mean"},
    {AggregatorKind::kCoordinateWiseMedian, "median"},
    {AggregatorKind::kTrimmedMean, "trimmed_mean"},
    {AggregatorKind::kKrum, "krum"},
    {AggregatorKind::kMultiKrum, "multi_krum"},
    {AggregatorKind::kBulyan, "bulyan"},
    {AggregatorKind::kGeometricMedian, "geometric_median"},
    {AggregatorKind::kCenteredClipping, "centered_clipping"},
    {AggregatorKind::kFlag, "flag"},
}};

// StatelessAggregator calls one of the rules of aggregators.h / flag_aggregator.h.
class StatelessAggregator : public Aggregator {
 public:
  StatelessAggregator(AggregatorKind kind, AggregatorOptions options)
      : kind_(kind), options_(std::move(options)) {}

  AggregatorKind kind() const override { return kind_; }

  absl::StatusOr<Eigen::VectorXf> Aggregate(const GradientMatrix& gradients) override {
    switch (kind_) {
      case AggregatorKind::kMean:
        return Mean(gradients);
      case AggregatorKind::kCoordinateWiseMedian:
        return CoordinateWiseMedian(gradients);
      case AggregatorKind::kTrimmedMean:
        return TrimmedMean(gradients, options_.f);
      case AggregatorKind::kKrum:
        return Krum(gradients, options_.f);
      case AggregatorKind::kMultiKrum:
        return MultiKrum(gradients, options_.f, options_.multi_krum_m);
      case AggregatorKind::kBulyan:
        return Bulyan(gradients, options_.f);
      case AggregatorKind::kGeometricMedian:
        return GeometricMedian(gradients, options_.geometric_median);
      case AggregatorKind::kFlag: {
        absl::StatusOr<FlagResult> result = FlagAggregate(gradients, options_.flag);
        if (!result.ok()) return result.status();
        return std::move(result->aggregate);
      }
      case AggregatorKind::kCenteredClipping:
        break;
    }
    return absl::InternalError("StatelessAggregator: centered clipping has its own class");
  }

 private:
  AggregatorKind kind_;
  AggregatorOptions options_;
};

// CenteredClippingAggregator centers each round on the previous round's aggregate (the mean on
// the first round, or after the model's dimension changed).
class CenteredClippingAggregator : public Aggregator {
 public:
  explicit CenteredClippingAggregator(CenteredClippingOptions options) : options_(options) {}

  AggregatorKind kind() const override { return AggregatorKind::kCenteredClipping; }

  absl::StatusOr<Eigen::VectorXf> Aggregate(const GradientMatrix& gradients) override {
    const bool have_center = previous_.has_value() && previous_->size() == gradients.rows();
    absl::StatusOr<Eigen::VectorXf> result =
        CenteredClipping(gradients, have_center ? &*previous_ : nullptr, options_);
    if (result.ok()) previous_ = *result;
    return result;
  }

 private:
  CenteredClippingOptions options_;
  std::optional<Eigen::VectorXf> previous_;
};

}  // namespace

absl::string_view AggregatorName(AggregatorKind kind) {
  for (const auto& [entry_kind, name] : kNames) {
    if (entry_kind == kind) return name;
  }
  return "unknown";
}

absl::StatusOr<AggregatorKind> ParseAggregatorName(absl::string_view name) {
  for (const auto& [kind, entry_name] : kNames) {
    if (entry_name == name) return kind;
  }
  std::vector<absl::string_view> names;
  for (const auto& entry : kNames) names.push_back(entry.second);
  return absl::InvalidArgumentError(absl::StrCat("aggregator: unknown name \"", name,
                                                 "\"; use one of: ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(absl::string_view name,
                                                           const AggregatorOptions& options) {
  absl::StatusOr<AggregatorKind> kind = ParseAggregatorName(name);
  if (!kind.ok()) return kind.status();
  if (options.f < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregator: f (Byzantine workers tolerated) is ", options.f, "; it must be >= 0"));
  }
  if (*kind == AggregatorKind::kCenteredClipping) {
    return std::make_unique<CenteredClippingAggregator>(options.centered_clipping);
  }
  return std::make_unique<StatelessAggregator>(*kind, options);
}

}  // namespace troupe::federation::aggregators
