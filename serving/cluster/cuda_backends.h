// CudaBackends: the serving roles' backend factory for GPUs (serving/engine/cuda_backend.h, fp16,
// no LibTorch; `troupe_gpu`). An actor's device = "cuda:N" puts its instance on GPU N; "cpu" is
// refused, naming the binary that serves on the CPU.
#pragma once

#include "serving/cluster/serving_roles.h"

namespace troupe::serving::cluster {

BackendFactory CudaBackends();

}  // namespace troupe::serving::cluster
