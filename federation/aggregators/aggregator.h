// Aggregator: one interface over the rules of aggregators.h and flag_aggregator.h, chosen by name,
// so the parameter server's configuration can say `aggregator = "bulyan"` and `f = 2`.
//
//   AggregatorOptions options;
//   options.f = 2;
//   absl::StatusOr<std::unique_ptr<Aggregator>> rule = MakeAggregator("multi_krum", options);
//   absl::StatusOr<Eigen::VectorXf> update = (*rule)->Aggregate(gradients);  // d x n -> d
//
// An Aggregator may keep state between rounds (centered clipping keeps its previous aggregate as
// the next center), so a parameter server owns one per model and calls it once per round.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/aggregators.h"
#include "federation/aggregators/flag_aggregator.h"

namespace troupe::federation::aggregators {

// AggregatorKind names each rule; AggregatorName gives its configuration name.
enum class AggregatorKind {
  kMean,
  kCoordinateWiseMedian,
  kTrimmedMean,
  kKrum,
  kMultiKrum,
  kBulyan,
  kGeometricMedian,
  kCenteredClipping,
  kFlag,
};

// AggregatorName is the name ParseAggregatorName accepts: "mean", "median", "trimmed_mean",
// "krum", "multi_krum", "bulyan", "geometric_median", "centered_clipping", "flag".
absl::string_view AggregatorName(AggregatorKind kind);

// ParseAggregatorName maps a name to its kind; the error lists the valid names.
absl::StatusOr<AggregatorKind> ParseAggregatorName(absl::string_view name);

// AggregatorOptions holds every rule's parameters; each rule reads the ones it needs.
struct AggregatorOptions {
  // f, the number of Byzantine workers to tolerate (trimmed mean, Krum, Multi-Krum, Bulyan).
  int f = 0;
  // Multi-Krum's m; kMultiKrumReferenceM means n - f - 2, the Flag Aggregator code's value.
  int multi_krum_m = kMultiKrumReferenceM;
  GeometricMedianOptions geometric_median;
  CenteredClippingOptions centered_clipping;
  FlagOptions flag;
};

// Aggregator turns one round's worker gradients (d x n, one column per worker) into an update.
class Aggregator {
 public:
  virtual ~Aggregator() = default;
  virtual AggregatorKind kind() const = 0;
  // Aggregate checks its input (see aggregators.h) and returns the d-vector update.
  virtual absl::StatusOr<Eigen::VectorXf> Aggregate(const GradientMatrix& gradients) = 0;
};

// MakeAggregator builds the rule called `name` (see AggregatorName). Bounds that depend on n
// (e.g. Bulyan's n >= 4f + 3) are checked by Aggregate; a negative f is rejected here.
absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(absl::string_view name,
                                                           const AggregatorOptions& options);

}  // namespace troupe::federation::aggregators
