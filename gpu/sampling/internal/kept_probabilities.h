// The sampler's target distribution, for tests of both samplers (sampling.h, host_sampling.h).
#pragma once

#include <cstdint>
#include <vector>

namespace troupe::gpu::sampling::internal {

// KeptProbabilities is the distribution a sampler draws from for one row, from the documented
// semantics in double precision: softmax(logits / T) over the top_k largest logits (ties at the
// k-th kept), then over the smallest most-likely set whose renormalized mass reaches top_p (ties
// at its boundary kept), renormalized; 0 elsewhere.
std::vector<double> KeptProbabilities(const std::vector<float>& logits, double temperature,
                                      int32_t top_k, double top_p);

}  // namespace troupe::gpu::sampling::internal
