#include "serving/cluster/cpu_backends.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "serving/engine/cpu_backend.h"

namespace troupe::serving::cluster {

BackendFactory CpuBackends() {
  return [](const model::ModelConfig& config, const model::WeightSource& weights,
            int num_kv_blocks,
            const std::string& device) -> absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> {
    if (device != "cpu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "device \"", device,
          "\": this binary serves on the CPU only; set device = \"cpu\", or run the node with "
          "troupe_gpu (the CUDA build, tools/gpu_bundle.sh)"));
    }
    return engine::CreateCpuBackend(config, weights, {num_kv_blocks});
  };
}

}  // namespace troupe::serving::cluster
