#include "serving/engine/cuda_parallel_plan.h"

#include <numeric>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::serving::engine {

absl::Status CheckTensorParallel(const model::ModelConfig& config, int tensor_parallel) {
  const int common = std::gcd(std::gcd(config.num_heads, config.num_kv_heads), config.ffn_size);
  if (tensor_parallel >= 1 && common % tensor_parallel == 0) return absl::OkStatus();
  std::vector<int> fitting;
  for (int tp = 1; tp <= common; ++tp) {
    if (common % tp == 0) fitting.push_back(tp);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor_parallel is ", tensor_parallel, " but ", config.name, "'s ", config.num_heads,
      " heads, ", config.num_kv_heads, " KV heads and FFN size ", config.ffn_size,
      " do not split evenly over it; use one of ", absl::StrJoin(fitting, ", ")));
}

std::vector<std::pair<int, int>> SplitLayers(int num_layers, int stages) {
  std::vector<std::pair<int, int>> ranges;
  int begin = 0;
  for (int i = 0; i < stages; ++i) {
    const int end = begin + num_layers / stages + (i < num_layers % stages ? 1 : 0);
    ranges.emplace_back(begin, end);
    begin = end;
  }
  return ranges;
}

absl::StatusOr<CudaParallelPlan> PlanCudaParallelism(const model::ModelConfig& config,
                                                     int pipeline_stages, int tensor_parallel,
                                                     int first_device, int device_count) {
  if (pipeline_stages < 1 || pipeline_stages > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline_stages is ", pipeline_stages, " but ", config.name, " has ", config.num_layers,
        " layers; use 1 to ", config.num_layers, " stages (each stage holds at least one layer)"));
  }
  if (absl::Status tp = CheckTensorParallel(config, tensor_parallel); !tp.ok()) return tp;
  if (device_count < 1) {
    return absl::FailedPreconditionError(
        "no CUDA device is visible to this process; run on a GPU host (check "
        "CUDA_VISIBLE_DEVICES), or serve with troupe on the CPU");
  }
  if (first_device < 0 || first_device >= device_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device is cuda:", first_device, " but this process sees ", device_count,
        " GPU(s); use cuda:0 to cuda:", device_count - 1, " (or check CUDA_VISIBLE_DEVICES)"));
  }
  CudaParallelPlan plan;
  plan.tensor_parallel = tensor_parallel;
  int next = first_device;
  for (const auto& [begin, end] : SplitLayers(config.num_layers, pipeline_stages)) {
    CudaStagePlan stage;
    stage.layer_begin = begin;
    stage.layer_end = end;
    for (int r = 0; r < tensor_parallel; ++r) {
      stage.devices.push_back(next);
      next = (next + 1) % device_count;
    }
    plan.stages.push_back(std::move(stage));
  }
  return plan;
}

}  // namespace troupe::serving::engine
