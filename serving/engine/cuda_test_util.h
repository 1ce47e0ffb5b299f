// Helpers shared by the CUDA backend's GPU tests (cuda_backend_test, cuda_parallel_test): KV
// bytes as floats and back, greedy decoding of one sequence with its distance from a tie, and a
// batcher run to completion.
//
//   GreedyRun run = GreedyAlone(*backend, prompt, /*new_tokens=*/16, /*stop_below=*/0.02);
//   std::map<int64_t, std::vector<int32_t>> tokens = Generate(*backend, requests, options);
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gpu/dtype.h"
#include "gtest/gtest.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {

// Case is one parameter of the GPU tests: a test model (CudaTestModels) in fp16 or bf16.
struct Case {
  model::ModelConfig config;
  gpu::DType dtype;
};

// AllCases is every test model in fp16 and bf16; with num_layers > 0, each made that deep.
std::vector<Case> AllCases(int num_layers = 0);

// CaseName names a case for gtest: "<model>_<dtype>", dashes as underscores.
std::string CaseName(const ::testing::TestParamInfo<Case>& info);

// AsFloats reads KV bytes of `dtype` as floats; FromFloats writes them; Convert does both.
std::vector<float> AsFloats(const std::vector<uint8_t>& bytes, gpu::DType dtype);
std::vector<uint8_t> FromFloats(const std::vector<float>& values, gpu::DType dtype);
std::vector<uint8_t> Convert(const std::vector<uint8_t>& bytes, gpu::DType from, gpu::DType to);

int32_t Argmax(const std::vector<float>& logits);

// Margin is (top-1 - top-2) / rms(logits): how far greedy decoding is from a tie, in units
// that relative errors of the logits translate into.
double Margin(const std::vector<float>& logits);

// AllBlocks lists the test script's cache blocks (kTestScriptBlocks).
std::vector<int32_t> AllBlocks();

// GreedyAlone decodes `new_tokens` greedily after `prompt` as sequence 1 in blocks 0, 1, ...,
// stopping early when a step's margin falls below `stop_below`; min_margin is the smallest.
struct GreedyRun {
  std::vector<int32_t> tokens;
  double min_margin = INFINITY;
};
GreedyRun GreedyAlone(ForwardBackend& backend, const std::vector<int32_t>& prompt, int new_tokens,
                      double stop_below);

// Generate runs `requests` to completion through a ContinuousBatcher over kTestScriptBlocks
// blocks and returns each one's tokens (failures are test failures).
std::map<int64_t, std::vector<int32_t>> Generate(ForwardBackend& backend,
                                                 const std::vector<GenerationRequest>& requests,
                                                 const BatcherOptions& options);

}  // namespace troupe::serving::engine
