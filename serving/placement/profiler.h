// MeasureProfile: the step times of a real ForwardBackend over a grid of prefill batches
// (sequences × prompt length) and decode batches (sequences × context length), as the Profile
// that the latency model is fitted to (latency_model.h). `troupe profile` (CPU, LibTorch) and
// `troupe_gpu profile` (CUDA) run it on a backend made as a serving instance makes its own.
//
//   ProfileGrid grid;                               // the defaults below
//   absl::StatusOr<Profile> profile = MeasureProfile(*backend, config, grid, /*tp=*/1,
//                                                    PrintProgressTo(stderr));
//
// Each point is the engine's step (ForwardAndSample, greedy), timed on the host around the
// call (which returns only when the step is done), the median of `repeats` after `warmup`.
// Every sequence of a step gets blocks of its own, so decode attention reads distinct KV (its
// values do not matter to the time: a step reads all of it whatever it holds). Points whose
// blocks do not fit the cache, or whose tokens pass the model's context, are skipped and
// reported, not errors: one grid serves models of any size.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/placement/profile.h"

namespace troupe::serving::placement {

struct ProfileGrid {
  // Prefill: every (batch, length) pair with batch × length <= max_prefill_tokens. DistServe's
  // simulator was fitted on batch 1-192 × length 4-2020; lengths up to OPT's 2048 context, and
  // enough spread in batch and length that t = Σl and t₂ = Σl² vary independently.
  std::vector<int> prefill_batches = {1, 2, 4, 8};
  std::vector<int> prefill_lengths = {32, 128, 256, 512, 1024, 2000};
  int max_prefill_tokens = 4096;
  // Decode: every (batch, context) pair; one new token per sequence.
  std::vector<int> decode_batches = {1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<int> decode_contexts = {128, 512, 1024, 1900};
  int warmup = 1;
  int repeats = 3;
  uint64_t seed = 0;  // of the random prompt tokens
};

// ProfileProgress hears of every point: its index, how many there are, and the sample (or a
// skip reason in `skipped`).
using ProfileProgress = std::function<void(int index, int total, const ProfileSample& sample,
                                           const std::string& skipped)>;

// PrintProgressTo reports each point as a line on `stream`.
ProfileProgress PrintProgressTo(std::FILE* stream);

// MeasureProfile fills Profile::samples (tensor_parallel records what the backend runs; the
// caller sets model, device and dtype). A bad grid (an empty list, a value under 1) is
// InvalidArgument naming the field; so is a grid of which no point fits. A failing step is
// returned as is.
absl::StatusOr<Profile> MeasureProfile(engine::ForwardBackend& backend,
                                       const model::ModelConfig& config, const ProfileGrid& grid,
                                       int tensor_parallel, const ProfileProgress& progress = {});

}  // namespace troupe::serving::placement
