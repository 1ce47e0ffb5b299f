// FedProx's proximal term (Li et al., MLSys 2020), for the client: local training minimizes
// F_k(w) + mu/2 ||w - w_global||^2, so each step adds mu (w - w_global) to the gradient. The
// server step is FedAvg's (fedavg.h); this file is the part a client needs, on flat float
// vectors (a LibTorch client passes each parameter's data_ptr<float>() and numel()).
//
//   // after loss.backward(), per parameter p with its round-start copy p0:
//   absl::Status status = AddFedProxGradient(Span(p), Span(p0), options.mu, Span(p.grad));
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace troupe::federation::strategies {

// FedProxOptions holds FedProx's parameter.
struct FedProxOptions {
  // mu, the proximal weight: 0.01 in the FedLD code's FedProx baseline (shared/papers/fedld.md,
  // section 4). FedScale's default is 0.1. mu = 0 is plain FedAvg local training.
  double mu = 0.01;
};

// FedProxPenalty is mu/2 ||local - global||^2 (summed in double). Needs mu >= 0 (finite) and
// equal lengths.
absl::StatusOr<double> FedProxPenalty(absl::Span<const float> local, absl::Span<const float> global,
                                      double mu);

// FedProxGradient is the penalty's gradient with respect to `local`: mu (local - global).
absl::StatusOr<std::vector<float>> FedProxGradient(absl::Span<const float> local,
                                                   absl::Span<const float> global, double mu);

// AddFedProxGradient adds mu (local - global) to `gradient` in place (the loss gradient the
// client just computed). All three spans must have the same length.
absl::Status AddFedProxGradient(absl::Span<const float> local, absl::Span<const float> global,
                                double mu, absl::Span<float> gradient);

}  // namespace troupe::federation::strategies
