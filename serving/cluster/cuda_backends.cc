#include "serving/cluster/cuda_backends.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "actors/cluster_config.h"
#include "serving/engine/cuda_backend.h"

namespace troupe::serving::cluster {

BackendFactory CudaBackends() {
  return [](const model::ModelConfig& config, const model::WeightSource& weights,
            int num_kv_blocks,
            const std::string& device) -> absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> {
    absl::StatusOr<int> index = actors::ParseDevice(device);
    if (!index.ok()) return index.status();
    if (*index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device \"", device,
          "\": this binary serves on GPUs only; set device = \"cuda:N\", or run the node with "
          "troupe (the CPU build)"));
    }
    engine::CudaBackendOptions options;
    options.device = *index;
    options.num_kv_blocks = num_kv_blocks;
    return engine::CreateCudaBackend(config, weights, options);
  };
}

}  // namespace troupe::serving::cluster
