#include "serving/cluster/cuda_backends.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actors/cluster_config.h"
#include "gpu/device.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/engine/pipeline_backend.h"

namespace troupe::serving::cluster {

BackendFactory CudaBackends() {
  return [](const BackendRequest& request)
             -> absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> {
    absl::StatusOr<int> index = actors::ParseDevice(request.device);
    if (!index.ok()) return index.status();
    if (*index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device \"", request.device,
          "\": this binary serves on GPUs only; set device = \"cuda:N\", or run the node with "
          "troupe (the CPU build)"));
    }
    absl::StatusOr<engine::CudaParallelPlan> plan =
        engine::PlanCudaParallelism(request.config, request.pipeline_stages,
                                    request.tensor_parallel, *index, gpu::Device::Count());
    if (!plan.ok()) return plan.status();
    engine::CudaBackendOptions options;
    options.num_kv_blocks = request.num_kv_blocks;
    // Decode steps replay CUDA graphs (checked bit for bit against eager steps on an H200);
    // tensor-parallel ranks cannot capture the in-process all-reduce, so they launch eagerly.
    options.cuda_graphs = request.tensor_parallel == 1;
    if (plan->stages.size() == 1) {
      options.device = plan->stages.front().devices.front();
      options.tensor_parallel = plan->tensor_parallel;
      options.tensor_parallel_devices = plan->stages.front().devices;
      return engine::CreateCudaBackend(request.config, request.weights, options);
    }
    absl::StatusOr<std::vector<std::unique_ptr<engine::StageBackend>>> stages =
        engine::CreateCudaStages(request.config, request.weights, options, *plan);
    if (!stages.ok()) return stages.status();
    return engine::CreatePipelineBackend(request.system, *std::move(stages));
  };
}

}  // namespace troupe::serving::cluster
