// CpuBackends: the serving roles' backend factory for the CPU (LibTorch; `troupe`). It refuses
// "cuda:N" devices, naming the binary that serves on GPUs.
#pragma once

#include "serving/cluster/serving_roles.h"

namespace troupe::serving::cluster {

BackendFactory CpuBackends();

}  // namespace troupe::serving::cluster
