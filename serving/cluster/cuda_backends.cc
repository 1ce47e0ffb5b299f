#include "serving/cluster/cuda_backends.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "actors/cluster_config.h"
#include "serving/engine/cuda_backend.h"

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
    if (request.pipeline_stages != 1 || request.tensor_parallel != 1) {
      return absl::UnimplementedError(
          "pipeline_stages and tensor_parallel > 1 are not implemented for the CUDA backend yet; "
          "set them to 1");
    }
    engine::CudaBackendOptions options;
    options.device = *index;
    options.num_kv_blocks = request.num_kv_blocks;
    return engine::CreateCudaBackend(request.config, request.weights, options);
  };
}

}  // namespace troupe::serving::cluster
