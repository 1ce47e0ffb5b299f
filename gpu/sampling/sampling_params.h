// SamplingParams: how one row of logits becomes a token, for the GPU sampler (sampling.h) and
// the host sampler (host_sampling.h), which give the same token for the same logits and params.
// No CUDA here, so CPU code can fill them in.
//
//   SamplingParams params{.temperature = 0.7f, .top_k = 50, .top_p = 0.9f};
//   params.seed = request_seed;
//   params.offset = step;
#pragma once

#include <cstdint>

namespace troupe::gpu::sampling {

struct SamplingParams {
  // temperature: 0 is greedy; otherwise > 0 and finite.
  float temperature = 1.0f;
  // top_k: keep the k most likely tokens; 0 keeps all. >= 0.
  int32_t top_k = 0;
  // top_p: keep the smallest most-likely set holding this much probability; in (0, 1], 1 keeps
  // all.
  float top_p = 1.0f;
  // seed: the request's random seed.
  uint64_t seed = 0;
  // offset: which draw of the seed's stream this is; pass the decode step (or the number of
  // tokens generated so far) so that successive tokens of one request get fresh randomness.
  uint64_t offset = 0;
};

}  // namespace troupe::gpu::sampling
