// The flags several `troupe` commands share, defined once here so that a binary links any
// subset of the commands (troupe_gpu has no LibTorch, so none of serve's or the model flags'
// libraries):
//   --seed     the random weights' seed (serve, generate, profile) and the workload's and its
//              prompts' (bench, plan);
//   --api_key  required of clients by `serve`, sent by `bench`.
#pragma once

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, api_key);
