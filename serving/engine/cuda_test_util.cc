#include "serving/engine/cuda_test_util.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "serving/engine/cuda_backend_reference.h"
#include "serving/kv/block_manager.h"

namespace troupe::serving::engine {

std::vector<Case> AllCases(int num_layers) {
  std::vector<Case> cases;
  for (model::ModelConfig config : CudaTestModels()) {
    if (num_layers > 0) config.num_layers = num_layers;
    for (gpu::DType dtype : {gpu::DType::kFloat16, gpu::DType::kBFloat16}) {
      cases.push_back({config, dtype});
    }
  }
  return cases;
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = absl::StrCat(info.param.config.name, "_", gpu::DTypeName(info.param.dtype));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

std::vector<float> AsFloats(const std::vector<uint8_t>& bytes, gpu::DType dtype) {
  const size_t size = gpu::SizeOf(dtype);
  std::vector<float> values(bytes.size() / size);
  for (size_t i = 0; i < values.size(); ++i) values[i] = gpu::ToFloat(dtype, &bytes[i * size]);
  return values;
}

std::vector<uint8_t> FromFloats(const std::vector<float>& values, gpu::DType dtype) {
  const size_t size = gpu::SizeOf(dtype);
  std::vector<uint8_t> bytes(values.size() * size);
  for (size_t i = 0; i < values.size(); ++i) gpu::FromFloat(dtype, values[i], &bytes[i * size]);
  return bytes;
}

std::vector<uint8_t> Convert(const std::vector<uint8_t>& bytes, gpu::DType from, gpu::DType to) {
  return FromFloats(AsFloats(bytes, from), to);
}

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double Margin(const std::vector<float>& logits) {
  float first = -INFINITY, second = -INFINITY;
  double square = 0;
  for (float value : logits) {
    square += static_cast<double>(value) * value;
    if (value > first) {
      second = first;
      first = value;
    } else if (value > second) {
      second = value;
    }
  }
  return (first - second) / std::sqrt(square / logits.size());
}

std::vector<int32_t> AllBlocks() {
  std::vector<int32_t> blocks;
  for (int b = 0; b < kTestScriptBlocks; ++b) blocks.push_back(b);
  return blocks;
}

GreedyRun GreedyAlone(ForwardBackend& backend, const std::vector<int32_t>& prompt, int new_tokens,
                      double stop_below) {
  GreedyRun run;
  std::vector<int32_t> table;
  const int total = static_cast<int>(prompt.size()) + new_tokens;
  for (int b = 0; b * kKvBlockTokens < total; ++b) table.push_back(b);
  SequenceStep step{1, prompt, 0, table};
  for (int i = 0; i < new_tokens; ++i) {
    absl::StatusOr<std::vector<std::vector<float>>> logits = backend.Forward({step});
    if (!logits.ok()) return {};
    run.min_margin = std::min(run.min_margin, Margin((*logits)[0]));
    if (run.min_margin < stop_below) return run;
    run.tokens.push_back(Argmax((*logits)[0]));
    step.cached_tokens += static_cast<int>(step.tokens.size());
    step.tokens = {run.tokens.back()};
  }
  return run;
}

std::map<int64_t, std::vector<int32_t>> Generate(ForwardBackend& backend,
                                                 const std::vector<GenerationRequest>& requests,
                                                 const BatcherOptions& options) {
  std::map<int64_t, std::vector<int32_t>> tokens;
  kv::BlockManagerOptions block_options;
  block_options.num_gpu_blocks = kTestScriptBlocks;
  absl::StatusOr<kv::BlockManager> blocks = kv::BlockManager::Create(block_options);
  EXPECT_TRUE(blocks.ok()) << blocks.status();
  if (!blocks.ok()) return tokens;
  absl::StatusOr<ContinuousBatcher> batcher =
      ContinuousBatcher::Create(&backend, &*blocks, options);
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  if (!batcher.ok()) return tokens;
  for (const GenerationRequest& request : requests) {
    absl::Status added = batcher->Add(request);
    EXPECT_TRUE(added.ok()) << added;
  }
  while (batcher->HasWork()) {
    absl::StatusOr<std::vector<TokenEvent>> events = batcher->Step();
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) break;
    for (const TokenEvent& event : *events) tokens[event.request_id].push_back(event.token);
  }
  return tokens;
}

}  // namespace troupe::serving::engine
