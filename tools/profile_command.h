// `troupe profile` and `troupe_gpu profile`: measure a model's prefill and decode step times on
// a real backend over a grid (serving/placement/profiler.h) and write the Profile JSON that
// `troupe plan --profile` fits its latency model to.
//
//   troupe profile --model=tiny --kv_blocks=4096 --profile_out=profile_tiny.json
//   troupe_gpu profile --model=opt-13b --device=cuda:0 --profile_out=profile_opt-13b.json
//
// The grid flags (--prefill_batches, --prefill_lengths, --decode_batches, --decode_contexts,
// --max_prefill_tokens, --profile_repeats) default to ProfileGrid's. --tensor_parallel takes a
// list: one backend is made and measured per degree.
#pragma once

#include <functional>
#include <string>

#include "serving/cluster/serving_roles.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe {

struct ProfileCommand {
  std::string binary;  // "troupe" or "troupe_gpu", for messages
  serving::cluster::BackendFactory make_backend;
  // DescribeDevice names the device "cpu" or "cuda:N" runs on, for the profile's `device`.
  std::function<std::string(const std::string& device)> describe_device;
};

// RunProfile measures `config` (weights from `weights`, a cache of `kv_blocks` blocks; 0 lets a
// GPU backend size it from free memory) and writes --profile_out. Returns the exit code; errors
// name the flag and the fix.
int RunProfile(const ProfileCommand& command, const serving::model::ModelConfig& config,
               const serving::model::WeightSource& weights, int kv_blocks);

}  // namespace troupe
