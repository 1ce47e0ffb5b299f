#include "federation/strategies/fedprox.h"

#include <cmath>
#include <cstddef>

#include "absl/strings/str_cat.h"

namespace troupe::federation::strategies {
namespace {

absl::Status CheckProximal(absl::Span<const float> local, absl::Span<const float> global,
                           double mu) {
  if (!(mu >= 0) || !std::isfinite(mu)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox: mu is ", mu, "; it must be finite and >= 0 (0.01 in the FedLD code's FedProx)"));
  }
  if (local.size() != global.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox: local has ", local.size(), " values but global has ", global.size(),
        "; pass the same parameter's current values and its copy from the round's start"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> FedProxPenalty(absl::Span<const float> local, absl::Span<const float> global,
                                      double mu) {
  if (absl::Status status = CheckProximal(local, global, mu); !status.ok()) return status;
  double squared = 0;
  for (size_t i = 0; i < local.size(); ++i) {
    const double difference = static_cast<double>(local[i]) - global[i];
    squared += difference * difference;
  }
  return mu / 2 * squared;
}

absl::StatusOr<std::vector<float>> FedProxGradient(absl::Span<const float> local,
                                                   absl::Span<const float> global, double mu) {
  std::vector<float> gradient(local.size(), 0.0f);
  if (absl::Status status = AddFedProxGradient(local, global, mu, absl::MakeSpan(gradient));
      !status.ok()) {
    return status;
  }
  return gradient;
}

absl::Status AddFedProxGradient(absl::Span<const float> local, absl::Span<const float> global,
                                double mu, absl::Span<float> gradient) {
  if (absl::Status status = CheckProximal(local, global, mu); !status.ok()) return status;
  if (gradient.size() != local.size()) {
    return absl::InvalidArgumentError(absl::StrCat("fedprox: gradient has ", gradient.size(),
                                                   " values but local has ", local.size(),
                                                   "; pass the gradient of the same parameter"));
  }
  for (size_t i = 0; i < local.size(); ++i) {
    gradient[i] =
        static_cast<float>(gradient[i] + mu * (static_cast<double>(local[i]) - global[i]));
  }
  return absl::OkStatus();
}

}  // namespace troupe::federation::strategies
