// CudaBackends: the serving roles' backend factory for GPUs (serving/engine/cuda_backend.h, fp16,
// no LibTorch; `troupe_gpu`). An actor's device = "cuda:N" puts its instance on GPU N; "cpu" is
// refused, naming the binary that serves on the CPU.
//
// An instance with tensor_parallel * pipeline_stages > 1 takes that many consecutive GPUs
// starting at cuda:N, stage by stage and rank by rank, wrapping around the GPUs the process sees
// (engine/cuda_parallel_plan.h): stage s, rank r runs on cuda:((N + s * tp + r) % GPUs). So
// tensor_parallel = 2 at cuda:0 of a one-GPU host puts both ranks on cuda:0 (the in-process
// all-reduce sums them), and at cuda:2 of 4 GPUs uses cuda:2 and cuda:3 (NCCL). Ranks that share
// a GPU run, but share its memory and its compute too: give an instance as many GPUs as
// tp * pp for its speed. A pipeline_stages above the model's layers, a tensor_parallel that does
// not divide its heads, KV heads and FFN size, or a device the process does not see is an error
// naming the parameter and the values that would do.
#pragma once

#include "serving/cluster/serving_roles.h"

namespace troupe::serving::cluster {

BackendFactory CudaBackends();

}  // namespace troupe::serving::cluster
