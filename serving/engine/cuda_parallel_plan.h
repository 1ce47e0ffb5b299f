// PlanCudaParallelism: where the shards of a tensor- and/or pipeline-parallel CUDA instance go,
// decided on the CPU so that the rule is tested without a GPU.
//
// The layers split over the pipeline stages as evenly as they go, the earlier stages taking the
// remainder (as the CPU factory splits them). The instance takes tp * pp consecutive devices
// starting at its own device, stage by stage and rank by rank, wrapping around the GPUs present:
// stage s, rank r runs on cuda:((first + s * tp + r) % device_count). So tp = 2 on a one-GPU
// host puts both ranks on cuda:0 (the in-process collective sums them), and tp = 2, pp = 2 at
// cuda:4 of 8 GPUs takes cuda:4 to cuda:7.
//
//   absl::StatusOr<CudaParallelPlan> plan = PlanCudaParallelism(config, /*pipeline_stages=*/2,
//       /*tensor_parallel=*/2, /*first_device=*/0, /*device_count=*/gpu::Device::Count());
//   // plan->stages[1] = {layer_begin 12, layer_end 24, devices {2, 3}} for 24 layers on 4 GPUs
#pragma once

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {

// CudaStagePlan is one stage: its layers and the device of each tensor-parallel rank.
struct CudaStagePlan {
  int layer_begin = 0;
  int layer_end = 0;
  std::vector<int> devices;  // rank r on devices[r]
};

struct CudaParallelPlan {
  int tensor_parallel = 1;
  std::vector<CudaStagePlan> stages;
};

// PlanCudaParallelism checks the degrees against the model and the device against the host, and
// places the shards (see the file comment). Errors are InvalidArgument naming the parameter
// (pipeline_stages, tensor_parallel, device), its limit and the fix; no GPU at all is
// FailedPrecondition.
absl::StatusOr<CudaParallelPlan> PlanCudaParallelism(const model::ModelConfig& config,
                                                     int pipeline_stages, int tensor_parallel,
                                                     int first_device, int device_count);

// CheckTensorParallel checks that `tensor_parallel` is at least 1 and divides the model's heads,
// kv heads and FFN size (each rank holds an equal share of each); the error lists the degrees
// that would.
absl::Status CheckTensorParallel(const model::ModelConfig& config, int tensor_parallel);

// SplitLayers splits `num_layers` into `stages` consecutive ranges [begin, end), as evenly as
// they go, the earlier ranges taking the remainder. stages must be in [1, num_layers].
std::vector<std::pair<int, int>> SplitLayers(int num_layers, int stages);

}  // namespace troupe::serving::engine
