// Profile: measured step times of one model on one backend, the input of the latency model's
// fit (latency_model.h). serving/placement/profiler.h measures one on a real ForwardBackend;
// `troupe plan --profile FILE` reads it.
//
// File format (JSON):
//   {"model": "opt-13b", "device": "NVIDIA H200", "dtype": "fp16",
//    "samples": [{"phase": "prefill", "tensor_parallel": 1, "batch": 4, "tokens": 2048,
//                 "tokens_squared": 1048576, "seconds": 0.0213}, ...]}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace troupe::serving::placement {

enum class Phase { kPrefill, kDecode };

// PhaseName is "prefill" or "decode".
const char* PhaseName(Phase phase);

// ProfileSample is one measured step.
struct ProfileSample {
  Phase phase = Phase::kPrefill;
  int tensor_parallel = 1;
  int batch = 0;               // sequences in the step
  int64_t tokens = 0;          // prefill: Σ prompt lengths (t); decode: Σ context lengths
  int64_t tokens_squared = 0;  // prefill: Σ prompt length² (t₂); decode: 0
  double seconds = 0;          // the step's wall time (median of repeats)
};

struct Profile {
  std::string model;   // a preset name (serving/model/config.h)
  std::string device;  // e.g. "cpu" or "NVIDIA H200"
  std::string dtype;   // "fp32", "fp16", "bf16"
  std::vector<ProfileSample> samples;
};

// ReadProfile and WriteProfile use the JSON above. A malformed file is InvalidArgument naming the
// file, the sample's index and the field; a missing one is NotFound.
absl::StatusOr<Profile> ReadProfile(const std::string& path);
absl::Status WriteProfile(const std::string& path, const Profile& profile);

}  // namespace troupe::serving::placement
