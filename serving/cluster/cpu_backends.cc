#include "serving/cluster/cpu_backends.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "serving/engine/cpu_backend.h"
#include "serving/engine/pipeline_backend.h"

namespace troupe::serving::cluster {

BackendFactory CpuBackends() {
  return [](const BackendRequest& request)
             -> absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> {
    if (request.device != "cpu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "device \"", request.device,
          "\": this binary serves on the CPU only; set device = \"cpu\", or run the node with "
          "troupe_gpu (the CUDA build, tools/gpu_bundle.sh)"));
    }
    engine::CpuBackendOptions options;
    options.num_kv_blocks = request.num_kv_blocks;
    options.tensor_parallel = request.tensor_parallel;
    if (request.pipeline_stages == 1) {
      return engine::CreateCpuBackend(request.config, request.weights, options);
    }
    // The layers split as evenly as they go, the earlier stages taking the remainder.
    const int layers = request.config.num_layers;
    std::vector<std::unique_ptr<engine::StageBackend>> stages;
    int begin = 0;
    for (int i = 0; i < request.pipeline_stages; ++i) {
      const int end = begin + layers / request.pipeline_stages +
                      (i < layers % request.pipeline_stages ? 1 : 0);
      options.layer_begin = begin;
      options.layer_end = end;
      absl::StatusOr<std::unique_ptr<engine::StageBackend>> stage =
          engine::CreateCpuStage(request.config, request.weights, options);
      if (!stage.ok()) return stage.status();
      stages.push_back(*std::move(stage));
      begin = end;
    }
    return engine::CreatePipelineBackend(request.system, std::move(stages));
  };
}

}  // namespace troupe::serving::cluster
