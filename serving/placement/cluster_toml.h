// ClusterToml: a placement plan (search.h) as the cluster TOML (actors/cluster_config.h) that
// `troupe_gpu serve --config` starts as is, one process per node:
//
//   ClusterTomlOptions options;
//   options.model = "opt-13b";
//   absl::StatusOr<std::string> toml = ClusterToml(*plan, cluster, options);
//   // then, on each node:  troupe_gpu serve --config=plan.toml --node=node0
//
// Each [[node]] is one machine of the cluster (node0 ... nodeN-1) with the GPUs its instances
// use. Each instance is one actor (role prefill or decode) whose device = "cuda:N" is its first
// GPU; an instance of tensor_parallel x pipeline_stages GPUs takes that many consecutive GPUs
// from there, stage by stage and rank by rank (serving/cluster/cuda_backends.h). The server
// (role server: the HTTP front and the router) runs on node0 and lists every instance as
// "node/name". Instances get the KV blocks the plan was simulated with, and the batch limits of
// the simulation. An instance whose GPUs span nodes cannot be written: an instance runs its
// stages and ranks in one process.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/placement/search.h"
#include "serving/placement/simulator.h"

namespace troupe::serving::placement {

struct ClusterTomlOptions {
  std::string model;  // the model preset every instance serves (all alike: KV moves between them)
  std::string cluster_name = "plan";
  // One address per node (node0 first). Empty: 127.0.0.1 for every node, which runs as is on
  // one machine; set each node's address to run across machines.
  std::vector<std::string> hosts;
  // node0's port, through which the other nodes join (they take ephemeral ports).
  int first_node_port = 4200;
  int server_port = 8000;
  // The batch limits the plan was simulated with, written as the instances' params.
  SimulatorOptions batching;
  // Comment lines put at the top of the file (without the leading "# ").
  std::vector<std::string> header;
};

// ClusterToml writes the plan's cluster (see the file comment). Errors: an instance spanning
// nodes or a plan that does not fit the cluster (FailedPrecondition, saying which and how to
// plan one that fits), a hosts list of the wrong length or an empty model (InvalidArgument).
absl::StatusOr<std::string> ClusterToml(const Plan& plan, const ClusterSpec& cluster,
                                        const ClusterTomlOptions& options);

}  // namespace troupe::serving::placement
